import { createServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';

/** Where a drop armed with {@link WsProxy.dropAtStart} cuts the connection. */
export type StartDrop =
  /** The `process/start` request is swallowed: the server never sees it. */
  | 'before-forward'
  /** The request reaches the server; the cut comes when its answer reaches the proxy, which keeps it. */
  | 'after-answer';

/**
 * A websocket proxy on 127.0.0.1 that reads the JSON-RPC messages it forwards, so a test can cut
 * a client's connection at an exact point of an exchange (without a close frame, like a network
 * drop).
 */
export interface WsProxy {
  /** The URL clients connect to. */
  url: string;
  /** Methods of the client requests that reached the server, in order, over every connection. */
  forwarded: string[];
  /** Arms a one-shot cut at the next `process/start`; resolves once the connection is cut. */
  dropAtStart(when: StartDrop): Promise<void>;
  /** From now on new connections are refused (the server looks gone). */
  refuse(): void;
  close(): Promise<void>;
}

/** Starts a websocket proxy to the exec-server at `target` (a `ws://127.0.0.1:port` URL). */
export async function startWsProxy(target: string): Promise<WsProxy> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const pairs = new Set<{ client: WebSocket; upstream: WebSocket }>();
  const forwarded: string[] = [];
  let armed: { when: StartDrop; done: () => void } | undefined;
  let refusing = false;

  const pair = (client: WebSocket, upstream: WebSocket): void => {
    const entry = { client, upstream };
    pairs.add(entry);
    let awaitedAnswer: unknown;
    let cutDone: (() => void) | undefined;
    const cut = (): void => {
      pairs.delete(entry);
      client.terminate();
      upstream.terminate();
      cutDone?.();
      cutDone = undefined;
    };
    client.on('message', (data: RawData, isBinary: boolean) => {
      const message = parse(data);
      if (armed !== undefined && message?.method === 'process/start') {
        const { when, done } = armed;
        armed = undefined;
        cutDone = done;
        if (when === 'before-forward') {
          cut();
          return;
        }
        awaitedAnswer = message.id;
      }
      if (typeof message?.method === 'string' && message.id !== undefined) forwarded.push(message.method);
      upstream.send(data, { binary: isBinary });
    });
    upstream.on('message', (data: RawData, isBinary: boolean) => {
      if (awaitedAnswer !== undefined && parse(data)?.id === awaitedAnswer) {
        cut();
        return;
      }
      client.send(data, { binary: isBinary });
    });
    for (const socket of [client, upstream]) {
      socket.on('error', cut);
      socket.on('close', cut);
    }
  };

  const server = createServer((_request, response) => response.writeHead(404).end());
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    if (refusing) {
      socket.destroy();
      return;
    }
    const upstream = new WebSocket(target, { perMessageDeflate: false });
    upstream.once('error', () => socket.destroy());
    upstream.once('open', () => wss.handleUpgrade(request, socket, head, (client) => pair(client, upstream)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');

  return {
    url: `ws://127.0.0.1:${address.port}`,
    forwarded,
    dropAtStart: (when) => new Promise<void>((done) => (armed = { when, done })),
    refuse: () => {
      refusing = true;
    },
    close: async () => {
      for (const { client, upstream } of pairs) {
        client.terminate();
        upstream.terminate();
      }
      pairs.clear();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The message's `id` and `method`, when it is a JSON object. */
function parse(data: RawData): { id?: unknown; method?: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    return { id: 'id' in value ? value.id : undefined, method: 'method' in value ? value.method : undefined };
  } catch {
    return undefined;
  }
}
