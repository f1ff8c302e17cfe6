import type pg from 'pg';
import { z } from 'zod';
import type { LeaseHolder } from '../protocol/status.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { STAMP_EXPRESSION, UNFLUSHED_COMMIT } from './pg-store-sql.js';

/**
 * The statements of the thread ownership in PostgreSQL (`pg-ownership.ts`) on the tables of
 * `pg-ownership-schema.ts`, the checks of the rows they return, and the reads `doctor` makes.
 *
 * Taking and giving back a lease commit without waiting for the flush (`UNFLUSHED_COMMIT`): a
 * round trip, not a disk flush, at every turn. Sound because nothing is done on the strength of a
 * lease before a commit that waits for the flush follows it, and that flush takes the lease with
 * it (the log is written in order): a turn's records wait for one before its answer leaves, before
 * a tool runs on the model's calls, and before Codex starts a turn (`EngineThreadInit.flush`). A
 * crash of the database that loses a lease taken since then loses the turn's records since then
 * too, and the next write of the turn is refused (`FENCED`: its lease row is gone or another's),
 * so a turn that lost its lease that way neither writes nor runs a command after another instance
 * took the thread. An epoch number may then be handed out again, but a fence is the owner (a
 * random id per process) and the epoch together, so no two owners ever share one; and one
 * process runs a thread's turns one after another. A release lost that way leaves a lease that
 * runs out by itself.
 */

/**
 * Takes a thread's lease (`$1` thread, `$2` owner, `$3` pid, `$4` host, `$5` lease ms): inserts it,
 * or takes over one that has run out or is this owner's own (the epoch grows then), and clears
 * the interrupt request an earlier turn left. One row (`thread_id`, `epoch`, and the thread's
 * `stamp` in the store, null without a live row) when taken.
 */
// The stamp is read after the take, locking the thread's row (FOR SHARE): such a read sees the
// newest committed version, not the statement's snapshot, and waits for a write in flight. So
// every write of an earlier owner is in it (each committed before its lease was given back or was
// waited for here), and a later write of one is refused (its fence waits for this commit, then
// finds the lease another's).
export const TAKE_LEASE_SQL = `
WITH taken AS (
  INSERT INTO cmx_thread_leases AS lease (thread_id, owner, pid, host, since, heartbeat_at, expires_at)
  VALUES ($1, $2, $3, $4, now(), now(), now() + $5 * interval '1 millisecond')
  ON CONFLICT (thread_id) DO UPDATE
    SET owner = excluded.owner, pid = excluded.pid, host = excluded.host, since = excluded.since,
        heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, epoch = lease.epoch + 1
    WHERE lease.expires_at <= now() OR lease.owner = excluded.owner
  RETURNING thread_id, epoch
), cleared AS (
  -- A request left from an earlier turn must not stop the next one.
  DELETE FROM cmx_interrupt_requests WHERE thread_id IN (SELECT thread_id FROM taken)
), ${UNFLUSHED_COMMIT}
SELECT thread_id, epoch::text AS epoch,
  (SELECT ${STAMP_EXPRESSION} FROM cmx_threads WHERE id = taken.thread_id AND archived_at IS NULL FOR SHARE) AS stamp
FROM taken, unflushed`;

/** Gives back the owner's (`$1`) leases of threads `$2` and announces each on channel `$3`. */
export const RELEASE_LEASES_SQL = `
WITH gone AS (DELETE FROM cmx_thread_leases WHERE owner = $1 AND thread_id = ANY($2::text[]) RETURNING thread_id), ${UNFLUSHED_COMMIT}
SELECT pg_notify($3, thread_id) FROM gone, unflushed`;

/** The heartbeat: renews the owner's (`$1`) leases of threads `$2` for `$3` ms; a row per lease renewed. */
export const RENEW_LEASES_SQL = `
UPDATE cmx_thread_leases SET heartbeat_at = now(), expires_at = now() + $3 * interval '1 millisecond'
WHERE owner = $1 AND thread_id = ANY($2::text[]) RETURNING thread_id`;

/** Keeps a request to stop turn `$2` of thread `$1` (reason `$3`) and announces it on channel `$4` with payload `$5`. */
export const REQUEST_INTERRUPT_SQL = `
WITH kept AS (
  INSERT INTO cmx_interrupt_requests (thread_id, turn_id, reason) VALUES ($1, $2, $3)
  ON CONFLICT (thread_id) DO UPDATE SET turn_id = excluded.turn_id, reason = excluded.reason, requested_at = now()
  RETURNING thread_id
)
SELECT pg_notify($4, $5) FROM kept`;

/** Names of the statements of every turn (prepared once per connection). */
export const LEASE_STATEMENT_NAMES = { take: 'cmx_take_lease', release: 'cmx_release_leases' } as const;

/** A lease row's holder. */
export const HolderRowSchema = z.object({ pid: z.number(), host: z.string(), since: z.date() });
/** A holder with its thread. */
export const HeldRowSchema = HolderRowSchema.extend({ thread_id: z.string() });
/** A holder with how long until its lease runs out (by the database's clock). */
export const LeaseRowSchema = HolderRowSchema.extend({ expires_in_ms: z.number() });
/** A thread id. */
export const ThreadIdRowSchema = z.object({ thread_id: z.string() });
/** A lease taken (see {@link TAKE_LEASE_SQL}). */
export const TakenRowSchema = z.object({ thread_id: z.string(), epoch: z.string(), stamp: z.string().nullable() });
/** A kept request to stop a turn. */
export const RequestRowSchema = z.object({ thread_id: z.string(), turn_id: z.string(), reason: z.string() });
const LeaseCountsRowSchema = z.object({ live: z.coerce.number(), expired: z.coerce.number(), instances: z.coerce.number() });
const ClockRowSchema = z.object({ now: z.date() });

/** Parses query rows; a row of another shape is a schema this version does not know. */
export function rowsOf<T>(schema: z.ZodType<T>, result: pg.QueryResult): T[] {
  return result.rows.map((row: unknown) => schema.parse(row));
}

/** A lease row's holder, as errors and statuses show it. */
export function holderOf(row: z.infer<typeof HolderRowSchema>): LeaseHolder {
  return { pid: row.pid, host: row.host, since: row.since.toISOString() };
}

/** This host's clock minus the database's (`now()`), in milliseconds, taking the round trip's midpoint as the moment it was read. */
export async function measureClockSkew(pool: pg.Pool): Promise<number> {
  const before = Date.now();
  let result: pg.QueryResult;
  try {
    result = await pool.query('SELECT now() AS now');
  } catch (error) {
    throw new LocalError(LocalErrorCode.Unavailable, `cannot read the database’s clock: ${errorMessage(error)}`, { cause: error });
  }
  const after = Date.now();
  const row = rowsOf(ClockRowSchema, result)[0];
  if (row === undefined) throw new LocalError(LocalErrorCode.Unavailable, 'the database did not say what time it is');
  return (before + after) / 2 - row.now.getTime();
}

/** The leases in the database now, for `doctor`: live ones, expired ones not yet taken over, and the instances holding the live ones. */
export async function leaseCounts(pool: pg.Pool): Promise<{ live: number; expired: number; instances: number }> {
  let result: pg.QueryResult;
  try {
    result = await pool.query(
      'SELECT count(*) FILTER (WHERE expires_at > now()) AS live, count(*) FILTER (WHERE expires_at <= now()) AS expired, count(DISTINCT owner) FILTER (WHERE expires_at > now()) AS instances FROM cmx_thread_leases',
    );
  } catch (error) {
    throw new LocalError(LocalErrorCode.Unavailable, `cannot read the thread leases: ${errorMessage(error)}`, { cause: error });
  }
  return rowsOf(LeaseCountsRowSchema, result)[0] ?? { live: 0, expired: 0, instances: 0 };
}
