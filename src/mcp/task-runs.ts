import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { ApprovalRequest, Approver } from '../agent/approvals.js';
import type { TurnProgress } from '../protocol/status.js';
import type { TaskForm } from '../protocol/thread.js';
import { TaskNotFoundError, type TaskView, type ThreadTasks } from '../session/thread-tasks.js';
import { deferred } from '../util/deferred.js';
import { errorMessage } from '../util/errors.js';
import { approvalMessage } from './elicitation-approver.js';
import type { TaskStart, ToolExtra } from './tools.js';
import { outcomeResult, startTurnCall, threadResult, type StartedTurn, type TurnCallContext, type TurnRun } from './turn-call.js';

/**
 * The turns this process runs as MCP tasks, in either form (tasks.ts for 2025-11-25, modern-tasks.ts
 * for the extension). The task itself is a record of its thread ({@link ThreadTasks}); what only
 * the running process knows is kept here while the turn runs: the approvals it waits for.
 */

/** Characters of an approval request or an error shown in a task's status message. */
const PREVIEW_CHARS = 300;

function clipped(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** A task whose turn runs in this process. */
export interface LiveTask {
  readonly started: StartedTurn;
  /** The approvals its turn waits for now, oldest first. */
  readonly pending: readonly ApprovalRequest[];
  /** Resolves when its turn has ended (its call answered). */
  readonly ended: Promise<void>;
}

/** How {@link TaskRuns.start} follows a task while its turn runs. */
export interface TaskRunHooks {
  /** The task went `input_required` or back to `working` (awaited before the approval is asked, and before the turn goes on). */
  onStatus?: (taskId: string) => Promise<void>;
  /** The task's turn ended (its call answered). */
  onEnd?: (taskId: string) => void;
}

/** Which task {@link TaskRuns.start} makes. */
export interface TaskRunOptions {
  /** The thread a `codex-reply` continues; undefined for `codex`. */
  knownThreadId?: string;
  form: TaskForm;
  /** What the client asked; capped (see ThreadTasks). @default DEFAULT_TASK_TTL_MS */
  ttlMs?: number;
}

/**
 * A task's status message: which thread and turn, and what the turn is doing (queued, running
 * with its counts and latest event, or the approval it waits for and `answerHint`).
 */
export function taskStatusMessage(started: StartedTurn, progress: TurnProgress | undefined, approvals: readonly ApprovalRequest[], answerHint: string): string {
  const where = `thread ${started.threadId}, turn ${started.turnId}`;
  const first = approvals[0];
  if (first !== undefined) {
    const more = approvals.length > 1 ? ` (and ${approvals.length - 1} more)` : '';
    return `${where}: waiting for approval${more}: ${clipped(approvalMessage(first), PREVIEW_CHARS)} ${answerHint}`;
  }
  if (progress === undefined) return `${where}: running`;
  if (progress.state === 'queued') return `${where}: queued behind another turn of this thread`;
  const latest = progress.recent.at(-1);
  return `${where}: running, ${progress.modelRequests} model request(s), ${progress.toolCalls.finished} tool call(s) done${latest === undefined ? '' : `; latest: ${latest.text}`}`;
}

/** Runs turns as tasks and reads them back, for both forms. */
export class TaskRuns {
  readonly tasks: ThreadTasks;
  readonly #progressOf: TurnCallContext['progressOf'];
  readonly #live = new Map<string, LiveTask>();

  /** `progressOf` says what a live turn is doing, for status messages. */
  constructor(tasks: ThreadTasks, progressOf: TurnCallContext['progressOf']) {
    this.tasks = tasks;
    this.#progressOf = progressOf;
  }

  /**
   * The task `taskId` as a client may see it: a record of form `call` (a modern call's approvals,
   * see stored-rounds.ts) is no task of the client's, and reads as unknown here.
   * @throws TaskNotFoundError for it, and as ThreadTasks.get does.
   */
  async view(taskId: string): Promise<TaskView> {
    const view = await this.tasks.get(taskId);
    if (view.form === 'call') throw new TaskNotFoundError(taskId, 'does not exist (no such task in its thread, or the thread is gone)');
    return view;
  }

  /** The task's turn, while it runs in this process. */
  live(taskId: string): LiveTask | undefined {
    return this.#live.get(taskId);
  }

  /**
   * Starts the call's turn and, once it is accepted, records its task; the answer waits for the
   * record (so a `tasks/get` anywhere finds the task as soon as the client has its id). A call
   * that fails before its turn exists makes no task: its error result comes back instead.
   * Approvals the turn asks wait for the record too, so each names its task.
   */
  async start(context: TurnCallContext, extra: ToolExtra, run: TurnRun, task: TaskRunOptions, hooks: TaskRunHooks = {}): Promise<TaskStart> {
    const { knownThreadId, form, ttlMs } = task;
    /** The task's id once recorded (the approvals wait for it). */
    const made: { taskId?: string } = {};
    const recorded = deferred<string | undefined>();
    const pending: ApprovalRequest[] = [];
    const approvals = (inner: Approver): Approver => ({
      request: async (request, signal) => {
        const id = await recorded.promise;
        if (id === undefined) return { decision: 'denied', reason: 'the task of this turn could not be recorded' };
        const asker = extra.taskApprover?.(id) ?? inner;
        pending.push(request);
        if (pending.length === 1) await hooks.onStatus?.(id);
        try {
          return await asker.request(request, signal);
        } finally {
          pending.splice(pending.indexOf(request), 1);
          if (pending.length === 0) await hooks.onStatus?.(id);
        }
      },
    });
    const call = startTurnCall(context, extra, run, knownThreadId, { relatedTaskId: () => made.taskId, approvals });
    const first = await Promise.race([call.started, call.result]);
    if (first === undefined || 'content' in first) {
      recorded.resolve(undefined);
      return { result: await call.result };
    }
    let view: TaskView;
    try {
      view = await this.tasks.create({ threadId: first.threadId, turnId: first.turnId, form, ttlMs });
    } catch (error) {
      recorded.resolve(undefined);
      call.interrupt(`its task could not be recorded: ${errorMessage(error)}`);
      throw error;
    }
    const id = view.taskId;
    made.taskId = id;
    const ended = call.result.then(() => {
      this.#live.delete(id);
      hooks.onEnd?.(id);
      this.tasks.changed(id);
    });
    this.#live.set(id, { started: first, pending, ended });
    recorded.resolve(id);
    return { view };
  }

  /** What the task's turn is doing, or how it ended (see {@link taskStatusMessage}). */
  statusMessage(view: TaskView, answerHint: string): string {
    const where = `thread ${view.threadId}, turn ${view.turnId}`;
    if (view.state === 'working') {
      const live = this.#live.get(view.taskId);
      if (live === undefined) {
        const waiting = Object.values(view.inputRequests ?? {});
        const first = waiting[0]?.params.message;
        if (typeof first !== 'string') return `${where}: running (in another server process)`;
        const more = waiting.length > 1 ? ` (and ${waiting.length - 1} more)` : '';
        return `${where}: waiting for approval${more} (in another server process): ${clipped(first, PREVIEW_CHARS)} ${answerHint}`;
      }
      return taskStatusMessage(live.started, this.#progressOf?.(view.threadId, view.turnId), live.pending, answerHint);
    }
    if (view.state === 'cancelled') return `${where}: cancelled: ${view.cancelReason ?? 'by the client'}`;
    if (view.state === 'completed') return `${where}: completed`;
    const error = view.turn?.error;
    return `${where}: ${view.state === 'failed' ? 'failed' : 'interrupted'}${error === undefined ? '' : `: ${clipped(error, PREVIEW_CHARS)}`}`;
  }

  /**
   * The `{threadId, content}` result of an ended task, rebuilt from its stored turn (a cancelled
   * one whose turn is still stopping says so); undefined while it runs.
   */
  result(view: TaskView): CallToolResult | undefined {
    if (view.turn === undefined && view.state === 'cancelled') {
      return threadResult(view.threadId, `The task was cancelled (${view.cancelReason ?? 'by the client'}); its turn ${view.turnId} is being interrupted.`, true);
    }
    return endedTurnResult(view);
  }
}

/** The `{threadId, content}` of a task's ended turn, as its own call would have answered; undefined while it runs. */
export function endedTurnResult(view: TaskView): CallToolResult | undefined {
  const turn = view.turn;
  if (turn === undefined) return undefined;
  return outcomeResult({
    threadId: view.threadId,
    turnId: view.turnId,
    status: turn.status,
    lastAgentMessage: turn.lastAgentMessage,
    ...(turn.error === undefined ? {} : { error: turn.error }),
  });
}
