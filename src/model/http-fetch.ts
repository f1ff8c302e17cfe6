import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { z } from 'zod';
import { HttpRoutes } from '../transport/http-routes.js';
import { describeProxy, type NetworkSettings } from '../transport/network.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * A `fetch` for the `openai` SDK (and the MCP SDK's HTTP transport) over `node:http`/`node:https`
 * with keep-alive agents. Node's built-in fetch (undici) costs about 1 ms of CPU per model request
 * on top of the HTTP work itself (its Request/Response machinery, WHATWG streams end to end, a
 * DOMException per abort); this one hands the caller a standard `Response` whose body is fed
 * straight from the socket.
 *
 * Every `http:` and `https:` request goes out here, the way the {@link NetworkSettings} say
 * (proxies, `NO_PROXY`, extra roots): redirects are followed by the fetch standard's rules, and a
 * `Request` object or a streamed or form body is read into bytes first. Only other URL schemes
 * are handed to the fallback fetch, so no request can slip past the proxy.
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
 * closed by the server (see {@link exchangeRetryingStale}); each time that connection is gone
 * from the pool, so this bounds a run of stale ones.
 */
export const MAX_STALE_CONNECTION_RETRIES = 2;

/** Methods that mean the same when sent twice (RFC 9110 idempotent methods). */
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** The header by which a request says it may be sent twice (the IETF Idempotency-Key draft). */
const IDEMPOTENCY_KEY = 'idempotency-key';
/** The socket errors of a connection the server had closed: reset by its kernel, or ended before any answer. */
const CLOSED_CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE']);

/** Options of {@link createHttpFetch}. */
export interface HttpFetchOptions {
  /** Idle keep-alive connections are closed after this long. @default {@link DEFAULT_KEEP_ALIVE_MS} */
  keepAliveMs?: number;
  /** Proxies and extra trusted roots. @default direct connections, Node.js's bundled roots */
  network?: NetworkSettings;
  /** Handles URLs that are neither http nor https (e.g. `data:`). @default globalThis.fetch */
  fallback?: typeof fetch;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
/** Headers that describe the body; dropped when a redirect turns the request into a GET. */
const BODY_HEADERS = ['content-type', 'content-encoding', 'content-language', 'content-location', 'content-length'];
/** Headers not sent on to another origin after a redirect (as undici drops them). */
const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'cookie', 'host'];

/** What https-proxy-agent reports of the proxy's answer to `CONNECT`. */
const ProxyConnectSchema = z.looseObject({ statusCode: z.number(), statusText: z.string().optional() });

/** One request as sent: what a redirect may change. */
interface Hop {
  target: URL;
  method: string;
  headers: Headers;
  payload: Uint8Array | undefined;
}

/** A redirect to follow, with the response's status. */
interface Redirect {
  status: number;
  location: string;
}

/** Creates the fetch; its agents live as long as it does (idle sockets never keep the process alive). */
export function createHttpFetch(options: HttpFetchOptions = {}): typeof fetch {
  const fallback = options.fallback ?? globalThis.fetch;
  const routes = new HttpRoutes(options.network ?? {}, { keepAliveMs: options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS });

  const httpFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const body = init.body ?? undefined;
    const simple = (typeof input === 'string' || input instanceof URL) && (body === undefined || typeof body === 'string' || body instanceof Uint8Array);
    const url = simple ? new URL(input) : new URL(input instanceof Request ? input.url : input);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return fallback(input, init);
    let hop: Hop;
    let signal: AbortSignal | undefined;
    let redirect: NonNullable<RequestInit['redirect']>;
    if (simple) {
      signal = init.signal ?? undefined;
      redirect = init.redirect ?? 'follow';
      hop = { target: url, method: init.method ?? 'GET', headers: new Headers(init.headers), payload: typeof body === 'string' ? Buffer.from(body) : body };
    } else {
      // The standard's own parsing of a Request or a form/stream body, then bytes like any other.
      const request = new Request(input, init);
      signal = request.signal;
      redirect = request.redirect;
      const bytes = request.body === null ? undefined : new Uint8Array(await request.arrayBuffer());
      hop = { target: url, method: request.method, headers: request.headers, payload: bytes };
    }
    for (let redirects = 0; ; redirects++) {
      if (signal?.aborted === true) throw abortError(signal);
      const answer = await exchangeRetryingStale(routes, hop, signal, redirect === 'manual');
      if (answer instanceof Response) return answer;
      if (redirect === 'error') throw new TypeError('fetch failed', { cause: new Error(`unexpected redirect (${answer.status}) from ${hop.target.href}`) });
      if (redirects >= MAX_REDIRECTS) throw new TypeError('fetch failed', { cause: new Error(`more than ${MAX_REDIRECTS} redirects, the last from ${hop.target.href}`) });
      hop = nextHop(hop, answer);
    }
  };
  return httpFetch;
}

/**
 * The request after a redirect, by the fetch standard's rules: a 303 (and a 301/302 answering a
 * POST) becomes a body-less GET; credentials are not sent on to another origin.
 */
function nextHop(hop: Hop, redirect: Redirect): Hop {
  let target: URL;
  try {
    target = new URL(redirect.location, hop.target);
  } catch {
    throw new TypeError('fetch failed', { cause: new Error(`invalid redirect location ${JSON.stringify(redirect.location)} from ${hop.target.href}`) });
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new TypeError('fetch failed', { cause: new Error(`redirect from ${hop.target.href} to a ${target.protocol} URL`) });
  }
  const headers = new Headers(hop.headers);
  let { method, payload } = hop;
  if (((redirect.status === 301 || redirect.status === 302) && method === 'POST') || (redirect.status === 303 && method !== 'GET' && method !== 'HEAD')) {
    method = 'GET';
    payload = undefined;
    for (const name of BODY_HEADERS) headers.delete(name);
  }
  if (target.origin !== hop.target.origin) for (const name of CREDENTIAL_HEADERS) headers.delete(name);
  return { target, method, headers, payload };
}

/** A request that failed on a reused keep-alive connection before any byte of an answer: the server had closed it. */
class StaleConnection extends Error {
  constructor(readonly failure: Error) {
    super(failure.message);
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
async function exchangeRetryingStale(routes: HttpRoutes, hop: Hop, signal: AbortSignal | undefined, manual: boolean): Promise<Response | Redirect> {
  const replayable = IDEMPOTENT_METHODS.has(hop.method.toUpperCase()) || hop.headers.has(IDEMPOTENCY_KEY);
  for (let retries = 0; ; retries++) {
    try {
      return await exchange(routes, hop, signal, manual);
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

/**
 * One request and its response: the `Response`, or the redirect to follow (its body discarded)
 * unless `manual`. Rejects as fetch does: `TypeError('fetch failed')` with the cause, the signal's
 * reason on abort, and a `LocalError` when the network settings cannot be used for this URL; and
 * with a {@link StaleConnection} when a reused connection fails before any answer.
 */
async function exchange(routes: HttpRoutes, hop: Hop, signal: AbortSignal | undefined, manual: boolean): Promise<Response | Redirect> {
  const headers: OutgoingHttpHeaders = {};
  hop.headers.forEach((value, name) => {
    headers[name] = value;
  });
  if (hop.payload !== undefined) headers['content-length'] = String(hop.payload.byteLength);

  const { request, proxy } = await routes.request(hop.target, { method: hop.method, headers });
  return new Promise<Response | Redirect>((resolve, reject) => {
    if (signal?.aborted === true) {
      // Aborted while the route was being made: never sent (destroying it reports a hang-up).
      request.once('error', () => undefined);
      request.destroy();
      reject(abortError(signal));
      return;
    }
    let settled = false;
    let response: IncomingMessage | undefined;
    let stream: ReadableStreamDefaultController<Uint8Array> | undefined;
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
      stream?.error(reason);
      stream = undefined;
      if (response === undefined || response.complete) return;
      // Let a response that is about to end finish, so its connection stays reusable.
      const drained = response;
      drained.resume();
      const timer = setTimeout(() => request.destroy(), ABORT_DRAIN_MS);
      timer.unref();
      drained.once('end', () => clearTimeout(timer));
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
      done();
      if (!settled) {
        settled = true;
        const code: unknown = 'code' in error ? error.code : undefined;
        if (request.reusedSocket && typeof code === 'string' && CLOSED_CONNECTION_CODES.has(code)) reject(new StaleConnection(viaProxy(error)));
        else reject(new TypeError('fetch failed', { cause: viaProxy(error) }));
        return;
      }
      stream?.error(new TypeError('terminated', { cause: viaProxy(error) }));
      stream = undefined;
    });

    request.once('response', (res) => {
      const status = res.statusCode ?? 0;
      // 407 can only be the proxy's own answer: it is a failure to get through, not the server's.
      const refused = tunnelRefused ?? (proxy !== undefined && status === 407 ? `${status} ${res.statusMessage ?? ''}`.trim() : undefined);
      if (refused !== undefined) {
        settled = true;
        done();
        res.resume();
        reject(new TypeError('fetch failed', { cause: viaProxy(new LocalError(LocalErrorCode.ConnectFailed, `it refused the request for ${hop.target.host}: ${refused}`)) }));
        return;
      }
      const location = res.headers.location;
      if (!manual && REDIRECT_STATUSES.has(status) && location !== undefined) {
        settled = true;
        done();
        res.resume();
        resolve({ status, location });
        return;
      }
      response = res;
      const responseHeaders = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (Array.isArray(value)) for (const item of value) responseHeaders.append(name, item);
        else if (value !== undefined) responseHeaders.set(name, value);
      }
      const source = decoded(res);
      let responseBody: ReadableStream<Uint8Array> | null = null;
      if (NULL_BODY_STATUSES.has(status) || hop.method === 'HEAD') {
        res.resume();
        done();
      } else {
        responseBody = new ReadableStream<Uint8Array>({
          start(controller) {
            stream = controller;
            source.on('data', (chunk: Buffer) => {
              if (stream === undefined) return;
              stream.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
              if ((stream.desiredSize ?? 1) <= 0) source.pause();
            });
            source.once('end', () => {
              done();
              stream?.close();
              stream = undefined;
            });
            source.once('error', (error) => {
              done();
              stream?.error(new TypeError('terminated', { cause: error }));
              stream = undefined;
            });
            // A connection that closes before the body ended is a broken stream, not an end.
            res.once('close', () => {
              if (res.complete) return;
              done();
              stream?.error(new TypeError('terminated', { cause: new Error('the connection closed before the response ended') }));
              stream = undefined;
            });
          },
          pull() {
            source.resume();
          },
          cancel() {
            stream = undefined;
            if (!res.complete) request.destroy();
          },
        });
      }
      settled = true;
      resolve(new Response(responseBody, { status, statusText: res.statusMessage ?? '', headers: responseHeaders }));
    });

    request.end(hop.payload);
  });
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
function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  return new DOMException(typeof reason === 'string' ? reason : 'This operation was aborted', 'AbortError');
}
