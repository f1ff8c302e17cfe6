import type { Migration } from './pg-database.js';

/**
 * Migration 1: the tables of the PostgreSQL thread store (`pg-thread-store.ts`).
 *
 * - `cmx_threads`: one row per thread, keyed by a surrogate `key` so an archived thread keeps its
 *   rows while a new thread takes its id (at most one live row per id). Beside the header it holds
 *   the summary a listing shows, maintained by every append, and `revision`, bumped by every
 *   write, which is what `stamp()` reports.
 * - `cmx_thread_records`: the body records, `seq` from 1 per thread in append order.
 * - `cmx_thread_counts`: one row, how many live threads there are and how many of them failed,
 *   kept by a trigger in the transaction of each change, so a listing's `total` is one row read
 *   instead of a count of every thread (linear in the threads, tens of ms at 100,000).
 *
 * JSON is stored as `json`, not `jsonb`: the text as written, key order included (items go back to
 * the model unchanged), and `jsonb` refuses a `\u0000` escape that any prompt or output may hold.
 *
 * Thread ids and list positions compare as JavaScript compares strings (`COLLATE "C"`), so the
 * database's order is the order `thread-store.ts` defines. `updated_at` has millisecond precision,
 * as the ISO timestamps of list positions have.
 */
export const STORE_MIGRATION: Migration = {
  version: 1,
  name: 'thread store: threads, records, list summaries',
  sql: `
CREATE TABLE cmx_threads (
  key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text COLLATE "C" NOT NULL,
  header json NOT NULL,
  created_at text NOT NULL,
  updated_at timestamptz(3) NOT NULL,
  archived_at timestamptz(3),
  revision bigint NOT NULL DEFAULT 1,
  next_seq bigint NOT NULL DEFAULT 1,
  environments json NOT NULL,
  last_status text,
  last_turn_id text,
  preview text,
  failed boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX cmx_threads_live_id ON cmx_threads (id) WHERE archived_at IS NULL;
CREATE INDEX cmx_threads_archived_id ON cmx_threads (id, archived_at DESC) WHERE archived_at IS NOT NULL;
CREATE INDEX cmx_threads_list ON cmx_threads (updated_at DESC, id) WHERE archived_at IS NULL;
CREATE INDEX cmx_threads_list_failed ON cmx_threads (failed, updated_at DESC, id) WHERE archived_at IS NULL;
CREATE INDEX cmx_threads_open_turns ON cmx_threads (id) WHERE last_status = 'incomplete' AND archived_at IS NULL;
CREATE TABLE cmx_thread_counts (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  live bigint NOT NULL,
  failed bigint NOT NULL
);
INSERT INTO cmx_thread_counts (live, failed) VALUES (0, 0);
CREATE FUNCTION cmx_count_threads() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  live_delta bigint := 0;
  failed_delta bigint := 0;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    IF OLD.archived_at IS NULL THEN
      live_delta := live_delta - 1;
      IF OLD.failed THEN failed_delta := failed_delta - 1; END IF;
    END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    IF NEW.archived_at IS NULL THEN
      live_delta := live_delta + 1;
      IF NEW.failed THEN failed_delta := failed_delta + 1; END IF;
    END IF;
  END IF;
  IF live_delta <> 0 OR failed_delta <> 0 THEN
    UPDATE cmx_thread_counts SET live = live + live_delta, failed = failed + failed_delta;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER cmx_threads_counted AFTER INSERT OR DELETE ON cmx_threads FOR EACH ROW EXECUTE FUNCTION cmx_count_threads();
CREATE TRIGGER cmx_threads_recounted AFTER UPDATE OF archived_at, failed ON cmx_threads FOR EACH ROW
  WHEN (OLD.archived_at IS DISTINCT FROM NEW.archived_at OR OLD.failed IS DISTINCT FROM NEW.failed) EXECUTE FUNCTION cmx_count_threads();
CREATE TABLE cmx_thread_records (
  thread_key bigint NOT NULL REFERENCES cmx_threads (key),
  seq bigint NOT NULL,
  record json NOT NULL,
  PRIMARY KEY (thread_key, seq)
);
`,
};
