// The turn lifecycle end to end: our server composed in-process as the CLI composes it, the SDK
// client over the in-memory pair, the fake model.
// Timing is controlled with the fake model's `hold` steps and with what the server reports
// (model requests, progress, raw JSON-RPC messages), never with sleeps.
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { functionCallOutputs, inputItems, type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, storedRecords, tearDownMcpWorld, textOf, type McpHarness, threadIdOf } from '../helpers/mcp.js';
import { waitFor } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';

/** The JSON-RPC id of the `tools/call` whose arguments have this prompt, once the client sent it. */
function sentCallId(mcp: McpHarness, prompt: string): string | number | undefined {
  for (const message of mcp.sent) {
    if (!isRecord(message) || message.method !== 'tools/call' || !isRecord(message.params)) continue;
    const args = message.params.arguments;
    if (isRecord(args) && args.prompt === prompt && (typeof message.id === 'string' || typeof message.id === 'number')) return message.id;
  }
  return undefined;
}

/** The JSON-RPC id of the `tools/call` whose arguments have this prompt. */
function callIdOf(mcp: McpHarness, prompt: string): string | number {
  const id = sentCallId(mcp, prompt);
  if (id === undefined) throw new Error(`no tools/call with prompt ${JSON.stringify(prompt)} was sent`);
  return id;
}

/** The server's JSON-RPC answer (result or error) to request `id`, read from the raw log. */
function answerTo(mcp: McpHarness, id: string | number, what: string): Promise<Json> {
  return mcp.waitForReceived((m) => isRecord(m) && m.id === id && m.method === undefined && ('result' in m || 'error' in m), what) as Promise<Json>;
}

function textOfItem(item: Json): string {
  return JSON.stringify(item.content ?? item.output ?? '');
}

/**
 * Every tool call in `items` is answered, and answered before the next user message: the model
 * API rejects a history with a call left open, and an answer after a later prompt means two turns
 * interleaved.
 */
function expectEveryCallAnsweredInOrder(items: unknown[]): void {
  const list = items.filter(isRecord);
  const problems: string[] = [];
  list.forEach((item, index) => {
    if (item.type !== 'function_call' && item.type !== 'custom_tool_call') return;
    const answer = list.findIndex((other, j) => j > index && (other.type === 'function_call_output' || other.type === 'custom_tool_call_output') && other.call_id === item.call_id);
    if (answer === -1) {
      problems.push(`call ${String(item.call_id)} has no output`);
      return;
    }
    const prompt = list.slice(index + 1, answer).find((other) => other.type === 'message' && other.role === 'user');
    if (prompt !== undefined) problems.push(`call ${String(item.call_id)} is answered only after the user message ${textOfItem(prompt)}`);
  });
  expect(problems).toEqual([]);
}

/** True while `pid` exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    if (existsSync('/proc/self/stat')) return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('turn lifecycle through MCP', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let respond: (request: RecordedRequest, index: number) => FakeStep;
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    respond = () => steps.shift() ?? say('script exhausted');
    ({ home, work, model } = await setUpMcpWorld('mcp-turns', (request, index) => respond(request, index)));
  });
  afterEach(async () => {
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
  });

  /** Starts a thread with one quick turn and returns its id. */
  const startThread = async (harness: McpHarness): Promise<string> => {
    steps.push(say('thread started'));
    const first = await harness.call('codex', { prompt: 'start the thread', cwd: work.path });
    expect(first.structuredContent).toMatchObject({ content: 'thread started' });
    return threadIdOf(first);
  };

  /** A codex-reply whose promise also resolves `queued` once the server accepted it (its first progress). */
  const replyQueued = (harness: McpHarness, threadId: string, prompt: string): { result: Promise<CallToolResult>; queued: Promise<void> } => {
    let accepted!: () => void;
    const queued = new Promise<void>((resolve) => (accepted = resolve));
    const result = harness.call('codex-reply', { threadId, prompt }, { onprogress: () => accepted() });
    return { result, queued };
  };

  describe('one turn at a time per thread', () => {
    it('runs a second codex-reply on the same thread only after the first has finished', async () => {
      mcp = await startInProcessMcp(home.path);
      const threadId = await startThread(mcp);
      const release = gate();
      steps.push(hold(release.promise, say('reply one')), say('reply two'));
      const order: string[] = [];
      const one = mcp.call('codex-reply', { threadId, prompt: 'prompt one' }).then((r) => (order.push('one'), r));
      await model.waitForRequests(2);
      const second = replyQueued(mcp, threadId, 'prompt two');
      const two = second.result.then((r) => (order.push('two'), r));
      // The second call is in the server (its turn was accepted) while the first is held.
      await second.queued;
      release.open();
      expect((await one).structuredContent).toEqual({ threadId, content: 'reply one' });
      expect((await two).structuredContent).toEqual({ threadId, content: 'reply two' });
      expect(order).toEqual(['one', 'two']);
      // Had the turns overlapped, the second turn's request would not contain the first's answer.
      expect(model.requests).toHaveLength(3);
      const third = JSON.stringify(inputItems(model.requests[2]!));
      expect(third).toContain('prompt one');
      expect(third).toContain('reply one');
      expect(third.indexOf('reply one')).toBeLessThan(third.indexOf('prompt two'));
    });

    it('refuses a reply beyond multienv.max_queued_turns_per_thread with a clear "busy" error that names the thread', async () => {
      mcp = await startInProcessMcp(home.path, { args: ['-c', 'multienv.max_queued_turns_per_thread=1'] });
      const threadId = await startThread(mcp);
      const release = gate();
      steps.push(hold(release.promise, say('reply one')), say('reply two'));
      const one = mcp.call('codex-reply', { threadId, prompt: 'one' });
      await model.waitForRequests(2);
      const second = replyQueued(mcp, threadId, 'two');
      await second.queued;
      const harness = mcp;
      const third = harness.call('codex-reply', { threadId, prompt: 'three' });
      try {
        // Answered at once, while the other two still hold the thread (a queued call would hang here).
        await harness.waitForReceived((m) => isRecord(m) && m.method === undefined && m.id === sentCallId(harness, 'three'), 'an immediate answer to the reply beyond the limit');
      } finally {
        release.open();
      }
      const three = await third;
      expect((await one).structuredContent).toEqual({ threadId, content: 'reply one' });
      expect((await second.result).structuredContent).toEqual({ threadId, content: 'reply two' });
      expect(model.requests).toHaveLength(3);
      expect(JSON.stringify(inputItems(model.requests[2]!))).not.toContain('"three"');

      expect(three.isError).toBe(true);
      expect(textOf(three)).toMatch(/busy/);
      // A turn-level error carries {threadId, content} so the client knows which thread to retry.
      expect(three.structuredContent).toEqual({ threadId, content: textOf(three) });
    });
  });

  it('resolves each thread from its own config argument, and warns about it for every thread', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(say('a1'), say('a2'), say('b'));
    const models: string[] = [];
    respond = (request) => {
      const body = request.body;
      models.push(isRecord(body) && typeof body.model === 'string' ? body.model : '?');
      return steps.shift() ?? say('script exhausted');
    };
    const withA = { model: 'model-a', no_such_key: 1 };
    for (const config of [withA, { ...withA }, { model: 'model-b' }]) {
      const result = await mcp.call('codex', { prompt: 'which model?', cwd: work.path, config });
      expect(result.isError).toBeFalsy();
    }
    // Same settings resolve alike (kept once resolved); other settings resolve afresh.
    expect(models).toEqual(['model-a', 'model-a', 'model-b']);
    await mcp.waitForStderr(/unknown config key `no_such_key`[\s\S]*unknown config key `no_such_key`/, 'the warning for both threads of config A');
  });

  it('runs turns of different threads at the same time', async () => {
    mcp = await startInProcessMcp(home.path);
    const releaseA = gate();
    const releaseB = gate();
    respond = (request) => {
      const input = JSON.stringify(inputItems(request));
      if (input.includes('thread-a')) return hold(releaseA.promise, say('answer a'));
      if (input.includes('thread-b')) return hold(releaseB.promise, say('answer b'));
      return say('unexpected request');
    };
    const a = mcp.call('codex', { prompt: 'thread-a', cwd: work.path });
    const b = mcp.call('codex', { prompt: 'thread-b', cwd: work.path });
    try {
      // Both turns reached the model before either was released.
      await model.waitForRequests(2);
    } finally {
      releaseB.open();
    }
    const resultB = await b;
    releaseA.open();
    const resultA = await a;
    expect(resultA.structuredContent).toMatchObject({ content: 'answer a' });
    expect(resultB.structuredContent).toMatchObject({ content: 'answer b' });
    expect(threadIdOf(resultA)).not.toBe(threadIdOf(resultB));
    expect(model.requests).toHaveLength(2);
  });

  describe('cancellation', () => {
    it('interrupts a turn held at the model, still answers the cancelled request, and the thread continues', async () => {
      mcp = await startInProcessMcp(home.path);
      const release = gate();
      steps.push(exec('echo before-cancel'), hold(release.promise, say('too late')));
      const controller = new AbortController();
      const call = mcp.call('codex', { prompt: 'a long task', cwd: work.path }, { signal: controller.signal });
      const rejected = expect(call).rejects.toBeDefined();
      await model.waitForRequests(2);
      controller.abort(new Error('the user pressed stop'));
      await rejected;
      const id = callIdOf(mcp, 'a long task');
      expect(mcp.sent).toContainEqual(expect.objectContaining({ method: 'notifications/cancelled', params: expect.objectContaining({ requestId: id }) }));

      // The SDK client drops the answer; the raw log shows the server still sent it.
      const answer = await answerTo(mcp, id, 'the answer to the cancelled call');
      expect(answer.result).toMatchObject({ isError: true, structuredContent: { threadId: expect.any(String), content: expect.stringMatching(/interrupted/) } });
      const threadId = threadIdOf(answer.result as Json);
      release.open();

      steps.push(say('after the cancel'));
      const reply = await mcp.call('codex-reply', { threadId, prompt: 'are you still there?' });
      expect(reply.isError).toBeFalsy();
      expect(reply.structuredContent).toEqual({ threadId, content: 'after the cancel' });
      const items = inputItems(model.requests[model.requests.length - 1]!);
      const history = JSON.stringify(items);
      expect(history).toContain('a long task');
      expect(history).toContain('before-cancel');
      expect(history).not.toContain('too late');
      expectEveryCallAnsweredInOrder(items);
      const records = await storedRecords(home.path, threadId);
      expect(records.filter((r) => r.type === 'turn_completed').map((r) => r.status)).toEqual(['interrupted', 'completed']);
    });

    it('kills the running command (and its children) when the call is cancelled, and answers the dangling call', async () => {
      mcp = await startInProcessMcp(home.path);
      const pidFile = join(work.path, 'sleep.pid');
      const shellFile = join(work.path, 'shell.pid');
      steps.push(exec('echo $$ > shell.pid; sleep 300 & echo $! > sleep.pid; wait', { yield_time_ms: 30_000 }));
      const controller = new AbortController();
      const call = mcp.call('codex', { prompt: 'block forever', cwd: work.path }, { signal: controller.signal });
      const rejected = expect(call).rejects.toBeDefined();
      await waitFor(async () => (await readFile(pidFile, 'utf8').catch(() => '')).trim().length > 0, 'the command to write its pid');
      const sleepPid = Number((await readFile(pidFile, 'utf8')).trim());
      const shellPid = Number((await readFile(shellFile, 'utf8')).trim());
      expect(alive(sleepPid)).toBe(true);
      expect(alive(shellPid)).toBe(true);

      controller.abort();
      await rejected;
      const answer = await answerTo(mcp, callIdOf(mcp, 'block forever'), 'the answer to the cancelled call');
      expect(answer.result).toMatchObject({ isError: true, structuredContent: { content: expect.stringMatching(/interrupted/) } });
      const threadId = threadIdOf(answer.result as Json);
      await waitFor(() => !alive(sleepPid) && !alive(shellPid), 'the cancelled command and its child to be gone');

      steps.push(say('back again'));
      const reply = await mcp.call('codex-reply', { threadId, prompt: 'next' });
      expect(reply.structuredContent).toEqual({ threadId, content: 'back again' });
      const items = inputItems(model.requests[model.requests.length - 1]!);
      expectEveryCallAnsweredInOrder(items);
      expect(functionCallOutputs(model.requests[model.requests.length - 1]!).map((o) => String(o.output))).toEqual([expect.stringMatching(/interrupted/)]);
      expect(model.requests).toHaveLength(2);
    });

    it('a reply queued behind a turn that is cancelled starts only once that turn has finished', async () => {
      mcp = await startInProcessMcp(home.path);
      const threadId = await startThread(mcp);
      const pidFile = join(work.path, 'sleep.pid');
      steps.push(exec('sleep 300 & echo $! > sleep.pid; wait', { yield_time_ms: 30_000 }), say('queued reply ran'));
      const controller = new AbortController();
      const first = mcp.call('codex-reply', { threadId, prompt: 'block forever' }, { signal: controller.signal });
      const rejected = expect(first).rejects.toBeDefined();
      await waitFor(async () => (await readFile(pidFile, 'utf8').catch(() => '')).trim().length > 0, 'the command to write its pid');
      const second = replyQueued(mcp, threadId, 'queued behind');
      await second.queued;
      controller.abort();
      await rejected;
      const result = await second.result;
      expect(result.structuredContent).toEqual({ threadId, content: 'queued reply ran' });

      // The queued turn saw the cancelled turn complete: its call answered before the new prompt.
      const items = inputItems(model.requests[model.requests.length - 1]!);
      expectEveryCallAnsweredInOrder(items);
      // And the store shows the turns one after the other, never overlapping: every item is
      // recorded between its own turn's start and completion.
      const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
      const all = (await storedRecords(home.path, threadId)).map((r) => ({ type: text(r.type), turnId: text(r.turnId), status: text(r.status) }));
      let open: string | undefined;
      const misplaced: string[] = [];
      for (const record of all) {
        if (record.type === 'turn_started') {
          if (open !== undefined) misplaced.push(`turn ${record.turnId} started while turn ${open} was still open`);
          open = record.turnId;
        } else if (record.type === 'turn_completed') {
          if (record.turnId !== open) misplaced.push(`turn ${record.turnId} completed while turn ${open} was open`);
          open = undefined;
        } else if (record.type === 'item' && record.turnId !== open) {
          misplaced.push(`an item of turn ${record.turnId} was recorded while turn ${open} was open`);
        }
      }
      expect(misplaced).toEqual([]);
      expect(all.filter((r) => r.type === 'turn_completed').map((r) => r.status)).toEqual(['completed', 'interrupted', 'completed']);
      // The cancelled call reports its own turn, which said nothing (not the previous turn's message).
      const cancelled = await answerTo(mcp, callIdOf(mcp, 'block forever'), 'the answer to the cancelled call');
      expect(cancelled.result).toMatchObject({ isError: true, structuredContent: { threadId, content: 'The turn was interrupted.' } });
    });

    it("a cancel sent by the client's own request time-out ends the call, not the turn: the turn completes, codex-status shows its result, codex-reply continues", async () => {
      mcp = await startInProcessMcp(home.path);
      const release = gate();
      steps.push(hold(release.promise, say('finished after the client gave up')));
      // The real SDK client with a short RequestOptions.timeout, far below the server's wait budget
      // (50 s): its timer fires while the fake model holds the turn, and it sends
      // notifications/cancelled with reason "McpError: MCP error -32001: Request timed out".
      const call = mcp.client.callTool({ name: 'codex', arguments: { prompt: 'a slow task', cwd: work.path } }, undefined, { timeout: 1_000 });
      await expect(call).rejects.toMatchObject({ code: ErrorCode.RequestTimeout });
      const id = callIdOf(mcp, 'a slow task');
      expect(mcp.sent).toContainEqual(
        expect.objectContaining({ method: 'notifications/cancelled', params: { requestId: id, reason: expect.stringMatching(/-32001.*timed out/) } }),
      );

      // The server still answers the abandoned call (the SDK client drops it) with the thread and
      // status "running", the answer a spent wait budget gives.
      const answer = await answerTo(mcp, id, 'the answer to the timed-out call');
      expect(answer.result).toMatchObject({ structuredContent: { threadId: expect.any(String), status: 'running', turnId: expect.any(String) } });
      expect((answer.result as Json).isError).toBeUndefined();
      const threadId = threadIdOf(answer.result as Json);

      // A client that timed out finds its thread and the running turn with thread/list.
      const listed = await mcp.call('thread/list', {});
      expect((listed.structuredContent as { threads: unknown[] }).threads).toContainEqual(
        expect.objectContaining({ threadId, status: 'running', currentTurnId: (answer.result as { structuredContent: Json }).structuredContent.turnId, preview: 'a slow task' }),
      );
      await model.waitForRequests(1);
      release.open();

      const status = await mcp.call('codex-status', { threadId, waitMs: 30_000 });
      expect(status.structuredContent).toMatchObject({
        status: 'idle',
        lastAgentMessage: 'finished after the client gave up',
        lastTurn: { status: 'completed', lastAgentMessage: 'finished after the client gave up' },
      });

      steps.push(say('continued'));
      const reply = await mcp.call('codex-reply', { threadId, prompt: 'and then?' });
      expect(reply.structuredContent).toEqual({ threadId, content: 'continued' });
      expect(JSON.stringify(inputItems(model.requests[model.requests.length - 1]!))).toContain('finished after the client gave up');
      const records = await storedRecords(home.path, threadId);
      expect(records.filter((r) => r.type === 'turn_completed').map((r) => r.status)).toEqual(['completed', 'completed']);
    });

    it('withdraws a pending approval when the call is cancelled, and runs nothing', async () => {
      let asked!: () => void;
      const elicited = new Promise<void>((resolve) => (asked = resolve));
      mcp = await startInProcessMcp(home.path, {
        answer: () => {
          asked();
          return new Promise<never>(() => undefined);
        },
      });
      steps.push(exec('touch never.txt'));
      const controller = new AbortController();
      const call = mcp.call('codex', { prompt: 'ask me', cwd: work.path, 'approval-policy': 'untrusted' }, { signal: controller.signal });
      const rejected = expect(call).rejects.toBeDefined();
      await elicited;
      controller.abort();
      await rejected;
      const answer = await answerTo(mcp, callIdOf(mcp, 'ask me'), 'the answer to the cancelled call');
      expect(answer.result).toMatchObject({ isError: true, structuredContent: { content: expect.stringMatching(/interrupted/) } });
      const elicitation = mcp.received.find((m) => isRecord(m) && m.method === 'elicitation/create') as Json;
      expect(mcp.received).toContainEqual(expect.objectContaining({ method: 'notifications/cancelled', params: expect.objectContaining({ requestId: elicitation.id }) }));
      expect(existsSync(join(work.path, 'never.txt'))).toBe(false);
      expect(model.requests).toHaveLength(1);
    });
  });

  it('sends notifications/progress with increasing progress and short messages only when the call has a progress token', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(exec('echo progress-check'), say('quiet'));
    const quiet = await mcp.call('codex', { prompt: 'no token', cwd: work.path });
    expect(quiet.structuredContent).toMatchObject({ content: 'quiet' });
    expect(mcp.received.filter((m) => isRecord(m) && m.method === 'notifications/progress')).toEqual([]);

    const notes: unknown[] = [];
    steps.push(exec('echo progress-check'), say('reported'));
    const loud = await mcp.call('codex', { prompt: 'with token', cwd: work.path }, { onprogress: (p) => notes.push(p) });
    expect(loud.structuredContent).toMatchObject({ content: 'reported' });
    expect(notes.length).toBeGreaterThan(0);
    // Read the raw log: the SDK client handles notifications a microtask late and may drop the
    // last one when the response arrives in the same chunk.
    const token = callIdOf(mcp, 'with token');
    const raw = mcp.received
      .filter((m): m is Json => isRecord(m) && m.method === 'notifications/progress')
      .map((m) => m.params as { progressToken: unknown; progress: number; message?: string });
    expect(raw.length).toBeGreaterThanOrEqual(3);
    for (const [i, params] of raw.entries()) {
      expect(params.progressToken).toBe(token);
      if (i > 0) expect(params.progress).toBeGreaterThan(raw[i - 1]!.progress);
      expect(typeof params.message).toBe('string');
      expect(params.message!.length).toBeGreaterThan(0);
      expect(params.message!.length).toBeLessThanOrEqual(200);
    }
    expect(raw.map((p) => p.message)).toContainEqual(expect.stringContaining('echo progress-check'));
  });

  it('tells the caller the threadId as soon as the turn is accepted, before the model answers: first progress message, codex/event session_configured', async () => {
    mcp = await startInProcessMcp(home.path, { args: ['-c', 'multienv.codex_events=true'] });
    const release = gate();
    steps.push(hold(release.promise, say('done late')));
    const call = mcp.call('codex', { prompt: 'early id', cwd: work.path }, { onprogress: () => undefined });
    const harness = mcp;
    const firstProgress = (await harness.waitForReceived((m) => isRecord(m) && m.method === 'notifications/progress', 'the first progress notification')) as Json;
    const configured = (await harness.waitForReceived(
      (m) => isRecord(m) && m.method === 'codex/event' && isRecord(m.params) && isRecord(m.params.msg) && m.params.msg.type === 'session_configured',
      'codex/event session_configured',
    )) as Json;
    release.open();
    const threadId = threadIdOf(await call);
    expect(firstProgress.params).toMatchObject({ progress: 1, message: `turn started on thread ${threadId}` });
    expect(configured.params).toEqual({
      _meta: { requestId: callIdOf(mcp, 'early id'), threadId },
      id: '',
      msg: { type: 'session_configured', session_id: threadId, model: 'gpt-5.5' },
    });

    // A reply continues a thread the caller knows: no session_configured.
    steps.push(say('replied'));
    await mcp.call('codex-reply', { threadId, prompt: 'again' });
    const configuredEvents = mcp.received.filter(
      (m) => isRecord(m) && m.method === 'codex/event' && isRecord(m.params) && isRecord(m.params.msg) && m.params.msg.type === 'session_configured',
    );
    expect(configuredEvents).toHaveLength(1);
  });

  it('emits codex/event notifications (session_configured, task_started … task_complete) only with multienv.codex_events=true', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(exec('echo evented'), say('no events'));
    await mcp.call('codex', { prompt: 'events off', cwd: work.path });
    expect(mcp.received.filter((m) => isRecord(m) && m.method === 'codex/event')).toEqual([]);
    await mcp.close();

    mcp = await startInProcessMcp(home.path, { args: ['-c', 'multienv.codex_events=true'] });
    steps.push(exec('echo evented'), say('with events'));
    const result = await mcp.call('codex', { prompt: 'events on', cwd: work.path });
    const threadId = threadIdOf(result);
    const requestId = callIdOf(mcp, 'events on');
    const events = mcp.received.filter((m): m is Json => isRecord(m) && m.method === 'codex/event').map((m) => m.params as { _meta: Json; id: string; msg: { type: string } });
    expect(events.length).toBeGreaterThanOrEqual(3);
    for (const event of events) {
      expect(event._meta).toEqual({ requestId, threadId });
      expect(typeof event.id).toBe('string');
      expect(typeof event.msg.type).toBe('string');
    }
    const types = events.map((e) => e.msg.type);
    expect(types.slice(0, 2)).toEqual(['session_configured', 'task_started']);
    expect(types[types.length - 1]).toBe('task_complete');
    expect(events[events.length - 1]!.msg).toMatchObject({ last_agent_message: 'with events' });
    // The session event has id "" (as the old server's); the turn's events all carry the turn id.
    expect(events[0]!.id).toBe('');
    expect(new Set(events.slice(1).map((e) => e.id)).size).toBe(1);
  });

  it('reports a failed turn as an error with {threadId, content}, and the thread continues', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push({ kind: 'http-error', status: 500, body: { error: { message: 'the fake model is down', type: 'server_error', param: null, code: null } } });
    const failed = await mcp.call('codex', { prompt: 'this will fail', cwd: work.path });
    expect(failed.isError).toBe(true);
    const threadId = threadIdOf(failed);
    expect(failed.structuredContent).toEqual({ threadId, content: textOf(failed) });
    expect(textOf(failed)).toMatch(/failed/);
    expect(textOf(failed)).toMatch(/500|the fake model is down/);
    expect(model.requests).toHaveLength(1);

    steps.push(say('recovered'));
    const again = await mcp.call('codex-reply', { threadId, prompt: 'try again' });
    expect(again.isError).toBeFalsy();
    expect(again.structuredContent).toEqual({ threadId, content: 'recovered' });
    expect(JSON.stringify(inputItems(model.requests[1]!))).toContain('this will fail');
  });

  it('tells the model clearly when the turn has no environment, and completes', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(exec('echo where-am-i'), say('no environment then'));
    const result = await mcp.call('codex', { prompt: 'nowhere', cwd: work.path, environments: [] });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ content: 'no environment then' });
    const outputs = functionCallOutputs(model.requests[1]!).map((o) => String(o.output));
    expect(outputs).toEqual([expect.stringContaining('No usable execution environment')]);
  });

  it('answers an unknown tool and invalid JSON arguments with outputs saying so, and completes', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(
      {
        kind: 'output',
        items: [
          { type: 'function_call', name: 'no_such_tool', arguments: {}, callId: 'call-unknown' },
          { type: 'function_call', name: 'exec_command', arguments: '{"cmd": "echo hi"', callId: 'call-bad-json' },
        ],
      },
      say('noted'),
    );
    const result = await mcp.call('codex', { prompt: 'misbehave', cwd: work.path });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ content: 'noted' });
    const outputs = functionCallOutputs(model.requests[1]!);
    expect(outputs).toEqual([
      { callId: 'call-unknown', output: expect.stringMatching(/unknown tool `no_such_tool`/) },
      { callId: 'call-bad-json', output: expect.stringMatching(/invalid JSON arguments for exec_command/) },
    ]);
  });
});
