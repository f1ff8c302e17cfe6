import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { MessageTransport } from '../transport/transport.js';
import type { AuthDecision, WebSocketListener } from '../transport/websocket.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import type { Environment } from './environment.js';
import type { EnvironmentRegistry } from './registry.js';

/** Connections one relayed environment serves at once (Codex holds one per environment, plus a reconnect). */
export const DEFAULT_RELAY_MAX_CONNECTIONS = 8;

/**
 * Messages from the client held while the relay's own connection to the environment opens (the
 * client's `initialize` is the first). More than this before the environment answers is a
 * misbehaving client: its connection is dropped.
 */
const MAX_EARLY_MESSAGES = 64;

/** Options of {@link LoopbackRelay}. */
export interface LoopbackRelayOptions {
  registry: EnvironmentRegistry;
  logger?: Logger;
  /** @default DEFAULT_RELAY_MAX_CONNECTIONS */
  maxConnections?: number;
}

/** Where a relayed environment is reached: a loopback websocket exec-server and the bearer token it wants. */
export interface RelayedEnvironment {
  url: string;
  authBearerToken: string;
}

/**
 * Serves registry environments to another exec-server client on this host (Codex's
 * app-server) as loopback websocket exec-servers, whatever their kind: a stdio environment
 * (a command) has no address of its own, and a websocket one is reached the way our own client
 * reaches it (its token, CA and proxy settings stay here). Each environment gets its own
 * listener on 127.0.0.1, guarded by a bearer token made fresh for this process; each connection
 * to it opens a connection to the environment ({@link Environment.openTransport}: its own session
 * on a websocket exec-server, a share of the running command's for a stdio one) and forwards
 * messages both ways. A listener stops when its
 * environment is removed or replaced (the replacement gets a new one) and when the relay closes.
 */
export class LoopbackRelay {
  readonly #options: LoopbackRelayOptions;
  readonly #logger: Logger;
  readonly #token = randomBytes(32).toString('base64url');
  readonly #listeners = new Map<Environment, Promise<WebSocketListener>>();
  #closed = false;

  constructor(options: LoopbackRelayOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * The loopback address of environment `id` as it is now in the registry, listening from the
   * first call on.
   * @throws LocalError `NOT_FOUND` for an id the registry does not have; `CONNECTION_CLOSED` once closed.
   */
  async expose(id: string): Promise<RelayedEnvironment> {
    if (this.#closed) throw new LocalError(LocalErrorCode.ConnectionClosed, 'the environment relay is closed');
    const environment = this.#options.registry.get(id);
    if (environment === undefined) throw new LocalError(LocalErrorCode.NotFound, `unknown environment \`${id}\``);
    let listener = this.#listeners.get(environment);
    if (listener === undefined) {
      listener = this.#listen(environment);
      this.#listeners.set(environment, listener);
      listener.catch(() => this.#listeners.delete(environment));
      environment.beforeClose(() => this.#stop(environment));
    }
    return { url: (await listener).url, authBearerToken: this.#token };
  }

  /** Stops every listener and drops their connections. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#listeners.keys()].map((environment) => this.#stop(environment)));
  }

  async #stop(environment: Environment): Promise<void> {
    const listener = this.#listeners.get(environment);
    this.#listeners.delete(environment);
    await listener?.then(
      (running) => running.close(),
      () => undefined,
    );
  }

  async #listen(environment: Environment): Promise<WebSocketListener> {
    // The websocket server (node:http and its kin) loads with the first relayed environment, not as the MCP server starts.
    const { listenWebSocket } = await import('../transport/websocket.js');
    const expected = digest(this.#token);
    const maxConnections = this.#options.maxConnections ?? DEFAULT_RELAY_MAX_CONNECTIONS;
    let open = 0;
    return listenWebSocket({
      host: '127.0.0.1',
      port: 0,
      authorize: (authorization) => bearerCheck(authorization, expected),
      onConnection: (client) => {
        if (open >= maxConnections) {
          this.#logger.warn('relay connection refused: too many open', { environment: environment.id, limit: maxConnections });
          void client.close();
          return;
        }
        open++;
        void this.#forward(environment, client)
          .catch((error: unknown) => this.#logger.warn('relay connection failed', { environment: environment.id, error: errorMessage(error) }))
          .finally(() => open--);
      },
    });
  }

  /**
   * Forwards one client connection to a new connection to `environment` until either side
   * closes. No back-pressure is needed here: exec-server traffic is the client's requests and
   * their answers (process output is pulled with `process/read`), so what is in flight is bounded
   * by what the client asked for, and each message by the transports' size limits.
   */
  async #forward(environment: Environment, client: MessageTransport): Promise<void> {
    let upstream: MessageTransport | undefined;
    const early: (string | Buffer)[] = [];
    const clientGone = new AbortController();
    const ended = new Promise<void>((resolve) => {
      client.onclose = () => {
        clientGone.abort(new LocalError(LocalErrorCode.ConnectionClosed, 'the relay client went away'));
        void upstream?.close();
        resolve();
      };
    });
    const fromClient = (message: string | Buffer): void => {
      if (upstream !== undefined) {
        upstream.send(message);
      } else if (early.length < MAX_EARLY_MESSAGES) {
        early.push(message);
      } else {
        void client.close();
      }
    };
    client.onmessage = fromClient;
    client.onbytes = fromClient;
    client.start();
    try {
      const opened = await environment.openTransport(clientGone.signal);
      if (clientGone.signal.aborted) {
        await opened.close();
        return;
      }
      upstream = opened;
      const toClient = (message: string | Buffer): void => {
        client.send(message);
      };
      opened.onmessage = toClient;
      opened.onbytes = toClient;
      opened.onclose = () => void client.close();
      opened.start();
      for (const message of early.splice(0)) opened.send(message);
    } catch (error) {
      this.#logger.warn('relay could not reach the environment', { environment: environment.id, error: errorMessage(error) });
      await client.close();
    }
    await ended;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The upgrade's bearer token against the relay's, compared in constant time. */
function bearerCheck(authorization: string | undefined, expected: Buffer): AuthDecision {
  const match = /^bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (match?.[1] === undefined) return { ok: false, message: 'missing websocket bearer token' };
  return timingSafeEqual(digest(match[1]), expected) ? { ok: true } : { ok: false, message: 'invalid websocket bearer token' };
}
