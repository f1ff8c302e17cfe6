// What a client was answered about survives a crash of PostgreSQL (issue 17's one flush per turn):
// a turn writes its records without waiting for the disk and flushes once, before its answer. The
// cluster flushes commits (`fsync=on`), and its WAL writer is slowed to its longest pause, so a
// commit made without a flush stays in the server's buffers: an immediate stop (as a crash) right
// after an answer loses whatever was not flushed before it.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { setUpMcpWorld, tearDownMcpWorld, threadIdOf, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { useSharedCluster } from '../helpers/pg-instances.js';
import { waitFor } from '../helpers/process.js';
import { exec, gate, hold, say, type Json } from '../helpers/steps.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';

// The WAL writer would otherwise write (and flush) commits made without a flush within a fraction of a second.
const shared = useSharedCluster('cmx-pg-durability-', { durable: true, parameters: ['wal_writer_delay=10000'] });

/** The records of a thread in the database, as stored. */
async function storedRecords(url: string, threadId: string): Promise<Json[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ record: string }>(
      'SELECT r.record::text AS record FROM cmx_thread_records r JOIN cmx_threads t ON t.key = r.thread_key WHERE t.id = $1 ORDER BY r.seq',
      [threadId],
    );
    return result.rows.map((row) => JSON.parse(row.record) as Json);
  } finally {
    await client.end();
  }
}

/** A stored record's `type`, with the turn's prompt or an item's role for telling them apart. */
function describe_(record: Json): string {
  if (record.type === 'turn_started') return `turn_started ${String(record.prompt)}`;
  if (record.type === 'turn_completed') return `turn_completed ${String(record.status)}`;
  const item = record.item as Json | undefined;
  return item === undefined ? String(record.type) : `item ${String(item.role ?? item.type)}`;
}

/** Crashes the cluster (an immediate stop) and starts it again. */
async function crashAndRestart(): Promise<void> {
  await shared.cluster().crash();
  await shared.cluster().start();
}

describe('what a turn wrote survives a crash of PostgreSQL once a client was answered or a command ran', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-pg-durability', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    // Its connections were cut by the crash; closing it must still complete.
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  async function serve(url: string): Promise<McpHarness> {
    // A lease heartbeat commits with a flush: one long lease keeps them out of the test.
    mcp = await startInProcessMcp(world.home.path, { env: { CODEX_MULTIENV_DATABASE_URL: url }, args: ['-c', 'multienv.lease_sec=120'] });
    return mcp;
  }

  it('keeps every record of an answered turn', async () => {
    const url = await shared.freshDatabase('answered_turn');
    const server = await serve(url);
    steps.push(say('the answer'));
    const answered = await server.call('codex', { prompt: 'keep this prompt', cwd: world.work.path });
    expect(answered.isError).not.toBe(true);
    const threadId = threadIdOf(answered);

    await crashAndRestart();

    const records = (await storedRecords(url, threadId)).map(describe_);
    expect(records).toEqual(expect.arrayContaining(['turn_started keep this prompt', 'item user', 'item assistant', 'turn_completed completed']));
  });

  it('keeps the prompt and the model’s call before the call’s command runs', async () => {
    const url = await shared.freshDatabase('before_a_command');
    const server = await serve(url);
    const started = join(world.work.path, 'started');
    const go = join(world.work.path, 'go');
    steps.push(exec(`touch ${started}; while [ ! -e ${go} ]; do sleep 0.05; done`, { yield_time_ms: 30_000 }), say('after the crash'));
    const answered = (await server.call('codex', { prompt: 'a prompt before a command', cwd: world.work.path, waitMs: 0 })).structuredContent as Json;
    const threadId = String(answered.threadId);
    await waitFor(() => existsSync(started), 'the command to start');

    await crashAndRestart();

    const records = (await storedRecords(url, threadId)).map(describe_);
    await writeFile(go, '');
    expect(records).toEqual(expect.arrayContaining(['turn_started a prompt before a command', 'item user', 'item function_call']));
  });

  it('keeps the prompt of a running turn once its status was answered', async () => {
    const url = await shared.freshDatabase('running_turn');
    const server = await serve(url);
    const release = gate();
    steps.push(hold(release.promise, say('after the crash')));
    const started = (await server.call('codex', { prompt: 'a prompt to keep while running', cwd: world.work.path, waitMs: 0 })).structuredContent as Json;
    const threadId = String(started.threadId);
    // The model has the prompt: the turn wrote its start and the prompt (without a flush) before asking it.
    await world.model.waitForRequests(1);
    const status = (await server.call('codex-status', { threadId })).structuredContent as Json;
    expect(status.status).toBe('running');

    await crashAndRestart();

    const records = (await storedRecords(url, threadId)).map(describe_);
    release.open();
    expect(records).toEqual(expect.arrayContaining(['turn_started a prompt to keep while running', 'item user']));
  });
});
