import type { ExecClient, ExecClientOptions, ExecConnector } from '../exec/client.js';
import { describeReconnect } from '../exec/remote-process.js';
import type { EnvironmentInfo } from '../protocol/exec.js';
import type { MessageTransport } from '../transport/transport.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';

/**
 * Whether this side can use an environment now, with Codex's values: `ready` (connected),
 * `pending` (not connected yet, or a dropped connection being resumed), `disconnected` (the last
 * attempt failed); Codex's `unknown` is never given here. Not the exec-server's
 * `environment/status` method (`EnvironmentStatus` in protocol/exec.ts), which asks a connected
 * executor about itself.
 */
export type EnvironmentConnectionStatus = 'ready' | 'pending' | 'disconnected' | 'unknown';

/** How an environment is reached. */
export type EnvironmentKind = 'local' | 'websocket' | 'stdio';

/** A JSON-friendly view of an environment for status tools and the CLI. */
export interface EnvironmentDescription {
  id: string;
  kind: EnvironmentKind;
  status: EnvironmentConnectionStatus;
  /**
   * The last connection error when the environment is disconnected; while it is `pending`
   * because a dropped connection is being resumed, the reconnect's attempt, start and last error.
   */
  error?: string;
  /** The websocket URL or the stdio command line. */
  endpoint: string;
  /** Where the definition came from (`environments.toml`, `environment/add`, …). */
  source: string;
  /** Executor facts once connected. */
  shell?: string;
  cwd?: string;
  os?: string;
  executorVersion?: string;
  /** `exec` and `filesystem` (always true for an exec-server) plus the executor's own flags. */
  capabilities?: Record<string, boolean>;
  /** The environment's own permission profile; absent: the thread's default applies. */
  permissions?: string;
  /**
   * Where commands' variables start from: `launcher` (this server's own environment, as it was
   * launched) for `local`, `executor` (the exec-server's own environment on its host) otherwise.
   * The shell environment policy is applied on top, on that host.
   */
  commandEnvironmentBase: CommandEnvironmentBase;
}

/** See {@link EnvironmentDescription.commandEnvironmentBase}. */
export type CommandEnvironmentBase = 'launcher' | 'executor';

/** Options of {@link Environment}. */
export interface EnvironmentOptions {
  id: string;
  kind: EnvironmentKind;
  endpoint: string;
  source: string;
  connector: ExecConnector;
  client?: Omit<ExecClientOptions, 'signal'>;
  logger?: Logger;
  /** The environment's own permission profile name. */
  permissions?: string;
}

/**
 * One execution environment: a lazily connected exec client with a status. The first use
 * connects (single-flight); a failed or lost connection is retried on the next use.
 */
export class Environment {
  readonly id: string;
  readonly kind: EnvironmentKind;
  readonly endpoint: string;
  readonly source: string;
  /** The environment's own permission profile name; undefined: the thread's default. */
  readonly permissions: string | undefined;
  readonly #options: EnvironmentOptions;
  readonly #logger: Logger;
  #client?: ExecClient;
  #connecting?: Promise<ExecClient>;
  #lastError?: string;
  #closed = false;
  readonly #beforeClose = new Set<() => Promise<void>>();

  constructor(options: EnvironmentOptions) {
    this.id = options.id;
    this.kind = options.kind;
    this.endpoint = options.endpoint;
    this.source = options.source;
    this.permissions = options.permissions;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** The current status; never connects. */
  get status(): EnvironmentConnectionStatus {
    if (this.#client !== undefined) {
      if (this.#client.state === 'connected') return 'ready';
      if (this.#client.state === 'reconnecting') return 'pending';
      return 'disconnected';
    }
    if (this.#connecting !== undefined) return 'pending';
    return this.#lastError === undefined ? 'pending' : 'disconnected';
  }

  /** The last connection error, if any; while a dropped connection is resumed, how that goes. */
  get lastError(): string | undefined {
    if (this.#client?.state === 'closed') return errorMessage(this.#client.lastError ?? 'disconnected');
    const reconnecting = this.#client?.reconnecting;
    if (reconnecting !== undefined) return describeReconnect(reconnecting);
    return this.#lastError;
  }

  /** Executor facts, once connected. */
  get info(): EnvironmentInfo | undefined {
    return this.#client?.info;
  }

  /** Returns a connected client, connecting on first use. */
  client(signal?: AbortSignal): Promise<ExecClient> {
    if (this.#closed) return Promise.reject(new Error(`environment \`${this.id}\` was removed`));
    if (this.#client !== undefined && this.#client.state !== 'closed') return Promise.resolve(this.#client);
    this.#connecting ??= this.#connect(signal).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  /**
   * Opens another connection to the environment's exec-server (for a relay that gives another
   * client access there); the environment's own client is not involved. A websocket environment
   * gets a separate connection and session; a stdio one shares the command it already runs (see
   * `stdioConnector`), with the session's ids kept apart per connection.
   */
  openTransport(signal?: AbortSignal): Promise<MessageTransport> {
    if (this.#closed) return Promise.reject(new LocalError(LocalErrorCode.ConnectionClosed, `environment \`${this.id}\` was removed`));
    return this.#options.connector.connect(signal);
  }

  /** Connects if needed and reports the resulting status; never throws. */
  async probe(signal?: AbortSignal): Promise<EnvironmentDescription> {
    try {
      await this.client(signal);
    } catch {
      // The status and error say what happened.
    }
    return this.describe();
  }

  /** The JSON view of this environment. */
  describe(): EnvironmentDescription {
    const info = this.info;
    const description: EnvironmentDescription = {
      id: this.id,
      kind: this.kind,
      status: this.status,
      endpoint: this.endpoint,
      source: this.source,
      commandEnvironmentBase: this.kind === 'local' ? 'launcher' : 'executor',
      ...(this.permissions === undefined ? {} : { permissions: this.permissions }),
    };
    const error = this.status === 'ready' ? undefined : this.lastError;
    if (error !== undefined) description.error = error;
    if (info !== undefined) {
      if (info.shell?.name !== undefined) description.shell = info.shell.name;
      if (typeof info.cwd === 'string') description.cwd = info.cwd;
      if (typeof info.platformOs === 'string') description.os = info.platformOs;
      if (typeof info.executorVersion === 'string') description.executorVersion = info.executorVersion;
      description.capabilities = { exec: true, filesystem: true, ...info.capabilities };
    }
    return description;
  }

  /**
   * Registers work to finish while the connection is still open when the environment is closed
   * (removed or replaced), such as stopping the processes of MCP servers: a websocket session
   * would otherwise keep them until it expires. Returns the unregister function.
   */
  beforeClose(listener: () => Promise<void>): () => void {
    this.#beforeClose.add(listener);
    return () => this.#beforeClose.delete(listener);
  }

  /** Disconnects; the environment cannot be used afterwards. */
  async close(): Promise<void> {
    if (!this.#closed) {
      const listeners = [...this.#beforeClose];
      this.#beforeClose.clear();
      await Promise.all(
        listeners.map((listener) =>
          listener().catch((error: unknown) => this.#logger.warn('cleanup before closing the environment failed', { environment: this.id, error: errorMessage(error) })),
        ),
      );
    }
    this.#closed = true;
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    this.#client = undefined;
    await client?.close();
  }

  async #connect(signal?: AbortSignal): Promise<ExecClient> {
    const previous = this.#client;
    this.#client = undefined;
    await previous?.close();
    try {
      // The client's modules (and the exec-server protocol's schemas) load with the first connection, not as the server starts.
      const { ExecClient } = await import('../exec/client.js');
      const client = await ExecClient.connect(this.#options.connector, { ...this.#options.client, logger: this.#logger, signal });
      if (this.#closed) {
        await client.close();
        throw new Error(`environment \`${this.id}\` was removed`);
      }
      this.#client = client;
      this.#lastError = undefined;
      this.#logger.info('environment connected', { environment: this.id, session: client.sessionId });
      return client;
    } catch (error) {
      this.#lastError = `exec-server connection attempt failed: ${errorMessage(error)}`;
      this.#logger.warn('environment connection failed', { environment: this.id, error: this.#lastError });
      throw error;
    }
  }
}
