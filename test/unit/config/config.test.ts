import { resolveConfig, type ResolvedConfig } from '../../../src/config/config.js';
import { parseConfigToml, toolArgumentsLayer, type ConfigLayer } from '../../../src/config/layers.js';
import { OPENAI_BASE_URL } from '../../../src/config/model-providers.js';
import { dottedObjectLayer, overridesLayer, parseOverride } from '../../../src/config/overrides.js';
import { DEFAULT_MODEL } from '../../../src/config/settings.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';

const HOME = '/h/.codex';
const FILE = `${HOME}/config.toml`;

function file(text: string): ConfigLayer {
  return parseConfigToml(text, FILE);
}

function cli(...args: string[]): ConfigLayer {
  return overridesLayer('-c', args.map(parseOverride));
}

function call(object: Record<string, unknown>): ConfigLayer {
  return dottedObjectLayer('config argument', object);
}

function resolve(layers: ConfigLayer[], options: { profile?: string; overrides?: ConfigLayer[] } = {}): ResolvedConfig {
  return resolveConfig({ layers, codexHome: HOME, ...options });
}

/** The INVALID_CONFIG LocalError `fn` throws. */
function thrown(fn: () => unknown): LocalError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(LocalError);
    const local = error as LocalError;
    expect(local.code).toBe(LocalErrorCode.InvalidConfig);
    return local;
  }
  throw new Error('expected a throw');
}

describe('resolveConfig: defaults', () => {
  it('fills every default with no layers, with the built-in openai provider', () => {
    const { config, warnings } = resolve([]);
    expect(warnings).toEqual([]);
    const { permissionProfiles, permissionWarnings, ...plain } = config;
    expect(permissionProfiles.names()).toEqual([]);
    expect(permissionProfiles.get(':read-only')).toMatchObject({ fullAccess: false, network: false, rules: [{ target: { special: 'root' }, access: 'read' }] });
    expect(permissionWarnings).toEqual([]);
    expect(plain).toEqual({
      allowLoginShell: false,
      projectDocMaxBytes: 32 * 1024,
      projectDocFallbackFilenames: [],
      projectRootMarkers: ['.git'],
      model: DEFAULT_MODEL,
      modelProvider: 'openai',
      modelProviders: {
        openai: {
          name: 'OpenAI',
          baseUrl: OPENAI_BASE_URL,
          envKey: 'OPENAI_API_KEY',
          wireApi: 'responses',
          httpHeaders: {},
          envHttpHeaders: {},
          queryParams: {},
          requestMaxRetries: 4,
          streamMaxRetries: 5,
          streamIdleTimeoutMs: 300_000,
          requiresOpenaiAuth: true,
        },
      },
      approvalPolicy: 'on-request',
      sandboxMode: 'read-only',
      sandboxWorkspaceWrite: { writableRoots: [], networkAccess: false, excludeTmpdirEnvVar: false, excludeSlashTmp: false },
      shellEnvironmentPolicy: {
        inherit: 'all',
        ignoreDefaultExcludes: false,
        exclude: [],
        set: {},
        includeOnly: [],
        experimentalUseProfile: false,
      },
      features: {},
      multienv: {
        maxConcurrentTurns: 8,
        idleThreadUnloadMs: 900_000,
        maxQueuedTurnsPerThread: 4,
        maxTurnSteps: 100,
        maxParallelToolCalls: 4,
        toolOutputMaxTokens: 10_000,
        approvalTimeoutMs: 300_000,
        codexEvents: false,
        allowRuntimeProgramEnvironments: false,
        threadsDir: `${HOME}/multienv/threads`,
        defaultWaitMs: 50_000,
        drainTimeoutMs: 600_000,
        portableToolNames: false,
        maxMessageBytes: 10 * 1024 * 1024,
        engine: 'auto',
        leaseMs: 15_000,
      },
    });
    expect(DEFAULT_MODEL).toBe('gpt-5.5');
  });

  it('reads every interpreted key of a full file', () => {
    const { config, warnings } = resolve([
      file(`
model = "o3"
model_reasoning_effort = "high"
model_reasoning_summary = "concise"
approval_policy = "untrusted"
sandbox_mode = "workspace-write"
developer_instructions = "be brief"
base_instructions = "you are a test"
experimental_instructions_file = "/etc/instructions.md"
compact_prompt = "summarise"
default_permissions = "restricted"

[sandbox_workspace_write]
writable_roots = ["/abs", "rel/dir"]
network_access = true
exclude_tmpdir_env_var = true
exclude_slash_tmp = true

[shell_environment_policy]
inherit = "core"
ignore_default_excludes = true
exclude = ["AWS_*"]
set = { CI = "1" }
include_only = ["PATH", "CI"]
experimental_use_profile = true

[features]
plugins = false
some_future_feature = true

[mcp_servers.docs]
command = "npx"

[permissions.restricted.filesystem]
":minimal" = "read"

[multienv]
max_concurrent_turns = 2
max_queued_turns_per_thread = 0
max_turn_steps = 50
max_parallel_tool_calls = 1
tool_output_max_tokens = 2000
approval_timeout_sec = 1.5
codex_events = true
allow_runtime_program_environments = true
threads_dir = "state/threads"
default_wait_sec = 0.25
drain_timeout_sec = 0
portable_tool_names = true
max_message_mb = 2.5
lease_sec = 4.5
engine = "codex"
codex_path = "bin/codex"
`),
    ]);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      model: 'o3',
      modelReasoningEffort: 'high',
      modelReasoningSummary: 'concise',
      approvalPolicy: 'untrusted',
      sandboxMode: 'workspace-write',
      developerInstructions: 'be brief',
      baseInstructions: 'you are a test',
      modelInstructionsFile: '/etc/instructions.md',
      compactPrompt: 'summarise',
      // A relative path in config.toml resolves against its directory (CODEX_HOME), as in Codex.
      sandboxWorkspaceWrite: {
        writableRoots: ['/abs', `${HOME}/rel/dir`],
        networkAccess: true,
        excludeTmpdirEnvVar: true,
        excludeSlashTmp: true,
      },
      shellEnvironmentPolicy: {
        inherit: 'core',
        ignoreDefaultExcludes: true,
        exclude: ['AWS_*'],
        set: { CI: '1' },
        includeOnly: ['PATH', 'CI'],
        experimentalUseProfile: true,
      },
      features: { plugins: false, some_future_feature: true },
      mcpServers: { docs: { command: 'npx' } },
      defaultPermissions: 'restricted',
      multienv: {
        maxConcurrentTurns: 2,
        maxQueuedTurnsPerThread: 0,
        maxTurnSteps: 50,
        maxParallelToolCalls: 1,
        toolOutputMaxTokens: 2000,
        approvalTimeoutMs: 1500,
        codexEvents: true,
        allowRuntimeProgramEnvironments: true,
        threadsDir: `${HOME}/state/threads`,
        defaultWaitMs: 250,
        drainTimeoutMs: 0,
        portableToolNames: true,
        maxMessageBytes: 2.5 * 1024 * 1024,
        leaseMs: 4_500,
        engine: 'codex',
        codexPath: `${HOME}/bin/codex`,
      },
    });
    expect(config.permissionProfiles.get('restricted').rules).toEqual([{ target: { special: 'minimal' }, access: 'read' }]);
  });

  it('prefers model_instructions_file over experimental_instructions_file', () => {
    const { config } = resolve([file('model_instructions_file = "/new.md"\nexperimental_instructions_file = "/old.md"')]);
    expect(config.modelInstructionsFile).toBe('/new.md');
  });
});

describe('resolveConfig: layering', () => {
  it('file < -c < per-call config; tables merge, arrays and scalars replace', () => {
    const { config } = resolve([
      file(`
model = "from-file"
sandbox_mode = "workspace-write"
[shell_environment_policy]
inherit = "core"
exclude = ["A"]
[multienv]
max_turn_steps = 10
`),
      cli('model="from-cli"', 'shell_environment_policy.exclude=["B", "C"]', 'multienv.max_turn_steps=20'),
      call({ model: 'from-call', 'multienv.max_turn_steps': 30 }),
    ]);
    expect(config.model).toBe('from-call');
    expect(config.sandboxMode).toBe('workspace-write');
    expect(config.shellEnvironmentPolicy.inherit).toBe('core');
    expect(config.shellEnvironmentPolicy.exclude).toEqual(['B', 'C']);
    expect(config.multienv.maxTurnSteps).toBe(30);
  });

  it('merges an inline table from -c into the table of the file', () => {
    const { config } = resolve([file('[shell_environment_policy]\ninherit = "none"'), cli('shell_environment_policy={ set = { X = "1" } }')]);
    expect(config.shellEnvironmentPolicy).toMatchObject({ inherit: 'none', set: { X: '1' } });
  });

  it('takes the per-call config with dotted keys', () => {
    const { config, warnings } = resolve([call({ 'model_providers.fake.base_url': 'http://127.0.0.1:1/v1', model_provider: 'fake', sandbox_mode: 'danger-full-access' })]);
    expect(warnings).toEqual([]);
    expect(config.sandboxMode).toBe('danger-full-access');
    expect(config.modelProvider).toBe('fake');
    expect(config.modelProviders.fake).toMatchObject({ baseUrl: 'http://127.0.0.1:1/v1', wireApi: 'responses' });
  });

  it('merges nested objects and dotted keys of one per-call config', () => {
    const { config } = resolve([call({ shell_environment_policy: { inherit: 'core' }, 'shell_environment_policy.set.A': 'b' })]);
    expect(config.shellEnvironmentPolicy).toMatchObject({ inherit: 'core', set: { A: 'b' } });
  });

  it('keeps a __proto__ key as data and never touches a prototype', () => {
    const layer = call({ 'shell_environment_policy.set.__proto__': { polluted: true } });
    const set = (layer.values.shell_environment_policy as Record<string, unknown>).set as Record<string, unknown>;
    expect(Object.hasOwn(set, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(set)).toBe(Object.prototype);
    // A variable's value must be a string; the refusal says where the table was.
    expect(thrown(() => resolve([layer])).message).toBe('config argument: shell_environment_policy.set.__proto__: expected a string, got a table');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('resolveConfig: a key named __proto__', () => {
  const ownKeys = (table: Record<string, string>): [string, string][] =>
    Object.getOwnPropertyNames(table).map((key) => [key, String(Object.getOwnPropertyDescriptor(table, key)?.value)]);

  it('is kept as a plain key where keys are data: variables, headers, query parameters', () => {
    const toml = [
      '[shell_environment_policy.set]',
      '__proto__ = "from-file"',
      'B = "b"',
      '[model_providers.p]',
      'name = "p"',
      'base_url = "http://127.0.0.1:1/v1"',
      'http_headers = { __proto__ = "h" }',
      'env_http_headers = { __proto__ = "H_VAR" }',
      'query_params = { __proto__ = "q" }',
    ].join('\n');
    const { config } = resolve([file(toml)]);
    expect(ownKeys(config.shellEnvironmentPolicy.set)).toEqual([
      ['__proto__', 'from-file'],
      ['B', 'b'],
    ]);
    expect(Object.getPrototypeOf(config.shellEnvironmentPolicy.set)).toBe(Object.prototype);
    const provider = config.modelProviders.p;
    expect(provider === undefined ? [] : [provider.httpHeaders, provider.envHttpHeaders, provider.queryParams].map(ownKeys)).toEqual([
      [['__proto__', 'h']],
      [['__proto__', 'H_VAR']],
      [['__proto__', 'q']],
    ]);
    // From -c too, where a later layer replaces the value.
    const overridden = resolve([file(toml)], { overrides: [cli('shell_environment_policy.set.__proto__="from-c"')] }).config;
    expect(ownKeys(overridden.shellEnvironmentPolicy.set)).toEqual([
      ['__proto__', 'from-c'],
      ['B', 'b'],
    ]);
    expect(({} as Record<string, unknown>).B).toBeUndefined();
  });

  it('is refused, naming where, where keys name things: providers, profiles, features, permission profiles and their paths', () => {
    const cases: [string, string][] = [
      ['[model_providers.__proto__]\nname = "p"\nbase_url = "http://127.0.0.1:1/v1"', 'model_providers.__proto__'],
      ['[profiles.__proto__]\nmodel = "x"', 'profiles.__proto__'],
      ['[features]\n__proto__ = true', 'features.__proto__'],
      ['[permissions.__proto__.filesystem]\n":root" = "read"', 'permissions.__proto__'],
      ['[permissions.p.filesystem]\n__proto__ = "read"', 'permissions.p.filesystem.__proto__'],
      ['[permissions.p.filesystem.":root"]\n__proto__ = "read"', 'permissions.p.filesystem.:root.__proto__'],
      ['[permissions.p]\nfilesystem = { ":root" = "read" }\nworkspace_roots = { __proto__ = true }', 'permissions.p.workspace_roots.__proto__'],
    ];
    for (const [toml, where] of cases) {
      expect(thrown(() => resolve([file(toml)])).message).toBe(`${FILE}: ${where}: the key \`__proto__\` is not allowed here; choose another name`);
    }
    expect(thrown(() => resolve([file('')], { overrides: [cli('features.__proto__=true')] })).message).toBe(
      '-c: features.__proto__: the key `__proto__` is not allowed here; choose another name',
    );
    expect(({} as Record<string, unknown>).name).toBeUndefined();
  });
});

describe('resolveConfig: profiles', () => {
  const profilesFile = `
model = "top"
approval_policy = "on-request"
[profiles.fast]
model = "fast-model"
model_reasoning_effort = "low"
[profiles.safe]
approval_policy = "untrusted"
[profiles.safe.sandbox_workspace_write]
network_access = true
`;

  it('selects a profile by the profile key; the profile overlays top-level keys', () => {
    const { config } = resolve([file(`profile = "fast"\n${profilesFile}`)]);
    expect(config.profile).toBe('fast');
    expect(config.model).toBe('fast-model');
    expect(config.modelReasoningEffort).toBe('low');
    expect(config.approvalPolicy).toBe('on-request');
  });

  it('selects a profile by option, which wins over the key', () => {
    const { config } = resolve([file(`profile = "fast"\n${profilesFile}`)], { profile: 'safe' });
    expect(config.profile).toBe('safe');
    expect(config.model).toBe('top');
    expect(config.approvalPolicy).toBe('untrusted');
    expect(config.sandboxWorkspaceWrite.networkAccess).toBe(true);
  });

  it('selects a profile from -c or the per-call config', () => {
    expect(resolve([file(profilesFile), cli('profile=fast')]).config.model).toBe('fast-model');
    expect(resolve([file(profilesFile), call({ profile: 'safe' })]).config.approvalPolicy).toBe('untrusted');
  });

  it('lets the profile win over -c, as Codex does, and the overrides win over the profile', () => {
    expect(resolve([file(profilesFile), cli('model=cli')], { profile: 'fast' }).config.model).toBe('fast-model');
    expect(resolve([file(profilesFile), cli('profiles.fast.model=cli')], { profile: 'fast' }).config.model).toBe('cli');
    const { config } = resolve([file(profilesFile)], {
      profile: 'fast',
      overrides: [toolArgumentsLayer('codex tool arguments', { model: 'arg-model', sandbox: 'workspace-write' })],
    });
    expect(config.model).toBe('arg-model');
    expect(config.sandboxMode).toBe('workspace-write');
  });

  it('rejects an unknown profile, listing the known ones', () => {
    expect(thrown(() => resolve([file(profilesFile)], { profile: 'nope' })).message).toBe('config profile `nope` not found; known profiles: fast, safe');
    expect(thrown(() => resolve([file('profile = "nope"')])).message).toBe(`${FILE}: profile: config profile \`nope\` not found; no profiles are defined`);
  });

  it('names the profile key in an error about a profile value', () => {
    expect(thrown(() => resolve([file('[profiles.x]\nsandbox_mode = 3')], { profile: 'x' })).message).toBe(
      `${FILE}: profiles.x.sandbox_mode: expected one of read-only, workspace-write, danger-full-access, got 3`,
    );
  });
});

describe('resolveConfig: unknown and accepted keys', () => {
  it('warns about unknown keys at the top, in known tables, in [multienv], in providers and profiles', () => {
    const { config, warnings } = resolve([
      file(`
foo = 1
[foo_table]
bar = 2
[sandbox_workspace_write]
writable_root = ["/typo"]
[multienv]
max_turns = 3
[model_providers.openai]
experimental_bearer_token = "t"
[profiles.p]
zzz = true
`),
      cli('foo.bar=1'),
      call({ 'shell_environment_policy.inherits': 'all' }),
    ]);
    expect(config.model).toBe(DEFAULT_MODEL);
    expect(warnings).toEqual([
      `${FILE}: unknown config key \`foo\` ignored`,
      `${FILE}: unknown config key \`foo_table\` ignored`,
      `${FILE}: unknown config key \`sandbox_workspace_write.writable_root\` ignored`,
      `${FILE}: unknown config key \`multienv.max_turns\` ignored`,
      `${FILE}: unknown config key \`model_providers.openai.experimental_bearer_token\` ignored`,
      `${FILE}: unknown config key \`profiles.p.zzz\` ignored`,
      '-c: unknown config key `foo` ignored',
      'config argument: unknown config key `shell_environment_policy.inherits` ignored',
    ]);
  });

  it('accepts common Codex keys without a warning, whatever their shape', () => {
    const { warnings } = resolve([
      file(`
profile = "p"
hide_agent_reasoning = true
show_raw_agent_reasoning = false
model_verbosity = "low"
file_opener = "vscode"
trust_level = "trusted"
windows_wsl_setup_acknowledged = true
model_context_window = 200000
model_auto_compact_token_limit = 100000
preferred_auth_method = "apikey"
chatgpt_base_url = "https://chatgpt.com"
disable_response_storage = true
project_doc_max_bytes = 32768
notify = ["notify-send"]
default_permissions = ":workspace"
experimental_use_rmcp_client = true
experimental_whatever = { a = 1 }
[history]
persistence = "none"
[tui]
theme = "dark"
[projects."/abs/project"]
trust_level = "trusted"
[otel]
exporter = "none"
[tools]
web_search = true
[mcp_servers.x]
command = "x"
[permissions.p]
extends = ":workspace"
[features]
anything = true
[profiles.p]
model = "o3"
[model_providers.local]
base_url = "http://localhost:11434/v1"
requires_openai_auth = false
`),
    ]);
    expect(warnings).toEqual([]);
  });
});

describe('resolveConfig: errors name the source and the key', () => {
  it('a wrong enum value in the file', () => {
    expect(thrown(() => resolve([file('approval_policy = "sometimes"')])).message).toBe(
      `${FILE}: approval_policy: expected one of untrusted, on-failure, on-request, never, got "sometimes"`,
    );
  });

  it('wrong types from -c and the per-call config', () => {
    expect(thrown(() => resolve([cli('features.plugins=1')])).message).toBe('-c: features.plugins: expected a boolean, got 1');
    expect(thrown(() => resolve([call({ 'multienv.max_turn_steps': 'many' })])).message).toBe('config argument: multienv.max_turn_steps: expected a number, got "many"');
    expect(thrown(() => resolve([call({ model: null })])).message).toBe('config argument: model: expected a string, got null');
  });

  it('names the layer that set the value, not an earlier one', () => {
    expect(thrown(() => resolve([file('sandbox_mode = "read-only"'), cli('sandbox_mode=full')])).message).toBe(
      '-c: sandbox_mode: expected one of read-only, workspace-write, danger-full-access, got "full"',
    );
  });

  it('integers and bounds', () => {
    expect(thrown(() => resolve([file('[multienv]\nmax_concurrent_turns = 1.5')])).message).toBe(`${FILE}: multienv.max_concurrent_turns: expected an integer, got 1.5`);
    expect(thrown(() => resolve([file('[multienv]\nmax_concurrent_turns = 0')])).message).toBe(`${FILE}: multienv.max_concurrent_turns: expected at least 1, got 0`);
    expect(thrown(() => resolve([file('[multienv]\nmax_message_mb = 0.5')])).message).toBe(`${FILE}: multienv.max_message_mb: expected at least 1, got 0.5`);
    expect(thrown(() => resolve([file('[multienv]\nmax_message_mb = 1024')])).message).toBe(`${FILE}: multienv.max_message_mb: expected at most 256, got 1024`);
    expect(thrown(() => resolve([file('[multienv]\nlease_sec = 0.5')])).message).toBe(`${FILE}: multienv.lease_sec: expected at least 1, got 0.5`);
    expect(thrown(() => resolve([file('[multienv]\nlease_sec = 7200')])).message).toBe(`${FILE}: multienv.lease_sec: expected at most 3600, got 7200`);
    expect(thrown(() => resolve([file('[model_providers.openai]\nrequest_max_retries = 1000')])).message).toBe(
      `${FILE}: model_providers.openai.request_max_retries: expected at most 100, got 1000`,
    );
  });

  it('a table where a value is expected, and a value where a table is expected', () => {
    expect(thrown(() => resolve([file('[model]\nname = "x"')])).message).toBe(`${FILE}: model: expected a string, got a table`);
    expect(thrown(() => resolve([file('multienv = 3')])).message).toBe(`${FILE}: multienv: expected a table, got 3`);
  });

  it('reports every invalid key', () => {
    const message = thrown(() => resolve([file('sandbox_mode = 1\n[shell_environment_policy]\ninherit = "some"')])).message;
    expect(message).toBe(
      `${FILE}: sandbox_mode: expected one of read-only, workspace-write, danger-full-access, got 1; ` +
        `${FILE}: shell_environment_policy.inherit: expected one of all, core, none, got "some"`,
    );
  });

  it('requires absolute paths where the layer has no directory to resolve against', () => {
    expect(thrown(() => resolve([cli('sandbox_workspace_write.writable_roots=["/ok", "rel"]')])).message).toBe(
      '-c: sandbox_workspace_write.writable_roots[1]: expected an absolute path, got "rel" (a relative path is allowed only in a config file)',
    );
    expect(thrown(() => resolve([call({ 'multienv.threads_dir': 'threads' })])).message).toMatch(
      /^config argument: multienv\.threads_dir: expected an absolute path, got "threads"/,
    );
    const withBase = overridesLayer('-c', [parseOverride('sandbox_workspace_write.writable_roots=["rel"]')], { baseDir: '/cwd' });
    expect(resolve([withBase]).config.sandboxWorkspaceWrite.writableRoots).toEqual(['/cwd/rel']);
  });
});

describe('resolveConfig: model providers', () => {
  it('reads a custom provider and selects it', () => {
    const { config } = resolve([
      file(`
model_provider = "fake"
[model_providers.fake]
name = "Fake"
base_url = "http://127.0.0.1:1/v1"
env_key = "FAKE_KEY"
wire_api = "responses"
http_headers = { "X-A" = "1" }
env_http_headers = { "X-B" = "B_VAR" }
query_params = { "api-version" = "2025-01-01" }
request_max_retries = 0
stream_max_retries = 1
stream_idle_timeout_ms = 1000
`),
    ]);
    expect(config.modelProvider).toBe('fake');
    expect(config.modelProviders.fake).toEqual({
      name: 'Fake',
      baseUrl: 'http://127.0.0.1:1/v1',
      envKey: 'FAKE_KEY',
      wireApi: 'responses',
      httpHeaders: { 'X-A': '1' },
      envHttpHeaders: { 'X-B': 'B_VAR' },
      queryParams: { 'api-version': '2025-01-01' },
      requestMaxRetries: 0,
      streamMaxRetries: 1,
      streamIdleTimeoutMs: 1000,
      requiresOpenaiAuth: false,
    });
    expect(config.modelProviders.openai?.baseUrl).toBe(OPENAI_BASE_URL);
  });

  it('lets a layer override fields of the built-in openai provider and keeps the others', () => {
    const { config } = resolve([cli('model_providers.openai.base_url="http://proxy.local/v1"')]);
    expect(config.modelProviders.openai).toMatchObject({
      name: 'OpenAI',
      baseUrl: 'http://proxy.local/v1',
      envKey: 'OPENAI_API_KEY',
    });
  });

  it('rejects an unknown provider id, listing the known ones', () => {
    expect(thrown(() => resolve([file('model_provider = "nope"\n[model_providers.fake]\nbase_url = "http://x/v1"')])).message).toBe(
      `${FILE}: model_provider: model provider \`nope\` not found; known providers: fake, openai`,
    );
  });

  it('rejects wire_api = "chat": only the Responses API is supported', () => {
    const message = thrown(() => resolve([file('[model_providers.fake]\nbase_url = "http://x/v1"\nwire_api = "chat"')])).message;
    expect(message).toBe(
      `${FILE}: model_providers.fake.wire_api: \`wire_api = "chat"\` is no longer supported; only the Responses API is supported (set \`wire_api = "responses"\`)`,
    );
  });

  it('requires base_url, as an http or https URL', () => {
    expect(thrown(() => resolve([call({ 'model_providers.fake.name': 'Fake' })])).message).toBe('config argument: model_providers.fake.base_url: missing required key');
    expect(thrown(() => resolve([call({ 'model_providers.fake.base_url': 'ftp://x' })])).message).toBe(
      'config argument: model_providers.fake.base_url: expected an http or https URL, got "ftp://x"',
    );
  });
});

describe('parseConfigToml', () => {
  it('returns the raw nested table as plain objects', () => {
    const layer = parseConfigToml('model = "o3"\n[a.b]\nc = [1, 2]', FILE);
    expect(layer).toEqual({ source: FILE, values: { model: 'o3', a: { b: { c: [1, 2] } } }, baseDir: HOME });
    expect(Object.getPrototypeOf(layer.values.a)).toBe(Object.prototype);
  });

  it('reads TOML 1.1 as Codex 0.169 does: multi-line inline tables, \\e and \\x escapes, times without seconds', () => {
    const text = ['at = 07:32', '[mcp_servers.docs]', 'command = "docs"', 'env = {', '  BOLD = "\\e[1m", # a comment inside the table', '  LETTER = "\\x41",', '}'].join('\n');
    const { values } = parseConfigToml(text, FILE);
    expect(values.mcp_servers).toEqual({ docs: { command: 'docs', env: { BOLD: '\u001b[1m', LETTER: 'A' } } });
    expect(values.at instanceof Date && values.at.toISOString()).toBe('07:32:00.000');
    expect(resolveConfig({ layers: [parseConfigToml(text, FILE)], codexHome: HOME }).config.mcpServers).toEqual(values.mcp_servers);
  });

  it('keeps integers beyond 2^53 exact, as the 64-bit integers Codex reads', () => {
    expect(parseConfigToml('big = 9223372036854775807', FILE).values.big).toBe(9223372036854775807n);
  });

  it('has no base directory for a source that is not a path, unless given one', () => {
    expect(parseConfigToml('', 'inline').baseDir).toBeUndefined();
    expect(parseConfigToml('', 'inline', { baseDir: '/base' }).baseDir).toBe('/base');
  });

  it('names the source, line and column of a syntax error', () => {
    expect(thrown(() => parseConfigToml('model = "o3"\nsandbox_mode = \n', FILE)).message).toMatch(new RegExp(`^${FILE}: TOML syntax error at line 2, column \\d+: `));
    expect(thrown(() => parseConfigToml('[a]\nb = 1\n[a]\n', FILE)).message).toBe(
      `${FILE}: TOML syntax error at line 3, column 2: trying to redefine an already defined table or value`,
    );
  });
});

describe('parseOverride', () => {
  it.each([
    ['model="o3"', ['model'], 'o3'],
    ['model=o3', ['model'], 'o3'],
    ['features.plugins=false', ['features', 'plugins'], false],
    ['multienv.max_turn_steps=7', ['multienv', 'max_turn_steps'], 7],
    ['sandbox_workspace_write.writable_roots=["/a"]', ['sandbox_workspace_write', 'writable_roots'], ['/a']],
    ['x={a=1}', ['x'], { a: 1 }],
    ['model_providers.fake.base_url=http://127.0.0.1:1/v1', ['model_providers', 'fake', 'base_url'], 'http://127.0.0.1:1/v1'],
    ['mcp_servers."my.server".command=npx', ['mcp_servers', 'my.server', 'command'], 'npx'],
    ['a."k=v" = 1', ['a', 'k=v'], 1],
    [' model = "spaced" ', ['model'], 'spaced'],
    ['model="unterminated', ['model'], 'unterminated'],
    ['model=', ['model'], ''],
    ['model=a\nb=2', ['model'], 'a\nb=2'],
  ])('%s', (arg, path, value) => {
    expect(parseOverride(arg)).toEqual({ path, value });
  });

  it('reads a TOML 1.1 value: an inline table with a trailing comma and a \\e escape', () => {
    expect(parseOverride('mcp_servers.docs.env={ BOLD = "\\e[1m", }')).toEqual({
      path: ['mcp_servers', 'docs', 'env'],
      value: { BOLD: '\u001b[1m' },
    });
  });

  it('rejects a missing = and an empty key with Codex messages', () => {
    expect(thrown(() => parseOverride('model')).message).toBe("-c: Invalid override (missing '='): model");
    expect(thrown(() => parseOverride(' =1')).message).toBe('-c: Empty key in override:  =1');
  });
});

describe('layers', () => {
  it('overridesLayer applies entries in order, a later one winning', () => {
    const layer = overridesLayer('-c', [
      { path: ['a', 'b'], value: 1 },
      { path: ['a', 'c'], value: 2 },
      { path: ['a', 'b'], value: 3 },
    ]);
    expect(layer).toEqual({ source: '-c', values: { a: { b: 3, c: 2 } } });
  });

  it('toolArgumentsLayer maps the codex tool arguments to config keys', () => {
    expect(
      toolArgumentsLayer('codex tool arguments', {
        model: 'm',
        'approval-policy': 'never',
        sandbox: 'read-only',
        'base-instructions': 'b',
        'developer-instructions': 'd',
        'compact-prompt': 'c',
      }).values,
    ).toEqual({
      model: 'm',
      approval_policy: 'never',
      sandbox_mode: 'read-only',
      base_instructions: 'b',
      developer_instructions: 'd',
      compact_prompt: 'c',
    });
  });
});

describe('resolveConfig: every table through one validation path', () => {
  it('names the layer and the key of a bad [permissions] value', () => {
    expect(thrown(() => resolve([file('[permissions.web.filesystem]\n"/srv" = "rw"')])).message).toBe(
      `${FILE}: permissions.web.filesystem./srv: expected one of read, write, deny, none, got "rw"`,
    );
    expect(thrown(() => resolve([file('[permissions.a.filesystem]\n":workspace_roots" = { "src" = "x" }')])).message).toBe(
      `${FILE}: permissions.a.filesystem.:workspace_roots.src: expected one of read, write, deny, none, got "x"`,
    );
    expect(thrown(() => resolve([file('[permissions.a]\nextends = "b"\n'), cli('permissions.b.extends="a"')])).message).toBe(
      '-c: permissions.b.extends: profiles extend each other in a cycle (a → b → a)',
    );
  });

  it('reports an unknown default_permissions at that key', () => {
    expect(thrown(() => resolve([file('default_permissions = "nope"')])).message).toBe(
      `${FILE}: default_permissions: unknown permission profile \`nope\`; known profiles: :read-only, :workspace, :danger-full-access`,
    );
  });

  it('resolves a relative path in a profile against the directory of the layer that set it', () => {
    const { config } = resolve([file('[profiles.p]\nmodel_instructions_file = "prompts/p.md"'), cli('profiles.p.sandbox_workspace_write.writable_roots=["/abs"]')], {
      profile: 'p',
    });
    expect(config.modelInstructionsFile).toBe(`${HOME}/prompts/p.md`);
    expect(config.sandboxWorkspaceWrite.writableRoots).toEqual(['/abs']);
    expect(thrown(() => resolve([file('[profiles.p]'), cli('profiles.p.model_instructions_file="rel.md"')], { profile: 'p' })).message).toBe(
      '-c: profiles.p.model_instructions_file: expected an absolute path, got "rel.md" (a relative path is allowed only in a config file)',
    );
  });

  it('refuses a datetime where a table belongs, and an empty name', () => {
    expect(thrown(() => resolve([file('multienv = 1979-05-27T07:32:00Z')])).message).toBe(`${FILE}: multienv: expected a table, got datetime 1979-05-27T07:32:00.000Z`);
    expect(thrown(() => resolve([file('project_root_markers = [".git", ""]')])).message).toBe(`${FILE}: project_root_markers[1]: must not be empty`);
  });

  it('takes a postgres:// or postgresql:// URL as multienv.store, and refuses anything else without showing a password', () => {
    expect(resolve([]).config.multienv.databaseUrl).toBeUndefined();
    for (const url of ['postgres://u@db.example/threads', 'postgresql://u:pw@localhost/threads?host=/run/postgresql']) {
      expect(resolve([file(`[multienv]\nstore = "${url}"`)]).config.multienv.databaseUrl).toBe(url);
    }
    expect(thrown(() => resolve([file('[multienv]\nstore = "/srv/threads"')])).message).toBe(
      `${FILE}: multienv.store: expected a postgres:// or postgresql:// URL, got "/srv/threads" (leave it out to keep threads in the files of threads_dir)`,
    );
    const secret = thrown(() => resolve([cli('multienv.store="mysql://u:s3cret@db/x"')])).message;
    expect(secret).toContain('got "mysql://u:***@db/x"');
    expect(secret).not.toContain('s3cret');
  });

  it('keeps the default threads_dir under CODEX_HOME when a layer sets other [multienv] keys', () => {
    expect(resolve([cli('multienv={ max_turn_steps = 3 }')]).config.multienv).toMatchObject({ maxTurnSteps: 3, threadsDir: `${HOME}/multienv/threads` });
  });
});
