import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { ThreadBusyError, type TurnStopRequest } from '../../../src/session/ownership.js';
import { openDatabase, type Database } from '../../../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../../../src/session/pg-migrations.js';
import { PgThreadStore } from '../../../src/session/pg-thread-store.js';
import { LEASE_APPLICATION_NAME } from '../../../src/session/pg-lease-pool.js';
import { LISTENER_APPLICATION_NAME } from '../../../src/session/pg-listener.js';
import { PgOwnership } from '../../../src/session/pg-ownership.js';
import { createLogger, silentLogger } from '../../../src/util/logger.js';
import { startPostgres, type PostgresCluster } from '../../helpers/postgres.js';
import { tempDir, waitFor } from '../../helpers/process.js';

/** The whole schema: taking a lease also reads the thread's stamp in the store's table. */
const MIGRATIONS = PG_MIGRATIONS;

const THREAD = '00000000-0000-4000-8000-000000000001';
const OTHER_THREAD = '00000000-0000-4000-8000-000000000002';

/** A lease long enough that nothing in a test depends on it running out. */
const LONG_LEASE_MS = 600_000;

/** Calls of an ownership's interrupt handler, awaitable. */
function stopRequests(ownership: PgOwnership): { next: () => Promise<[string, TurnStopRequest]> } {
  const seen: [string, TurnStopRequest][] = [];
  let wake: (() => void) | undefined;
  ownership.onInterrupt((threadId, request) => {
    seen.push([threadId, request]);
    wake?.();
  });
  return {
    next: async () => {
      while (seen.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const first = seen.shift();
      if (first === undefined) throw new Error('no request');
      return first;
    },
  };
}

describe('PgOwnership: thread leases in PostgreSQL', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let cluster: PostgresCluster;
  let databases = 0;
  const opened: { db: Database; ownership: PgOwnership }[] = [];

  beforeAll(async () => {
    dir = await tempDir('cmx-pgown-');
    cluster = await startPostgres(dir.path);
  });

  afterEach(async () => {
    for (const { db, ownership } of opened.splice(0)) {
      await ownership.releaseAll();
      await db.close();
    }
  });

  afterAll(async () => {
    await cluster.stop();
    await dir.cleanup();
  });

  /** A fresh database for one test. */
  async function freshDatabase(): Promise<string> {
    databases += 1;
    const name = `ownership_${databases}`;
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    return cluster.url.replace('/postgres?', `/${name}?`);
  }

  /** An instance: its own pool and ownership on the database. */
  async function instance(url: string, leaseMs: number, log?: (line: string) => void, maxConnections?: number): Promise<{ db: Database; ownership: PgOwnership }> {
    const logger = log === undefined ? silentLogger : createLogger({ write: log, level: 'debug' });
    const db = await openDatabase({ url, migrations: MIGRATIONS, logger, maxConnections });
    const ownership = await PgOwnership.open({ pool: db.pool, url, logger, leaseMs });
    const entry = { db, ownership };
    opened.push(entry);
    return entry;
  }

  /** The server process behind an instance's lease connection (it has one idle since the start). */
  async function leaseBackend(entry: { db: Database }): Promise<number> {
    const rows = await entry.db.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()', [
      LEASE_APPLICATION_NAME,
    ]);
    const pid = rows.rows[0]?.pid;
    if (pid === undefined || rows.rows.length !== 1) throw new Error(`expected one lease connection, found ${rows.rows.length}`);
    return pid;
  }

  it('lets one instance at a time have a thread; the other is told who has it', async () => {
    const url = await freshDatabase();
    const a = await instance(url, LONG_LEASE_MS);
    const b = await instance(url, LONG_LEASE_MS);
    await a.ownership.acquire(THREAD);
    await a.ownership.acquire(THREAD);
    const busy = await b.ownership.acquire(THREAD).catch((error: unknown) => error);
    expect(busy).toBeInstanceOf(ThreadBusyError);
    expect((busy as ThreadBusyError).holder).toMatchObject({ pid: process.pid });
    expect((busy as ThreadBusyError).message).toMatch(/its lease runs out 600 s after its last heartbeat/);
    expect(await b.ownership.holderElsewhere(THREAD)).toMatchObject({ pid: process.pid });
    expect(await a.ownership.holderElsewhere(THREAD)).toBeUndefined();
    expect([...(await b.ownership.heldElsewhere()).keys()]).toEqual([THREAD]);
    expect([...(await b.ownership.heldElsewhere([OTHER_THREAD])).keys()]).toEqual([]);
    expect((await a.ownership.heldElsewhere()).size).toBe(0);

    await a.ownership.release(THREAD);
    expect(await b.ownership.holderElsewhere(THREAD)).toBeUndefined();
    await b.ownership.acquire(THREAD);
    await expect(a.ownership.acquire(THREAD)).rejects.toBeInstanceOf(ThreadBusyError);
  });

  it('reads the thread’s stamp in the store with the take, after every write made before it (by any instance)', async () => {
    const url = await freshDatabase();
    const a = await instance(url, LONG_LEASE_MS);
    const b = await instance(url, LONG_LEASE_MS);
    const [storeA, storeB] = [new PgThreadStore({ pool: a.db.pool, where: 'db' }), new PgThreadStore({ pool: b.db.pool, where: 'db' })];
    const config = { model: 'm', modelProvider: 'p', approvalPolicy: 'never', sandbox: 'read-only', cwd: '/w', configOverrides: {} } as const;
    await storeA.create({ threadId: THREAD, createdAt: new Date(0).toISOString(), config, environments: [{ id: 'local', cwd: '/w' }] });
    const first = await a.ownership.acquire(THREAD);
    expect(first).toBe(await storeA.stamp(THREAD));
    // Held already: nothing read.
    expect(await a.ownership.acquire(THREAD)).toBeUndefined();
    await a.ownership.release(THREAD);
    await b.ownership.acquire(THREAD);
    await storeB.append(THREAD, { type: 'turn_started', turnId: 't', prompt: 'on b', environments: [] }, { durable: false });
    await b.ownership.release(THREAD);
    const again = await a.ownership.acquire(THREAD);
    expect(again).not.toBe(first);
    expect(again).toBe(await storeA.stamp(THREAD));
    // A thread without a live row in the store has no stamp.
    expect(await a.ownership.acquire(OTHER_THREAD)).toBeUndefined();
  });

  it('takes over a lease that ran out (its owner died) and only then; every change of hands is a new epoch', async () => {
    const url = await freshDatabase();
    const b = await instance(url, LONG_LEASE_MS);
    // A dead instance's rows, by the database's clock: one run out, one still live.
    await b.db.pool.query(
      `INSERT INTO cmx_thread_leases (thread_id, owner, pid, host, since, heartbeat_at, expires_at) VALUES
         ($1, 'dead', 4242, 'gone-host', now() - interval '1 minute', now() - interval '1 minute', now() - interval '1 second'),
         ($2, 'dead', 4242, 'gone-host', now(), now(), now() + interval '1 hour')`,
      [THREAD, OTHER_THREAD],
    );
    expect(await b.ownership.holderElsewhere(THREAD)).toBeUndefined();
    expect(await b.ownership.holderElsewhere(OTHER_THREAD)).toEqual({ pid: 4242, host: 'gone-host', since: expect.any(String) });
    expect([...(await b.ownership.heldElsewhere()).keys()]).toEqual([OTHER_THREAD]);
    await b.ownership.acquire(THREAD);
    await expect(b.ownership.acquire(OTHER_THREAD)).rejects.toBeInstanceOf(ThreadBusyError);
    const rows = await b.db.pool.query<{ thread_id: string; epoch: string; host: string }>('SELECT thread_id, epoch, host FROM cmx_thread_leases ORDER BY thread_id');
    expect(rows.rows).toEqual([
      { thread_id: THREAD, epoch: '2', host: expect.not.stringMatching(/^gone-host$/) },
      { thread_id: OTHER_THREAD, epoch: '1', host: 'gone-host' },
    ]);
  });

  it('renews its leases with one heartbeat, so a live owner keeps its thread past the lease length', async () => {
    const url = await freshDatabase();
    const a = await instance(url, 300);
    const b = await instance(url, LONG_LEASE_MS);
    await a.ownership.acquire(THREAD);
    await a.ownership.acquire(OTHER_THREAD);
    const since = await a.db.pool.query<{ at: Date }>('SELECT min(expires_at) AS at FROM cmx_thread_leases');
    const first = since.rows[0]?.at ?? new Date(0);
    // Both rows renewed to well past the first expiry: several heartbeats went by.
    await waitFor(async () => {
      const now = await a.db.pool.query<{ ok: boolean }>(`SELECT bool_and(expires_at > $1::timestamptz + interval '600 milliseconds') AS ok FROM cmx_thread_leases`, [first]);
      return now.rows[0]?.ok === true;
    }, 'the leases to be renewed');
    await expect(b.ownership.acquire(THREAD)).rejects.toBeInstanceOf(ThreadBusyError);
    expect((await b.ownership.heldElsewhere()).size).toBe(2);
  });

  it('delivers a request to stop a turn to the owner by NOTIFY, once', async () => {
    const url = await freshDatabase();
    const a = await instance(url, LONG_LEASE_MS);
    const b = await instance(url, LONG_LEASE_MS);
    const requests = stopRequests(a.ownership);
    await a.ownership.acquire(THREAD);
    await b.ownership.requestInterrupt(THREAD, { turnId: 'turn-1', reason: 'stop it' });
    expect(await requests.next()).toEqual([THREAD, { turnId: 'turn-1', reason: 'stop it' }]);
    await waitFor(async () => (await a.db.pool.query('SELECT 1 FROM cmx_interrupt_requests')).rowCount === 0, 'the request to be taken');
    // A request left from an earlier turn does not stop the next one.
    await a.ownership.release(THREAD);
    await b.ownership.requestInterrupt(THREAD, { turnId: 'turn-1', reason: 'late' });
    await a.ownership.acquire(THREAD);
    expect((await a.db.pool.query('SELECT 1 FROM cmx_interrupt_requests')).rowCount).toBe(0);
  });

  it('wakes a waiter when the owner gives the thread back, without polling', async () => {
    const url = await freshDatabase();
    const a = await instance(url, LONG_LEASE_MS);
    const b = await instance(url, LONG_LEASE_MS);
    await a.ownership.acquire(THREAD);
    // Timed out and aborted waits say false.
    expect(await b.ownership.waitReleased(THREAD, 10)).toBe(false);
    expect(await b.ownership.waitReleased(THREAD, LONG_LEASE_MS, AbortSignal.abort())).toBe(false);
    // The lease and the wait are far longer than the test's timeout: only the release notice can end it.
    const waiting = b.ownership.waitReleased(THREAD, LONG_LEASE_MS);
    const other = b.ownership.waitReleased(THREAD, LONG_LEASE_MS);
    await a.ownership.release(THREAD);
    expect(await Promise.all([waiting, other])).toEqual([true, true]);
    expect(await b.ownership.waitReleased(OTHER_THREAD, LONG_LEASE_MS)).toBe(true);
  });

  it('wakes a waiter when the owner died: its lease runs out, and the thread can be taken', async () => {
    const url = await freshDatabase();
    const b = await instance(url, LONG_LEASE_MS);
    await b.db.pool.query(
      `INSERT INTO cmx_thread_leases (thread_id, owner, pid, host, since, heartbeat_at, expires_at)
       VALUES ($1, 'dead', 4242, 'gone-host', now(), now(), now() + interval '300 milliseconds')`,
      [THREAD],
    );
    expect(await b.ownership.waitReleased(THREAD, LONG_LEASE_MS)).toBe(true);
    await b.ownership.acquire(THREAD);
  });

  it('stops the turns of a thread whose lease it cannot renew, before the lease runs out', async () => {
    const url = await freshDatabase();
    const leaseMs = 3_000;
    const a = await instance(url, leaseMs);
    const backend = await leaseBackend(a);
    const b = await instance(url, leaseMs);
    const requests = stopRequests(a.ownership);
    await a.ownership.acquire(THREAD);
    // The database stops answering A's heartbeat (as a host that vanished): its statement waits, nothing is cut.
    process.kill(backend, 'SIGSTOP');
    try {
      const [threadId, request] = await requests.next();
      expect(threadId).toBe(THREAD);
      expect(request.turnId).toBeUndefined();
      expect(request.reason).toMatch(/lost the thread: its lease could not be renewed/);
      // A stopped while its lease was still live: nobody could have taken the thread yet.
      await expect(b.ownership.acquire(THREAD)).rejects.toBeInstanceOf(ThreadBusyError);
      expect(await b.ownership.waitReleased(THREAD, LONG_LEASE_MS)).toBe(true);
      await b.ownership.acquire(THREAD);
    } finally {
      process.kill(backend, 'SIGCONT');
    }
  });

  it('renews its leases while every connection of the store’s pool is taken (the heartbeat has connections of its own)', async () => {
    const url = await freshDatabase();
    const leaseMs = 600;
    const a = await instance(url, leaseMs, undefined, 2);
    const lost: string[] = [];
    a.ownership.onInterrupt((_threadId, request) => lost.push(request.reason));
    await a.ownership.acquire(THREAD);
    const observer = new pg.Client({ connectionString: url });
    await observer.connect();
    // Turns' appends hold the whole store pool, longer than the lease.
    const taken = [await a.db.pool.connect(), await a.db.pool.connect()];
    try {
      const expiry = async (): Promise<number> => {
        const result = await observer.query<{ at: Date }>('SELECT expires_at AS at FROM cmx_thread_leases WHERE thread_id = $1', [THREAD]);
        return result.rows[0]?.at.getTime() ?? 0;
      };
      const first = await expiry();
      // Renewed to past three lease lengths after the take: the loss timer (at two thirds) would have stopped it long before.
      await waitFor(async () => {
        if (lost.length > 0) throw new Error(`the lease was lost: ${lost.join('; ')}`);
        return (await expiry()) > first + 3 * leaseMs;
      }, 'the lease to be renewed with the store pool full');
      expect(lost).toEqual([]);
    } finally {
      for (const client of taken) client.release();
      await observer.end();
    }
  });

  it('stops the turns of a thread whose lease another instance took', async () => {
    const url = await freshDatabase();
    const a = await instance(url, 300);
    const requests = stopRequests(a.ownership);
    await a.ownership.acquire(THREAD);
    await a.db.pool.query(`UPDATE cmx_thread_leases SET owner = 'someone-else', epoch = epoch + 1 WHERE thread_id = $1`, [THREAD]);
    const [threadId, request] = await requests.next();
    expect(threadId).toBe(THREAD);
    expect(request).toEqual({ reason: expect.stringMatching(/another instance took over its lease/) as unknown });
    // Giving it back does not remove the other instance's lease.
    await a.ownership.release(THREAD);
    expect((await a.db.pool.query('SELECT owner FROM cmx_thread_leases')).rows).toEqual([{ owner: 'someone-else' }]);
  });

  it('listens again when its listener’s connection stops answering without being cut (checked at every heartbeat)', async () => {
    const url = await freshDatabase();
    let log = '';
    const a = await instance(url, 600, (line) => (log += line));
    const requests = stopRequests(a.ownership);
    const listeners = await a.db.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [LISTENER_APPLICATION_NAME]);
    const backend = listeners.rows[0]?.pid;
    if (backend === undefined || listeners.rows.length !== 1) throw new Error('expected one listener connection');
    const b = await instance(url, LONG_LEASE_MS);
    await a.ownership.acquire(THREAD);
    // The server process behind A's listener freezes (as a connection to a host that vanished): nothing is sent, nothing is cut.
    process.kill(backend, 'SIGSTOP');
    try {
      await waitFor(() => /the database listener is connected again/.test(log), 'the listener to connect again');
      await b.ownership.requestInterrupt(THREAD, { turnId: 'turn-3', reason: 'heard' });
      expect(await requests.next()).toEqual([THREAD, { turnId: 'turn-3', reason: 'heard' }]);
    } finally {
      process.kill(backend, 'SIGCONT');
    }
  });

  it('listens again after a database restart: requests kept meanwhile are delivered, waiters look again', async () => {
    const url = await freshDatabase();
    let log = '';
    const a = await instance(url, LONG_LEASE_MS, (line) => (log += line));
    const b = await instance(url, LONG_LEASE_MS);
    const requests = stopRequests(a.ownership);
    await a.ownership.acquire(THREAD);
    const waiting = b.ownership.waitReleased(THREAD, LONG_LEASE_MS);
    // A request whose notice was lost (as one sent while the listener is away): only the row tells.
    await b.db.pool.query(`INSERT INTO cmx_interrupt_requests (thread_id, turn_id, reason) VALUES ($1, 'turn-1', 'while away')`, [THREAD]);
    await cluster.stop();
    await cluster.start();
    expect(await requests.next()).toEqual([THREAD, { turnId: 'turn-1', reason: 'while away' }]);
    expect(log).toMatch(/the database listener is connected again/);
    await b.ownership.requestInterrupt(THREAD, { turnId: 'turn-2', reason: 'after the restart' });
    expect(await requests.next()).toEqual([THREAD, { turnId: 'turn-2', reason: 'after the restart' }]);
    await a.ownership.release(THREAD);
    expect(await waiting).toBe(true);
    expect(log).toMatch(/the database listener lost its connection/);
  });
});
