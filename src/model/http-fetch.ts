import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

/**
 * A `fetch` for the `openai` SDK over `node:http`/`node:https` with keep-alive agents. Node's
 * built-in fetch (undici) costs about 1 ms of CPU per model request on top of the HTTP work itself
 * (its Request/Response machinery, WHATWG streams end to end, a DOMException per abort); this one
 * hands the SDK a standard `Response` whose body is fed straight from the socket.
 *
 * It covers what the SDK sends: a string or byte body, any method, headers, an AbortSignal.
 * Anything else (a `Request` object, a streamed or form body, a redirect to follow, a URL that is
 * neither http nor https) is handed to the fallback fetch, so behaviour never depends on which
 * path a request took.
 */

/** How long an idle keep-alive connection is kept, by default (below common server timeouts of 5 s). */
export const DEFAULT_KEEP_ALIVE_MS = 4_000;

/**
 * After an abort, how long a response that is still arriving may take to end before its
 * connection is closed. Lets the end of a completed stream (often a separate packet) arrive so
 * the connection can be reused; the caller sees the abort at once either way.
 */
export const ABORT_DRAIN_MS = 50;

/** Options of {@link createHttpFetch}. */
export interface HttpFetchOptions {
  /** Idle keep-alive connections are closed after this long. @default {@link DEFAULT_KEEP_ALIVE_MS} */
  keepAliveMs?: number;
  /** Handles what this fetch does not (see above). @default globalThis.fetch */
  fallback?: typeof fetch;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** Creates the fetch; its agents live as long as it does (idle sockets never keep the process alive). */
export function createHttpFetch(options: HttpFetchOptions = {}): typeof fetch {
  const keepAliveMs = options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;
  const fallback = options.fallback ?? globalThis.fetch;
  const agents = {
    http: new HttpAgent({ keepAlive: true, timeout: keepAliveMs }),
    https: new HttpsAgent({ keepAlive: true, timeout: keepAliveMs }),
  };

  const httpFetch = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const body = init.body ?? undefined;
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : undefined;
    if (url === undefined || !(body === undefined || typeof body === 'string' || body instanceof Uint8Array) || (init.redirect !== undefined && init.redirect !== 'follow')) {
      return fallback(input, init);
    }
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    if (!secure && target.protocol !== 'http:') return fallback(input, init);
    const signal = init.signal ?? undefined;
    if (signal?.aborted === true) return Promise.reject(abortError(signal));

    const headers: OutgoingHttpHeaders = {};
    new Headers(init.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const payload = typeof body === 'string' ? Buffer.from(body) : body;
    if (payload !== undefined) headers['content-length'] = String(payload.byteLength);

    return new Promise<Response>((resolve, reject) => {
      const request = (secure ? httpsRequest : httpRequest)(target, { method: init.method ?? 'GET', headers, agent: secure ? agents.https : agents.http });
      let settled = false;
      let response: IncomingMessage | undefined;
      let stream: ReadableStreamDefaultController<Uint8Array> | undefined;

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

      request.once('error', (error) => {
        done();
        if (!settled) {
          settled = true;
          reject(new TypeError('fetch failed', { cause: error }));
          return;
        }
        stream?.error(new TypeError('terminated', { cause: error }));
        stream = undefined;
      });

      request.once('response', (res) => {
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (REDIRECT_STATUSES.has(status) && location !== undefined) {
          // Redirects follow the fetch standard's rules; leave them to the fallback.
          settled = true;
          done();
          res.resume();
          fallback(input, init).then(resolve, reject);
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
        if (NULL_BODY_STATUSES.has(status) || init.method === 'HEAD') {
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

      request.end(payload);
    });
  };
  return httpFetch;
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
