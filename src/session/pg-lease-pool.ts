import pg from 'pg';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** The `application_name` of the lease connections, so operators (and tests) tell them apart in `pg_stat_activity`. */
export const LEASE_APPLICATION_NAME = 'codex-multienv leases';

/** Connections of the lease pool: the heartbeat (one statement at a time) and a rare request to stop a turn beside it. */
const LEASE_CONNECTIONS = 2;

/** Options of {@link openLeasePool}. */
export interface LeasePoolOptions {
  url: string;
  logger: Logger;
  /** The longest a statement may take; one that takes longer ends its connection, and the next statement connects anew. */
  queryTimeoutMs: number;
  /** The longest a statement waits to connect, or for a connection of the pool to be free. */
  connectTimeoutMs: number;
}

/**
 * A small pool of its own for the lease heartbeat and the statements that stop turns, apart from
 * the store's pool: hundreds of running turns appending fill that one, and a heartbeat queued
 * behind them misses its window, so the instance stops every turn it runs. Its connections stay
 * open while idle; one that breaks or stops answering is ended, and the next statement connects again.
 */
export function openLeasePool(options: LeasePoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: LEASE_CONNECTIONS,
    application_name: LEASE_APPLICATION_NAME,
    connectionTimeoutMillis: options.connectTimeoutMs,
    // A statement that outlives this fails, and pg.Pool ends a connection returned with an error.
    query_timeout: options.queryTimeoutMs,
    // Idle between heartbeats: kept, so a beat costs a round trip and not a connection.
    idleTimeoutMillis: 0,
    // A host that vanished without a reset is noticed by the socket, not only by the statement's deadline.
    keepAlive: true,
  });
  // An idle connection the server drops (a database restart) must not crash the process.
  pool.on('error', (error) => options.logger.warn(`lease connection lost: ${errorMessage(error)}`));
  return pool;
}
