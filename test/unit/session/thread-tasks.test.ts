// Tasks as records of their thread (session/thread-tasks.ts) over the real JSON Lines store: the id
// names the thread and is checked strictly, the state is derived from the turn's records, a
// cancellation sticks, the time to live is capped and an expired task is not found; a task input
// (an approval) asked in one process is shown and answered in another sharing the threads, once,
// under a random key; a task whose turn nobody runs any more reads interrupted.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../helpers/process.js';
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
/** Whether another live owner has the thread. */
let elsewhere: boolean;
/** The threads whose owner was told of an answer. */
let announced: string[];

const turns: TaskTurns = {
  turnState: () => known,
  interrupt: (_threadId, turnId, reason) => {
    interrupted.push(`${turnId}: ${reason}`);
    return Promise.resolve(undefined);
  },
  heldElsewhere: () => Promise.resolve(elsewhere),
  announceAnswer: (threadId) => {
    announced.push(threadId);
    return Promise.resolve();
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
  elsewhere = true;
  announced = [];
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

  it('shows a task input asked in one process to another sharing the threads, which records the answer once and wakes the asker', async () => {
    const asker = tasks();
    const view = await asker.create({ threadId: THREAD, turnId: TURN, form: 'extension' });
    const request = { method: 'elicitation/create', params: { mode: 'form', message: 'Allow?' } };
    const asked = asker.ask(view.taskId, request, { timeoutMs: 60_000, signal: new AbortController().signal });
    // Another process (its own store on the same folder): the turn runs elsewhere.
    const otherStore = new JsonlThreadStore({ dir: join(tmp, 'threads'), now: () => clock });
    const other = new ThreadTasks({ store: otherStore, turns: { ...turns, turnState: () => undefined }, now: () => new Date(clock) });
    try {
      let shown: Record<string, unknown> = {};
      await waitFor(async () => Object.keys((shown = (await other.get(view.taskId)).inputRequests ?? {})).length === 1, 'the input to show in the other process');
      const [key] = Object.keys(shown);
      expect(key).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(shown[key!]).toEqual(request);
      // The other process may read the record from the file before the asker's own append has settled.
      await waitFor(async () => (await asker.get(view.taskId)).inputRequests?.[key!] !== undefined, 'the input to show in the asking process');
      expect((await asker.get(view.taskId)).inputRequests).toEqual({ [key!]: request });

      const answer = { action: 'accept', content: { decision: 'approve' } };
      expect(await other.answer(view.taskId, { [key!]: answer, 'not-asked': answer })).toEqual([key]);
      expect(announced).toEqual([THREAD]);
      // Answered once: a second answer (another client, a retry) is not recorded.
      expect(await other.answer(view.taskId, { [key!]: { action: 'decline' } })).toEqual([]);
      await asker.collectAnswers(THREAD);
      expect(await asked).toEqual({ kind: 'answered', response: answer });
      expect((await other.get(view.taskId)).inputRequests).toBeUndefined();
      expect((await asker.get(view.taskId)).inputRequests).toBeUndefined();
    } finally {
      await otherStore.close();
    }
  });

  it('makes task input keys random: a later input’s key cannot be told from an earlier one’s', async () => {
    const asker = tasks();
    const view = await asker.create({ threadId: THREAD, turnId: TURN, form: 'extension' });
    const stop = new AbortController();
    const request = { method: 'elicitation/create', params: { message: 'Allow?' } };
    const waits = [asker.ask(view.taskId, request, { timeoutMs: 60_000, signal: stop.signal }), asker.ask(view.taskId, request, { timeoutMs: 60_000, signal: stop.signal })];
    await waitFor(async () => Object.keys((await asker.get(view.taskId)).inputRequests ?? {}).length === 2, 'both inputs to be recorded');
    const keys = Object.keys((await asker.get(view.taskId)).inputRequests ?? {});
    for (const key of keys) expect(key).toMatch(/^[A-Za-z0-9_-]{22}$/);
    // No shared prefix beyond chance, unlike prefix + counter.
    expect(keys[0]!.slice(0, 8)).not.toBe(keys[1]!.slice(0, 8));
    stop.abort();
    expect(await Promise.all(waits)).toEqual([{ kind: 'aborted' }, { kind: 'aborted' }]);
  });

  it('denies an input at its deadline: it is no longer shown and an answer after it is ignored', async () => {
    const asker = tasks();
    const view = await asker.create({ threadId: THREAD, turnId: TURN, form: 'extension' });
    const asked = asker.ask(view.taskId, { method: 'elicitation/create', params: {} }, { timeoutMs: 1, signal: new AbortController().signal });
    expect(await asked).toEqual({ kind: 'expired' });
    known = undefined;
    clock += 1_000;
    const other = tasks();
    const records = (await store.load(THREAD))?.records ?? [];
    const input = records.find((r) => r.type === 'task_input');
    expect(input).toBeDefined();
    expect((await other.get(view.taskId)).inputRequests).toBeUndefined();
    expect(await other.answer(view.taskId, { [input?.type === 'task_input' ? input.key : '']: { action: 'accept', content: { decision: 'approve' } } })).toEqual([]);
  });

  it('reads a task whose turn nobody runs any more (no live owner, no end recorded) as interrupted, as loading the thread will record it', async () => {
    const view = await tasks().create({ threadId: THREAD, turnId: TURN, form: 'extension' });
    known = undefined;
    expect((await tasks().get(view.taskId)).state).toBe('working');
    elsewhere = false;
    const orphan = await tasks().get(view.taskId);
    expect(orphan).toMatchObject({ state: 'interrupted', turn: { status: 'interrupted', error: 'the server stopped during this turn' } });
    // Not a cancellation any more: its end is as final as a recorded one.
    expect((await tasks().cancel(view.taskId, 'late')).state).toBe('interrupted');
    expect(interrupted).toEqual([]);
  });
});
