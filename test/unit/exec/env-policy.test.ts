import { buildChildEnv, DEFAULT_EXCLUDES, withDefaultExcludesListed } from '../../../src/exec/env-policy.js';
import type { EnvPolicy } from '../../../src/protocol/exec.js';

/** Credentials as they are commonly named, none of which Codex's `*KEY*`, `*SECRET*`, `*TOKEN*` catch. */
const CREDENTIALS = {
  PGPASSWORD: 'pg-pw',
  MYSQL_PWD: 'mysql-pw',
  DB_PASS: 'db-pw',
  SMTP_PASSWD: 'smtp-pw',
  GPG_PASSPHRASE: 'gpg-pw',
  GOOGLE_APPLICATION_CREDENTIALS: '/secrets/gcp.json',
  AWS_SHARED_CREDENTIALS_FILE: '/secrets/aws',
  DATABASE_URL: 'postgres://u:p@h/db',
  TEST_DATABASE_URL: 'postgres:///test',
  SENTRY_DSN: 'https://public@sentry.example/1',
  AZURE_STORAGE_CONNECTION_STRING: 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k',
  NPM_CONFIG__AUTH: 'dTpw',
  DOCKER_AUTH_CONFIG: '{"auths":{}}',
  // Named like anything, but the value is a URL with a password.
  REDIS_URL: 'redis://:redis-pw@127.0.0.1:6379/0',
  https_proxy: 'http://user:proxy-pw@proxy.example:3128',
  BROKERS: 'amqp://guest:guest@127.0.0.1:5672/ amqp://other.example',
};

/** Codex's own three, which stay dropped. */
const CODEX_DEFAULTS = { AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 'aws-secret', AWS_SESSION_TOKEN: 'aws-token', OPENAI_API_KEY: 'sk' };

/** Ordinary variables commands need, some of them close to a credential pattern. */
const ORDINARY = {
  PATH: '/usr/bin:/bin',
  HOME: '/home/u',
  PWD: '/work',
  OLDPWD: '/',
  XAUTHORITY: '/home/u/.Xauthority',
  SSH_AUTH_SOCK: '/tmp/ssh-agent.sock',
  GIT_ASKPASS: '/usr/bin/askpass',
  SSH_ASKPASS: '/usr/bin/ssh-askpass',
  KUBECONFIG: '/home/u/.kube/config',
  AWS_PROFILE: 'dev',
  AWS_REGION: 'eu-west-1',
  PGHOST: 'db.example',
  PGUSER: 'app',
  // URLs without a password: a user name alone, a port, an `@` after the path.
  REPO_URL: 'ssh://git@github.com/o/r.git',
  PAGE: 'https://host.example:8080/people/a@b?x=y:z@w',
  IPV6: 'http://[::1]:8080/',
  PLAIN_REDIS_URL: 'redis://127.0.0.1:6379',
};

const SERVER_ENV = { ...CREDENTIALS, ...CODEX_DEFAULTS, ...ORDINARY };

const policy = (overrides: Partial<EnvPolicy> = {}): EnvPolicy => ({ inherit: 'all', ignoreDefaultExcludes: false, exclude: [], set: {}, includeOnly: [], ...overrides });

describe('buildChildEnv', () => {
  it('drops credentials by name and URLs with a password by value, and keeps what commands need (PWD, OLDPWD, XAUTHORITY, SSH_AUTH_SOCK, …)', () => {
    const env = buildChildEnv({ ...SERVER_ENV }, policy(), { CODEX_THREAD_ID: 't' });
    expect(env).toEqual({ ...ORDINARY, CODEX_THREAD_ID: 't' });
  });

  it('matches names case-insensitively', () => {
    expect(buildChildEnv({ pgpassword: 'x', Database_Url: 'y', my_pwd: 'z', pwd: '/w' }, policy(), {})).toEqual({ pwd: '/w' });
  });

  it('keeps everything with ignoreDefaultExcludes; exclude and set still apply, set after the excludes', () => {
    expect(buildChildEnv({ ...SERVER_ENV }, policy({ ignoreDefaultExcludes: true }), {})).toEqual(SERVER_ENV);
    const env = buildChildEnv({ ...SERVER_ENV }, policy({ exclude: ['PG*'], set: { PGPASSWORD: 'given on purpose' } }), {});
    expect(env.PGPASSWORD).toBe('given on purpose');
    expect(env).not.toHaveProperty('PGHOST');
    expect(env).not.toHaveProperty('REDIS_URL');
  });

  it('stays fast on a huge value without a URL in it', () => {
    // A pattern that rescans the value from every position would not finish within the test's timeout.
    const huge = 'a:'.repeat(500_000);
    expect(buildChildEnv({ HUGE: huge, OTHER: `${'x'.repeat(1_000_000)}://` }, policy(), {})).toHaveProperty('HUGE', huge);
  });
});

describe('withDefaultExcludesListed', () => {
  it('lists the default excludes before the policy’s own while they apply, so an executor with narrower defaults drops the same names', () => {
    expect(withDefaultExcludesListed(policy({ exclude: ['MINE'] })).exclude).toEqual([...DEFAULT_EXCLUDES, 'MINE']);
    const ignoring = policy({ ignoreDefaultExcludes: true, exclude: ['MINE'] });
    expect(withDefaultExcludesListed(ignoring)).toEqual(ignoring);
  });

  it('gives the same environment on our executor as the bare policy does', () => {
    expect(buildChildEnv({ ...SERVER_ENV }, withDefaultExcludesListed(policy()), {})).toEqual(buildChildEnv({ ...SERVER_ENV }, policy(), {}));
  });
});
