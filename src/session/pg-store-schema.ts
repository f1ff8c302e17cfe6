import type { Migration } from './pg-database.js';

/**
 * Migration 1: the tables of the PostgreSQL thread store (`pg-thread-store.ts`).
 *
 * - `cmx_threads`: one row per thread, keyed by a surrogate `key` so an archived thread keeps its
 *   rows while a new thread takes its id (at most one live row per id). Beside the header it holds
 *   the summary a listing shows, maintained by every append, and `revision`, bumped by every
 *   write, which is what `stamp()` reports.
 * - `cmx_thread_records`: the body records, `seq` from 1 per thread in append order.
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
CREATE TABLE cmx_thread_records (
  thread_key bigint NOT NULL REFERENCES cmx_threads (key),
  seq bigint NOT NULL,
  record json NOT NULL,
  PRIMARY KEY (thread_key, seq)
);
`,
};
