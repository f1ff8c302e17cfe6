import pg from 'pg';
import { withDeadline } from '../util/abort.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { redactedUrl } from './pg-database.js';

/** The first pause before connecting again after the listener's connection dropped. */
const RECONNECT_MIN_MS = 100;

/** The longest pause between two attempts to connect again. */
const RECONNECT_MAX_MS = 5_000;

/** How long one connection attempt may take. */
const CONNECT_TIMEOUT_MS = 10_000;

/** The `application_name` of the listener's connection. */
export const LISTENER_APPLICATION_NAME = 'codex-multienv listener';

/** Channel names are SQL identifiers written into `LISTEN`: only plain lower-case ones. */
const CHANNEL_PATTERN = /^[a-z_][a-z0-9_]*$/;

/** Options of {@link PgListener.open}. */
export interface PgListenerOptions {
  url: string;
  /** The channels to `LISTEN` on. */
  channels: readonly string[];
  logger: Logger;
  onNotification: (channel: string, payload: string) => void;
  /**
   * Called once the connection is back after it dropped: notifications sent meanwhile were lost,
   * so whoever relies on them looks at the state again.
   */
  onReconnect: () => void;
}

/**
 * `LISTEN` on a connection of its own (a pooled connection goes back to the pool between
 * queries, and its notifications with it). When the connection drops (a database restart, a
 * network cut) it connects again with a growing pause, listens again and says so, until closed.
 */
export class PgListener {
  readonly #options: PgListenerOptions;
  #client: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #pauseMs = RECONNECT_MIN_MS;
  #closed = false;
  #checking = false;
  /** Ends the current connection and connects again, as when it drops by itself. */
  #drop: ((error?: Error) => void) | undefined;

  private constructor(options: PgListenerOptions) {
    this.#options = options;
  }

  /** Connects and listens; rejects with `UNAVAILABLE` when the database cannot be reached. */
  static async open(options: PgListenerOptions): Promise<PgListener> {
    for (const channel of options.channels) {
      if (!CHANNEL_PATTERN.test(channel)) throw new LocalError(LocalErrorCode.InvalidArgument, `invalid channel name ${JSON.stringify(channel)}`);
    }
    const listener = new PgListener(options);
    try {
      await listener.#connect();
    } catch (error) {
      throw new LocalError(LocalErrorCode.Unavailable, `cannot listen on the database ${redactedUrl(options.url)}: ${errorMessage(error)}`, { cause: error });
    }
    return listener;
  }

  /**
   * Checks that the connection still answers (a statement on it, within `timeoutMs`); one that
   * does not is dropped and connected again. A connection cut off without a reset would
   * otherwise look open while no notification arrives. Does nothing while reconnecting or checking.
   */
  check(timeoutMs: number): void {
    const client = this.#client;
    if (client === undefined || this.#checking) return;
    this.#checking = true;
    void withDeadline(client.query('SELECT 1'), timeoutMs, () => new Error(`the listener's connection did not answer within ${timeoutMs / 1000} s`))
      .catch((error: unknown) => {
        if (this.#client === client) this.#drop?.(error instanceof Error ? error : new Error(errorMessage(error)));
      })
      .finally(() => (this.#checking = false));
  }

  /** Ends the connection and stops connecting again. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    // Named, so that operators (and tests) tell it apart in pg_stat_activity.
    const client = new pg.Client({ connectionString: this.#options.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: LISTENER_APPLICATION_NAME });
    let dropped = false;
    const onDrop = (error?: Error): void => {
      if (dropped) return;
      dropped = true;
      client.removeAllListeners('notification');
      if (this.#client === client) {
        this.#client = undefined;
        this.#drop = undefined;
      }
      // Ends the socket too when the drop was an error on a connection still half open.
      void client.end().catch(() => undefined);
      if (this.#closed) return;
      this.#options.logger.warn('the database listener lost its connection; connecting again', { error: error === undefined ? 'ended' : errorMessage(error) });
      this.#scheduleReconnect();
    };
    client.on('error', onDrop);
    client.on('end', () => onDrop());
    client.on('notification', (message) => {
      if (message.payload !== undefined) this.#options.onNotification(message.channel, message.payload);
    });
    try {
      await client.connect();
      for (const channel of this.#options.channels) await client.query(`LISTEN ${channel}`);
    } catch (error) {
      dropped = true;
      client.removeAllListeners();
      // An 'error' after this must not be unhandled.
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#drop = onDrop;
  }

  #scheduleReconnect(): void {
    const pauseMs = this.#pauseMs;
    this.#pauseMs = Math.min(RECONNECT_MAX_MS, pauseMs * 2);
    this.#retry = setTimeout(() => {
      this.#connect().then(
        () => {
          if (this.#closed) return;
          this.#pauseMs = RECONNECT_MIN_MS;
          this.#options.logger.info('the database listener is connected again');
          this.#options.onReconnect();
        },
        (error: unknown) => {
          if (this.#closed) return;
          this.#options.logger.debug('the database listener cannot connect yet', { error: errorMessage(error), retryMs: this.#pauseMs });
          this.#scheduleReconnect();
        },
      );
    }, pauseMs);
    // Reconnecting must not keep a stopping process alive; close() ends it anyway.
    this.#retry.unref();
  }
}
