import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import { z } from 'zod';
import type { InterruptRequest, LeaseHolder } from '../protocol/status.js';
import { withDeadline } from '../util/abort.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { parseJsonAs } from '../util/json.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { WaitList } from '../util/wait-list.js';
import { ThreadBusyError, type ThreadOwnership, type TurnStopRequest } from './ownership.js';
import { openLeasePool } from './pg-lease-pool.js';
import {
  HeldRowSchema,
  LEASE_STATEMENT_NAMES,
  LeaseRowSchema,
  RELEASE_LEASES_SQL,
  RENEW_LEASES_SQL,
  REQUEST_INTERRUPT_SQL,
  RequestRowSchema,
  TAKE_LEASE_SQL,
  TakenRowSchema,
  ThreadIdRowSchema,
  holderOf,
  measureClockSkew,
  rowsOf,
} from './pg-lease-sql.js';
import { PgListener } from './pg-listener.js';
import type { LeaseFence } from './pg-store-sql.js';

/** How long a lease lasts without a heartbeat, by default. */
export const DEFAULT_LEASE_MS = 15_000;

/** The channel on which a request to stop a turn is announced; payload {@link InterruptNoticeSchema}. */
const INTERRUPT_CHANNEL = 'cmx_interrupt';

/** The channel on which a client's answer to a task input is announced; payload: the thread id (the answer is in its records). */
const ANSWER_CHANNEL = 'cmx_answer';

/** The channel on which a thread given back is announced; payload: the thread id. */
const RELEASED_CHANNEL = 'cmx_released';

/** Tries to take a lease that was given back between the failed take and the look at its holder. */
const ACQUIRE_ATTEMPTS = 5;

/** A waiter for another instance's turn looks again this long after the holder's lease should have run out. */
const EXPIRY_SLACK_MS = 50;

const InterruptNoticeSchema = z.object({ threadId: z.string(), turnId: z.string() });

/** The longest one statement of the ownership may take. */
const QUERY_TIMEOUT_MS = 10_000;

/** The longest a shutdown waits for the database to take this instance's leases back. */
const RELEASE_ALL_TIMEOUT_MS = 5_000;

/** A lease this instance holds: when the database last confirmed it (this clock, when the statement was sent). */
interface HeldLease {
  confirmedAt: number;
}

/** Options of {@link PgOwnership.open}. */
export interface PgOwnershipOptions {
  /** The pool of the database (see `openDatabase`), at schema version 2 or later. */
  pool: pg.Pool;
  /** The database's URL, for the listener's own connection (a pooled one cannot `LISTEN`). */
  url: string;
  logger?: Logger;
  /**
   * How long a lease lasts without a heartbeat, in milliseconds: an instance that dies loses its
   * threads this long after its last heartbeat. Heartbeats go every third of it.
   * @default 15000
   */
  leaseMs?: number;
}

/**
 * Thread ownership in PostgreSQL, for instances on many hosts sharing one database. A turn's owner
 * holds a lease row that expires unless renewed; one statement per instance renews all of its
 * rows every third of the lease. Every expiry is judged by the database's clock, so skew between
 * hosts cannot make a live lease look expired.
 *
 * An instance that cannot renew a lease (the database is unreachable, or the row was taken) stops
 * the thread's turns once two thirds of the lease have passed since the last renewal it saw,
 * measured on its own monotonic clock from when that renewal was sent: well before any other
 * instance may take the thread, so a command is not run by two instances at once.
 *
 * Requests to stop a turn and threads given back travel by `LISTEN/NOTIFY` on a connection of
 * its own; requests are also kept in a table, for an owner whose listener was reconnecting.
 */
export class PgOwnership implements ThreadOwnership {
  readonly #pool: pg.Pool;
  /** The heartbeat's own connections (see {@link openLeasePool}); also for stopping turns and the shutdown's release. */
  readonly #leasePool: pg.Pool;
  readonly #logger: Logger;
  readonly #leaseMs: number;
  readonly #owner = randomUUID();
  readonly #pid = process.pid;
  readonly #host = hostname();
  readonly #held = new Map<string, HeldLease>();
  /**
   * The epoch of the lease taken last on each thread, until it is given back: the fence of the
   * thread's writes (see {@link fenceOf}). Kept when the lease is lost, so a late write is refused.
   */
  readonly #epochs = new Map<string, string>();
  /** Threads whose lease was lost: their row is removed (if still this instance's) when the thread is given back. */
  readonly #lost = new Set<string>();
  /** Threads given back while the database could not be reached: their rows are removed at the next heartbeat. */
  readonly #unreleased = new Set<string>();
  /** Waiters for another instance's turn, by thread: how many, and how many wake-ups the thread had. */
  readonly #waiters = new Map<string, { list: WaitList; wakes: number; count: number }>();
  /** Set by {@link PgOwnership.open} before anything is held or awaited. */
  #listener: PgListener | undefined;
  readonly #heartbeat: NodeJS.Timeout;
  #heartbeatRunning = false;
  #lossTimer: NodeJS.Timeout | undefined;
  #onInterrupt: ((threadId: string, request: TurnStopRequest) => void) | undefined;
  #onAnswer: ((threadId: string) => void) | undefined;
  #closed = false;
  /** This instance's clock minus the database's, measured at start. */
  readonly clockSkewMs: number;

  private constructor(options: PgOwnershipOptions, leasePool: pg.Pool, clockSkewMs: number) {
    this.#pool = options.pool;
    this.#leasePool = leasePool;
    this.#logger = options.logger ?? silentLogger;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.clockSkewMs = clockSkewMs;
    this.#heartbeat = setInterval(() => void this.#renew(), this.#leaseMs / 3);
    this.#heartbeat.unref();
  }

  /**
   * Starts listening for requests and wake-ups, and measures the clock skew to the database.
   * Rejects with `UNAVAILABLE` when the database cannot be reached.
   */
  static async open(options: PgOwnershipOptions): Promise<PgOwnership> {
    const logger = options.logger ?? silentLogger;
    if (!(options.leaseMs === undefined || (Number.isFinite(options.leaseMs) && options.leaseMs >= 30))) {
      throw new LocalError(LocalErrorCode.InvalidArgument, `a lease must last at least 30 ms, got ${options.leaseMs}`);
    }
    const leasePool = openLeasePool({
      url: options.url,
      logger,
      queryTimeoutMs: QUERY_TIMEOUT_MS,
      // A connection that cannot be had within a beat is tried again at the next one.
      connectTimeoutMs: Math.min(QUERY_TIMEOUT_MS, (options.leaseMs ?? DEFAULT_LEASE_MS) / 3),
    });
    let clockSkewMs: number;
    try {
      // Read on the lease connection: it also shows that connection works before any lease depends on it.
      clockSkewMs = await measureClockSkew(leasePool);
    } catch (error) {
      await leasePool.end();
      throw error;
    }
    if (Math.abs(clockSkewMs) > 1_000) {
      logger.warn('this host’s clock differs from the database’s; leases use the database’s, but logged times will disagree', { skewMs: Math.round(clockSkewMs) });
    }
    const ownership = new PgOwnership(options, leasePool, clockSkewMs);
    try {
      ownership.#listener = await PgListener.open({
        url: options.url,
        channels: [INTERRUPT_CHANNEL, RELEASED_CHANNEL, ANSWER_CHANNEL],
        logger,
        onNotification: (channel, payload) => ownership.#notified(channel, payload),
        onReconnect: () => ownership.#afterReconnect(),
      });
    } catch (error) {
      await ownership.releaseAll();
      throw error;
    }
    return ownership;
  }

  /**
   * Takes the thread for this instance (a no-op when it has it): one statement that inserts the
   * lease, or takes over one that has expired or is this instance's own. Rejects with
   * {@link ThreadBusyError} while another instance's lease is live.
   */
  async acquire(threadId: string): Promise<string | undefined> {
    if (this.#held.has(threadId)) return undefined;
    this.#checkOpen();
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt += 1) {
      const sentAt = performance.now();
      const taken = await this.#query(
        TAKE_LEASE_SQL,
        [threadId, this.#owner, this.#pid, this.#host, this.#leaseMs],
        'take a thread’s lease',
        this.#pool,
        LEASE_STATEMENT_NAMES.take,
      );
      const [row] = rowsOf(TakenRowSchema, taken);
      if (row !== undefined) {
        this.#epochs.set(threadId, row.epoch);
        this.#lost.delete(threadId);
        this.#unreleased.delete(threadId);
        this.#held.set(threadId, { confirmedAt: sentAt });
        this.#armLossTimer();
        return row.stamp ?? undefined;
      }
      const holder = await this.holderElsewhere(threadId);
      if (holder !== undefined)
        throw new ThreadBusyError(threadId, holder, `if that instance is gone, its lease runs out ${Math.round(this.#leaseMs / 1000)} s after its last heartbeat`);
    }
    throw new LocalError(LocalErrorCode.Busy, `thread ${threadId}: its lease keeps changing hands; try again`);
  }

  /** Gives the thread back and wakes whoever waits for it. A database that cannot be reached gets the row back at the next heartbeat. */
  async release(threadId: string): Promise<void> {
    this.#epochs.delete(threadId);
    const held = this.#held.delete(threadId);
    if (!held && !this.#lost.delete(threadId)) return;
    try {
      await this.#deleteLeases([threadId], this.#pool);
    } catch (error) {
      if (held) this.#unreleased.add(threadId);
      this.#logger.warn('cannot give a thread’s lease back now; it is retried, and runs out by itself', { thread: threadId, error: errorMessage(error) });
    }
  }

  /**
   * The lease the thread's writes are made under (for `PgThreadStore`'s `fence`): this instance
   * and the epoch of the lease it took last, from {@link acquire} until {@link release}, also after
   * the lease was lost; undefined when it has not taken the thread.
   */
  fenceOf(threadId: string): LeaseFence | undefined {
    const epoch = this.#epochs.get(threadId);
    return epoch === undefined ? undefined : { owner: this.#owner, epoch };
  }

  /** The live owner other than this instance that has the thread, if any. */
  async holderElsewhere(threadId: string): Promise<LeaseHolder | undefined> {
    return (await this.#leaseElsewhere(threadId))?.holder;
  }

  /** Every thread another instance has a live lease of; with `among`, only those of these threads. */
  async heldElsewhere(among?: Iterable<string>): Promise<Map<string, LeaseHolder>> {
    const ids = among === undefined ? undefined : [...among];
    if (ids?.length === 0) return new Map();
    const result = await this.#query(
      `SELECT thread_id, pid, host, since FROM cmx_thread_leases
        WHERE expires_at > now() AND owner <> $1 AND ($2::text[] IS NULL OR thread_id = ANY($2::text[]))`,
      [this.#owner, ids ?? null],
      'list the threads other instances run',
    );
    return new Map(rowsOf(HeldRowSchema, result).map((row) => [row.thread_id, holderOf(row)]));
  }

  /**
   * Resolves true once no other instance has the thread, false after `timeoutMs` or when `signal`
   * aborts. Woken by the holder's release notice; a holder that dies sends none, so the wait also
   * looks again when the holder's lease should have run out.
   */
  async waitReleased(threadId: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    let waiters = this.#waiters.get(threadId);
    if (waiters === undefined) {
      waiters = { list: new WaitList(), wakes: 0, count: 0 };
      this.#waiters.set(threadId, waiters);
    }
    // Counted, not judged by the wait list: a waiter reading the lease is in no list meanwhile.
    waiters.count += 1;
    try {
      for (;;) {
        // A release between the look and the wait counts: it is seen in `wakes`.
        const wakes = waiters.wakes;
        const lease = await this.#leaseElsewhere(threadId);
        if (lease === undefined) return true;
        const left = deadline - performance.now();
        if (left <= 0 || signal?.aborted === true) return false;
        if (waiters.wakes !== wakes) continue;
        try {
          await waiters.list.wait(Math.min(left, Math.max(0, lease.expiresInMs) + EXPIRY_SLACK_MS), signal);
        } catch {
          // An aborted wait just ends the wait (false), as settlesWithin does.
          return false;
        }
      }
    } finally {
      waiters.count -= 1;
      if (waiters.count === 0) this.#waiters.delete(threadId);
    }
  }

  /**
   * Asks the instance that has the thread to stop its turn: the request is kept in a row (for an
   * owner whose listener is reconnecting) and announced on {@link INTERRUPT_CHANNEL}, in one statement.
   */
  async requestInterrupt(threadId: string, request: InterruptRequest): Promise<void> {
    this.#checkOpen();
    await this.#query(
      REQUEST_INTERRUPT_SQL,
      [threadId, request.turnId, request.reason, INTERRUPT_CHANNEL, JSON.stringify({ threadId, turnId: request.turnId })],
      'ask another instance to stop a turn',
      this.#leasePool,
    );
  }

  /** Sets who stops a turn when another instance asks, or when this instance loses a thread. */
  onInterrupt(handler: (threadId: string, request: TurnStopRequest) => void): void {
    this.#onInterrupt = handler;
  }

  /**
   * Tells the instance that has the thread that a client answered a task input of it: a notice on
   * {@link ANSWER_CHANNEL}. Nothing is kept besides: the answer is in the thread's records, and an
   * owner whose listener was reconnecting reads them again once back.
   */
  async announceAnswer(threadId: string): Promise<void> {
    this.#checkOpen();
    await this.#query('SELECT pg_notify($1, $2)', [ANSWER_CHANNEL, threadId], 'announce an answer to another instance');
  }

  /** Sets who reads the answers another instance announced. */
  onAnswer(handler: (threadId: string) => void): void {
    this.#onAnswer = handler;
  }

  /** Gives back every thread this instance has, stops the heartbeat and ends the listener. Idempotent. */
  async releaseAll(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#lossTimer);
    const threads = [...this.#held.keys(), ...this.#lost, ...this.#unreleased];
    this.#held.clear();
    this.#epochs.clear();
    this.#lost.clear();
    this.#unreleased.clear();
    for (const waiters of this.#waiters.values()) waiters.list.wakeAll();
    const release = async (): Promise<void> => {
      try {
        if (threads.length > 0) await this.#deleteLeases(threads, this.#leasePool);
      } catch (error) {
        this.#logger.warn('cannot give the threads’ leases back; they run out by themselves', { threads: threads.length, error: errorMessage(error) });
      }
    };
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([release(), new Promise<void>((resolve) => (timer = setTimeout(resolve, RELEASE_ALL_TIMEOUT_MS)))]);
    clearTimeout(timer);
    await this.#listener?.close();
    // After the release above: a statement still running (past its deadline) ends with its connection.
    await this.#leasePool.end().catch((error: unknown) => this.#logger.debug('cannot close the lease connections', { error: errorMessage(error) }));
  }

  /** The live lease of another instance on the thread: its holder, and how long until it runs out by the database's clock. */
  async #leaseElsewhere(threadId: string): Promise<{ holder: LeaseHolder; expiresInMs: number } | undefined> {
    if (this.#held.has(threadId)) return undefined;
    const result = await this.#query(
      `SELECT pid, host, since, (extract(epoch FROM expires_at - now()) * 1000)::float8 AS expires_in_ms
         FROM cmx_thread_leases WHERE thread_id = $1 AND expires_at > now() AND owner <> $2`,
      [threadId, this.#owner],
      'look up a thread’s owner',
    );
    const row = rowsOf(LeaseRowSchema, result)[0];
    return row === undefined ? undefined : { holder: holderOf(row), expiresInMs: row.expires_in_ms };
  }

  /** Deletes this instance's leases on these threads and announces each on {@link RELEASED_CHANNEL}. */
  async #deleteLeases(threadIds: string[], pool: pg.Pool): Promise<void> {
    await this.#query(RELEASE_LEASES_SQL, [this.#owner, threadIds, RELEASED_CHANNEL], 'give threads back', pool, LEASE_STATEMENT_NAMES.release);
  }

  /**
   * The heartbeat: one statement renews every lease this instance holds. A lease missing from its
   * answer was taken (it had run out): its turns are stopped at once.
   */
  async #renew(): Promise<void> {
    if (this.#heartbeatRunning || this.#closed) return;
    this.#heartbeatRunning = true;
    // A listener cut off silently hears nothing: checked at every beat, it reconnects within one.
    this.#listener?.check(Math.min(QUERY_TIMEOUT_MS, this.#leaseMs / 3));
    try {
      if (this.#unreleased.size > 0) {
        const threads = [...this.#unreleased];
        await this.#deleteLeases(threads, this.#leasePool);
        for (const threadId of threads) this.#unreleased.delete(threadId);
      }
      if (this.#held.size === 0) return;
      const sent = new Map(this.#held);
      const sentAt = performance.now();
      const result = await this.#query(RENEW_LEASES_SQL, [this.#owner, [...sent.keys()], this.#leaseMs], 'renew the leases', this.#leasePool);
      const renewed = new Set(rowsOf(ThreadIdRowSchema, result).map((row) => row.thread_id));
      for (const [threadId, lease] of sent) {
        // A thread given back (or taken again) meanwhile is not this heartbeat's business.
        if (this.#held.get(threadId) !== lease) continue;
        if (renewed.has(threadId)) lease.confirmedAt = sentAt;
        else this.#lose(threadId, 'another instance took over its lease after it ran out');
      }
      this.#armLossTimer();
    } catch (error) {
      this.#logger.warn('cannot renew the thread leases', { threads: this.#held.size, error: errorMessage(error) });
    } finally {
      this.#heartbeatRunning = false;
    }
  }

  /**
   * Arms the timer that stops the turns of threads whose lease was not confirmed for two thirds
   * of its length: with heartbeats every third, that is two missed in a row, and a third of the
   * lease is left before another instance may take the thread.
   */
  #armLossTimer(): void {
    clearTimeout(this.#lossTimer);
    this.#lossTimer = undefined;
    if (this.#held.size === 0 || this.#closed) return;
    const lossAfterMs = (this.#leaseMs * 2) / 3;
    let earliest = Number.POSITIVE_INFINITY;
    for (const lease of this.#held.values()) earliest = Math.min(earliest, lease.confirmedAt);
    this.#lossTimer = setTimeout(
      () => {
        const now = performance.now();
        for (const [threadId, lease] of [...this.#held]) {
          if (now - lease.confirmedAt >= lossAfterMs) this.#lose(threadId, 'its lease could not be renewed in the database in time');
        }
        this.#armLossTimer();
      },
      Math.max(0, Math.ceil(earliest + lossAfterMs - performance.now())),
    );
    this.#lossTimer.unref();
  }

  /** This instance no longer has the thread: its turns stop before another instance may run it. */
  #lose(threadId: string, why: string): void {
    if (!this.#held.delete(threadId)) return;
    this.#lost.add(threadId);
    this.#logger.warn('lost a thread’s lease; stopping its turns', { thread: threadId, why });
    this.#onInterrupt?.(threadId, { reason: `this server instance lost the thread: ${why}` });
  }

  #notified(channel: string, payload: string): void {
    if (channel === RELEASED_CHANNEL) {
      this.#wake(payload);
      return;
    }
    if (channel === ANSWER_CHANNEL) {
      if (this.#held.has(payload)) this.#onAnswer?.(payload);
      return;
    }
    const notice = parseJsonAs(InterruptNoticeSchema, payload).value;
    if (notice === undefined) {
      this.#logger.warn('ignoring a malformed interrupt notice', { payload: payload.slice(0, 200) });
      return;
    }
    if (this.#held.has(notice.threadId)) void this.#takeRequests([notice.threadId]);
  }

  /** Notices sent while the listener was away are lost: waiters look again, and kept requests are taken. */
  #afterReconnect(): void {
    for (const threadId of this.#waiters.keys()) this.#wake(threadId);
    if (this.#held.size > 0) void this.#takeRequests([...this.#held.keys()]);
    for (const threadId of this.#held.keys()) this.#onAnswer?.(threadId);
  }

  /** Takes the kept requests to stop turns of these threads (each is taken once) and hands them to the handler. */
  async #takeRequests(threadIds: string[]): Promise<void> {
    try {
      const result = await this.#query(
        'DELETE FROM cmx_interrupt_requests WHERE thread_id = ANY($1::text[]) RETURNING thread_id, turn_id, reason',
        [threadIds],
        'take requests to stop turns',
        this.#leasePool,
      );
      for (const row of rowsOf(RequestRowSchema, result)) {
        if (this.#held.has(row.thread_id)) this.#onInterrupt?.(row.thread_id, { turnId: row.turn_id, reason: row.reason });
      }
    } catch (error) {
      this.#logger.warn('cannot read requests to stop turns', { threads: threadIds.length, error: errorMessage(error) });
    }
  }

  #wake(threadId: string): void {
    const waiters = this.#waiters.get(threadId);
    if (waiters === undefined) return;
    waiters.wakes += 1;
    waiters.list.wakeAll();
  }

  #checkOpen(): void {
    if (this.#closed) throw new LocalError(LocalErrorCode.Unavailable, 'the thread ownership is closed (the server is stopping)');
  }

  /**
   * Runs a statement with a deadline; a failure is `UNAVAILABLE`, saying what could not be done.
   * On the store's pool unless `pool` says otherwise: the heartbeat and the statements that stop
   * turns go on the lease pool, so they do not wait behind the turns' appends. `name`: a prepared
   * statement of that name (see `LEASE_STATEMENT_NAMES`).
   */
  async #query(text: string, values: unknown[], what: string, pool = this.#pool, name?: string): Promise<pg.QueryResult> {
    try {
      const query = name === undefined ? pool.query(text, values) : pool.query({ name, text, values });
      // A database cut off without a reset (a lost host, a dropped route) would leave the statement waiting for good.
      return await withDeadline(query, QUERY_TIMEOUT_MS, () => new Error(`no answer within ${QUERY_TIMEOUT_MS / 1000} s`));
    } catch (error) {
      throw new LocalError(LocalErrorCode.Unavailable, `cannot ${what} in the database: ${errorMessage(error)}`, { cause: error });
    }
  }
}
