// A database restart in the middle of a turn, end to end (issue 17): two built `codex-multienv
// serve` instances on one throwaway PostgreSQL cluster, a turn running on A (a command that waits
// on a file), the cluster stopped (`pg_ctl stop -m fast`, as an upgrade or a failover does) and
// started again. While it is down every call on A and B answers with a clear error in time;
// once it is back the turn's fate is recorded, the thread is served by both instances, nothing
// the user gave is lost, and the command ran once. Interrupts from B reach A again afterwards
// (A's listener connected again).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { connectTestClient, setUpMcpWorld, tearDownMcpWorld, threadIdOf, type McpTestClient, type McpTestWorld } from '../helpers/mcp.js';
import { waitFor, type ListeningProcess } from '../helpers/process.js';
import { exec, gate, hold, say, type Json } from '../helpers/steps.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';
import { startServeInstance, useSharedCluster } from '../helpers/pg-instances.js';

/** Leases long enough to outlast the restart: the turn running on A keeps its owner. */
const LEASE_SEC = 60;
/** Leases short enough to run out while the database is down (A stops its turn after two thirds of one). */
const SHORT_LEASE_SEC = 3;
/** The most any call may take while the database is down: an answer, not a hang. */
const OUTAGE_CALL_DEADLINE_MS = 30_000;

const shared = useSharedCluster('cmx-pg-restart-');

/** The text of a tool result. */
const textOf = (result: CallToolResult): string => result.content.map((part) => (part.type === 'text' ? part.text : '')).join('\n');

describe('a database restart in the middle of a turn, across two instances', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  const servers: ListeningProcess[] = [];
  const clients: McpTestClient[] = [];

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-pg-restart', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.client.close().catch(() => undefined);
    for (const server of servers.splice(0)) await server.stop();
    await tearDownMcpWorld(world, undefined);
  });

  async function instance(url: string, leaseSec = LEASE_SEC): Promise<McpTestClient> {
    const server = await startServeInstance(world, url, ['-c', `multienv.lease_sec=${leaseSec}`]);
    servers.push(server);
    const client = await connectTestClient(new StreamableHTTPClientTransport(new URL(server.url)));
    clients.push(client);
    return client;
  }

  it('answers every call with a clear error while it is down, and afterwards has the turn recorded once, served by both', async () => {
    const url = await shared.freshDatabase('restart_mid_turn');
    const onA = await instance(url);
    const onB = await instance(url);
    const runs = join(world.work.path, 'runs');
    const go = join(world.work.path, 'go');
    // Each run of the command leaves a line in `runs`; it then waits for `go` (the test's say-so).
    steps.push(exec(`echo run >> ${runs}; while [ ! -e ${go} ]; do sleep 0.05; done; echo command done`, { yield_time_ms: 30_000 }), say('finished after the restart'));

    const started = (await onA.call('codex', { prompt: 'begin on A: keep this prompt', cwd: world.work.path, waitMs: 0 })).structuredContent as Json;
    const threadId = String(started.threadId);
    expect(started).toMatchObject({ status: 'running' });
    await waitFor(async () => (await readFile(runs, 'utf8').catch(() => '')) !== '', 'the command to start on A');

    await shared.cluster().stop();

    // Every call answers in time, saying what is wrong.
    const during = async (client: McpTestClient, name: string, args: Json): Promise<CallToolResult> =>
      client.call(name, args, { signal: AbortSignal.timeout(OUTAGE_CALL_DEADLINE_MS) });
    const outage = {
      statusOnB: await during(onB, 'codex-status', { threadId }),
      replyOnB: await during(onB, 'codex-reply', { threadId, prompt: 'while the database is down' }),
      listOnB: await during(onB, 'thread/list', {}),
      newOnB: await during(onB, 'codex', { prompt: 'a new thread while the database is down', cwd: world.work.path }),
      statusOnA: await during(onA, 'codex-status', { threadId }),
    };
    // B needs the database for each: it says which step failed, that it was the database, and why.
    const unreachable = /database.*: connect (ENOENT|ECONNREFUSED) /;
    expect(outage.statusOnB).toMatchObject({ isError: true });
    expect(textOf(outage.statusOnB)).toMatch(/^codex-status: cannot look up a thread’s owner in the database: /);
    expect(outage.replyOnB).toMatchObject({ isError: true });
    expect(textOf(outage.replyOnB)).toMatch(new RegExp(`^cannot read thread ${threadId}: the thread database `));
    expect(outage.listOnB).toMatchObject({ isError: true });
    expect(textOf(outage.listOnB)).toMatch(/^thread\/list: cannot list the open turns: the thread database /);
    expect(outage.newOnB).toMatchObject({ isError: true });
    expect(textOf(outage.newOnB)).toMatch(/^cannot create thread [0-9a-f-]{36}: the thread database /);
    for (const result of [outage.statusOnB, outage.replyOnB, outage.listOnB, outage.newOnB]) expect(textOf(result)).toMatch(unreachable);
    // A holds the running turn and answers from it.
    expect(outage.statusOnA.structuredContent).toMatchObject({ threadId, status: 'running', currentTurn: { toolCalls: { started: 1, finished: 0 } } });

    await shared.cluster().start();
    await writeFile(go, '');

    // The turn finished on A and is recorded: B (which never had the thread) sees it completed.
    expect((await onA.call('codex-status', { threadId, waitMs: 60_000 })).structuredContent).toMatchObject({
      status: 'idle',
      lastAgentMessage: 'finished after the restart',
      lastTurn: { status: 'completed' },
    });
    await waitFor(async () => (await onB.call('codex-status', { threadId })).structuredContent?.status === 'idle', 'B to read the thread again');
    expect((await onB.call('codex-status', { threadId })).structuredContent).toMatchObject({ status: 'idle', lastAgentMessage: 'finished after the restart' });

    // The refused calls left nothing behind: one thread, and the refused prompts never reached the model.
    expect((await onB.call('thread/list', {})).structuredContent).toMatchObject({ total: 1, threads: [{ threadId, preview: 'begin on A: keep this prompt' }] });
    expect(JSON.stringify(world.model.requests.map((request) => request.body))).not.toContain('while the database is down');

    // Continued on B, then on A: the history holds the first prompt and the command's output.
    steps.push(say('continued on B'));
    expect((await onB.call('codex-reply', { threadId, prompt: 'go on, B' })).structuredContent).toEqual({ threadId, content: 'continued on B' });
    const sent = JSON.stringify(world.model.requests.at(-1)?.body);
    expect(sent).toContain('begin on A: keep this prompt');
    expect(sent).toContain('command done');
    steps.push(say('continued on A'));
    expect((await onA.call('codex-reply', { threadId, prompt: 'and A again' })).structuredContent).toEqual({ threadId, content: 'continued on A' });

    // An interrupt from B reaches the turn A runs: A hears of it through its listener, connected again.
    const release = gate();
    steps.push(hold(release.promise, say('never said')));
    const requestsBefore = world.model.requests.length;
    expect((await onA.call('codex-reply', { threadId, prompt: 'hold on A', waitMs: 0 })).structuredContent).toMatchObject({ status: 'running' });
    await waitFor(() => world.model.requests.length > requestsBefore, "A's held turn to reach the model");
    expect((await onB.call('turn/interrupt', { threadId })).isError).toBeFalsy();
    expect((await onA.call('codex-status', { threadId, waitMs: 30_000 })).structuredContent).toMatchObject({ status: 'idle', lastTurn: { status: 'interrupted' } });
    release.open();

    // The command ran once, through the restart and everything after it.
    expect(await readFile(runs, 'utf8')).toBe('run\n');
    expect(threadIdOf(await onB.call('codex', { prompt: 'a new thread after the restart', cwd: world.work.path }))).toEqual(expect.any(String));
  });

  it('stops the turn when the database stays down past the lease, and records it interrupted once it is back', async () => {
    const url = await shared.freshDatabase('restart_past_lease');
    const onA = await instance(url, SHORT_LEASE_SEC);
    const onB = await instance(url, SHORT_LEASE_SEC);
    const runs = join(world.work.path, 'runs');
    const go = join(world.work.path, 'go');
    steps.push(exec(`echo run >> ${runs}; while [ ! -e ${go} ]; do sleep 0.05; done; echo command done`, { yield_time_ms: 30_000 }));

    const started = (await onA.call('codex', { prompt: 'begin on A: keep this prompt', cwd: world.work.path, waitMs: 0 })).structuredContent as Json;
    const threadId = String(started.threadId);
    await waitFor(async () => (await readFile(runs, 'utf8').catch(() => '')) !== '', 'the command to start on A');

    await shared.cluster().stop();
    // A cannot renew its lease: it stops the turn before any other instance could take the thread.
    await waitFor(
      async () => (await onA.call('codex-status', { threadId }, { signal: AbortSignal.timeout(OUTAGE_CALL_DEADLINE_MS) })).structuredContent?.status !== 'running',
      'A to stop the turn whose lease it could not renew',
      (SHORT_LEASE_SEC + 30) * 1000,
    );
    await shared.cluster().start();
    await writeFile(go, '');

    // Recorded as interrupted, as B reads it from the database.
    await waitFor(async () => (await onB.call('codex-status', { threadId })).structuredContent?.status === 'idle', 'B to read the thread as idle', (SHORT_LEASE_SEC + 30) * 1000);
    expect((await onB.call('codex-status', { threadId })).structuredContent).toMatchObject({ status: 'idle', lastTurn: { status: 'interrupted' } });

    steps.push(say('continued on B'));
    expect((await onB.call('codex-reply', { threadId, prompt: 'go on, B' })).structuredContent).toEqual({ threadId, content: 'continued on B' });
    expect(JSON.stringify(world.model.requests.at(-1)?.body)).toContain('begin on A: keep this prompt');
    steps.push(say('continued on A'));
    expect((await onA.call('codex-reply', { threadId, prompt: 'and A again' })).structuredContent).toEqual({ threadId, content: 'continued on A' });
    expect(await readFile(runs, 'utf8')).toBe('run\n');
  });
});
