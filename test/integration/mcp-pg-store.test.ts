// Threads in PostgreSQL end to end (`multienv.store` / CODEX_MULTIENV_DATABASE_URL): our server
// composed in-process as the CLI composes it, and the built CLI as a process, the SDK client, the
// fake model, and a throwaway PostgreSQL cluster (a fresh database per test).
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { inputItems } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { serverEnv, setUpMcpWorld, startMcp, tearDownMcpWorld, textOf, threadIdOf, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { openDatabase } from '../../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../../src/session/pg-migrations.js';
import { PgOwnership } from '../../src/session/pg-ownership.js';
import { silentLogger } from '../../src/util/logger.js';
import { CLI, runCommand } from '../helpers/process.js';
import { gate, hold, isRecord, say } from '../helpers/steps.js';
import { useSharedCluster } from '../helpers/pg-instances.js';

const shared = useSharedCluster('cmx-pg-e2e-');

/** The text of every user message the model was sent last. */
function userTexts(world: McpTestWorld): string[] {
  const last = world.model.requests[world.model.requests.length - 1];
  if (last === undefined) return [];
  return inputItems(last).flatMap((item) => (isRecord(item) && item.type === 'message' && item.role === 'user' ? [JSON.stringify(item.content)] : []));
}

describe('threads in PostgreSQL', () => {
  let world: McpTestWorld;
  let mcp: McpHarness | undefined;
  let url: string;

  beforeEach(async () => {
    world = await setUpMcpWorld('mcp-pg-store', (_request, index) => say(`answer ${index}`));
    url = await shared.freshDatabase('e2e');
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('runs codex and codex-reply, and after a restart codex-status, thread/list and codex-reply find the thread in the database, not in files', async () => {
    mcp = await startInProcessMcp(world.home.path, { args: ['-c', `multienv.store="${url}"`] });
    expect(mcp.stderr()).not.toMatch(/run only one codex-multienv server/);
    const threadId = threadIdOf(await mcp.call('codex', { prompt: 'first task', cwd: world.work.path }));
    const reply = await mcp.call('codex-reply', { threadId, prompt: 'second task' });
    expect(reply.isError).toBeFalsy();
    expect(textOf(reply)).toBe('answer 1');
    await mcp.close();

    // The restarted server gets the database from the environment instead.
    mcp = await startInProcessMcp(world.home.path, { env: { CODEX_MULTIENV_DATABASE_URL: url } });
    const status = await mcp.call('codex-status', { threadId });
    expect(status.isError).toBeFalsy();
    expect(status.structuredContent).toMatchObject({ threadId, status: 'idle', lastAgentMessage: 'answer 1' });
    const listed = await mcp.call('thread/list', {});
    expect(listed.structuredContent).toMatchObject({ total: 1, threads: [{ threadId, status: 'idle', preview: 'first task' }] });
    const third = await mcp.call('codex-reply', { threadId, prompt: 'third task' });
    expect(textOf(third)).toBe('answer 2');
    // The whole history came back from the database to the model.
    expect(userTexts(world).filter((text) => /first task|second task|third task/.test(text))).toHaveLength(3);
    expect(await readdir(world.home.path)).not.toContain('multienv');

    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const rows = await admin.query<{ id: string; last_status: string; records: string }>(
        'SELECT id, last_status, (SELECT count(*) FROM cmx_thread_records r WHERE r.thread_key = t.key)::text AS records FROM cmx_threads t',
      );
      expect(rows.rows).toEqual([{ id: threadId, last_status: 'completed', records: expect.any(String) }]);
    } finally {
      await admin.end();
    }
  });

  it('refuses an invalid store setting or variable, naming which', async () => {
    const configured = await startInProcessMcp(world.home.path, { args: ['-c', 'multienv.store="mysql://x"'] }).catch((error: unknown) => error);
    expect(String(configured)).toMatch(/multienv\.store.*expected a postgres:\/\/ or postgresql:\/\/ URL, got "mysql:\/\/x"/s);
    // The variable wins over the setting.
    const fromEnv = await startInProcessMcp(world.home.path, { args: ['-c', `multienv.store="${url}"`], env: { CODEX_MULTIENV_DATABASE_URL: 'postgres//nothing' } }).catch(
      (error: unknown) => error,
    );
    expect(String(fromEnv)).toMatch(/CODEX_MULTIENV_DATABASE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL/);
  });

  describe('the built CLI', () => {
    /** `doctor --json`'s checks, with the database from the environment. */
    async function doctorChecks(databaseUrl: string): Promise<{ id: string; status: string; detail: string }[]> {
      const run = await runCommand(process.execPath, [CLI, 'doctor', '--json'], serverEnv(world.home.path, { CODEX_MULTIENV_DATABASE_URL: databaseUrl }));
      const report = JSON.parse(run.stdout) as { checks: { id: string; status: string; detail: string }[] };
      return report.checks;
    }

    it('doctor checks the database: reachable, its schema version against this one, clock skew, leases; the threads folder is not checked', async () => {
      const before = await doctorChecks(url);
      expect(before.map((check) => check.id)).not.toContain('threads');
      expect(before.find((check) => check.id === 'database')).toMatchObject({
        status: 'warn',
        detail: expect.stringMatching(/schema version 0; the next server start applies migration 1 \(.+\), 2 \(.+\); clock skew [+-]\d+ ms$/),
      });

      mcp = await startInProcessMcp(world.home.path, { env: { CODEX_MULTIENV_DATABASE_URL: url } });
      threadIdOf(await mcp.call('codex', { prompt: 'one thread', cwd: world.work.path }));
      expect((await doctorChecks(url)).find((check) => check.id === 'database')).toMatchObject({
        status: 'ok',
        detail: expect.stringMatching(/schema version 3 \(current\), clock skew [+-]\d+ ms, \d+ live leases? held by \d+ instances?$/),
      });

      const nowhere = `postgresql://postgres:s3cret@localhost/postgres?host=${encodeURIComponent(join(world.work.path, 'no-socket-here'))}`;
      const down = (await doctorChecks(nowhere)).find((check) => check.id === 'database');
      expect(down).toMatchObject({ status: 'fail', detail: expect.stringContaining('cannot use the database postgresql://postgres:***@localhost/postgres') });
      expect(JSON.stringify(down)).not.toContain('s3cret');
    });

    /** Runs the server in the foreground with `env`; resolves with its exit code and stderr once it ends. */
    function runServer(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
      return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [CLI, '--foreground'], { env: serverEnv(world.home.path, env), stdio: ['pipe', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.once('error', reject);
        child.once('exit', (code) => resolve({ code, stderr }));
      });
    }

    it('does not start when the database is unreachable or its schema is newer, and says why', async () => {
      const nowhere = `postgresql://postgres:s3cret@localhost/postgres?host=${encodeURIComponent(join(world.work.path, 'no-socket-here'))}`;
      const down = await runServer({ CODEX_MULTIENV_DATABASE_URL: nowhere });
      expect(down.code).toBe(2);
      expect(down.stderr).toMatch(/error: cannot use the database postgresql:\/\/postgres:\*\*\*@localhost\/postgres/);
      expect(down.stderr).not.toContain('s3cret');

      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(
        "CREATE TABLE cmx_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); INSERT INTO cmx_schema_migrations VALUES (99, 'from the future')",
      );
      await admin.end();
      const newer = await runServer({ CODEX_MULTIENV_DATABASE_URL: url });
      expect(newer.code).toBe(2);
      expect(newer.stderr).toMatch(/error: the database schema is at version 99, newer than this codex-multienv knows/);
    });

    it('serves threads from the database (pg loaded by the bundle on demand)', async () => {
      mcp = await startMcp(world.home.path, { args: ['--foreground'], env: { CODEX_MULTIENV_DATABASE_URL: url } });
      const threadId = threadIdOf(await mcp.call('codex', { prompt: 'over stdio', cwd: world.work.path }));
      const listed = await mcp.call('thread/list', {});
      expect(listed.structuredContent).toMatchObject({ total: 1, threads: [{ threadId, preview: 'over stdio' }] });
    });
  });
});

describe('a turn whose lease another instance took over while it ran (fencing)', () => {
  it('stops as interrupted: its late records are refused, and nothing of it lands after the takeover', async () => {
    const answered = gate();
    const world = await setUpMcpWorld('mcp-pg-fence', () => hold(answered.promise, say('late answer')));
    const url = await shared.freshDatabase('e2e');
    const mcp = await startInProcessMcp(world.home.path, { args: ['-c', `multienv.store="${url}"`] });
    const other = await openDatabase({ url, migrations: PG_MIGRATIONS, logger: silentLogger });
    const taker = await PgOwnership.open({ pool: other.pool, url, logger: silentLogger, leaseMs: 600_000 });
    try {
      const answer = mcp.call('codex', { prompt: 'slow job', cwd: world.work.path, waitMs: 600_000 });
      await world.model.waitForRequests(1);
      const [row] = (await other.pool.query<{ id: string }>('SELECT id FROM cmx_threads')).rows;
      if (row === undefined) throw new Error('no thread row');
      // The server is frozen past its lease (as an instance whose host stalls): the database's clock
      // passes the lease's expiry, and another instance takes the thread over.
      await other.pool.query(`UPDATE cmx_thread_leases SET expires_at = now() - interval '1 second' WHERE thread_id = $1`, [row.id]);
      await taker.acquire(row.id);
      const recordsAtTakeover = (await other.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM cmx_thread_records')).rows[0]?.n;

      answered.open();
      const stopped = await answer;
      expect(stopped.isError).toBe(true);
      expect(textOf(stopped)).toMatch(/^The turn was interrupted\./);
      expect(mcp.stderr()).toMatch(/another instance took the thread over/);
      // Its answer and its completion record were refused: nothing of it after the takeover.
      expect((await other.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM cmx_thread_records')).rows[0]?.n).toBe(recordsAtTakeover);
      expect((await other.pool.query('SELECT last_status FROM cmx_threads')).rows).toEqual([{ last_status: 'incomplete' }]);
    } finally {
      answered.open();
      await taker.releaseAll();
      await other.close();
      await tearDownMcpWorld(world, mcp);
    }
  });
});
