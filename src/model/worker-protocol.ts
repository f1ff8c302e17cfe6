/**
 * The messages between the main thread and the model worker thread (see `worker-client.ts` and
 * `worker-host.ts`), and the model client's errors as they cross: structured clones of small
 * objects, checked on arrival. The worker validates the stream's events itself, so a response's
 * output items cross as they are and are not parsed a second time.
 *
 * Both ends are this build, so a message is not outside data: its check guards against our own
 * bugs. The messages of every request and of every network chunk (`respond`, `delta`, `done`)
 * are checked by hand ({@link readToWorker}, {@link readFromWorker}), which costs nothing next to
 * a schema's parse and copy (a zod run per message was ~1% of the main thread's CPU and ~2% of the
 * worker's at 128 concurrent turns); the rare ones (errors, retries, pings) and any message the
 * hand check refuses go through the schemas, so a malformed message still fails with the schema's
 * account of what is wrong.
 */
import { z } from 'zod';
import type { ResponseOutputItem } from '../protocol/responses.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import { ModelApiError, ModelConnectionError, ModelStreamError } from './errors.js';

/** What a `ModelClient` in the worker is made from: its options that can cross a thread. */
export const ModelClientSettingsSchema = z.object({
  baseUrl: z.string(),
  /** `undefined` sends no `Authorization` header, as `ModelClientOptions.apiKey`. */
  apiKey: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  queryParams: z.record(z.string(), z.string()).optional(),
  maxRetries: z.number().int().nonnegative().optional(),
  streamMaxRetries: z.number().int().nonnegative().optional(),
  idleTimeoutMs: z.number().positive().optional(),
});

/** See {@link ModelClientSettingsSchema}. */
export type ModelClientSettings = z.infer<typeof ModelClientSettingsSchema>;

const RequestSummarySchema = z.object({ model: z.string(), inputItems: z.number(), tools: z.number() });

/** Main thread → worker. */
export const ToWorkerSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('respond'),
    id: z.number(),
    settings: ModelClientSettingsSchema,
    /** The request body's JSON text, built on the main thread (where the history's item JSON is kept). */
    body: z.string(),
    summary: RequestSummarySchema,
    /** Whether the caller wants text deltas and retry notices; none are posted otherwise. */
    textDeltas: z.boolean(),
    retries: z.boolean(),
  }),
  z.object({ type: z.literal('abort'), id: z.number() }),
  /** Answered with `pong` at once: tells a busy worker from a stuck one. */
  z.object({ type: z.literal('ping') }),
]);

/** See {@link ToWorkerSchema}. */
export type ToWorker = z.infer<typeof ToWorkerSchema>;

const LocalErrorCodeSchema = z.enum(Object.values(LocalErrorCode));

/** A model client error as it crosses the thread boundary, enough to rebuild it with its class and fields. */
const WireErrorSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('api'),
    message: z.string(),
    status: z.number(),
    apiMessage: z.string(),
    code: z.string().optional(),
    type: z.string().optional(),
    requestId: z.string().optional(),
    retryAfterMs: z.number().optional(),
  }),
  z.object({ kind: z.literal('connection'), message: z.string() }),
  z.object({
    kind: z.literal('stream'),
    message: z.string(),
    reason: z.enum(['dropped', 'idle-timeout', 'failed', 'error', 'incomplete', 'invalid']),
    code: z.string().optional(),
    responseId: z.string().optional(),
  }),
  z.object({ kind: z.literal('local'), message: z.string(), code: LocalErrorCodeSchema }),
  z.object({ kind: z.literal('other'), message: z.string(), name: z.string() }),
]);

/** See {@link WireErrorSchema}. */
export type WireError = z.infer<typeof WireErrorSchema>;

/** Output items were validated by the worker's stream fold; this only checks that an array arrived. */
const OutputItemsSchema = z.custom<ResponseOutputItem[]>((value) => Array.isArray(value), 'expected an array of output items');

const ModelResponseSchema = z.object({
  id: z.string(),
  output: OutputItemsSchema,
  usage: z.object({ inputTokens: z.number(), outputTokens: z.number(), totalTokens: z.number() }).optional(),
});

/** Worker → main thread. `done` and `failed` end their request. */
export const FromWorkerSchema = z.discriminatedUnion('type', [
  /** Text deltas of one request, joined: one message per chunk read from the network, not per event. */
  z.object({ type: z.literal('delta'), id: z.number(), text: z.string() }),
  z.object({ type: z.literal('retry'), id: z.number(), attempt: z.number(), delayMs: z.number(), error: WireErrorSchema }),
  z.object({ type: z.literal('done'), id: z.number(), response: ModelResponseSchema }),
  z.object({ type: z.literal('failed'), id: z.number(), error: WireErrorSchema }),
  z.object({ type: z.literal('pong') }),
  /** Posted once, when the worker serves. */
  z.object({ type: z.literal('ready') }),
]);

/** See {@link FromWorkerSchema}. */
export type FromWorker = z.infer<typeof FromWorkerSchema>;

/** A message read by {@link readToWorker} or {@link readFromWorker}: the message, or what is wrong with it. */
export type ReadMessage<T> = { ok: true; message: T } | { ok: false; error: string };

/** A `respond` message as {@link readToWorker} reads it: its settings not validated yet. */
export type RespondMessage = Omit<Extract<ToWorker, { type: 'respond' }>, 'settings'> & { settings: Record<string, unknown> };

/** A message to the worker as {@link readToWorker} reads it. */
export type ReadToWorker = RespondMessage | Exclude<ToWorker, { type: 'respond' }>;

/** A finite number, as `z.number()` accepts it. */
const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
/** The worker's stream fold validated the items: an array is all that is checked, as `OutputItemsSchema` does. */
const isOutputItems = (value: unknown): value is ResponseOutputItem[] => Array.isArray(value);

/**
 * A message posted to the worker. A `respond` message's `settings` is only checked to be an object
 * here: the host validates it with {@link ModelClientSettingsSchema} when it builds a client from
 * it, once per distinct settings rather than once per request.
 */
export function readToWorker(data: unknown): ReadMessage<ReadToWorker> {
  if (isObject(data) && data.type === 'respond') {
    const { id, settings, body, summary, textDeltas, retries } = data;
    if (
      isNumber(id) &&
      isObject(settings) &&
      typeof body === 'string' &&
      isObject(summary) &&
      typeof summary.model === 'string' &&
      isNumber(summary.inputItems) &&
      isNumber(summary.tools) &&
      typeof textDeltas === 'boolean' &&
      typeof retries === 'boolean'
    ) {
      const { model, inputItems, tools } = summary;
      return { ok: true, message: { type: 'respond', id, settings, body, summary: { model, inputItems, tools }, textDeltas, retries } };
    }
  }
  return bySchema(ToWorkerSchema, data);
}

/** A message posted by the worker. */
export function readFromWorker(data: unknown): ReadMessage<FromWorker> {
  if (isObject(data) && isNumber(data.id)) {
    const { id, response } = data;
    if (data.type === 'delta' && typeof data.text === 'string') return { ok: true, message: { type: 'delta', id, text: data.text } };
    if (data.type === 'done' && isObject(response) && typeof response.id === 'string' && isOutputItems(response.output)) {
      const { usage } = response;
      if (usage === undefined) return { ok: true, message: { type: 'done', id, response: { id: response.id, output: response.output } } };
      if (isObject(usage) && isNumber(usage.inputTokens) && isNumber(usage.outputTokens) && isNumber(usage.totalTokens)) {
        const counts = { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, totalTokens: usage.totalTokens };
        return { ok: true, message: { type: 'done', id, response: { id: response.id, output: response.output, usage: counts } } };
      }
    }
  }
  return bySchema(FromWorkerSchema, data);
}

function bySchema<S extends z.ZodType>(schema: S, data: unknown): ReadMessage<z.output<S>> {
  const parsed = schema.safeParse(data);
  return parsed.success ? { ok: true, message: parsed.data } : { ok: false, error: z.prettifyError(parsed.error) };
}

/** An error thrown in the worker, as posted. */
export function toWireError(error: unknown): WireError {
  const message = errorMessage(error);
  if (error instanceof ModelApiError) {
    return {
      kind: 'api',
      message,
      status: error.status,
      apiMessage: error.apiMessage,
      code: error.code,
      type: error.type,
      requestId: error.requestId,
      retryAfterMs: error.retryAfterMs,
    };
  }
  if (error instanceof ModelConnectionError) return { kind: 'connection', message };
  if (error instanceof ModelStreamError) return { kind: 'stream', message, reason: error.reason, code: error.code, responseId: error.responseId };
  if (error instanceof LocalError) return { kind: 'local', message, code: error.code };
  return { kind: 'other', message, name: error instanceof Error ? error.name : 'Error' };
}

/** The error a {@link WireError} stands for, with the class and fields it had in the worker. */
export function fromWireError(wire: WireError): Error {
  switch (wire.kind) {
    case 'api': {
      const error = new ModelApiError({
        status: wire.status,
        apiMessage: wire.apiMessage,
        code: wire.code,
        type: wire.type,
        requestId: wire.requestId,
        retryAfterMs: wire.retryAfterMs,
      });
      // The worker's message already names the endpoint.
      error.message = wire.message;
      return error;
    }
    case 'connection':
      return new ModelConnectionError(wire.message);
    case 'stream':
      return new ModelStreamError({ reason: wire.reason, message: wire.message, code: wire.code, responseId: wire.responseId });
    case 'local':
      return new LocalError(wire.code, wire.message);
    case 'other': {
      const error = new Error(wire.message);
      error.name = wire.name;
      return error;
    }
  }
}
