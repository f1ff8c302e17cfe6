import { InMemoryTaskStore, isTerminal } from '@modelcontextprotocol/sdk/experimental/tasks';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { ErrorCode, McpError, type CallToolResult, type CreateTaskResult, type ServerNotification, type ServerRequest, type Task } from '@modelcontextprotocol/sdk/types.js';
import type { ApprovalRequest, Approver } from '../agent/approvals.js';
import type { TurnProgress } from '../protocol/status.js';
import { errorMessage } from '../util/errors.js';
import { approvalMessage } from './elicitation-approver.js';
import { startTurnCall, type StartedTurn, type TurnCallContext, type TurnRun } from './turn-call.js';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** How long a task and its result are kept when the client asks for no TTL. */
export const DEFAULT_TASK_TTL_MS = 60 * 60_000;
/** The longest TTL granted, whatever the client asks. */
export const MAX_TASK_TTL_MS = 24 * 60 * 60_000;
/** The poll interval suggested to clients (and used by the SDK while `tasks/result` waits). */
export const TASK_POLL_INTERVAL_MS = 500;

/** The capabilities that announce tasks for `tools/call`, with listing and cancellation. */
export const TASK_CAPABILITIES = { list: {}, cancel: {}, requests: { tools: { call: {} } } };

/**
 * The SDK's in-memory task store, plus two hooks per live task: one interrupts its turn when the
 * client cancels it (the SDK's `tasks/cancel` only marks the task cancelled in the store, see
 * sdk-workarounds.ts), one says what its turn is doing whenever the task is read, so the status
 * message is always current without a store write (and a status notification) per turn event.
 */
export class TurnTaskStore extends InMemoryTaskStore {
  readonly #onCancel = new Map<string, () => void>();
  readonly #describe = new Map<string, () => string>();

  /** Runs `cancel` when the task is cancelled. */
  whenCancelled(taskId: string, cancel: () => void): void {
    this.#onCancel.set(taskId, cancel);
  }

  /** While the task is not finished, its status message is what `describe` says at the time it is read. */
  describeWith(taskId: string, describe: () => string): void {
    this.#describe.set(taskId, describe);
  }

  /** The task's turn ended: nothing to interrupt or describe any more; `finalMessage` stays its status message. */
  async forget(taskId: string, finalMessage?: string): Promise<void> {
    this.#onCancel.delete(taskId);
    this.#describe.delete(taskId);
    const task = await super.getTask(taskId);
    if (finalMessage === undefined || task === null || isTerminal(task.status)) return;
    await super.updateTaskStatus(taskId, task.status, finalMessage);
  }

  override async getTask(taskId: string, sessionId?: string): Promise<Task | null> {
    const task = await super.getTask(taskId, sessionId);
    return task === null ? null : this.#described(task);
  }

  override async listTasks(cursor?: string, sessionId?: string): Promise<{ tasks: Task[]; nextCursor?: string }> {
    const page = await super.listTasks(cursor, sessionId);
    return { ...page, tasks: page.tasks.map((task) => this.#described(task)) };
  }

  override async updateTaskStatus(taskId: string, status: Task['status'], statusMessage?: string, sessionId?: string): Promise<void> {
    await super.updateTaskStatus(taskId, status, statusMessage, sessionId);
    if (status !== 'cancelled') return;
    const cancel = this.#onCancel.get(taskId);
    this.#onCancel.delete(taskId);
    this.#describe.delete(taskId);
    cancel?.();
  }

  #described(task: Task): Task {
    const describe = this.#describe.get(task.taskId);
    return describe === undefined || isTerminal(task.status) ? task : { ...task, statusMessage: describe() };
  }
}

/** Characters of an approval request shown in a task's status message. */
const APPROVAL_PREVIEW_CHARS = 300;

function clipped(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * A task's status message: which thread and turn, and what the turn is doing (queued, running
 * with its counts and latest event, or the approval it waits for and how to answer it).
 */
export function taskStatusMessage(started: StartedTurn | undefined, progress: TurnProgress | undefined, approvals: readonly ApprovalRequest[]): string {
  if (started === undefined) return 'starting the turn';
  const where = `thread ${started.threadId}, turn ${started.turnId}`;
  const first = approvals[0];
  if (first !== undefined) {
    const more = approvals.length > 1 ? ` (and ${approvals.length - 1} more)` : '';
    return `${where}: waiting for approval${more}: ${clipped(approvalMessage(first), APPROVAL_PREVIEW_CHARS)} Answer the elicitation/create request related to this task.`;
  }
  if (progress === undefined) return `${where}: running`;
  if (progress.state === 'queued') return `${where}: queued behind another turn of this thread`;
  const latest = progress.recent.at(-1);
  return `${where}: running, ${progress.modelRequests} model request(s), ${progress.toolCalls.finished} tool call(s) done${latest === undefined ? '' : `; latest: ${latest.text}`}`;
}

/** The status message of a task whose turn ended with `result`. */
function finalStatusMessage(started: StartedTurn | undefined, result: CallToolResult): string {
  const where = started === undefined ? '' : `thread ${started.threadId}, turn ${started.turnId}: `;
  if (result.isError !== true) return `${where}completed`;
  const first = result.content[0];
  return `${where}failed: ${first?.type === 'text' ? clipped(first.text, APPROVAL_PREVIEW_CHARS) : 'see the result'}`;
}

/**
 * Runs a turn as an MCP task: answers at once with the task (`working`), and stores the call's
 * result when the turn ends: `completed`, or `failed` when the result is an error. While the turn
 * waits for an approval the task is `input_required` (the elicitation carries the task as its
 * related task), then `working` again. Its status message names the thread and turn and says what
 * the turn is doing. Progress keeps flowing to the request's progress token; `tasks/cancel`
 * interrupts the turn.
 */
export async function createTurnTask(context: TurnCallContext, store: TurnTaskStore, extra: Extra, run: TurnRun, knownThreadId?: string): Promise<CreateTaskResult> {
  const tasks = extra.taskStore;
  if (tasks === undefined) throw new McpError(ErrorCode.InternalError, 'this server has no task store');
  const ttl = Math.min(extra.taskRequestedTtl ?? DEFAULT_TASK_TTL_MS, MAX_TASK_TTL_MS);
  const task = await tasks.createTask({ ttl, pollInterval: TASK_POLL_INTERVAL_MS });
  const taskId = task.taskId;
  let started: StartedTurn | undefined;
  const pending: ApprovalRequest[] = [];
  const describe = (): string => taskStatusMessage(started, started === undefined ? undefined : context.progressOf?.(started.threadId, started.turnId), pending);
  const setStatus = async (status: 'working' | 'input_required'): Promise<void> => {
    try {
      await tasks.updateTaskStatus(taskId, status, describe());
    } catch (error) {
      // A cancelled (or expired) task keeps its state; the approval goes on regardless.
      context.logger.debug('task status not updated', { task: taskId, status, error: errorMessage(error) });
    }
  };
  // The status changes before the elicitation goes out and before the turn goes on, so a client
  // that reads the task on either side of its answer sees where the turn is.
  const approvals = (inner: Approver): Approver => ({
    request: async (request, signal) => {
      pending.push(request);
      if (pending.length === 1) await setStatus('input_required');
      try {
        return await inner.request(request, signal);
      } finally {
        pending.splice(pending.indexOf(request), 1);
        if (pending.length === 0) await setStatus('working');
      }
    },
  });
  store.describeWith(taskId, describe);
  const call = startTurnCall(context, extra, run, knownThreadId, { relatedTaskId: taskId, approvals });
  store.whenCancelled(taskId, () => call.interrupt('the task was cancelled'));
  void call.started.then((turn) => (started = turn));
  void call.result.then(async (result) => {
    try {
      await store.forget(taskId, finalStatusMessage(started, result));
      await tasks.storeTaskResult(taskId, result.isError === true ? 'failed' : 'completed', result);
    } catch (error) {
      // A cancelled (or expired) task keeps its state; the turn's end is in the thread anyway.
      context.logger.debug('task result not stored', { task: taskId, error: errorMessage(error) });
    }
  });
  await Promise.race([call.started, call.result]);
  return { task: await tasks.getTask(taskId) };
}
