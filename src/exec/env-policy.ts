import type { EnvPolicy } from '../protocol/exec.js';

/** Variables kept by `inherit = "core"`. */
const CORE_VARIABLES = ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'USER', 'USERNAME', 'TMPDIR', 'TEMP', 'TMP', 'LANG'];

/**
 * Names dropped unless `ignoreDefaultExcludes` (case-insensitive wildcards): Codex's three, then
 * credentials commonly named otherwise. Each pattern is narrow enough to keep what commands need:
 * `*_PWD` and `*_PASS` need the underscore, so `PWD`, `OLDPWD` and `GIT_ASKPASS` stay; `*_AUTH`
 * is a suffix, so `XAUTHORITY` and `SSH_AUTH_SOCK` (paths, not secrets; git over ssh needs the
 * agent) stay. Cloud credentials are covered by these: AWS's keys and session token by `*KEY*`
 * and `*TOKEN*`, `GOOGLE_APPLICATION_CREDENTIALS` and `AWS_SHARED_CREDENTIALS_FILE` by
 * `*CREDENTIAL*`, Azure's client secret and connection strings by `*SECRET*` and
 * `*CONNECTION_STRING*`.
 */
export const DEFAULT_EXCLUDES: readonly string[] = [
  '*KEY*',
  '*SECRET*',
  '*TOKEN*',
  // PGPASSWORD, MYSQL_PWD, DB_PASS, GPG_PASSPHRASE.
  '*PASSWORD*',
  '*PASSWD*',
  '*PASSPHRASE*',
  '*_PWD',
  '*_PASS',
  // GOOGLE_APPLICATION_CREDENTIALS, AWS_SHARED_CREDENTIALS_FILE, systemd's CREDENTIALS_DIRECTORY.
  '*CREDENTIAL*',
  // Where a database's password usually travels, whatever the URL's form.
  '*DATABASE_URL*',
  '*_DSN',
  '*CONNECTION_STRING*',
  // npm's NPM_CONFIG__AUTH (base64 user:password), GitLab's DOCKER_AUTH_CONFIG.
  '*_AUTH',
  '*_AUTH_CONFIG',
];

/**
 * A URL with a password in its user info (`scheme://user:password@host`), anywhere in a value: a
 * credential whatever the variable is called (REDIS_URL, AMQP_URL, a proxy with a password). The
 * password stops at `/`, `?` or `#`, so `https://host:8080/a@b` is not one. Matching starts only
 * at `://` (no scheme part), which keeps it linear in the value's length.
 */
const URL_WITH_PASSWORD = /:\/\/[^\s/?#@:]*:[^\s/?#@]+@/;

/** A case-insensitive wildcard pattern (`*` any run, `?` one character). */
function globToRegExp(glob: string): RegExp {
  const source = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
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
 * environment per `inherit`, drop credentials unless `ignoreDefaultExcludes` (names matching
 * {@link DEFAULT_EXCLUDES}, and values holding a URL with a password, which Codex keeps), drop
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
  for (const [name, value] of Object.entries(result)) {
    if (matchesAny(name, excludes) || (!policy.ignoreDefaultExcludes && URL_WITH_PASSWORD.test(value))) delete result[name];
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

/**
 * The policy as a client sends it: while it keeps the default excludes, {@link DEFAULT_EXCLUDES}
 * are also listed in `exclude`, so an executor with narrower defaults of its own (Codex's
 * exec-server drops only `*KEY*`, `*SECRET*`, `*TOKEN*`) drops the same names. Values holding a
 * URL with a password are dropped by our exec-server only: `exclude` can name only names.
 */
export function withDefaultExcludesListed(policy: EnvPolicy): EnvPolicy {
  if (policy.ignoreDefaultExcludes) return policy;
  return { ...policy, exclude: [...DEFAULT_EXCLUDES, ...policy.exclude] };
}
