import { randomBytes } from 'node:crypto';
import type { FinishedTurn } from '../protocol/status.js';
import { TASK_ID_PATTERN, type TaskCancelledRecord, type TaskForm, type TaskRecord, type ThreadBodyRecord, type TurnStatus } from '../protocol/thread.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { ThreadStore } from './thread-store.js';

/**
 * MCP tasks as records of their thread (issue 16): a task is a `task` record naming the turn it
 * runs, kept by whatever {@link ThreadStore} keeps the thread, so it survives restarts and every
 * server process sharing the store can read it. Its id names its thread (no global index is
 * needed to find it) and carries random bits (it cannot be guessed from the thread id). Its state
 * is derived from its turn: open while the turn runs, then how the turn ended, `cancelled` when a
 * `task_cancelled` record came before the turn's end.
 */

/** How long a task and its result are kept when the client asks for no TTL. */
export const DEFAULT_TASK_TTL_MS = 60 * 60_000;
/** The longest TTL granted, whatever the client asks. */
export const MAX_TASK_TTL_MS = 24 * 60 * 60_000;
/** The poll interval suggested to clients. */
export const TASK_POLL_INTERVAL_MS = 500;
/** Tasks whose record (and, once ended, state) this process keeps in memory; the oldest are read again from the store. */
const TASKS_CACHED = 4096;

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
    this.#remember(record.taskId, { record, threadId: task.threadId });
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
    return view(known);
  }

  /**
   * Cancels the task: records why, then interrupts its turn. A task whose turn had already ended
   * keeps its state. Resolves with the task as it reads afterwards.
   */
  async cancel(taskId: string, reason: string): Promise<TaskView> {
    const task = await this.get(taskId);
    const known = this.#known.get(taskId);
    if (known === undefined || known.ended !== undefined || known.cancelled !== undefined) return task;
    const cancelled: TaskCancelledRecord = { type: 'task_cancelled', at: this.#now().toISOString(), taskId, reason };
    await this.#store.append(known.threadId, cancelled);
    known.cancelled = cancelled;
    try {
      await this.#turns.interrupt(known.threadId, known.record.turnId, reason);
    } catch (error) {
      // The turn is gone already (it ended as the cancellation was recorded): nothing to stop.
      if (!(error instanceof LocalError && error.code === LocalErrorCode.NotFound)) throw error;
    }
    return this.get(taskId);
  }

  /** Reads the task's records from its thread (a task of another process, or from before a restart). */
  async #read(taskId: string, threadId: string): Promise<Known> {
    const loaded = await this.#store.load(threadId);
    const records = loaded?.records ?? [];
    const record = records.find((entry): entry is TaskRecord => entry.type === 'task' && entry.taskId === taskId);
    if (record === undefined) throw new TaskNotFoundError(taskId, 'does not exist (no such task in its thread, or the thread is gone)');
    const known: Known = { record, threadId };
    this.#settleFrom(known, records);
    this.#remember(taskId, known);
    return known;
  }

  /** Brings an open task up to date: from this process's own turns, else the store's summary, else the thread's records. */
  async #follow(known: Known): Promise<void> {
    const turnId = known.record.turnId;
    const here = this.#turns.turnState(known.threadId, turnId);
    if (here?.state === 'live') return;
    if (here === undefined) {
      const summary = await this.#store.summary(known.threadId);
      if (summary?.error === undefined && summary?.lastTurnId === turnId && summary.lastStatus === 'incomplete') return;
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
      else if (entry.type === 'turn_completed' && entry.turnId === known.record.turnId) {
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

function view(known: Known): TaskView {
  const { record, cancelled, ended } = known;
  const state: TaskState = ended?.state ?? (cancelled === undefined ? 'working' : 'cancelled');
  const lastUpdatedAt = ended?.turn.finishedAt ?? cancelled?.at ?? record.at;
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
  };
}
