// Two server instances sharing one threads folder and thread ownership in a real PostgreSQL
// (leases, LISTEN/NOTIFY): any instance serves any thread. Both servers composed in-process
// (startMcpServer with an ownership factory), the SDK client, the fake model. The PostgreSQL
// thread store comes at the merge; the file store stands in for it here.
import pg from 'pg';
import type { McpServerStartOptions } from '../../src/cli/mcp-command.js';
import { openDatabase, type Database } from '../../src/session/pg-database.js';
import { LEASE_APPLICATION_NAME } from '../../src/session/pg-lease-pool.js';
import { PG_MIGRATIONS } from '../../src/session/pg-migrations.js';
import { PgOwnership } from '../../src/session/pg-ownership.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, storedRecords, tearDownMcpWorld, textOf, threadIdOf, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { tempDir } from '../helpers/process.js';
import { gate, hold, isRecord, say, type Json } from '../helpers/steps.js';

/** The whole schema: taking a lease also reads the thread's stamp in the store's table. */
const MIGRATIONS = PG_MIGRATIONS;

const structured = (result: { structuredContent?: unknown }): Json => (isRecord(result.structuredContent) ? result.structuredContent : {});

async function completions(home: string, threadId: string): Promise<unknown[]> {
  return (await storedRecords(home, threadId)).filter((record) => record.type === 'turn_completed').map((record) => record.status);
}

describe('two instances, thread ownership in PostgreSQL', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let cluster: PostgresCluster;
  let databaseCount = 0;
  let world: McpTestWorld;
  let steps: FakeStep[];
  let release: { promise: Promise<void>; open: () => void };
  const instances: McpHarness[] = [];
  const databases: Database[] = [];

  beforeAll(async () => {
    dir = await tempDir('cmx-pgown-e2e-');
    cluster = await startPostgres(dir.path);
  });
  afterAll(async () => {
    await cluster.stop();
    await dir.cleanup();
  });

  beforeEach(async () => {
    steps = [];
    release = gate();
    world = await setUpMcpWorld('mcp-pg-ownership', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    release.open();
    for (const instance of instances.splice(0)) await instance.close();
    for (const db of databases.splice(0)) await db.close();
    await tearDownMcpWorld(world, undefined);
  });

  async function freshDatabase(): Promise<string> {
    databaseCount += 1;
    const name = `e2e_${databaseCount}`;
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    return cluster.url.replace('/postgres?', `/${name}?`);
  }

  /** An instance on the world's CODEX_HOME whose ownership is in the database at `url`; its pool is `databases`' latest. */
  async function instance(url: string, args: string[] = []): Promise<McpHarness> {
    const ownership: McpServerStartOptions['ownership'] = async ({ limits, logger }) => {
      const db = await openDatabase({ url, migrations: MIGRATIONS, logger });
      databases.push(db);
      return PgOwnership.open({ pool: db.pool, url, logger, leaseMs: limits.leaseMs });
    };
    const harness = await startInProcessMcp(world.home.path, { ownership, args });
    instances.push(harness);
    return harness;
  }

  it('a turn started on A: B reports it, refuses a concurrent reply, interrupts it across instances and continues the thread', async () => {
    const url = await freshDatabase();
    const a = await instance(url);
    const b = await instance(url);
    steps.push(hold(release.promise, say('never seen')));
    const threadId = threadIdOf(await a.call('codex', { prompt: 'long job', cwd: world.work.path, waitMs: 0 }));
    await world.model.waitForRequests(1);

    expect(structured(await b.call('codex-status', { threadId }))).toMatchObject({ status: 'running', runningElsewhere: { pid: process.pid } });
    const listed = structured(await b.call('thread/list', {}));
    expect(listed.threads).toEqual([expect.objectContaining({ threadId, status: 'running', runningElsewhere: expect.objectContaining({ pid: process.pid }) })]);
    const refused = await b.call('codex-reply', { threadId, prompt: 'me too' });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/is running a turn in another codex-multienv process/);

    const interrupted = await b.call('turn/interrupt', { threadId });
    expect(interrupted.isError).toBeFalsy();
    expect(structured(interrupted)).toMatchObject({ threadId, interrupted: true, stopped: true, status: 'idle' });
    expect(await completions(world.home.path, threadId)).toEqual(['interrupted']);

    release.open();
    steps.push(say('continued on B'));
    expect(structured(await b.call('codex-reply', { threadId, prompt: 'go on' }))).toEqual({ threadId, content: 'continued on B' });
    expect(structured(await b.call('thread/close', { threadId }))).toMatchObject({ threadId, archivedTo: null });
    steps.push(say('and back on A'));
    expect(structured(await a.call('codex-reply', { threadId, prompt: 'once more' }))).toEqual({ threadId, content: 'and back on A' });
    expect(JSON.stringify(world.model.requests.at(-1)?.body)).toContain('continued on B');
    expect(await completions(world.home.path, threadId)).toEqual(['interrupted', 'completed', 'completed']);
  });

  it('codex-status waitMs on B answers when A’s turn ends there', async () => {
    const url = await freshDatabase();
    const a = await instance(url);
    const b = await instance(url);
    steps.push(hold(release.promise, say('done on A')));
    const threadId = threadIdOf(await a.call('codex', { prompt: 'job', cwd: world.work.path, waitMs: 0 }));
    await world.model.waitForRequests(1);
    const waiting = b.call('codex-status', { threadId, waitMs: 600_000 });
    release.open();
    expect(structured(await waiting)).toMatchObject({ status: 'idle', lastAgentMessage: 'done on A' });
  });

  it('an instance that cannot reach the database stops its turn before its lease runs out; another continues the thread', async () => {
    const url = await freshDatabase();
    const a = await instance(url, ['-c', 'multienv.lease_sec=1']);
    // A's lease connection, the only one so far (its first statement read the database's clock).
    const leases = await databases[0]?.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()', [
      LEASE_APPLICATION_NAME,
    ]);
    const leaseBackend = leases?.rows[0]?.pid;
    if (leaseBackend === undefined || leases?.rows.length !== 1) throw new Error('expected one lease connection');
    const b = await instance(url, ['-c', 'multienv.lease_sec=1']);
    steps.push(hold(release.promise, say('never seen')));
    const answer = a.call('codex', { prompt: 'cut off', cwd: world.work.path, waitMs: 600_000 });
    await world.model.waitForRequests(1);
    // A's host loses the network: its pool's connections end, its lease connection stops answering; B's stay.
    await databases[0]?.close();
    process.kill(leaseBackend, 'SIGSTOP');
    const stopped = await answer.finally(() => process.kill(leaseBackend, 'SIGCONT'));
    expect(stopped.isError).toBe(true);
    expect(textOf(stopped)).toBe('The turn was interrupted.');
    expect(a.stderr()).toMatch(/interrupting a turn at the request of the thread ownership.*this server instance lost the thread: its lease could not be renewed/);
    const threadId = threadIdOf(stopped);
    expect(await completions(world.home.path, threadId)).toEqual(['interrupted']);

    steps.push(say('continued on B'));
    expect(structured(await b.call('codex-status', { threadId, waitMs: 600_000 }))).toMatchObject({ status: 'idle' });
    expect(structured(await b.call('codex-reply', { threadId, prompt: 'go on' }))).toEqual({ threadId, content: 'continued on B' });
    expect(await completions(world.home.path, threadId)).toEqual(['interrupted', 'completed']);
  });
});
