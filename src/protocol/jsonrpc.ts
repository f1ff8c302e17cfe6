import { z } from 'zod';

/**
 * The JSON-RPC "lite" envelope used by the Codex exec-server: JSON-RPC 2.0 semantics without the
 * `"jsonrpc"` field (accepted and ignored when present), one JSON object per message.
 */

/** A request id: an integer or a string, echoed verbatim. */
export const RequestIdSchema = z.union([z.number().int(), z.string()]);
/** A request id. */
export type RequestId = z.infer<typeof RequestIdSchema>;

/** JSON-RPC error codes used on the exec-server wire. */
export const RpcErrorCode = {
  /** Also used for unparseable messages (with id -1), as the Codex exec-server does. */
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  NotFound: -32004,
  SessionAlreadyAttached: -32010,
} as const;

/** The error object of an error response. */
export const ErrorObjectSchema = z.looseObject({
  code: z.number().int(),
  message: z.string(),
  data: z.unknown().optional(),
});
/** The error object of an error response. */
export type ErrorObject = z.infer<typeof ErrorObjectSchema>;

/** A request: has `id` and `method`. */
export const RequestMessageSchema = z.looseObject({
  id: RequestIdSchema,
  method: z.string(),
  params: z.unknown().optional(),
});
/** A request message. */
export type RequestMessage = z.infer<typeof RequestMessageSchema>;

/** A notification: has `method`, no `id`. */
export const NotificationMessageSchema = z.looseObject({
  method: z.string(),
  params: z.unknown().optional(),
});
/** A notification message. */
export type NotificationMessage = z.infer<typeof NotificationMessageSchema>;

/** A successful response. */
export const ResultMessageSchema = z.looseObject({
  id: RequestIdSchema,
  result: z.unknown(),
});

/** An error response. The id may be -1 (or null from other peers) when the request was unreadable. */
export const ErrorMessageSchema = z.looseObject({
  id: z.union([RequestIdSchema, z.null()]),
  error: ErrorObjectSchema,
});

/** Any message after classification. */
export type IncomingMessage =
  | { kind: 'request'; id: RequestId; method: string; params: unknown }
  | { kind: 'notification'; method: string; params: unknown }
  | { kind: 'result'; id: RequestId; result: unknown }
  | { kind: 'error'; id: RequestId | null; error: ErrorObject };

/** Why a message could not be classified. */
export type ClassifyFailure = { kind: 'invalid'; reason: string };

/**
 * Classifies one decoded JSON value. Lenient: unknown fields and a `"jsonrpc"` field are ignored.
 */
export function classifyMessage(value: unknown): IncomingMessage | ClassifyFailure {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { kind: 'invalid', reason: 'expected a JSON-RPC object' };
  }
  const record = value as Record<string, unknown>;
  if ('method' in record) {
    if ('id' in record) {
      const parsed = RequestMessageSchema.safeParse(value);
      if (!parsed.success) return { kind: 'invalid', reason: 'request id must be an integer or a string' };
      return { kind: 'request', id: parsed.data.id, method: parsed.data.method, params: parsed.data.params };
    }
    const parsed = NotificationMessageSchema.safeParse(value);
    if (!parsed.success) return { kind: 'invalid', reason: 'method must be a string' };
    return { kind: 'notification', method: parsed.data.method, params: parsed.data.params };
  }
  if ('error' in record) {
    const parsed = ErrorMessageSchema.safeParse(value);
    if (!parsed.success) return { kind: 'invalid', reason: 'malformed error response' };
    return { kind: 'error', id: parsed.data.id, error: parsed.data.error };
  }
  if ('result' in record) {
    const parsed = ResultMessageSchema.safeParse(value);
    if (!parsed.success) return { kind: 'invalid', reason: 'response id must be an integer or a string' };
    return { kind: 'result', id: parsed.data.id, result: parsed.data.result };
  }
  return { kind: 'invalid', reason: 'message has neither method, result nor error' };
}

/** A method's name with its params and result schemas (the JSON-RPC connection engine serves and calls these). */
export interface MethodSpec<P extends z.ZodType, R extends z.ZodType> {
  readonly method: string;
  readonly params: P;
  readonly result: R;
}

/** A notification's name with its params schema. */
export interface NotificationSpec<P extends z.ZodType> {
  readonly method: string;
  readonly params: P;
}

/** A {@link MethodSpec}. */
export function methodSpec<P extends z.ZodType, R extends z.ZodType>(name: string, params: P, result: R): MethodSpec<P, R> {
  return { method: name, params, result };
}

/** A {@link NotificationSpec}. */
export function notificationSpec<P extends z.ZodType>(name: string, params: P): NotificationSpec<P> {
  return { method: name, params };
}
