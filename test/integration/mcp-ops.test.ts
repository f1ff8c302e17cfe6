// Turns that outlive their call, the status tools, MCP Tasks, logging notifications and portable
// tool names, end to end: our server composed in-process, the SDK client, the fake model; what
// needs processes (a second server, the client going away, a kill, what reaches stderr) runs the
// built CLI. Turns are kept running with the fake model's `hold` steps, never with sleeps; wait
// budgets only decide whether a call answers before a held turn is released, never how long
// anything takes.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CallToolResultSchema, CreateTaskResultSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, startMcp, storedRecords, tearDownMcpWorld, textOf, type McpHarness } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, isAlive, waitFor } from '../helpers/process.js';
import { rawStdio } from '../helpers/raw-peer.js';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';

function structured(result: { structuredContent?: unknown }): Json {
  const value = result.structuredContent;
  if (!isRecord(value)) throw new Error(`no structuredContent in ${JSON.stringify(result)}`);
  return value;
}

function threadIdOf(result: { structuredContent?: unknown }): string {
  const threadId = structured(result).threadId;
  if (typeof threadId !== 'string') throw new Error(`no threadId in ${JSON.stringify(result.structuredContent)}`);
  return threadId;
}

/** The thread's persisted turn completions. */
async function storedCompletions(home: string, threadId: string): Promise<{ status: string; lastAgentMessage: string | null }[]> {
  return (await storedRecords(home, threadId))
    .filter((record) => record.type === 'turn_completed')
    .map((record) => ({ status: String(record.status), lastAgentMessage: typeof record.lastAgentMessage === 'string' ? record.lastAgentMessage : null }));
}

describe('turns that outlive their call, and the status tools', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let respond: (request: RecordedRequest, index: number) => FakeStep;
  let mcp: McpHarness | undefined;
  /** Gates opened in afterEach, so a failed test never leaves a turn held. */
  let gates: { open: () => void }[];

  beforeEach(async () => {
    steps = [];
    gates = [];
    respond = () => steps.shift() ?? say('script exhausted');
    ({ home, work, model } = await setUpMcpWorld('mcp-ops', (request, index) => respond(request, index)));
  });
  afterEach(async () => {
    for (const g of gates) g.open();
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
  });

  const heldGate = (): { promise: Promise<void>; open: () => void } => {
    const g = gate();
    gates.push(g);
    return g;
  };

  const status = async (harness: McpHarness, args: Json): Promise<Json> => {
    const result = await harness.call('codex-status', args);
    expect(result.isError).toBeFalsy();
    return structured(result);
  };

  describe('wait budget', () => {
    it('answers with status "running", the turn id and its progress when the budget runs out, and the turn goes on to a stored result', async () => {
      mcp = await startInProcessMcp(home.path);
      const release = heldGate();
      steps.push(exec('echo step-one'), hold(release.promise, say('done at last')));
      const notes: unknown[] = [];
      const early = await mcp.call('codex', { prompt: 'a long task', cwd: work.path, waitMs: 0 }, { onprogress: (p) => notes.push(p) });
      expect(early.isError).toBeFalsy();
      const answer = structured(early);
      const threadId = threadIdOf(early);
      expect(answer).toMatchObject({ threadId, status: 'running', turnId: expect.any(String), content: expect.stringContaining('codex-status') });
      expect(answer.progress).toMatchObject({ turnId: answer.turnId, acceptedAt: expect.any(String) });
      expect(textOf(early)).toBe(answer.content);

      // The turn goes on after the answer: the model gets its second request (after the command).
      await model.waitForRequests(2);
      const running = await status(mcp, { threadId });
      expect(running).toMatchObject({ threadId, status: 'running', queuedTurns: 0, lastTurn: null, environments: [{ id: 'local', cwd: work.path }] });
      expect(running.currentTurn).toMatchObject({ turnId: answer.turnId, state: 'running', modelRequests: 2, toolCalls: { started: 1, finished: 1, failed: 0 } });
      const recent = (running.currentTurn as { recent: { text: string }[] }).recent.map((entry) => entry.text);
      expect(recent).toEqual(expect.arrayContaining(['thinking', expect.stringContaining('echo step-one')]));

      // No progress for the answered call once its answer is out.
      const answeredAt = mcp.received.findIndex(
        (m) => isRecord(m) && isRecord(m.result) && isRecord(m.result.structuredContent) && m.result.structuredContent.status === 'running',
      );
      const token = (mcp.sent.find((m) => isRecord(m) && m.method === 'tools/call') as { id: unknown }).id;
      expect(answeredAt).toBeGreaterThanOrEqual(0);
      const lateProgress = mcp.received
        .slice(answeredAt)
        .filter((m) => isRecord(m) && m.method === 'notifications/progress' && isRecord(m.params) && m.params.progressToken === token);

      release.open();
      const finished = await status(mcp, { threadId, waitMs: 60_000 });
      expect(finished).toMatchObject({ threadId, status: 'idle', currentTurn: null, lastAgentMessage: 'done at last' });
      expect(finished.lastTurn).toMatchObject({ turnId: answer.turnId, state: 'finished', status: 'completed', lastAgentMessage: 'done at last' });
      expect(lateProgress).toEqual([]);
      expect(mcp.received.slice(answeredAt).filter((m) => isRecord(m) && m.method === 'notifications/progress' && isRecord(m.params) && m.params.progressToken === token)).toEqual(
        [],
      );
      expect(await storedCompletions(home.path, threadId)).toEqual([{ status: 'completed', lastAgentMessage: 'done at last' }]);

      // The thread continues as usual; a finished turn within the budget answers {threadId, content} exactly.
      steps.push(say('next turn'));
      const next = await mcp.call('codex-reply', { threadId, prompt: 'and now?', waitMs: 60_000 });
      expect(next.structuredContent).toEqual({ threadId, content: 'next turn' });
    });

    it('uses multienv.default_wait_sec when the call gives no waitMs, and reports a reply queued behind a running turn as queued', async () => {
      mcp = await startInProcessMcp(home.path, { args: ['-c', 'multienv.default_wait_sec=0'] });
      const release = heldGate();
      steps.push(hold(release.promise, say('first answer')), say('second answer'));
      const first = await mcp.call('codex', { prompt: 'first', cwd: work.path });
      const threadId = threadIdOf(first);
      expect(structured(first)).toMatchObject({ status: 'running' });
      await model.waitForRequests(1);

      const queued = await mcp.call('codex-reply', { threadId, prompt: 'second' });
      expect(structured(queued)).toMatchObject({ threadId, status: 'running', progress: { state: 'queued', startedAt: null } });
      const secondTurn = structured(queued).turnId;
      expect(textOf(queued)).toMatch(/still queued/);
      expect(await status(mcp, { threadId })).toMatchObject({ status: 'running', queuedTurns: 1 });

      release.open();
      const done = await status(mcp, { threadId, turnId: secondTurn, waitMs: 60_000 });
      expect(done.turn).toMatchObject({ turnId: secondTurn, state: 'finished', status: 'completed', lastAgentMessage: 'second answer' });
      expect(done).toMatchObject({ status: 'idle', queuedTurns: 0, lastAgentMessage: 'second answer' });
      expect((await storedCompletions(home.path, threadId)).map((c) => c.lastAgentMessage)).toEqual(['first answer', 'second answer']);
    });

    it('rejects a negative waitMs with a clear error', async () => {
      mcp = await startInProcessMcp(home.path);
      const result = await mcp.call('codex', { prompt: 'x', cwd: work.path, waitMs: -1 });
      expect(result.isError).toBe(true);
      expect(textOf(result)).toMatch(/waitMs/);
      expect(model.requests).toHaveLength(0);
    });
  });

  it('reports waiting-for-approval while an approval is pending, then running on', async () => {
    let asked!: () => void;
    const elicited = new Promise<void>((resolve) => (asked = resolve));
    const answer = gate();
    gates.push(answer);
    mcp = await startInProcessMcp(home.path, {
      answer: async () => {
        asked();
        await answer.promise;
        return { action: 'accept', content: { decision: 'approve' } };
      },
    });
    steps.push(exec('touch approved.txt'), say('approved and done'));
    const early = await mcp.call('codex', { prompt: 'ask first', cwd: work.path, 'approval-policy': 'untrusted', waitMs: 0 });
    const threadId = threadIdOf(early);
    await elicited;
    const waiting = await status(mcp, { threadId });
    expect(waiting).toMatchObject({ status: 'waiting-for-approval', currentTurn: { state: 'waiting-for-approval', pendingApprovals: 1 } });
    answer.open();
    const done = await status(mcp, { threadId, waitMs: 60_000 });
    expect(done).toMatchObject({ status: 'idle', lastTurn: { status: 'completed', lastAgentMessage: 'approved and done' } });
  });

  it('codex-status: a clear error for an unknown thread or turn; a failed last turn makes the thread failed', async () => {
    mcp = await startInProcessMcp(home.path);
    const unknown = await mcp.call('codex-status', { threadId: 'no-such-thread' });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toMatch(/no-such-thread/);

    steps.push({ kind: 'http-error', status: 500, body: { error: { message: 'model down', type: 'server_error', param: null, code: null } } });
    const failed = await mcp.call('codex', { prompt: 'fail', cwd: work.path });
    const threadId = threadIdOf(failed);
    expect(await status(mcp, { threadId })).toMatchObject({ status: 'failed', lastTurn: { status: 'failed', error: expect.stringMatching(/500|model down/) } });
    const badTurn = await mcp.call('codex-status', { threadId, turnId: 'no-such-turn' });
    expect(badTurn.isError).toBe(true);
    expect(textOf(badTurn)).toMatch(/no turn no-such-turn/);
  });

  it('thread/list: every thread with created, last activity, status and environments, filtered by status, also after a restart', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(say('idle one'));
    const idle = threadIdOf(await mcp.call('codex', { prompt: 'quick', cwd: work.path }));
    const release = heldGate();
    steps.push(hold(release.promise, say('busy one')));
    const long = `slow\n\n  ${'and very detailed '.repeat(10)}`;
    const busy = threadIdOf(await mcp.call('codex', { prompt: long, cwd: work.path, waitMs: 0 }));
    const longPreview = `slow ${'and very detailed '.repeat(10)}`.slice(0, 99) + '…';

    const listed = await mcp.call('thread/list', {});
    expect(listed.isError).toBeFalsy();
    const { threads, total } = structured(listed) as { threads: Json[]; total: number };
    expect(total).toBe(2);
    expect(threads.map((t) => t.threadId)).toEqual([busy, idle]);
    expect(threads[0]).toMatchObject({
      threadId: busy,
      status: 'running',
      currentTurnId: expect.any(String),
      createdAt: expect.any(String),
      lastActivity: expect.any(String),
      environments: [{ id: 'local', cwd: work.path }],
    });
    expect(threads[1]).toMatchObject({ threadId: idle, status: 'idle', currentTurnId: null, preview: 'quick' });
    // The first prompt, whitespace folded, at most 100 characters.
    expect(threads[0]!.preview).toBe(longPreview);
    const running = structured(await mcp.call('thread/list', { status: 'running' })) as { threads: Json[]; total: number };
    expect(running.threads.map((t) => t.threadId)).toEqual([busy]);
    expect(structured(await mcp.call('thread/list', { limit: 1 }))).toMatchObject({ total: 2, threads: [{ threadId: busy }] });

    release.open();
    await status(mcp, { threadId: busy, waitMs: 60_000 });
    await mcp.close();
    // A new server process lists the stored threads without loading them.
    mcp = await startInProcessMcp(home.path);
    const after = structured(await mcp.call('thread/list', {})) as { threads: Json[] };
    expect(after.threads.map((t) => [t.threadId, t.status, t.preview])).toEqual(
      expect.arrayContaining([
        [busy, 'idle', longPreview],
        [idle, 'idle', 'quick'],
      ]),
    );
    expect(await status(mcp, { threadId: busy })).toMatchObject({ status: 'idle', lastAgentMessage: 'busy one', lastTurn: { status: 'completed' } });
  });

  it('thread/list in one server shows a turn another server has just started on a thread it listed a moment ago', async () => {
    // Two server processes: a lease names its holder by pid.
    mcp = await startMcp(home.path);
    const other = await startMcp(home.path);
    try {
      steps.push(say('first'));
      const threadId = threadIdOf(await other.call('codex', { prompt: 'first prompt', cwd: work.path }));
      const before = structured(await mcp.call('thread/list', {})) as { threads: Json[] };
      expect(before.threads).toEqual([expect.objectContaining({ threadId, status: 'idle', currentTurnId: null, preview: 'first prompt' })]);

      const release = heldGate();
      steps.push(hold(release.promise, say('second')));
      const started = structured(await other.call('codex-reply', { threadId, prompt: 'second prompt', waitMs: 0 }));
      expect(started.status).toBe('running');
      // Listed again at once (the store's summaries are cached for 5 s): the new turn is there.
      const after = structured(await mcp.call('thread/list', {})) as { threads: Json[] };
      expect(after.threads).toEqual([
        expect.objectContaining({ threadId, status: 'running', currentTurnId: started.turnId, runningElsewhere: expect.objectContaining({ pid: await other.workerPid() }) }),
      ]);
      release.open();
      await status(other, { threadId, waitMs: 60_000 });
    } finally {
      await other.close();
    }
  });

  describe('turn/interrupt', () => {
    it('stops the running turn, answers the call still open as interrupted, and the thread continues', async () => {
      mcp = await startInProcessMcp(home.path);
      const release = heldGate();
      steps.push(hold(release.promise, say('never seen')));
      const open = mcp.call('codex', { prompt: 'stop me', cwd: work.path, waitMs: 600_000 });
      await model.waitForRequests(1);
      const listed = structured(await mcp.call('thread/list', { status: 'running' })) as { threads: Json[] };
      const threadId = String(listed.threads[0]?.threadId);

      const interrupted = await mcp.call('turn/interrupt', { threadId });
      expect(interrupted.isError).toBeFalsy();
      expect(structured(interrupted)).toMatchObject({ threadId, interrupted: true, stopped: true, status: 'idle', turnId: expect.any(String) });
      const answer = await open;
      expect(answer.isError).toBe(true);
      expect(structured(answer)).toEqual({ threadId, content: expect.stringMatching(/interrupted/) });

      const again = await mcp.call('turn/interrupt', { threadId });
      expect(structured(again)).toMatchObject({ interrupted: false, turnId: null, status: 'idle' });
      release.open();
      steps.push(say('still here'));
      expect((await mcp.call('codex-reply', { threadId, prompt: 'go on' })).structuredContent).toEqual({ threadId, content: 'still here' });
      expect((await storedCompletions(home.path, threadId)).map((c) => c.status)).toEqual(['interrupted', 'completed']);
    });

    it('answers an unknown thread with an error', async () => {
      mcp = await startInProcessMcp(home.path);
      const result = await mcp.call('turn/interrupt', { threadId: 'nope' });
      expect(result.isError).toBe(true);
      expect(textOf(result)).toMatch(/nope/);
    });
  });

  it('a cancelled codex-status wait is still answered', async () => {
    mcp = await startInProcessMcp(home.path);
    const release = heldGate();
    steps.push(hold(release.promise, say('later')));
    const threadId = threadIdOf(await mcp.call('codex', { prompt: 'wait for me', cwd: work.path, waitMs: 0 }));
    const controller = new AbortController();
    const waiting = mcp.call('codex-status', { threadId, waitMs: 600_000 }, { signal: controller.signal });
    const rejected = expect(waiting).rejects.toBeDefined();
    const harness = mcp;
    await waitFor(() => harness.sent.some((m) => isRecord(m) && m.method === 'tools/call' && isRecord(m.params) && m.params.name === 'codex-status'), 'the status call to be sent');
    controller.abort();
    await rejected;
    const id = (harness.sent.find((m) => isRecord(m) && m.method === 'tools/call' && isRecord(m.params) && m.params.name === 'codex-status') as { id: unknown }).id;
    const answer = (await harness.waitForReceived((m) => isRecord(m) && m.id === id && 'result' in m, 'the answer to the cancelled wait')) as Json;
    expect(answer.result).toMatchObject({ structuredContent: { threadId, status: 'running' } });
  });

  it('a cancellation read in the same chunk as its call still interrupts the turn, and the call is answered', async () => {
    const peer = rawStdio(process.execPath, [CLI], { ...networkEnv(process.env), CODEX_HOME: home.path, FAKE_MODEL_API_KEY: 'test-key' });
    try {
      peer.send(
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
      );
      expect(await peer.next()).toMatchObject({ id: 1 });
      peer.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
      const release = heldGate();
      steps.push(hold(release.promise, say('never')));
      // One write, so the server reads both lines at once: the cancellation reaches it before the call has started.
      const call = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'codex', arguments: { prompt: 'cancelled at once', cwd: work.path, waitMs: 600_000 } } };
      peer.send(`${JSON.stringify(call)}\n${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2, reason: 'the user pressed stop' } })}`);
      const answer = await peer.next(20_000);
      expect(answer).toMatchObject({ id: 2, result: { isError: true, structuredContent: { content: expect.stringMatching(/^The turn was interrupted/) } } });
    } finally {
      await peer.close();
    }
  });

  describe('the client goes away', () => {
    /**
     * Speaks MCP to a server we spawn ourselves, so "going away" is only closing its stdin (the
     * SDK's client transport would also signal the process). Its log goes to a file.
     */
    const rawServer = (args: string[], logFile: string) => {
      const peer = rawStdio(process.execPath, [CLI, ...args], {
        ...networkEnv(process.env),
        CODEX_HOME: home.path,
        FAKE_MODEL_API_KEY: 'test-key',
        CODEX_MULTIENV_LOG: 'debug',
        CODEX_MULTIENV_LOG_FILE: logFile,
      });
      const initialize = async (): Promise<void> => {
        peer.send(
          JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
        );
        expect(await peer.next()).toMatchObject({ id: 1, result: { serverInfo: { name: 'codex-multienv-mcp' } } });
        peer.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
      };
      return { peer, initialize };
    };

    it('finishes and stores an accepted turn after the client disconnected; the process the client started exits at once', async () => {
      const logFile = join(work.path, 'server.log');
      const { peer, initialize } = rawServer([], logFile);
      await initialize();
      const release = heldGate();
      steps.push(hold(release.promise, say('finished without a client')));
      peer.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'codex', arguments: { prompt: 'outlive me', cwd: work.path, waitMs: 0 } } }));
      const answer = await peer.next();
      expect(answer).toMatchObject({ id: 2, result: { structuredContent: { status: 'running' } } });
      const threadId = String(((answer.result as Json).structuredContent as Json).threadId);
      await model.waitForRequests(1);

      // The turn is still held: the client's process (the relay) ends anyway, and the worker goes on.
      await peer.close();
      expect(await peer.exitCode).toBe(0);
      const log = await readFile(logFile, 'utf8');
      expect(log).toContain('the client went away');
      const workerPid = Number(/the client went away[^\n]*"pid":(\d+)/.exec(log)?.[1]);
      expect(isAlive(workerPid)).toBe(true);

      // A later server sees the turn running in that process, and waits for it.
      mcp = await startMcp(home.path);
      expect(await status(mcp, { threadId })).toMatchObject({ status: 'running', runningElsewhere: { pid: workerPid } });
      release.open();
      expect(await status(mcp, { threadId, waitMs: 60_000 })).toMatchObject({ status: 'idle', lastAgentMessage: 'finished without a client', lastTurn: { status: 'completed' } });
      expect(await storedCompletions(home.path, threadId)).toEqual([{ status: 'completed', lastAgentMessage: 'finished without a client' }]);
      await waitFor(() => !isAlive(workerPid), 'the detached worker to exit once its turn is done');
    });

    it('keeps a turn running when the client SIGKILLs the server it started; another server refuses to write the thread until it ends, then continues it', async () => {
      mcp = await startMcp(home.path);
      const release = heldGate();
      steps.push(exec('echo before-the-kill'), hold(release.promise, say('survived the kill')));
      const started = await mcp.call('codex', { prompt: 'survive', cwd: work.path, waitMs: 0 });
      const threadId = threadIdOf(started);
      await model.waitForRequests(2);
      const workerPid = await mcp.workerPid();
      expect(workerPid).not.toBe(mcp.pid);

      process.kill(mcp.pid, 'SIGKILL');
      await mcp.close();
      mcp = await startMcp(home.path);
      expect(isAlive(workerPid)).toBe(true);
      expect(await status(mcp, { threadId })).toMatchObject({ status: 'running', runningElsewhere: { pid: workerPid } });
      const listed = structured(await mcp.call('thread/list', {}));
      expect(listed.threads).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ threadId, status: 'running', currentTurnId: structured(started).turnId, runningElsewhere: expect.objectContaining({ pid: workerPid }) }),
        ]),
      );

      // Writing the thread here now would interleave with the worker's records: refused, clearly.
      const busy = await mcp.call('codex-reply', { threadId, prompt: 'too early' });
      expect(busy.isError).toBe(true);
      expect(structured(busy)).toMatchObject({ threadId });
      expect(textOf(busy)).toMatch(new RegExp(`running a turn in another codex-multienv process \\(pid ${workerPid}`));
      expect(model.requests.length).toBe(2);

      release.open();
      expect(await status(mcp, { threadId, waitMs: 60_000 })).toMatchObject({ status: 'idle', lastAgentMessage: 'survived the kill' });
      steps.push(say('continued here'));
      const next = await mcp.call('codex-reply', { threadId, prompt: 'go on' });
      expect(next.isError).toBeFalsy();
      expect(textOf(next)).toBe('continued here');
      // The continued turn saw the whole history the other process wrote.
      expect(JSON.stringify(model.requests[2]?.body)).toContain('survived the kill');
      expect((await storedCompletions(home.path, threadId)).map((c) => c.status)).toEqual(['completed', 'completed']);
    });

    it('turn/interrupt from a later server stops a turn its detached worker is still running', async () => {
      mcp = await startMcp(home.path);
      const release = heldGate();
      steps.push(hold(release.promise, say('never seen')));
      const threadId = threadIdOf(await mcp.call('codex', { prompt: 'run away', cwd: work.path, waitMs: 0 }));
      await model.waitForRequests(1);
      const workerPid = await mcp.workerPid();
      await mcp.close();

      mcp = await startMcp(home.path);
      const interrupted = await mcp.call('turn/interrupt', { threadId });
      expect(interrupted.isError).toBeFalsy();
      expect(structured(interrupted)).toMatchObject({ threadId, interrupted: true, stopped: true, status: 'idle' });
      expect(textOf(interrupted)).toContain(`running in server process pid ${workerPid}`);
      expect(await status(mcp, { threadId })).toMatchObject({ status: 'idle', lastTurn: { status: 'interrupted' } });
      expect(await storedCompletions(home.path, threadId)).toEqual([{ status: 'interrupted', lastAgentMessage: null }]);
      await waitFor(() => !isAlive(workerPid), 'the worker to exit once its turn was interrupted');
    });

    it('with multienv.drain_timeout_sec = 0, interrupts the turn, records it and exits', async () => {
      const logFile = join(work.path, 'server.log');
      const { peer, initialize } = rawServer(['-c', 'multienv.drain_timeout_sec=0'], logFile);
      await initialize();
      const release = heldGate();
      steps.push(hold(release.promise, say('never')));
      peer.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'codex', arguments: { prompt: 'cut me short', cwd: work.path, waitMs: 0 } } }));
      const answer = await peer.next();
      const threadId = String(((answer.result as Json).structuredContent as Json).threadId);
      await model.waitForRequests(1);
      await peer.close();
      expect(await peer.exitCode).toBe(0);
      expect((await storedCompletions(home.path, threadId)).map((c) => c.status)).toEqual(['interrupted']);
    });
  });

  describe('MCP Tasks', () => {
    it('lists codex and codex-reply with taskSupport "optional" and declares the tasks capability (without tasks/list)', async () => {
      mcp = await startInProcessMcp(home.path);
      const { tools } = await mcp.client.listTools();
      const support = Object.fromEntries(tools.map((t) => [t.name, t.execution?.taskSupport]));
      expect(support).toMatchObject({ codex: 'optional', 'codex-reply': 'optional', 'codex-status': 'forbidden' });
      // No tasks/list: a task is a record of its thread, found by its id (issue 16).
      expect(mcp.client.getServerCapabilities()?.tasks).toEqual({ cancel: {}, requests: { tools: { call: {} } } });
    });

    it('runs codex as a task: created at once, working with the thread named, then the result; codex-reply too', async () => {
      mcp = await startInProcessMcp(home.path);
      const release = heldGate();
      steps.push(hold(release.promise, say('task answer')));
      const stream = mcp.client.experimental.tasks.callToolStream({ name: 'codex', arguments: { prompt: 'as a task', cwd: work.path } }, CallToolResultSchema, {
        task: { ttl: 600_000 },
      });
      const seen: string[] = [];
      let result: CallToolResult | undefined;
      let taskId: string | undefined;
      for await (const message of stream) {
        seen.push(message.type);
        if (message.type === 'taskCreated') {
          taskId = message.task.taskId;
          await model.waitForRequests(1);
          const task = await mcp.client.experimental.tasks.getTask(taskId);
          expect(task).toMatchObject({
            status: 'working',
            statusMessage: expect.stringMatching(/^thread \S+, turn \S+: running, 1 model request\(s\), 0 tool call\(s\) done; latest: thinking$/),
          });
          release.open();
        }
        if (message.type === 'result') result = message.result;
        if (message.type === 'error') throw message.error;
      }
      expect(seen[0]).toBe('taskCreated');
      expect(result?.structuredContent).toMatchObject({ content: 'task answer' });
      const threadId = threadIdOf(result!);
      expect((await mcp.client.experimental.tasks.getTask(taskId!)).status).toBe('completed');

      steps.push(say('reply as a task'));
      let reply: CallToolResult | undefined;
      for await (const message of mcp.client.experimental.tasks.callToolStream({ name: 'codex-reply', arguments: { threadId, prompt: 'more' } }, CallToolResultSchema, {
        task: {},
      })) {
        if (message.type === 'result') reply = message.result;
        if (message.type === 'error') throw message.error;
      }
      expect(reply?.structuredContent).toEqual({ threadId, content: 'reply as a task' });
    });

    it('tasks/cancel interrupts the turn; a task call whose turn cannot start is refused with the reason', async () => {
      mcp = await startInProcessMcp(home.path);
      const release = heldGate();
      steps.push(hold(release.promise, say('cancelled before this')));
      const created = await mcp.client.request(
        { method: 'tools/call', params: { name: 'codex', arguments: { prompt: 'cancel me', cwd: work.path }, task: {} } },
        CreateTaskResultSchema,
      );
      await model.waitForRequests(1);
      const working = await mcp.client.experimental.tasks.getTask(created.task.taskId);
      const threadId = /^thread (\S+),/.exec(working.statusMessage ?? '')?.[1] ?? '';
      expect(threadId).not.toBe('');
      await mcp.client.experimental.tasks.cancelTask(created.task.taskId);
      const done = await status(mcp, { threadId, waitMs: 60_000 });
      expect(done).toMatchObject({ status: 'idle', lastTurn: { status: 'interrupted' } });
      expect((await mcp.client.experimental.tasks.getTask(created.task.taskId)).status).toBe('cancelled');

      // A task is a record of its thread: a call whose turn cannot start makes none, and says why.
      await expect(
        mcp.client.request({ method: 'tools/call', params: { name: 'codex-reply', arguments: { threadId: 'no-such-thread', prompt: 'x' }, task: {} } }, CreateTaskResultSchema),
      ).rejects.toThrow(/Session not found for thread_id: no-such-thread/);
    });
  });

  describe('logging notifications', () => {
    it('sends warnings and worse by default, every level from logging/setLevel on, and keeps logging to stderr', async () => {
      mcp = await startInProcessMcp(home.path);
      steps.push(say('quiet'));
      await mcp.call('codex', { prompt: 'no log level', cwd: work.path });
      const messages = (): Json[] => mcp!.received.filter((m): m is Json => isRecord(m) && m.method === 'notifications/message').map((m) => m.params as Json);
      expect(messages().filter((m) => m.level === 'info' || m.level === 'debug')).toEqual([]);
      await mcp.waitForStderr(/thread started/, 'the thread log line');

      await mcp.client.setLoggingLevel('debug');
      steps.push(say('loud'));
      await mcp.call('codex', { prompt: 'with a log level', cwd: work.path });
      await mcp.waitForReceived(
        (m) => isRecord(m) && m.method === 'notifications/message' && isRecord(m.params) && isRecord(m.params.data) && m.params.data.message === 'turn finished',
        'the turn-finished log event',
      );
      const started = messages().find((m) => isRecord(m.data) && m.data.message === 'thread started');
      expect(started).toMatchObject({ level: 'info', logger: 'codex-multienv/threads', data: { message: 'thread started', thread: expect.any(String), environments: ['local'] } });

      await mcp.client.setLoggingLevel('error');
      const before = messages().length;
      steps.push(say('quiet again'));
      await mcp.call('codex', { prompt: 'errors only', cwd: work.path });
      expect(
        messages()
          .slice(before)
          .filter((m) => m.level !== 'error'),
      ).toEqual([]);
    });
  });

  describe('tool names', () => {
    // The first two read the process's own stderr, where anything the SDK printed would land.
    it('starts quietly with the default names: no SDK tool-name warning on stderr at the default log level', async () => {
      // No CODEX_MULTIENV_LOG: the default level (info), as a client starts the server.
      mcp = await startMcp(home.path, { env: { CODEX_MULTIENV_LOG: undefined } });
      const { tools } = await mcp.client.listTools();
      expect(tools.map((t) => t.name)).toEqual(
        expect.arrayContaining(['environment/add', 'environment/remove', 'environment/list', 'thread/list', 'thread/close', 'turn/interrupt']),
      );
      // The SDK warns while the tools are registered, before the ready line.
      await mcp.waitForStderr(/MCP server ready/, 'the ready line');
      expect(mcp.stderr()).not.toMatch(/Tool name|Tool registration|SEP/);
      expect(mcp.stderr()).not.toMatch(/DEBUG/);
    });

    it('prints only log lines on stderr, also at debug level: nothing from the SDK about tool names', async () => {
      mcp = await startMcp(home.path);
      await mcp.client.listTools();
      await mcp.waitForStderr(/MCP server ready/, 'the ready line');
      expect(mcp.stderr()).not.toMatch(/Tool name|Tool registration|SEP/);
      // Nothing printed by the SDK itself: every line on stderr is a log line.
      const stray = mcp
        .stderr()
        .split('\n')
        .filter((line) => line.length > 0 && !/^\S+Z (TRACE|DEBUG|INFO|WARN|ERROR) /.test(line));
      expect(stray).toEqual([]);
    });

    it('publishes environment_add, environment_remove, environment_list, thread_list, thread_close, turn_interrupt with --portable-tool-names', async () => {
      mcp = await startInProcessMcp(home.path, { args: ['--portable-tool-names'] });
      const { tools } = await mcp.client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual([
        'codex',
        'codex-reply',
        'codex-status',
        'environment_add',
        'environment_list',
        'environment_remove',
        'thread_close',
        'thread_list',
        'turn_interrupt',
      ]);
      const list = await mcp.call('environment_list', {});
      expect(list.isError).toBeFalsy();
      expect(structured(list).environments).toEqual(expect.arrayContaining([expect.objectContaining({ id: 'local' })]));
      expect((await mcp.call('thread_list', {})).isError).toBeFalsy();
      const bad = await mcp.call('environment_add', {});
      expect(textOf(bad)).toMatch(/^environment_add: /);
      expect(textOf(await mcp.call('environment_remove', { id: 'nothing' }))).toMatch(/^environment_remove: unknown environment `nothing`/);
    });

    it('does the same with multienv.portable_tool_names = true', async () => {
      mcp = await startInProcessMcp(home.path, { args: ['-c', 'multienv.portable_tool_names=true'] });
      const { tools } = await mcp.client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['environment_add', 'turn_interrupt']));
      expect(tools.map((t) => t.name)).not.toContain('environment/add');
    });
  });
});
