// What the scripted model servers share (fake-responses-server.ts for the OpenAI Responses API,
// fake-anthropic-server.ts for the Anthropic Messages API): an HTTP(S) server on 127.0.0.1 that
// records every request with its headers and body, lets tests wait for requests, collects the
// problems it hit, and closes completely. Each fake adds only its routes and its wire format.

import { realpathSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { deferred } from '../src/util/deferred.js';
import type { Deferred } from '../src/util/deferred.js';

/** How long {@link RecordingServer.waitForRequests} waits by default. */
export const DEFAULT_WAIT_FOR_REQUESTS_TIMEOUT_MS = 10_000;

/** Largest request body accepted; bigger bodies get a 413 and an entry in `errors`. */
export const MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024;

/** One HTTP request the server received. */
export interface RecordedRequest {
  /** e.g. `POST`. */
  method: string;
  /** Path without the query string, e.g. `/v1/responses`. */
  path: string;
  /** The raw request target, with any query string. */
  url: string;
  /** Header names lowercased; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** The body parsed as JSON; `undefined` when empty or not JSON. */
  body: unknown;
  /** The body as text (after undoing any `content-encoding`). */
  rawBody: string;
}

/** Options of {@link startRecordingServer}. */
export interface RecordingServerOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (any free port) */
  port?: number;
  /** Serves HTTPS with this key and certificate (PEM) instead of plain HTTP. @default plain HTTP */
  tls?: { key: string; cert: string };
  /** The host named in `origin` (e.g. `localhost`, the name a certificate was issued to). @default the bound address */
  urlHost?: string;
  /** Receives each recorded error (the routes log their own lines). @default no logging */
  log?: (line: string) => void;
  /**
   * Keeps every request in `requests`. A benchmark sending thousands of growing model requests
   * turns it off, so the heap it keeps does not grow (and cost GC time) with the run; requests are
   * still counted for `waitForRequests`. @default true
   */
  keepRequests?: boolean;
  /** The error body of the faked API, for the answers the core gives itself (bad bodies, handler failures). */
  errorBody: (status: number, message: string) => unknown;
  /** Answers one recorded request whose body was read; a rejection becomes a 500 and an entry in `errors`. */
  route: (request: RecordedRequest, res: ServerResponse) => Promise<void>;
}

/** A running recording server. */
export interface RecordingServer {
  /** e.g. `http://127.0.0.1:4321`, without a trailing slash. */
  readonly origin: string;
  /** Every request received (any path), in order of arrival of its complete body; empty unless `keepRequests`. */
  readonly requests: RecordedRequest[];
  /** Problems the server hit (exhausted script, bad request bodies, unknown routes…); tests assert it is empty. */
  readonly errors: string[];
  /** Adds a problem to `errors` (and the log). */
  recordError(message: string): void;
  /** Resolves once `n` requests were recorded; rejects after `timeoutMs` or when the server closes. */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  /** Stops listening and destroys open sockets. Idempotent. */
  close(): Promise<void>;
}

/** Starts a server that records every request and hands it to `route`. */
export async function startRecordingServer(options: RecordingServerOptions): Promise<RecordingServer> {
  const host = options.host ?? '127.0.0.1';
  const requests: RecordedRequest[] = [];
  const errors: string[] = [];
  const sockets = new Set<Socket>();
  const waiters = new Set<{ n: number; done: Deferred<void>; timer: NodeJS.Timeout }>();
  let closing: Promise<void> | undefined;

  const recordError = (message: string): void => {
    errors.push(message);
    options.log?.(`error: ${message}`);
  };

  const keep = options.keepRequests ?? true;
  let received = 0;
  const record = (request: RecordedRequest): void => {
    received += 1;
    if (keep) requests.push(request);
    for (const waiter of waiters) {
      if (received >= waiter.n) {
        clearTimeout(waiter.timer);
        waiters.delete(waiter);
        waiter.done.resolve();
      }
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // A client that goes away mid-answer must not crash the server.
    res.on('error', () => undefined);
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    const body = await readBody(req);
    const recorded: RecordedRequest = {
      method,
      path: url.split('?', 1)[0] ?? '/',
      url,
      headers: flattenHeaders(req),
      body: body.ok ? parseJson(body.text) : undefined,
      rawBody: body.ok ? body.text : '',
    };
    record(recorded);
    if (!body.ok) {
      recordError(`${method} ${url}: ${body.message}`);
      sendJson(res, body.status, options.errorBody(body.status, body.message));
      return;
    }
    await options.route(recorded, res);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      recordError(`handler failed for ${req.method ?? '?'} ${req.url ?? '?'}: ${errorMessage(error)}`);
      if (!res.headersSent) sendJson(res, 500, options.errorBody(500, 'fake server failure'));
      else res.destroy();
    });
  };
  const server = options.tls === undefined ? createServer(onRequest) : createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, onRequest);
  // Over TLS, `connection` is the raw TCP socket, which is what must be destroyed on close.
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fake server has no TCP address');
  const urlHost = options.urlHost ?? (address.family === 'IPv6' ? `[${address.address}]` : address.address);

  return {
    origin: `${options.tls === undefined ? 'http' : 'https'}://${urlHost}:${address.port}`,
    requests,
    errors,
    recordError,
    waitForRequests(n: number, timeoutMs = DEFAULT_WAIT_FOR_REQUESTS_TIMEOUT_MS): Promise<void> {
      if (received >= n) return Promise.resolve();
      if (closing !== undefined) return Promise.reject(new Error(`waitForRequests(${n}): server is closed`));
      const done = deferred<void>();
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        const seen = requests.map((r) => `${r.method} ${r.path}`).join(', ');
        done.reject(new Error(`waitForRequests(${n}) timed out after ${timeoutMs} ms with ${received} request(s): [${seen}]`));
      }, timeoutMs);
      const waiter = { n, done, timer };
      waiters.add(waiter);
      return done.promise;
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        for (const waiter of waiters) {
          clearTimeout(waiter.timer);
          waiter.done.reject(new Error(`waitForRequests(${waiter.n}): server closed with ${received} request(s)`));
        }
        waiters.clear();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers for the fakes' answers.

/** Mints ids as `<prefix>_<n>`. */
export type IdSource = (prefix: string) => string;

/** Ids as `<prefix>_<n>`, counted per prefix, so a script's first generated call id is `call_1`. */
export function createIdSource(): IdSource {
  const counters = new Map<string, number>();
  return (prefix) => {
    const next = (counters.get(prefix) ?? 0) + 1;
    counters.set(prefix, next);
    return `${prefix}_${next}`;
  };
}

/** Splits text into 1–3 deltas (by code point, so surrogate pairs stay whole); none for "". */
export function splitText(text: string): string[] {
  const chars = Array.from(text);
  if (chars.length === 0) return [];
  const parts = chars.length >= 12 ? 3 : chars.length >= 2 ? 2 : 1;
  const size = Math.ceil(chars.length / parts);
  const deltas: string[] = [];
  for (let start = 0; start < chars.length; start += size) deltas.push(chars.slice(start, start + size).join(''));
  return deltas;
}

/** Answers with a JSON body, unless an answer was already started or the client has gone. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Resolves true once `chunk` is handed to the socket, false when the client has gone. */
export function writeChunk(res: ServerResponse, chunk: string): Promise<boolean> {
  if (res.destroyed || res.writableEnded) return Promise.resolve(false);
  return new Promise((resolve) => {
    res.write(chunk, (error) => resolve(error == null));
  });
}

/** The message of anything thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** True for a plain (non-array) object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** True when the module at `moduleUrl` (its `import.meta.url`) is the script node was started with. */
export function isRunDirectly(moduleUrl: string): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Request reading.

type BodyResult = { ok: true; text: string } | { ok: false; status: number; message: string };

async function readBody(req: IncomingMessage): Promise<BodyResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  for await (const chunk of req) {
    if (!Buffer.isBuffer(chunk)) continue;
    size += chunk.length;
    // Keep draining so the client sees our answer rather than a reset.
    if (size > MAX_REQUEST_BODY_BYTES) tooLarge = true;
    else chunks.push(chunk);
  }
  if (tooLarge) return { ok: false, status: 413, message: `request body exceeds ${MAX_REQUEST_BODY_BYTES} bytes` };
  const raw = Buffer.concat(chunks);
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  try {
    switch (encoding) {
      case 'identity':
      case '':
        return { ok: true, text: raw.toString('utf8') };
      case 'gzip':
        return { ok: true, text: gunzipSync(raw).toString('utf8') };
      case 'deflate':
        return { ok: true, text: inflateSync(raw).toString('utf8') };
      case 'br':
        return { ok: true, text: brotliDecompressSync(raw).toString('utf8') };
      default:
        return { ok: false, status: 415, message: `unsupported content-encoding ${encoding}` };
    }
  } catch (error) {
    return { ok: false, status: 400, message: `cannot decode ${encoding} body: ${errorMessage(error)}` };
  }
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

function parseJson(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
