// Tasks as records of their thread (session/thread-tasks.ts) over the real JSON Lines store: the id
// names the thread and is checked strictly, the state is derived from the turn's records, a
// cancellation sticks, the time to live is capped and an expired task is not found.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonlThreadStore } from '../../../src/session/jsonl-thread-store.js';
import { MAX_TASK_TTL_MS, TaskNotFoundError, ThreadTasks, threadOfTask, type KnownTurn, type TaskTurns } from '../../../src/session/thread-tasks.js';

const THREAD = 'thread-1';
const TURN = 'turn-1';
const START = Date.parse('2026-01-02T03:04:05.000Z');

let tmp: string;
let store: JsonlThreadStore;
let clock: number;
let interrupted: string[];
/** What the "process" knows of the turn; undefined: only the store can say. */
let known: KnownTurn;

const turns: TaskTurns = {
  turnState: () => known,
  interrupt: (_threadId, turnId, reason) => {
    interrupted.push(`${turnId}: ${reason}`);
    return Promise.resolve(undefined);
  },
};
const tasks = (): ThreadTasks => new ThreadTasks({ store, turns, now: () => new Date(clock) });
const completed = (status: 'completed' | 'interrupted' = 'completed') =>
  store.append(THREAD, { type: 'turn_completed', at: new Date(clock).toISOString(), turnId: TURN, status, lastAgentMessage: 'the answer' });

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'thread-tasks-'));
  store = new JsonlThreadStore({ dir: join(tmp, 'threads'), now: () => clock });
  clock = START;
  interrupted = [];
  known = { state: 'live' };
  await store.create({
    threadId: THREAD,
    createdAt: new Date(START).toISOString(),
    config: { model: 'm', modelProvider: 'p', approvalPolicy: 'never', sandbox: 'workspace-write', cwd: '/work', configOverrides: {} },
    environments: [{ id: 'local', cwd: '/work' }],
  });
  await store.append(THREAD, { type: 'turn_started', turnId: TURN, prompt: 'hello', environments: [{ id: 'local', cwd: '/work' }] });
});
afterEach(async () => {
  await store.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('ThreadTasks', () => {
  it('makes an id that names its thread, and refuses ids of any other form saying what is expected', async () => {
    const view = await tasks().create({ threadId: THREAD, turnId: TURN, form: 'extension' });
    expect(threadOfTask(view.taskId)).toBe(THREAD);
    for (const bad of ['', 'task.thread-1', `task.../x.${'A'.repeat(22)}`, `task.${THREAD}.${'A'.repeat(21)}`, `${view.taskId}x`]) {
      expect(() => threadOfTask(bad)).toThrow(TaskNotFoundError);
      expect(() => threadOfTask(bad)).toThrow(/is not a task id of this server \(expected task\.<threadId>\.<22 random characters>\)/);
    }
  });

  it('is working while the turn runs, then reads how it ended from the records (in a process that never ran it too)', async () => {
    const view = await tasks().create({ threadId: THREAD, turnId: TURN, form: '2025-11-25' });
    expect(view.state).toBe('working');
    await completed();
    known = undefined;
    const later = await tasks().get(view.taskId);
    expect(later).toMatchObject({ state: 'completed', turn: { status: 'completed', lastAgentMessage: 'the answer' }, form: '2025-11-25' });
  });

  it('stays cancelled however the turn then ends, and interrupts the turn once', async () => {
    const owner = tasks();
    const view = await owner.create({ threadId: THREAD, turnId: TURN, form: 'extension' });
    expect(await owner.cancel(view.taskId, 'stop')).toMatchObject({ state: 'cancelled', cancelReason: 'stop' });
    await owner.cancel(view.taskId, 'again');
    expect(interrupted).toEqual([`${TURN}: stop`]);
    await completed('completed');
    known = undefined;
    expect((await tasks().get(view.taskId)).state).toBe('cancelled');
  });

  it('keeps the state of a task whose turn ended before the cancellation', async () => {
    const owner = tasks();
    const view = await owner.create({ threadId: THREAD, turnId: TURN, form: 'extension' });
    await completed();
    known = undefined;
    expect((await owner.cancel(view.taskId, 'too late')).state).toBe('completed');
    expect(interrupted).toEqual([]);
  });

  it('caps the time to live, and an expired task is not found', async () => {
    const owner = tasks();
    const view = await owner.create({ threadId: THREAD, turnId: TURN, form: 'extension', ttlMs: 10 * MAX_TASK_TTL_MS });
    expect(view.ttlMs).toBe(MAX_TASK_TTL_MS);
    clock += MAX_TASK_TTL_MS;
    await expect(owner.get(view.taskId)).rejects.toThrow(/expired/);
    await expect(tasks().get(view.taskId)).rejects.toThrow(TaskNotFoundError);
  });
});
