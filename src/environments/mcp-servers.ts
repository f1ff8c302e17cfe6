/**
 * MCP servers inside sessions, run where their environment is (issue 5). A stdio server is started
 * through the environment's executor (`process/start` with a stdin pipe; on `local` that is a
 * plain child of this process) and spoken to over the process's stdin/stdout. A Streamable HTTP
 * server is reached with the SDK's client transport over a fetch that, on a remote environment,
 * sends every request as that executor's `http/request` (so DNS, routing and loopback resolve
 * there), and on `local` is a direct fetch.
 *
 * One {@link ThreadMcpServers} per thread: servers start lazily, the first time a turn can use
 * them, keep their tool lists cached, restart at the next turn after a crash, and stop with the
 * thread. The only user of `@modelcontextprotocol/sdk/client`.
 */
import { setMaxListeners } from 'node:events';
import { isAbsolute, posix } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError, ToolListChangedNotificationSchema, type CallToolResult, type JSONRPCMessage, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { McpHttpTransportConfig, McpServerConfig, McpStdioTransportConfig } from '../config/mcp-servers.js';
import type { RemoteProcess } from '../exec/remote-process.js';
import { sleep, withDeadline } from '../util/abort.js';
import { deferred } from '../util/deferred.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { NESTED_ENV_VAR, NESTED_MARK } from '../util/nested.js';
import type { Environment } from './environment.js';
import type { EnvironmentRegistry } from './registry.js';

/**
 * Variables a stdio server inherits from the environment it runs in, besides its `env_vars` (as
 * Codex, a minimal set: enough to find programs and a home, never the caller's secrets).
 */
export const DEFAULT_MCP_STDIO_ENV_VARS: readonly string[] = ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'USER', 'USERNAME', 'LANG', 'LC_ALL', 'TERM', 'TMPDIR', 'TEMP', 'TMP', 'TZ'];
/** How long a stopping stdio server gets after SIGINT before it is killed. */
export const DEFAULT_MCP_SHUTDOWN_GRACE_MS = 2_000;
/** Bound on one line a stdio server writes (one JSON-RPC message). */
export const MAX_MCP_STDIO_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Bound on the `tools/list` pages read from one server. */
const MAX_TOOL_LIST_PAGES = 100;
/** The SDK's code for a request that got no answer in time. */
const REQUEST_TIMEOUT_CODE: number = ErrorCode.RequestTimeout;
/** Bytes of a stdio server's stderr kept to explain a failure. */
const STDERR_TAIL_BYTES = 4096;

/** The result of a tool call, as the MCP spec defines it. */
export type McpToolResult = CallToolResult;

/** One tool as a server lists it. */
export type McpToolInfo = Tool;

/** Where a server is in its life. */
export type McpServerState = 'not_started' | 'starting' | 'ready' | 'failed' | 'stopped';

/** A JSON view of one server of one thread, for status tools. */
export interface McpServerStatus {
  name: string;
  transport: 'stdio' | 'streamable_http';
  /** The environment it runs in, or is bound to (none: not started and not bound). */
  environmentId?: string;
  state: McpServerState;
  required: boolean;
  /** Tools offered to the model (after `enabled_tools` / `disabled_tools`). */
  tools: number;
  /** Why it is not running. */
  error?: string;
}

/** A tool of a running server, ready to be offered to the model. */
export interface McpToolBinding {
  server: string;
  /** The environment the server runs in. */
  environmentId: string;
  /** The thread's working directory in that environment. */
  cwd: string;
  tool: McpToolInfo;
  /**
   * Calls the tool, bounded by the server's `tool_timeout_sec`. Rejects with a clear error when
   * the server is gone or the call times out; a tool's own failure is a result with `isError`.
   */
  call(args: Record<string, unknown>, signal: AbortSignal): Promise<McpToolResult>;
}

/** A server that could not be used in a turn. */
export interface McpServerFailure {
  server: string;
  environmentId: string;
  required: boolean;
  error: string;
}

/** What a turn can use: the tools of every running server, and the servers that failed. */
export interface McpTurnServers {
  tools: McpToolBinding[];
  failures: McpServerFailure[];
}

/** An environment of a turn: its id and the thread's working directory there. */
export interface McpTurnEnvironment {
  id: string;
  cwd: string;
}

/** Options of {@link ThreadMcpServers}. */
export interface ThreadMcpServersOptions {
  /** The thread's `[mcp_servers]`. */
  configs: readonly McpServerConfig[];
  registry: EnvironmentRegistry;
  /**
   * Variables `bearer_token_env_var` and `env_http_headers` are read from (this process's: as in
   * Codex, the token is the caller's, wherever the server runs).
   */
  launcherEnv: Readonly<Record<string, string | undefined>>;
  /** `clientInfo.version` sent to servers. */
  clientVersion: string;
  /** Used for Streamable HTTP servers on `local`. @default globalThis.fetch */
  directFetch?: typeof fetch;
  /** @default DEFAULT_MCP_SHUTDOWN_GRACE_MS */
  shutdownGraceMs?: number;
  logger?: Logger;
}

/**
 * The MCP servers of one thread. {@link prepare} is called before each turn: it starts the servers
 * the turn can use (their environment is among the turn's), restarts crashed ones, and returns
 * their tools; a failure is reported, never thrown.
 */
export class ThreadMcpServers {
  readonly #options: ThreadMcpServersOptions;
  readonly #logger: Logger;
  readonly #connections = new Map<string, McpServerConnection>();
  #closed = false;

  constructor(options: ThreadMcpServersOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** True when the thread has at least one enabled server. */
  get configured(): boolean {
    return this.#options.configs.some((config) => config.enabled);
  }

  /**
   * Starts what the turn needs and returns its tools. A server bound to an environment the turn
   * did not select is not offered; an unbound one runs in the turn's primary environment the
   * first time it starts, and stays there.
   */
  async prepare(environments: readonly McpTurnEnvironment[], signal: AbortSignal): Promise<McpTurnServers> {
    const tools: McpToolBinding[] = [];
    const failures: McpServerFailure[] = [];
    if (this.#closed) return { tools, failures };
    // One listener on the turn's signal, whatever the number of servers starting at once.
    const preparing = new AbortController();
    setMaxListeners(0, preparing.signal);
    const forward = (): void => preparing.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener('abort', forward, { once: true });
    const work = this.#options.configs
      .filter((config) => config.enabled)
      .map(async (config) => {
        let connection = this.#connections.get(config.name);
        if (connection !== undefined && !connection.usable(this.#options.registry)) {
          this.#connections.delete(config.name);
          await connection.close();
          connection = undefined;
        }
        const environmentId = connection?.environment.id ?? config.environmentId ?? environments[0]?.id;
        const turnEnvironment = environments.find((environment) => environment.id === environmentId);
        if (environmentId === undefined || turnEnvironment === undefined) return;
        if (connection === undefined) {
          const environment = this.#options.registry.get(environmentId);
          if (environment === undefined) {
            failures.push({ server: config.name, environmentId, required: config.required, error: `environment \`${environmentId}\` does not exist` });
            return;
          }
          connection = new McpServerConnection(config, environment, turnEnvironment.cwd, this.#options, this.#logger);
          this.#connections.set(config.name, connection);
        }
        try {
          tools.push(...(await connection.ready(preparing.signal)));
        } catch (error) {
          failures.push({ server: config.name, environmentId, required: config.required, error: errorMessage(error) });
        }
      });
    await Promise.all(work).finally(() => signal.removeEventListener('abort', forward));
    // Promise.all finishes in any order; the model sees the servers in config order.
    const order = new Map(this.#options.configs.map((config, index) => [config.name, index]));
    const rank = (server: string): number => order.get(server) ?? 0;
    tools.sort((a, b) => rank(a.server) - rank(b.server));
    failures.sort((a, b) => rank(a.server) - rank(b.server));
    return { tools, failures };
  }

  /** Every configured server with its state. */
  statuses(): McpServerStatus[] {
    return this.#options.configs.map((config) => {
      const connection = this.#connections.get(config.name);
      if (connection !== undefined) return connection.status();
      const status: McpServerStatus = { name: config.name, transport: config.transport.type, state: config.enabled ? 'not_started' : 'stopped', required: config.required, tools: 0 };
      if (config.environmentId !== undefined) status.environmentId = config.environmentId;
      if (!config.enabled) status.error = 'disabled in the config (enabled = false)';
      return status;
    });
  }

  /** Stops every server; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const connections = [...this.#connections.values()];
    this.#connections.clear();
    await Promise.all(connections.map((connection) => connection.close()));
  }
}

/** One server in one environment: an SDK client over a stdio-through-executor or HTTP transport. */
class McpServerConnection {
  readonly config: McpServerConfig;
  readonly environment: Environment;
  readonly #cwd: string;
  readonly #options: ThreadMcpServersOptions;
  readonly #logger: Logger;
  #state: McpServerState = 'not_started';
  #error?: string;
  #client?: Client;
  #transport?: ExecProcessTransport | StreamableHTTPClientTransport;
  #tools?: McpToolBinding[];
  #toolsStale = false;
  #starting?: Promise<McpToolBinding[]>;
  #unregister?: () => void;

  constructor(config: McpServerConfig, environment: Environment, cwd: string, options: ThreadMcpServersOptions, logger: Logger) {
    this.config = config;
    this.environment = environment;
    this.#cwd = cwd;
    this.#options = options;
    this.#logger = logger.child(`mcp:${config.name}`);
    // A removed or replaced environment stops its servers while it can still reach them.
    this.#unregister = environment.beforeClose(() => this.close());
  }

  /** False once it failed or its environment was replaced or removed: the next turn starts a new one. */
  usable(registry: EnvironmentRegistry): boolean {
    if (this.#state === 'failed' || this.#state === 'stopped') return false;
    return registry.get(this.environment.id) === this.environment;
  }

  status(): McpServerStatus {
    const status: McpServerStatus = {
      name: this.config.name,
      transport: this.config.transport.type,
      environmentId: this.environment.id,
      state: this.#state,
      required: this.config.required,
      tools: this.#state === 'ready' ? (this.#tools?.length ?? 0) : 0,
    };
    if (this.#error !== undefined && this.#state !== 'ready') status.error = this.#error;
    return status;
  }

  /** Starts the server (once) and returns its tools, re-listing them after `tools/list_changed`. */
  ready(signal: AbortSignal): Promise<McpToolBinding[]> {
    if (this.#state === 'ready' && this.#tools !== undefined && !this.#toolsStale) return Promise.resolve(this.#tools);
    this.#starting ??= this.#start(signal).finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async close(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#unregister?.();
    this.#unregister = undefined;
    const wasRunning = this.#state === 'ready' || this.#state === 'starting';
    this.#state = 'stopped';
    this.#error ??= 'stopped';
    const client = this.#client;
    const transport = this.#transport;
    this.#client = undefined;
    this.#transport = undefined;
    if (transport instanceof StreamableHTTPClientTransport && wasRunning) {
      // End the server's session (Codex sends this DELETE too); bounded, best effort.
      await withDeadline(transport.terminateSession(), this.#shutdownGraceMs, () => new Error('session DELETE timed out')).catch((error: unknown) =>
        this.#logger.debug('ending the MCP session failed', { error: errorMessage(error) }),
      );
    }
    await client?.close().catch((error: unknown) => this.#logger.debug('closing the MCP client failed', { error: errorMessage(error) }));
    if (wasRunning) this.#logger.info('MCP server stopped', { environment: this.environment.id });
  }

  get #shutdownGraceMs(): number {
    return this.#options.shutdownGraceMs ?? DEFAULT_MCP_SHUTDOWN_GRACE_MS;
  }

  async #start(signal: AbortSignal): Promise<McpToolBinding[]> {
    const timeoutMs = this.config.startupTimeoutMs;
    const where = `MCP server \`${this.config.name}\` on environment \`${this.environment.id}\``;
    const starting = new AbortController();
    const stop = (): void => starting.abort(signal.reason);
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    try {
      if (this.#state !== 'ready') {
        this.#state = 'starting';
        await withDeadline(
          this.#connect(starting.signal),
          timeoutMs,
          () => new LocalError(LocalErrorCode.RequestTimeout, `did not start within ${timeoutMs} ms (startup_timeout_sec)`),
          starting.signal,
        );
      }
      this.#toolsStale = false;
      const tools = await withDeadline(
        this.#listTools(starting.signal),
        timeoutMs,
        () => new LocalError(LocalErrorCode.RequestTimeout, `did not list its tools within ${timeoutMs} ms (startup_timeout_sec)`),
        starting.signal,
      );
      this.#tools = tools;
      this.#state = 'ready';
      this.#error = undefined;
      this.#logger.info('MCP server ready', { environment: this.environment.id, tools: tools.length });
      return tools;
    } catch (error) {
      starting.abort(error);
      const reason = this.#failureReason(error);
      this.#logger.warn('MCP server failed to start', { environment: this.environment.id, error: reason });
      await this.close();
      this.#state = 'failed';
      this.#error = reason;
      throw new LocalError(LocalErrorCode.ProcessFailed, `${where} failed to start: ${reason}`, { cause: error });
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  async #connect(signal: AbortSignal): Promise<void> {
    const transport = this.config.transport.type === 'stdio' ? await this.#stdioTransport(this.config.transport, signal) : this.#httpTransport(this.config.transport);
    // A start that timed out meanwhile must not launch a process nobody will stop.
    signal.throwIfAborted();
    const client = new Client({ name: 'codex-multienv', version: this.#options.clientVersion }, { capabilities: {} });
    this.#transport = transport;
    this.#client = client;
    client.onclose = () => this.#lost(client);
    client.onerror = (error) => this.#logger.debug('MCP transport error', { error: error.message });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      this.#toolsStale = true;
    });
    await client.connect(transport, { signal, timeout: this.config.startupTimeoutMs });
  }

  async #stdioTransport(config: McpStdioTransportConfig, signal: AbortSignal): Promise<ExecProcessTransport> {
    const execClient = await this.environment.client(signal);
    const cwd = config.cwd === undefined ? this.#cwd : isAbsolute(config.cwd) ? config.cwd : posix.join(this.#cwd, config.cwd);
    return new ExecProcessTransport(
      () =>
        execClient.startProcess({
          argv: [config.command, ...config.args],
          cwd,
          // The marker first, so an entry's own `env` can override it: this server, started by a
          // session (say through a wrapper script), refuses to serve instead of nesting itself.
          env: { [NESTED_ENV_VAR]: NESTED_MARK, ...config.env },
          // The executor builds the base environment from its own: the default set plus the
          // `env_vars` names, resolved where the server runs.
          envPolicy: { inherit: 'all', ignoreDefaultExcludes: true, exclude: [], set: {}, includeOnly: [...DEFAULT_MCP_STDIO_ENV_VARS, ...config.envVars] },
          tty: false,
          pipeStdin: true,
          sandbox: null,
        }),
      { label: `${this.config.name}@${this.environment.id}`, shutdownGraceMs: this.#shutdownGraceMs },
    );
  }

  #httpTransport(config: McpHttpTransportConfig): StreamableHTTPClientTransport {
    const headers: Record<string, string> = { ...config.httpHeaders };
    const env = this.#options.launcherEnv;
    for (const [name, variable] of Object.entries(config.envHttpHeaders)) {
      const value = env[variable];
      if (value !== undefined && value.length > 0) headers[name] = value;
    }
    if (config.bearerTokenEnvVar !== undefined) {
      const token = env[config.bearerTokenEnvVar];
      if (token === undefined || token.length === 0) {
        throw new LocalError(LocalErrorCode.InvalidConfig, `the variable \`${config.bearerTokenEnvVar}\` named by bearer_token_env_var is not set`);
      }
      headers.authorization = `Bearer ${token}`;
    }
    const environment = this.environment;
    const fetchFn: typeof fetch =
      environment.kind === 'local'
        ? (this.#options.directFetch ?? globalThis.fetch)
        : async (input, init) => (await environment.client(init?.signal ?? undefined)).fetch(input, init);
    return new StreamableHTTPClientTransport(new URL(config.url), { fetch: fetchFn, requestInit: { headers } });
  }

  async #listTools(signal: AbortSignal): Promise<McpToolBinding[]> {
    const client = this.#client;
    if (client === undefined) throw new LocalError(LocalErrorCode.ConnectionClosed, 'not connected');
    const listed: McpToolInfo[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_TOOL_LIST_PAGES; page++) {
      const result = await client.listTools(cursor === undefined ? undefined : { cursor }, { signal, timeout: this.config.startupTimeoutMs });
      listed.push(...result.tools);
      cursor = result.nextCursor;
      if (cursor === undefined) break;
    }
    const { enabledTools, disabledTools } = this.config;
    return listed
      .filter((tool) => (enabledTools === undefined || enabledTools.includes(tool.name)) && !disabledTools.includes(tool.name))
      .map((tool) => ({ server: this.config.name, environmentId: this.environment.id, cwd: this.#cwd, tool, call: (args, callSignal) => this.#call(client, tool.name, args, callSignal) }));
  }

  async #call(client: Client, tool: string, args: Record<string, unknown>, signal: AbortSignal): Promise<McpToolResult> {
    if (this.#client !== client || this.#state !== 'ready') {
      throw new LocalError(
        LocalErrorCode.ConnectionClosed,
        `MCP server \`${this.config.name}\` on environment \`${this.environment.id}\` is not running${this.#error === undefined ? '' : `: ${this.#error}`}; it is restarted at the next turn`,
      );
    }
    const timeoutMs = this.config.toolTimeoutMs;
    // The SDK never removes the abort listener it adds to a request's signal; a per-call signal
    // keeps those from piling up on the turn's.
    const callSignal = new AbortController();
    const forward = (): void => callSignal.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener('abort', forward, { once: true });
    try {
      const result = await client.callTool({ name: tool, arguments: args }, undefined, { signal: callSignal.signal, timeout: timeoutMs });
      if ('toolResult' in result) return { content: [{ type: 'text', text: JSON.stringify(result.toolResult) }] };
      return result;
    } catch (error) {
      if (error instanceof McpError && error.code === REQUEST_TIMEOUT_CODE && !signal.aborted) {
        throw new LocalError(LocalErrorCode.RequestTimeout, `the MCP tool call did not finish within ${timeoutMs} ms (tool_timeout_sec)`, { cause: error });
      }
      if (this.#client !== client || this.#state !== 'ready') {
        throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server \`${this.config.name}\` stopped during the call: ${this.#error ?? errorMessage(error)}`, { cause: error });
      }
      throw error;
    } finally {
      signal.removeEventListener('abort', forward);
    }
  }

  /** The transport closed on its own: the process exited, the environment went away. */
  #lost(client: Client): void {
    if (this.#client !== client || this.#state === 'stopped') return;
    const transport = this.#transport;
    const reason = transport instanceof ExecProcessTransport ? transport.exitDescription() : 'the connection closed';
    this.#state = 'failed';
    this.#error = reason;
    // The transport stays: a failing start still reads its exit code and stderr.
    this.#client = undefined;
    this.#logger.warn('MCP server stopped unexpectedly', { environment: this.environment.id, error: reason });
  }

  #failureReason(error: unknown): string {
    const transport = this.#transport;
    const base = errorMessage(error);
    if (!(transport instanceof ExecProcessTransport) || !transport.finished) return base;
    return `${base} (${transport.exitDescription()})`;
  }
}

/** Options of {@link ExecProcessTransport}. */
interface ExecProcessTransportOptions {
  /** For messages: `<server>@<environment>`. */
  label: string;
  shutdownGraceMs: number;
}

/**
 * The MCP stdio transport over a process of an exec-server: messages are NDJSON on the process's
 * stdin (`process/write`) and stdout (`process/output`). The executor has no way to close stdin,
 * so stopping is SIGINT, then SIGKILL after a grace period.
 */
class ExecProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  readonly #startProcess: () => Promise<RemoteProcess>;
  readonly #options: ExecProcessTransportOptions;
  readonly #buffer = new ReadBuffer({ maxBufferSize: MAX_MCP_STDIO_MESSAGE_BYTES });
  readonly #finished = deferred<void>();
  #process?: RemoteProcess;
  #stderr = Buffer.alloc(0);
  #exitCode?: number;
  #failure?: Error;
  #writes: Promise<void> = Promise.resolve();
  #closing = false;
  #closeReported = false;

  constructor(startProcess: () => Promise<RemoteProcess>, options: ExecProcessTransportOptions) {
    this.#startProcess = startProcess;
    this.#options = options;
  }

  /** True once the process is gone. */
  get finished(): boolean {
    return this.#process?.finished ?? false;
  }

  /** How the process ended, with the tail of its stderr. */
  exitDescription(): string {
    const how = this.#failure !== undefined ? errorMessage(this.#failure) : this.#exitCode !== undefined ? `the process exited with code ${this.#exitCode}` : 'the process ended';
    const stderr = this.#stderr.toString('utf8').trim();
    return stderr.length === 0 ? how : `${how}; its stderr ends with: ${stderr}`;
  }

  async start(): Promise<void> {
    const process = await this.#startProcess();
    this.#process = process;
    void this.#pump(process);
    if (this.#closing) {
      // Closed while the process was starting.
      await process.terminate().catch(() => undefined);
      throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server ${this.#options.label} was stopped while starting`);
    }
  }

  send(message: JSONRPCMessage): Promise<void> {
    // One write at a time: the executor's stdin must receive whole lines in order.
    const write = this.#writes.then(async () => {
      const process = this.#process;
      if (process === undefined || this.#closing || process.finished) throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server ${this.#options.label} is not running`);
      const status = await process.write(serializeMessage(message));
      if (status !== 'accepted') throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server ${this.#options.label}: writing to its stdin failed (${status})`);
    });
    this.#writes = write.catch(() => undefined);
    return write;
  }

  async close(): Promise<void> {
    if (this.#closing) {
      await this.#finished.promise;
      return;
    }
    this.#closing = true;
    const process = this.#process;
    if (process !== undefined && !process.finished) {
      await process.interrupt().catch(() => undefined);
      const exited = await Promise.race([this.#finished.promise.then(() => true), sleep(this.#options.shutdownGraceMs).then(() => false)]);
      if (!exited) {
        await process.terminate().catch(() => undefined);
        await Promise.race([this.#finished.promise, sleep(this.#options.shutdownGraceMs)]);
      }
    } else if (process === undefined) {
      this.#finished.resolve();
    }
    this.#reportClose();
  }

  async #pump(process: RemoteProcess): Promise<void> {
    try {
      for await (const event of process.events()) {
        if (event.kind === 'output') {
          if (event.stream === 'stderr') this.#keepStderr(event.data);
          else this.#onStdout(event.data);
        } else if (event.kind === 'exited') {
          this.#exitCode = event.exitCode;
        } else if (event.kind === 'failed') {
          this.#failure = event.error;
        }
      }
    } catch (error) {
      this.#failure = error instanceof Error ? error : new Error(String(error));
    }
    this.#finished.resolve();
    this.#reportClose();
  }

  #onStdout(data: Buffer): void {
    try {
      this.#buffer.append(data);
    } catch {
      this.onerror?.(new LocalError(LocalErrorCode.FrameTooLarge, `MCP server ${this.#options.label} wrote a line longer than ${MAX_MCP_STDIO_MESSAGE_BYTES} bytes`));
      void this.close();
      return;
    }
    for (;;) {
      let message: JSONRPCMessage | null;
      try {
        message = this.#buffer.readMessage();
      } catch (error) {
        // A line that is not a JSON-RPC message (a stray log line): skip it.
        this.onerror?.(new LocalError(LocalErrorCode.ProtocolViolation, `MCP server ${this.#options.label} wrote a line that is not a JSON-RPC message: ${errorMessage(error)}`));
        continue;
      }
      if (message === null) return;
      this.onmessage?.(message);
    }
  }

  #keepStderr(data: Buffer): void {
    const joined = Buffer.concat([this.#stderr, data]);
    this.#stderr = joined.length > STDERR_TAIL_BYTES ? joined.subarray(joined.length - STDERR_TAIL_BYTES) : joined;
  }

  #reportClose(): void {
    if (this.#closeReported) return;
    this.#closeReported = true;
    this.onclose?.();
  }
}
