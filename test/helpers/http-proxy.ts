import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, isIP, type Socket } from 'node:net';

/** One thing the proxy was asked to do. */
export interface ProxiedRequest {
  /** `connect`: a CONNECT tunnel; `forward`: a plain-HTTP request in absolute form. */
  kind: 'connect' | 'forward';
  /** `host:port` of a tunnel, the absolute URL of a forwarded request. */
  target: string;
  /** What the proxy answered: 200 for an opened tunnel, the upstream status of a forward, or its own refusal. */
  status: number;
  /** The `Proxy-Authorization` header it got, if any. */
  proxyAuthorization: string | undefined;
}

/** A running proxy on 127.0.0.1. */
export interface TestHttpProxy {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  port: number;
  /** Everything asked of it, in order. */
  requests: ProxiedRequest[];
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** Options of {@link startHttpProxy}. */
export interface TestHttpProxyOptions {
  /** When set, requests without exactly this `Proxy-Authorization` get 407. */
  requireAuthorization?: string;
}

/** Only loopback targets are reached: tests never send traffic anywhere else. */
function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === 'localhost') return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1';
}

/** `host` and `port` of a CONNECT target (`host:port`, `[v6]:port`). */
function splitAuthority(authority: string): { host: string; port: number } | undefined {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(authority);
  if (match === null) return undefined;
  return { host: (match[1] ?? '').replace(/^\[|\]$/g, ''), port: Number(match[2]) };
}

/**
 * A small HTTP proxy, as corporate proxies are: CONNECT tunnels (for https URLs) and absolute-form
 * plain-HTTP requests (for http URLs), both only to loopback addresses; it records what it did.
 */
export async function startHttpProxy(options: TestHttpProxyOptions = {}): Promise<TestHttpProxy> {
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  const authorized = (req: IncomingMessage): boolean => options.requireAuthorization === undefined || req.headers['proxy-authorization'] === options.requireAuthorization;

  const server = createServer((req, res) => {
    const target = req.url ?? '';
    const record = (status: number): void => {
      requests.push({ kind: 'forward', target, status, proxyAuthorization: req.headers['proxy-authorization'] });
    };
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      record(400);
      res.writeHead(400).end('absolute-form URL expected');
      return;
    }
    if (!authorized(req)) {
      record(407);
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"' }).end();
      return;
    }
    if (url.protocol !== 'http:' || !isLoopback(url.hostname)) {
      record(403);
      res.writeHead(403).end('this proxy only reaches loopback http URLs');
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const upstream = httpRequest(
      {
        host: url.hostname === 'localhost' ? '127.0.0.1' : url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: req.method,
        headers,
      },
      (answer) => {
        record(answer.statusCode ?? 0);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.once('error', () => {
      record(502);
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(upstream);
  });

  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const authority = req.url ?? '';
    const record = (status: number): void => {
      requests.push({ kind: 'connect', target: authority, status, proxyAuthorization: req.headers['proxy-authorization'] });
    };
    client.on('error', () => client.destroy());
    if (!authorized(req)) {
      record(407);
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const where = splitAuthority(authority);
    if (where === undefined || !isLoopback(where.host)) {
      record(403);
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    let opened = false;
    const upstream = connect(where.port, where.host === 'localhost' ? '127.0.0.1' : where.host, () => {
      opened = true;
      record(200);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.once('error', () => {
      if (opened) {
        client.destroy();
        return;
      }
      record(502);
      client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n');
    });
    client.once('close', () => upstream.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    requests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
