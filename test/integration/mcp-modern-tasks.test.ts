// The tasks extension (`io.modelcontextprotocol/tasks`) of the modern MCP era, end to end over raw
// JSON-RPC lines against our built server (the SDK v2 client 2.4.0 refuses a `resultType: "task"`
// answer, so it cannot drive this): a call becomes a task, tasks/get follows it to its result,
// approvals are input requests answered with tasks/update, tasks/cancel interrupts the turn, and a
// second server process on the same threads reads the task, shows its approvals and takes their
// answers (tasks/update there reaches the process that asked), and reads a task whose process was
// killed as interrupted; and, for a client without the
// extension, an approval nobody brings back is denied in time. Turns are held with gates, never sleeps.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setUpMcpWorld, storedRecords, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, waitFor } from '../helpers/process.js';
import { rawStdio, type RawPeer } from '../helpers/raw-peer.js';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';

const MODERN = '2026-07-28';
const TASKS = 'io.modelcontextprotocol/tasks';

/** `_meta` of a modern request from a client that takes tasks (and shows forms, unless told otherwise). */
const meta = (capabilities: Json = { elicitation: { form: {} }, extensions: { [TASKS]: {} } }): Json => ({
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientCapabilities': capabilities,
  'io.modelcontextprotocol/clientInfo': { name: 'raw-tasks-test', version: '1.0.0' },
});

const serverEnv = (world: McpTestWorld): Record<string, string> => ({
  ...(networkEnv(process.env) as Record<string, string>),
  CODEX_HOME: world.home.path,
  FAKE_MODEL_API_KEY: 'test-key',
  HOME: world.home.path,
  SHELL: '/bin/sh',
});

/** A raw modern peer that pairs each request with its answer (skipping notifications). */
interface Peer {
  raw: RawPeer;
  request(method: string, params: Json, timeoutMs?: number): Promise<Json>;
}

/** A server process and a raw peer on it; `capabilities` are those its requests declare, `args` the server's command line. */
function peer(world: McpTestWorld, capabilities?: Json, args: string[] = []): Peer {
  const raw = rawStdio(process.execPath, [CLI, ...args], serverEnv(world));
  let id = 0;
  return {
    raw,
    request: async (method, params, timeoutMs) => {
      id += 1;
      const mine = id;
      raw.send(JSON.stringify({ jsonrpc: '2.0', id: mine, method, params: { _meta: meta(capabilities), ...params } }));
      for (;;) {
        const message = await raw.next(timeoutMs);
        if (message.id === mine) return message;
      }
    },
  };
}

const resultOf = (message: Json): Json => {
  if (!isRecord(message.result)) throw new Error(`expected a result, got ${JSON.stringify(message)}`);
  return message.result;
};

describe('the tasks extension of the modern MCP era', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let peers: Peer[];
  let gates: (() => void)[];

  beforeEach(async () => {
    steps = [];
    peers = [];
    gates = [];
    world = await setUpMcpWorld('mcp-modern-tasks', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    for (const open of gates) open();
    for (const { raw } of peers) await raw.close();
    await tearDownMcpWorld(world, undefined);
  });

  const start = (capabilities?: Json, args?: string[]): Peer => {
    const started = peer(world, capabilities, args);
    peers.push(started);
    return started;
  };
  const heldGate = (): { promise: Promise<void>; open: () => void } => {
    const g = gate();
    gates.push(g.open);
    return g;
  };
  const call = async (p: Peer, name: string, args: Json): Promise<Json> => resultOf(await p.request('tools/call', { name, arguments: args }));
  const getTask = async (p: Peer, taskId: string): Promise<Json> => resultOf(await p.request('tasks/get', { taskId }));
  const until = async (p: Peer, taskId: string, status: string): Promise<Json> => {
    let task: Json = {};
    await waitFor(async () => (task = await getTask(p, taskId)).status === status, `task ${taskId} to be ${status}`, 60_000);
    return task;
  };

  it('answers a call with a task, advertised in server/discover; tasks/get follows it to its {threadId, content} result', async () => {
    const p = start();
    const discover = resultOf(await p.request('server/discover', {}));
    expect(discover.capabilities).toEqual({ tools: { listChanged: false }, logging: {}, extensions: { [TASKS]: {} } });

    const release = heldGate();
    steps.push(hold(release.promise, say('task done')));
    const created = await call(p, 'codex', { prompt: 'as a task', cwd: world.work.path });
    expect(created).toMatchObject({ resultType: 'task', status: 'working', ttlMs: 3_600_000, pollIntervalMs: expect.any(Number), createdAt: expect.any(String) });
    const taskId = String(created.taskId);
    expect(taskId).toMatch(/^task\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);

    const working = await getTask(p, taskId);
    expect(working).toMatchObject({ resultType: 'complete', taskId, status: 'working', statusMessage: expect.stringMatching(/^thread \S+, turn \S+: /) });
    release.open();
    const done = await until(p, taskId, 'completed');
    const threadId = /^thread (\S+),/.exec(String(done.statusMessage))?.[1];
    expect(done.result).toEqual({ content: [{ type: 'text', text: 'task done' }], structuredContent: { threadId, content: 'task done' } });

    // codex-reply on the same thread is a task too.
    steps.push(say('reply done'));
    const reply = await call(p, 'codex-reply', { threadId, prompt: 'again' });
    expect(reply.resultType).toBe('task');
    expect((await until(p, String(reply.taskId), 'completed')).result).toMatchObject({ structuredContent: { threadId, content: 'reply done' } });
  });

  it('asks an approval as an input request; tasks/update approving runs the command', async () => {
    const p = start();
    steps.push(exec('touch approved.txt', {}, 'call-touch'), say('approved and done'));
    const created = await call(p, 'codex', { prompt: 'ask first', cwd: world.work.path, 'approval-policy': 'untrusted' });
    const taskId = String(created.taskId);
    const waiting = await until(p, taskId, 'input_required');
    const inputRequests = isRecord(waiting.inputRequests) ? waiting.inputRequests : {};
    const [key] = Object.keys(inputRequests);
    expect(inputRequests[key!]).toMatchObject({ method: 'elicitation/create', params: { mode: 'form', message: expect.stringContaining('touch approved.txt') } });
    expect(waiting.statusMessage).toEqual(expect.stringContaining('waiting for approval'));

    expect(resultOf(await p.request('tasks/update', { taskId, inputResponses: { [key!]: { action: 'accept', content: { decision: 'approve' } } } }))).toEqual({
      resultType: 'complete',
      _meta: expect.any(Object),
    });
    const done = await until(p, taskId, 'completed');
    expect(done.result).toMatchObject({ structuredContent: { content: 'approved and done' } });
    expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(true);
  });

  it('takes anything but a clear approval as a denial: the command does not run', async () => {
    const p = start();
    steps.push(exec('touch denied.txt', {}, 'call-touch'), say('gave up'));
    const taskId = String((await call(p, 'codex', { prompt: 'ask first', cwd: world.work.path, 'approval-policy': 'untrusted' })).taskId);
    const waiting = await until(p, taskId, 'input_required');
    const [key] = Object.keys(isRecord(waiting.inputRequests) ? waiting.inputRequests : {});
    await p.request('tasks/update', { taskId, inputResponses: { [key!]: 'yes please', 'never-issued': { action: 'accept', content: { decision: 'approve' } } } });
    const done = await until(p, taskId, 'completed');
    expect(done.result).toMatchObject({ structuredContent: { content: 'gave up' } });
    expect(existsSync(join(world.work.path, 'denied.txt'))).toBe(false);
  });

  it('tasks/cancel interrupts the turn; the task reads cancelled and the turn is recorded interrupted', async () => {
    const p = start();
    const release = heldGate();
    steps.push(hold(release.promise, say('never read')));
    const taskId = String((await call(p, 'codex', { prompt: 'to be cancelled', cwd: world.work.path })).taskId);
    await world.model.waitForRequests(1);
    const threadId = /^thread (\S+),/.exec(String((await getTask(p, taskId)).statusMessage))?.[1] ?? '';
    expect(resultOf(await p.request('tasks/cancel', { taskId }))).toEqual({ resultType: 'complete', _meta: expect.any(Object) });
    const status = await call(p, 'codex-status', { threadId, waitMs: 60_000 });
    expect(status.structuredContent).toMatchObject({ status: 'idle', lastTurn: { status: 'interrupted' } });
    const cancelled = await getTask(p, taskId);
    expect(cancelled).toMatchObject({ status: 'cancelled', statusMessage: expect.stringContaining('cancelled: the client cancelled the task') });
    const records = await storedRecords(world.home.path, threadId);
    expect(records.map((r) => r.type)).toEqual(expect.arrayContaining(['task', 'task_cancelled', 'turn_completed']));
  });

  it('lets a second server process on the same threads read the task, and its result once the turn ended', async () => {
    const a = start();
    const b = start();
    const release = heldGate();
    steps.push(hold(release.promise, say('made in A')));
    const taskId = String((await call(a, 'codex', { prompt: 'in process A', cwd: world.work.path })).taskId);
    await world.model.waitForRequests(1);
    expect(await getTask(b, taskId)).toMatchObject({ taskId, status: 'working', statusMessage: expect.stringContaining('in another server process') });
    release.open();
    const done = await until(b, taskId, 'completed');
    expect(done.result).toMatchObject({ structuredContent: { content: 'made in A' } });
  });

  it('shows a task’s approval on another process sharing the threads; tasks/update there answers it and the command runs where the turn does', async () => {
    const a = start();
    const b = start();
    steps.push(exec('touch from-b.txt', {}, 'call-touch'), say('approved from B'));
    const taskId = String((await call(a, 'codex', { prompt: 'ask first', cwd: world.work.path, 'approval-policy': 'untrusted' })).taskId);
    const onB = await until(b, taskId, 'input_required');
    const inputRequests = isRecord(onB.inputRequests) ? onB.inputRequests : {};
    const [key] = Object.keys(inputRequests);
    expect(key).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(inputRequests[key!]).toMatchObject({ method: 'elicitation/create', params: { mode: 'form', message: expect.stringContaining('touch from-b.txt') } });
    expect(onB.statusMessage).toEqual(expect.stringContaining('waiting for approval (in another server process)'));
    expect((await getTask(a, taskId)).inputRequests).toEqual(onB.inputRequests);

    await b.request('tasks/update', { taskId, inputResponses: { [key!]: { action: 'accept', content: { decision: 'approve' } } } });
    const done = await until(b, taskId, 'completed');
    expect(done.result).toMatchObject({ structuredContent: { content: 'approved from B' } });
    expect(existsSync(join(world.work.path, 'from-b.txt'))).toBe(true);
  });

  it('takes a garbled or declined answer given on another process as a denial: the commands do not run', async () => {
    const a = start();
    const b = start();
    steps.push(exec('touch garbled.txt', {}, 'call-1'), exec('touch declined.txt', {}, 'call-2'), say('gave up'));
    const taskId = String((await call(a, 'codex', { prompt: 'ask twice', cwd: world.work.path, 'approval-policy': 'untrusted' })).taskId);
    const answers = [{ action: 'accept', content: { decision: 'approve', extra: 1 } }, { action: 'decline' }];
    const seen: string[] = [];
    for (const answer of answers) {
      let key: string | undefined;
      await waitFor(
        async () => {
          const task = await getTask(b, taskId);
          key = Object.keys(isRecord(task.inputRequests) ? task.inputRequests : {}).find((k) => !seen.includes(k));
          return key !== undefined;
        },
        'the next approval on B',
        60_000,
      );
      seen.push(key!);
      await b.request('tasks/update', { taskId, inputResponses: { [key!]: answer } });
    }
    const done = await until(a, taskId, 'completed');
    expect(done.result).toMatchObject({ structuredContent: { content: 'gave up' } });
    expect(JSON.stringify(world.model.requests[1]?.body)).toContain('not a clear choice');
    expect(JSON.stringify(world.model.requests[2]?.body)).toContain('the user declined');
    expect(existsSync(join(world.work.path, 'garbled.txt'))).toBe(false);
    expect(existsSync(join(world.work.path, 'declined.txt'))).toBe(false);
  });

  it('reads a task whose server process was killed (SIGKILL) mid-turn as ended from another process, without loading its thread', async () => {
    const a = start();
    const b = start();
    const release = heldGate();
    steps.push(hold(release.promise, say('never said')));
    const taskId = String((await call(a, 'codex', { prompt: 'then die', cwd: world.work.path })).taskId);
    await world.model.waitForRequests(1);
    const working = await getTask(b, taskId);
    expect(working.status).toBe('working');
    // The process that runs the turn (the worker behind the relay) is the one holding the thread's lease.
    const threadId = /^thread (\S+),/.exec(String(working.statusMessage))?.[1] ?? '';
    const lease = JSON.parse(await readFile(join(world.home.path, 'multienv', 'threads', `${threadId}.lease`), 'utf8')) as { pid: number };
    process.kill(lease.pid, 'SIGKILL');
    const ended = await until(b, taskId, 'completed');
    expect(ended).toMatchObject({ status: 'completed', result: { isError: true, content: [{ type: 'text', text: expect.stringContaining('The turn was interrupted') }] } });
    expect(ended.statusMessage).toEqual(expect.stringContaining('interrupted: the server stopped during this turn'));
  });

  it('without the extension: an approval raised after the call was answered, with no call on the thread to bring it back, is denied in time', async () => {
    const p = start({ elicitation: { form: {} } }, ['-c', 'multienv.approval_timeout_sec=0.5']);
    const release = heldGate();
    steps.push(hold(release.promise, exec('touch never.txt', {}, 'call-never')), say('denied, went on'));
    const early = await call(p, 'codex', { prompt: 'slow', cwd: world.work.path, 'approval-policy': 'untrusted', waitMs: 0 });
    expect(early).toMatchObject({ resultType: 'complete', structuredContent: { status: 'running' } });
    const threadId = String(isRecord(early.structuredContent) && early.structuredContent.threadId);
    release.open();
    // Nothing asks on the thread until the turn has ended: the approval timed out, a denial.
    await world.model.waitForRequests(2, 60_000);
    const status = await call(p, 'codex-status', { threadId, waitMs: 60_000 });
    expect(status.structuredContent).toMatchObject({ status: 'idle', lastTurn: { status: 'completed' } });
    expect(JSON.stringify(world.model.requests[1]?.body)).toContain('no answer to the approval request');
    expect(existsSync(join(world.work.path, 'never.txt'))).toBe(false);
  });

  it('answers bad task ids and clients without the extension with clear errors', async () => {
    const p = start();
    expect((await p.request('tasks/get', { taskId: 'nope' })).error).toEqual({ code: -32602, message: expect.stringContaining('"nope" is not a task id of this server') });
    expect((await p.request('tasks/get', { taskId: `task.no-such-thread.${'A'.repeat(22)}` })).error).toEqual({
      code: -32602,
      message: expect.stringContaining('does not exist'),
    });
    expect((await p.request('tasks/cancel', { taskId: 42 })).error).toEqual({ code: -32602, message: expect.stringContaining('invalid tasks/cancel params') });
    expect((await p.request('tasks/update', { taskId: 'nope' })).error).toEqual({ code: -32602, message: expect.stringContaining('invalid tasks/update params') });

    const without = JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tasks/get', params: { _meta: meta({}), taskId: 'nope' } });
    p.raw.send(without);
    let answer: Json;
    do answer = await p.raw.next();
    while (answer.id !== 99);
    expect(answer.error).toEqual({ code: -32021, message: expect.stringContaining(TASKS), data: { requiredCapabilities: { extensions: { [TASKS]: {} } } } });
  });
});
