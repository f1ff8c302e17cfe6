// Several instances, one PostgreSQL database (issue 17) end to end: two or three built
// `codex-multienv serve` processes on loopback HTTP share a throwaway cluster (threads and leases
// in the database), driven by the SDK clients of both MCP eras and the fake model. A thread
// started on one instance is served by every other: status, list, continue, interrupt, close;
// two instances never run one thread's turns at once; an owner killed with SIGKILL loses its
// threads when its lease expires and another instance continues them.
import { Client as ModernClient, StreamableHTTPClientTransport as ModernHttpTransport } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { connectTestClient, setUpMcpWorld, tearDownMcpWorld, threadIdOf, type McpTestClient, type McpTestWorld } from '../helpers/mcp.js';
import { waitFor, type ListeningProcess } from '../helpers/process.js';
import { gate, hold, say, type Json } from '../helpers/steps.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';
import { startServeInstance, useSharedCluster } from '../helpers/pg-instances.js';

/** The lease length of these instances: short, so a take-over after SIGKILL comes soon. */
const LEASE_SEC = 2;

const shared = useSharedCluster('cmx-scale-out-');

describe('several serve instances on one PostgreSQL database', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let url: string;
  const servers: ListeningProcess[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-scale-out', () => steps.shift() ?? say('script exhausted'));
    url = await shared.freshDatabase('scale');
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
    for (const server of servers.splice(0)) await server.stop();
    await tearDownMcpWorld(world, undefined);
  });

  /** Starts one instance on a free loopback port, its threads in the test's database. */
  async function instance(): Promise<ListeningProcess> {
    const server = await startServeInstance(world, url, ['-c', `multienv.lease_sec=${LEASE_SEC}`]);
    servers.push(server);
    return server;
  }

  /** A 2025-11-25 session with `server` (SDK v1). */
  async function legacy(server: ListeningProcess): Promise<McpTestClient> {
    const client = await connectTestClient(new StreamableHTTPClientTransport(new URL(server.url)));
    closers.push(() => client.client.close());
    return client;
  }

  /** The SDK v2 client pinned to the 2026-07-28 era (stateless). */
  async function modern(server: ListeningProcess): Promise<ModernClient> {
    const client = new ModernClient({ name: 'scale-out-test', version: '1.0.0' }, { capabilities: {}, versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await client.connect(new ModernHttpTransport(new URL(server.url)));
    closers.push(() => client.close());
    return client;
  }

  it('serves a thread started on A from B: status, list, continue, interrupt, close (both eras)', async () => {
    const [a, b] = [await instance(), await instance()];
    const onA = await modern(a);
    const onB = await legacy(b);

    steps.push(say('started on A'));
    const first = await onA.callTool({ name: 'codex', arguments: { prompt: 'begin on A', cwd: world.work.path } });
    const threadId = threadIdOf(first);
    expect(first.structuredContent).toEqual({ threadId, content: 'started on A' });

    expect((await onB.call('codex-status', { threadId })).structuredContent).toMatchObject({ threadId, status: 'idle', lastAgentMessage: 'started on A' });
    expect((await onB.call('thread/list', {})).structuredContent).toMatchObject({ total: 1, threads: [{ threadId, preview: 'begin on A' }] });

    steps.push(say('continued on B'));
    expect((await onB.call('codex-reply', { threadId, prompt: 'go on, B' })).structuredContent).toEqual({ threadId, content: 'continued on B' });
    // B's turn was sent the history A wrote.
    expect(JSON.stringify(world.model.requests.at(-1)?.body)).toContain('started on A');

    // A turn running on A, stopped from B; A reports it interrupted.
    const release = gate();
    steps.push(hold(release.promise, say('never said')));
    const running = (await onA.callTool({ name: 'codex-reply', arguments: { threadId, prompt: 'hold on A', waitMs: 0 } })).structuredContent as Json;
    expect(running).toMatchObject({ threadId, status: 'running' });
    await waitFor(async () => ((await onB.call('codex-status', { threadId })).structuredContent as Json).status === 'running', 'B to see the turn running on A');
    const interrupted = await onB.call('turn/interrupt', { threadId });
    expect(interrupted.isError).toBeFalsy();
    release.open();
    expect((await onA.callTool({ name: 'codex-status', arguments: { threadId, waitMs: 30_000 } })).structuredContent).toMatchObject({
      status: 'idle',
      lastTurn: { status: 'interrupted' },
    });

    // Closed and archived on B: A, which has the thread loaded, no longer lists it.
    const closed = await onB.call('thread/close', { threadId, archive: true });
    expect(closed.isError).toBeFalsy();
    expect((await onA.callTool({ name: 'thread/list', arguments: {} })).structuredContent).toMatchObject({ total: 0, threads: [] });
  });

  it('continues threads on another instance right after their answers (a lease given back a moment later is waited for, not refused)', async () => {
    const [a, b] = [await instance(), await instance()];
    const onA = await modern(a);
    const onB = await modern(b);
    const threads = 8;
    for (let i = 0; i < threads * 2; i++) steps.push(say('done'));
    const results = await Promise.all(
      Array.from({ length: threads }, async (_, i) => {
        const first = await onA.callTool({ name: 'codex', arguments: { prompt: `thread ${i}`, cwd: world.work.path } });
        const threadId = threadIdOf(first);
        // At once, as a hub spreading calls over instances does.
        return (await onB.callTool({ name: 'codex-reply', arguments: { threadId, prompt: 'go on' } })).structuredContent;
      }),
    );
    expect(results).toEqual(Array.from({ length: threads }, () => ({ threadId: expect.any(String), content: 'done' })));
  });

  it('runs one codex-reply of a thread at a time across instances: the other is refused as busy', async () => {
    const [a, b] = [await instance(), await instance()];
    const onA = await legacy(a);
    const onB = await legacy(b);
    steps.push(say('ready'));
    const threadId = threadIdOf(await onA.call('codex', { prompt: 'one thread', cwd: world.work.path }));

    const release = gate();
    steps.push(hold(release.promise, say('A ran it')));
    const fromA = onA.call('codex-reply', { threadId, prompt: 'from A' });
    await waitFor(() => world.model.requests.length === 2, "A's turn to reach the model");
    const fromB = await onB.call('codex-reply', { threadId, prompt: 'from B' });
    release.open();
    expect(fromB.isError).toBe(true);
    expect(JSON.stringify(fromB.content)).toMatch(/is running a turn in another codex-multienv process \(pid \d+/);
    expect((await fromA).structuredContent).toEqual({ threadId, content: 'A ran it' });
    // The refused prompt never reached the model.
    expect(world.model.requests).toHaveLength(2);
  });

  it('answers a 2025-11-25 session sent to an instance that did not open it with a 404 saying so and what to do', async () => {
    const [a, b] = [await instance(), await instance()];
    const onA = await legacy(a);
    const sessionId = (onA.client.transport as StreamableHTTPClientTransport | undefined)?.sessionId;
    expect(sessionId).toEqual(expect.any(String));
    const toolsList = (url: string): Promise<Response> =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId ?? '', 'mcp-protocol-version': '2025-11-25' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
      });

    const onB = await toolsList(b.url);
    expect(onB.status).toBe(404);
    expect(await onB.json()).toMatchObject({
      error: {
        message: expect.stringMatching(
          new RegExp(
            `^no MCP session ${sessionId ?? ''} in this codex-multienv instance: it was opened by another instance .*route every request carrying its Mcp-Session-Id to that instance`,
          ),
        ),
      },
    });
    // A, which opened it, still serves it.
    expect((await toolsList(a.url)).status).toBe(200);
    // The SDK client sent to B shows the same words.
    // (It resumes the session without a request: the first call is the one refused.)
    const resumed = await connectTestClient(new StreamableHTTPClientTransport(new URL(b.url), { sessionId }));
    closers.push(() => resumed.client.close());
    const misrouted = await resumed.client.listTools().then(
      () => 'listed',
      (error: unknown) => String(error),
    );
    expect(misrouted).toMatch(/opened by another instance/);
  });

  it('lets another instance continue the threads of an owner killed with SIGKILL once its lease expires', async () => {
    const [a, b] = [await instance(), await instance()];
    const onA = await legacy(a);
    const onB = await legacy(b);
    const never = gate();
    steps.push(hold(never.promise, say('never said')));
    const running = (await onA.call('codex', { prompt: 'owner dies', cwd: world.work.path, waitMs: 0 })).structuredContent as Json;
    const threadId = String(running.threadId);
    await waitFor(() => world.model.requests.length === 1, "A's turn to reach the model");

    a.child.kill('SIGKILL');
    // B may refuse while the dead owner's lease lasts; once it has expired, B repairs the turn
    // (recorded as interrupted) and runs the next one.
    steps.push(say('continued after the owner died'));
    let reply: Awaited<ReturnType<McpTestClient['call']>> | undefined;
    await waitFor(
      async () => {
        reply = await onB.call('codex-reply', { threadId, prompt: 'carry on' });
        return !reply.isError;
      },
      'B to take over the thread after the lease expired',
      (LEASE_SEC + 20) * 1000,
    );
    expect(reply?.structuredContent).toEqual({ threadId, content: 'continued after the owner died' });
    expect((await onB.call('codex-status', { threadId })).structuredContent).toMatchObject({ status: 'idle', lastAgentMessage: 'continued after the owner died' });
    never.open();
  });
});
