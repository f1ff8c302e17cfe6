// MCP Tasks around approvals, end to end: our server composed in-process, the SDK client, the fake
// model. A task whose turn waits for an approval is `input_required` (MCP 2025-11-25 tasks), its
// elicitation names the task, and it is `working` again once answered. Turns and answers are held
// with gates, never with sleeps.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { CallToolResultSchema, CreateTaskResultSchema, RELATED_TASK_META_KEY, type CallToolResult, type Task } from '@modelcontextprotocol/sdk/types.js';
import { type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, type ElicitationAnswer, type McpHarness } from '../helpers/mcp.js';
import { waitFor } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';

/** An elicitation answer the test releases, and the requests that came in. */
interface HeldAnswer {
  answer: ElicitationAnswer;
  /** The params of each elicitation request, in order. */
  asked: Json[];
  /** Resolves when the first request has arrived. */
  first: Promise<Json>;
  /** Lets every request (already there or to come) be answered with `decision`. */
  release: () => void;
}

function heldAnswer(decision = 'approve'): HeldAnswer {
  const released = gate();
  const asked: Json[] = [];
  let arrived!: (params: Json) => void;
  const first = new Promise<Json>((resolve) => (arrived = resolve));
  return {
    asked,
    first,
    release: released.open,
    answer: async (params) => {
      asked.push(params);
      arrived(params);
      await released.promise;
      return { action: 'accept', content: { decision } };
    },
  };
}

describe('MCP Tasks and approvals', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  /** Opened in afterEach, so a failed test never leaves a turn or an answer held. */
  let gates: (() => void)[];

  beforeEach(async () => {
    steps = [];
    gates = [];
    ({ home, work, model } = await setUpMcpWorld('mcp-tasks', (_request: RecordedRequest) => steps.shift() ?? say('script exhausted')));
  });
  afterEach(async () => {
    for (const open of gates) open();
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
  });

  const held = (decision?: string): HeldAnswer => {
    const answer = heldAnswer(decision);
    gates.push(answer.release);
    return answer;
  };
  const heldGate = (): { promise: Promise<void>; open: () => void } => {
    const g = gate();
    gates.push(g.open);
    return g;
  };
  const createTask = async (harness: McpHarness, name: string, args: Json): Promise<string> => {
    const created = await harness.client.request({ method: 'tools/call', params: { name, arguments: args, task: { ttl: 600_000 } } }, CreateTaskResultSchema);
    return created.task.taskId;
  };
  const getTask = (harness: McpHarness, taskId: string): Promise<Task> => harness.client.experimental.tasks.getTask(taskId);
  const statusNotifications = (harness: McpHarness, taskId: string): Json[] =>
    harness.received
      .filter((m): m is Json => isRecord(m) && m.method === 'notifications/tasks/status' && isRecord(m.params) && m.params.taskId === taskId)
      .map((m) => m.params as Json);

  it('is input_required while its turn waits for an approval (saying what is asked), working again once answered, then completed', async () => {
    const approval = held();
    mcp = await startInProcessMcp(home.path, { answer: approval.answer });
    const release = heldGate();
    steps.push(exec('touch approved.txt'), hold(release.promise, say('approved and done')));
    const taskId = await createTask(mcp, 'codex', { prompt: 'ask first', cwd: work.path, 'approval-policy': 'untrusted' });

    const asked = await approval.first;
    expect(asked._meta).toEqual({ [RELATED_TASK_META_KEY]: { taskId } });
    const waiting = await getTask(mcp, taskId);
    expect(waiting.status).toBe('input_required');
    expect(waiting.statusMessage).toMatch(/^thread \S+, turn \S+: waiting for approval: Allow Codex to run /);
    // The shell is the server's $SHELL, or /bin/sh when it has none (as on CI).
    const shell = process.env.SHELL !== undefined && process.env.SHELL !== '' ? process.env.SHELL : '/bin/sh';
    expect(waiting.statusMessage).toContain(
      `\`${shell} -c 'touch approved.txt'\` in environment \`local\` with working directory \`${work.path}\`? Answer the elicitation/create request related to this task.`,
    );
    await waitFor(() => statusNotifications(mcp!, taskId).some((n) => n.status === 'input_required'), 'an input_required status notification');

    approval.release();
    await model.waitForRequests(2);
    const working = await getTask(mcp, taskId);
    expect(working.status).toBe('working');
    expect(working.statusMessage).toMatch(/^thread \S+, turn \S+: running, 2 model request\(s\), 1 tool call\(s\) done; latest: thinking \(step 2\)$/);
    expect(statusNotifications(mcp, taskId).map((n) => n.status)).toEqual(['input_required', 'working']);

    release.open();
    await waitFor(async () => (await getTask(mcp!, taskId)).status === 'completed', 'the task to complete');
    const result = await mcp.client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema);
    expect(result.structuredContent).toMatchObject({ content: 'approved and done' });
    expect((await getTask(mcp, taskId)).statusMessage).toMatch(/^thread \S+, turn \S+: completed$/);
    await access(join(work.path, 'approved.txt'));
    expect(approval.asked).toHaveLength(1);
  });

  it('lets the SDK client follow input_required with tasks/result and get the result once the approval is answered', async () => {
    const approval = held();
    mcp = await startInProcessMcp(home.path, { answer: approval.answer });
    steps.push(exec('touch streamed.txt'), say('streamed and done'));
    const statuses: string[] = [];
    let result: CallToolResult | undefined;
    const stream = mcp.client.experimental.tasks.callToolStream(
      { name: 'codex', arguments: { prompt: 'ask first', cwd: work.path, 'approval-policy': 'untrusted' } },
      CallToolResultSchema,
      {
        task: { ttl: 600_000 },
      },
    );
    for await (const message of stream) {
      if (message.type === 'taskStatus') {
        statuses.push(message.task.status);
        // The client's user answers once the client shows that the task needs input.
        if (message.task.status === 'input_required') approval.release();
      }
      if (message.type === 'result') result = message.result;
      if (message.type === 'error') throw message.error;
    }
    expect(statuses).toContain('input_required');
    expect(result?.structuredContent).toMatchObject({ content: 'streamed and done' });
    await access(join(work.path, 'streamed.txt'));
  });

  it('tasks/cancel during an approval cancels the elicitation and interrupts the turn; the task stays cancelled', async () => {
    const approval = held();
    mcp = await startInProcessMcp(home.path, { answer: approval.answer });
    steps.push(exec('touch never.txt'), say('never said'));
    const taskId = await createTask(mcp, 'codex', { prompt: 'ask, then be cancelled', cwd: work.path, 'approval-policy': 'untrusted' });
    await approval.first;
    const threadId = /^thread (\S+),/.exec((await getTask(mcp, taskId)).statusMessage ?? '')?.[1] ?? '';
    expect(threadId).not.toBe('');

    await mcp.client.experimental.tasks.cancelTask(taskId);
    await mcp.waitForReceived((m) => isRecord(m) && m.method === 'notifications/cancelled', 'the elicitation to be cancelled');
    const status = await mcp.call('codex-status', { threadId, waitMs: 60_000 });
    expect(status.structuredContent).toMatchObject({ status: 'idle', lastTurn: { status: 'interrupted' } });
    const cancelled = await getTask(mcp, taskId);
    expect(cancelled.status).toBe('cancelled');
    await expect(access(join(work.path, 'never.txt'))).rejects.toThrow();
    expect(model.requests).toHaveLength(1);
  });

  it('refuses a task call whose turn cannot start, saying why (no task is made)', async () => {
    mcp = await startInProcessMcp(home.path);
    await expect(createTask(mcp, 'codex-reply', { threadId: 'no-such-thread', prompt: 'x' })).rejects.toThrow(/Session not found.*no-such-thread/);
  });

  it('keeps the task with its thread: after a restart on the same threads, tasks/get and tasks/result give the stored result', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(say('kept across the restart'));
    const taskId = await createTask(mcp, 'codex', { prompt: 'remember me', cwd: work.path });
    await waitFor(async () => (await getTask(mcp!, taskId)).status === 'completed', 'the task to complete');
    const before = await getTask(mcp, taskId);
    await mcp.close();

    mcp = await startInProcessMcp(home.path);
    const after = await getTask(mcp, taskId);
    expect(after).toMatchObject({ taskId, status: 'completed', createdAt: before.createdAt, ttl: 600_000 });
    expect(after.statusMessage).toMatch(/^thread \S+, turn \S+: completed$/);
    const result = await mcp.client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema);
    expect(result.structuredContent).toMatchObject({ content: 'kept across the restart' });
    expect(result.isError).toBeFalsy();
  });

  it('answers bad task ids with a clear error: not an id of this server, or no such task in its thread', async () => {
    mcp = await startInProcessMcp(home.path);
    await expect(getTask(mcp, 'not-a-task')).rejects.toThrow(/task "not-a-task" is not a task id of this server/);
    await expect(getTask(mcp, `task.no-such-thread.${'A'.repeat(22)}`)).rejects.toThrow(/does not exist/);
    steps.push(say('done'));
    const taskId = await createTask(mcp, 'codex', { prompt: 'a real one', cwd: work.path });
    // The same thread, other random bits: unguessable from the thread id.
    const forged = taskId.replace(/\.[A-Za-z0-9_-]{22}$/, `.${'B'.repeat(22)}`);
    await expect(getTask(mcp, forged)).rejects.toThrow(/does not exist/);
    await expect(mcp.client.experimental.tasks.cancelTask(forged)).rejects.toThrow(/does not exist/);
    await expect(mcp.client.experimental.tasks.listTasks()).rejects.toThrow(/tasks\/list is not offered/);
  });
});
