import type { CallToolResult, RequestId } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { ApprovalDecision, Approver } from '../agent/approvals.js';
import { TaskNotFoundError, type TaskView, type ThreadTasks } from '../session/thread-tasks.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { approvalElicitationParams, parseApprovalAnswer } from './elicitation-approver.js';
import { TASKS_EXTENSION } from './handshake.js';
import { ModernError, ModernErrorCode } from './modern-error.js';
import type { TaskRuns } from './task-runs.js';
import type { McpTool, TaskStart, ToolExtra } from './tools.js';

/**
 * MCP tasks in the form of the `io.modelcontextprotocol/tasks` extension (modern era): a client
 * that declares the extension on its `tools/call` gets a task (`resultType: "task"`) for `codex`
 * and `codex-reply`, then polls `tasks/get` (the result comes inline once the turn ended), answers
 * approvals with `tasks/update`, stops the turn with `tasks/cancel`. The task is the same record
 * of its thread as a 2025 task (session/thread-tasks.ts), so any server process sharing the
 * threads reads it. The approvals a task's turn waits for are records of the task too: every
 * process shows the task `input_required` with them as `elicitation/create` input requests, and
 * takes the client's `tasks/update`, which reaches the process that asked (see thread-tasks.ts).
 */

/** How a client is told to answer a task's approval. */
const ANSWER_HINT = 'Answer its input request with tasks/update.';

const TaskIdParamsSchema = z.looseObject({ taskId: z.string() });
const UpdateParamsSchema = z.looseObject({ taskId: z.string(), inputResponses: z.record(z.string(), z.unknown()) });

/** One line of a zod error, for an error message. */
function problemsOf(error: z.ZodError): string {
  return z.prettifyError(error).replace(/\n\s*/g, ' ');
}

/** The error for a request of the extension from a client that did not declare it. */
export function missingTasksCapability(method: string): ModernError {
  return new ModernError(
    ModernErrorCode.MissingRequiredClientCapability,
    `${method} needs the ${TASKS_EXTENSION} extension: declare it in params._meta["io.modelcontextprotocol/clientCapabilities"].extensions`,
    { requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } } },
  );
}

/** Options of {@link ModernTasks}. */
export interface ModernTasksOptions {
  runs: TaskRuns;
  /** How long an approval waits for its `tasks/update` before it is denied. */
  approvalTimeoutMs: number;
  logger?: Logger;
}

/** How a client that cannot show forms has every approval answered. */
const NO_FORMS: ApprovalDecision = {
  decision: 'denied',
  reason: 'the MCP client cannot show approval requests (no form elicitation in its capabilities); use approval-policy "never" or a client with elicitation',
};

/**
 * The approver of a task's turn: each approval is a task input (thread-tasks.ts) answered by a
 * `tasks/update` on any process. Only a clear approval approves (parseApprovalAnswer); no answer
 * by the deadline is a denial; it never rejects.
 */
export function taskInputApprover(tasks: ThreadTasks, taskId: string, timeoutMs: number, logger: Logger): Approver {
  return {
    request: async (request, signal) => {
      let decision: ApprovalDecision;
      try {
        const outcome = await tasks.ask(taskId, { method: 'elicitation/create', params: approvalElicitationParams(request) }, { timeoutMs, signal });
        if (outcome.kind === 'answered') decision = parseApprovalAnswer(outcome.response);
        else if (outcome.kind === 'expired') decision = { decision: 'denied', reason: `no answer to the approval request within ${timeoutMs} ms` };
        else decision = { decision: 'abort', reason: 'the turn was interrupted while waiting for approval' };
      } catch (error) {
        decision = { decision: 'denied', reason: `the approval request could not be recorded with its task: ${errorMessage(error)}` };
      }
      logger.info('approval answered', { kind: request.kind, environment: request.environmentId, decision: decision.decision, task: taskId });
      return decision;
    },
  };
}

/** Serves the tasks extension: starts calls as tasks, and answers `tasks/get`, `tasks/update`, `tasks/cancel`. */
export class ModernTasks {
  readonly #runs: TaskRuns;
  readonly #approvalTimeoutMs: number;
  readonly #logger: Logger;

  constructor(options: ModernTasksOptions) {
    this.#runs = options.runs;
    this.#approvalTimeoutMs = options.approvalTimeoutMs;
    this.#logger = options.logger ?? silentLogger;
  }

  /**
   * Starts a tool's call as a task (`startTask`, see {@link McpTool}): answers with the task once it is recorded, or with the call's
   * result when it failed before its turn existed (bad arguments, an unknown thread). Approvals
   * wait for `tasks/update`; a client that cannot show forms has them denied at once.
   */
  async call(startTask: NonNullable<McpTool['startTask']>, args: Record<string, unknown>, requestId: RequestId, canElicit: boolean): Promise<Record<string, unknown>> {
    const noForms: Approver = { request: () => Promise.resolve(NO_FORMS) };
    const extra: ToolExtra = {
      requestId,
      // The turn belongs to its thread: only tasks/cancel stops it, never the request.
      signal: new AbortController().signal,
      // The extension sends no progress for tasks: the task's status message says what the turn does.
      sendNotification: () => Promise.resolve(),
      approver: noForms,
      taskApprover: (taskId) => (canElicit ? taskInputApprover(this.#runs.tasks, taskId, this.#approvalTimeoutMs, this.#logger) : noForms),
    };
    let started: TaskStart;
    try {
      started = await startTask(args, extra);
    } catch (error) {
      if (error instanceof ModernError) throw error;
      return { resultType: 'complete', ...errorResult(errorMessage(error)) };
    }
    if ('result' in started) return { resultType: 'complete', ...started.result };
    return { resultType: 'task', ...this.show(started.view) };
  }

  /** `tasks/get`: the task now, with its input requests while it waits for an approval, its result once ended. */
  async get(params: unknown): Promise<Record<string, unknown>> {
    const { taskId } = parseParams(TaskIdParamsSchema, params, 'tasks/get');
    const view = await this.#read(taskId, 'retrieve');
    return { resultType: 'complete', ...this.show(view) };
  }

  /**
   * `tasks/update`: records the answers to the task's waiting approvals, on whichever process the
   * task's turn runs (keys it is not waiting for are ignored, as the extension asks). A task has no
   * requestState to bind answers to: the keys are random, so an answer names exactly an approval
   * the client was shown by tasks/get.
   */
  async update(params: unknown): Promise<Record<string, unknown>> {
    const { taskId, inputResponses } = parseParams(UpdateParamsSchema, params, 'tasks/update');
    let answered: string[];
    try {
      await this.#runs.view(taskId);
      answered = await this.#runs.tasks.answer(taskId, inputResponses);
    } catch (error) {
      throw notFound(error, 'update');
    }
    const ignored = Object.keys(inputResponses).filter((key) => !answered.includes(key));
    if (ignored.length > 0) this.#logger.info('tasks/update: ignored answers to keys the task does not wait for', { task: taskId, keys: ignored.slice(0, 10) });
    return { resultType: 'complete' };
  }

  /** `tasks/cancel`: records the cancellation and interrupts the task's turn (a task already ended keeps its state). */
  async cancel(params: unknown): Promise<Record<string, unknown>> {
    const { taskId } = parseParams(TaskIdParamsSchema, params, 'tasks/cancel');
    try {
      await this.#runs.view(taskId);
      await this.#runs.tasks.cancel(taskId, 'the client cancelled the task (tasks/cancel)');
    } catch (error) {
      throw notFound(error, 'cancel');
    }
    return { resultType: 'complete' };
  }

  /**
   * The task as `tasks/get` shows it now, and whether this process sees its changes (its turn runs
   * here, or it has ended: a turn running in another process changes there); undefined for an id
   * that names no task (bad form, unknown, expired).
   */
  async observe(taskId: string): Promise<{ task: Record<string, unknown>; seenHere: boolean } | undefined> {
    let view: TaskView;
    try {
      view = await this.#runs.tasks.get(taskId);
    } catch (error) {
      if (error instanceof TaskNotFoundError) return undefined;
      throw error;
    }
    return { task: this.show(view), seenHere: view.state !== 'working' || this.#runs.live(taskId) !== undefined };
  }

  /** Calls `listener` whenever the task's state may have changed in this process; returns the unsubscribe. */
  watch(taskId: string, listener: () => void): () => void {
    return this.#runs.tasks.watch(taskId, listener);
  }

  async #read(taskId: string, verb: string): Promise<TaskView> {
    try {
      return await this.#runs.view(taskId);
    } catch (error) {
      throw notFound(error, verb);
    }
  }

  /**
   * The task as the extension shows it. A turn that ended in any way is a `completed` task whose
   * result says how (a failed or interrupted turn is an `isError` result, not a JSON-RPC error);
   * a cancelled one is `cancelled`.
   */
  show(view: TaskView): Record<string, unknown> {
    const task: Record<string, unknown> = {
      taskId: view.taskId,
      status: 'working',
      statusMessage: this.#runs.statusMessage(view, ANSWER_HINT),
      createdAt: view.createdAt,
      lastUpdatedAt: view.lastUpdatedAt,
      ttlMs: view.ttlMs,
      pollIntervalMs: view.pollIntervalMs,
    };
    if (view.state === 'working') {
      if (view.inputRequests !== undefined) Object.assign(task, { status: 'input_required', inputRequests: view.inputRequests });
      return task;
    }
    if (view.state === 'cancelled') return { ...task, status: 'cancelled' };
    return { ...task, status: 'completed', result: this.#runs.result(view) };
  }
}

/** An `isError` result with `text`. */
function errorResult(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

function parseParams<S extends z.ZodType>(schema: S, params: unknown, method: string): z.output<S> {
  const parsed = schema.safeParse(params ?? {});
  if (!parsed.success) throw new ModernError(ModernErrorCode.InvalidParams, `invalid ${method} params: ${problemsOf(parsed.error)}`);
  return parsed.data;
}

/** A task id that names no task (bad form, unknown, expired) is invalid params, as the extension asks; anything else goes on as it is. */
function notFound(error: unknown, verb: string): unknown {
  if (error instanceof TaskNotFoundError) return new ModernError(ModernErrorCode.InvalidParams, `Failed to ${verb} task: ${errorMessage(error)}`);
  return error;
}
