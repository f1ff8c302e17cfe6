import type { ClientRequest, IncomingMessage } from 'node:http';
import { z } from 'zod';
import { HttpRequest, HttpRequestBodyDelta, type HttpRequestParams } from '../protocol/exec.js';
import { DEFAULT_MAX_WHOLE_FILE_BYTES } from '../protocol/limits.js';
import type { RpcConnection } from '../rpc/connection.js';
import { RpcError } from '../rpc/errors.js';
import type { HttpRoutes } from '../transport/http-routes.js';
import { describeProxy, type NetworkSettings } from '../transport/network.js';
import { abortReason } from '../util/abort.js';
import { decodeBase64, encodeBase64 } from '../util/base64.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/**
 * Bound on a buffered (`streamResponse: false`) response body: the largest whose base64 fits in
 * one message with the default message limit, as for whole files.
 */
export const DEFAULT_MAX_BUFFERED_BODY_BYTES = DEFAULT_MAX_WHOLE_FILE_BYTES;
/** Bound on the redirects one request follows with `redirectPolicy: "follow"`. */
export const DEFAULT_MAX_REDIRECTS = 10;
/** Largest body chunk one `http/request/bodyDelta` carries (Codex caps deltas at 1 MiB). */
export const MAX_BODY_DELTA_BYTES = 1024 * 1024;
/** How long an idle keep-alive connection to an HTTP server (or proxy) is kept for the next request. */
const KEEP_ALIVE_MS = 30_000;

/** Options of {@link registerHttpHandlers}. */
export interface HttpHandlerOptions {
  /** The executor's environment, the source of `valueEnvVar` header values. */
  env: Readonly<Record<string, string | undefined>>;
  /**
   * How requests leave the executor: its proxies (`HTTP(S)_PROXY`, `ALL_PROXY`, `NO_PROXY`) and
   * extra trusted roots, as the real exec-server's HTTP client reads them from its environment.
   * @default direct, trusting Node.js's roots
   */
  network?: NetworkSettings;
  /** @default DEFAULT_MAX_BUFFERED_BODY_BYTES */
  maxBufferedBodyBytes?: number;
  /** @default DEFAULT_MAX_REDIRECTS */
  maxRedirects?: number;
}

/** A header as sent: lowercase name (as hyper sends them), value. */
type HeaderPair = [name: string, value: string];

/** One HTTP exchange on the way to the final response (redirects make several). */
interface Hop {
  url: URL;
  method: string;
  headers: HeaderPair[];
  body: Buffer | undefined;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Methods whose requests carry a body, so an absent one is announced as `content-length: 0`. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** Headers that describe the request body; dropped when a redirect turns the request into a GET. */
const BODY_HEADERS = new Set(['content-length', 'content-type', 'content-encoding', 'transfer-encoding']);
/** What https-proxy-agent reports of the proxy's answer to `CONNECT`. */
const ProxyConnectSchema = z.looseObject({ statusCode: z.number(), statusText: z.string().optional() });
/** Headers that must not follow a redirect to another origin (what reqwest strips). */
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization', 'www-authenticate', 'host']);

/**
 * Registers `http/request` on a server-side connection: the executor performs the request with
 * node:http(s) (not fetch, which would merge repeated response headers and hide their wire order),
 * answers with the whole body or streams it as `http/request/bodyDelta` notifications.
 * Every in-flight request is destroyed when the connection closes.
 */
export function registerHttpHandlers(connection: RpcConnection, options: HttpHandlerOptions): void {
  const maxBufferedBodyBytes = options.maxBufferedBodyBytes ?? DEFAULT_MAX_BUFFERED_BODY_BYTES;
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  /** requestIds of streamed requests whose final delta has not been sent yet. */
  const activeStreams = new Set<string>();
  // Per-connection routes keep connections alive between requests of one client and let the
  // connection's end tear down every socket, idle or busy.
  // node:http(s), node:tls and the routes load with the connection's first request: every
  // connection (the local environment's too, made as the server starts) registers this handler,
  // and most never send HTTP.
  let routes: Promise<HttpRoutes> | undefined;
  const routesOnce = (): Promise<HttpRoutes> =>
    (routes ??= import('../transport/http-routes.js').then(({ HttpRoutes }) => new HttpRoutes(options.network ?? {}, { keepAliveMs: KEEP_ALIVE_MS })));
  connection.signal.addEventListener(
    'abort',
    // Routes that failed to load hold no sockets; the failure was the requests' to report.
    () => void routes?.then((made) => made.destroy()).catch(() => undefined),
    { once: true },
  );

  connection.onRequest(HttpRequest, async (params) => {
    const [headerChecks, connectionRoutes] = await Promise.all([import('node:http'), routesOnce()]);
    const hop = prepareRequest(params, options.env, headerChecks);
    const streamed = params.streamResponse === true;
    if (streamed) {
      if (activeStreams.has(params.requestId)) {
        throw RpcError.invalidParams(`http/request streamResponse requestId \`${params.requestId}\` is already active`);
      }
      activeStreams.add(params.requestId);
    }
    const exchange = new Exchange(hop, {
      routes: connectionRoutes,
      signal: connection.signal,
      timeoutMs: params.timeoutMs ?? undefined,
      maxRedirects,
      followRedirects: params.redirectPolicy !== 'stop',
    });
    let response: IncomingMessage;
    try {
      response = await exchange.start();
    } catch (error) {
      exchange.dispose();
      if (streamed) activeStreams.delete(params.requestId);
      throw RpcError.internal(`http/request failed: ${describeSendFailure(error, hop.url)}`);
    }
    const head = { status: response.statusCode ?? 0, headers: responseHeaders(response) };

    if (!streamed) {
      try {
        const body = await exchange.readAll(maxBufferedBodyBytes);
        return { ...head, bodyBase64: encodeBase64(body) };
      } catch (error) {
        throw RpcError.internal(`http/request failed: ${describeBodyFailure(error)}`);
      } finally {
        exchange.dispose();
      }
    }

    // The connection sends our response when this promise resolves, and that happens in
    // microtasks chained on the resolution. A delta emitted before then would overtake the
    // response, and the client would see a body for a request it has not been answered yet.
    // setImmediate runs after the microtask queue has drained, so after the response is out.
    setImmediate(() => {
      void streamBody(connection, params.requestId, exchange).finally(() => {
        exchange.dispose();
        activeStreams.delete(params.requestId);
      });
    });
    return { ...head, bodyBase64: '' };
  });
}

/** Sends the response body as deltas of at most {@link MAX_BODY_DELTA_BYTES}, then the final one. */
async function streamBody(connection: RpcConnection, requestId: string, exchange: Exchange): Promise<void> {
  let seq = 0;
  const emit = async (bytes: Uint8Array, done: boolean, error: string | null): Promise<void> => {
    seq += 1;
    const sent = connection.notify(HttpRequestBodyDelta, { requestId, seq, deltaBase64: encodeBase64(bytes), done, error });
    // Back-pressure: while we wait, the response stream is not read, so the socket fills and
    // the HTTP server is slowed down instead of our memory growing.
    if (!sent) await connection.waitForDrain();
  };
  let failure: string | null = null;
  try {
    for await (const chunk of exchange.bodyChunks()) {
      for (let offset = 0; offset < chunk.length; offset += MAX_BODY_DELTA_BYTES) {
        await emit(chunk.subarray(offset, offset + MAX_BODY_DELTA_BYTES), false, null);
      }
    }
  } catch (error) {
    failure = describeBodyFailure(error);
  }
  if (!connection.isClosed) await emit(new Uint8Array(0), true, failure);
}

/** node:http's checks of a header's name and value. */
interface HeaderChecks {
  validateHeaderName(name: string): void;
  validateHeaderValue(name: string, value: string): void;
}

/** Validates params into the first hop; every refusal is -32602. */
function prepareRequest(params: HttpRequestParams, env: Readonly<Record<string, string | undefined>>, checks: HeaderChecks): Hop {
  let url: URL;
  try {
    url = new URL(params.url);
  } catch {
    throw RpcError.invalidParams(`http/request url is not a valid absolute URL: ${params.url}`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== 'http' && scheme !== 'https') {
    throw RpcError.invalidParams(`http/request only supports http and https URLs, got ${scheme}`);
  }
  const method = params.method.toUpperCase();
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(method)) throw RpcError.invalidParams(`http/request method is not a valid HTTP method: ${params.method}`);

  const headers: HeaderPair[] = [];
  for (const header of params.headers ?? []) {
    let value = header.value;
    const variable = header.valueEnvVar ?? undefined;
    if (variable !== undefined) {
      const suffix = env[variable];
      if (suffix === undefined) {
        throw RpcError.invalidParams(`http/request header \`${header.name}\` names environment variable \`${variable}\`, which is not set on the executor`);
      }
      value += suffix;
    }
    try {
      checks.validateHeaderName(header.name);
      checks.validateHeaderValue(header.name, value);
    } catch (error) {
      throw RpcError.invalidParams(`http/request header \`${header.name}\` is invalid: ${errorMessage(error)}`);
    }
    headers.push([header.name.toLowerCase(), value]);
  }

  // Like reqwest, credentials in the URL become basic authentication.
  if ((url.username !== '' || url.password !== '') && !headers.some(([name]) => name === 'authorization')) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.push(['authorization', `Basic ${Buffer.from(credentials).toString('base64')}`]);
  }

  let body: Buffer | undefined;
  if (params.bodyBase64 !== undefined && params.bodyBase64 !== null) {
    body = decodeBase64(params.bodyBase64);
    if (body === undefined) throw RpcError.invalidParams('http/request bodyBase64 is not valid base64');
  }
  return { url, method, headers, body };
}

/** The next hop of a redirect, as browsers and reqwest do it. */
function redirectHop(previous: Hop, status: number, next: URL): Hop {
  let { method, body } = previous;
  let headers = previous.headers;
  if ((status === 301 || status === 302 || status === 303) && method !== 'GET' && method !== 'HEAD') {
    method = 'GET';
    body = undefined;
    headers = headers.filter(([name]) => !BODY_HEADERS.has(name));
  }
  if (next.origin !== previous.url.origin) headers = headers.filter(([name]) => !CREDENTIAL_HEADERS.has(name));
  headers = headers.filter(([name]) => name !== 'referer');
  // No referer on a downgrade from https to http, and never the credentials or fragment.
  if (!(previous.url.protocol === 'https:' && next.protocol === 'http:')) {
    const referer = new URL(previous.url);
    referer.username = '';
    referer.password = '';
    referer.hash = '';
    headers = [...headers, ['referer', referer.href]];
  }
  return { url: next, method, headers, body };
}

/** Response headers with lowercase names, in wire order, repeated names kept. */
function responseHeaders(response: IncomingMessage): { name: string; value: string }[] {
  const raw = response.rawHeaders;
  const headers: { name: string; value: string }[] = [];
  for (let index = 0; index + 1 < raw.length; index += 2) {
    headers.push({ name: (raw[index] ?? '').toLowerCase(), value: raw[index + 1] ?? '' });
  }
  return headers;
}

function describeSendFailure(error: unknown, url: URL): string {
  // Our own errors (timeout, connection closed, redirect limits) already say what happened.
  if (error instanceof LocalError) return error.message;
  return `error sending request for url (${url.href}): ${errorMessage(error)}`;
}

function describeBodyFailure(error: unknown): string {
  if (error instanceof LocalError) return error.message;
  return `error reading response body: ${errorMessage(error)}`;
}

interface ExchangeOptions {
  routes: HttpRoutes;
  /** The connection's lifetime. */
  signal: AbortSignal;
  /** Deadline of the whole exchange, body included; undefined = none. */
  timeoutMs: number | undefined;
  followRedirects: boolean;
  maxRedirects: number;
}

/**
 * One `http/request` from the first byte sent to the last byte read, redirects included. It owns
 * the deadline and the link to the connection's lifetime; aborting destroys the current request
 * and response with the reason, which then surfaces from whatever is waiting on them.
 */
class Exchange {
  readonly #first: Hop;
  readonly #options: ExchangeOptions;
  readonly #controller = new AbortController();
  readonly #onConnectionClosed = (): void => this.#controller.abort(abortReason(this.#options.signal));
  #timer: NodeJS.Timeout | undefined;
  #request: ClientRequest | undefined;
  #response: IncomingMessage | undefined;

  constructor(first: Hop, options: ExchangeOptions) {
    this.#first = first;
    this.#options = options;
    this.#controller.signal.addEventListener('abort', () => {
      const reason = abortReason(this.#controller.signal);
      this.#request?.destroy(reason);
      this.#response?.destroy(reason);
    });
    if (options.signal.aborted) this.#onConnectionClosed();
    else options.signal.addEventListener('abort', this.#onConnectionClosed, { once: true });
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined) {
      this.#timer = setTimeout(() => {
        this.#controller.abort(new LocalError(LocalErrorCode.RequestTimeout, `request to ${first.url.href} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
    }
  }

  /** Sends the request, follows redirects per the policy, and resolves with the final response. */
  async start(): Promise<IncomingMessage> {
    let hop = this.#first;
    for (let redirects = 0; ; redirects += 1) {
      const response = await this.#send(hop);
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if (!this.#options.followRedirects || !REDIRECT_STATUSES.has(status) || location === undefined) return response;
      let next: URL;
      try {
        next = new URL(location, hop.url);
      } catch {
        // An unusable location leaves the redirect as the answer, as reqwest does.
        return response;
      }
      response.destroy();
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new LocalError(LocalErrorCode.InvalidArgument, `redirect from ${hop.url.href} to an unsupported URL scheme: ${next.protocol.slice(0, -1)}`);
      }
      if (redirects >= this.#options.maxRedirects) {
        throw new LocalError(LocalErrorCode.LimitExceeded, `too many redirects (more than ${this.#options.maxRedirects}) starting at ${this.#first.url.href}`);
      }
      hop = redirectHop(hop, status, next);
    }
  }

  /** The whole body of the final response, bounded by `limit`. */
  async readAll(limit: number): Promise<Buffer> {
    const response = this.#current();
    const tooLarge = (): LocalError =>
      new LocalError(LocalErrorCode.LimitExceeded, `response body exceeds the ${limit}-byte limit of buffered http/request; use streamResponse for large bodies`);
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) throw tooLarge();
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of this.bodyChunks()) {
      total += chunk.length;
      if (total > limit) throw tooLarge();
      chunks.push(chunk);
    }
    return Buffer.concat(chunks, total);
  }

  /** The final response's body, chunk by chunk; throws when the body fails or is cut short. */
  async *bodyChunks(): AsyncGenerator<Buffer> {
    const response = this.#current();
    for await (const chunk of response) {
      yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    }
    if (this.#controller.signal.aborted) throw abortReason(this.#controller.signal);
    if (!response.complete) throw new Error('the connection closed before the body was complete');
  }

  /** Stops the deadline, unlinks from the connection, and destroys whatever is still open. */
  dispose(): void {
    clearTimeout(this.#timer);
    this.#options.signal.removeEventListener('abort', this.#onConnectionClosed);
    // A completed response has handed its socket back to the agent for the next request.
    if (this.#response?.complete !== true) {
      this.#response?.destroy();
      this.#request?.destroy();
    }
  }

  #current(): IncomingMessage {
    if (this.#response === undefined) throw new LocalError(LocalErrorCode.ProtocolViolation, 'http/request has no response yet');
    return this.#response;
  }

  async #send(hop: Hop): Promise<IncomingMessage> {
    const signal = this.#controller.signal;
    if (signal.aborted) throw abortReason(signal);
    // Raw (array) headers keep the caller's order and repeats; node then adds nothing but
    // `connection`, so `host` and the body's length are ours to add.
    const raw: string[] = [];
    if (!hop.headers.some(([name]) => name === 'host')) raw.push('host', hop.url.host);
    for (const [name, value] of hop.headers) raw.push(name, value);
    const framed = hop.headers.some(([name]) => name === 'content-length' || name === 'transfer-encoding');
    if (!framed && (hop.body !== undefined || BODY_METHODS.has(hop.method))) raw.push('content-length', String(hop.body?.length ?? 0));
    // Direct, or through the proxy the executor's settings name for this URL.
    const { request, proxy } = await this.#options.routes.request(hop.url, { method: hop.method, headers: raw });
    if (signal.aborted) {
      request.destroy();
      throw abortReason(signal);
    }
    return new Promise<IncomingMessage>((resolve, reject) => {
      const viaProxy = (error: Error): Error => (proxy === undefined ? error : new Error(`through the proxy ${describeProxy(proxy)}: ${error.message}`, { cause: error }));
      this.#request = request;
      let tunnelRefused: string | undefined;
      // A refused `CONNECT` is replayed by the tunnelling agent as if the server had answered it:
      // it is a failure to get through (as reqwest has it), not the server's response.
      request.once('proxyConnect', (connect: unknown) => {
        const parsed = ProxyConnectSchema.safeParse(connect);
        if (parsed.success && parsed.data.statusCode !== 200) tunnelRefused = `${parsed.data.statusCode} ${parsed.data.statusText ?? ''}`.trim();
      });
      request.on('error', (error) => {
        reject(viaProxy(error));
        // A socket failure after the head arrived must surface from the body.
        this.#response?.destroy(error);
      });
      request.on('response', (response) => {
        if (tunnelRefused !== undefined) {
          response.resume();
          reject(viaProxy(new LocalError(LocalErrorCode.ConnectFailed, `it refused the tunnel to ${hop.url.host}: ${tunnelRefused}`)));
          return;
        }
        this.#response = response;
        // Whoever reads the body reports its errors; this keeps one with no reader yet from
        // becoming an uncaught exception.
        response.on('error', () => undefined);
        resolve(response);
      });
      request.end(hop.body);
    });
  }
}
