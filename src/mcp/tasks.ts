import { InMemoryTaskStore } from '@modelcontextprotocol/sdk/experimental/tasks';
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
  type CreateTaskResult,
  type ServerNotification,
  type ServerRequest,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { errorMessage } from '../util/errors.js';
import { startTurnCall, type TurnCallContext, type TurnRun } from './turn-call.js';

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
 * The SDK's in-memory task store, plus a hook that interrupts the turn of a task the client
 * cancels (`tasks/cancel` only marks the task cancelled in the store).
 */
export class TurnTaskStore extends InMemoryTaskStore {
  readonly #onCancel = new Map<string, () => void>();

  /** Runs `cancel` when the task is cancelled. */
  whenCancelled(taskId: string, cancel: () => void): void {
    this.#onCancel.set(taskId, cancel);
  }

  /** The task ended: nothing to interrupt any more. */
  forget(taskId: string): void {
    this.#onCancel.delete(taskId);
  }

  override async updateTaskStatus(taskId: string, status: Task['status'], statusMessage?: string, sessionId?: string): Promise<void> {
    await super.updateTaskStatus(taskId, status, statusMessage, sessionId);
    if (status !== 'cancelled') return;
    const cancel = this.#onCancel.get(taskId);
    this.#onCancel.delete(taskId);
    cancel?.();
  }
}

/** Starts one task-augmented call of a task tool from its raw arguments. */
export type TaskTool = (args: unknown, extra: Extra) => Promise<CreateTaskResult>;

/**
 * Runs a turn as an MCP task: answers at once with the task (`working`, its status message naming
 * the thread and turn once they exist), and stores the call's result when the turn ends:
 * `completed`, or `failed` when the result is an error. Progress keeps flowing to the request's
 * progress token until then; `tasks/cancel` interrupts the turn.
 */
export async function createTurnTask(context: TurnCallContext, store: TurnTaskStore, extra: Extra, run: TurnRun, knownThreadId?: string): Promise<CreateTaskResult> {
  const tasks = extra.taskStore;
  if (tasks === undefined) throw new McpError(ErrorCode.InternalError, 'this server has no task store');
  const ttl = Math.min(extra.taskRequestedTtl ?? DEFAULT_TASK_TTL_MS, MAX_TASK_TTL_MS);
  const task = await tasks.createTask({ ttl, pollInterval: TASK_POLL_INTERVAL_MS });
  const call = startTurnCall(context, extra, run, knownThreadId);
  store.whenCancelled(task.taskId, () => call.interrupt('the task was cancelled'));
  void call.result.then(async (result) => {
    store.forget(task.taskId);
    try {
      await tasks.storeTaskResult(task.taskId, result.isError === true ? 'failed' : 'completed', result);
    } catch (error) {
      // A cancelled (or expired) task keeps its state; the turn's end is in the thread anyway.
      context.logger.debug('task result not stored', { task: task.taskId, error: errorMessage(error) });
    }
  });
  const started = await Promise.race([call.started, call.result]);
  if (started !== undefined && !('content' in started)) {
    await tasks.updateTaskStatus(task.taskId, 'working', `thread ${started.threadId}, turn ${started.turnId}`).catch((error: unknown) => {
      context.logger.debug('task status not updated', { task: task.taskId, error: errorMessage(error) });
    });
  }
  return { task: await tasks.getTask(task.taskId) };
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
