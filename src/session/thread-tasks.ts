import { randomBytes } from 'node:crypto';
import type { FinishedTurn } from '../protocol/status.js';
import { TASK_ID_PATTERN, type TaskCancelledRecord, type TaskForm, type TaskInputRecord, type TaskRecord, type ThreadBodyRecord, type TurnStatus } from '../protocol/thread.js';
import { deferred } from '../util/deferred.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { ThreadStore } from './thread-store.js';

/**
 * MCP tasks as records of their thread (issue 16): a task is a `task` record naming the turn it
 * runs, kept by whatever {@link ThreadStore} keeps the thread, so it survives restarts and every
 * server process sharing the store can read it. Its id names its thread (no global index is
 * needed to find it) and carries random bits (it cannot be guessed from the thread id). Its state
 * is derived from its turn: open while the turn runs, then how the turn ended, `cancelled` when a
 * `task_cancelled` record came before the turn's end.
 *
 * What a task's turn asks the client (an approval) is a record too (`task_input`, under a random
 * key, with its deadline), so every process shows the task `input_required` with it; the client's
 * answer, given to any process, is recorded (`task_input_answer`) and the owner of the thread is
 * woken through its ownership (as interrupt requests are) to read it. A task whose turn nobody runs
 * any more (its process died: no live owner holds the thread, and the turn has no end recorded)
 * reads as loading the thread will record it: interrupted.
 */

/** How long a task and its result are kept when the client asks for no TTL. */
export const DEFAULT_TASK_TTL_MS = 60 * 60_000;
/** The longest TTL granted, whatever the client asks. */
export const MAX_TASK_TTL_MS = 24 * 60 * 60_000;
/** The poll interval suggested to clients. */
export const TASK_POLL_INTERVAL_MS = 500;
/** Tasks whose record (and, once ended, state) this process keeps in memory; the oldest are read again from the store. */
const TASKS_CACHED = 4096;
/** The error of a turn whose process stopped during it, as loading its thread records it. */
const STOPPED_DURING_TURN = 'the server stopped during this turn';

/** An input request as a client is shown it (an `elicitation/create` form for an approval). */
export type TaskInputRequest = TaskInputRecord['request'];

/** How a task input ended for the process that asked it. */
export type TaskInputOutcome = { kind: 'answered'; response: unknown } | { kind: 'expired' } | { kind: 'aborted' };

/** A task's state, from its turn's. */
export type TaskState = 'working' | 'cancelled' | TurnStatus;

/** A task as read: its record, where its turn is, and how the turn ended once it has. */
export interface TaskView {
  taskId: string;
  threadId: string;
  turnId: string;
  form: TaskForm;
  createdAt: string;
  /** The last change: the record, the cancellation, or the turn's end. */
  lastUpdatedAt: string;
  ttlMs: number;
  pollIntervalMs: number;
  state: TaskState;
  /** How the turn ended (once it has; with `cancelled`, how the interrupted turn ended). */
  turn?: FinishedTurn;
  /** Why the client cancelled it (with `cancelled`). */
  cancelReason?: string;
  /** The input requests its turn waits for now, by key (with `working`; none: absent). */
  inputRequests?: Record<string, TaskInputRequest>;
}

/** Why a task id was refused (bad form, or no such task, or expired); the MCP layer reports the message. */
export class TaskNotFoundError extends LocalError {
  constructor(
    readonly taskId: string,
    detail: string,
  ) {
    super(LocalErrorCode.NotFound, `task ${JSON.stringify(taskId.length > 200 ? `${taskId.slice(0, 200)}…` : taskId)} ${detail}`);
  }
}

/** Where a turn is, as the process that may run it knows without the store. */
export type KnownTurn = { state: 'live' } | { state: 'finished'; turn: FinishedTurn } | undefined;

/** What {@link ThreadTasks} needs from the thread manager. */
export interface TaskTurns {
  /** The turn as this process knows it (running here, or recently finished here); undefined: ask the store. */
  turnState(threadId: string, turnId: string): KnownTurn;
  /** Interrupts the turn (here or in the process that runs it). */
  interrupt(threadId: string, turnId: string, reason: string): Promise<unknown>;
  /** Whether another live owner has the thread (so its open turn runs there). */
  heldElsewhere(threadId: string): Promise<boolean>;
  /** Wakes the owner of the thread to read an answer to a task input (see {@link ThreadTasks.collectAnswers}). */
  announceAnswer(threadId: string): Promise<void>;
}

/** Options of {@link ThreadTasks}. */
export interface ThreadTasksOptions {
  store: ThreadStore;
  turns: TaskTurns;
  /** @default () => new Date() */
  now?: () => Date;
}

/** What {@link ThreadTasks.create} records. */
export interface NewTask {
  threadId: string;
  turnId: string;
  form: TaskForm;
  /** Capped at {@link MAX_TASK_TTL_MS}. @default DEFAULT_TASK_TTL_MS */
  ttlMs?: number;
}

interface Known {
  record: TaskRecord;
  threadId: string;
  cancelled?: TaskCancelledRecord;
  /** Set once the turn ended: the state no longer changes. */
  ended?: { state: TaskState; turn: FinishedTurn };
  /** How the turn will end, when nobody runs it any more (its owner died): not kept, judged again at each read. */
  orphaned?: FinishedTurn;
  /** The task's input requests, by key; `settled` once answered (or, where asked, expired or aborted). */
  inputs: Map<string, { record: TaskInputRecord; settled: boolean }>;
  /** The thread's stamp when its records were last read (by a process that does not run the turn). */
  stamp?: string;
}

/** A task input this process asked, waiting for its answer. */
interface Asking {
  taskId: string;
  settle: (outcome: TaskInputOutcome) => void;
}

/** The thread id a task id names; throws a {@link TaskNotFoundError} saying what is wrong with it. */
export function threadOfTask(taskId: string): string {
  const match = TASK_ID_PATTERN.exec(taskId);
  if (match?.[1] === undefined) throw new TaskNotFoundError(taskId, 'is not a task id of this server (expected task.<threadId>.<22 random characters>)');
  return match[1];
}

/** Creates, reads and cancels tasks through the thread store (see the module comment). */
export class ThreadTasks {
  readonly #store: ThreadStore;
  readonly #turns: TaskTurns;
  readonly #now: () => Date;
  readonly #known = new Map<string, Known>();
  /** The task inputs this process waits for, by thread, then key. */
  readonly #asking = new Map<string, Map<string, Asking>>();
  /** Who follows each task's state here (see {@link watch}). */
  readonly #watchers = new Map<string, Set<() => void>>();

  constructor(options: ThreadTasksOptions) {
    this.#store = options.store;
    this.#turns = options.turns;
    this.#now = options.now ?? (() => new Date());
  }

  /** Records a task for an accepted turn; resolves once the record is durable (a `get` anywhere then finds it). */
  async create(task: NewTask): Promise<TaskView> {
    const record: TaskRecord = {
      type: 'task',
      at: this.#now().toISOString(),
      taskId: `task.${task.threadId}.${randomBytes(16).toString('base64url')}`,
      turnId: task.turnId,
      form: task.form,
      ttlMs: Math.min(task.ttlMs ?? DEFAULT_TASK_TTL_MS, MAX_TASK_TTL_MS),
      pollIntervalMs: TASK_POLL_INTERVAL_MS,
    };
    await this.#store.append(task.threadId, record);
    this.#remember(record.taskId, { record, threadId: task.threadId, inputs: new Map() });
    return this.get(record.taskId);
  }

  /**
   * The task `taskId` now. Cheap for a task whose turn this process runs or ran (memory only) and
   * for an ended one read before; otherwise the thread's summary, and its records once.
   * @throws TaskNotFoundError for an id of another form, an unknown task, or an expired one.
   */
  async get(taskId: string): Promise<TaskView> {
    const threadId = threadOfTask(taskId);
    const known = this.#known.get(taskId) ?? (await this.#read(taskId, threadId));
    const { record } = known;
    if (Date.parse(record.at) + record.ttlMs <= this.#now().getTime()) {
      this.#known.delete(taskId);
      throw new TaskNotFoundError(taskId, `expired (its time to live of ${record.ttlMs} ms from ${record.at} has passed)`);
    }
    if (known.ended === undefined) await this.#follow(known);
    // A task's status is an answer: what its turn wrote so far is made durable first (nothing to
    // do unless this process wrote the thread without a flush since).
    await this.#store.flush(threadId);
    return view(known, this.#now().getTime());
  }

  /**
   * Asks the client for input in the task (whose turn runs here): records the input request under
   * a random key with its deadline, then waits for the answer recorded by any process (see
   * {@link answer}), the deadline (`expired`) or `signal` (`aborted`), whichever comes first.
   * Rejects when the request cannot be recorded (nobody could answer it). `key` (random, of
   * TASK_INPUT_KEY_PATTERN) is the caller's when it must name the input before it is recorded;
   * `onRecorded` runs once the record is durable (any process can show and answer it from then on).
   */
  async ask(taskId: string, request: TaskInputRequest, options: { timeoutMs: number; signal: AbortSignal; key?: string; onRecorded?: () => void }): Promise<TaskInputOutcome> {
    const threadId = threadOfTask(taskId);
    const { timeoutMs, signal } = options;
    const key = options.key ?? randomBytes(16).toString('base64url');
    const at = this.#now();
    const record: TaskInputRecord = { type: 'task_input', at: at.toISOString(), taskId, key, request, expiresAt: new Date(at.getTime() + timeoutMs).toISOString() };
    const outcome = deferred<TaskInputOutcome>();
    let asking = this.#asking.get(threadId);
    if (asking === undefined) {
      asking = new Map();
      this.#asking.set(threadId, asking);
    }
    const waiting = asking;
    const settle = (result: TaskInputOutcome): void => {
      if (!waiting.delete(key)) return;
      if (waiting.size === 0 && this.#asking.get(threadId) === waiting) this.#asking.delete(threadId);
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      const input = this.#known.get(taskId)?.inputs.get(key);
      if (input !== undefined) input.settled = true;
      outcome.resolve(result);
      this.changed(taskId);
    };
    const onAbort = (): void => settle({ kind: 'aborted' });
    const timer = setTimeout(() => settle({ kind: 'expired' }), timeoutMs);
    // Waiting before the record is written: an answer given the moment it is readable finds it.
    waiting.set(key, { taskId, settle });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    try {
      await this.#store.append(threadId, record);
    } catch (error) {
      settle({ kind: 'aborted' });
      throw error;
    }
    if (waiting.has(key)) {
      this.#known.get(taskId)?.inputs.set(key, { record, settled: false });
      this.changed(taskId);
    }
    options.onRecorded?.();
    return outcome.promise;
  }

  /**
   * Records the client's answers to the task's pending inputs (`tasks/update`, on any process) and
   * wakes the process that asked them. An answer to a key that is not pending now (unknown, already
   * answered, past its deadline, or of a task that ended) is ignored. Resolves with the keys answered.
   * @throws TaskNotFoundError for a task id that names no task (see {@link get}).
   */
  async answer(taskId: string, responses: Record<string, unknown>): Promise<string[]> {
    await this.get(taskId);
    const known = this.#known.get(taskId);
    if (known === undefined) return [];
    // Read now, not from the cache: an answer another process recorded meanwhile settles its key.
    const loaded = await this.#store.load(known.threadId);
    this.#settleFrom(known, loaded?.records ?? []);
    const current = view(known, this.#now().getTime());
    const answered: string[] = [];
    for (const [key, response] of Object.entries(responses)) {
      const input = known.inputs.get(key);
      if (input === undefined || input.settled || current.inputRequests?.[key] === undefined) continue;
      await this.#store.append(known.threadId, { type: 'task_input_answer', at: this.#now().toISOString(), taskId, key, response });
      input.settled = true;
      answered.push(key);
    }
    if (answered.length === 0) return answered;
    const asking = this.#asking.get(known.threadId);
    if (asking !== undefined && answered.some((key) => asking.has(key))) await this.collectAnswers(known.threadId);
    else await this.#turns.announceAnswer(known.threadId);
    return answered;
  }

  /**
   * Reads the thread's recorded answers and settles the inputs this process waits for (the first
   * answer to a key counts); called when another process announced an answer.
   */
  async collectAnswers(threadId: string): Promise<void> {
    if ((this.#asking.get(threadId)?.size ?? 0) === 0) return;
    const loaded = await this.#store.load(threadId);
    for (const entry of loaded?.records ?? []) {
      if (entry.type !== 'task_input_answer') continue;
      const asking = this.#asking.get(threadId)?.get(entry.key);
      if (asking?.taskId === entry.taskId) asking.settle({ kind: 'answered', response: entry.response });
    }
  }

  /**
   * Cancels the task: records why, then interrupts its turn. A task whose turn had already ended
   * keeps its state. Resolves with the task as it reads afterwards.
   */
  async cancel(taskId: string, reason: string): Promise<TaskView> {
    const task = await this.get(taskId);
    const known = this.#known.get(taskId);
    if (known === undefined || known.ended !== undefined || known.orphaned !== undefined || known.cancelled !== undefined) return task;
    const cancelled: TaskCancelledRecord = { type: 'task_cancelled', at: this.#now().toISOString(), taskId, reason };
    await this.#store.append(known.threadId, cancelled);
    known.cancelled = cancelled;
    this.changed(taskId);
    try {
      await this.#turns.interrupt(known.threadId, known.record.turnId, reason);
    } catch (error) {
      // The turn is gone already (it ended as the cancellation was recorded): nothing to stop.
      if (!(error instanceof LocalError && error.code === LocalErrorCode.NotFound)) throw error;
    }
    return this.get(taskId);
  }

  /**
   * Calls `listener` whenever the task's state may have changed in this process: an input asked
   * or settled here, its cancellation recorded here, its turn ended here ({@link changed}). A
   * task whose turn runs in another process changes there, unseen. Returns the unsubscribe.
   */
  watch(taskId: string, listener: () => void): () => void {
    let listeners = this.#watchers.get(taskId);
    if (listeners === undefined) {
      listeners = new Set();
      this.#watchers.set(taskId, listeners);
    }
    const own = listeners;
    own.add(listener);
    return () => {
      own.delete(listener);
      if (own.size === 0 && this.#watchers.get(taskId) === own) this.#watchers.delete(taskId);
    };
  }

  /** Tells the task's watchers its state may have changed (also called by whoever sees its turn end). */
  changed(taskId: string): void {
    for (const listener of this.#watchers.get(taskId) ?? []) listener();
  }

  /** Reads the task's records from its thread (a task of another process, or from before a restart). */
  async #read(taskId: string, threadId: string): Promise<Known> {
    const loaded = await this.#store.load(threadId);
    const records = loaded?.records ?? [];
    const record = records.find((entry): entry is TaskRecord => entry.type === 'task' && entry.taskId === taskId);
    if (record === undefined) throw new TaskNotFoundError(taskId, 'does not exist (no such task in its thread, or the thread is gone)');
    const known: Known = { record, threadId, inputs: new Map() };
    this.#settleFrom(known, records);
    this.#remember(taskId, known);
    return known;
  }

  /**
   * Brings an open task up to date: from this process's own turns (its inputs are asked here),
   * else from the thread's records when they changed since last read (another owner runs the
   * turn), else from the records and, when they hold no end of the turn, as a turn nobody runs.
   */
  async #follow(known: Known): Promise<void> {
    const turnId = known.record.turnId;
    const here = this.#turns.turnState(known.threadId, turnId);
    if (here?.state === 'live') return;
    known.orphaned = undefined;
    if (here === undefined) {
      // Asked before the records are read: an owner gives a thread back only after recording its
      // turn's end, so a turn with no end recorded and no owner is one nobody runs any more.
      const elsewhere = await this.#turns.heldElsewhere(known.threadId);
      const stamp = await this.#store.stamp(known.threadId);
      if (elsewhere && stamp !== undefined && stamp === known.stamp) return;
      const records = (await this.#store.load(known.threadId))?.records ?? [];
      known.stamp = stamp;
      this.#settleFrom(known, records);
      if (known.ended === undefined && !elsewhere) known.orphaned = orphanedTurn(turnId, records, this.#now());
      return;
    }
    // The turn ended; a cancellation made elsewhere is only in the records, so they are read once.
    const loaded = await this.#store.load(known.threadId);
    this.#settleFrom(known, loaded?.records ?? []);
    if (known.ended === undefined && here?.state === 'finished') known.ended = { state: endedState(known, here.turn), turn: here.turn };
  }

  /** Takes the cancellation and the turn's end from the thread's records. */
  #settleFrom(known: Known, records: readonly ThreadBodyRecord[]): void {
    for (const entry of records) {
      if (entry.type === 'task_cancelled' && entry.taskId === known.record.taskId) known.cancelled ??= entry;
      else if (entry.type === 'task_input' && entry.taskId === known.record.taskId) {
        if (!known.inputs.has(entry.key)) known.inputs.set(entry.key, { record: entry, settled: false });
      } else if (entry.type === 'task_input_answer' && entry.taskId === known.record.taskId) {
        const input = known.inputs.get(entry.key);
        if (input !== undefined) input.settled = true;
      } else if (entry.type === 'turn_completed' && entry.turnId === known.record.turnId) {
        const turn: FinishedTurn = {
          turnId: entry.turnId,
          state: 'finished',
          status: entry.status,
          lastAgentMessage: entry.lastAgentMessage,
          finishedAt: entry.at,
          ...(entry.error === undefined ? {} : { error: entry.error }),
        };
        known.ended = { state: endedState(known, turn), turn };
      }
    }
  }

  #remember(taskId: string, known: Known): void {
    this.#known.delete(taskId);
    this.#known.set(taskId, known);
    if (this.#known.size > TASKS_CACHED) {
      const oldest = this.#known.keys().next().value;
      if (oldest !== undefined) this.#known.delete(oldest);
    }
  }
}

/**
 * A task cancelled before its turn ended stays `cancelled` however the turn then ends (a terminal
 * state never changes); one whose turn ended first keeps the turn's status.
 */
function endedState(known: Known, turn: FinishedTurn): TaskState {
  return known.cancelled !== undefined ? 'cancelled' : turn.status;
}

/** How loading the thread will record a turn nobody runs any more (see ThreadTable's load): interrupted, with the thread's last agent message. */
function orphanedTurn(turnId: string, records: readonly ThreadBodyRecord[], now: Date): FinishedTurn {
  let lastAgentMessage: string | null = null;
  for (const entry of records) if (entry.type === 'turn_completed') lastAgentMessage = entry.lastAgentMessage;
  return { turnId, state: 'finished', status: 'interrupted', lastAgentMessage, finishedAt: now.toISOString(), error: STOPPED_DURING_TURN };
}

/** The inputs that wait for an answer at `now` (neither answered nor past their deadline). */
function pendingInputs(known: Known, now: number): Record<string, TaskInputRequest> | undefined {
  let pending: Record<string, TaskInputRequest> | undefined;
  for (const [key, input] of known.inputs) {
    if (input.settled || Date.parse(input.record.expiresAt) <= now) continue;
    pending ??= {};
    pending[key] = input.record.request;
  }
  return pending;
}

function view(known: Known, now: number): TaskView {
  const { record, cancelled } = known;
  const ended = known.ended ?? (known.orphaned === undefined ? undefined : { state: endedState(known, known.orphaned), turn: known.orphaned });
  const state: TaskState = ended?.state ?? (cancelled === undefined ? 'working' : 'cancelled');
  const lastUpdatedAt = ended?.turn.finishedAt ?? cancelled?.at ?? record.at;
  const inputRequests = state === 'working' ? pendingInputs(known, now) : undefined;
  return {
    taskId: record.taskId,
    threadId: known.threadId,
    turnId: record.turnId,
    form: record.form,
    createdAt: record.at,
    lastUpdatedAt,
    ttlMs: record.ttlMs,
    pollIntervalMs: record.pollIntervalMs,
    state,
    ...(ended === undefined ? {} : { turn: ended.turn }),
    ...(cancelled === undefined ? {} : { cancelReason: cancelled.reason }),
    ...(inputRequests === undefined ? {} : { inputRequests }),
  };
}
