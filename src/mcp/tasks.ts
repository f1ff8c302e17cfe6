import type { TaskStore } from '@modelcontextprotocol/sdk/experimental/tasks';
import { ErrorCode, type CallToolResult, type CreateTaskResult, type Result, type Task } from '@modelcontextprotocol/sdk/types.js';
import { TaskNotFoundError, type TaskView } from '../session/thread-tasks.js';
import { errorMessage } from '../util/errors.js';
import { McpWireError } from './sdk-workarounds.js';
import type { TaskRuns } from './task-runs.js';
import type { TaskToolExtra } from './tools.js';
import type { TurnCallContext, TurnRun } from './turn-call.js';

/**
 * MCP tasks in the 2025-11-25 form (the SDK v1's `tasks/get`, `tasks/result`, `tasks/cancel`),
 * backed by the task records of the threads (session/thread-tasks.ts): a task id keeps meaning
 * the same task after a restart and in every server process sharing the threads.
 */

/** How a 2025 client is told to answer a task's approval. */
const ANSWER_HINT = 'Answer the elicitation/create request related to this task.';

/** The 2025 status: an ended turn that did not complete (failed, interrupted) is a failed task; its result says why. */
function legacyStatus(view: TaskView, runs: TaskRuns): Task['status'] {
  switch (view.state) {
    case 'working':
      return (runs.live(view.taskId)?.pending.length ?? 0) > 0 ? 'input_required' : 'working';
    case 'completed':
    case 'cancelled':
      return view.state;
    case 'failed':
    case 'interrupted':
      return 'failed';
  }
}

/** The task as the 2025 form shows it. */
export function legacyTask(view: TaskView, runs: TaskRuns): Task {
  return {
    taskId: view.taskId,
    status: legacyStatus(view, runs),
    statusMessage: runs.statusMessage(view, ANSWER_HINT),
    createdAt: view.createdAt,
    lastUpdatedAt: view.lastUpdatedAt,
    ttl: view.ttlMs,
    pollInterval: view.pollIntervalMs,
  };
}

/** Reads a task, with a not-found error the client is shown (bad id, unknown, expired). */
async function read(runs: TaskRuns, taskId: string): Promise<TaskView> {
  try {
    return await runs.view(taskId);
  } catch (error) {
    if (error instanceof TaskNotFoundError) throw new McpWireError(ErrorCode.InvalidParams, errorMessage(error));
    throw error;
  }
}

/**
 * The SDK's task store over the thread records. The SDK calls it for `tasks/get`, `tasks/result`
 * and `tasks/cancel` (as `updateTaskStatus(…, 'cancelled')`, which records the cancellation and
 * interrupts the turn). Status is derived from the turn, so status updates other than a
 * cancellation store nothing: the SDK's request-scoped store still reads the task back after
 * one and notifies the client of its status.
 */
export class RecordTaskStore implements TaskStore {
  readonly #runs: TaskRuns;

  constructor(runs: TaskRuns) {
    this.#runs = runs;
  }

  /** Tasks are made by the turn tools ({@link createTurnTask}), once their turn exists; the SDK never asks. */
  createTask(): Promise<Task> {
    return Promise.reject(new McpWireError(ErrorCode.InvalidRequest, 'tasks of this server are made by codex and codex-reply calls with `task`'));
  }

  async getTask(taskId: string): Promise<Task | null> {
    return legacyTask(await read(this.#runs, taskId), this.#runs);
  }

  /** A task's result is its turn's, read from the thread: nothing is stored besides. */
  storeTaskResult(): Promise<void> {
    return Promise.reject(new McpWireError(ErrorCode.InvalidRequest, 'a task result is read from its turn; it cannot be stored'));
  }

  async getTaskResult(taskId: string): Promise<Result> {
    const view = await read(this.#runs, taskId);
    const result = this.#runs.result(view);
    if (result === undefined) throw new McpWireError(ErrorCode.InvalidParams, `task ${taskId} has no result yet: its turn is still running`);
    return result;
  }

  async updateTaskStatus(taskId: string, status: Task['status']): Promise<void> {
    if (status !== 'cancelled') return;
    try {
      await this.#runs.view(taskId);
      await this.#runs.tasks.cancel(taskId, 'the client cancelled the task (tasks/cancel)');
    } catch (error) {
      if (error instanceof TaskNotFoundError) throw new McpWireError(ErrorCode.InvalidParams, errorMessage(error));
      throw error;
    }
  }

  listTasks(): Promise<{ tasks: Task[] }> {
    return Promise.reject(new McpWireError(ErrorCode.MethodNotFound, 'tasks/list is not offered: keep the task id that tools/call answered'));
  }
}

/**
 * Runs a turn as a 2025 MCP task: answers with the task (`working`) once its turn is accepted and
 * the task recorded. While the turn waits for an approval the task is `input_required` (the
 * elicitation carries the task as its related task), then `working` again; each change and the
 * end are notified. Progress keeps flowing to the request's progress token. A call that fails
 * before its turn exists (an unknown thread, a bad cwd) is refused with that error.
 */
export async function createTurnTask(runs: TaskRuns, context: TurnCallContext, extra: TaskToolExtra, run: TurnRun, knownThreadId?: string): Promise<CreateTaskResult> {
  const { logger } = context;
  const scoped = extra.taskStore;
  if (scoped === undefined) throw new McpWireError(ErrorCode.InternalError, 'this server has no task store');
  const notify = async (taskId: string): Promise<void> => {
    try {
      // Stores nothing (see RecordTaskStore); the SDK reads the task back and notifies its status.
      await scoped.updateTaskStatus(taskId, 'working');
    } catch (error) {
      logger.debug('task status not notified', { task: taskId, error: errorMessage(error) });
    }
  };
  const started = await runs.start(
    context,
    extra,
    run,
    { form: '2025-11-25', knownThreadId, ttlMs: extra.taskRequestedTtl ?? undefined },
    {
      onStatus: notify,
      onEnd: (taskId) => {
        void runs.tasks
          .get(taskId)
          .then((view) => extra.sendNotification({ method: 'notifications/tasks/status', params: legacyTask(view, runs) }))
          .catch((error: unknown) => logger.debug('task end not notified', { task: taskId, error: errorMessage(error) }));
      },
    },
  );
  if ('result' in started) throw new McpWireError(ErrorCode.InvalidParams, resultText(started.result));
  return { task: legacyTask(started.view, runs) };
}

function resultText(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === 'text' ? first.text : 'the call failed before its turn started';
}
