// The node:http fetch against real HTTP servers on 127.0.0.1: what it sends, what it returns,
// connection reuse, aborts, broken bodies, and what it hands to the fallback fetch.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { jest } from '@jest/globals';
import { createHttpFetch } from '../../../src/model/http-fetch.js';
import { deferred } from '../../../src/util/deferred.js';

interface TestServer {
  url: string;
  /** TCP connections accepted so far. */
  connections: number;
  /** Resolves when a connection closes. */
  closed: () => Promise<void>;
  requests: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
}

const servers: Server[] = [];

async function serve(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<TestServer> {
  const sockets = new Set<Socket>();
  let closeWaiters: (() => void)[] = [];
  const state: TestServer = {
    url: '',
    connections: 0,
    requests: [],
    closed: () => new Promise((resolve) => closeWaiters.push(resolve)),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      state.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  server.on('connection', (socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      const waiters = closeWaiters;
      closeWaiters = [];
      for (const resolve of waiters) resolve();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  state.url = `http://127.0.0.1:${address.port}`;
  servers.push(server);
  server.on('close', () => {
    for (const socket of sockets) socket.destroy();
  });
  return state;
}

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

describe('createHttpFetch', () => {
  it('sends method, headers and body, and returns status, headers and body', async () => {
    const server = await serve((_req, res, body) => {
      res.writeHead(201, { 'content-type': 'application/json', 'x-request-id': 'req_1' });
      res.end(JSON.stringify({ echoed: body }));
    });
    const httpFetch = createHttpFetch();

    const response = await httpFetch(`${server.url}/v1/responses?api-version=1`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer k' },
      body: '{"a":"é"}',
    });

    expect(response.status).toBe(201);
    expect(response.ok).toBe(true);
    expect(response.headers.get('x-request-id')).toBe('req_1');
    expect(await response.json()).toEqual({ echoed: '{"a":"é"}' });
    const [request] = server.requests;
    expect(request).toMatchObject({ method: 'POST', url: '/v1/responses?api-version=1', body: '{"a":"é"}' });
    expect(request?.headers['authorization']).toBe('Bearer k');
    expect(request?.headers['content-length']).toBe(String(Buffer.byteLength('{"a":"é"}')));
  });

  it('reuses one connection for sequential requests', async () => {
    const server = await serve((_req, res) => res.end('ok'));
    const httpFetch = createHttpFetch();

    for (let i = 0; i < 3; i++) expect(await (await httpFetch(server.url, { method: 'POST', body: 'x' })).text()).toBe('ok');

    expect(server.connections).toBe(1);
  });

  it('returns an error status with its body', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(429, { 'retry-after-ms': '10' });
      res.end('slow down');
    });

    const response = await createHttpFetch()(server.url);

    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after-ms')).toBe('10');
    expect(await response.text()).toBe('slow down');
  });

  it('aborting before the answer rejects with the reason and closes the connection', async () => {
    const arrived = deferred<void>();
    const server = await serve(() => arrived.resolve());
    const controller = new AbortController();
    const reason = new Error('stop');

    const pending = createHttpFetch()(server.url, { signal: controller.signal });
    await arrived.promise;
    const closed = server.closed();
    controller.abort(reason);

    await expect(pending).rejects.toBe(reason);
    await closed;
  });

  it('aborting while the body streams errors the body with the reason and closes the connection', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
    });
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    const response = await createHttpFetch()(server.url, { signal: controller.signal });
    const reader = response.body!.getReader();
    const first: unknown = (await reader.read()).value;
    expect(first).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(first as Uint8Array).toString('utf8')).toBe('data: 1\n\n');
    const closed = server.closed();

    controller.abort(reason);

    await expect(reader.read()).rejects.toBe(reason);
    await closed;
  });

  it('rejects at once when the signal is already aborted, without a request', async () => {
    const server = await serve((_req, res) => res.end('ok'));
    const controller = new AbortController();
    controller.abort();

    await expect(createHttpFetch()(server.url, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(server.requests).toHaveLength(0);
  });

  it('errors the body when the connection breaks before the body ended', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: partial\n\n', () => res.socket?.destroy());
    });

    const response = await createHttpFetch()(server.url);

    await expect(response.text()).rejects.toMatchObject({ name: 'TypeError', message: 'terminated' });
  });

  it('rejects with `fetch failed` and the cause when nothing listens', async () => {
    const server = await serve((_req, res) => res.end());
    const url = server.url;
    await new Promise<void>((resolve) => servers.pop()?.close(() => resolve()));

    const error = await createHttpFetch()(url).then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(TypeError);
    expect(error).toMatchObject({ message: 'fetch failed', cause: { code: 'ECONNREFUSED' } });
  });

  it('decodes a gzip body the server sent unasked', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(gzipSync('squeezed'));
    });

    expect(await (await createHttpFetch()(server.url)).text()).toBe('squeezed');
  });

  it('hands redirects, Request objects and streamed bodies to the fallback', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/old') {
        res.writeHead(307, { location: '/new' });
        res.end();
        return;
      }
      res.end(`at ${req.url ?? ''}`);
    });
    const fallback = jest.fn((input: string | URL | Request, init?: RequestInit) => fetch(input, init));
    const httpFetch = createHttpFetch({ fallback });

    expect(await (await httpFetch(`${server.url}/old`, { method: 'POST', body: 'x' })).text()).toBe('at /new');
    expect(fallback).toHaveBeenCalledTimes(1);
    await (await httpFetch(new Request(`${server.url}/req`))).text();
    await (await httpFetch(`${server.url}/stream`, { method: 'POST', body: new Blob(['b']) })).text();
    expect(fallback).toHaveBeenCalledTimes(3);
    await (await httpFetch(`${server.url}/plain`)).text();
    expect(fallback).toHaveBeenCalledTimes(3);
  });
});
