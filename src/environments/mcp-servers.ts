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
 * thread. One server's connection (the only user of `@modelcontextprotocol/sdk/client`) is in
 * `mcp-server-connection.ts`, the stdio transport through an executor in `mcp-process-transport.ts`.
 */
import { setMaxListeners } from 'node:events';
import type { McpServerConfig } from '../config/mcp-servers.js';
import { linkedController } from '../util/abort.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { McpServerConnection, type McpServerConnectionOptions, type McpServerStatus, type McpToolBinding } from './mcp-server-connection.js';
import type { EnvironmentRegistry } from './registry.js';

// Re-exported: a thread's users see these through ThreadMcpServers.
export type { McpServerStatus, McpToolBinding, McpToolResult } from './mcp-server-connection.js';

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
export interface ThreadMcpServersOptions extends McpServerConnectionOptions {
  /** The thread's `[mcp_servers]`. */
  configs: readonly McpServerConfig[];
  registry: EnvironmentRegistry;
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
    const { controller: preparing, unlink } = linkedController(signal);
    setMaxListeners(0, preparing.signal);
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
    await Promise.all(work).finally(unlink);
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
      const status: McpServerStatus = {
        name: config.name,
        transport: config.transport.type,
        state: config.enabled ? 'not_started' : 'stopped',
        required: config.required,
        tools: 0,
      };
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
