import { HttpRequest, HttpRequestBodyDelta } from '../protocol/exec.js';
import type { RpcConnection } from '../rpc/connection.js';
import { RpcError } from '../rpc/errors.js';
import { abortReason } from '../util/abort.js';
import { decodeBase64 } from '../util/base64.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/** Bound on response body bytes received but not yet read by the consumer, per request. */
export const DEFAULT_MAX_QUEUED_BODY_BYTES = 64 * 1024 * 1024;
/**
 * Bound on the wait for a response's head when the request names no `timeoutMs`. Long on
 * purpose: a JSON answer to an MCP tool call arrives only when the tool is done, and the
 * caller's AbortSignal is the real bound.
 */
export const DEFAULT_RESPONSE_HEAD_TIMEOUT_MS = 60 * 60_000;
/** Slack added to `timeoutMs` for the wait on the response, so the executor's timeout wins. */
const HEAD_TIMEOUT_SLACK_MS = 5_000;

/** A request header; `valueEnvVar` appends the value of that variable on the executor. */
export interface HttpStreamRequestHeader {
  name: string;
  value: string;
  valueEnvVar?: string;
}

/** What {@link HttpBodyStreams.request} sends. */
export interface HttpStreamRequest {
  method: string;
  /** Absolute http(s) URL, resolved on the executor. */
  url: string;
  headers?: readonly HttpStreamRequestHeader[];
  body?: Uint8Array;
  /** Deadline of the whole exchange, body included. @default none */
  timeoutMs?: number;
  /** @default "follow" */
  redirectPolicy?: 'follow' | 'stop';
}

/** The response head with a body that streams as the executor's deltas arrive. */
export interface HttpStreamResponse {
  status: number;
  /** Lowercase names, wire order, repeated names kept. */
  headers: { name: string; value: string }[];
  body: ReadableStream<Uint8Array>;
}

/** Options of {@link HttpBodyStreams}. */
export interface HttpBodyStreamsOptions {
  /** @default DEFAULT_MAX_QUEUED_BODY_BYTES */
  maxQueuedBodyBytes?: number;
  /** @default DEFAULT_RESPONSE_HEAD_TIMEOUT_MS */
  responseHeadTimeoutMs?: number;
}

/** Per-call options of {@link HttpBodyStreams.request}. */
export interface HttpStreamRequestOptions {
  /** Aborts the request, or errors the body once the response has arrived. */
  signal?: AbortSignal;
}

interface OpenBody {
  controller: ReadableStreamDefaultController<Uint8Array>;
  nextSeq: number;
  /** Unlinks the caller's signal. */
  unlink: () => void;
}

/**
 * Streamed `http/request`s over one exec-server connection: it gives each request a fresh
 * `http-<n>` id, routes the `http/request/bodyDelta` notifications to that request's body stream,
 * and checks their order. One instance per connection; it registers the delta handler.
 */
export class HttpBodyStreams {
  readonly #connection: RpcConnection;
  readonly #maxQueuedBodyBytes: number;
  readonly #responseHeadTimeoutMs: number;
  readonly #open = new Map<string, OpenBody>();
  #nextId = 1;

  constructor(connection: RpcConnection, options: HttpBodyStreamsOptions = {}) {
    this.#connection = connection;
    this.#maxQueuedBodyBytes = options.maxQueuedBodyBytes ?? DEFAULT_MAX_QUEUED_BODY_BYTES;
    this.#responseHeadTimeoutMs = options.responseHeadTimeoutMs ?? DEFAULT_RESPONSE_HEAD_TIMEOUT_MS;
    connection.onNotification(HttpRequestBodyDelta, (delta) => this.#onDelta(delta));
    connection.signal.addEventListener('abort', () => {
      const reason = abortReason(connection.signal);
      for (const requestId of [...this.#open.keys()]) this.#fail(requestId, reason);
    });
  }

  /**
   * Performs a request on the executor with `streamResponse: true`. Resolves with the head as
   * soon as the executor has it; the body stream then fills from the deltas. Rejects with the
   * executor's RpcError (-32602 refused, -32603 failed) or a LocalError when the connection ends.
   */
  async request(params: HttpStreamRequest, options: HttpStreamRequestOptions = {}): Promise<HttpStreamResponse> {
    const signal = options.signal;
    if (signal?.aborted === true) throw abortReason(signal);
    if (this.#connection.isClosed) throw abortReason(this.#connection.signal);
    const requestId = `http-${this.#nextId++}`;
    const maxQueued = this.#maxQueuedBodyBytes;
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
    const body = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          controller = c;
        },
        // The protocol has no cancel; the executor finishes on its side and we drop what comes.
        cancel: () => {
          this.#close(requestId);
        },
      },
      { highWaterMark: maxQueued, size: (chunk) => chunk.byteLength },
    );
    if (controller === undefined) throw new LocalError(LocalErrorCode.ProtocolViolation, 'ReadableStream did not start synchronously');
    const onAbort = (): void => this.#fail(requestId, abortReason(signal));
    signal?.addEventListener('abort', onAbort, { once: true });
    // Registered before the request goes out: the first delta can arrive right after the response,
    // before this function's continuation runs.
    this.#open.set(requestId, { controller, nextSeq: 1, unlink: () => signal?.removeEventListener('abort', onAbort) });

    const timeoutMs = params.timeoutMs === undefined ? this.#responseHeadTimeoutMs : params.timeoutMs + HEAD_TIMEOUT_SLACK_MS;
    try {
      const result = await this.#connection.request(
        HttpRequest,
        {
          method: params.method,
          url: params.url,
          requestId,
          headers: (params.headers ?? []).map((h) =>
            h.valueEnvVar === undefined ? { name: h.name, value: h.value } : { name: h.name, value: h.value, valueEnvVar: h.valueEnvVar },
          ),
          bodyBase64: params.body === undefined ? null : Buffer.from(params.body.buffer, params.body.byteOffset, params.body.byteLength).toString('base64'),
          timeoutMs: params.timeoutMs ?? null,
          redirectPolicy: params.redirectPolicy ?? 'follow',
          streamResponse: true,
        },
        { signal, timeoutMs },
      );
      return { status: result.status, headers: result.headers.map((h) => ({ name: h.name, value: h.value })), body };
    } catch (error) {
      this.#fail(requestId, error);
      throw error;
    }
  }

  /** Number of bodies still receiving deltas (for tests and status). */
  get openCount(): number {
    return this.#open.size;
  }

  #onDelta(delta: { requestId: string; seq: number; deltaBase64: string; done: boolean; error?: string | null | undefined }): void {
    const open = this.#open.get(delta.requestId);
    // Unknown: a cancelled body, or a request of somebody else on this connection.
    if (open === undefined) return;
    if (delta.seq !== open.nextSeq) {
      this.#fail(delta.requestId, new LocalError(LocalErrorCode.ProtocolViolation, `http/request/bodyDelta for ${delta.requestId} has seq ${delta.seq}, expected ${open.nextSeq}`));
      return;
    }
    open.nextSeq += 1;
    const bytes = decodeBase64(delta.deltaBase64);
    if (bytes === undefined) {
      this.#fail(delta.requestId, new LocalError(LocalErrorCode.ProtocolViolation, `http/request/bodyDelta for ${delta.requestId} has invalid base64`));
      return;
    }
    if (bytes.length > 0) {
      // A copy: small decoded buffers can be views into node's shared pool.
      open.controller.enqueue(new Uint8Array(bytes));
      if ((open.controller.desiredSize ?? 0) < 0) {
        this.#fail(
          delta.requestId,
          new LocalError(LocalErrorCode.LimitExceeded, `response body of ${delta.requestId}: more than ${this.#maxQueuedBodyBytes} bytes received but not read`),
        );
        return;
      }
    }
    if (!delta.done) return;
    const failure = delta.error ?? undefined;
    if (failure !== undefined) {
      this.#fail(delta.requestId, RpcError.internal(`http/request body failed: ${failure}`));
      return;
    }
    this.#close(delta.requestId);
    open.controller.close();
  }

  /** Forgets a body: later deltas for its id are ignored. */
  #close(requestId: string): OpenBody | undefined {
    const open = this.#open.get(requestId);
    if (open === undefined) return undefined;
    this.#open.delete(requestId);
    open.unlink();
    return open;
  }

  #fail(requestId: string, error: unknown): void {
    this.#close(requestId)?.controller.error(error);
  }
}

/** Statuses whose responses never have a body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * A WHATWG `fetch` whose requests are performed by the executor behind `streams`. Bodies stream
 * incrementally (SSE works), so it can back the MCP SDK's StreamableHTTPClientTransport. Network
 * failures reject with `TypeError("fetch failed")` carrying the cause, as fetch does.
 */
export function fetchThrough(streams: HttpBodyStreams): typeof fetch {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const signal = request.signal;
    signal.throwIfAborted();
    const body = request.body === null ? undefined : new Uint8Array(await request.arrayBuffer());
    const headers: HttpStreamRequestHeader[] = [];
    request.headers.forEach((value, name) => headers.push({ name, value }));
    let response: HttpStreamResponse;
    try {
      response = await streams.request({ method: request.method, url: request.url, headers, body, redirectPolicy: request.redirect === 'follow' ? 'follow' : 'stop' }, { signal });
    } catch (error) {
      if (signal.aborted) throw abortReason(signal);
      throw new TypeError('fetch failed', { cause: error });
    }
    if (response.status < 200 || response.status > 599) {
      await response.body.cancel();
      throw new TypeError('fetch failed', {
        cause: new LocalError(LocalErrorCode.ProtocolViolation, `unsupported response status ${response.status} from ${request.url}`),
      });
    }
    const responseHeaders = new Headers();
    for (const { name, value } of response.headers) {
      try {
        responseHeaders.append(name, value);
      } catch {
        // A header the Headers class refuses (invalid characters) cannot be represented.
      }
    }
    const nullBody = NULL_BODY_STATUSES.has(response.status) || request.method === 'HEAD';
    if (nullBody) await response.body.cancel();
    return new Response(nullBody ? null : response.body, { status: response.status, headers: responseHeaders });
  };
}
