import { randomUUID } from 'node:crypto';
import { HANDLED_STREAM_EVENT_TYPES } from '../protocol/responses.js';
import type { ResponseInputItem, ToolSpec } from '../protocol/responses.js';
import { abortReason, linkedController, sleep as abortableSleep } from '../util/abort.js';
import { errorMessage, LocalError } from '../util/errors.js';
import { silentLogger } from '../util/logger.js';
import type { Logger } from '../util/logger.js';
import { DEFAULT_USER_AGENT, readErrorBody, requestHeaders, responsesUrl } from './api-request.js';
import { ModelApiError, ModelConnectionError, ModelError, ModelStreamError } from './errors.js';
import { HttpExchange, type HttpAnswer, type HttpRequest } from './http-exchange.js';
import { requestBodyJson } from './request-body.js';
import { ResponseFold, type ModelResponse } from './response-fold.js';
import { DEFAULT_MAX_RETRIES, DEFAULT_STREAM_MAX_RETRIES, retryDelay } from './retry.js';
import { SseDecoder, type SseEvent } from './sse.js';

/** A stream (or a request awaiting its answer) silent this long is treated as dropped. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/**
 * How long the end of a stream may take to arrive after `response.completed` before the request
 * is aborted. The end is read in the background (the caller has its response already), so the
 * connection is released cleanly and reused instead of being torn down by an abort.
 */
export const STREAM_END_GRACE_MS = 1_000;

let sharedExchange: HttpExchange | undefined;

/** One keep-alive exchange for every client that is given none, so they share connections. */
function defaultExchange(): HttpExchange {
  sharedExchange ??= new HttpExchange();
  return sharedExchange;
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
  /** Sends the requests. @default one keep-alive exchange shared by every client given none, direct connections */
  http?: HttpExchange;
  /** The `User-Agent` header (a configured header of that name replaces it). @default {@link DEFAULT_USER_AGENT} */
  userAgent?: string;
  /** Waits between retries; must reject when `signal` aborts. @default an unref'd timer */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Jitter source in [0, 1). @default Math.random */
  random?: () => number;
  /** @default a silent logger */
  logger?: Logger;
}

/**
 * A client of the OpenAI Responses API (or any compatible endpoint), straight over
 * {@link HttpExchange}: it builds the request, decodes the event stream from the socket's bytes
 * (see `sse.ts`) and maps failures to its own errors. It always streams, and applies one retry
 * policy to HTTP errors, connection failures and dropped streams.
 */
export class ModelClient {
  private readonly http: HttpExchange;
  /** The request URL, or why the base URL cannot be used (every request then fails with it). */
  private readonly target: URL | LocalError;
  private readonly headers: Record<string, string>;
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
    this.http = options.http ?? defaultExchange();
    this.headers = requestHeaders({ apiKey: options.apiKey, headers: options.headers, userAgent: options.userAgent ?? DEFAULT_USER_AGENT });
    try {
      this.target = responsesUrl(options.baseUrl, options.queryParams);
    } catch (error) {
      if (!(error instanceof LocalError)) throw error;
      this.target = error;
    }
  }

  /**
   * Sends one request and folds the streamed answer into a {@link ModelResponse}, retrying
   * transient failures. Rejects with a `ModelApiError`, `ModelConnectionError` or
   * {@link ModelStreamError} (after retries, or at once when not retryable), a `LocalError`
   * (`INVALID_ARGUMENT`) for a request that does not match the schema, `INVALID_CONFIG` for a
   * base URL or network settings that cannot be used), or the signal's reason.
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
   * One HTTP request, with its own `Idempotency-Key`: a deliberate retry is a new request, while
   * the exchange may send this one again when its kept-alive connection turns out to be closed by
   * the server (see `http-exchange.ts`): a model request has no effect but its cost.
   */
  private request(body: string): HttpRequest {
    if (this.target instanceof LocalError) throw this.target;
    return { target: this.target, method: 'POST', headers: { ...this.headers, 'idempotency-key': randomUUID() }, payload: Buffer.from(body) };
  }

  /**
   * One HTTP request and its stream, with its own controller (linked to the caller's signal):
   * aborting it ends the request (see `http-exchange.ts` for how its connection is drained).
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
    const stop = (): void => {
      release();
      controller.abort();
    };
    rearm();
    this.logger.debug('model request', summary);
    let answer: HttpAnswer;
    try {
      answer = await this.http.send(this.request(body), controller.signal);
    } catch (error) {
      stop();
      throw this.requestError(error, signal, idle);
    }
    // Anything but a 2xx is an error answer: also a 3xx that could not be followed (no Location).
    if (answer.status < 200 || answer.status >= 300) {
      let errorBody: unknown;
      try {
        errorBody = await readErrorBody(answer);
      } catch (error) {
        stop();
        if (signal.aborted || idle) throw this.requestError(error, signal, idle);
        errorBody = undefined;
      }
      release();
      throw ModelApiError.from(answer.status, errorBody, answer.headers, { baseUrl: this.displayUrl });
    }
    if (!answer.hasBody) {
      release();
      throw new ModelStreamError({ reason: 'dropped', message: `model API at ${this.displayUrl} answered without a body` });
    }
    return this.stream(answer, signal, options.onTextDelta, {
      rearm,
      release,
      stop,
      idle: () => idle,
    });
  }

  /**
   * Folds the answer's event stream: each chunk goes from the socket to the decoder and the
   * decoded events to the fold, synchronously. Settles with the response at `response.completed`;
   * its end is then awaited for {@link STREAM_END_GRACE_MS} at most (so the connection is reused).
   */
  private stream(
    answer: HttpAnswer,
    signal: AbortSignal,
    onTextDelta: ((delta: string) => void) | undefined,
    attempt: { rearm: () => void; release: () => void; stop: () => void; idle: () => boolean },
  ): Promise<ModelResponse> {
    const fold = new ResponseFold(this.displayUrl, onTextDelta);
    const decoder = new SseDecoder();
    return new Promise<ModelResponse>((resolve, reject) => {
      let settled = false;
      let doneMarker = false;
      let grace: NodeJS.Timeout | undefined;
      const fail = (error: unknown): void => {
        settled = true;
        attempt.stop();
        // What a consumer's callback throws passes through as it is (an Error, as it should be).
        reject(error instanceof Error ? error : new Error(errorMessage(error)));
      };
      const finish = (): void => {
        clearTimeout(grace);
        attempt.release();
      };
      /** Acts on decoded events; true once the response was delivered. */
      const take = (events: SseEvent[]): boolean => {
        for (const sse of events) {
          // As the openai SDK does: nothing after `[DONE]`, and Assistants-API `thread.*` events are not ours.
          if (doneMarker || sse.event?.startsWith('thread.') === true) continue;
          if (sse.data.startsWith('[DONE]')) {
            doneMarker = true;
            continue;
          }
          attempt.rearm();
          // Named events we do not act on are not even parsed (`response.in_progress` alone repeats
          // the request's tools); unnamed events are, and their `type` decides.
          if (sse.event !== null && sse.event.startsWith('response.') && !HANDLED_STREAM_EVENT_TYPES.includes(sse.event)) continue;
          const completed = fold.accept(sse.data);
          if (completed !== undefined) {
            settled = true;
            grace = setTimeout(attempt.stop, STREAM_END_GRACE_MS);
            grace.unref?.();
            resolve(completed);
            return true;
          }
        }
        return false;
      };
      answer.read({
        data: (chunk) => {
          if (settled) return;
          try {
            take(decoder.push(chunk));
          } catch (error) {
            fail(error);
          }
        },
        end: () => {
          if (settled) {
            finish();
            return;
          }
          try {
            if (take(decoder.end())) {
              finish();
              return;
            }
          } catch (error) {
            fail(error);
            return;
          }
          fail(new ModelStreamError({ reason: 'dropped', message: `model stream from ${this.displayUrl} ended before response.completed`, responseId: fold.responseId }));
        },
        error: (error) => {
          if (settled) {
            finish();
            return;
          }
          fail(this.streamError(error, signal, attempt.idle(), fold.responseId));
        },
      });
    });
  }

  /** Maps a failure before the stream started to our error classes. */
  private requestError(error: unknown, signal: AbortSignal, idle: boolean): Error {
    if (signal.aborted) return abortReason(signal);
    if (idle) return this.idleError(undefined);
    // Network settings that cannot be used (or a base URL that is not one): a retry cannot help.
    if (error instanceof LocalError) return new LocalError(error.code, `cannot reach the model API at ${this.displayUrl}: ${error.message}`, { cause: error });
    // The exchange says `fetch failed`; its cause says why (ECONNREFUSED, a refused tunnel…).
    return new ModelConnectionError(`cannot reach the model API at ${this.displayUrl}: ${describeCause(error)}`, { cause: error });
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

/** A failure's message with its cause's (the exchange says `fetch failed` or `terminated`, the cause says why). */
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
