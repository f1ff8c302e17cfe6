import type pg from 'pg';
import { z } from 'zod';
import { ThreadEnvironmentSchema, TurnStatusSchema, type ThreadBodyRecord, type ThreadEnvironment } from '../protocol/thread.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { MAX_THREAD_RECORD_BYTES, promptPreview, type ThreadListQuery, type ThreadSummary } from './thread-store.js';

/**
 * The statements of the PostgreSQL thread store (`pg-thread-store.ts`) on the tables of
 * `pg-store-schema.ts`, and the checks of the rows they return.
 */

/** Rows as the store's statements select them (bigints and json as text): a live thread's key and revision. */
export const LiveRowSchema = z.object({ key: z.string(), revision: z.string() });
/** An archived thread's row. */
export const ArchivedRowSchema = z.object({ key: z.string(), archived_at: z.date() });
/** A thread's header row. */
export const LoadRowSchema = z.object({ key: z.string(), header: z.string() });
/** A live thread's stamp (`PgThreadStore.stamp`) as an expression over its `cmx_threads` row. */
export const STAMP_EXPRESSION = `key::text || '.' || revision::text`;

/** A row of an append: the thread's stamp after it. */
export const AppendedRowSchema = z.object({ stamp: z.string() });
/** One body record. */
export const RecordRowSchema = z.object({ seq: z.string(), record: z.string() });
/** The columns of {@link SUMMARY_COLUMNS}. */
export const SummaryRowSchema = z.object({
  id: z.string(),
  created_at: z.string(),
  updated_at: z.date(),
  environments: z.string(),
  last_status: z.string().nullable(),
  last_turn_id: z.string().nullable(),
  preview: z.string().nullable(),
});
/** A listing's total. */
export const CountRowSchema = z.object({ total: z.number() });
/** A thread id. */
export const IdRowSchema = z.object({ id: z.string() });
const StoredEnvironmentsSchema = z.array(ThreadEnvironmentSchema);
const StoredStatusSchema = z.union([TurnStatusSchema, z.literal('incomplete')]).nullable();

/** The columns of a summary row. */
export const SUMMARY_COLUMNS = 'id, created_at, updated_at, environments::text AS environments, last_status, last_turn_id, preview';

/**
 * The lease a write is made under (see `pg-ownership.ts`): the owner's id and the lease's epoch,
 * which grows at every change of hands.
 */
export interface LeaseFence {
  owner: string;
  epoch: string;
}

/**
 * A common table expression that makes its statement's transaction commit without waiting for the
 * database to flush it to disk (`synchronous_commit = off` for this transaction alone): the commit
 * costs a round trip, not a flush. Referenced by the statement, so it is evaluated. The log is
 * written in order, so the next commit that does wait for the flush (of any session) flushes
 * this one with it; a crash of the database before that loses it (see `PgThreadStore.flush`).
 */
export const UNFLUSHED_COMMIT = `unflushed AS (SELECT set_config('synchronous_commit', 'off', true))`;

/**
 * A statement (`$1` a thread id) whose commit waits for the flush of the log up to it, and so of
 * every commit made before it in any session. It must write to the log: a transaction that wrote
 * nothing there commits without waiting for a flush, even with a transaction id (`txid_current()`).
 * So it writes the thread's row again unchanged (no column of an index changes: a heap-only
 * update, one small log record).
 */
export const FLUSH_SQL = 'UPDATE cmx_threads SET revision = revision WHERE id = $1';

/**
 * Appends a batch: `$1` thread id, `$2` record count, `$3`–`$6` the summary change (see
 * {@link summaryChange}), `$7` the records as one JSON array, `$8`/`$9` the {@link LeaseFence}
 * (null: not fenced). A row per record written, each with the thread's stamp after the write
 * (`key.revision`, as `PgThreadStore.stamp` gives it); nothing is written (no row returned) when
 * the thread has no live row, or the lease is no longer the fence's.
 */
// One statement: the thread row is locked by the UPDATE, which also hands out the records'
// sequence numbers, so writers in several processes never interleave inside one batch.
// The fence locks the lease row (FOR SHARE) before the thread row is updated: a takeover of the
// lease waits for this commit, and a takeover committed first (even while this statement waited)
// is seen, as the lock reads the newest version of the row. So no record of a fenced-off owner
// lands after the new owner took the thread over.
const appendSql = (durable: boolean): string => `
WITH ${durable ? '' : `${UNFLUSHED_COMMIT},`} fence AS (
  SELECT 1 FROM cmx_thread_leases WHERE thread_id = $1 AND owner = $8::text AND epoch = $9::bigint FOR SHARE),
t AS (
  UPDATE cmx_threads SET
    next_seq = next_seq + $2::int, revision = revision + 1, updated_at = clock_timestamp(),
    environments = COALESCE($3::json, environments),
    last_status = COALESCE($4::text, last_status), last_turn_id = COALESCE($5::text, last_turn_id),
    preview = COALESCE(preview, $6::text), failed = COALESCE($4::text = 'failed', failed)
  WHERE id = $1 AND archived_at IS NULL AND ($8::text IS NULL OR EXISTS (SELECT 1 FROM fence))
  RETURNING key, revision, next_seq - $2::int AS first_seq)
INSERT INTO cmx_thread_records (thread_key, seq, record)
SELECT t.key, t.first_seq + r.n - 1, r.value FROM t, ${durable ? '' : 'unflushed,'} json_array_elements($7::json) WITH ORDINALITY AS r(value, n)
RETURNING (SELECT ${STAMP_EXPRESSION} FROM t) AS stamp`;

/** {@link appendSql} committed with a flush: the batch is durable when the statement returns. */
export const APPEND_SQL = appendSql(true);

/** {@link appendSql} committed without waiting for the flush (see {@link UNFLUSHED_COMMIT}). */
export const APPEND_UNFLUSHED_SQL = appendSql(false);

/** What a batch of records changes in its thread's summary columns (null: unchanged). */
export interface SummaryChange {
  environments: string | null;
  lastStatus: string | null;
  lastTurnId: string | null;
  preview: string | null;
}

/** Folds a batch into the summary columns it sets, as `jsonl-lines.ts` folds a file into a summary. */
export function summaryChange(records: readonly ThreadBodyRecord[]): SummaryChange {
  const change: SummaryChange = { environments: null, lastStatus: null, lastTurnId: null, preview: null };
  for (const record of records) {
    if (record.type === 'environments_changed') change.environments = JSON.stringify(record.environments);
    else if (record.type === 'turn_started') {
      change.lastStatus = 'incomplete';
      change.lastTurnId = textColumn(record.turnId);
      change.preview ??= textColumn(promptPreview(record.prompt));
    } else if (record.type === 'turn_completed') {
      change.lastStatus = record.status;
      change.lastTurnId = textColumn(record.turnId);
    }
  }
  return change;
}

/** A string as a `text` column can hold it: PostgreSQL text has no NUL character. */
function textColumn(value: string): string {
  return value.replaceAll('\0', '\uFFFD');
}

/** One record as the JSON text stored, refusing records beyond {@link MAX_THREAD_RECORD_BYTES}. */
export function recordText(record: ThreadBodyRecord, threadId: string): string {
  const text = JSON.stringify(record);
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_THREAD_RECORD_BYTES) {
    throw new LocalError(
      LocalErrorCode.LimitExceeded,
      `a "${record.type}" record of ${bytes} bytes exceeds the ${MAX_THREAD_RECORD_BYTES}-byte (16 MiB) bound of one thread record (thread ${threadId})`,
    );
  }
  return text;
}

/** The rows of a result, checked against `schema`. */
export function rowsOf<S extends z.ZodType>(schema: S, result: pg.QueryResult): z.output<S>[] {
  return result.rows.map((row: unknown) => {
    const parsed = schema.safeParse(row);
    if (!parsed.success) throw new LocalError(LocalErrorCode.ProtocolViolation, `unexpected row from the thread database: ${parsed.error.message}`);
    return parsed.data;
  });
}

/** The SQLSTATE of a database error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

/**
 * The statement of a listing's `total`: read from `cmx_thread_counts`, less the excluded threads
 * the query would match (few: those the caller lists from memory), found through the unique index
 * of live ids. A count of every matching row instead grows with the threads (tens of ms at 100,000).
 */
export function totalQuery(query: ThreadListQuery): { sql: string; params: unknown[] } {
  const matching = query.failed === undefined ? 'live' : query.failed ? 'failed' : 'live - failed';
  if (query.exclude === undefined || query.exclude.size === 0) return { sql: `SELECT (${matching})::int AS total FROM cmx_thread_counts`, params: [] };
  const params: unknown[] = [[...query.exclude]];
  const filters = ['archived_at IS NULL', 'id = ANY($1::text[])'];
  if (query.failed !== undefined) {
    params.push(query.failed);
    filters.push('failed = $2');
  }
  return { sql: `SELECT (${matching} - (SELECT count(*) FROM cmx_threads WHERE ${filters.join(' AND ')}))::int AS total FROM cmx_thread_counts`, params };
}

/** JSON text as a value; undefined when it does not parse. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // The columns are json: PostgreSQL checked the syntax on the way in.
    return undefined;
  }
}

/** A summary row as {@link ThreadSummary}; one whose columns do not read back is listed with `error`. */
export function toSummary(row: z.output<typeof SummaryRowSchema>): ThreadSummary {
  const updatedAt = row.updated_at.toISOString();
  const environments = StoredEnvironmentsSchema.safeParse(parseJson(row.environments));
  const status = StoredStatusSchema.safeParse(row.last_status);
  if (!environments.success || !status.success) {
    return { threadId: row.id, updatedAt, error: `the summary of thread ${row.id} does not read back (environments or last_status)` };
  }
  const summary: ThreadSummary = { threadId: row.id, createdAt: row.created_at, updatedAt, environments: environments.data satisfies ThreadEnvironment[] };
  if (status.data !== null) summary.lastStatus = status.data;
  if (row.last_turn_id !== null) summary.lastTurnId = row.last_turn_id;
  if (row.preview !== null) summary.preview = row.preview;
  return summary;
}
