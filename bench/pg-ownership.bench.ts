/**
 * Thread ownership in PostgreSQL (issue 17): acquire/release latency, how soon an interrupt
 * request reaches the owner by NOTIFY, and how soon another instance takes over the threads of
 * an owner killed with SIGKILL (target: within the lease length + 1 s). A throwaway cluster on a
 * unix socket (test/helpers/postgres.ts); the holder that is killed is a process of its own.
 * Usage: `npx tsx bench/pg-ownership.bench.ts` (or `npm run bench -- pg-ownership`).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { openDatabase, type Database } from '../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../src/session/pg-migrations.js';
import { PgOwnership } from '../src/session/pg-ownership.js';
import { silentLogger } from '../src/util/logger.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { REPO_ROOT, tempDir } from '../test/helpers/process.js';
import { fmt, median, percentile, printTable, since } from './stats.js';

/** The whole schema: taking a lease also reads the thread's stamp in the store's table. */
const MIGRATIONS = PG_MIGRATIONS;
const CYCLES = 2_000;
const INTERRUPTS = 500;
/** Lease lengths of the take-over runs (ms): a short one three times, and the default once. */
const TAKEOVER_LEASES_MS = [3_000, 3_000, 3_000, 15_000];
/** Threads the killed holder has: all of them must be taken over. */
const TAKEOVER_THREADS = 50;

const dir = await tempDir('cmx-bench-pgown-');
const cluster = await startPostgres(dir.path);

async function freshDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return cluster.url.replace('/postgres?', `/${name}?`);
}

async function instance(url: string, leaseMs = 15_000): Promise<{ db: Database; ownership: PgOwnership }> {
  const db = await openDatabase({ url, migrations: MIGRATIONS, logger: silentLogger });
  return { db, ownership: await PgOwnership.open({ pool: db.pool, url, leaseMs }) };
}

/** Starts a holder process with the threads; resolves once it has them. */
async function startHolder(url: string, leaseMs: number, threads: string[]): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench/pg-ownership-holder.ts'), url, String(leaseMs), ...threads], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('the holder did not start');
  for await (const line of createInterface({ input: child.stdout })) if (line === 'held') return pid;
  throw new Error('the holder ended before it had its threads');
}

try {
  const url = await freshDatabase('bench');
  const a = await instance(url);
  const b = await instance(url);

  const acquire: number[] = [];
  const release: number[] = [];
  for (let i = 0; i < CYCLES; i += 1) {
    const threadId = randomUUID();
    let start = performance.now();
    await a.ownership.acquire(threadId);
    acquire.push(since(start));
    start = performance.now();
    await a.ownership.release(threadId);
    release.push(since(start));
  }

  const notify: number[] = [];
  let delivered: (() => void) | undefined;
  a.ownership.onInterrupt(() => delivered?.());
  const owned = randomUUID();
  await a.ownership.acquire(owned);
  for (let i = 0; i < INTERRUPTS; i += 1) {
    const arrived = new Promise<void>((resolve) => (delivered = resolve));
    const start = performance.now();
    await b.ownership.requestInterrupt(owned, { turnId: `turn-${i}`, reason: 'bench' });
    await arrived;
    notify.push(since(start));
  }

  const takeover: { leaseMs: number; ms: number }[] = [];
  for (const leaseMs of TAKEOVER_LEASES_MS) {
    const threads = Array.from({ length: TAKEOVER_THREADS }, () => randomUUID());
    const pid = await startHolder(url, leaseMs, threads);
    const start = performance.now();
    process.kill(pid, 'SIGKILL');
    // Another instance waits for the threads (woken when their leases run out), then takes them all.
    await Promise.all(threads.map((threadId) => b.ownership.waitReleased(threadId, 120_000)));
    for (const threadId of threads) await b.ownership.acquire(threadId);
    takeover.push({ leaseMs, ms: since(start) });
    for (const threadId of threads) await b.ownership.release(threadId);
  }

  for (const { db, ownership } of [a, b]) {
    await ownership.releaseAll();
    await db.close();
  }

  printTable(
    ['PgOwnership (ms)', 'n', 'p50', 'p99'],
    [
      ['acquire (one INSERT … ON CONFLICT)', String(acquire.length), fmt(median(acquire)), fmt(percentile(acquire, 99))],
      ['release (DELETE + NOTIFY)', String(release.length), fmt(median(release)), fmt(percentile(release, 99))],
      ['interrupt: request → owner’s handler (NOTIFY)', String(notify.length), fmt(median(notify)), fmt(percentile(notify, 99))],
    ],
  );
  process.stdout.write('\n');
  printTable(
    ['take-over after kill -9 of the owner', 'lease (s)', 'threads', 'time (s)', 'target ≤ lease + 1 s'],
    takeover.map(({ leaseMs, ms }) => [`run`, fmt(leaseMs / 1000, 0), String(TAKEOVER_THREADS), fmt(ms / 1000, 2), ms <= leaseMs + 1_000 ? 'met' : 'MISSED']),
  );
} finally {
  await cluster.stop();
  await dir.cleanup();
}
