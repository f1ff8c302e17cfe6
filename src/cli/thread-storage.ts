import { DatabaseUrlSchema } from '../config/settings.js';
import { JsonlThreadStore, openThreadFilesFor } from '../session/jsonl-thread-store.js';
import type { ThreadOwnership } from '../session/ownership.js';
import { ThreadLeases } from '../session/thread-lease.js';
import type { ThreadStore } from '../session/thread-store.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** Where a server keeps its threads, and who owns which thread among the processes sharing them. */
export interface ThreadStorage {
  store: ThreadStore;
  ownership: ThreadOwnership;
  /** Where the threads are, for the log: a folder, or the database URL without its password. */
  where: string;
  /** Lets go of what the store used (the database's connections), after `store.close()`. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@link openThreadStorage}. */
export interface ThreadStorageOptions {
  /** `multienv.store`, already validated. @default undefined (files) */
  configuredUrl: string | undefined;
  /** `CODEX_MULTIENV_DATABASE_URL`, validated here; it wins over `configuredUrl`. @default undefined */
  envUrl: string | undefined;
  /** `multienv.threads_dir`: the files of the default store. */
  threadsDir: string;
  /** `multienv.max_concurrent_turns`: the file store keeps a thread's file open while its turn runs. */
  maxConcurrentTurns: number;
  /** `multienv.lease_sec` in ms: how long a thread's lease in the database outlives its owner's last heartbeat. */
  leaseMs: number;
  logger: Logger;
}

/**
 * Opens the configured thread store: the JSON Lines files of the threads folder (several server
 * processes on one machine coordinating through file leases), or a PostgreSQL database (threads
 * and their leases, so instances on many hosts can share it), whose
 * modules and the `pg` package load only then (they would slow every stdio cold start). Rejects
 * with a message naming what is wrong when the URL is invalid, the database cannot be reached, or
 * its schema is newer than this version.
 */
export async function openThreadStorage(options: ThreadStorageOptions): Promise<ThreadStorage> {
  const { logger } = options;
  const url = databaseUrlOf(options.configuredUrl, options.envUrl);
  if (url === undefined) {
    return {
      store: new JsonlThreadStore({ dir: options.threadsDir, logger: logger.child('store'), maxOpenFiles: openThreadFilesFor(options.maxConcurrentTurns) }),
      // Several server processes may share the threads folder (a client restarting us, two clients).
      ownership: new ThreadLeases({ dir: options.threadsDir, logger: logger.child('threads') }),
      where: options.threadsDir,
      close: () => Promise.resolve(),
    };
  }
  const [{ openDatabase, redactedUrl }, { PG_MIGRATIONS }, { PgThreadStore }, { PgOwnership }] = await Promise.all([
    import('../session/pg-database.js'),
    import('../session/pg-migrations.js'),
    import('../session/pg-thread-store.js'),
    import('../session/pg-ownership.js'),
  ]);
  const where = redactedUrl(url);
  const database = await openDatabase({ url, migrations: PG_MIGRATIONS, logger: logger.child('database') });
  let ownership: Awaited<ReturnType<typeof PgOwnership.open>>;
  try {
    // Leases in the database: any number of instances may share it, on any hosts.
    ownership = await PgOwnership.open({ pool: database.pool, url, logger: logger.child('threads'), leaseMs: options.leaseMs });
  } catch (error) {
    await database.close();
    throw error;
  }
  // Appends are fenced by the lease: an instance that lost a thread without knowing it yet cannot write it late.
  const store = new PgThreadStore({ pool: database.pool, where, logger: logger.child('store'), fence: (threadId) => ownership.fenceOf(threadId) });
  return { store, ownership, where, close: () => database.close() };
}

/**
 * The database that keeps the threads: `CODEX_MULTIENV_DATABASE_URL` when set (validated here),
 * else `multienv.store` (validated with the config); undefined for the files.
 * @throws LocalError `INVALID_ARGUMENT` naming the variable when its URL is not a PostgreSQL one.
 */
export function databaseUrlOf(configuredUrl: string | undefined, envUrl: string | undefined): string | undefined {
  return envUrl === undefined || envUrl === '' ? configuredUrl : parseEnvUrl(envUrl);
}

function parseEnvUrl(value: string): string {
  const parsed = DatabaseUrlSchema.safeParse(value);
  if (!parsed.success) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `CODEX_MULTIENV_DATABASE_URL: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`);
  }
  return parsed.data;
}
