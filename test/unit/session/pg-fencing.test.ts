// Fencing of the PostgreSQL store's appends by the ownership's lease epoch (issue 17): an instance
// frozen past its lease, which does not know yet that another instance took the thread over, cannot
// write the thread late. Two instances (each its own pool, ownership and store) on a throwaway cluster.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import type { ThreadBodyRecord } from '../../../src/protocol/thread.js';
import { openDatabase, type Database } from '../../../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../../../src/session/pg-migrations.js';
import { PgOwnership } from '../../../src/session/pg-ownership.js';
import { PgThreadStore } from '../../../src/session/pg-thread-store.js';
import type { LoadedThread } from '../../../src/session/thread-store.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';
import { silentLogger } from '../../../src/util/logger.js';
import { startPostgres, type PostgresCluster } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/process.js';
import { createDatabase } from '../../helpers/thread-stores.js';

const AT = '2025-01-02T03:04:05.000Z';
const THREAD = '00000000-0000-4000-8000-0000000000f1';
/** Long enough that no heartbeat of A runs during a test: A stays sure it has the thread, as a frozen instance would. */
const LONG_LEASE_MS = 600_000;

function item(text: string): ThreadBodyRecord {
  return { type: 'item', at: AT, turnId: 't', item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] } };
}

function texts(loaded: LoadedThread | undefined): string[] {
  return (loaded?.records ?? []).flatMap((record) =>
    record.type === 'item' && Array.isArray(record.item.content)
      ? record.item.content.flatMap((part: unknown) => (typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string' ? [part.text] : []))
      : [],
  );
}

interface Instance {
  db: Database;
  ownership: PgOwnership;
  store: PgThreadStore;
}

describe('PgThreadStore fenced by the PgOwnership lease', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let cluster: PostgresCluster;
  let count = 0;
  const opened: Instance[] = [];

  beforeAll(async () => {
    dir = await tempDir('cmx-pgfence-');
    cluster = await startPostgres(dir.path);
  });

  afterEach(async () => {
    for (const { db, ownership, store } of opened.splice(0)) {
      await store.close();
      await ownership.releaseAll();
      await db.close();
    }
  });

  afterAll(async () => {
    await cluster.stop();
    await dir.cleanup();
  });

  /** A server instance as `cli/thread-storage.ts` makes one: its own pool, ownership, and a store fenced by that ownership. */
  async function instance(url: string): Promise<Instance> {
    const db = await openDatabase({ url, migrations: PG_MIGRATIONS, logger: silentLogger });
    const ownership = await PgOwnership.open({ pool: db.pool, url, logger: silentLogger, leaseMs: LONG_LEASE_MS });
    const store = new PgThreadStore({ pool: db.pool, where: 'the test database', fence: (threadId) => ownership.fenceOf(threadId) });
    const entry = { db, ownership, store };
    opened.push(entry);
    return entry;
  }

  /** A's lease runs out without A knowing (it is frozen, its heartbeat does not run): the database's clock passes its expiry. */
  async function expireLease(db: Database): Promise<void> {
    await db.pool.query(`UPDATE cmx_thread_leases SET expires_at = now() - interval '1 second' WHERE thread_id = $1`, [THREAD]);
  }

  it('refuses a late append of an owner whose lease ran out and was taken over: nothing of it lands after the new owner’s records', async () => {
    count += 1;
    const url = await createDatabase(cluster, `fence_${count}`);
    const a = await instance(url);
    const b = await instance(url);
    await a.ownership.acquire(THREAD);
    await a.store.create({
      threadId: THREAD,
      createdAt: AT,
      config: { model: 'm', modelProvider: 'p', approvalPolicy: 'never', sandbox: 'read-only', cwd: '/w', configOverrides: {} },
      environments: [],
    });
    await a.store.append(THREAD, item('a1'));

    await expireLease(a.db);
    await b.ownership.acquire(THREAD);
    expect(b.ownership.fenceOf(THREAD)?.epoch).toBe('2');
    await b.store.append(THREAD, item('b1'));

    // A still believes it has the thread, and writes: refused, in the append's own statement.
    expect(a.ownership.fenceOf(THREAD)?.epoch).toBe('1');
    const late = await a.store.append(THREAD, item('a2 (late)')).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(late).toBeInstanceOf(LocalError);
    expect((late as LocalError).code).toBe(LocalErrorCode.Fenced);
    expect((late as LocalError).message).toMatch(
      new RegExp(`thread ${THREAD}: a record was not written: .*lease on the thread \\(epoch 1\\) ran out and another instance took the thread over`),
    );
    // Several late appends sent together are refused together.
    const batch = await Promise.allSettled([a.store.append(THREAD, item('a3 (late)')), a.store.append(THREAD, item('a4 (late)'))]);
    expect(batch.map((result) => result.status)).toEqual(['rejected', 'rejected']);

    await b.store.append(THREAD, item('b2'));
    expect(texts(await b.store.load(THREAD))).toEqual(['a1', 'b1', 'b2']);

    // Once B gave the thread back (its lease row is gone), A's old lease still does not let it write.
    await b.ownership.release(THREAD);
    await expect(a.store.append(THREAD, item('a5 (late)'))).rejects.toMatchObject({ code: LocalErrorCode.Fenced });
    expect(texts(await b.store.load(THREAD))).toEqual(['a1', 'b1', 'b2']);
  });

  it('still appends for the owner whose lease is live, and without a lease (a thread this instance did not take) as before', async () => {
    count += 1;
    const url = await createDatabase(cluster, `fence_${count}`);
    const a = await instance(url);
    await a.store.create({
      threadId: THREAD,
      createdAt: AT,
      config: { model: 'm', modelProvider: 'p', approvalPolicy: 'never', sandbox: 'read-only', cwd: '/w', configOverrides: {} },
      environments: [],
    });
    await a.store.append(THREAD, item('unleased'));
    await a.ownership.acquire(THREAD);
    await Promise.all([a.store.append(THREAD, item('leased 1')), a.store.append(THREAD, item('leased 2'))]);
    await a.ownership.release(THREAD);
    await a.store.append(THREAD, item('released'));
    expect(texts(await a.store.load(THREAD))).toEqual(['unleased', 'leased 1', 'leased 2', 'released']);
    // A thread that does not exist is still NOT_FOUND, not FENCED, with a lease.
    const missing = '00000000-0000-4000-8000-0000000000f2';
    await a.ownership.acquire(missing);
    await expect(a.store.append(missing, item('x'))).rejects.toMatchObject({ code: LocalErrorCode.NotFound });
  });
});
