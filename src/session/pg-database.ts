import pg from 'pg';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';

/**
 * The PostgreSQL database behind the `postgres://` thread store and ownership: one connection
 * pool per server process, and the versioned schema migrations every instance applies at start.
 * Migrations run under a transaction-scoped advisory lock, so instances starting together apply
 * each one exactly once; a database whose schema is newer than this version is refused rather
 * than written with an older idea of it.
 */

/** One step of the schema; `version`s are consecutive from 1 and never change once released. */
export interface Migration {
  version: number;
  /** What it adds, for `doctor` and the log. */
  name: string;
  /** The SQL, run in one transaction with the version's bookkeeping row. */
  sql: string;
}

/** The advisory lock key migrations hold (any constant unique to this program). */
const MIGRATION_LOCK_KEY = 0x636d785f6d6967n; // "cmx_mig"

/** Options of {@link openDatabase}. */
export interface DatabaseOptions {
  /** A libpq-style URL (`postgres://user:password@host:port/db`, `?host=/socket/dir` for a unix socket). */
  url: string;
  migrations: readonly Migration[];
  logger: Logger;
  /**
   * Connections in the pool.
   * @default 10
   */
  maxConnections?: number;
  /**
   * How long a connection attempt may take, in milliseconds.
   * @default 10000
   */
  connectTimeoutMs?: number;
}

/** An open database: the pool, and the schema version it is at. */
export interface Database {
  pool: pg.Pool;
  /** The schema version after migrating. */
  schemaVersion: number;
  /** Ends every connection. Idempotent. */
  close(): Promise<void>;
}

/** What a URL looks like with its password hidden, for messages. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(an unparsable database URL)';
  }
}

/** A pool of `max` connections and its idempotent close. */
function openPool(url: string, max: number, connectTimeoutMs: number, logger: Logger): { pool: pg.Pool; close: () => Promise<void> } {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: connectTimeoutMs });
  // An idle connection the server drops (a database restart) must not crash the process.
  pool.on('error', (error) => logger.warn(`database connection lost: ${errorMessage(error)}`));
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await pool.end();
  };
  return { pool, close };
}

/** Checks a migration list: versions consecutive from 1. */
function checkMigrations(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) throw new Error(`migration ${migration.name} has version ${migration.version}, expected ${index + 1}`);
  });
}

/**
 * Connects to the database and applies the migrations it lacks. Rejects with `UNAVAILABLE` when
 * the database cannot be reached (the message names the URL without its password), and with
 * `FAILED_PRECONDITION` when its schema is newer than this version knows.
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  checkMigrations(options.migrations);
  const { pool, close } = openPool(options.url, options.maxConnections ?? 10, options.connectTimeoutMs ?? 10_000, options.logger);
  try {
    const schemaVersion = await migrate(pool, options.migrations, options.logger);
    return { pool, schemaVersion, close };
  } catch (error) {
    await close();
    if (error instanceof LocalError) throw error;
    throw new LocalError(LocalErrorCode.Unavailable, `cannot use the database ${redactedUrl(options.url)}: ${errorMessage(error)}`);
  }
}

/** A database looked at without changing it (see {@link probeDatabase}). */
export interface DatabaseProbe {
  pool: pg.Pool;
  /** The schema version it is at: 0 before the first start of a server on it. */
  schemaVersion: number;
  /** Ends every connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * Connects to the database and reads its schema version, migrating nothing (for `doctor`).
 * Rejects with `UNAVAILABLE`, naming the URL without its password, when it cannot be reached.
 */
export async function probeDatabase(url: string, connectTimeoutMs = 10_000): Promise<DatabaseProbe> {
  const { pool, close } = openPool(url, 2, connectTimeoutMs, silentLogger);
  try {
    const table = await pool.query<{ present: boolean }>("SELECT to_regclass('cmx_schema_migrations') IS NOT NULL AS present");
    if (table.rows[0]?.present !== true) return { pool, schemaVersion: 0, close };
    const result = await pool.query<{ version: number | null }>('SELECT max(version) AS version FROM cmx_schema_migrations');
    return { pool, schemaVersion: result.rows[0]?.version ?? 0, close };
  } catch (error) {
    await close();
    throw new LocalError(LocalErrorCode.Unavailable, `cannot use the database ${redactedUrl(url)}: ${errorMessage(error)}`);
  }
}

/** Applies the missing migrations in one transaction under the advisory lock; returns the resulting version. */
async function migrate(pool: pg.Pool, migrations: readonly Migration[], logger: Logger): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    await client.query('CREATE TABLE IF NOT EXISTS cmx_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const result = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM cmx_schema_migrations');
    const current = result.rows[0]?.version ?? 0;
    if (current > migrations.length) {
      throw new LocalError(
        LocalErrorCode.FailedPrecondition,
        `the database schema is at version ${current}, newer than this codex-multienv knows (${migrations.length}): upgrade codex-multienv on this host`,
      );
    }
    for (const migration of migrations.slice(current)) {
      await client.query(migration.sql);
      await client.query('INSERT INTO cmx_schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      logger.info(`database schema migrated to version ${migration.version} (${migration.name})`);
    }
    await client.query('COMMIT');
    return migrations.length;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
