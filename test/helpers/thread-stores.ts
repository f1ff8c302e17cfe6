import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { JsonlThreadStore } from '../../src/session/jsonl-thread-store.js';
import { openDatabase, type Database } from '../../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../../src/session/pg-migrations.js';
import { PgThreadStore } from '../../src/session/pg-thread-store.js';
import type { ThreadStore } from '../../src/session/thread-store.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { startPostgres, type PostgresCluster } from './postgres.js';

/**
 * The thread stores behind the seam, made the same way for the contract tests that run against
 * each (test/unit/session/thread-store.test.ts). A factory's `setUp`/`tearDown` run once per test
 * file (a PostgreSQL cluster), `reset` before each test (an empty folder, a fresh database).
 */
export interface StoreFactory {
  name: string;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  reset(): Promise<void>;
  /** A store on the current location; each one stands for a server process. Closed by `reset`/`tearDown`. */
  newStore(options?: { logger?: Logger; now?: () => number }): ThreadStore;
  /** Stores `json` as the thread's next record behind the store's back (another writer, a newer version, damage). */
  storeRaw(threadId: string, json: string): Promise<void>;
  /** The thread's body records as stored, each one's `type`, in order (what a newer version would read). */
  storedTypes(threadId: string): Promise<string[]>;
}

/** A stored record's `type`. */
function typeOf(record: unknown): string {
  if (typeof record !== 'object' || record === null || !('type' in record) || typeof record.type !== 'string') throw new Error(`not a record: ${JSON.stringify(record)}`);
  return record.type;
}

/** A fresh, empty database in `cluster`, its URL. */
export async function createDatabase(cluster: PostgresCluster, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return cluster.url.replace('/postgres?', `/${name}?`);
}

/** The JSON Lines store on a new temp folder per test. */
export function jsonlFactory(at: number): StoreFactory {
  let tmp: string | undefined;
  let dir = '';
  const stores: ThreadStore[] = [];
  const cleanUp = async (): Promise<void> => {
    await Promise.all(stores.splice(0).map((store) => store.close()));
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  };
  return {
    name: 'JSON Lines files',
    setUp: () => Promise.resolve(),
    tearDown: cleanUp,
    reset: async () => {
      await cleanUp();
      tmp = await mkdtemp(join(tmpdir(), 'thread-store-'));
      dir = join(tmp, 'threads');
    },
    newStore: (options = {}) => {
      const store = new JsonlThreadStore({ dir, fsync: false, now: () => at, ...options });
      stores.push(store);
      return store;
    },
    storeRaw: (threadId, json) => appendFile(join(dir, `${threadId}.jsonl`), `${json}\n`),
    storedTypes: async (threadId) => {
      const lines = (await readFile(join(dir, `${threadId}.jsonl`), 'utf8')).split('\n').filter((line) => line !== '');
      return lines.slice(1).map((line) => typeOf(JSON.parse(line)));
    },
  };
}

/** The PostgreSQL store on its own cluster (per test file) and a fresh database per test. */
export function pgFactory(at: number): StoreFactory {
  let tmp: Awaited<ReturnType<typeof mkdtemp>> | undefined;
  let cluster: PostgresCluster | undefined;
  let database: Database | undefined;
  let count = 0;
  const stores: ThreadStore[] = [];
  const cleanUp = async (): Promise<void> => {
    await Promise.all(stores.splice(0).map((store) => store.close()));
    await database?.close();
    database = undefined;
  };
  const open = (): Database => {
    if (database === undefined) throw new Error('reset() first');
    return database;
  };
  return {
    name: 'PostgreSQL',
    setUp: async () => {
      tmp = await mkdtemp(join(tmpdir(), 'cmx-pgstore-'));
      cluster = await startPostgres(tmp);
    },
    tearDown: async () => {
      await cleanUp();
      await cluster?.stop();
      if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
    },
    reset: async () => {
      await cleanUp();
      if (cluster === undefined) throw new Error('setUp() first');
      count += 1;
      database = await openDatabase({ url: await createDatabase(cluster, `contract_${count}`), migrations: PG_MIGRATIONS, logger: silentLogger });
    },
    newStore: (options = {}) => {
      const store = new PgThreadStore({ pool: open().pool, where: 'the test database', now: () => at, ...options });
      stores.push(store);
      return store;
    },
    storeRaw: async (threadId, json) => {
      await open().pool.query(
        `WITH t AS (UPDATE cmx_threads SET next_seq = next_seq + 1, revision = revision + 1 WHERE id = $1 AND archived_at IS NULL RETURNING key, next_seq - 1 AS seq)
         INSERT INTO cmx_thread_records (thread_key, seq, record) SELECT key, seq, $2::json FROM t`,
        [threadId, json],
      );
    },
    storedTypes: async (threadId) => {
      const result = await open().pool.query<{ record: unknown }>(
        'SELECT r.record FROM cmx_thread_records r JOIN cmx_threads t ON t.key = r.thread_key WHERE t.id = $1 AND t.archived_at IS NULL ORDER BY r.seq',
        [threadId],
      );
      return result.rows.map((row) => typeOf(row.record));
    },
  };
}
