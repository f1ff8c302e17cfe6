import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type * as WsModule from 'ws';
import type { RawData, WebSocket } from 'ws';

/** `ws` is loaded on first use (about 40 ms of start-up otherwise). */
let wsLoading: Promise<typeof WsModule> | undefined;
function loadWs(): Promise<typeof WsModule> {
  wsLoading ??= import('ws');
  return wsLoading;
}

/** `WebSocket.OPEN` and `WebSocket.CLOSED`, without loading `ws`. */
const OPEN = 1;
const CLOSED = 3;
import { DEFAULT_MAX_MESSAGE_BYTES, MAX_WEBSOCKET_FRAME_BYTES } from '../protocol/limits.js';
import { sleep } from '../util/abort.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { decodeUtf8 } from './text.js';
import { isValueMessage, type MessageTransport, type ValueMessage } from './transport.js';

/**
 * Above this many buffered bytes `send` reports back-pressure. Small on purpose: the kernel's
 * socket buffer holds megabytes more, and a message that waits here long enough to outlive the
 * young generation's collections (4 MiB did, for streamed output) costs a full collection to free.
 */
const HIGH_WATER_BYTES = 1024 * 1024;
/** How often the server pings each client; a client that misses a pong is dropped. */
const DEFAULT_PING_INTERVAL_MS = 30_000;

/**
 * One JSON-RPC message per websocket message; text frames out (a long message in fragments of
 * at most {@link MAX_WEBSOCKET_FRAME_BYTES}), text or binary in.
 */
class WebSocketTransport implements MessageTransport {
  onmessage?: (text: string) => void;
  onbytes?: (bytes: Buffer) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;
  ondrain?: () => void;
  #closing?: Promise<void>;
  #closeRequested = false;
  #wantDrain = false;
  #closedOnce = false;
  #corked = false;
  /** Set when the peer sent a message over the limit, which makes `ws` close the connection. */
  #oversized = false;

  /**
   * @param maxMessageBytes The limit `socket` enforces on incoming messages (for messages).
   * @param raw The TCP socket under `socket`, when known: messages sent in one tick are then
   *   corked into one write (many small responses cost one syscall instead of one each).
   */
  constructor(
    private readonly socket: WebSocket,
    readonly label: string,
    private readonly maxMessageBytes: number,
    private readonly raw?: Duplex,
  ) {}

  start(): void {
    this.socket.on('message', (data: RawData) => {
      if (this.onbytes !== undefined) this.onbytes(rawToBuffer(data));
      else this.onmessage?.(decodeUtf8(rawToBuffer(data)));
    });
    this.socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.#oversized = true;
      this.onerror?.(error);
    });
    this.socket.once('close', (code, reason) => {
      if (this.#closedOnce) return;
      this.#closedOnce = true;
      const detail = reason.length > 0 ? `: ${reason.toString('utf8')}` : '';
      // A websocket cannot skip one message, so an oversized one costs the connection; say so.
      const why = this.#oversized ? `: the peer sent a message larger than the ${this.maxMessageBytes}-byte limit` : '';
      this.onclose?.(this.#closeRequested ? undefined : new LocalError(LocalErrorCode.ConnectionClosed, `${this.label} closed (code ${code}${detail})${why}`));
    });
  }

  send(outgoing: string | Buffer | ValueMessage): boolean {
    if (this.socket.readyState !== OPEN) return true;
    const message = isValueMessage(outgoing) ? outgoing.encode() : outgoing;
    if (this.raw !== undefined && !this.#corked) {
      this.#corked = true;
      this.raw.cork();
      process.nextTick(this.#uncork);
    }
    const sent = (error?: Error | null): void => {
      if (error !== undefined && error !== null) return;
      if (this.#wantDrain && this.socket.bufferedAmount < HIGH_WATER_BYTES / 2) {
        this.#wantDrain = false;
        this.ondrain?.();
      }
    };
    // A Buffer holds UTF-8 JSON: still a text frame. A string of at most a third of the frame
    // size fits one frame whatever its characters (at most 3 UTF-8 bytes per UTF-16 unit).
    const bytes = typeof message === 'string' && message.length * 3 > MAX_WEBSOCKET_FRAME_BYTES ? Buffer.from(message, 'utf8') : message;
    if (typeof bytes === 'string' || bytes.length <= MAX_WEBSOCKET_FRAME_BYTES) {
      this.socket.send(bytes, { binary: false }, sent);
    } else {
      // All fragments are queued in this one call, so no other message can come between them. A
      // fragment may end inside a character: only the whole message must be UTF-8 (RFC 6455 5.6).
      for (let start = 0; start < bytes.length; start += MAX_WEBSOCKET_FRAME_BYTES) {
        const fin = start + MAX_WEBSOCKET_FRAME_BYTES >= bytes.length;
        this.socket.send(bytes.subarray(start, start + MAX_WEBSOCKET_FRAME_BYTES), { binary: false, fin }, fin ? sent : undefined);
      }
    }
    if (this.socket.bufferedAmount > HIGH_WATER_BYTES) {
      this.#wantDrain = true;
      return false;
    }
    return true;
  }

  readonly #uncork = (): void => {
    this.#corked = false;
    this.raw?.uncork();
  };

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closeRequested = true;
      if (isClosed(this.socket)) return;
      const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
      this.socket.close();
      await Promise.race([closed, sleep(2000)]);
      if (!isClosed(this.socket)) this.socket.terminate();
      await closed;
    })();
    return this.#closing;
  }
}

function isClosed(socket: WebSocket): boolean {
  return socket.readyState === CLOSED;
}

function rawToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Options of {@link connectWebSocket}. */
export interface WebSocketConnectOptions {
  /** Extra upgrade headers, e.g. `authorization`. */
  headers?: Record<string, string>;
  /** Bound on TCP connect plus the upgrade handshake. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Largest incoming message; a larger one closes the connection (the peer gets code 1009). @default DEFAULT_MAX_MESSAGE_BYTES */
  maxMessageBytes?: number;
}

/** Opens a websocket to `url` and resolves with a started-able transport once the upgrade succeeded. */
export async function connectWebSocket(url: string, options: WebSocketConnectOptions): Promise<MessageTransport> {
  const { WebSocket } = await loadWs();
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, {
      headers: options.headers,
      maxPayload: maxMessageBytes,
      perMessageDeflate: false,
      handshakeTimeout: options.timeoutMs,
    });
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      socket.terminate();
      reject(error);
    };
    const onAbort = (): void => fail(options.signal?.reason instanceof Error ? options.signal.reason : new LocalError(LocalErrorCode.Aborted, 'aborted'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('unexpected-response', (_request, response: IncomingMessage) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('end', () => {
        const body = Buffer.concat(chunks).toString('utf8').trim();
        const status = response.statusCode ?? 0;
        const detail = body.length > 0 ? `: ${body}` : '';
        fail(
          status === 401 || status === 403
            ? new LocalError(LocalErrorCode.AuthFailed, `exec-server at ${url} rejected the connection (HTTP ${status}${detail})`)
            : new LocalError(LocalErrorCode.ProtocolViolation, `exec-server at ${url} answered the upgrade with HTTP ${status}${detail}`),
        );
      });
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') {
        fail(new LocalError(LocalErrorCode.ConnectRefused, `failed to connect to exec-server websocket \`${url}\`: connection refused`, { cause: error }));
      } else if (/timed out|timeout/i.test(error.message)) {
        fail(new LocalError(LocalErrorCode.ConnectTimeout, `timed out after ${options.timeoutMs} ms connecting to exec-server websocket \`${url}\``, { cause: error }));
      } else {
        // Only ECONNREFUSED says nothing listens; a reset or an unreachable host may pass.
        fail(new LocalError(LocalErrorCode.ConnectFailed, `failed to connect to exec-server websocket \`${url}\`: ${error.message}`, { cause: error }));
      }
    });
    socket.once('open', () => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(new WebSocketTransport(socket, url, maxMessageBytes));
    });
  });
}

/** The outcome of checking an upgrade request's credentials. */
export type AuthDecision = { ok: true } | { ok: false; message: string };

/** Options of {@link listenWebSocket}. */
export interface WebSocketListenOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Checks the `Authorization` header of each upgrade; absent means no auth. */
  authorize?: (authorization: string | undefined) => AuthDecision;
  /**
   * Origins (`scheme://host[:port]`, lower case) whose upgrades are served. Browsers put an
   * `Origin` header on every websocket upgrade and other clients send none, so an upgrade carrying
   * one comes from a web page: it is refused with HTTP 403 unless its origin is listed here.
   * @default [] (every upgrade with an `Origin` header is refused)
   */
  allowedOrigins?: readonly string[];
  onConnection: (transport: MessageTransport) => void;
  /** Largest incoming message; a larger one closes the connection (the peer gets code 1009). @default DEFAULT_MAX_MESSAGE_BYTES */
  maxMessageBytes?: number;
  /** @default 30000 */
  pingIntervalMs?: number;
}

/** A listening websocket endpoint. */
export interface WebSocketListener {
  /** The bound URL, e.g. `ws://127.0.0.1:43883`. */
  readonly url: string;
  /** Stops listening and drops every connection. */
  close(): Promise<void>;
}

/** The body of the 403 answer to an upgrade from a web page whose origin is not allowed. */
export const ORIGIN_REFUSED = 'websocket upgrade refused: requests from web pages (with an Origin header) are not allowed';

/** Answers an upgrade request with a plain HTTP error and closes the socket; nothing else is sent. */
function refuseUpgrade(socket: Duplex, status: string, message: string): void {
  const body = Buffer.from(message, 'utf8');
  const type = body.length > 0 ? 'content-type: text/plain\r\n' : '';
  socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status}\r\n${type}content-length: ${body.length}\r\nconnection: close\r\n\r\n`, 'latin1'), body]));
}

/**
 * Serves websocket upgrades on path `/` (any query), `GET /readyz` without auth, and plain
 * HTTP answers for everything else, like the Codex exec-server; upgrades from web pages (an
 * `Origin` header not in `allowedOrigins`) get 403, then missing credentials 401.
 */
export async function listenWebSocket(options: WebSocketListenOptions): Promise<WebSocketListener> {
  const { WebSocketServer } = await loadWs();
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const wss = new WebSocketServer({ noServer: true, maxPayload: maxMessageBytes, perMessageDeflate: false });
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method === 'GET' && path === '/readyz') {
      response.writeHead(200).end();
    } else if (path === '/') {
      response.writeHead(400, { 'content-type': 'text/plain' }).end("Connection header did not include 'upgrade'");
    } else {
      response.writeHead(404).end();
    }
  });
  const alive = new WeakMap<WebSocket, boolean>();
  const allowedOrigins = new Set(options.allowedOrigins ?? []);
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const path = (request.url ?? '/').split('?')[0];
    if (path !== '/') {
      refuseUpgrade(socket, '404 Not Found', '');
      return;
    }
    // Before authentication, as Codex does: a web page learns nothing about the token check.
    const origin = request.headers.origin;
    if (origin !== undefined && !allowedOrigins.has(origin.trim().toLowerCase())) {
      refuseUpgrade(socket, '403 Forbidden', ORIGIN_REFUSED);
      return;
    }
    const decision = options.authorize?.(request.headers.authorization) ?? { ok: true };
    if (!decision.ok) {
      refuseUpgrade(socket, '401 Unauthorized', decision.message);
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      const remote = `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
      options.onConnection(new WebSocketTransport(ws, `ws-client ${remote}`, maxMessageBytes, socket));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS);
  heartbeat.unref();
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `ws://${host}:${address.port}`,
    close: async () => {
      clearInterval(heartbeat);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
