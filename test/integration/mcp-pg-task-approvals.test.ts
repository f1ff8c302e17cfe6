// A task's approvals across instances on one PostgreSQL database (issues 16 + 17): two built
// `codex-multienv serve` processes on loopback HTTP share a throwaway cluster, driven by raw
// 2026-07-28 requests with the tasks extension (the SDK v2 client refuses `resultType: "task"`).
// A task started on A that waits for an approval reads `input_required` on B with the same input
// request; `tasks/update` on B reaches A (through NOTIFY) and A applies it with the usual rules;
// a task whose instance was killed reads interrupted on B once that instance's lease has expired.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { waitFor, type ListeningProcess } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';
import { modernHttpRequest } from '../helpers/modern-http.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';
import { startServeInstance, useSharedCluster } from '../helpers/pg-instances.js';

/** The lease length of these instances: short, so a dead owner's task ends soon. */
const LEASE_SEC = 2;
const TASKS = 'io.modelcontextprotocol/tasks';
const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} }, extensions: { [TASKS]: {} } },
  'io.modelcontextprotocol/clientInfo': { name: 'pg-task-approvals-test', version: '1.0.0' },
};

const shared = useSharedCluster('cmx-pg-task-approvals-');
let requestIds = 0;

/** One modern request to `server`; resolves with its result, throws on an error answer. */
async function request(server: ListeningProcess, method: string, params: Json): Promise<Json> {
  requestIds += 1;
  const answer = await modernHttpRequest(server.url, requestIds, method, params, META);
  if (!isRecord(answer.result)) throw new Error(`${method}: expected a result, got ${JSON.stringify(answer).slice(0, 500)}`);
  return answer.result;
}

describe('task approvals across serve instances on one PostgreSQL database', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let url: string;
  const servers: ListeningProcess[] = [];
  const gates: (() => void)[] = [];

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-pg-task-approvals', () => steps.shift() ?? say('script exhausted'));
    url = await shared.freshDatabase('task_approvals');
  });
  afterEach(async () => {
    for (const open of gates.splice(0)) open();
    for (const server of servers.splice(0)) await server.stop();
    await tearDownMcpWorld(world, undefined);
  });

  async function instance(): Promise<ListeningProcess> {
    const server = await startServeInstance(world, url, ['-c', `multienv.lease_sec=${LEASE_SEC}`]);
    servers.push(server);
    return server;
  }

  const getTask = (server: ListeningProcess, taskId: string): Promise<Json> => request(server, 'tasks/get', { taskId });
  const until = async (server: ListeningProcess, taskId: string, status: string): Promise<Json> => {
    let task: Json = {};
    await waitFor(async () => (task = await getTask(server, taskId)).status === status, `task ${taskId} to be ${status}`, 60_000);
    return task;
  };
  const inputKeys = (task: Json): string[] => Object.keys(isRecord(task.inputRequests) ? task.inputRequests : {});
  const startTask = async (server: ListeningProcess, prompt: string): Promise<string> => {
    const created = await request(server, 'tools/call', { name: 'codex', arguments: { prompt, cwd: world.work.path, 'approval-policy': 'untrusted' } });
    expect(created).toMatchObject({ resultType: 'task', status: 'working' });
    return String(created.taskId);
  };

  it('shows the approval of a task running on A on B; tasks/update approving on B runs the command on A', async () => {
    const [a, b] = [await instance(), await instance()];
    steps.push(exec('touch approved-on-b.txt', {}, 'call-touch'), say('ran after B approved'));
    const taskId = await startTask(a, 'ask, then run');
    const onB = await until(b, taskId, 'input_required');
    const [key] = inputKeys(onB);
    expect(key).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(onB.inputRequests).toEqual((await getTask(a, taskId)).inputRequests);
    expect(isRecord(onB.inputRequests) && onB.inputRequests[key!]).toMatchObject({
      method: 'elicitation/create',
      params: { mode: 'form', message: expect.stringContaining('touch approved-on-b.txt') },
    });

    expect(await request(b, 'tasks/update', { taskId, inputResponses: { [key!]: { action: 'accept', content: { decision: 'approve' } } } })).toMatchObject({
      resultType: 'complete',
    });
    const done = await until(b, taskId, 'completed');
    expect(done.result).toMatchObject({ structuredContent: { content: 'ran after B approved' } });
    expect(existsSync(join(world.work.path, 'approved-on-b.txt'))).toBe(true);
  });

  it('takes a decline given on B as a denial, and answers a key once: a later approval on B is not answered by a replay', async () => {
    const [a, b] = [await instance(), await instance()];
    steps.push(exec('touch declined.txt', {}, 'call-1'), exec('touch replayed.txt', {}, 'call-2'), say('nothing ran'));
    const taskId = await startTask(a, 'ask twice');
    const first = inputKeys(await until(b, taskId, 'input_required'));
    await request(b, 'tasks/update', { taskId, inputResponses: { [first[0]!]: { action: 'decline' } } });
    let second: string[] = [];
    await waitFor(async () => (second = inputKeys(await getTask(b, taskId)).filter((key) => !first.includes(key))).length > 0, 'the second approval on B', 60_000);
    // The approval given for the first key, sent again: the second approval has another key, so it is not answered.
    await request(b, 'tasks/update', { taskId, inputResponses: { [first[0]!]: { action: 'accept', content: { decision: 'approve' } } } });
    expect(inputKeys(await getTask(a, taskId))).toEqual(second);
    await request(a, 'tasks/update', { taskId, inputResponses: { [second[0]!]: { action: 'cancel' } } });
    const done = await until(b, taskId, 'completed');
    expect(done.result).toMatchObject({ structuredContent: { content: 'nothing ran' } });
    expect(JSON.stringify(world.model.requests[1]?.body)).toContain('the user declined');
    expect(existsSync(join(world.work.path, 'declined.txt'))).toBe(false);
    expect(existsSync(join(world.work.path, 'replayed.txt'))).toBe(false);
  });

  it('reads a task whose instance was killed (SIGKILL) as interrupted on B once its lease expired, without a reload of its thread', async () => {
    const [a, b] = [await instance(), await instance()];
    const never = gate();
    gates.push(never.open);
    steps.push(hold(never.promise, say('never said')));
    const created = await request(a, 'tools/call', { name: 'codex', arguments: { prompt: 'owner dies', cwd: world.work.path } });
    const taskId = String(created.taskId);
    await waitFor(() => world.model.requests.length === 1, "A's turn to reach the model");
    expect((await getTask(b, taskId)).status).toBe('working');
    a.child.kill('SIGKILL');
    const ended = await until(b, taskId, 'completed');
    expect(ended.result).toMatchObject({ isError: true, content: [{ type: 'text', text: expect.stringContaining('The turn was interrupted') }] });
    expect(ended.statusMessage).toEqual(expect.stringContaining('interrupted: the server stopped during this turn'));
  });
});
