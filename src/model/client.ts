import type * as OpenAiModule from 'openai';
import type { ClientOptions, OpenAI } from 'openai';
import { z } from 'zod';
import { HANDLED_STREAM_EVENT_TYPES, ResponseStreamEventSchema, StreamEventTypeSchema } from '../protocol/responses.js';
import type { ResponseInputItem, ResponseOutputItem, ResponseStreamEvent, ToolSpec } from '../protocol/responses.js';
import { abortReason, sleep as abortableSleep } from '../util/abort.js';
import { errorMessage, LocalError } from '../util/errors.js';
import { silentLogger } from '../util/logger.js';
import type { Logger } from '../util/logger.js';
import { ModelApiError, ModelConnectionError, ModelError, ModelStreamError } from './errors.js';
import { createHttpFetch } from './http-fetch.js';
import { requestBodyJson } from './request-body.js';
import { SseDecoder } from './sse.js';

/** Retries of HTTP errors (408/409/429/5xx) and connection failures, by default. */
export const DEFAULT_MAX_RETRIES = 4;
/** Retries of dropped or idle streams (and retryable `response.failed`), by default. */
export const DEFAULT_STREAM_MAX_RETRIES = 5;
/** A stream (or a request awaiting its answer) silent this long is treated as dropped. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** The first backoff delay; each retry doubles it, with jitter. */
export const RETRY_BASE_DELAY_MS = 200;
/** The longest computed backoff delay. */
export const RETRY_MAX_DELAY_MS = 10_000;
/** The longest wait a `retry-after` header can impose; longer asks are clamped to this. */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * How long the end of a stream may take to arrive after `response.completed` before the request
 * is aborted. The end is read in the background (the caller has its response already), so the
 * connection is released cleanly and reused instead of being torn down by an abort.
 */
export const STREAM_END_GRACE_MS = 1_000;

/** Sent to the SDK when no key is configured; the `Authorization` header is then left out. */
const PLACEHOLDER_API_KEY = 'no-api-key';

/** The body is sent as JSON text we built (see `request-body.ts`), so the SDK passes it on as is. */
const JSON_BODY_HEADERS = { 'Content-Type': 'application/json' };

let sharedFetch: typeof fetch | undefined;

/** One keep-alive `node:http` fetch for every client that is given none, so they share connections. */
function defaultFetch(): typeof fetch {
  sharedFetch ??= createHttpFetch();
  return sharedFetch;
}

/** What the turn loop asks the model. */
export interface ModelRequest {
  /** The model name, e.g. `gpt-5.1-codex`. */
  model: string;
  /**
   * The whole conversation so far; the base instructions are its first developer message. Items
   * must not be changed once sent: each item's JSON is kept and sent again with later requests.
   */
  input: ResponseInputItem[];
  /** The tools offered. */
  tools: ToolSpec[];
  /** Whether the model may call several tools in one response. */
  parallelToolCalls: boolean;
  /** Reasoning options; when set, encrypted reasoning is requested so it can be passed back. */
  reasoning?: { effort?: string; summary?: string };
  /** Lets the provider reuse the cached prompt prefix across the turns of a thread. */
  promptCacheKey?: string;
}

/** Token usage of a response. */
export interface ModelUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

/** A completed model response. */
export interface ModelResponse {
  /** The response id (`resp_…`). */
  id: string;
  /** The output items, in output order, validated. */
  output: ResponseOutputItem[];
  /** Token usage, when the provider reports it. */
  usage?: ModelUsage;
}

/** Per-call options of {@link ModelClient.respond}. */
export interface RespondOptions {
  /** Aborting cancels the HTTP request at once; `respond` rejects with the signal's reason. */
  signal: AbortSignal;
  /**
   * Receives assistant text as it streams. After a retry (see `onRetry`) the text starts again
   * from the beginning of a new response.
   */
  onTextDelta?: (delta: string) => void;
  /**
   * Called before each retry: `attempt` counts retries of the error's kind (HTTP and connection
   * errors, or stream errors) from 1; `delayMs` is the wait before the retry.
   */
  onRetry?: (attempt: number, error: Error, delayMs: number) => void;
}

/** Options of {@link ModelClient}. */
export interface ModelClientOptions {
  /** The Responses API base URL, e.g. `https://api.openai.com/v1`; `/responses` is appended. */
  baseUrl: string;
  /** The bearer key; `undefined` sends no `Authorization` header (local providers). */
  apiKey: string | undefined;
  /** Extra headers on every request. @default {} */
  headers?: Record<string, string>;
  /** Extra query parameters on every request (e.g. Azure's `api-version`). @default {} */
  queryParams?: Record<string, string>;
  /** Retries of HTTP 408/409/429/5xx and connection failures. @default {@link DEFAULT_MAX_RETRIES} */
  maxRetries?: number;
  /** Retries of dropped or idle streams. @default {@link DEFAULT_STREAM_MAX_RETRIES} */
  streamMaxRetries?: number;
  /** Silence after which a request or stream counts as dropped. @default {@link DEFAULT_IDLE_TIMEOUT_MS} */
  idleTimeoutMs?: number;
  /** The fetch used for HTTP. @default a shared keep-alive `node:http` fetch (see `http-fetch.ts`) */
  fetch?: typeof fetch;
  /** Waits between retries; must reject when `signal` aborts. @default an unref'd timer */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Jitter source in [0, 1). @default Math.random */
  random?: () => number;
  /** @default a silent logger */
  logger?: Logger;
}

/** What one attempt has seen of the stream so far. */
interface StreamState {
  responseId: string | undefined;
  /** Items from `response.output_item.done`, by output index. */
  items: Map<number, ResponseOutputItem>;
  nextIndex: number;
}

/**
 * A client of the OpenAI Responses API (or any compatible endpoint) over the `openai` SDK. It
 * always streams, and applies one retry policy to HTTP errors, connection failures and dropped
 * streams (the SDK's own retries are off).
 */
type OpenAiSdk = typeof OpenAiModule;
let sdkLoading: Promise<OpenAiSdk> | undefined;

/** Loads the `openai` package on first use: it costs ~70 ms of start-up otherwise. */
function loadSdk(): Promise<OpenAiSdk> {
  sdkLoading ??= import('openai');
  return sdkLoading;
}

export class ModelClient {
  private readonly sdkOptions: ClientOptions;
  private sdk?: { module: OpenAiSdk; client: OpenAI };
  private readonly displayUrl: string;
  private readonly maxRetries: number;
  private readonly streamMaxRetries: number;
  private readonly idleTimeoutMs: number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly logger: Logger;

  constructor(options: ModelClientOptions) {
    this.displayUrl = redactUrl(options.baseUrl);
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.streamMaxRetries = options.streamMaxRetries ?? DEFAULT_STREAM_MAX_RETRIES;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.sleep = options.sleep ?? abortableSleep;
    this.random = options.random ?? Math.random;
    this.logger = options.logger ?? silentLogger;
    const headers: Record<string, string | null> = { ...options.headers };
    // The SDK insists on a key; without one, drop the header so no made-up credential is sent,
    // unless the caller supplies its own Authorization header.
    const hasAuthHeader = Object.keys(headers).some((name) => name.toLowerCase() === 'authorization');
    if (options.apiKey === undefined && !hasAuthHeader) headers['Authorization'] = null;
    this.sdkOptions = {
      apiKey: options.apiKey ?? PLACEHOLDER_API_KEY,
      baseURL: options.baseUrl,
      defaultHeaders: headers,
      defaultQuery: { ...options.queryParams },
      maxRetries: 0,
      timeout: this.idleTimeoutMs,
      fetch: options.fetch ?? defaultFetch(),
      // Explicit nulls so the SDK does not fill these from environment variables (only cli/ reads them).
      organization: null,
      project: null,
      adminAPIKey: null,
      webhookSecret: null,
      // The SDK logs to the console, which may be our protocol's stdout.
      logLevel: 'off',
    };
  }

  private async loaded(): Promise<{ module: OpenAiSdk; client: OpenAI }> {
    if (this.sdk === undefined) {
      const module = await loadSdk();
      this.sdk = { module, client: new module.OpenAI(this.sdkOptions) };
    }
    return this.sdk;
  }

  /**
   * Sends one request and folds the streamed answer into a {@link ModelResponse}, retrying
   * transient failures. Rejects with a {@link ModelApiError}, {@link ModelConnectionError} or
   * {@link ModelStreamError} (after retries, or at once when not retryable), a `LocalError`
   * (`INVALID_ARGUMENT`) for a request that does not match the schema or the fetch's own
   * (`INVALID_CONFIG` for network settings that cannot be used), or the signal's reason.
   */
  async respond(request: ModelRequest, options: RespondOptions): Promise<ModelResponse> {
    const { signal } = options;
    if (signal.aborted) throw abortReason(signal);
    const body = requestBodyJson(request);
    let httpRetries = 0;
    let streamRetries = 0;
    for (;;) {
      try {
        return await this.attempt(request, body, options);
      } catch (error) {
        if (signal.aborted) throw abortReason(signal);
        if (!(error instanceof ModelError) || !error.retryable) throw error;
        let attempt: number;
        if (error instanceof ModelStreamError) {
          if (streamRetries >= this.streamMaxRetries) throw error;
          attempt = ++streamRetries;
        } else {
          if (httpRetries >= this.maxRetries) throw error;
          attempt = ++httpRetries;
        }
        const delayMs = this.retryDelay(attempt, error);
        this.logger.warn('model request failed, retrying', {
          attempt,
          delayMs: Math.round(delayMs),
          error: error.message,
        });
        options.onRetry?.(attempt, error, delayMs);
        await this.sleep(delayMs, signal);
        if (signal.aborted) throw abortReason(signal);
      }
    }
  }

  /** The wait before retry number `attempt`: the server's `retry-after`, else backoff with jitter. */
  private retryDelay(attempt: number, error: ModelError): number {
    if (error instanceof ModelApiError && error.retryAfterMs !== undefined) {
      return Math.min(error.retryAfterMs, MAX_RETRY_AFTER_MS);
    }
    const exponential = RETRY_BASE_DELAY_MS * 2 ** Math.min(attempt - 1, 30);
    const jittered = exponential * (0.8 + 0.4 * this.random());
    return Math.min(RETRY_MAX_DELAY_MS, jittered);
  }

  /**
   * One HTTP request and its stream, with its own controller (linked to the caller's signal).
   * The SDK sends the request and maps HTTP and connection failures (`asResponse()`); the event
   * stream is decoded here (see `sse.ts`), which costs a fraction of the SDK's stream decoding.
   * After `response.completed` the rest of the stream (normally just its end) is read in the
   * background, see {@link STREAM_END_GRACE_MS}; every other way out aborts the request at once.
   */
  private async attempt(request: ModelRequest, body: string, options: RespondOptions): Promise<ModelResponse> {
    const { signal } = options;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    let idle = false;
    let timer: NodeJS.Timeout | undefined;
    const rearm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        idle = true;
        controller.abort();
      }, this.idleTimeoutMs);
      timer.unref?.();
    };
    const release = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    const state: StreamState = { responseId: undefined, items: new Map(), nextIndex: 0 };
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      rearm();
      this.logger.debug('model request', { model: request.model, inputItems: request.input.length, tools: request.tools.length });
      const sdk = await this.loaded();
      let response: Response;
      try {
        response = await sdk.client.post('/responses', { body, headers: JSON_BODY_HEADERS, stream: true, signal: controller.signal }).asResponse();
      } catch (error) {
        throw this.requestError(sdk.module, error, signal, idle);
      }
      if (response.body === null) {
        throw new ModelStreamError({ reason: 'dropped', message: `model API at ${this.displayUrl} answered without a body` });
      }
      reader = response.body.getReader();
      const decoder = new SseDecoder();
      let doneMarker = false;
      for (;;) {
        const chunk = await reader.read().catch((error: unknown) => {
          throw this.streamError(error, signal, idle, state);
        });
        for (const sse of chunk.done ? decoder.end() : decoder.push(chunk.value)) {
          // As the SDK: nothing after `[DONE]`, and Assistants-API `thread.*` events are not ours.
          if (doneMarker || sse.event?.startsWith('thread.') === true) continue;
          if (sse.data.startsWith('[DONE]')) {
            doneMarker = true;
            continue;
          }
          rearm();
          // Named events we do not act on are not even parsed (`response.in_progress` alone repeats
          // the request's tools); unnamed events are, and their `type` decides.
          if (sse.event !== null && sse.event.startsWith('response.') && !HANDLED_STREAM_EVENT_TYPES.includes(sse.event)) continue;
          const event = this.parseEvent(sse.data, state);
          const completed = this.handleEvent(event, state, options.onTextDelta);
          if (completed !== undefined) {
            void finishStream(reader, controller, release);
            reader = undefined;
            return completed;
          }
        }
        if (chunk.done) break;
      }
      // An aborted request errors the stream, so reaching its end means it ended early.
      throw new ModelStreamError({
        reason: 'dropped',
        message: `model stream from ${this.displayUrl} ended before response.completed`,
        responseId: state.responseId,
      });
    } catch (error) {
      release();
      // Stop reading first (so cleanup cannot wait on the network), then close the body.
      controller.abort();
      await reader?.cancel().catch(() => undefined);
      throw error;
    }
  }

  /** One event's data as JSON; an `{error}` object is the stream reporting a failure (as the SDK reads it). */
  private parseEvent(data: string, state: StreamState): unknown {
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch (error) {
      throw new ModelStreamError(
        {
          reason: 'invalid',
          responseId: state.responseId,
          message: `model stream from ${this.displayUrl} sent an event that is not JSON: ${errorMessage(error)}`,
        },
        { cause: error },
      );
    }
    if (typeof event === 'object' && event !== null && 'error' in event && Boolean(event.error)) return failureEvent(event.error);
    return event;
  }

  /** Acts on one event; returns the response once `response.completed` arrives. */
  private handleEvent(
    raw: unknown,
    state: StreamState,
    onTextDelta: ((delta: string) => void) | undefined,
  ): ModelResponse | undefined {
    const typed = StreamEventTypeSchema.safeParse(raw);
    if (!typed.success || !HANDLED_STREAM_EVENT_TYPES.includes(typed.data.type)) return undefined;
    const parsed = ResponseStreamEventSchema.safeParse(raw);
    if (!parsed.success) {
      throw new ModelStreamError({
        reason: 'invalid',
        message: `model stream from ${this.displayUrl} sent an invalid ${typed.data.type} event: ${z.prettifyError(parsed.error)}`,
        responseId: state.responseId,
      });
    }
    const event: ResponseStreamEvent = parsed.data;
    switch (event.type) {
      case 'response.created':
        state.responseId = event.response.id;
        return undefined;
      case 'response.output_text.delta':
        onTextDelta?.(event.delta);
        return undefined;
      case 'response.output_item.done': {
        const index = event.output_index ?? state.nextIndex;
        state.items.set(index, event.item);
        state.nextIndex = Math.max(state.nextIndex, index + 1);
        return undefined;
      }
      case 'response.completed': {
        const final = event.response.output ?? [];
        const streamed = [...state.items.entries()].sort(([a], [b]) => a - b).map(([, item]) => item);
        const usage = event.response.usage;
        return {
          id: event.response.id,
          output: final.length > 0 ? final : streamed,
          ...(usage == null
            ? {}
            : { usage: { inputTokens: usage.input_tokens, outputTokens: usage.output_tokens, totalTokens: usage.total_tokens } }),
        };
      }
      case 'response.failed': {
        const code = event.response.error?.code ?? undefined;
        const message = event.response.error?.message ?? 'no message';
        throw new ModelStreamError({
          reason: 'failed',
          code,
          responseId: event.response.id ?? state.responseId,
          message: `model response from ${this.displayUrl} failed${code === undefined ? '' : ` (${code})`}: ${message}`,
        });
      }
      case 'response.incomplete': {
        const why = event.response.incomplete_details?.reason ?? 'unknown reason';
        throw new ModelStreamError({
          reason: 'incomplete',
          responseId: event.response.id ?? state.responseId,
          message: `model response from ${this.displayUrl} is incomplete: ${why}`,
        });
      }
      case 'error': {
        const code = event.code ?? undefined;
        throw new ModelStreamError({
          reason: 'error',
          code,
          responseId: state.responseId,
          message: `model stream from ${this.displayUrl} reported an error${code === undefined ? '' : ` (${code})`}: ${event.message ?? 'no message'}`,
        });
      }
    }
  }

  /** Maps a failure before the stream started to our error classes. */
  private requestError(sdk: OpenAiSdk, error: unknown, signal: AbortSignal, idle: boolean): Error {
    if (signal.aborted) return abortReason(signal);
    if (idle) return this.idleError(undefined);
    if (error instanceof sdk.APIUserAbortError) return abortReason(signal);
    if (error instanceof sdk.APIConnectionError) {
      const cause: unknown = error.cause ?? error;
      // Our fetch would not send it (network settings that cannot be used): a retry cannot help.
      if (cause instanceof LocalError) return new LocalError(cause.code, `cannot reach the model API at ${this.displayUrl}: ${cause.message}`, { cause });
      return new ModelConnectionError(`cannot reach the model API at ${this.displayUrl}: ${errorMessage(cause)}`, { cause });
    }
    if (error instanceof sdk.APIError) {
      // The SDK's error class is generic over `any`; read its fields as unknown.
      const status: unknown = error.status;
      const headers: unknown = error.headers;
      const body: unknown = error.error;
      if (typeof status === 'number') {
        return ModelApiError.from(status, apiErrorBody(body, error.message, status), headers instanceof Headers ? headers : undefined, {
          baseUrl: this.displayUrl,
        });
      }
    }
    return error instanceof Error ? error : new Error(errorMessage(error));
  }

  /** Maps a failure while reading the stream (a broken connection, an abort) to our error classes. */
  private streamError(error: unknown, signal: AbortSignal, idle: boolean, state: StreamState): Error {
    if (signal.aborted) return abortReason(signal);
    if (idle) return this.idleError(state);
    return new ModelStreamError(
      {
        reason: 'dropped',
        responseId: state.responseId,
        message: `model stream from ${this.displayUrl} broke before response.completed: ${describeCause(error)}`,
      },
      { cause: error },
    );
  }

  private idleError(state: StreamState | undefined): ModelStreamError {
    return new ModelStreamError({
      reason: 'idle-timeout',
      responseId: state?.responseId,
      message: `model API at ${this.displayUrl} sent nothing for ${this.idleTimeoutMs} ms`,
    });
  }
}

/**
 * The error body as the server sent it, recovered from the SDK's error: the `{error}` object
 * when the body was one, else the body text (the SDK prefixes its message with the status).
 */
function apiErrorBody(inner: unknown, message: string, status: number): unknown {
  if (inner !== undefined) return { error: inner };
  const text = message.startsWith(`${status} `) ? message.slice(`${status} `.length) : message;
  return text === 'status code (no body)' ? undefined : text;
}

/** A stream failure's message with its cause (undici says `terminated`, the cause says why). */
function describeCause(error: unknown): string {
  const message = errorMessage(error);
  if (error instanceof Error && error.cause !== undefined) return `${message} (${errorMessage(error.cause)})`;
  return message;
}

/** The base URL without credentials or query, for messages and logs. */
function redactUrl(baseUrl: string): string {
  try {
    const url = new URL(baseUrl);
    url.username = '';
    url.password = '';
    url.search = '';
    url.hash = '';
    return url.toString().replace(/\/$/, '');
  } catch {
    return baseUrl;
  }
}

/**
 * An event carrying an `error` (some providers report failures so) as the `error` event it means,
 * worded as the SDK's stream worded it (which threw an `APIError` for such events).
 */
function failureEvent(error: unknown): { type: 'error'; code: string | undefined; message: string } {
  const fields = typeof error === 'object' && error !== null ? error : {};
  const code = 'code' in fields && typeof fields.code === 'string' ? fields.code : undefined;
  const message: unknown = 'message' in fields ? fields.message : undefined;
  let text: string;
  if (typeof message === 'string' && message.length > 0) text = message;
  else if (message !== undefined && message !== null && message !== '' && message !== false && message !== 0) text = JSON.stringify(message);
  else text = JSON.stringify(error);
  return { type: 'error', code, message: text };
}

/**
 * Reads what follows `response.completed` (normally only the end of the stream) and then releases
 * the request, so the connection goes back to the pool; a stream that does not end within
 * {@link STREAM_END_GRACE_MS} (or the caller's abort) is aborted instead. Never rejects.
 */
async function finishStream(reader: ReadableStreamDefaultReader<Uint8Array>, controller: AbortController, release: () => void): Promise<void> {
  const grace = setTimeout(() => controller.abort(), STREAM_END_GRACE_MS);
  grace.unref?.();
  let ended = false;
  try {
    while (!(await reader.read()).done);
    ended = true;
  } catch {
    // The response was already delivered; a failure after it changes nothing.
  } finally {
    clearTimeout(grace);
    release();
    if (!ended) {
      controller.abort();
      await reader.cancel().catch(() => undefined);
    }
  }
}
