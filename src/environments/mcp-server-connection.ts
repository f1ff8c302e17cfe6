/**
 * One MCP server of a thread in one environment: an SDK client over a stdio transport through the
 * environment's executor (see `mcp-process-transport.ts`) or over Streamable HTTP, and the state
 * of its life (started lazily, its tool list cached, failed or stopped for good).
 */
import { isAbsolute, posix } from 'node:path';
// The SDK's client and its HTTP transport (with the OAuth schemas that come with it) load at the
// first server started, not with the MCP server: most sessions configure none, and building their
// zod schemas was a tenth of a cold start.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError, ToolListChangedNotificationSchema, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { McpHttpTransportConfig, McpServerConfig, McpStdioTransportConfig } from '../config/mcp-servers.js';
import { linkedController, withDeadline } from '../util/abort.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { NESTED_ENV_VAR, NESTED_MARK } from '../util/nested.js';
import type { Environment } from './environment.js';
import { ExecProcessTransport } from './mcp-process-transport.js';
import type { EnvironmentRegistry } from './registry.js';

/**
 * Variables a stdio server inherits from the environment it runs in, besides its `env_vars` (as
 * Codex, a minimal set: enough to find programs and a home, never the caller's secrets).
 */
export const DEFAULT_MCP_STDIO_ENV_VARS: readonly string[] = ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'USER', 'USERNAME', 'LANG', 'LC_ALL', 'TERM', 'TMPDIR', 'TEMP', 'TMP', 'TZ'];
/** How long a stopping stdio server gets after SIGINT before it is killed. */
export const DEFAULT_MCP_SHUTDOWN_GRACE_MS = 2_000;
/** Bound on the `tools/list` pages read from one server. */
const MAX_TOOL_LIST_PAGES = 100;
/** The SDK's code for a request that got no answer in time. */
const REQUEST_TIMEOUT_CODE: number = ErrorCode.RequestTimeout;

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

/** Settings every server of a thread shares (part of `ThreadMcpServersOptions`). */
export interface McpServerConnectionOptions {
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
}

/**
 * One server in one environment: an SDK client over a stdio-through-executor or HTTP transport.
 * It stops with its environment; a failed or stopped one is replaced at the next turn (see
 * {@link McpServerConnection.usable}).
 */
export class McpServerConnection {
  readonly config: McpServerConfig;
  readonly environment: Environment;
  readonly #cwd: string;
  readonly #options: McpServerConnectionOptions;
  readonly #logger: Logger;
  #state: McpServerState = 'not_started';
  #error?: string;
  #client?: Client;
  #transport?: ExecProcessTransport | StreamableHTTPClientTransport;
  #tools?: McpToolBinding[];
  #toolsStale = false;
  #starting?: Promise<McpToolBinding[]>;
  #unregister?: () => void;

  constructor(config: McpServerConfig, environment: Environment, cwd: string, options: McpServerConnectionOptions, logger: Logger) {
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

  /** Its state, for status tools. */
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

  /** Stops the server (ends an HTTP session, stops a process); idempotent. */
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
    if (transport !== undefined && !(transport instanceof ExecProcessTransport) && wasRunning) {
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
    const { controller: starting, unlink } = linkedController(signal);
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
      unlink();
    }
  }

  async #connect(signal: AbortSignal): Promise<void> {
    const transport = this.config.transport.type === 'stdio' ? await this.#stdioTransport(this.config.transport, signal) : await this.#httpTransport(this.config.transport);
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
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

  async #httpTransport(config: McpHttpTransportConfig): Promise<StreamableHTTPClientTransport> {
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
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
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
      .map((tool) => ({
        server: this.config.name,
        environmentId: this.environment.id,
        cwd: this.#cwd,
        tool,
        call: (args, callSignal) => this.#call(client, tool.name, args, callSignal),
      }));
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
    const { controller: callSignal, unlink } = linkedController(signal);
    try {
      const result = await client.callTool({ name: tool, arguments: args }, undefined, { signal: callSignal.signal, timeout: timeoutMs });
      if ('toolResult' in result) return { content: [{ type: 'text', text: JSON.stringify(result.toolResult) }] };
      return result;
    } catch (error) {
      if (error instanceof McpError && error.code === REQUEST_TIMEOUT_CODE && !signal.aborted) {
        throw new LocalError(LocalErrorCode.RequestTimeout, `the MCP tool call did not finish within ${timeoutMs} ms (tool_timeout_sec)`, { cause: error });
      }
      if (this.#client !== client || this.#state !== 'ready') {
        throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server \`${this.config.name}\` stopped during the call: ${this.#error ?? errorMessage(error)}`, {
          cause: error,
        });
      }
      throw error;
    } finally {
      unlink();
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
