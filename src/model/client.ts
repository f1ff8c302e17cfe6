import { randomUUID } from 'node:crypto';
import type { ClientOptions, OpenAI } from 'openai';
import { HANDLED_STREAM_EVENT_TYPES } from '../protocol/responses.js';
import type { ResponseInputItem, ToolSpec } from '../protocol/responses.js';
import { abortReason, linkedController, sleep as abortableSleep } from '../util/abort.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger } from '../util/logger.js';
import type { Logger } from '../util/logger.js';
import { ModelError, ModelStreamError } from './errors.js';
import { createHttpFetch } from './http-fetch.js';
import { requestBodyJson } from './request-body.js';
import { ResponseFold, type ModelResponse } from './response-fold.js';
import { DEFAULT_MAX_RETRIES, DEFAULT_STREAM_MAX_RETRIES, retryDelay } from './retry.js';
import { loadSdk, sdkClientOptions, sdkRequestError, type OpenAiSdk } from './sdk.js';
import { SseDecoder } from './sse.js';

/** A stream (or a request awaiting its answer) silent this long is treated as dropped. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/**
 * How long the end of a stream may take to arrive after `response.completed` before the request
 * is aborted. The end is read in the background (the caller has its response already), so the
 * connection is released cleanly and reused instead of being torn down by an abort.
 */
export const STREAM_END_GRACE_MS = 1_000;

/**
 * The headers of each attempt. The body is sent as JSON text we built (see `request-body.ts`), so
 * the SDK passes it on as is. The `Idempotency-Key` (one per attempt: a deliberate retry is a new
 * request) tells the fetch it may send the attempt again when its kept-alive connection turns out
 * to be closed by the server (see `http-fetch.ts`): a model request has no effect but its cost.
 */
function attemptHeaders(): Record<string, string> {
  return { 'Content-Type': 'application/json', 'Idempotency-Key': randomUUID() };
}

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

/** What a request's log line says of it. */
export type ModelRequestSummary = {
  model: string;
  inputItems: number;
  tools: number;
};

/** The {@link ModelRequestSummary} of `request`. */
export function summarizeRequest(request: ModelRequest): ModelRequestSummary {
  return { model: request.model, inputItems: request.input.length, tools: request.tools.length };
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

/**
 * A client of the OpenAI Responses API (or any compatible endpoint) over the `openai` SDK. It
 * always streams, and applies one retry policy to HTTP errors, connection failures and dropped
 * streams (the SDK's own retries are off).
 */
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
    this.sdkOptions = sdkClientOptions({
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      headers: options.headers,
      queryParams: options.queryParams,
      timeoutMs: this.idleTimeoutMs,
      fetch: options.fetch ?? defaultFetch(),
    });
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
   * transient failures. Rejects with a `ModelApiError`, `ModelConnectionError` or
   * {@link ModelStreamError} (after retries, or at once when not retryable), a `LocalError`
   * (`INVALID_ARGUMENT`) for a request that does not match the schema or the fetch's own
   * (`INVALID_CONFIG` for network settings that cannot be used), or the signal's reason.
   */
  async respond(request: ModelRequest, options: RespondOptions): Promise<ModelResponse> {
    if (options.signal.aborted) throw abortReason(options.signal);
    return this.respondJson(requestBodyJson(request), summarizeRequest(request), options);
  }

  /**
   * {@link respond} with the body already built (by `requestBodyJson`): what the model worker
   * thread runs, since the body is built where the history lives. `summary` is only logged.
   */
  async respondJson(body: string, summary: ModelRequestSummary, options: RespondOptions): Promise<ModelResponse> {
    const { signal } = options;
    if (signal.aborted) throw abortReason(signal);
    let httpRetries = 0;
    let streamRetries = 0;
    for (;;) {
      try {
        return await this.attempt(summary, body, options);
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
        const delayMs = retryDelay(attempt, error, this.random);
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

  /**
   * One HTTP request and its stream, with its own controller (linked to the caller's signal).
   * The SDK sends the request and maps HTTP and connection failures (`asResponse()`); the event
   * stream is decoded here (see `sse.ts`), which costs a fraction of the SDK's stream decoding.
   * After `response.completed` the rest of the stream (normally just its end) is read in the
   * background, see {@link STREAM_END_GRACE_MS}; every other way out aborts the request at once.
   */
  private async attempt(summary: ModelRequestSummary, body: string, options: RespondOptions): Promise<ModelResponse> {
    const { signal } = options;
    const { controller, unlink } = linkedController(signal);
    let idle = false;
    let timer: NodeJS.Timeout | undefined;
    // Re-armed at every event: one timer restarted in place, not a new one per event.
    const rearm = (): void => {
      if (timer !== undefined) {
        timer.refresh();
        return;
      }
      timer = setTimeout(() => {
        idle = true;
        controller.abort();
      }, this.idleTimeoutMs);
      timer.unref?.();
    };
    const release = (): void => {
      clearTimeout(timer);
      unlink();
    };
    const fold = new ResponseFold(this.displayUrl, options.onTextDelta);
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      rearm();
      this.logger.debug('model request', summary);
      const sdk = await this.loaded();
      let response: Response;
      try {
        response = await sdk.client.post('/responses', { body, headers: attemptHeaders(), stream: true, signal: controller.signal }).asResponse();
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
          throw this.streamError(error, signal, idle, fold.responseId);
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
          const completed = fold.accept(sse.data);
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
        responseId: fold.responseId,
      });
    } catch (error) {
      release();
      // Stop reading first (so cleanup cannot wait on the network), then close the body.
      controller.abort();
      await reader?.cancel().catch(() => undefined);
      throw error;
    }
  }

  /** Maps a failure before the stream started to our error classes. */
  private requestError(sdk: OpenAiSdk, error: unknown, signal: AbortSignal, idle: boolean): Error {
    if (signal.aborted) return abortReason(signal);
    if (idle) return this.idleError(undefined);
    return sdkRequestError(sdk, error, signal, this.displayUrl);
  }

  /** Maps a failure while reading the stream (a broken connection, an abort) to our error classes. */
  private streamError(error: unknown, signal: AbortSignal, idle: boolean, responseId: string | undefined): Error {
    if (signal.aborted) return abortReason(signal);
    if (idle) return this.idleError(responseId);
    return new ModelStreamError(
      {
        reason: 'dropped',
        responseId,
        message: `model stream from ${this.displayUrl} broke before response.completed: ${describeCause(error)}`,
      },
      { cause: error },
    );
  }

  private idleError(responseId: string | undefined): ModelStreamError {
    return new ModelStreamError({
      reason: 'idle-timeout',
      responseId,
      message: `model API at ${this.displayUrl} sent nothing for ${this.idleTimeoutMs} ms`,
    });
  }
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
