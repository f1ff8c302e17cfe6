// What is particular to the PostgreSQL thread store (its contract is thread-store.test.ts): the
// migration at start, several server processes (each its own pool) writing one thread, a database
// restart in the middle of use, the archive hint. A throwaway cluster, a fresh database per test.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ThreadBodyRecord } from '../../../src/protocol/thread.js';
import { openDatabase, type Database } from '../../../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../../../src/session/pg-migrations.js';
import { PgThreadStore } from '../../../src/session/pg-thread-store.js';
import type { LoadedThread, NewThreadHeader } from '../../../src/session/thread-store.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';
import { createLogger, silentLogger } from '../../../src/util/logger.js';
import { startPostgres, type PostgresCluster } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/process.js';
import { createDatabase } from '../../helpers/thread-stores.js';

const AT = '2025-01-02T03:04:05.000Z';

function header(threadId: string): NewThreadHeader {
  return {
    threadId,
    createdAt: AT,
    config: { model: 'gpt-5-codex', modelProvider: 'openai', approvalPolicy: 'on-request', sandbox: 'workspace-write', cwd: '/work', configOverrides: {} },
    environments: [{ id: 'local', cwd: '/work' }],
  };
}

function item(text: string): ThreadBodyRecord {
  return { type: 'item', at: AT, turnId: 'u', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] } };
}

function itemTexts(loaded: LoadedThread | undefined): string[] {
  return (loaded?.records ?? []).flatMap((record) => {
    if (record.type !== 'item' || !Array.isArray(record.item.content)) return [];
    return record.item.content.flatMap((part: unknown) => (typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string' ? [part.text] : []));
  });
}

async function rejection(promise: Promise<unknown>): Promise<LocalError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(LocalError);
  return error as LocalError;
}

describe('PgThreadStore', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let cluster: PostgresCluster;
  let count = 0;
  const opened: Database[] = [];

  beforeAll(async () => {
    dir = await tempDir('cmx-pgstore-');
    cluster = await startPostgres(dir.path);
  });

  afterAll(async () => {
    await Promise.all(opened.map((database) => database.close()));
    await cluster.stop();
    await dir.cleanup();
  });

  async function freshUrl(): Promise<string> {
    count += 1;
    return createDatabase(cluster, `pgstore_${count}`);
  }

  /** A database opened as a server process opens it: its own pool, migrations applied. */
  async function open(url: string): Promise<Database> {
    const database = await openDatabase({ url, migrations: PG_MIGRATIONS, logger: silentLogger });
    opened.push(database);
    return database;
  }

  it('creates its tables (migration 1; 2 is the ownership, 3 the shared secrets) at the first start, and later starts find them', async () => {
    const url = await freshUrl();
    const first = await open(url);
    expect(first.schemaVersion).toBe(3);
    const tables = await first.pool.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
    expect(tables.rows.map((row) => row.tablename)).toEqual([
      'cmx_interrupt_requests',
      'cmx_schema_migrations',
      'cmx_secrets',
      'cmx_thread_counts',
      'cmx_thread_leases',
      'cmx_thread_records',
      'cmx_threads',
    ]);
    const store = new PgThreadStore({ pool: first.pool, where: 'db' });
    await store.create(header('kept'));
    await store.close();

    const second = await open(url);
    expect(second.schemaVersion).toBe(3);
    const applied = await second.pool.query<{ version: number; name: string }>('SELECT version, name FROM cmx_schema_migrations ORDER BY version');
    expect(applied.rows).toEqual(PG_MIGRATIONS.map((migration) => ({ version: migration.version, name: migration.name })));
    expect((await new PgThreadStore({ pool: second.pool, where: 'db' }).load('kept'))?.header.threadId).toBe('kept');
  });

  it('makes a shared secret once: every store of the database reads the same 32 bytes, never sent anywhere else', async () => {
    const url = await freshUrl();
    const [one, two] = [await open(url), await open(url)];
    const [a, b] = [new PgThreadStore({ pool: one.pool, where: 'db' }), new PgThreadStore({ pool: two.pool, where: 'db' })];
    const [first, second] = await Promise.all([a.sharedSecret('request-state'), b.sharedSecret('request-state')]);
    expect(first).toHaveLength(32);
    expect(second.equals(first)).toBe(true);
    expect((await a.sharedSecret('other')).equals(first)).toBe(false);
    await expect(a.sharedSecret('../x')).rejects.toThrow('invalid shared secret name');
  });

  it('knows the stamp its own write left, which a write by another process since makes differ from the stamp then', async () => {
    const url = await freshUrl();
    const [a, b] = [new PgThreadStore({ pool: (await open(url)).pool, where: 'db' }), new PgThreadStore({ pool: (await open(url)).pool, where: 'db' })];
    await a.create(header('stamped'));
    expect(a.writtenStamp('stamped')).toBeUndefined();
    await a.append('stamped', item('by a'), { durable: false });
    const kept = a.writtenStamp('stamped');
    expect(kept).toBe(await a.stamp('stamped'));
    await b.append('stamped', item('by b'));
    expect(await a.stamp('stamped')).not.toBe(kept);
    // Seen stale by that stamp: forgotten, so the next hold's end reads the stamp instead.
    expect(a.writtenStamp('stamped')).toBeUndefined();
    expect(b.writtenStamp('stamped')).toBe(await b.stamp('stamped'));
  });

  it('keeps each writer’s order when two processes append to one thread at once, with no record lost or numbered twice', async () => {
    const url = await freshUrl();
    const [a, b] = [new PgThreadStore({ pool: (await open(url)).pool, where: 'db' }), new PgThreadStore({ pool: (await open(url)).pool, where: 'db' })];
    await a.create(header('shared'));
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 150; i += 1) writes.push(a.append('shared', item(`a${i}`)), b.append('shared', item(`b${i}`)));
    await Promise.all(writes);
    const texts = itemTexts(await b.load('shared'));
    expect(texts).toHaveLength(300);
    const expected = (prefix: string): string[] => Array.from({ length: 150 }, (_, i) => `${prefix}${i}`);
    expect(texts.filter((text) => text.startsWith('a'))).toEqual(expected('a'));
    expect(texts.filter((text) => text.startsWith('b'))).toEqual(expected('b'));
    const admin = (await open(url)).pool;
    const seqs = await admin.query<{ first: string; last: string; n: string }>(
      'SELECT min(seq)::text AS first, max(seq)::text AS last, count(*)::text AS n FROM cmx_thread_records',
    );
    expect(seqs.rows[0]).toEqual({ first: '1', last: '300', n: '300' });
  });

  it('rejects with UNAVAILABLE naming what failed while the database is down, loses nothing acknowledged, and works again once it is back', async () => {
    const warnings: string[] = [];
    const database = await openDatabase({
      url: await freshUrl(),
      migrations: PG_MIGRATIONS,
      logger: createLogger({ level: 'warn', write: (line) => warnings.push(line) }),
      connectTimeoutMs: 2_000,
    });
    opened.push(database);
    const store = new PgThreadStore({ pool: database.pool, where: 'the test database' });
    await store.create(header('r'));
    await store.append('r', item('before'));
    // Connections in the pool when the database goes away.
    await Promise.all([store.load('r'), store.list({ limit: 10 }), store.stamp('r')]);

    await cluster.stop();
    try {
      const append = await rejection(store.append('r', item('while down')));
      expect(append.code).toBe(LocalErrorCode.Unavailable);
      expect(append.message).toMatch(/^cannot append a record to thread r: the thread database the test database failed: /);
      const calls: [string, () => Promise<unknown>][] = [
        ['load thread r', () => store.load('r')],
        ['count the threads', () => store.list({ limit: 10 })],
        ['read thread r', () => store.stamp('r')],
        ['create thread s', () => store.create(header('s'))],
      ];
      for (const [what, call] of calls) {
        const error = await rejection(call());
        expect(error.code).toBe(LocalErrorCode.Unavailable);
        expect(error.message).toContain(`cannot ${what}: the thread database the test database failed`);
      }
    } finally {
      await cluster.start();
    }

    // The pool connects again by itself; what was acknowledged is all there, the refused append is not.
    await store.append('r', item('after'));
    expect(itemTexts(await store.load('r'))).toEqual(['before', 'after']);
    expect((await store.list({ limit: 10 })).total).toBe(1);
    expect(warnings.join('')).toMatch(/database connection lost/);
  });

  it('keeps the totals of listings exact through creates, failed turns, later turns, archives and re-creates, from its counts row', async () => {
    const database = await open(await freshUrl());
    const store = new PgThreadStore({ pool: database.pool, where: 'db' });
    const turn = async (threadId: string, turnId: string, status: 'completed' | 'failed'): Promise<void> => {
      await store.append(threadId, { type: 'turn_started', turnId, prompt: 'p', environments: [] });
      await store.append(threadId, { type: 'turn_completed', turnId, status, lastAgentMessage: null });
    };
    const check = async (): Promise<void> => {
      const truth = await database.pool.query<{ live: number; failed: number }>(
        'SELECT count(*)::int AS live, (count(*) FILTER (WHERE failed))::int AS failed FROM cmx_threads WHERE archived_at IS NULL',
      );
      const { live, failed } = truth.rows[0] ?? { live: -1, failed: -1 };
      expect([(await store.list({ limit: 0 })).total, (await store.list({ limit: 0, failed: true })).total, (await store.list({ limit: 0, failed: false })).total]).toEqual([
        live,
        failed,
        live - failed,
      ]);
      const exclude = new Set(['a', 'b', 'nope']);
      const excluded = (await store.list({ limit: 100, exclude })).summaries.length;
      expect((await store.list({ limit: 0, exclude })).total).toBe(excluded);
      expect((await store.list({ limit: 0, exclude, failed: true })).total).toBe((await store.list({ limit: 100, exclude, failed: true })).summaries.length);
    };
    await Promise.all(['a', 'b', 'c', 'd'].map((id) => store.create(header(id))));
    await check();
    await turn('a', 'a1', 'failed');
    await turn('b', 'b1', 'failed');
    await turn('c', 'c1', 'completed');
    await check();
    await turn('a', 'a2', 'completed');
    await store.archive('b');
    await check();
    await store.create(header('b'));
    await turn('b', 'b2', 'failed');
    await store.archive('d');
    await check();
    expect((await store.list({ limit: 0 })).total).toBe(3);
  });

  it('archives by marking the row, and its hint is a statement that brings the thread back', async () => {
    const database = await open(await freshUrl());
    const store = new PgThreadStore({ pool: database.pool, where: 'db' });
    await store.create(header('arc'));
    await store.append('arc', item('kept'));
    expect(await store.archive('arc')).toMatch(/^the row of key \d+ in cmx_threads of db$/);
    const hint = store.archivedHint('arc');
    const statement = /run in db: (UPDATE cmx_threads SET archived_at = NULL WHERE key = \d+)$/.exec(hint ?? '')?.[1];
    expect(statement).toBeDefined();
    await database.pool.query(statement ?? '');
    expect(itemTexts(await store.load('arc'))).toEqual(['kept']);
    expect((await store.list({ limit: 10 })).summaries.map((summary) => summary.threadId)).toEqual(['arc']);
  });

  it('keeps NUL characters of prompts and turn ids, which text columns cannot hold, in the records', async () => {
    const database = await open(await freshUrl());
    const store = new PgThreadStore({ pool: database.pool, where: 'db' });
    await store.create(header('nul'));
    await store.append('nul', { type: 'turn_started', turnId: 'u\u00001', prompt: 'a\u0000b', environments: [] });
    expect(await store.summary('nul')).toMatchObject({ lastStatus: 'incomplete', lastTurnId: 'u\uFFFD1', preview: 'a\uFFFDb' });
    expect((await store.load('nul'))?.records[0]).toMatchObject({ turnId: 'u\u00001', prompt: 'a\u0000b' });
  });

  it('refuses a list position that is not a timestamp', async () => {
    const database = await open(await freshUrl());
    const store = new PgThreadStore({ pool: database.pool, where: 'db' });
    const error = await rejection(store.list({ limit: 5, after: { updatedAt: 'yesterday', threadId: 'x' } }));
    expect(error.code).toBe(LocalErrorCode.InvalidArgument);
    expect(error.message).toContain('updatedAt "yesterday" is not a timestamp');
  });
});
