// A bridge from MCP Streamable HTTP to a stdio MCP server, so HTTP-only clients (the official
// conformance suite above all) can test the real built server: each HTTP session gets its own
// child process, and JSON-RPC messages are passed through unchanged in both directions.
//
// The HTTP side is the SDK's StreamableHTTPServerTransport in stateful mode (session ids, SSE
// streams, resumability through a bounded in-memory event store, DNS rebinding protection); the
// stdio side is the SDK's StdioClientTransport, used as a raw message pipe (no MCP Client on top).
// It listens on 127.0.0.1 only.
//
// Run directly it is a small CLI: `npx tsx tools/stdio-http-bridge.ts [--port N] -- node
// dist/cli/main.js [args]` prints the endpoint URL as the first stdout line.

import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPServerTransport, type EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/** The MCP endpoint's path. */
export const BRIDGE_PATH = '/mcp';

/** Largest accepted request body; larger ones get a 413. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Events kept per session for resuming SSE streams; older ones are dropped first. */
export const MAX_STORED_EVENTS = 1000;

/** Options of {@link startStdioHttpBridge}. */
export interface StdioHttpBridgeOptions {
  /** The stdio server's program, e.g. `process.execPath`. */
  command: string;
  /** Its arguments. @default [] */
  args?: string[];
  /** Its whole environment (nothing is inherited when given). @default the SDK's safe default set */
  env?: Record<string, string>;
  /** Its working directory. @default this process's */
  cwd?: string;
  /** @default 0 (any free port) */
  port?: number;
  /** Receives one line per session event and each child's stderr. @default no logging */
  log?: (line: string) => void;
}

/** A running bridge. */
export interface StdioHttpBridge {
  /** The MCP endpoint, e.g. `http://127.0.0.1:4321/mcp`. */
  readonly url: string;
  /** Sessions opened so far (each one started a child process). */
  readonly sessionsOpened: () => number;
  /** Stops listening, closes every session and waits for their children to exit. Idempotent. */
  close(): Promise<void>;
}

/** One MCP session: the HTTP transport and the child it feeds. */
interface Session {
  http: StreamableHTTPServerTransport;
  child: StdioClientTransport;
  /** Client requests forwarded to the child and not answered yet, oldest first. */
  pending: Set<RequestId>;
  /** Progress token → the request that carried it. */
  progressTokens: Map<string | number, RequestId>;
  closed: Promise<void>;
}

const ProgressParamsSchema = z.looseObject({ progressToken: z.union([z.string(), z.number()]) });
const RequestMetaSchema = z.looseObject({ _meta: z.looseObject({ progressToken: z.union([z.string(), z.number()]) }) });

/** A bounded per-session event store: enough for a client to resume a dropped SSE stream. */
function memoryEventStore(): EventStore {
  const events = new Map<string, { streamId: string; message: JSONRPCMessage }>();
  let next = 0;
  return {
    storeEvent: (streamId, message) => {
      const eventId = `${streamId}_${String(++next).padStart(12, '0')}`;
      events.set(eventId, { streamId, message });
      if (events.size > MAX_STORED_EVENTS) {
        const oldest = events.keys().next();
        if (oldest.done !== true) events.delete(oldest.value);
      }
      return Promise.resolve(eventId);
    },
    getStreamIdForEventId: (eventId) => Promise.resolve(events.get(eventId)?.streamId),
    replayEventsAfter: async (lastEventId, { send }) => {
      const last = events.get(lastEventId);
      if (last === undefined) return '';
      let after = false;
      for (const [eventId, event] of events) {
        if (after && event.streamId === last.streamId && Object.keys(event.message).length > 0) await send(eventId, event.message);
        if (eventId === lastEventId) after = true;
      }
      return last.streamId;
    },
  };
}

/** Reads a request body as JSON; `undefined` for an empty body. Rejects on oversize or bad JSON. */
async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new BodyError(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BodyError(400, 'request body is not valid JSON');
  }
}

class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function sendJsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

function isInitializeBody(body: unknown): boolean {
  return Array.isArray(body) ? body.some((message) => isInitializeRequest(message)) : isInitializeRequest(body);
}

/** Starts the bridge on 127.0.0.1. */
export async function startStdioHttpBridge(options: StdioHttpBridgeOptions): Promise<StdioHttpBridge> {
  const log = options.log ?? (() => undefined);
  const sessions = new Map<string, Session>();
  const sockets = new Set<Socket>();
  let opened = 0;
  let port = 0;

  /** Creates the transport of a new session; the child starts once the session id exists. */
  const openSession = (): StreamableHTTPServerTransport => {
    const http = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: memoryEventStore(),
      enableDnsRebindingProtection: true,
      allowedHosts: [`127.0.0.1:${port}`, `localhost:${port}`],
      allowedOrigins: [`http://127.0.0.1:${port}`, `http://localhost:${port}`],
      onsessioninitialized: async (sessionId) => {
        opened += 1;
        const child = new StdioClientTransport({ command: options.command, args: options.args ?? [], env: options.env, cwd: options.cwd, stderr: 'pipe' });
        child.stderr?.on('data', (data: Buffer) => log(`[${sessionId.slice(0, 8)}] ${data.toString().trimEnd()}`));
        let resolveClosed: () => void = () => undefined;
        const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
        const session: Session = { http, child, pending: new Set(), progressTokens: new Map(), closed };
        sessions.set(sessionId, session);
        child.onmessage = (message) => forwardToClient(session, message);
        child.onerror = (error) => log(`[${sessionId.slice(0, 8)}] child error: ${error.message}`);
        child.onclose = () => {
          log(`[${sessionId.slice(0, 8)}] child exited`);
          sessions.delete(sessionId);
          resolveClosed();
          void http.close().catch(() => undefined);
        };
        http.onmessage = (message) => forwardToChild(session, message);
        http.onclose = () => {
          log(`[${sessionId.slice(0, 8)}] session closed`);
          void child.close().catch(() => undefined);
        };
        await child.start();
        log(`[${sessionId.slice(0, 8)}] session opened`);
      },
    });
    return http;
  };

  const forwardToChild = (session: Session, message: JSONRPCMessage): void => {
    if ('method' in message && 'id' in message) {
      session.pending.add(message.id);
      const meta = RequestMetaSchema.safeParse(message.params);
      if (meta.success) session.progressTokens.set(meta.data._meta.progressToken, message.id);
    }
    session.child.send(message).catch((error: unknown) => log(`send to child failed: ${String(error)}`));
  };

  /**
   * Over stdio a server cannot say which request a notification or request of its own belongs
   * to, but HTTP needs it to pick the SSE stream. A progress notification follows its token; any
   * other message goes to the one request in flight when there is exactly one (what an in-process
   * server's handler would do), else to the session's standalone GET stream.
   */
  const forwardToClient = (session: Session, message: JSONRPCMessage): void => {
    let relatedRequestId: RequestId | undefined;
    if ('method' in message) {
      const progress = message.method === 'notifications/progress' ? ProgressParamsSchema.safeParse(message.params) : undefined;
      if (progress?.success === true) relatedRequestId = session.progressTokens.get(progress.data.progressToken);
      else if (session.pending.size === 1) relatedRequestId = session.pending.values().next().value;
    } else if ('id' in message && message.id !== undefined) {
      session.pending.delete(message.id);
      for (const [token, id] of session.progressTokens) if (id === message.id) session.progressTokens.delete(token);
    }
    session.http.send(message, relatedRequestId === undefined ? undefined : { relatedRequestId }).catch((error: unknown) => log(`send to client failed: ${String(error)}`));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (path !== BRIDGE_PATH) {
      res.writeHead(404).end();
      return;
    }
    const sessionId = req.headers['mcp-session-id'];
    const body = req.method === 'POST' ? await readJsonBody(req) : undefined;
    if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId);
      if (session === undefined) return sendJsonRpcError(res, 404, -32001, `unknown session ${sessionId}`);
      return session.http.handleRequest(req, res, body);
    }
    if (req.method === 'POST' && isInitializeBody(body)) return openSession().handleRequest(req, res, body);
    sendJsonRpcError(res, 400, -32000, 'Bad Request: no valid session id; send initialize first');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (error instanceof BodyError) sendJsonRpcError(res, error.status, -32700, error.message);
      else sendJsonRpcError(res, 500, -32603, `bridge error: ${String(error)}`);
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the bridge has no TCP address');
  port = address.port;

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}${BRIDGE_PATH}`,
    sessionsOpened: () => opened,
    close: () => {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const children = [...sessions.values()];
        await Promise.all(children.map((session) => session.child.close().catch(() => undefined)));
        await Promise.all(children.map((session) => session.closed));
        for (const socket of sockets) socket.destroy();
        await stopped;
      })();
      return closing;
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { port: { type: 'string' }, quiet: { type: 'boolean' } }, allowPositionals: true, strict: true });
  const [command, ...args] = positionals;
  if (command === undefined) throw new Error('usage: stdio-http-bridge [--port N] [--quiet] -- COMMAND [ARGS...]');
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined) env[name] = value;
  const bridge = await startStdioHttpBridge({
    command,
    args,
    env,
    port: values.port === undefined ? 0 : Number(values.port),
    log: values.quiet === true ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${bridge.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await bridge.close();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
