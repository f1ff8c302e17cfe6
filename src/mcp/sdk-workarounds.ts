import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  CancelledNotificationSchema,
  CancelTaskRequestSchema,
  GetTaskPayloadRequestSchema,
  GetTaskRequestSchema,
  InitializeRequestSchema,
  ListTasksRequestSchema,
  ListToolsRequestSchema,
  McpError,
  SetLevelRequestSchema,
  isJSONRPCRequest,
  type JSONRPCMessage,
  type RequestId,
  type ServerNotification,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/**
 * Where this server parts from what the MCP SDK (`@modelcontextprotocol/sdk`, the server side)
 * does on its own, in one place. Each entry says what the SDK does, why we differ, and rests on
 * SDK behaviour that `test/unit/mcp/sdk-workarounds.test.ts` checks against the installed SDK, so
 * an upgrade that breaks one fails a named test instead of misbehaving. Nothing else in `src/`
 * reaches into the SDK's internals or casts its types.
 *
 * Also relied on, through the SDK's public API (no workaround, but checked by the same test):
 * `tasks/cancel` reaches the task store as `updateTaskStatus(taskId, 'cancelled')`, where
 * `RecordTaskStore` (tasks.ts) records the cancellation and interrupts the turn; and once `logging/setLevel` has our handler
 * (logging.ts), `sendLoggingMessage` sends every level it is given (we filter), and
 * `getClientVersion()` stays undefined until a client sends `initialize` (logging.ts sends a legacy
 * client's log events only after it has).
 */

/**
 * The SDK version the entries below were checked against. The test fails when another version
 * is installed: re-verify each entry against it, then bump this.
 */
export const PINNED_SDK_VERSION = '1.32.2';

/**
 * Cancellation, checked against SDK 1.32.2. The SDK's own `notifications/cancelled` handler aborts
 * the request's signal and then drops whatever the handler answers, so a cancelled `tools/call`
 * would never be answered. A cancelled turn call must still answer (interrupted, or for a client's
 * own time-out, still running), so `onCancelled` replaces that handler (the SDK keeps one handler
 * per notification method) and the SDK never aborts a request itself.
 */
export function takeOverCancellation(server: Server, onCancelled: (requestId: RequestId, reason: string | undefined) => void): void {
  server.setNotificationHandler(CancelledNotificationSchema, (notification) => {
    const { requestId, reason } = notification.params;
    if (requestId !== undefined) onCancelled(requestId, reason);
  });
}

/**
 * Cancellations that arrive ahead of their call, checked against SDK 1.32.2. The SDK starts a
 * request's handler two microtasks after the transport delivers it (a task-lookup step, then the
 * handler) and a notification's handler one microtask after. A `notifications/cancelled` read in
 * the same chunk as its `tools/call` therefore reaches us before the call's handler has run and
 * registered the call. {@link hold} keeps it until the microtasks of that read have run (a
 * `setImmediate`), by which time the handler has started and {@link take}n it.
 */
export class HeldForCallsStarting<T> {
  readonly #held = new Map<RequestId, T>();

  /** Keeps `value` for the call `requestId` until the handlers of the requests read so far have started. */
  hold(requestId: RequestId, value: T): void {
    this.#held.set(requestId, value);
    setImmediate(() => this.#held.delete(requestId));
  }

  /** What was held for `requestId`, if anything (taken: it is not returned again). */
  take(requestId: RequestId): T | undefined {
    const value = this.#held.get(requestId);
    this.#held.delete(requestId);
    return value;
  }
}

/** JSON-RPC "Invalid Request". */
const INVALID_REQUEST = -32600;

/** JSON-RPC "Invalid params". */
const INVALID_PARAMS = -32602;

/**
 * The requests the SDK server has a handler for, by method, with the schema the SDK parses each
 * with before its handler runs: the SDK's own (`initialize`, MCP Tasks' `tasks/*`, there because
 * the server has a task store) and ours (`logging/setLevel`, `tools/list`, `tools/call`). Left
 * out: `ping`, whose params cannot fail its schema once they pass the JSON-RPC envelope's (the
 * stdio transport answers those), and methods without a handler, which the SDK answers with -32601
 * (method not found) whatever their params.
 */
const PARSED_REQUESTS: ReadonlyMap<string, z.ZodType> = new Map<string, z.ZodType>(
  [
    InitializeRequestSchema,
    SetLevelRequestSchema,
    ListToolsRequestSchema,
    CallToolRequestSchema,
    GetTaskRequestSchema,
    GetTaskPayloadRequestSchema,
    ListTasksRequestSchema,
    CancelTaskRequestSchema,
  ].map((schema) => [schema.shape.method.value, schema]),
);

/**
 * A request whose params the SDK cannot read, checked against SDK 1.32.2. The SDK parses a request
 * with its handler's schema as the first step of the handler, so a failed parse is answered as a
 * failed handler: -32603 (internal error), with zod's issues as JSON text for a message. An
 * `initialize` without `clientInfo` is the client's mistake, not the server's: the connection the
 * SDK server is given (era-split-transport.ts) answers such a request itself with this error,
 * -32602 (invalid params) naming the method and what is wrong where, and the SDK never sees it.
 * Undefined for every other message, which goes to the SDK as it is.
 */
export function unreadableParamsAnswer(message: JSONRPCMessage): JSONRPCMessage | undefined {
  if (!isJSONRPCRequest(message)) return undefined;
  const parsed = PARSED_REQUESTS.get(message.method)?.safeParse(message);
  if (parsed === undefined || parsed.success) return undefined;
  const problem = z.prettifyError(parsed.error).replace(/\n\s*/g, ' ');
  return { jsonrpc: '2.0', id: message.id, error: { code: INVALID_PARAMS, message: `invalid ${message.method} request: ${problem}` } };
}

/**
 * A response whose `result` is not an object, checked against SDK 1.32.2. The SDK's message schema
 * requires an object `result`; a response with another one (an approval answered with a bare
 * `"approved"`) is no message it knows, so it reports an unknown message type and the request it
 * answers waits until its timeout. Our stdio transport gives it this error response for the same
 * request instead, which the SDK delivers to the waiting request (for an approval: a denial at
 * once). Any other message is returned as it is.
 */
export function nonObjectResultAsError(message: unknown): unknown {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return message;
  if (!('result' in message) || 'method' in message || !('id' in message)) return message;
  const { result, id } = message;
  if (typeof result === 'object' && result !== null && !Array.isArray(result)) return message;
  return { jsonrpc: '2.0', id, error: { code: INVALID_REQUEST, message: `the result must be an object, got ${JSON.stringify(result)}` } };
}

/**
 * A notification outside the MCP schema (`codex/event`, as the old `codex mcp-server` sent),
 * checked against SDK 1.32.2. A request handler's `sendNotification` is typed for MCP's own
 * notifications only, but the SDK sends any JSON-RPC notification (it checks capabilities only
 * for the MCP methods it knows), so the type is widened here, once.
 */
export function vendorNotification(method: string, params: Record<string, unknown>): ServerNotification {
  const notification: { method: string; params: Record<string, unknown> } = { method, params };
  return notification as unknown as ServerNotification;
}

/**
 * The JSON-RPC error our handlers throw, checked against SDK 1.32.2. The SDK's `McpError` writes
 * `MCP error <code>: ` before its message, and the SDK answers a request with the thrown error's
 * `code` and `message` as they are, so a client's own `McpError` adds the prefix again ("MCP error
 * -32602: MCP error -32602: …"). This one carries the code and keeps the message as written; it
 * is still an `McpError`, which the SDK's own handlers (`tasks/cancel`) pass on unchanged.
 */
export class McpWireError extends McpError {
  constructor(code: number, message: string, data?: unknown) {
    super(code, message, data);
    this.message = message;
  }
}
