import { InMemoryTaskStore, isTerminal } from '@modelcontextprotocol/sdk/experimental/tasks';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  CreateTaskResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  ListToolsResultSchema,
  McpError,
  type CallToolResult,
  type CreateTaskResult,
  type ServerNotification,
  type ServerRequest,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
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
 * client cancels it (`tasks/cancel` only marks the task cancelled in the store), one says what
 * its turn is doing whenever the task is read, so the status message is always current without
 * a store write (and a status notification) per turn event.
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

/** Starts one task-augmented call of a task tool from its raw arguments. */
export type TaskTool = (args: unknown, extra: Extra) => Promise<CreateTaskResult>;

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

/**
 * The handler the SDK installed for `method`, so a wrapper can delegate to it. The SDK keeps its
 * handlers in a private table; a missing one (an SDK change) fails start-up loudly.
 */
function installedHandler(server: Server, method: string): (request: unknown, extra: Extra) => Promise<unknown> {
  const table: unknown = Reflect.get(server, '_requestHandlers');
  const handler: unknown = table instanceof Map ? table.get(method) : undefined;
  if (typeof handler !== 'function') throw new Error(`the MCP SDK's handler for ${method} was not found; this SDK version is not supported`);
  return async (request, extra) => {
    const result: unknown = await Reflect.apply(handler, server, [request, extra]);
    return result;
  };
}

const ToolCallAnswerSchema = z.union([CallToolResultSchema, CreateTaskResultSchema]);

/**
 * Serves task-augmented calls of `tools` and lists them with `taskSupport: "optional"`. `onCall`
 * runs as each `tools/call` arrives (before any await) and returns what to run when it is answered.
 *
 * Why not the SDK's `registerToolTask`: for a tool with optional task support, the SDK answers a
 * plain call by polling the task store on a timer, which would lose the wait budget and add up
 * to a poll interval to every call. So the tools stay ordinary (plain calls keep the SDK's
 * validation and the usual path), and only calls that carry `task` are routed here.
 */
export function routeTaskCalls(server: McpServer, tools: ReadonlyMap<string, TaskTool>, onCall: (extra: Extra) => () => void): void {
  const inner = server.server;
  const listTools = installedHandler(inner, 'tools/list');
  const callTool = installedHandler(inner, 'tools/call');
  inner.setRequestHandler(ListToolsRequestSchema, async (request, extra) => {
    const listed = ListToolsResultSchema.parse(await listTools(request, extra));
    return { ...listed, tools: listed.tools.map((tool) => (tools.has(tool.name) ? { ...tool, execution: { ...tool.execution, taskSupport: 'optional' as const } } : tool)) };
  });
  inner.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const answered = onCall(extra);
    try {
      const tool = request.params.task === undefined ? undefined : tools.get(request.params.name);
      if (tool !== undefined) return await tool(request.params.arguments ?? {}, extra);
      return ToolCallAnswerSchema.parse(await callTool(request, extra));
    } finally {
      answered();
    }
  });
}
