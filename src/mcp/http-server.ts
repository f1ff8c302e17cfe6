import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, isJSONRPCNotification, isJSONRPCRequest, JSONRPCMessageSchema, type JSONRPCMessage, type JSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';
import type { AuthDecision } from '../transport/websocket.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import type { ModernEra } from './modern-era.js';
import { renameSubscription } from './task-listens.js';
import { nonObjectResultAsError } from './sdk-workarounds.js';
import type { McpFace } from './server.js';
import { messageLimitText } from './stdio-transport.js';

/**
 * MCP over Streamable HTTP, at the path {@link MCP_PATH}, in both eras:
 * - 2026-07-28 (modern): stateless. Each POST carries one request with its version in `_meta`;
 *   it is answered on that POST (an SSE stream with its progress, or JSON), by the process-wide
 *   {@link ModernEra}. Nothing depends on the connection or a session, so a reverse proxy may
 *   spread requests over connections as it likes.
 * - 2025-11-25 (legacy): `initialize` opens a session (`Mcp-Session-Id`) served by the SDK's
 *   transport and an MCP face of its own; all faces share the process's threads and environments.
 * Before anything else every request passes the Host check (on loopback, against DNS
 * rebinding), the Origin check (web pages) and the bearer token.
 */

/** Where MCP is served. */
export const MCP_PATH = '/mcp';

/** JSON-RPC codes of the errors answered before a message reaches an era. */
const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
/** The 2026-07-28 era's code for a header that contradicts the body (answered with HTTP 400). */
const HEADER_MISMATCH = -32020;
/** Where a modern request names its protocol version. */
const PROTOCOL_VERSION_META = 'io.modelcontextprotocol/protocolVersion';
/** The code the SDK's transport uses for HTTP-level refusals. */
const SERVER_ERROR = -32000;

/** Headers of an SSE response: no caching, and no buffering by a reverse proxy (nginx reads `X-Accel-Buffering`). */
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no', connection: 'keep-alive' };

/** Time between keep-alive comments on a quiet modern SSE response. */
const SSE_HEARTBEAT_MS = 15_000;

/** Host names a loopback-bound server answers to; any other (a rebound DNS name) is refused. */
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Legacy sessions open at once, unless {@link McpHttpOptions.maxSessions} says otherwise. */
export const DEFAULT_MAX_SESSIONS = 64;
/** How long a legacy session may go without a request (and without an open stream) before it is closed, unless {@link McpHttpOptions.sessionIdleMs} says otherwise. */
export const DEFAULT_SESSION_IDLE_MS = 30 * 60_000;
/** TCP connections served at once: each open SSE stream holds one. */
const MAX_CONNECTIONS = 1024;
/**
 * How long an idle connection is kept open, as announced to clients (`Keep-Alive: timeout=60`),
 * unless {@link McpHttpOptions.keepAliveMs} says otherwise: above the idle time-outs of common load
 * balancers and reverse proxies (60 s), which do not read the announcement, so they close first.
 */
export const DEFAULT_KEEP_ALIVE_MS = 60_000;
/**
 * How much longer than announced an idle connection is really kept. A client closes its idle
 * connections by a timer set from the announcement (undici and Node's agent: 1 s before it), and
 * a busy client's timers run late: one that reuses a connection at the very moment the server
 * closes it sees the request fail ("fetch failed") with no way to tell whether it was served. The
 * margin makes the client the one that closes, even seconds late.
 */
export const KEEP_ALIVE_GRACE_MS = 30_000;

/** Options of {@link listenMcpHttp}. */
export interface McpHttpOptions {
  /** An IP address. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Whether `host` is a loopback address: then the `Host` header must name loopback too (or an allowed host). */
  loopback: boolean;
  /**
   * Host names (lower case) a loopback-bound server also answers to: the public name a reverse
   * proxy in front passes on in `Host`.
   * @default []
   */
  allowedHosts?: readonly string[];
  /** Builds the MCP face of a new legacy session (sharing the process's threads). */
  createFace: () => McpFace;
  /** The process's modern era, which answers every modern request. */
  modern: ModernEra;
  /** Checks the `Authorization` header of every request; absent means no auth. */
  authorize?: (authorization: string | undefined) => AuthDecision;
  /**
   * Origins (`scheme://host[:port]`, lower case) whose requests are served. Browsers send `Origin`
   * and other clients do not: a request carrying one not listed here gets 403.
   * @default []
   */
  allowedOrigins?: readonly string[];
  /** Largest request body; a larger one gets 413 (multienv.max_message_mb). */
  maxMessageBytes: number;
  /** Legacy sessions open at once; one more `initialize` gets 503. @default DEFAULT_MAX_SESSIONS */
  maxSessions?: number;
  /** How long a session with nothing in flight lives on. @default DEFAULT_SESSION_IDLE_MS */
  sessionIdleMs?: number;
  /**
   * The idle time announced to clients on a kept-alive connection; the connection is closed
   * {@link KEEP_ALIVE_GRACE_MS} after that. @default DEFAULT_KEEP_ALIVE_MS
   */
  keepAliveMs?: number;
  /** @default silentLogger */
  logger?: Logger;
}

/** A listening MCP HTTP endpoint. */
export interface McpHttpListener {
  /** The endpoint, e.g. `http://127.0.0.1:43883/mcp`. */
  readonly url: string;
  /** Stops listening, closes every session and drops every connection. Idempotent. */
  close(): Promise<void>;
}

/** A legacy (2025-11-25) session. */
interface Session {
  transport: StreamableHTTPServerTransport;
  face: McpFace;
  /** HTTP requests of this session not yet answered (an open GET stream counts): an idle session has none. */
  inFlight: number;
  idle: NodeJS.Timeout | undefined;
  /** Set when the client's DELETE has ended it. */
  deleted: boolean;
  closing: Promise<void> | undefined;
}

/** Answers with a JSON-RPC error body (what MCP clients read from a refused request). */
function refuse(response: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: SERVER_ERROR, message } }));
}

/** The host name of a `Host` header (`name:port`, `[v6]:port`), or undefined when it is not one. */
function hostName(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  try {
    return new URL(`http://${header}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/** Whether `accept` lists `type` (ignoring parameters and case). */
function accepts(accept: string | undefined, type: string): boolean {
  return (accept ?? '').split(',').some((entry) => entry.split(';')[0]?.trim().toLowerCase() === type);
}

type Body = { ok: true; text: string } | { ok: false; tooLarge: true };

/**
 * What the modern era's mirror headers get wrong about `message`, if anything: `Mcp-Method` must
 * name its method and `MCP-Protocol-Version` the version in its `_meta` (a proxy routing on the
 * headers must see what the server serves). Absent headers are not required.
 */
function headerMismatch(request: IncomingMessage, message: JSONRPCRequest): string | undefined {
  const method = request.headers['mcp-method'];
  if (typeof method === 'string' && method !== message.method) return `the Mcp-Method header (${method}) does not match the request's method (${message.method})`;
  const version = request.headers['mcp-protocol-version'];
  const meta = message.params?._meta;
  const claimed = typeof meta === 'object' && meta !== null && PROTOCOL_VERSION_META in meta ? meta[PROTOCOL_VERSION_META] : undefined;
  if (typeof version === 'string' && typeof claimed === 'string' && version !== claimed) {
    return `the MCP-Protocol-Version header (${version}) does not match the request's params._meta["${PROTOCOL_VERSION_META}"] (${claimed})`;
  }
  return undefined;
}

/** Reads a request body up to `max` bytes; past that, the rest is discarded unread and the answer is `tooLarge`. */
function readBody(request: IncomingMessage, max: number): Promise<Body> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      request.resume();
      resolve({ ok: false, tooLarge: true });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > max) {
        // Not kept: the rest streams by and is dropped, and the connection stays usable.
        request.off('data', onData);
        request.resume();
        chunks.length = 0;
        resolve({ ok: false, tooLarge: true });
        return;
      }
      chunks.push(chunk);
    };
    request.on('data', onData);
    request.once('end', () => resolve({ ok: true, text: Buffer.concat(chunks).toString('utf8') }));
    request.once('error', reject);
  });
}

/**
 * Serves MCP over Streamable HTTP on `host:port` (see the module comment). Resolves once
 * listening.
 */
export async function listenMcpHttp(options: McpHttpOptions): Promise<McpHttpListener> {
  const logger = options.logger ?? silentLogger;
  const allowedOrigins = new Set(options.allowedOrigins ?? []);
  const allowedHosts = new Set([...LOOPBACK_NAMES, ...(options.allowedHosts ?? [])]);
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  const idleMs = options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
  const sessions = new Map<string, Session>();
  /** Sessions whose `initialize` is being answered: counted against the bound before they have an id. */
  let starting = 0;
  let boundHost = options.host;
  /** Modern requests served so far: the source of the ids the era sees (see serveModern). */
  let modernRequests = 0;
  /**
   * Begins every session id this process gives out, so a session id it does not know is told
   * apart: one it gave out has ended, one it did not was opened elsewhere (another instance behind
   * the same load balancer, or this one before a restart).
   */
  const sessionPrefix = `${randomUUID().slice(0, 8)}-`;
  /** Answers a request naming a session this process does not have, saying which case it is and what to do. */
  const unknownSession = (response: ServerResponse, id: string): void => {
    if (id.startsWith(sessionPrefix)) {
      refuse(response, 404, `no MCP session ${id} (it ended or expired): initialize a new one; a session ends on DELETE or after ${Math.round(idleMs / 1000)} s without a request`);
      return;
    }
    refuse(
      response,
      404,
      `no MCP session ${id} in this codex-multienv instance: it was opened by another instance (or by this one before a restart). ` +
        'A 2025-11-25 session lives in the instance that opened it: route every request carrying its Mcp-Session-Id to that instance ' +
        '(session affinity at the load balancer), or use the 2026-07-28 era, which any instance serves. Initialize a new session to go on here.',
    );
  };

  const closeSession = (id: string, session: Session, why: string): Promise<void> =>
    (session.closing ??= (async () => {
      clearTimeout(session.idle);
      if (sessions.get(id) === session) sessions.delete(id);
      logger.info('MCP session closed', { session: id, why });
      await session.face.close();
    })());

  /** (Re)starts the idle clock of a session with nothing in flight. */
  const touch = (id: string, session: Session): void => {
    clearTimeout(session.idle);
    if (session.closing !== undefined) return;
    session.idle = setTimeout(() => {
      if (session.inFlight > 0) touch(id, session);
      else void closeSession(id, session, `no request for ${idleMs} ms`);
    }, idleMs);
    session.idle.unref();
  };

  /** Hands one request to a session's transport, counting it in flight until its response closes. */
  const handOver = async (id: string, session: Session, request: IncomingMessage, response: ServerResponse, body?: unknown): Promise<void> => {
    session.inFlight += 1;
    response.once('close', () => {
      session.inFlight -= 1;
      touch(id, session);
    });
    await session.transport.handleRequest(request, response, body);
  };

  const startSession = async (request: IncomingMessage, response: ServerResponse, body: unknown): Promise<void> => {
    if (sessions.size + starting >= maxSessions) {
      refuse(response, 503, `too many MCP sessions open (the bound is ${maxSessions}): end one (HTTP DELETE) or wait for idle ones to expire`);
      return;
    }
    starting += 1;
    const face = options.createFace();
    let id: string | undefined;
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => `${sessionPrefix}${randomUUID()}`,
      onsessioninitialized: (sessionId) => {
        id = sessionId;
        sessions.set(sessionId, session);
        logger.info('MCP session opened', { session: sessionId, sessions: sessions.size });
      },
      onsessionclosed: () => {
        session.deleted = true;
      },
    });
    const session: Session = { transport, face, inFlight: 1, idle: undefined, deleted: false, closing: undefined };
    response.once('close', () => {
      session.inFlight -= 1;
      // The transport registers the session while it answers `initialize`; a refused one never is.
      if (id === undefined) void face.close();
      else touch(id, session);
    });
    try {
      await face.legacy.connect(transport);
      await transport.handleRequest(request, response, body);
    } finally {
      starting -= 1;
    }
  };

  /**
   * Serves one modern request on its POST: its answer, and the progress before it, go on this
   * response only. The request's id is the client's, and clients pick theirs independently, so the
   * process-wide era sees a fresh id of ours instead (given back in the answer): two clients using
   * id 1 at once never meet. Closing the response before the answer is how a client of this era
   * cancels over HTTP; it ends the call, not the turn (see ModernEra.cancel).
   */
  const serveModern = (message: JSONRPCRequest, request: IncomingMessage, response: ServerResponse): void => {
    const ownId = `http-${(modernRequests += 1)}`;
    const sse = accepts(request.headers.accept, 'text/event-stream') || !accepts(request.headers.accept, 'application/json');
    if (!sse && message.method === 'subscriptions/listen') {
      const error = { code: INVALID_REQUEST, message: 'subscriptions/listen is a stream: send it with Accept: text/event-stream' };
      response.writeHead(406, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, error }));
      return;
    }
    let answered = false;
    let heartbeat: NodeJS.Timeout | undefined;
    if (sse) {
      response.writeHead(200, SSE_HEADERS).flushHeaders();
      // A reverse proxy drops a response that stays quiet too long (nginx: 60 s); a comment line keeps it open.
      heartbeat = setInterval(() => {
        // Between the answer's end() and the 'close' that clears this, a write would be an error event.
        if (!response.writableEnded && !response.destroyed) response.write(': keep-alive\n\n');
      }, SSE_HEARTBEAT_MS);
      heartbeat.unref();
    }
    response.once('close', () => {
      clearInterval(heartbeat);
      if (!answered) options.modern.cancel(ownId, 'the client closed the request stream before the answer', 'stopped-waiting');
    });
    const send = (sent: JSONRPCMessage): Promise<void> => {
      if (answered || response.destroyed) return Promise.resolve();
      // The era saw our id for the request; a listen's messages name it, and the client must see its own.
      const outgoing = renameSubscription(sent, ownId, message.id);
      const final = !('method' in outgoing) && 'id' in outgoing && outgoing.id === ownId;
      const answer = final ? { ...outgoing, id: message.id } : outgoing;
      if (final) answered = true;
      if (sse) {
        response.write(`event: message\ndata: ${JSON.stringify(answer)}\n\n`);
        if (final) response.end();
      } else if (final) {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      }
      return Promise.resolve();
    };
    options.modern.handle({ ...message, id: ownId }, send);
  };

  const servePost = async (request: IncomingMessage, response: ServerResponse, sessionId: string | undefined): Promise<void> => {
    const body = await readBody(request, options.maxMessageBytes);
    if (!body.ok) {
      logger.warn(`refused an MCP request body over the limit of ${messageLimitText(options.maxMessageBytes)}`);
      refuse(response, 413, `the request body is over the limit of ${messageLimitText(options.maxMessageBytes)}; it was not processed`);
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(body.text);
    } catch (error) {
      response
        .writeHead(400, { 'content-type': 'application/json' })
        .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: PARSE_ERROR, message: `the request body is not JSON: ${errorMessage(error)}` } }));
      return;
    }
    // An approval answered with a bare value would otherwise wait out its time-out (see sdk-workarounds.ts).
    json = Array.isArray(json) ? json.map(nonObjectResultAsError) : nonObjectResultAsError(json);
    const parsed = JSONRPCMessageSchema.safeParse(json);
    // Only requests: a modern client cancels by closing its stream, and a `notifications/cancelled`
    // naming one of our own ids could otherwise cancel another client's call.
    if (parsed.success && isJSONRPCRequest(parsed.data) && options.modern.claims(parsed.data)) {
      const mismatch = headerMismatch(request, parsed.data);
      if (mismatch !== undefined) {
        response
          .writeHead(400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: parsed.data.id, error: { code: HEADER_MISMATCH, message: mismatch } }));
        return;
      }
      serveModern(parsed.data, request, response);
      return;
    }
    if (sessionId === undefined) {
      // A notification outside any session (a modern client's: it names no session, and this era acts on none) has nothing to act on.
      if (parsed.success && isJSONRPCNotification(parsed.data)) {
        response.writeHead(202).end();
        return;
      }
      const initializing = parsed.success ? isInitializeRequest(parsed.data) : Array.isArray(json) && json.some((message) => isInitializeRequest(message));
      if (initializing) {
        await startSession(request, response, json);
        return;
      }
      refuse(response, 400, 'Bad Request: no Mcp-Session-Id header: a 2025-11-25 client sends initialize first; a 2026-07-28 request carries its protocol version in params._meta');
      return;
    }
    const session = sessions.get(sessionId);
    if (session === undefined) {
      unknownSession(response, sessionId);
      return;
    }
    await handOver(sessionId, session, request, response, json);
  };

  const serve = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = (request.url ?? '/').split('?')[0];
    if (path !== MCP_PATH) {
      refuse(response, 404, `not found: MCP is served at ${MCP_PATH}`);
      return;
    }
    // DNS rebinding: a web page on a name that resolves to this loopback address sends its own name.
    if (options.loopback) {
      const name = hostName(request.headers.host);
      if (name === undefined || !(allowedHosts.has(name) || name === boundHost)) {
        refuse(
          response,
          403,
          `Forbidden: Host header \`${request.headers.host ?? ''}\` is not a loopback name; this server listens on loopback only (a reverse proxy's public name needs --allow-host)`,
        );
        return;
      }
    }
    // Before authentication: a web page learns nothing about the token check.
    const origin = request.headers.origin;
    if (origin !== undefined && !allowedOrigins.has(origin.trim().toLowerCase())) {
      refuse(response, 403, `Forbidden: requests from web pages are refused unless their origin is allowed (--allow-origin); got Origin \`${origin}\``);
      return;
    }
    const decision = options.authorize?.(request.headers.authorization) ?? { ok: true };
    if (!decision.ok) {
      refuse(response, 401, `Unauthorized: ${decision.message}`, { 'www-authenticate': 'Bearer' });
      return;
    }
    const header = request.headers['mcp-session-id'];
    const sessionId = typeof header === 'string' ? header : undefined;
    if (request.method === 'POST') {
      await servePost(request, response, sessionId);
      return;
    }
    if (request.method !== 'GET' && request.method !== 'DELETE') {
      refuse(response, 405, `method ${request.method ?? '?'} not allowed: MCP takes POST, GET and DELETE`, { allow: 'POST, GET, DELETE' });
      return;
    }
    const session = sessionId === undefined ? undefined : sessions.get(sessionId);
    if (sessionId === undefined || session === undefined) {
      if (sessionId === undefined) refuse(response, 405, `${request.method} needs an Mcp-Session-Id (a 2025-11-25 session); 2026-07-28 requests are POSTs`, { allow: 'POST' });
      else unknownSession(response, sessionId);
      return;
    }
    await handOver(sessionId, session, request, response);
    if (session.deleted) await closeSession(sessionId, session, 'the client ended it');
  };

  /** Idle connections past the announced time, in their grace period (see KEEP_ALIVE_GRACE_MS). */
  const graced = new WeakSet<Socket>();
  const server = createServer((request, response) => {
    graced.delete(request.socket);
    serve(request, response).catch((error: unknown) => {
      logger.warn('an MCP HTTP request failed', { method: request.method, error: errorMessage(error) });
      refuse(response, 500, `internal error: ${errorMessage(error)}`);
    });
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.keepAliveTimeout = options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS;
  // Node closes an idle connection at its keep-alive time-out (the only socket time-out here:
  // `server.timeout` is 0) unless a listener handles it: this one gives it the grace period first.
  server.on('timeout', (socket: Socket) => {
    if (graced.has(socket)) {
      socket.destroy();
      return;
    }
    graced.add(socket);
    socket.setTimeout(KEEP_ALIVE_GRACE_MS);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  boundHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${boundHost}:${address.port}${MCP_PATH}`,
    close: () =>
      (closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...sessions].map(([id, session]) => closeSession(id, session, 'the server is stopping')));
        options.modern.close();
        // Open SSE streams would hold the server open.
        server.closeAllConnections();
        await stopped;
      })()),
  };
}
