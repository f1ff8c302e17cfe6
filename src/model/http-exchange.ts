import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { z } from 'zod';
import { HttpRoutes } from '../transport/http-routes.js';
import { describeProxy, type NetworkSettings } from '../transport/network.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * HTTP exchanges over `node:http`/`node:https` with keep-alive agents: what the model client
 * sends its requests with, and what `http-fetch.ts` builds its `fetch` on. The body of an answer
 * is handed to a {@link BodySink} as the `Buffer`s the socket (or the decompressor) gives, so a
 * caller that decodes them itself pays for no `Response` and no WHATWG stream.
 *
 * Every request goes out the way the {@link NetworkSettings} say (proxies, `NO_PROXY`, extra
 * roots); redirects are followed by the fetch standard's rules. Failures reject as fetch does:
 * `TypeError('fetch failed')` with the cause, the signal's reason on abort, and a `LocalError`
 * when the network settings cannot be used for the URL.
 */

/** How long an idle keep-alive connection is kept, by default (below common server timeouts of 5 s). */
export const DEFAULT_KEEP_ALIVE_MS = 4_000;

/**
 * After an abort, how long a response that is still arriving may take to end before its
 * connection is closed. Lets the end of a completed stream (often a separate packet) arrive so
 * the connection can be reused; the caller sees the abort at once either way.
 */
export const ABORT_DRAIN_MS = 50;

/** The most redirects one request follows (the fetch standard's limit). */
export const MAX_REDIRECTS = 20;

/**
 * How many times one request is sent again after its kept-alive connection turned out to be
 * closed by the server (see {@link HttpExchange.send}); each time that connection is gone from
 * the pool, so this bounds a run of stale ones.
 */
export const MAX_STALE_CONNECTION_RETRIES = 2;

/** Methods that mean the same when sent twice (RFC 9110 idempotent methods). */
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** The header by which a request says it may be sent twice (the IETF Idempotency-Key draft). */
const IDEMPOTENCY_KEY = 'idempotency-key';
/** The socket errors of a connection the server had closed: reset by its kernel, or ended before any answer. */
const CLOSED_CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE']);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
/** Headers that describe the body; dropped when a redirect turns the request into a GET. */
const BODY_HEADERS = ['content-type', 'content-encoding', 'content-language', 'content-location', 'content-length'];
/** Headers not sent on to another origin after a redirect (as undici drops them). */
const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'host'];

/** What https-proxy-agent reports of the proxy's answer to `CONNECT`. */
const ProxyConnectSchema = z.looseObject({ statusCode: z.number(), statusText: z.string().optional() });

/** One request as sent: what a redirect may change. */
export interface HttpRequest {
  /** An `http:` or `https:` URL. */
  target: URL;
  method: string;
  /** Header names in lower case; `content-length` is set from the payload. */
  headers: Record<string, string>;
  payload: Uint8Array | undefined;
}

/** How a redirect answer is treated, as fetch's `redirect` option. */
export type RedirectMode = 'follow' | 'manual' | 'error';

/**
 * Receives an answer's body. After `end` or `error` nothing more is called; `data` is called
 * with each piece as it arrives (decompressed when the server sent it compressed).
 */
export interface BodySink {
  data(chunk: Buffer): void;
  end(): void;
  error(error: Error): void;
}

/** An answer whose body is still to be read. */
export interface HttpAnswer {
  readonly status: number;
  readonly statusText: string;
  readonly headers: IncomingHttpHeaders;
  /** False for the statuses (and the `HEAD` method) that have no body: `read` then ends at once. */
  readonly hasBody: boolean;
  /**
   * Starts the body flowing into `sink` (once). A broken connection errors it with
   * `TypeError('terminated')`, an abort of the request's signal with the signal's reason (the
   * connection is then closed unless the body ends within {@link ABORT_DRAIN_MS}).
   */
  read(sink: BodySink): void;
  /** Stops the flow until {@link resume} (back-pressure). */
  pause(): void;
  resume(): void;
  /** Stops reading: nothing more reaches the sink, and the connection is closed unless the body had ended. */
  cancel(): void;
}

/** Options of {@link HttpExchange}. */
export interface HttpExchangeOptions {
  /** Idle keep-alive connections are closed after this long. @default {@link DEFAULT_KEEP_ALIVE_MS} */
  keepAliveMs?: number;
  /** Proxies and extra trusted roots. @default direct connections, Node.js's bundled roots */
  network?: NetworkSettings;
}

/** A redirect to follow, with the response's status. */
interface Redirect {
  status: number;
  location: string;
}

/** Sends requests; its agents live as long as it does (idle sockets never keep the process alive). */
export class HttpExchange {
  readonly #routes: HttpRoutes;

  constructor(options: HttpExchangeOptions = {}) {
    this.#routes = new HttpRoutes(options.network ?? {}, { keepAliveMs: options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS });
  }

  /**
   * Sends `request` and resolves with the answer once its head arrived, following redirects as
   * `redirect` says. A request whose kept-alive connection turns out to be closed by the server is
   * sent again on another (see {@link #sendRetryingStale}).
   */
  async send(request: HttpRequest, signal: AbortSignal | undefined, redirect: RedirectMode = 'follow'): Promise<HttpAnswer> {
    let hop = request;
    for (let redirects = 0; ; redirects++) {
      if (signal?.aborted === true) throw abortError(signal);
      const answer = await this.#sendRetryingStale(hop, signal, redirect === 'manual');
      if (!('location' in answer)) return answer;
      if (redirect === 'error') throw new TypeError('fetch failed', { cause: new Error(`unexpected redirect (${answer.status}) from ${hop.target.href}`) });
      if (redirects >= MAX_REDIRECTS) throw new TypeError('fetch failed', { cause: new Error(`more than ${MAX_REDIRECTS} redirects, the last from ${hop.target.href}`) });
      hop = nextHop(hop, answer);
    }
  }

  /**
   * {@link exchange}, sending the request again on another connection when the kept-alive one it
   * went out on turned out to be closed by the server. That is a race no timer setting removes: a
   * server closes an idle connection at the moment the client (its timers late under load) reuses
   * it. The server did not answer, and most likely never read the request, but it cannot be known:
   * so only a request that may be sent twice is (an idempotent method, or one with an
   * `Idempotency-Key`, as the model client's are); any other fails saying why.
   */
  async #sendRetryingStale(hop: HttpRequest, signal: AbortSignal | undefined, manual: boolean): Promise<HttpAnswer | Redirect> {
    const replayable = IDEMPOTENT_METHODS.has(hop.method.toUpperCase()) || hop.headers[IDEMPOTENCY_KEY] !== undefined;
    for (let retries = 0; ; retries++) {
      try {
        return await exchange(this.#routes, hop, signal, manual);
      } catch (error) {
        if (!(error instanceof StaleConnection)) throw error;
        if (!replayable) {
          throw new TypeError('fetch failed', {
            cause: new Error(
              `the server closed the kept-alive connection before answering (${error.message}); a ${hop.method} without an Idempotency-Key header is not sent again, as the server may have acted on it`,
              { cause: error.failure },
            ),
          });
        }
        if (retries >= MAX_STALE_CONNECTION_RETRIES) {
          throw new TypeError('fetch failed', {
            cause: new Error(`the server closed ${retries + 1} kept-alive connections in a row before answering (${error.message})`, { cause: error.failure }),
          });
        }
      }
    }
  }
}

/**
 * The request after a redirect, by the fetch standard's rules: a 303 (and a 301/302 answering a
 * POST) becomes a body-less GET; credentials are not sent on to another origin.
 */
function nextHop(hop: HttpRequest, redirect: Redirect): HttpRequest {
  let target: URL;
  try {
    target = new URL(redirect.location, hop.target);
  } catch {
    throw new TypeError('fetch failed', { cause: new Error(`invalid redirect location ${JSON.stringify(redirect.location)} from ${hop.target.href}`) });
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new TypeError('fetch failed', { cause: new Error(`redirect from ${hop.target.href} to a ${target.protocol} URL`) });
  }
  const headers = { ...hop.headers };
  let { method, payload } = hop;
  if (((redirect.status === 301 || redirect.status === 302) && method === 'POST') || (redirect.status === 303 && method !== 'GET' && method !== 'HEAD')) {
    method = 'GET';
    payload = undefined;
    for (const name of BODY_HEADERS) delete headers[name];
  }
  if (target.origin !== hop.target.origin) for (const name of CREDENTIAL_HEADERS) delete headers[name];
  return { target, method, headers, payload };
}

/** A request that failed on a reused keep-alive connection before any byte of an answer: the server had closed it. */
class StaleConnection extends Error {
  constructor(readonly failure: Error) {
    super(failure.message);
  }
}

/**
 * One request and its answer, or the redirect to follow (its body discarded) unless `manual`.
 * Rejects with a {@link StaleConnection} when a reused connection fails before any answer.
 */
async function exchange(routes: HttpRoutes, hop: HttpRequest, signal: AbortSignal | undefined, manual: boolean): Promise<HttpAnswer | Redirect> {
  const headers = hop.payload === undefined ? hop.headers : { ...hop.headers, 'content-length': String(hop.payload.byteLength) };
  const { request, proxy } = await routes.request(hop.target, { method: hop.method, headers });
  return new Promise<HttpAnswer | Redirect>((resolve, reject) => {
    if (signal?.aborted === true) {
      // Aborted while the route was being made: never sent (destroying it reports a hang-up).
      request.once('error', () => undefined);
      request.destroy();
      reject(abortError(signal));
      return;
    }
    let settled = false;
    let body: Body | undefined;
    /** The proxy's answer to `CONNECT` when it was not 200 (https-proxy-agent then replays it as the response). */
    let tunnelRefused: string | undefined;

    const onAbort = (): void => {
      const reason = abortError(signal);
      if (!settled) {
        settled = true;
        request.destroy();
        reject(reason);
        return;
      }
      body?.abort(reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => signal?.removeEventListener('abort', onAbort);
    /** A failure on the way through a proxy says so, naming the proxy and its variable. */
    const viaProxy = (error: Error): Error => (proxy === undefined ? error : new Error(`through the proxy ${describeProxy(proxy)}: ${error.message}`, { cause: error }));

    request.once('proxyConnect', (connect: unknown) => {
      const parsed = ProxyConnectSchema.safeParse(connect);
      if (parsed.success && parsed.data.statusCode !== 200) tunnelRefused = `${parsed.data.statusCode} ${parsed.data.statusText ?? ''}`.trim();
    });

    request.once('error', (error) => {
      if (!settled) {
        done();
        settled = true;
        const code: unknown = 'code' in error ? error.code : undefined;
        if (request.reusedSocket && typeof code === 'string' && CLOSED_CONNECTION_CODES.has(code)) reject(new StaleConnection(viaProxy(error)));
        else reject(new TypeError('fetch failed', { cause: viaProxy(error) }));
        return;
      }
      body?.fail(new TypeError('terminated', { cause: viaProxy(error) }));
    });

    request.once('response', (res) => {
      settled = true;
      const status = res.statusCode ?? 0;
      // 407 can only be the proxy's own answer: it is a failure to get through, not the server's.
      const refused = tunnelRefused ?? (proxy !== undefined && status === 407 ? `${status} ${res.statusMessage ?? ''}`.trim() : undefined);
      if (refused !== undefined) {
        done();
        res.resume();
        reject(new TypeError('fetch failed', { cause: viaProxy(new LocalError(LocalErrorCode.ConnectFailed, `it refused the request for ${hop.target.host}: ${refused}`)) }));
        return;
      }
      const location = res.headers.location;
      if (!manual && REDIRECT_STATUSES.has(status) && location !== undefined) {
        done();
        res.resume();
        resolve({ status, location });
        return;
      }
      const hasBody = !NULL_BODY_STATUSES.has(status) && hop.method !== 'HEAD';
      body = new Body(request, res, hasBody, done);
      resolve(body);
    });

    request.end(hop.payload);
  });
}

/**
 * An answer and the flow of its body: holds what happens to the body before the caller reads it
 * (an error, an abort) and hands it over then, so the sink sees exactly one end or error.
 */
class Body implements HttpAnswer {
  readonly status: number;
  readonly statusText: string;
  readonly headers: IncomingHttpHeaders;
  readonly hasBody: boolean;
  readonly #request: ClientRequest;
  readonly #response: IncomingMessage;
  readonly #source: Readable;
  /** Removes the abort listener: called once the body ended or failed. */
  readonly #done: () => void;
  #sink: BodySink | undefined;
  /** How the body ended before it was read (`null`: it ended), or `undefined` while it goes on. */
  #outcome: Error | null | undefined;
  #finished = false;

  constructor(request: ClientRequest, response: IncomingMessage, hasBody: boolean, done: () => void) {
    this.#request = request;
    this.#response = response;
    this.status = response.statusCode ?? 0;
    this.statusText = response.statusMessage ?? '';
    this.headers = response.headers;
    this.hasBody = hasBody;
    this.#done = done;
    if (!hasBody) {
      response.resume();
      this.#source = response;
      this.#finish(null);
      return;
    }
    this.#source = decoded(response);
    this.#source.once('end', () => this.#finish(null));
    this.#source.once('error', (error) => this.#finish(new TypeError('terminated', { cause: error })));
    // A connection that closes before the body ended is a broken stream, not an end.
    response.once('close', () => {
      if (!response.complete) this.fail(new TypeError('terminated', { cause: new Error('the connection closed before the response ended') }));
    });
  }

  read(sink: BodySink): void {
    if (this.#finished) {
      if (this.#outcome === null) sink.end();
      else if (this.#outcome !== undefined) sink.error(this.#outcome);
      return;
    }
    this.#sink = sink;
    this.#source.on('data', (chunk: Buffer) => this.#sink?.data(chunk));
  }

  pause(): void {
    this.#source.pause();
  }

  resume(): void {
    this.#source.resume();
  }

  cancel(): void {
    this.#sink = undefined;
    if (!this.#finished) {
      this.#finished = true;
      this.#done();
    }
    if (!this.#response.complete) this.#request.destroy();
  }

  /** The connection broke while the body was arriving. */
  fail(error: Error): void {
    this.#finish(error);
  }

  /** The request was aborted: the sink gets the reason at once; the rest of the body may still drain. */
  abort(reason: Error): void {
    this.#finish(reason);
    if (this.#response.complete) return;
    // Let a response that is about to end finish, so its connection stays reusable.
    const response = this.#response;
    response.resume();
    const timer = setTimeout(() => this.#request.destroy(), ABORT_DRAIN_MS);
    timer.unref();
    response.once('end', () => clearTimeout(timer));
  }

  #finish(outcome: Error | null): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#outcome = outcome;
    this.#done();
    const sink = this.#sink;
    this.#sink = undefined;
    if (sink === undefined) return;
    if (outcome === null) sink.end();
    else sink.error(outcome);
  }
}

/** The body as sent, or decompressed when the server encoded it anyway (we never ask it to). */
function decoded(res: IncomingMessage): Readable {
  switch (res.headers['content-encoding']?.trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return res.pipe(createGunzip());
    case 'deflate':
      return res.pipe(createInflate());
    case 'br':
      return res.pipe(createBrotliDecompress());
    default:
      return res;
  }
}

/** What fetch rejects with on abort: the signal's reason when it is an Error, else an `AbortError`. */
export function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  return new DOMException(typeof reason === 'string' ? reason : 'This operation was aborted', 'AbortError');
}
