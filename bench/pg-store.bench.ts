/**
 * Issue 17 figures of the PostgreSQL thread store, against a throwaway cluster that flushes its
 * commits as a production server does (`fsync=on`), on this machine (a unix socket):
 *
 * - per-turn overhead of the PostgreSQL store vs the JSON Lines store (which flushes each record),
 *   in the same run: a text turn through the BUILT server and the MCP SDK client (the fake model
 *   answers at once), blocks of turns alternating between the stores; and the store operations of
 *   one turn alone (two stamps, four appends in three writes: the answer is deferred and carried by
 *   the completion, as a turn writes them; only the completion's write waits for the flush). `BENCH_PG_BASELINE=/path/to/dist/cli/main.js` adds
 *   another build (e.g. main before a change) to the alternating blocks, for before/after figures.
 *   Per turn through the server, also the statements the database ran (`pg_stat_statements`, all
 *   of them: the turn's, the lease heartbeats', the listener's checks, the server's start) and its
 *   WAL flushes (`pg_stat_wal.wal_sync`, the WAL writer's background flushes included), counted
 *   per block from before the server starts until its connections have ended.
 * - `thread/list` with 100,000 stored threads (bulk-loaded with one INSERT … SELECT
 *   generate_series each for the threads and their records): pages of 100 through the store and
 *   through the built server, first and deep pages, and the plan of the page query.
 *
 * Run with `npm run bench -- pg` (builds first).
 */
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { JsonlThreadStore } from '../src/session/jsonl-thread-store.js';
import { openDatabase, type Database } from '../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../src/session/pg-migrations.js';
import { PgThreadStore } from '../src/session/pg-thread-store.js';
import type { NewThreadHeader, NewThreadRecord, ThreadListPosition, ThreadStore } from '../src/session/thread-store.js';
import { silentLogger } from '../src/util/logger.js';
import { startFakeResponsesServer } from '../tools/fake-responses-server.js';
import { startMcp, textOf, threadIdOf, writeMcpConfig, type McpHarness } from '../test/helpers/mcp.js';
import { startPostgres, type PostgresCluster } from '../test/helpers/postgres.js';
import { tempDir, waitFor } from '../test/helpers/process.js';
import { createDatabase } from '../test/helpers/thread-stores.js';
import { fmt, median, percentile, printRawFigures, printTable, rawRow, since } from './stats.js';

/** Timed MCP turns per store, split into alternating blocks. */
const TURNS = Number(process.env.BENCH_PG_TURNS ?? 200);
const BLOCKS = 4;
const WARMUP = 20;
/** What one store's blocks of MCP turns made the database do. */
interface DatabaseWork {
  turns: number;
  statements: number;
  flushes: number;
}

/** The statements run in `database` and the WAL flushes of the cluster since the last {@link resetCounts}. */
async function databaseWork(admin: pg.Pool, database: string): Promise<{ statements: number; flushes: number }> {
  const statements = await admin.query<{ calls: string | null }>(
    'SELECT sum(calls)::text AS calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1',
    [database],
  );
  const wal = await admin.query<{ wal_sync: string }>('SELECT wal_sync::text AS wal_sync FROM pg_stat_wal');
  return { statements: Number(statements.rows[0]?.calls ?? 0), flushes: Number(wal.rows[0]?.wal_sync ?? Number.NaN) };
}

async function resetCounts(admin: pg.Pool): Promise<void> {
  await admin.query('SELECT pg_stat_statements_reset()');
  await admin.query("SELECT pg_stat_reset_shared('wal')");
}

/** A new thread after this many turns, so history growth does not dominate. */
const TURNS_PER_THREAD = 25;
/** Store-level turns per store. */
const STORE_TURNS = Number(process.env.BENCH_PG_STORE_TURNS ?? 500);
/** Stored threads for the listing figures. */
const THREADS = Number(process.env.BENCH_PG_LIST_THREADS ?? 100_000);
const LIST_CALLS = Number(process.env.BENCH_PG_LIST_CALLS ?? 50);
const PAGE = 100;
const SERVER_LOG = process.env.BENCH_SERVER_LOG ?? 'info';
/** Appends made at once to one thread, and how often. */
const BURST = 20;
const BURST_ROUNDS = 20;
/** Another build's CLI to time beside this one (before/after figures in one run). */
const BASELINE = process.env.BENCH_PG_BASELINE;

function burstItem(i: number): NewThreadRecord {
  return { type: 'item', turnId: 'burst', item: { type: 'function_call_output', call_id: `c${i}`, output: 'ok' } };
}

const AT = new Date().toISOString();

function header(threadId: string): NewThreadHeader {
  return {
    threadId,
    createdAt: AT,
    config: { model: 'gpt-5-codex', modelProvider: 'fake', approvalPolicy: 'never', sandbox: 'workspace-write', cwd: '/work', configOverrides: {} },
    environments: [{ id: 'local', cwd: '/work' }],
  };
}

/** The store operations of one text turn, as the thread manager makes them. */
async function storeTurn(store: ThreadStore, threadId: string, turn: number): Promise<void> {
  const turnId = `turn-${turn}`;
  await store.stamp(threadId);
  // The turn's start, its prompt and its answer need no flush of their own: the completion's write flushes them.
  const unflushed = { durable: false };
  await store.append(threadId, { type: 'turn_started', turnId, prompt: 'fix the flaky test', environments: [{ id: 'local', cwd: '/work' }] }, unflushed);
  await store.append(threadId, { type: 'item', turnId, item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'fix the flaky test' }] } }, unflushed);
  const answer = store.append(
    threadId,
    { type: 'item', turnId, item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Done.' }] } },
    { defer: true, durable: false },
  );
  await Promise.all([answer, store.append(threadId, { type: 'turn_completed', turnId, status: 'completed', lastAgentMessage: 'Done.' })]);
  await store.stamp(threadId);
}

async function storeTurns(store: ThreadStore, prefix: string): Promise<number[]> {
  const times: number[] = [];
  let threadId = '';
  for (let i = 0; i < WARMUP + STORE_TURNS; i += 1) {
    if (i % TURNS_PER_THREAD === 0) {
      threadId = `${prefix}-${i}`;
      await store.create(header(threadId));
    }
    const start = performance.now();
    await storeTurn(store, threadId, i);
    if (i >= WARMUP) times.push(since(start));
  }
  return times;
}

/** Turns through the built server: `codex` for a new thread, then `codex-reply`, each answered by the model at once. */
async function mcpTurns(mcp: McpHarness, count: number, cwd: string): Promise<number[]> {
  const times: number[] = [];
  let threadId: string | undefined;
  for (let i = 0; i < count; i += 1) {
    const start = performance.now();
    const result =
      threadId === undefined || i % TURNS_PER_THREAD === 0
        ? await mcp.call('codex', { prompt: `turn ${i}`, cwd })
        : await mcp.call('codex-reply', { threadId, prompt: `turn ${i}` });
    times.push(since(start));
    if (result.isError === true || textOf(result) !== 'ok') throw new Error(`unexpected turn result ${JSON.stringify(result)}`);
    threadId = threadIdOf(result);
  }
  return times;
}

/** Fills a database with `count` threads of one finished turn each: copies of one the store wrote. */
async function fillThreads(database: Database, count: number): Promise<void> {
  const store = new PgThreadStore({ pool: database.pool, where: 'bench' });
  await store.create(header('template'));
  await storeTurn(store, 'template', 1);
  await store.close();
  // The counts row is set once at the end: kept row by row, one transaction would make 100,000 versions of it.
  await database.pool.query('ALTER TABLE cmx_threads DISABLE TRIGGER cmx_threads_counted');
  await database.pool.query(
    `INSERT INTO cmx_threads (id, header, created_at, updated_at, environments, last_status, last_turn_id, preview, failed, next_seq)
     SELECT 'bench-' || lpad(i::text, 7, '0'), replace(t.header::text, '"template"', '"bench-' || lpad(i::text, 7, '0') || '"')::json, t.created_at,
            t.updated_at - i * interval '1 second', t.environments, CASE WHEN i % 10 = 0 THEN 'failed' ELSE t.last_status END, t.last_turn_id, t.preview, i % 10 = 0, t.next_seq
     FROM cmx_threads t, generate_series(1, $1::int) AS i WHERE t.id = 'template'`,
    [count],
  );
  await database.pool.query(
    `INSERT INTO cmx_thread_records (thread_key, seq, record)
     SELECT c.key, r.seq, r.record FROM cmx_threads c, cmx_threads t JOIN cmx_thread_records r ON r.thread_key = t.key WHERE t.id = 'template' AND c.id LIKE 'bench-%'`,
  );
  await database.pool.query("UPDATE cmx_threads SET archived_at = now() WHERE id = 'template'");
  await database.pool.query('ALTER TABLE cmx_threads ENABLE TRIGGER cmx_threads_counted');
  await database.pool.query('UPDATE cmx_thread_counts SET (live, failed) = (SELECT count(*), count(*) FILTER (WHERE failed) FROM cmx_threads WHERE archived_at IS NULL)');
  await database.pool.query('VACUUM ANALYZE cmx_threads');
  await database.pool.query('VACUUM ANALYZE cmx_thread_records');
}

async function timedPages(store: ThreadStore, from: ThreadListPosition | undefined, failed: boolean | undefined): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < LIST_CALLS; i += 1) {
    const start = performance.now();
    const page = await store.list({ limit: PAGE, after: from, ...(failed === undefined ? {} : { failed }) });
    times.push(since(start));
    if (page.summaries.length !== PAGE) throw new Error(`a page of ${page.summaries.length} summaries`);
  }
  return times;
}

/** The plan of a page query as the store makes it (keep in step with PgThreadStore.list). */
async function pagePlan(pool: pg.Pool, after: ThreadListPosition): Promise<string> {
  const result = await pool.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT id, created_at, updated_at, environments::text AS environments, last_status, last_turn_id, preview FROM cmx_threads
     WHERE archived_at IS NULL AND updated_at <= $1::timestamptz AND (updated_at < $1::timestamptz OR id > $2) ORDER BY updated_at DESC, id LIMIT ${PAGE + 1}`,
    [after.updatedAt, after.threadId],
  );
  return result.rows.map((row) => `    ${row['QUERY PLAN']}`).join('\n');
}

async function main(): Promise<void> {
  const folder = await tempDir('bench-pg-');
  const home = await tempDir('bench-pg-home-');
  const work = await tempDir('bench-pg-work-');
  const model = await startFakeResponsesServer({ respond: () => ({ kind: 'output', items: [{ type: 'message', text: 'ok' }] }) });
  let cluster: PostgresCluster | undefined;
  const databases: Database[] = [];
  let mcp: McpHarness | undefined;
  try {
    const started = await startPostgres(folder.path, { durable: true, parameters: ['shared_preload_libraries=pg_stat_statements'] });
    cluster = started;
    const open = async (name: string): Promise<Database> => {
      const database = await openDatabase({ url: await createDatabase(started, name), migrations: PG_MIGRATIONS, logger: silentLogger });
      databases.push(database);
      return database;
    };
    await writeMcpConfig(home.path, model.url);
    const loadBefore = loadavg()[0] ?? Number.NaN;

    // Per turn, the store alone.
    const files = new JsonlThreadStore({ dir: join(folder.path, 'threads') });
    const fileStore = await storeTurns(files, 'file');
    await files.close();
    const pgThreads = new PgThreadStore({ pool: (await open('turns')).pool, where: 'bench' });
    const pgStore = await storeTurns(pgThreads, 'pg');
    // The floor of one statement: a round trip to the server and back.
    const roundTrips: number[] = [];
    for (let i = 0; i < WARMUP + STORE_TURNS; i += 1) {
      const start = performance.now();
      await pgThreads.summary('pg-0');
      if (i >= WARMUP) roundTrips.push(since(start));
    }
    // What the commits' flush costs: the same with synchronous_commit off (a crash of the database may lose the last commits).
    const asyncDatabase = await open('turns_async');
    await asyncDatabase.pool.query('ALTER DATABASE turns_async SET synchronous_commit = off');
    // The setting applies to sessions started after it.
    await asyncDatabase.close();
    const asyncPool = await openDatabase({ url: started.url.replace('/postgres?', '/turns_async?'), migrations: PG_MIGRATIONS, logger: silentLogger });
    databases.push(asyncPool);
    const asyncThreads = new PgThreadStore({ pool: asyncPool.pool, where: 'bench' });
    const pgAsync = await storeTurns(asyncThreads, 'async');
    await asyncThreads.close();
    // Appends made at once to one thread (a response's items): sent together vs one by one.
    await pgThreads.create(header('burst'));
    const together: number[] = [];
    const oneByOne: number[] = [];
    for (let round = 0; round < BURST_ROUNDS; round += 1) {
      let start = performance.now();
      await Promise.all(Array.from({ length: BURST }, (_, i) => pgThreads.append('burst', burstItem(i))));
      together.push(since(start));
      start = performance.now();
      for (let i = 0; i < BURST; i += 1) await pgThreads.append('burst', burstItem(i));
      oneByOne.push(since(start));
    }
    await pgThreads.close();

    // Per turn, through the server: blocks alternating between the stores.
    const turnsUrl = await createDatabase(cluster, 'mcp_turns');
    const mcpFile: number[] = [];
    const mcpPg: number[] = [];
    const baseFile: number[] = [];
    const basePg: number[] = [];
    const baseUrl = BASELINE === undefined ? undefined : await createDatabase(cluster, 'mcp_turns_base');
    const admin = (await open('bench_admin')).pool;
    await admin.query('CREATE EXTENSION pg_stat_statements');
    const pgWork: DatabaseWork = { turns: 0, statements: 0, flushes: 0 };
    const basePgWork: DatabaseWork = { turns: 0, statements: 0, flushes: 0 };
    const runs: [NodeJS.ProcessEnv, number[], string | undefined, DatabaseWork | undefined][] = [
      [{}, mcpFile, undefined, undefined],
      [{ CODEX_MULTIENV_DATABASE_URL: turnsUrl }, mcpPg, undefined, pgWork],
      ...(BASELINE === undefined || baseUrl === undefined
        ? []
        : ([
            [{}, baseFile, BASELINE, undefined],
            [{ CODEX_MULTIENV_DATABASE_URL: baseUrl }, basePg, BASELINE, basePgWork],
          ] as [NodeJS.ProcessEnv, number[], string, DatabaseWork | undefined][])),
    ];
    for (let block = 0; block < BLOCKS; block += 1) {
      for (const [env, into, cli, counted] of runs) {
        // Counted from before the server starts until its connections are gone: a connection
        // reports its WAL counts now and then, and at its end (its start's few statements are in).
        await resetCounts(admin);
        mcp = await startMcp(home.path, { args: ['--foreground'], env: { CODEX_MULTIENV_LOG: SERVER_LOG, ...env }, ...(cli === undefined ? {} : { cli }) });
        await mcpTurns(mcp, WARMUP, work.path);
        const timed = await mcpTurns(mcp, Math.ceil(TURNS / BLOCKS), work.path);
        into.push(...timed);
        await mcp.close();
        mcp = undefined;
        if (counted !== undefined) {
          const database = new URL(env.CODEX_MULTIENV_DATABASE_URL ?? '').pathname.slice(1);
          await waitFor(async () => (await admin.query('SELECT 1 FROM pg_stat_activity WHERE datname = $1', [database])).rowCount === 0, 'the server’s connections to end');
          const done = await databaseWork(admin, database);
          counted.turns += WARMUP + timed.length;
          counted.statements += done.statements;
          counted.flushes += done.flushes;
        }
      }
    }

    // thread/list over THREADS stored threads.
    const fillStart = performance.now();
    const listing = await open('listing');
    await fillThreads(listing, THREADS);
    const fillSeconds = since(fillStart) / 1000;
    const store = new PgThreadStore({ pool: listing.pool, where: 'bench' });
    const first = await timedPages(store, undefined, undefined);
    const middle = (await store.list({ limit: 1, after: { updatedAt: new Date(Date.now() - (THREADS / 2) * 1000).toISOString(), threadId: '' } })).summaries[0];
    if (middle === undefined) throw new Error('no thread half way down the list');
    const deep = await timedPages(store, middle, undefined);
    const failedDeep = await timedPages(store, middle, true);
    const walk: number[] = [];
    let after: ThreadListPosition | undefined;
    for (let i = 0; i < LIST_CALLS; i += 1) {
      const start = performance.now();
      const page = await store.list({ limit: PAGE, after });
      walk.push(since(start));
      after = page.next;
    }
    const plan = await pagePlan(listing.pool, middle);

    const listUrl = cluster.url.replace('/postgres?', '/listing?');
    mcp = await startMcp(home.path, { args: ['--foreground'], env: { CODEX_MULTIENV_LOG: SERVER_LOG, CODEX_MULTIENV_DATABASE_URL: listUrl } });
    const viaMcp: number[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < LIST_CALLS + 5; i += 1) {
      const start = performance.now();
      const result = await mcp.call('thread/list', { limit: PAGE, ...(cursor === undefined ? {} : { cursor }) });
      if (i >= 5) viaMcp.push(since(start));
      const page = result.structuredContent;
      if (typeof page !== 'object' || page === null || !('total' in page) || page.total !== THREADS) throw new Error(`unexpected thread/list answer ${JSON.stringify(result)}`);
      cursor = 'nextCursor' in page && typeof page.nextCursor === 'string' ? page.nextCursor : undefined;
    }
    await mcp.close();
    mcp = undefined;

    const pass = (ok: boolean): string => (ok ? 'yes' : 'NO');
    const overhead = median(mcpPg) - median(mcpFile);
    const storeOverhead = median(pgStore) - median(fileStore);
    process.stdout.write(
      `\nPostgreSQL ${cluster.url.includes('host=') ? 'on a unix socket' : ''} with fsync=on; the file store with fdatasync per write; server log level ${SERVER_LOG}; ` +
        `${availableParallelism()} CPUs, load average ${fmt(loadBefore)} before, ${fmt(loadavg()[0] ?? Number.NaN)} after\n\n`,
    );
    printTable(
      ['figure', 'files', 'PostgreSQL', 'difference', 'target', 'pass?'],
      [
        [`text turn through the server, median ms (${mcpFile.length} turns each)`, fmt(median(mcpFile)), fmt(median(mcpPg)), fmt(overhead), '<= +1 ms', pass(overhead <= 1)],
        ['… p99 ms', fmt(percentile(mcpFile, 99)), fmt(percentile(mcpPg, 99)), fmt(percentile(mcpPg, 99) - percentile(mcpFile, 99)), '-', '-'],
        [`store operations of one turn, median ms (${STORE_TURNS} turns)`, fmt(median(fileStore)), fmt(median(pgStore)), fmt(storeOverhead), '-', '-'],
        ['… p99 ms', fmt(percentile(fileStore, 99)), fmt(percentile(pgStore, 99)), fmt(percentile(pgStore, 99) - percentile(fileStore, 99)), '-', '-'],
        ['… with synchronous_commit off, median ms', fmt(median(fileStore)), fmt(median(pgAsync)), fmt(median(pgAsync) - median(fileStore)), '-', '-'],
        ...(BASELINE === undefined
          ? []
          : [
              [`baseline build, text turn through the server, median ms`, fmt(median(baseFile)), fmt(median(basePg)), fmt(median(basePg) - median(baseFile)), '-', '-'],
              ['… p99 ms', fmt(percentile(baseFile, 99)), fmt(percentile(basePg, 99)), fmt(percentile(basePg, 99) - percentile(baseFile, 99)), '-', '-'],
              ['this build / baseline, median', fmt(median(mcpFile) / median(baseFile)), fmt(median(mcpPg) / median(basePg)), '-', '-', '-'],
            ]),
      ],
    );
    if (BASELINE !== undefined) process.stdout.write(`baseline: ${BASELINE}\n`);
    const perTurn = (counted: DatabaseWork): string =>
      `${fmt(counted.statements / counted.turns, 2)} statements (round trips) and ${fmt(counted.flushes / counted.turns, 2)} WAL flushes per turn (${counted.turns} turns)`;
    process.stdout.write(`\nthe database's work for a text turn through the server: ${perTurn(pgWork)}\n`);
    if (BASELINE !== undefined) process.stdout.write(`… baseline build: ${perTurn(basePgWork)}\n`);
    process.stdout.write(
      `\none statement (a thread's summary by id): ${fmt(median(roundTrips))} ms median, ${fmt(percentile(roundTrips, 99))} ms p99; the store operations of a turn make 5 (2 stamps, 3 writes of 4 appends, the last one flushed)\n`,
    );
    process.stdout.write(
      `${BURST} appends made at once to one thread (PostgreSQL): ${fmt(median(together))} ms median (sent together), ${fmt(median(oneByOne))} ms one after the other\n`,
    );
    process.stdout.write(`\n${THREADS} stored threads (bulk-loaded in ${fmt(fillSeconds, 1)} s), pages of ${PAGE}, ${LIST_CALLS} calls each\n`);
    printTable(
      ['figure', 'median ms', 'p99 ms', 'target', 'pass?'],
      [
        ['store.list, first page (with total)', fmt(median(first)), fmt(percentile(first, 99)), '<= 50', pass(percentile(first, 99) <= 50)],
        ['store.list, a page half way down', fmt(median(deep)), fmt(percentile(deep, 99)), '<= 50', pass(percentile(deep, 99) <= 50)],
        ['store.list, failed only, half way down', fmt(median(failedDeep)), fmt(percentile(failedDeep, 99)), '<= 50', pass(percentile(failedDeep, 99) <= 50)],
        ['store.list, walking page after page', fmt(median(walk)), fmt(percentile(walk, 99)), '<= 50', pass(percentile(walk, 99) <= 50)],
        ['thread/list through the server, page after page', fmt(median(viaMcp)), fmt(percentile(viaMcp, 99)), '<= 50', pass(percentile(viaMcp, 99) <= 50)],
      ],
    );
    process.stdout.write(`\nthe plan of a page half way down:\n${plan}\n`);
    printRawFigures([
      rawRow('turn through the server, files', mcpFile),
      rawRow('turn through the server, PostgreSQL', mcpPg),
      ...(BASELINE === undefined ? [] : [rawRow('baseline turn through the server, files', baseFile), rawRow('baseline turn through the server, PostgreSQL', basePg)]),
      rawRow('store operations of a turn, files', fileStore),
      rawRow('store operations of a turn, PostgreSQL', pgStore),
      rawRow('store operations of a turn, PostgreSQL, synchronous_commit off', pgAsync),
      rawRow('one statement, PostgreSQL', roundTrips),
      rawRow(`${BURST} appends at once, PostgreSQL`, together),
      rawRow(`${BURST} appends one by one, PostgreSQL`, oneByOne),
      rawRow('store.list first page', first),
      rawRow('store.list half way down', deep),
      rawRow('thread/list through the server', viaMcp),
    ]);
    process.stdout.write('\n');
  } finally {
    await mcp?.close().catch(() => undefined);
    await Promise.all(databases.map((database) => database.close()));
    await cluster?.stop();
    await model.close();
    await work.cleanup();
    await home.cleanup();
    await folder.cleanup();
  }
}

await main();
