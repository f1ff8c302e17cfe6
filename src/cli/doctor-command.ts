import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { inputMessage } from '../agent/instructions.js';
import { resolveConfig } from '../config/config.js';
import { CONFIG_FILE_NAME, parseConfigToml, type ConfigLayer } from '../config/layers.js';
import { overridesLayer, parseOverride } from '../config/overrides.js';
import type { EffectiveConfig } from '../config/settings.js';
import { ENVIRONMENTS_FILE_NAME } from '../config/environments.js';
import { parseMcpServers, type McpServerConfig } from '../config/mcp-servers.js';
import type { Environment } from '../environments/environment.js';
import { LOCAL_ENVIRONMENT_ID, type EnvironmentRegistry } from '../environments/registry.js';
import { createBwrapProbe } from '../exec/bwrap.js';
import { NATIVE_SPAWN_ENV } from '../exec/native-spawn-env.js';
import { processStarter } from '../exec/piped-start.js';
import { uriToPath } from '../exec/path-uri.js';
import type { LocalExecServer } from '../environments/local-server.js';
import { ModelClient } from '../model/client.js';
import { HttpExchange } from '../model/http-exchange.js';
import { ModelApiError, ModelConnectionError } from '../model/errors.js';
import { EnvironmentInfoMethod, EnvironmentStatus } from '../protocol/exec.js';
import type { LeaseHolder } from '../protocol/status.js';
import { ThreadLeases } from '../session/thread-lease.js';
import { describeNetwork, type NetworkSettings } from '../transport/network.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import { NESTED_ALLOW, NESTED_ENV_VAR } from '../util/nested.js';
import { loadRegistry } from './environments-command.js';
import { localSandboxNeed } from './local-sandbox.js';
import { PACKAGE_VERSION, USER_AGENT } from './version.js';
import { missingKeyMessage, providerCredentials, readCodexAuth, readOptionalFile, storedKeyNote, type CodexAuth } from './runtime.js';
import { codexHome } from './codex-home.js';
import { chooseEngine, codexVersion, findCodexBinary } from './codex-engine.js';
import { check, type CheckResult } from './doctor-check.js';
import { checkDatabase } from './doctor-database.js';
import { networkSettings } from './network.js';
import { currentSelfReferenceHost, findSelfReferences } from './self-reference.js';

/** How long the model check waits for a complete answer. */
export const DOCTOR_MODEL_TIMEOUT_MS = 60_000;

/** How long `environment/status` and `environment/info` may take once an environment is connected. */
export const DOCTOR_ENVIRONMENT_REQUEST_TIMEOUT_MS = 10_000;

/** The prompt of the model check: tiny, so the check costs a few tokens. */
const MODEL_CHECK_PROMPT = 'Reply with the single word OK.';

/** config.toml with `-c` and `--profile`, resolved as the MCP server resolves it. */
async function checkConfig(home: string, overrides: string[], profile: string | undefined): Promise<{ result: CheckResult; config?: EffectiveConfig }> {
  const path = join(home, CONFIG_FILE_NAME);
  const title = CONFIG_FILE_NAME;
  try {
    const text = await readOptionalFile(path);
    const layers: ConfigLayer[] = [];
    if (text !== undefined) layers.push(parseConfigToml(text, path, { baseDir: home }));
    layers.push(overridesLayer('-c', overrides.map(parseOverride), { baseDir: process.cwd() }));
    const { config, warnings } = resolveConfig({ layers, profile, codexHome: home });
    if (config.modelInstructionsFile !== undefined) {
      try {
        await readFile(config.modelInstructionsFile, 'utf8');
      } catch (error) {
        return {
          config,
          result: check(
            'config',
            title,
            'fail',
            `model_instructions_file cannot be read: ${errorMessage(error)}`,
            `fix the path of \`model_instructions_file\` in ${path}, or create the file`,
          ),
        };
      }
    }
    const where = text === undefined ? `${path} not found, using defaults` : path;
    const summary = `${where}: model ${config.model} via provider \`${config.modelProvider}\`, approval ${config.approvalPolicy}, sandbox ${config.sandboxMode}${config.profile === undefined ? '' : `, profile ${config.profile}`}`;
    if (warnings.length > 0) {
      return { config, result: check('config', title, 'warn', `${summary}; ${warnings.join('; ')}`, 'remove or correct the unknown keys (they are ignored)') };
    }
    return { config, result: check('config', title, 'ok', summary) };
  } catch (error) {
    return { result: check('config', title, 'fail', errorMessage(error), `correct the key named above (in ${path} or the -c override); the MCP server will not start until then`) };
  }
}

/**
 * `[mcp_servers]`, validated as sessions load it, and the entries sessions leave out because they
 * launch this server itself. None when the config has no entries: nothing to say.
 */
function checkMcpServers(config: EffectiveConfig | undefined, env: NodeJS.ProcessEnv): CheckResult | undefined {
  if (config === undefined || config.mcpServers === undefined) return undefined;
  const title = 'MCP servers in sessions';
  let servers: McpServerConfig[];
  try {
    servers = parseMcpServers(config.mcpServers).servers;
  } catch (error) {
    return check('mcp_servers', title, 'fail', errorMessage(error), 'correct the key named above; turns fail until then');
  }
  if (servers.length === 0) return undefined;
  const enabled = servers.filter((server) => server.enabled).map((server) => server.name);
  const host = currentSelfReferenceHost(env);
  const skipped = host === undefined ? [] : findSelfReferences(servers, host);
  const summary = `${servers.length} configured${enabled.length === 0 ? ', none enabled' : `, enabled: ${enabled.join(', ')}`}`;
  if (skipped.length === 0) return check('mcp_servers', title, 'ok', summary);
  const names = skipped.map((reference) => `mcp_servers.${reference.server}`);
  return check(
    'mcp_servers',
    title,
    'warn',
    `${summary}; skipped in sessions because ${skipped.length === 1 ? 'it launches' : 'they launch'} this server itself: ${skipped.map((reference) => `${reference.server} (${reference.how})`).join('; ')}`,
    `give this server its own CODEX_HOME (one whose config.toml does not list it), or set \`enabled = false\` on ${names.join(', ')}; to start ${skipped.length === 1 ? 'it' : 'them'} inside sessions on purpose, set \`env = { ${NESTED_ENV_VAR} = "${NESTED_ALLOW}" }\` in the entry`,
  );
}

/** Where threads are written: the folder, or its nearest existing parent, must be writable. */
async function checkThreadsDir(config: EffectiveConfig | undefined): Promise<CheckResult> {
  const title = 'threads folder';
  if (config === undefined) return check('threads', title, 'skip', 'config.toml is invalid');
  const dir = config.multienv.threadsDir;
  let candidate = dir;
  for (;;) {
    try {
      await access(candidate, constants.W_OK);
      if (candidate !== dir) return check('threads', title, 'ok', `${dir} will be created in ${candidate}`);
      return check('threads', title, 'ok', `${dir} is writable${await runningElsewhere(dir)}`);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const parent = dirname(candidate);
      if (code !== 'ENOENT' || parent === candidate) {
        return check(
          'threads',
          title,
          'fail',
          `${candidate} is not writable (${code ?? errorMessage(error)})`,
          `make ${candidate} writable, or set \`multienv.threads_dir\` to a writable folder`,
        );
      }
      candidate = parent;
    }
  }
}

/** "; 2 threads have a turn running in other server processes (pid …)", or nothing. */
async function runningElsewhere(dir: string): Promise<string> {
  const held = await new ThreadLeases({ dir }).heldElsewhere().catch(() => new Map<string, LeaseHolder>());
  if (held.size === 0) return '';
  const pids = [...new Set([...held.values()].map((holder) => holder.pid))].sort((a, b) => a - b);
  return `; ${held.size} thread${held.size === 1 ? ' has a turn' : 's have turns'} running in server process${pids.length === 1 ? '' : 'es'} ${pids.map((pid) => `pid ${pid}`).join(', ')} (see codex-status)`;
}

function environmentFix(environment: Environment): string {
  switch (environment.kind) {
    case 'websocket':
      return `start an exec-server there (\`codex-multienv exec-server --listen ${environment.endpoint}\` or \`codex exec-server --listen ${environment.endpoint}\`), or correct \`url\` / \`auth_bearer_token\` of \`${environment.id}\` in ${environment.source}`;
    case 'stdio':
      return `run \`${environment.endpoint}\` by hand: it must speak the exec-server protocol on stdin/stdout (e.g. \`codex-multienv exec-server --listen stdio\`); correct \`program\` / \`args\` of \`${environment.id}\` in ${environment.source}`;
    case 'local':
      return 'the in-process exec-server failed; run with --log-level debug and report the error';
  }
}

/** A protocol path (a `file://` URI) as a path, or as sent when it is not one. */
function displayPath(uri: string): string {
  try {
    return uriToPath(uri);
  } catch {
    return uri;
  }
}

/** Connects (and initializes), then asks `environment/status` and `environment/info`. */
async function checkEnvironment(environment: Environment): Promise<CheckResult> {
  const id = `environment:${environment.id}`;
  const title = `environment ${environment.id}`;
  const described = await environment.probe();
  if (described.status !== 'ready') {
    return check(id, title, 'fail', `${environment.kind} ${environment.endpoint}: ${described.error ?? described.status}`, environmentFix(environment));
  }
  try {
    const client = await environment.client();
    const options = { timeoutMs: DOCTOR_ENVIRONMENT_REQUEST_TIMEOUT_MS };
    const status = await client.request(EnvironmentStatus, undefined, options);
    const info = await client.request(EnvironmentInfoMethod, undefined, options);
    const facts = [
      info.platformOs,
      info.shell?.name,
      typeof info.cwd === 'string' ? displayPath(info.cwd) : undefined,
      typeof info.executorVersion === 'string' ? `executor ${info.executorVersion}` : undefined,
    ];
    const detail = `${environment.kind} ${environment.endpoint}: ${status.status}; ${facts.filter((fact) => typeof fact === 'string').join(', ')}`;
    if (status.status !== 'ready') return check(id, title, 'warn', detail, `the exec-server reports \`${status.status}\`; look at its logs`);
    return check(id, title, 'ok', detail);
  } catch (error) {
    return check(
      id,
      title,
      'warn',
      `${environment.kind} ${environment.endpoint}: connected, but environment/status or environment/info failed: ${errorMessage(error)}`,
      'the exec-server may be an older version; update it',
    );
  }
}

/**
 * Bubblewrap on this host, which confines the local environment's commands. Missing, it fails
 * when the configured sandbox confines `local` (every command there would be refused); otherwise
 * it warns, for threads that ask for a sandbox.
 */
async function checkBubblewrap(config: EffectiveConfig | undefined, hasLocal: boolean, platform: NodeJS.Platform, env: NodeJS.ProcessEnv): Promise<CheckResult> {
  const title = 'bubblewrap (sandbox on this host)';
  if (platform !== 'linux') return check('bubblewrap', title, 'skip', `bubblewrap is for Linux; this host is ${platform}`);
  if (!hasLocal) return check('bubblewrap', title, 'skip', 'there is no `local` environment: remote environments confine commands on their own hosts');
  // Found on PATH exactly as the MCP server's local exec-server finds it, and run as it runs commands.
  const probe = await createBwrapProbe('bwrap', env.PATH)();
  if (probe.ok) return check('bubblewrap', title, 'ok', `\`${probe.path}\` can create a sandbox, with every capability dropped inside`);
  // An invalid config.toml is reported by its own check; its default (read-only) would need bubblewrap.
  const need = config === undefined ? 'sandbox_mode=read-only' : localSandboxNeed(config, true);
  if (need === undefined)
    return check('bubblewrap', title, 'warn', `${probe.message}; the configured sandbox does not confine \`local\`, but a thread that asks for one there is refused`);
  return check('bubblewrap', title, 'fail', `${probe.message}; the configured sandbox (${need}) confines every command on \`local\`, so each one is refused`);
}

/**
 * The user the server runs as. Root is a warning: commands run as root, and all that holds one in
 * is the sandbox, whose mounts bind only because bubblewrap drops every capability inside it;
 * without a sandbox (full access, or a command approved to run outside it) nothing does.
 */
function checkUser(uid: number | undefined): CheckResult {
  const title = 'user running the server';
  if (uid === undefined) return check('user', title, 'skip', `no POSIX user ids on ${process.platform}`);
  const who = `uid ${uid}${userName()}`;
  if (uid !== 0) return check('user', title, 'ok', `${who}: commands run with this user's rights`);
  return check(
    'user',
    title,
    'warn',
    `${who}: every command runs as root. In the sandbox bubblewrap drops all capabilities, which is what keeps a root command inside its mounts; a command run without the sandbox (danger-full-access, or approved to run outside it) can do anything on this host`,
    'run the MCP server (and exec-servers) as an unprivileged user that owns only what the agent may change',
  );
}

/** " (name)" of the current user, or nothing when the user database has no entry. */
function userName(): string {
  try {
    return ` (${userInfo().username})`;
  } catch {
    return '';
  }
}

/** How this host starts commands: the native posix_spawn starter, or Node.js's child_process. */
function checkProcessStart(env: NodeJS.ProcessEnv): CheckResult {
  const title = 'process start (this host)';
  const native = env[NATIVE_SPAWN_ENV] !== '0';
  const starter = processStarter({ native });
  if (starter.kind === 'posix_spawn') return check('process_start', title, 'ok', `posix_spawn through ${starter.path}`);
  if (process.platform !== 'linux') return check('process_start', title, 'skip', `child_process: ${starter.reason}`);
  if (!native) return check('process_start', title, 'ok', `child_process: ${starter.reason}`);
  return check(
    'process_start',
    title,
    'warn',
    `child_process, 1-2 ms slower per command and blocking the server while it forks: ${starter.reason}`,
    'install a C compiler (Debian: apt-get install build-essential), then run `npm rebuild codex-multienv-mcp` (or `npm install` in a checkout)',
  );
}

/** The proxies and extra roots requests use (the model's, and HTTP MCP servers' on local). */
function checkNetwork(network: NetworkSettings): CheckResult {
  const title = 'network (proxy, certificates)';
  const detail = describeNetwork(network);
  if (network.error !== undefined)
    return check('network', title, 'fail', detail, 'model requests and HTTP MCP servers on local fail until the CA variable names a readable PEM bundle (or is unset)');
  const broken = [network.httpsProxy, network.httpProxy].filter((proxy) => proxy !== undefined && 'error' in proxy);
  if (broken.length > 0)
    return check('network', title, 'warn', detail, 'requests that need that proxy fail until the variable holds an http:// or https:// proxy URL (or is unset)');
  return check('network', title, 'ok', detail);
}

/** One tiny request to the configured provider, when its key is present. */
async function checkModel(config: EffectiveConfig | undefined, env: NodeJS.ProcessEnv, home: string, http: HttpExchange): Promise<CheckResult> {
  if (config === undefined) return check('model', 'model provider', 'skip', 'config.toml is invalid');
  const provider = config.modelProviders[config.modelProvider];
  const title = `model provider ${config.modelProvider}`;
  if (provider === undefined) return check('model', title, 'fail', `model provider \`${config.modelProvider}\` is not configured`, 'add it under [model_providers] in config.toml');
  let auth: CodexAuth | undefined;
  try {
    auth = await readCodexAuth(home);
  } catch (error) {
    return check('model', title, 'fail', errorMessage(error), 'fix the file, or sign Codex in again (`codex login --with-api-key`)');
  }
  const credentials = providerCredentials(provider, env, auth);
  const { apiKey, headers } = credentials;
  const target = `${provider.baseUrl} (model ${config.model})`;
  if (provider.envKey !== undefined && apiKey === undefined) {
    return check(
      'model',
      title,
      'warn',
      `${target}: no request sent, ${provider.envKey} is not set in this shell${storedKeyNote(provider, auth)}`,
      `set ${provider.envKey} here to test the provider; the MCP server needs it too (in the \`env\` of your MCP client's server entry)${provider.requiresOpenaiAuth ? ', or sign Codex in with `codex login --with-api-key`' : ''}`,
    );
  }
  const client = new ModelClient({
    baseUrl: provider.baseUrl,
    apiKey,
    headers,
    queryParams: provider.queryParams,
    maxRetries: 0,
    streamMaxRetries: 0,
    idleTimeoutMs: DOCTOR_MODEL_TIMEOUT_MS,
    http,
    userAgent: USER_AGENT,
  });
  try {
    const response = await client.respond(
      { model: config.model, input: [inputMessage('user', MODEL_CHECK_PROMPT)], tools: [], parallelToolCalls: false },
      { signal: AbortSignal.timeout(DOCTOR_MODEL_TIMEOUT_MS) },
    );
    const text = response.output.flatMap((item) => (item.type === 'message' ? item.content.flatMap((part) => (part.type === 'output_text' ? [part.text] : [])) : [])).join('');
    const answer = text.trim().length === 0 ? 'a response without text' : JSON.stringify(text.trim().slice(0, 60));
    const key = credentials.keySource === undefined ? '' : ` (key from ${credentials.keySource})`;
    return check('model', title, 'ok', `${target} answered ${answer}${key}`);
  } catch (error) {
    return check('model', title, 'fail', `${target}: ${withCauses(error)}`, modelFix(error, provider.envKey));
  }
}

/**
 * The engine a new thread gets (as the server decides it: `multienv.engine`, the provider's key,
 * a ChatGPT sign-in, a Codex binary), why, and the Codex CLI found with its version.
 */
async function checkEngine(config: EffectiveConfig | undefined, env: NodeJS.ProcessEnv, home: string): Promise<CheckResult> {
  const title = 'turn engine';
  if (config === undefined) return check('engine', title, 'skip', 'config.toml is invalid');
  const binary = findCodexBinary(config.multienv.codexPath, env, process.cwd());
  const version = binary === undefined ? undefined : await codexVersion(binary, env);
  const codex =
    binary === undefined
      ? `no Codex CLI found${config.multienv.codexPath === undefined ? ' (`codex` on PATH, the @openai/codex package)' : ` at multienv.codex_path ${config.multienv.codexPath}`}`
      : `Codex CLI ${version !== undefined && 'version' in version ? version.version : '(version unknown)'} at ${binary.path} (from ${binary.source})`;
  const provider = config.modelProviders[config.modelProvider];
  let auth: CodexAuth | undefined;
  try {
    auth = await readCodexAuth(home);
  } catch {
    // The model check reports a broken auth.json; here it only means no sign-in to count on.
  }
  const providerUsable = provider !== undefined && missingKeyMessage(config.modelProvider, provider, providerCredentials(provider, env, auth), auth) === undefined;
  const { engine, why } = chooseEngine(config.multienv.engine, { providerUsable, chatgptSignIn: auth?.chatgpt === true, codexBinary: binary });
  const detail = `new threads run on the ${engine} engine (${why}); ${codex}`;
  if (engine === 'codex' && binary === undefined) return check('engine', title, 'fail', detail, 'set multienv.codex_path, put `codex` on PATH, or install @openai/codex');
  if (version !== undefined && 'error' in version)
    return check('engine', title, engine === 'codex' ? 'fail' : 'warn', `${detail}; ${version.error}`, 'check that the Codex binary runs here');
  return check('engine', title, 'ok', detail);
}

/** The message with its causes' messages (fetch says `fetch failed`; the cause says why). */
function withCauses(error: unknown): string {
  const messages = [errorMessage(error)];
  let cause = error instanceof Error ? error.cause : undefined;
  while (cause !== undefined && messages.length < 5) {
    const message = errorMessage(cause);
    if (!messages.some((seen) => seen.includes(message))) messages.push(message);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return messages.join(': ');
}

function modelFix(error: unknown, envKey: string | undefined): string {
  if (error instanceof ModelApiError) {
    if (error.status === 401 || error.status === 403)
      return envKey === undefined ? 'the provider wants credentials: set `env_key` (or `http_headers`) for it in config.toml' : `check the key in ${envKey}`;
    if (error.status === 404) return "check `model` and the provider's `base_url` (requests go to <base_url>/responses)";
    if (error.status === 429) return 'the provider is rate limiting this key; check its quota';
    return 'the provider failed; try again later or check its status page';
  }
  if (error instanceof ModelConnectionError)
    return "check the provider's `base_url`, the network and the proxy (HTTPS_PROXY, NO_PROXY); behind a proxy that inspects TLS, set CODEX_CA_CERTIFICATE to its root certificate";
  if (error instanceof LocalError && error.code === LocalErrorCode.InvalidConfig) return 'correct the variable named above';
  if (error instanceof DOMException && error.name === 'TimeoutError')
    return `the provider did not answer within ${DOCTOR_MODEL_TIMEOUT_MS / 1000} s; check \`base_url\` and the network`;
  return 'check that the provider speaks the Responses API (`wire_api = "responses"`)';
}

/** Runs every check; environments and the model are checked concurrently. */
async function runChecks(options: { env: NodeJS.ProcessEnv; overrides: string[]; profile: string | undefined; logLevel: string }): Promise<CheckResult[]> {
  const home = codexHome(options.env);
  const { result: configResult, config } = await checkConfig(home, options.overrides, options.profile);
  let loaded: { registry: EnvironmentRegistry; localServer: LocalExecServer; source: string } | undefined;
  let environmentsResult: CheckResult;
  try {
    loaded = await loadRegistry(options.env, options.logLevel);
    const count = loaded.registry.list().length;
    const source = loaded.source === 'default' ? `no ${join(home, ENVIRONMENTS_FILE_NAME)}, CODEX_EXEC_SERVER_URL unset` : loaded.source;
    const defaults = loaded.registry.defaultSelection();
    environmentsResult =
      count === 0
        ? check(
            'environments',
            'environments.toml',
            'warn',
            `${source}: no environments, so turns cannot run commands or touch files`,
            `unset CODEX_EXEC_SERVER_URL, or define environments in ${join(home, ENVIRONMENTS_FILE_NAME)}`,
          )
        : check(
            'environments',
            'environments.toml',
            'ok',
            `${source}: ${count} environment${count === 1 ? '' : 's'}${defaults[0] === undefined ? ', no default' : `, default ${defaults[0]}`}`,
          );
  } catch (error) {
    environmentsResult = check(
      'environments',
      'environments.toml',
      'fail',
      errorMessage(error),
      `correct the entry and field named above; the MCP server will not start until then`,
    );
  }
  const network = networkSettings(options.env);
  try {
    const [environments, database, bubblewrap, model, engine] = await Promise.all([
      Promise.all((loaded?.registry.list() ?? []).map((environment) => checkEnvironment(environment))),
      checkDatabase(config, options.env),
      checkBubblewrap(config, loaded === undefined || loaded.registry.get(LOCAL_ENVIRONMENT_ID) !== undefined, process.platform, options.env),
      checkModel(config, options.env, home, new HttpExchange({ network })),
      checkEngine(config, options.env, home),
    ]);
    const mcpServers = checkMcpServers(config, options.env);
    return [
      configResult,
      ...(mcpServers === undefined ? [] : [mcpServers]),
      environmentsResult,
      ...environments,
      // Threads in a database leave the threads folder unused.
      database ?? (await checkThreadsDir(config)),
      checkProcessStart(options.env),
      checkUser(process.geteuid?.()),
      bubblewrap,
      checkNetwork(network),
      model,
      engine,
    ];
  } finally {
    await loaded?.registry.close();
    await loaded?.localServer.close();
  }
}

function formatText(results: CheckResult[], home: string): string {
  const width = Math.max(...results.map((result) => result.title.length));
  const lines = [`codex-multienv doctor ${PACKAGE_VERSION} (CODEX_HOME ${home})`];
  for (const result of results) {
    lines.push(`${result.status.padEnd(4)}  ${result.title.padEnd(width)}  ${result.detail}`);
    if (result.fix !== undefined) lines.push(`${' '.repeat(6 + width + 2)}fix: ${result.fix}`);
  }
  const failed = results.filter((result) => result.status === 'fail').length;
  const warned = results.filter((result) => result.status === 'warn').length;
  lines.push(failed === 0 && warned === 0 ? 'all checks passed' : `${failed} failed, ${warned} warning${warned === 1 ? '' : 's'}`);
  return `${lines.join('\n')}\n`;
}

/**
 * `codex-multienv doctor`: checks config.toml (with `-c` / `--profile`) and its `[mcp_servers]`
 * (naming the entries sessions skip because they launch this server), environments.toml, each
 * environment (connect, initialize, `environment/status`, `environment/info`), the threads
 * folder, how commands are started on this host, the user the server runs as (root is a warning), bubblewrap, the proxies and extra roots in use, and the model provider (one tiny request when its key is set), and says
 * what to fix. `--json` prints `{version, codexHome, ok, checks}`. Exits 1 when a check fails.
 */
export async function runDoctor(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, config: { type: 'string', short: 'c', multiple: true }, profile: { type: 'string', short: 'p' }, 'log-level': { type: 'string' } },
    strict: true,
  });
  // Connection failures are reported as checks; the registry's own warnings would repeat them.
  const results = await runChecks({ env, overrides: values.config ?? [], profile: values.profile, logLevel: values['log-level'] ?? 'error' });
  const ok = results.every((result) => result.status !== 'fail');
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ version: PACKAGE_VERSION, codexHome: codexHome(env), ok, checks: results }, null, 2)}\n`);
  } else {
    process.stdout.write(formatText(results, codexHome(env)));
  }
  return ok ? 0 : 1;
}
