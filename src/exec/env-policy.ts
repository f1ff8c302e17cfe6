import type { EnvPolicy } from '../protocol/exec.js';

/** Variables kept by `inherit = "core"`. */
const CORE_VARIABLES = ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'USER', 'USERNAME', 'TMPDIR', 'TEMP', 'TMP', 'LANG'];

/** Names dropped unless `ignoreDefaultExcludes`: anything that looks like a credential. */
const DEFAULT_EXCLUDES = ['*KEY*', '*SECRET*', '*TOKEN*'];

/** A case-insensitive wildcard pattern (`*` any run, `?` one character). */
function globToRegExp(glob: string): RegExp {
  const source = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, 'i');
}

function matchesAny(name: string, patterns: readonly RegExp[]): boolean {
  return patterns.some((pattern) => pattern.test(name));
}

/**
 * Builds a child's environment the way the Codex exec-server does: start from the server's own
 * environment per `inherit`, drop the default secret patterns unless told not to, drop
 * `exclude`, apply `set`, keep only `includeOnly` (when given), then overlay `env`.
 * Without a policy the child gets exactly `env`.
 */
export function buildChildEnv(
  serverEnv: Readonly<Record<string, string | undefined>>,
  policy: EnvPolicy | null | undefined,
  env: Readonly<Record<string, string>>,
): Record<string, string> {
  if (policy === null || policy === undefined) return { ...env };
  const result: Record<string, string> = {};
  if (policy.inherit !== 'none') {
    for (const [name, value] of Object.entries(serverEnv)) {
      if (value === undefined) continue;
      if (policy.inherit === 'core' && !CORE_VARIABLES.includes(name)) continue;
      result[name] = value;
    }
  }
  const excludes = [...(policy.ignoreDefaultExcludes ? [] : DEFAULT_EXCLUDES), ...policy.exclude].map(globToRegExp);
  for (const name of Object.keys(result)) {
    if (matchesAny(name, excludes)) delete result[name];
  }
  Object.assign(result, policy.set);
  if (policy.includeOnly.length > 0) {
    const keep = policy.includeOnly.map(globToRegExp);
    for (const name of Object.keys(result)) {
      if (!matchesAny(name, keep)) delete result[name];
    }
  }
  return Object.assign(result, env);
}
