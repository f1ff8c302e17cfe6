import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  ToolSchema,
  type CallToolResult,
  type CreateTaskResult,
  type ListToolsResult,
  type ProgressToken,
  type RequestId,
  type ServerNotification,
  type ServerRequest,
  type Tool,
  type ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Approver } from '../agent/approvals.js';
import type { TaskView } from '../session/thread-tasks.js';
import { errorMessage } from '../util/errors.js';
import { McpWireError } from './sdk-workarounds.js';

/**
 * What a tool's handler gets with a call, in either MCP era: the legacy era passes the SDK's
 * request extra (which has all of this), the modern era (modern-era.ts) builds its own.
 */
export interface ToolExtra {
  requestId: RequestId;
  /** Aborts when the call is cancelled or the connection closes. */
  signal: AbortSignal;
  _meta?: { progressToken?: ProgressToken };
  sendNotification(notification: ServerNotification): Promise<void>;
  /** Asks the user's approvals of this call; undefined: `elicitation/create` to the connected client (legacy era). */
  approver?: Approver;
  /**
   * For a call run as a task: the approver of its turn, given the task's id once recorded (the
   * tasks extension asks through the task's records, see task-runs.ts); undefined: {@link approver}.
   */
  taskApprover?: (taskId: string) => Approver;
  /** Told the thread and turn of the call once its turn is accepted (the modern era records the turn's approvals with it). */
  onTurnStarted?: (threadId: string, turnId: string) => void;
  /** Aborts, with a `clientCancellation` reason, when the client cancels the call; undefined: tracked by `CallCancellations` (legacy era). */
  cancelled?: AbortSignal;
}

/** What starting a call as a task did: made the task, or answered the call at once (it failed before its turn existed). */
export type TaskStart = { view: TaskView } | { result: CallToolResult };

/** What a task-augmented call's handler gets: the SDK's request extra, with its task store (legacy era only). */
export type TaskToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/**
 * One MCP tool as written: its schemas are zod, and what `tools/list` advertises is derived from
 * them. `I` and `O` must be object schemas (checked when the tool is defined).
 */
export interface ToolSpec<I extends z.ZodType, O extends z.ZodType> {
  name: string;
  title: string;
  description: string;
  /** The arguments; the advertised `inputSchema` is derived from it and every call is parsed with it. */
  input: I;
  /** The `structuredContent` of a successful result; the advertised `outputSchema` is derived from it. */
  output: O;
  annotations?: ToolAnnotations;
  /** Answers a call; a failure the caller should see is an `isError` result. */
  run: (args: z.output<I>, extra: ToolExtra) => CallToolResult | Promise<CallToolResult>;
  /** Answers a task-augmented call (MCP Tasks, 2025-11-25 form); a tool without it is listed with `taskSupport: "forbidden"`. */
  runAsTask?: (args: z.output<I>, extra: TaskToolExtra) => Promise<CreateTaskResult>;
  /** Starts a call as a task of the tasks extension (modern era, modern-tasks.ts); a tool without it answers such clients as usual. */
  startTask?: (args: z.output<I>, extra: ToolExtra) => Promise<TaskStart>;
}

/** A tool ready to serve (see {@link defineTool}). */
export interface McpTool {
  readonly name: string;
  /** Its `tools/list` entry, derived once, when first read (not at start-up: `initialize` does not need it). */
  readonly listing: Tool;
  /** Parses `args` and runs the tool; bad arguments (or a result off its output schema) throw an `McpError`. */
  call(args: unknown, extra: ToolExtra): Promise<CallToolResult>;
  /** The same as an MCP task; undefined when the tool has no task support. */
  readonly callAsTask: ((args: unknown, extra: TaskToolExtra) => Promise<CreateTaskResult>) | undefined;
  /** Parses `args` and starts the call as a task of the tasks extension; undefined when the tool has none. */
  readonly startTask: ((args: unknown, extra: ToolExtra) => Promise<TaskStart>) | undefined;
}

/**
 * `schema` as the JSON Schema `tools/list` advertises (draft-07, for what a caller sends with
 * `io: "input"`, for what the tool returns with `io: "output"`), checked to be an object schema as
 * MCP requires.
 */
function advertised(name: string, schema: z.ZodType, io: 'input' | 'output'): Tool['inputSchema'] {
  const parsed = ToolSchema.shape.inputSchema.safeParse(z.toJSONSchema(schema, { target: 'draft-7', io }));
  if (!parsed.success) throw new Error(`the ${io} schema of MCP tool ${name} is not an object schema: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** `environments[0].id` for the path `['environments', 0, 'id']`. */
function dotPath(path: readonly PropertyKey[]): string {
  return path.map((segment, index) => (typeof segment === 'number' ? `[${segment}]` : index === 0 ? String(segment) : `.${String(segment)}`)).join('');
}

/** Each problem on a line: what is wrong, and where. */
function problems(error: z.ZodError): string {
  return error.issues.map((issue) => (issue.path.length === 0 ? issue.message : `${issue.message} at ${dotPath(issue.path)}`)).join('\n');
}

/**
 * Makes a tool from its spec: the JSON Schemas of its listing are derived once, when the listing
 * is first read, and every call's arguments are parsed with `spec.input` (an error names the
 * tool, the problem and where).
 */
export function defineTool<I extends z.ZodType, O extends z.ZodType>(spec: ToolSpec<I, O>): McpTool {
  const { name, runAsTask, startTask } = spec;
  let listing: Tool | undefined;
  const parse = (args: unknown): z.output<I> => {
    const parsed = spec.input.safeParse(args);
    if (!parsed.success) throw new McpWireError(ErrorCode.InvalidParams, `Input validation error: Invalid arguments for tool ${name}: ${problems(parsed.error)}`);
    return parsed.data;
  };
  return {
    name,
    get listing(): Tool {
      listing ??= {
        name,
        title: spec.title,
        description: spec.description,
        inputSchema: advertised(name, spec.input, 'input'),
        outputSchema: advertised(name, spec.output, 'output'),
        ...(spec.annotations === undefined ? {} : { annotations: spec.annotations }),
        execution: { taskSupport: runAsTask === undefined ? 'forbidden' : 'optional' },
      };
      return listing;
    },
    call: async (args, extra) => {
      const result = await spec.run(parse(args), extra);
      if (result.isError === true) return result;
      const structured = spec.output.safeParse(result.structuredContent);
      if (!structured.success)
        throw new McpWireError(ErrorCode.InvalidParams, `Output validation error: Invalid structured content for tool ${name}: ${problems(structured.error)}`);
      return result;
    },
    callAsTask: runAsTask === undefined ? undefined : (args, extra) => runAsTask(parse(args), extra),
    startTask: startTask === undefined ? undefined : (args, extra) => startTask(parse(args), extra),
  };
}

/** An `isError` result with `text`. */
function errorResult(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

/** A set of tools by name, served the same way in both MCP eras. */
export interface ToolTable {
  /** The `tools/list` entries, in the order the tools were given (made when first read). */
  readonly listings: readonly Tool[];
  /** The tool named `name`, if any. */
  get(name: string): McpTool | undefined;
  /**
   * A plain call: every failure (an unknown tool, bad arguments, a failure of the tool) is an
   * `isError` result, never a thrown error.
   */
  call(name: string, args: Record<string, unknown>, extra: ToolExtra): Promise<CallToolResult>;
}

/** Indexes `tools` by name (two with one name is a programming error). */
export function toolTable(tools: readonly McpTool[]): ToolTable {
  const byName = new Map<string, McpTool>();
  for (const tool of tools) {
    if (byName.has(tool.name)) throw new Error(`two MCP tools are named ${tool.name}`);
    byName.set(tool.name, tool);
  }
  let listings: readonly Tool[] | undefined;
  return {
    get listings(): readonly Tool[] {
      listings ??= tools.map((tool) => tool.listing);
      return listings;
    },
    get: (name) => byName.get(name),
    call: async (name, args, extra) => {
      try {
        const tool = byName.get(name);
        if (tool === undefined) throw new McpWireError(ErrorCode.InvalidParams, `Tool ${name} not found`);
        return await tool.call(args, extra);
      } catch (error) {
        return errorResult(errorMessage(error));
      }
    },
  };
}

/**
 * Serves `tools` on `server` (the legacy era) and returns their table for the modern era. `tools/list` answers with the listings, made
 * at the first one. A plain `tools/call` answers errors as `isError` results; a
 * task-augmented one creates the tool's task, and is refused with a JSON-RPC error when the tool
 * has none (`-32601`, as MCP asks) or the call is bad. `onCall` runs as each call arrives, before
 * any await; what it returns runs once it is answered.
 */
export function serveTools(server: Server, tools: readonly McpTool[], onCall: (requestId: RequestId) => () => void): ToolTable {
  const table = toolTable(tools);
  let listed: ListToolsResult | undefined;
  server.setRequestHandler(ListToolsRequestSchema, () => (listed ??= { tools: [...table.listings] }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult | CreateTaskResult> => {
    const answered = onCall(extra.requestId);
    try {
      const { name, arguments: args = {}, task } = request.params;
      if (task === undefined) return await table.call(name, args, extra);
      const tool = table.get(name);
      if (tool === undefined) throw new McpWireError(ErrorCode.InvalidParams, `Tool ${name} not found`);
      if (tool.callAsTask === undefined)
        throw new McpWireError(ErrorCode.MethodNotFound, `Tool ${name} does not run as a task (its execution.taskSupport is "forbidden"): call it without \`task\``);
      return await tool.callAsTask(args, extra);
    } finally {
      answered();
    }
  });
  return table;
}
