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

/** Bound on the policies remembered per server environment (clients send one or two). */
const MAX_CACHED_POLICIES = 16;

/** Base environments already built, per server environment and policy (a policy is pure data). */
const baseEnvironments = new WeakMap<Readonly<Record<string, string | undefined>>, Map<string, Readonly<Record<string, string>>>>();

/**
 * Builds a child's environment the way the Codex exec-server does: start from the server's own
 * environment per `inherit`, drop the default secret patterns unless told not to, drop
 * `exclude`, apply `set`, keep only `includeOnly` (when given), then overlay `env`.
 * Without a policy the child gets exactly `env`. The policy's result is remembered per server
 * environment object (which the server never changes), so a command start does not re-match
 * every variable against every pattern.
 */
export function buildChildEnv(
  serverEnv: Readonly<Record<string, string | undefined>>,
  policy: EnvPolicy | null | undefined,
  env: Readonly<Record<string, string>>,
): Record<string, string> {
  if (policy === null || policy === undefined) return { ...env };
  let cache = baseEnvironments.get(serverEnv);
  if (cache === undefined) {
    cache = new Map();
    baseEnvironments.set(serverEnv, cache);
  }
  const key = JSON.stringify([policy.inherit, policy.ignoreDefaultExcludes, policy.exclude, policy.set, policy.includeOnly]);
  let base = cache.get(key);
  if (base === undefined) {
    base = applyPolicy(serverEnv, policy);
    if (cache.size >= MAX_CACHED_POLICIES) cache.clear();
    cache.set(key, base);
  }
  return { ...base, ...env };
}

function applyPolicy(serverEnv: Readonly<Record<string, string | undefined>>, policy: EnvPolicy): Record<string, string> {
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
  return result;
}
