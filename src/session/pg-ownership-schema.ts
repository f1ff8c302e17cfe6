import type { Migration } from './pg-database.js';

/**
 * Migration 2 of the PostgreSQL schema: thread ownership (`pg-ownership.ts`).
 *
 * - `cmx_thread_leases`: one row per thread some instance runs a turn of. `owner` is the instance
 *   (a random id per server process, so two instances in one process or on one host are told
 *   apart); `pid`, `host` and `since` are what a busy error and `runningElsewhere` show.
 *   `expires_at` is set from the database's clock only (`now()`), so instances whose clocks
 *   disagree still agree on when a lease runs out. `epoch` grows by one at every change of
 *   hands: a fencing token that tells a write of the current owner from one of an owner that
 *   lost the lease without knowing it yet.
 * - `cmx_interrupt_requests`: the latest request to stop a turn of a thread, kept until its owner
 *   takes it, since a `NOTIFY` sent while the owner's listener is reconnecting is lost.
 */
export const OWNERSHIP_MIGRATION: Migration = {
  version: 2,
  name: 'thread ownership: leases and interrupt requests',
  sql: `
CREATE TABLE cmx_thread_leases (
  thread_id text PRIMARY KEY,
  owner text NOT NULL,
  pid integer NOT NULL,
  host text NOT NULL,
  since timestamptz NOT NULL,
  heartbeat_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  epoch bigint NOT NULL DEFAULT 1
);
CREATE INDEX cmx_thread_leases_owner ON cmx_thread_leases (owner);
CREATE TABLE cmx_interrupt_requests (
  thread_id text PRIMARY KEY,
  turn_id text NOT NULL,
  reason text NOT NULL,
  requested_at timestamptz NOT NULL DEFAULT now()
);
`,
};
