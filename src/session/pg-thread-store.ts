import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { THREAD_RECORD_VERSION, ThreadBodyRecordSchema, ThreadHeaderRecordSchema, type ThreadBodyRecord } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { KeyedSerialQueue } from '../util/keyed-queue.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { checkThreadId, validate } from './jsonl-lines.js';
import { SHARED_SECRET_BYTES, checkSecretName } from './shared-secret.js';
import { WarnedThreads } from './unknown-records.js';
import { readStoredThread } from './pg-store-records.js';
import {
  MAX_DEFER_MS,
  type AppendOptions,
  type LoadedThread,
  type NewThreadHeader,
  type NewThreadRecord,
  type ThreadListQuery,
  type ThreadStore,
  type ThreadSummary,
  type ThreadSummaryPage,
} from './thread-store.js';
import {
  APPEND_SQL,
  APPEND_UNFLUSHED_SQL,
  AppendedRowSchema,
  ArchivedRowSchema,
  FLUSH_SQL,
  CountRowSchema,
  IdRowSchema,
  type LeaseFence,
  LiveRowSchema,
  LoadRowSchema,
  RecordRowSchema,
  SUMMARY_COLUMNS,
  SummaryRowSchema,
  recordText,
  rowsOf,
  sqlState,
  summaryChange,
  toSummary,
  totalQuery,
} from './pg-store-sql.js';

/** A row of `cmx_secrets`. */
const SecretRowSchema = z.object({ value: z.instanceof(Buffer) });

/**
 * The {@link ThreadStore} in PostgreSQL (`multienv.store = "postgres://…"`), for several server
 * instances on several hosts sharing their threads. Tables are those of `pg-store-schema.ts`. Each
 * append is one statement (so one transaction and one round trip): it inserts the records and
 * updates the thread's list summary and revision together, and resolves once committed. Appends
 * to one thread made while its previous write is in flight are sent together in the next one.
 * Failures of the database reject with `UNAVAILABLE` naming what failed; the pool reconnects by
 * itself once the database is back.
 *
 * A batch of appends that all say `durable: false` commits without waiting for the flush (see
 * `UNFLUSHED_COMMIT`): a turn's records then cost a round trip each and one flush at its end, the
 * completion's, which flushes them with it. The store counts which threads have such writes not yet
 * covered by a flushed commit of its own, so {@link PgThreadStore.flush} costs nothing when none.
 */

/** Options of {@link PgThreadStore}. */
export interface PgThreadStoreOptions {
  /** The pool of the database (see `pg-database.ts`); its owner ends it, after {@link PgThreadStore.close}. */
  pool: pg.Pool;
  /** The database as messages name it (a URL without its password). */
  where: string;
  /** Where warnings (records skipped on load) are logged. @default silentLogger */
  logger?: Logger;
  /** Clock for the `at` stamp of records that come without one. @default Date.now */
  now?: () => number;
  /**
   * The lease this process holds on a thread (`PgOwnership.fenceOf`), undefined when it holds
   * none. An append to a thread with a lease is written only while the lease is still that one,
   * checked in the append's own statement; otherwise it rejects with `FENCED`: another instance
   * took the thread over after the lease ran out, and this one must not write it any more.
   * @default () => undefined (appends are not fenced)
   */
  fence?: (threadId: string) => LeaseFence | undefined;
}

/** Archived threads whose hint is remembered (see {@link PgThreadStore.archivedHint}); the oldest are forgotten beyond. */
const MAX_ARCHIVED_HINTS = 1024;

/** Threads whose stamp after this process's last write is kept (see {@link PgThreadStore.writtenStamp}); the least recently written are forgotten beyond. */
const MAX_WRITTEN_STAMPS = 10_000;

/** SQLSTATE of a unique violation: a live thread with the id exists. */
const UNIQUE_VIOLATION = '23505';

/** One record to append, with its JSON text. */
interface PendingRecord {
  record: ThreadBodyRecord;
  text: string;
  /** Whether its write must wait for the flush (see {@link AppendOptions.durable}). */
  durable: boolean;
}

/**
 * Names of the statements a turn makes (prepared once per connection, then only bound and run:
 * no parse or plan per call).
 */
const STATEMENT_NAMES = { append: 'cmx_append', appendUnflushed: 'cmx_append_unflushed', stamp: 'cmx_stamp', flush: 'cmx_flush' } as const;

/** The statement of a live thread's key and revision (its stamp). */
const STAMP_SQL = 'SELECT key::text AS key, revision::text AS revision FROM cmx_threads WHERE id = $1 AND archived_at IS NULL';

/** Persistence of threads in PostgreSQL; see the module comment. */
export class PgThreadStore implements ThreadStore {
  readonly #pool: pg.Pool;
  readonly #where: string;
  readonly #logger: Logger;
  /** Threads whose records of unknown kinds were logged already. */
  readonly #warned: WarnedThreads;
  readonly #now: () => number;
  readonly #fence: (threadId: string) => LeaseFence | undefined;
  /** Each thread's statements in call order; appends queued while its previous one is in flight go together in the next. */
  readonly #queue = new KeyedSerialQueue<undefined, PendingRecord>({
    create: () => undefined,
    write: (threadId, _state, pending) => this.#write(threadId, pending),
    maxDeferMs: MAX_DEFER_MS,
  });
  /** Threads with a `turn_started` append in flight: open turns before the database has them. */
  readonly #starting = new Map<string, number>();
  /**
   * Writes committed without a flush, counted in the order they returned; `#flushedThrough`: how
   * many of them a flushed commit sent after them has covered. The log is one sequence for the
   * whole database, so a flushed commit covers every commit that returned before it was sent.
   */
  #unflushedWrites = 0;
  #flushedThrough = 0;
  /** The count of {@link #unflushedWrites} at each thread's last unflushed write, while a flush has yet to cover it. */
  readonly #unflushed = new Map<string, number>();
  /** Archived threads seen by `stamp` or `archive`, with how to get them back (least recently seen first). */
  readonly #archived = new Map<string, string>();
  /** Each thread's stamp after this process's last write of it (see {@link writtenStamp}), least recently written first. */
  readonly #written = new Map<string, string>();
  #closing: Promise<void> | undefined;

  constructor(options: PgThreadStoreOptions) {
    this.#pool = options.pool;
    this.#where = options.where;
    this.#logger = options.logger ?? silentLogger;
    this.#warned = new WarnedThreads(this.#logger);
    this.#now = options.now ?? Date.now;
    this.#fence = options.fence ?? (() => undefined);
  }

  /** Inserts the thread's row. Rejects with `INVALID_ARGUMENT` when the id is invalid, the header does not validate, or a live thread has the id. */
  async create(header: NewThreadHeader): Promise<void> {
    this.#assertOpen();
    const id = checkThreadId(header.threadId);
    const record = validate(ThreadHeaderRecordSchema, { ...header, type: 'thread', version: THREAD_RECORD_VERSION, at: this.#timestamp() }, id);
    const text = JSON.stringify(record);
    return this.#queue.run(id, async () => {
      try {
        await this.#query(
          `create thread ${id}`,
          'INSERT INTO cmx_threads (id, header, created_at, updated_at, environments) VALUES ($1, $2::json, $3, clock_timestamp(), $4::json)',
          [id, text, record.createdAt, JSON.stringify(record.environments)],
        );
      } catch (error) {
        if (error instanceof LocalError && sqlState(error.cause) === UNIQUE_VIOLATION) {
          throw new LocalError(LocalErrorCode.InvalidArgument, `thread ${id} already exists (in ${this.#where})`, { cause: error });
        }
        throw error;
      }
      this.#archived.delete(id);
    });
  }

  /**
   * Appends one record; resolves once it is committed. A record that does not validate rejects
   * with `INVALID_ARGUMENT`, one beyond `MAX_THREAD_RECORD_BYTES` (16 MiB) with `LIMIT_EXCEEDED`, and
   * one for a thread without a live row with `NOT_FOUND`.
   */
  async append(threadId: string, record: NewThreadRecord, options: AppendOptions = {}): Promise<void> {
    this.#assertOpen();
    const id = checkThreadId(threadId);
    const parsed = validate(ThreadBodyRecordSchema, { ...record, at: record.at ?? this.#timestamp() }, id);
    const text = recordText(parsed, id);
    if (parsed.type === 'turn_started') this.#startingTurn(id, 1);
    const written = this.#queue.add(id, { record: parsed, text, durable: options.durable !== false }, options);
    if (parsed.type !== 'turn_started') return written;
    try {
      await written;
    } finally {
      this.#startingTurn(id, -1);
    }
  }

  /**
   * Makes the thread's records durable after its pending appends: when a write of it was committed
   * without a flush and no flushed commit of this store has covered it yet, one statement commits
   * with a flush ({@link FLUSH_SQL}), which flushes the log up to it; otherwise nothing is sent.
   */
  /** The database can fail apart from this process: what an engine acts on, and the lease it runs under, are made durable first. */
  flushBeforeActing(threadId: string): Promise<void> {
    return this.flush(threadId);
  }

  async flush(threadId: string): Promise<void> {
    const id = checkThreadId(threadId);
    await this.#queue.run(id, async () => {
      const last = this.#unflushed.get(id);
      if (last === undefined || last <= this.#flushedThrough) return;
      await this.#flushed(() => this.#query(`flush the records of thread ${id}`, FLUSH_SQL, [id], STATEMENT_NAMES.flush));
    });
  }

  /**
   * Runs a statement that commits with a flush, and counts the unflushed writes it covered: those
   * that returned before it was sent (their commit records are before its own in the log). Only
   * when it wrote a row: a transaction that wrote nothing commits without a flush.
   */
  async #flushed(statement: () => Promise<pg.QueryResult>): Promise<pg.QueryResult> {
    const covers = this.#unflushedWrites;
    const result = await statement();
    if ((result.rowCount ?? 0) > 0 && covers > this.#flushedThrough) {
      this.#flushedThrough = covers;
      for (const [threadId, last] of this.#unflushed) if (last <= covers) this.#unflushed.delete(threadId);
    }
    return result;
  }

  /** One statement (one transaction, one commit) for a batch of appends; its failure rejects every append of the batch. */
  async #write(threadId: string, pending: readonly PendingRecord[]): Promise<void> {
    const records = pending.map((entry) => entry.record);
    const change = summaryChange(records);
    const fence = this.#fence(threadId);
    const durable = pending.some((entry) => entry.durable);
    const what = `append ${records.length === 1 ? 'a record' : `${records.length} records`} to thread ${threadId}`;
    const params = [
      threadId,
      records.length,
      change.environments,
      change.lastStatus,
      change.lastTurnId,
      change.preview,
      `[${pending.map((entry) => entry.text).join(',')}]`,
      fence?.owner ?? null,
      fence?.epoch ?? null,
    ];
    const result = durable
      ? await this.#flushed(() => this.#query(what, APPEND_SQL, params, STATEMENT_NAMES.append))
      : await this.#query(what, APPEND_UNFLUSHED_SQL, params, STATEMENT_NAMES.appendUnflushed);
    const [appended] = rowsOf(AppendedRowSchema, result);
    if (appended !== undefined) {
      this.#rememberWritten(threadId, appended.stamp);
      if (!durable) {
        this.#unflushedWrites += 1;
        this.#unflushed.set(threadId, this.#unflushedWrites);
      }
      return;
    }
    if (fence !== undefined && (await this.#isLive(threadId))) {
      throw new LocalError(
        LocalErrorCode.Fenced,
        `thread ${threadId}: ${records.length === 1 ? 'a record was' : `${records.length} records were`} not written: this server instance's lease on the thread (epoch ${fence.epoch}) ran out and another instance took the thread over (in ${this.#where})`,
      );
    }
    throw new LocalError(LocalErrorCode.NotFound, `thread ${threadId} does not exist (in ${this.#where})`);
  }

  async #isLive(threadId: string): Promise<boolean> {
    const result = await this.#query(`read thread ${threadId}`, STAMP_SQL, [threadId], STATEMENT_NAMES.stamp);
    return rowsOf(LiveRowSchema, result).length > 0;
  }

  /**
   * Reads a thread back after its pending appends, or `undefined` without a live row. A record
   * of a type this version does not know is skipped with a warning; any other record that does
   * not read back rejects with `PROTOCOL_VIOLATION` naming the thread and the record's `seq`.
   */
  async load(threadId: string): Promise<LoadedThread | undefined> {
    const id = checkThreadId(threadId);
    return this.#queue.run(id, async () => {
      const [row] = rowsOf(
        LoadRowSchema,
        await this.#query(`load thread ${id}`, 'SELECT key::text AS key, header::text AS header FROM cmx_threads WHERE id = $1 AND archived_at IS NULL', [id]),
      );
      if (row === undefined) return undefined;
      const rows = rowsOf(
        RecordRowSchema,
        await this.#query(`load the records of thread ${id}`, 'SELECT seq::text AS seq, record::text AS record FROM cmx_thread_records r WHERE r.thread_key = $1 ORDER BY r.seq', [
          row.key,
        ]),
      );
      const { header, records, unknown } = readStoredThread(id, this.#where, row.header, rows);
      const skipped = this.#warned.warn(id, unknown, `thread ${id} of ${this.#where}`);
      return { header, records, warnings: skipped === undefined ? [] : [skipped] };
    });
  }

  /**
   * Marks the thread archived (after its pending appends); its rows stay. Resolves with where it
   * is; rejects with `NOT_FOUND` without a live row.
   */
  async archive(threadId: string): Promise<string> {
    this.#assertOpen();
    const id = checkThreadId(threadId);
    return this.#queue.run(id, async () => {
      const [row] = rowsOf(
        ArchivedRowSchema,
        await this.#query(
          `archive thread ${id}`,
          'UPDATE cmx_threads SET archived_at = clock_timestamp(), revision = revision + 1 WHERE id = $1 AND archived_at IS NULL RETURNING key::text AS key, archived_at',
          [id],
        ),
      );
      if (row === undefined) throw new LocalError(LocalErrorCode.NotFound, `thread ${id} does not exist (in ${this.#where})`);
      this.#rememberArchived(id, row);
      return `the row of key ${row.key} in cmx_threads of ${this.#where}`;
    });
  }

  /**
   * How to get the archived thread back, once this process has seen it archived (a `stamp` that
   * found no live row, or its own `archive`); undefined otherwise.
   */
  archivedHint(threadId: string): string | undefined {
    return this.#archived.get(threadId);
  }

  #rememberArchived(threadId: string, row: z.output<typeof ArchivedRowSchema>): void {
    this.#archived.delete(threadId);
    this.#archived.set(
      threadId,
      `it was archived with thread/close at ${row.archived_at.toISOString()}; to continue it, run in ${this.#where}: UPDATE cmx_threads SET archived_at = NULL WHERE key = ${row.key}`,
    );
    for (const oldest of this.#archived.keys()) {
      if (this.#archived.size <= MAX_ARCHIVED_HINTS) break;
      this.#archived.delete(oldest);
    }
  }

  /** The thread row's key and revision (after this process's pending appends); every write by any process bumps the revision. */
  async stamp(threadId: string): Promise<string | undefined> {
    const id = checkThreadId(threadId);
    return this.#queue.run(id, async () => {
      const [live] = rowsOf(LiveRowSchema, await this.#query(`read thread ${id}`, STAMP_SQL, [id], STATEMENT_NAMES.stamp));
      if (live !== undefined) {
        const stamp = `${live.key}.${live.revision}`;
        // Another process wrote the thread since this one did: the kept stamp would only cost a needless read later.
        if (this.#written.get(id) !== stamp) this.#written.delete(id);
        return stamp;
      }
      const [archived] = rowsOf(
        ArchivedRowSchema,
        await this.#query(
          `read thread ${id}`,
          'SELECT key::text AS key, archived_at FROM cmx_threads WHERE id = $1 AND archived_at IS NOT NULL ORDER BY archived_at DESC LIMIT 1',
          [id],
        ),
      );
      if (archived !== undefined) this.#rememberArchived(id, archived);
      return undefined;
    });
  }

  /** One page in list order, an index range scan of `cmx_threads_list`; `total` is read beside it (see {@link totalQuery}). */
  async list(query: ThreadListQuery): Promise<ThreadSummaryPage> {
    const filters = ['archived_at IS NULL'];
    const params: unknown[] = [];
    if (query.failed !== undefined) {
      params.push(query.failed);
      filters.push(`failed = $${params.length}`);
    }
    if (query.exclude !== undefined && query.exclude.size > 0) {
      params.push([...query.exclude]);
      filters.push(`id <> ALL($${params.length}::text[])`);
    }
    const total = totalQuery(query);
    const counting = this.#query('count the threads', total.sql, total.params);
    if (query.limit <= 0) {
      const [count] = rowsOf(CountRowSchema, await counting);
      return { summaries: [], next: undefined, total: count?.total ?? 0 };
    }
    const pageParams = [...params];
    const pageFilters = [...filters];
    if (query.after !== undefined) {
      const after = new Date(query.after.updatedAt);
      if (Number.isNaN(after.getTime())) {
        void counting.catch(() => undefined);
        throw new LocalError(LocalErrorCode.InvalidArgument, `invalid list position: updatedAt ${JSON.stringify(query.after.updatedAt)} is not a timestamp`);
      }
      pageParams.push(after.toISOString(), query.after.threadId);
      const [time, id] = [pageParams.length - 1, pageParams.length];
      // The first condition bounds the index range scan; the second drops the ties before the position.
      pageFilters.push(`updated_at <= $${time}::timestamptz`, `(updated_at < $${time}::timestamptz OR id > $${id})`);
    }
    pageParams.push(query.limit + 1);
    const paging = this.#query(
      'list threads',
      `SELECT ${SUMMARY_COLUMNS} FROM cmx_threads WHERE ${pageFilters.join(' AND ')} ORDER BY updated_at DESC, id LIMIT $${pageParams.length}`,
      pageParams,
    );
    const [counted, paged] = await Promise.allSettled([counting, paging]);
    if (counted.status === 'rejected') throw counted.reason;
    if (paged.status === 'rejected') throw paged.reason;
    const rows = rowsOf(SummaryRowSchema, paged.value);
    const summaries = rows.slice(0, query.limit).map(toSummary);
    const last = summaries[summaries.length - 1];
    return {
      summaries,
      next: rows.length > query.limit && last !== undefined ? { updatedAt: last.updatedAt, threadId: last.threadId } : undefined,
      total: rowsOf(CountRowSchema, counted.value)[0]?.total ?? 0,
    };
  }

  /** The threads whose last turn is open in the database, and those of this process whose `turn_started` is being written. */
  async openTurns(): Promise<string[]> {
    const rows = rowsOf(IdRowSchema, await this.#query('list the open turns', "SELECT id FROM cmx_threads WHERE last_status = 'incomplete' AND archived_at IS NULL", []));
    return [...new Set([...rows.map((row) => row.id), ...this.#starting.keys()])].sort();
  }

  /** One thread's summary, as {@link list} gives it; undefined without a live row. */
  async summary(threadId: string): Promise<ThreadSummary | undefined> {
    const id = checkThreadId(threadId);
    const [row] = rowsOf(
      SummaryRowSchema,
      await this.#query(`read the summary of thread ${id}`, `SELECT ${SUMMARY_COLUMNS} FROM cmx_threads WHERE id = $1 AND archived_at IS NULL`, [id]),
    );
    return row === undefined ? undefined : toSummary(row);
  }

  /** The secret `name` of the database (`cmx_secrets`): the first instance to ask writes it, every other reads that one. */
  async sharedSecret(name: string): Promise<Buffer> {
    const id = checkSecretName(name);
    await this.#query('store a shared secret', 'INSERT INTO cmx_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [id, randomBytes(SHARED_SECRET_BYTES)]);
    const [row] = rowsOf(SecretRowSchema, await this.#query('read a shared secret', 'SELECT value FROM cmx_secrets WHERE name = $1', [id]));
    if (row === undefined || row.value.length !== SHARED_SECRET_BYTES)
      throw new LocalError(LocalErrorCode.Unavailable, `the thread database ${this.#where} has no usable shared secret ${id}`);
    return row.value;
  }

  /** Waits for pending writes. Idempotent; later creates and appends reject. The pool is its owner's to end. */
  close(): Promise<void> {
    this.#closing ??= this.#queue.drain();
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) throw new LocalError(LocalErrorCode.ConnectionClosed, 'the thread store is closed');
  }

  #timestamp(): string {
    return new Date(this.#now()).toISOString();
  }

  #startingTurn(threadId: string, delta: number): void {
    const count = (this.#starting.get(threadId) ?? 0) + delta;
    if (count > 0) this.#starting.set(threadId, count);
    else this.#starting.delete(threadId);
  }

  /** The thread's stamp after this process's last write of it, from the write's own answer; undefined when not known. */
  writtenStamp(threadId: string): string | undefined {
    return this.#written.get(threadId);
  }

  #rememberWritten(threadId: string, stamp: string): void {
    this.#written.delete(threadId);
    this.#written.set(threadId, stamp);
    for (const oldest of this.#written.keys()) {
      if (this.#written.size <= MAX_WRITTEN_STAMPS) break;
      this.#written.delete(oldest);
    }
  }

  /**
   * Runs one statement; a failure of the database becomes a {@link LocalError} saying what failed.
   * `name`: a prepared statement of that name (see {@link STATEMENT_NAMES}).
   */
  async #query(what: string, sql: string, params: unknown[], name?: string): Promise<pg.QueryResult> {
    try {
      return await this.#pool.query(name === undefined ? { text: sql, values: params } : { name, text: sql, values: params });
    } catch (error) {
      const state = sqlState(error);
      // Class 22 (data exception) and 23 (integrity): the database refused this data, not a failure of the database.
      const code = state?.startsWith('22') === true || state?.startsWith('23') === true ? LocalErrorCode.InvalidArgument : LocalErrorCode.Unavailable;
      throw new LocalError(code, `cannot ${what}: the thread database ${this.#where} failed: ${errorMessage(error)}`, { cause: error });
    }
  }
}
