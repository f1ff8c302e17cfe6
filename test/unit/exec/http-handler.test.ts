import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { networkSettings } from '../../../src/cli/network.js';
import { HttpBodyStreams, fetchThrough } from '../../../src/exec/http-client.js';
import { registerHttpHandlers, MAX_BODY_DELTA_BYTES, type HttpHandlerOptions } from '../../../src/exec/http-handler.js';
import { HttpRequest, HttpRequestBodyDelta, type HttpRequestParams } from '../../../src/protocol/exec.js';
import { RpcErrorCode } from '../../../src/protocol/jsonrpc.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import type { MessageTransport } from '../../../src/transport/transport.js';
import { deferred, type Deferred } from '../../../src/util/deferred.js';
import { startHttpProxy, type TestHttpProxy } from '../../helpers/http-proxy.js';
import { makeTestCertificates } from '../../helpers/network.js';

// ---------------------------------------------------------------------------------------------
// The far edge: a real HTTP server on 127.0.0.1.

const LARGE_BODY = Buffer.alloc(3 * 1024 * 1024, 0);
for (let i = 0; i < LARGE_BODY.length; i += 1) LARGE_BODY[i] = (i * 31) % 251;

interface ServerState {
  /** One gate per /sse request: resolving it sends the second event and ends the body. */
  sseGates: Deferred<void>[];
  secondEventSent: boolean;
  slowArrived: Deferred<void>;
  slowClosed: Deferred<void>;
}

let state: ServerState;
let httpServer: Server;
let base: string;

function newState(): ServerState {
  return { sseGates: [], secondEventSent: false, slowArrived: deferred<void>(), slowClosed: deferred<void>() };
}

function route(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const path = (req.url ?? '/').split('?')[0];
  switch (path) {
    case '/echo': {
      const headers: [string, string][] = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, body: body.toString('utf8'), headers }));
      return;
    }
    case '/multi':
      res.writeHead(200, ['X-Multi', 'a', 'Content-Type', 'text/plain', 'x-multi', 'b']);
      res.end('multi');
      return;
    case '/redirect':
      res.writeHead(302, { location: '/echo' });
      res.end();
      return;
    case '/redirect307':
      res.writeHead(307, { location: `${base}/echo` });
      res.end();
      return;
    case '/loop':
      res.writeHead(302, { location: '/loop' });
      res.end();
      return;
    case '/sse': {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: one\n\n');
      const gate = deferred<void>();
      state.sseGates.push(gate);
      void gate.promise.then(() => {
        state.secondEventSent = true;
        res.end('data: two\n\n');
      });
      return;
    }
    case '/accepted':
      res.writeHead(202);
      res.end();
      return;
    case '/no-content':
      res.writeHead(204);
      res.end();
      return;
    case '/slow':
      // Never answers; the test watches for the socket to close.
      req.socket.once('close', () => state.slowClosed.resolve());
      state.slowArrived.resolve();
      return;
    case '/large':
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(LARGE_BODY);
      return;
    default:
      res.writeHead(404);
      res.end();
  }
}

beforeAll(async () => {
  httpServer = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => route(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  httpServer.closeAllConnections();
  await new Promise<void>((resolve) => httpServer.close(() => resolve()));
});

// ---------------------------------------------------------------------------------------------
// The RPC pair: our handlers on one side, a plain client on the other.

type Delta = { requestId: string; seq: number; deltaBase64: string; done: boolean; error?: string | null };

interface Pair {
  server: RpcConnection;
  client: RpcConnection;
  /** Every message the client received, in wire order. */
  wire: { id?: unknown; method?: string; params?: { requestId?: string } }[];
  /** Raw deltas (only when not using HttpBodyStreams). */
  deltas: Delta[];
  streams?: HttpBodyStreams;
}

const pairs: Pair[] = [];

function connect(options: { streams?: boolean; handler?: Partial<HttpHandlerOptions> } = {}): Pair {
  const [a, b] = createMemoryPair('http-test');
  const server = new RpcConnection(a);
  registerHttpHandlers(server, { env: { PROBE_SECRET: 's3cr3t' }, ...options.handler });
  server.start();
  const client = new RpcConnection(b);
  const pair: Pair = { server, client, wire: [], deltas: [] };
  if (options.streams === true) pair.streams = new HttpBodyStreams(client);
  else client.onNotification(HttpRequestBodyDelta, (delta) => pair.deltas.push(delta));
  client.start();
  tapWire(b, pair.wire);
  pairs.push(pair);
  return pair;
}

function tapWire(transport: MessageTransport, log: Pair['wire']): void {
  const deliver = transport.onmessage;
  transport.onmessage = (text) => {
    log.push(JSON.parse(text) as Pair['wire'][number]);
    deliver?.(text);
  };
}

beforeEach(() => {
  state = newState();
});

afterEach(async () => {
  for (const gate of state.sseGates) gate.resolve();
  for (const pair of pairs.splice(0)) {
    await pair.client.close();
    await pair.server.close();
  }
});

function call(pair: Pair, params: Partial<HttpRequestParams> & { url: string }) {
  return pair.client.request(HttpRequest, { method: 'GET', requestId: 'buffered-request', ...params });
}

function text(base64: string): string {
  return Buffer.from(base64, 'base64').toString('utf8');
}

function b64(value: string): string {
  return Buffer.from(value).toString('base64');
}

/** Resolves with the deltas of `requestId` once its final delta arrived. */
async function deltasOf(pair: Pair, requestId: string): Promise<Delta[]> {
  // Deltas arrive through microtasks; yield to the event loop until the final one is there.
  for (;;) {
    const mine = pair.deltas.filter((d) => d.requestId === requestId);
    if (mine.some((d) => d.done)) return mine;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function echoed(bodyBase64: string): { method: string; url: string; body: string; headers: [string, string][] } {
  return JSON.parse(text(bodyBase64)) as { method: string; url: string; body: string; headers: [string, string][] };
}

function header(headers: [string, string][], name: string): string[] {
  return headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

// ---------------------------------------------------------------------------------------------

describe('http/request (buffered)', () => {
  it('sends method, body and headers in order with repeats, lowercase on the wire', async () => {
    const pair = connect();
    const result = await call(pair, {
      method: 'POST',
      url: `${base}/echo?q=1`,
      headers: [
        { name: 'X-Test', value: '1' },
        { name: 'x-dup', value: 'a' },
        { name: 'content-type', value: 'text/plain' },
        { name: 'X-Dup', value: 'b' },
      ],
      bodyBase64: b64('ping'),
    });
    expect(result.status).toBe(200);
    const echo = echoed(result.bodyBase64);
    expect(echo).toMatchObject({ method: 'POST', url: '/echo?q=1', body: 'ping' });
    const mine = echo.headers.filter(([name]) => ['x-test', 'x-dup', 'content-type'].includes(name.toLowerCase()));
    expect(mine).toEqual([
      ['x-test', '1'],
      ['x-dup', 'a'],
      ['content-type', 'text/plain'],
      ['x-dup', 'b'],
    ]);
    expect(header(echo.headers, 'host')).toEqual([new URL(base).host]);
    expect(header(echo.headers, 'content-length')).toEqual(['4']);
  });

  it('appends the executor-side variable named by valueEnvVar', async () => {
    const pair = connect();
    const result = await call(pair, { url: `${base}/echo`, headers: [{ name: 'Authorization', value: 'Bearer ', valueEnvVar: 'PROBE_SECRET' }] });
    expect(header(echoed(result.bodyBase64).headers, 'authorization')).toEqual(['Bearer s3cr3t']);
  });

  it('refuses a valueEnvVar that is not set, naming it', async () => {
    const pair = connect();
    const failure = call(pair, { url: `${base}/echo`, headers: [{ name: 'Authorization', value: 'Bearer ', valueEnvVar: 'NOT_SET_ANYWHERE' }] });
    await expect(failure).rejects.toMatchObject({ code: RpcErrorCode.InvalidParams, message: expect.stringContaining('NOT_SET_ANYWHERE') as unknown });
  });

  it('reports response headers lowercase, in wire order, with repeats', async () => {
    const pair = connect();
    const result = await call(pair, { url: `${base}/multi` });
    expect(text(result.bodyBase64)).toBe('multi');
    expect(result.headers.every(({ name }) => name === name.toLowerCase())).toBe(true);
    expect(result.headers.filter(({ name }) => name === 'x-multi' || name === 'content-type')).toEqual([
      { name: 'x-multi', value: 'a' },
      { name: 'content-type', value: 'text/plain' },
      { name: 'x-multi', value: 'b' },
    ]);
  });

  it('follows a redirect by default and adds a referer', async () => {
    const pair = connect();
    const result = await call(pair, { url: `${base}/redirect` });
    expect(result.status).toBe(200);
    const echo = echoed(result.bodyBase64);
    expect(echo).toMatchObject({ method: 'GET', url: '/echo' });
    expect(header(echo.headers, 'referer')).toEqual([`${base}/redirect`]);
  });

  it('turns a POST into a bodiless GET on 302 and keeps method and body on 307', async () => {
    const pair = connect();
    const headers = [{ name: 'content-type', value: 'text/plain' }];
    const on302 = echoed((await call(pair, { method: 'POST', url: `${base}/redirect`, headers, bodyBase64: b64('data') })).bodyBase64);
    expect(on302).toMatchObject({ method: 'GET', body: '' });
    expect(header(on302.headers, 'content-type')).toEqual([]);
    const on307 = echoed((await call(pair, { method: 'POST', url: `${base}/redirect307`, headers, bodyBase64: b64('data') })).bodyBase64);
    expect(on307).toMatchObject({ method: 'POST', body: 'data' });
    expect(header(on307.headers, 'referer')).toEqual([`${base}/redirect307`]);
  });

  it('returns the redirect itself with redirectPolicy stop', async () => {
    const pair = connect();
    const result = await call(pair, { url: `${base}/redirect`, redirectPolicy: 'stop' });
    expect(result.status).toBe(302);
    expect(result.headers).toContainEqual({ name: 'location', value: '/echo' });
  });

  it('gives up after maxRedirects', async () => {
    const pair = connect({ handler: { maxRedirects: 3 } });
    await expect(call(pair, { url: `${base}/loop` })).rejects.toMatchObject({
      code: RpcErrorCode.InternalError,
      message: expect.stringMatching(/^http\/request failed: too many redirects/) as unknown,
    });
  });

  it('refuses other schemes, unparseable URLs and invalid base64 with -32602', async () => {
    const pair = connect();
    await expect(call(pair, { url: 'ftp://127.0.0.1/' })).rejects.toMatchObject({
      code: RpcErrorCode.InvalidParams,
      message: 'http/request only supports http and https URLs, got ftp',
    });
    await expect(call(pair, { url: 'not a url' })).rejects.toMatchObject({
      code: RpcErrorCode.InvalidParams,
      message: expect.stringContaining('not a url') as unknown,
    });
    await expect(call(pair, { method: 'POST', url: `${base}/echo`, bodyBase64: '*not base64*' })).rejects.toMatchObject({
      code: RpcErrorCode.InvalidParams,
      message: expect.stringContaining('bodyBase64') as unknown,
    });
  });

  it('reports a refused connection as -32603 http/request failed', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const pair = connect();
    await expect(call(pair, { url: `http://127.0.0.1:${port}/` })).rejects.toMatchObject({
      code: RpcErrorCode.InternalError,
      message: expect.stringMatching(/^http\/request failed: error sending request for url \(http:\/\/127\.0\.0\.1:\d+\/\): .*ECONNREFUSED/) as unknown,
    });
  });

  it('fails with a timeout message when timeoutMs expires', async () => {
    const pair = connect();
    await expect(call(pair, { url: `${base}/slow`, timeoutMs: 50 })).rejects.toMatchObject({
      code: RpcErrorCode.InternalError,
      message: expect.stringMatching(/^http\/request failed: .*timed out after 50 ms$/) as unknown,
    });
    await state.slowClosed.promise;
  });

  it('refuses a buffered body over the limit and suggests streamResponse', async () => {
    const pair = connect({ handler: { maxBufferedBodyBytes: 1024 * 1024 } });
    await expect(call(pair, { url: `${base}/large` })).rejects.toMatchObject({
      code: RpcErrorCode.InternalError,
      message: expect.stringContaining('streamResponse') as unknown,
    });
  });

  it('lets buffered requests reuse a requestId', async () => {
    const pair = connect();
    const results = await Promise.all([call(pair, { url: `${base}/echo` }), call(pair, { url: `${base}/echo` })]);
    expect(results.map((r) => r.status)).toEqual([200, 200]);
  });
});

describe("http/request through the executor's proxy", () => {
  let proxy: TestHttpProxy;

  beforeEach(async () => {
    proxy = await startHttpProxy({ requireAuthorization: `Basic ${Buffer.from('u:p').toString('base64')}` });
  });

  afterEach(async () => {
    await proxy.close();
  });

  /** The executor's environment: only what the test sets, never this process's. */
  const through = (env: Record<string, string>): Partial<HttpHandlerOptions> => ({ network: networkSettings(env) });
  const proxyUrl = (): string => `http://u:p@127.0.0.1:${proxy.port}`;

  it('sends an http URL to HTTP_PROXY (absolute form, with its credentials), headers as asked', async () => {
    const pair = connect({ handler: through({ HTTP_PROXY: proxyUrl() }) });
    const result = await call(pair, { method: 'POST', url: `${base}/echo?q=1`, headers: [{ name: 'X-Test', value: '1' }], bodyBase64: b64('ping') });
    expect(result.status).toBe(200);
    expect(proxy.requests).toEqual([{ kind: 'forward', target: `${base}/echo?q=1`, status: 200, proxyAuthorization: `Basic ${Buffer.from('u:p').toString('base64')}` }]);
    const echo = echoed(result.bodyBase64);
    expect(echo).toMatchObject({ method: 'POST', url: '/echo?q=1', body: 'ping' });
    expect(header(echo.headers, 'x-test')).toEqual(['1']);
    expect(header(echo.headers, 'host')).toEqual([new URL(base).host]);
    // Streamed too.
    const streamed = await call(pair, { url: `${base}/echo`, requestId: 's1', streamResponse: true });
    expect(streamed.status).toBe(200);
    expect((await deltasOf(pair, 's1')).at(-1)).toMatchObject({ done: true, error: null });
    expect(proxy.requests.map((request) => request.target)).toEqual([`${base}/echo?q=1`, `${base}/echo`]);
  });

  it('goes direct to a NO_PROXY host, and through ALL_PROXY otherwise', async () => {
    const direct = connect({ handler: through({ ALL_PROXY: proxyUrl(), NO_PROXY: '127.0.0.1' }) });
    expect((await call(direct, { url: `${base}/echo` })).status).toBe(200);
    expect(proxy.requests).toEqual([]);
    const proxied = connect({ handler: through({ ALL_PROXY: proxyUrl(), NO_PROXY: 'example.invalid' }) });
    expect((await call(proxied, { url: `${base}/echo` })).status).toBe(200);
    expect(proxy.requests.map((request) => request.kind)).toEqual(['forward']);
  });

  it('tunnels an https URL through HTTPS_PROXY, trusting the roots of SSL_CERT_FILE', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'http-proxy-tls-'));
    const certificates = makeTestCertificates(dir);
    const tls = createTlsServer({ key: certificates.key, cert: certificates.cert }, (_req, res) => res.end('over tls'));
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    try {
      const target = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/`;
      const pair = connect({ handler: through({ HTTPS_PROXY: proxyUrl(), SSL_CERT_FILE: certificates.caPath }) });
      const result = await call(pair, { url: target });
      expect({ status: result.status, body: text(result.bodyBase64) }).toEqual({ status: 200, body: 'over tls' });
      expect(proxy.requests).toEqual([{ kind: 'connect', target: new URL(target).host, status: 200, proxyAuthorization: `Basic ${Buffer.from('u:p').toString('base64')}` }]);
      // A tunnel the proxy refuses is a failure to get through, not the server's answer.
      const refused = connect({ handler: through({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, SSL_CERT_FILE: certificates.caPath }) });
      const error = await call(refused, { url: target }).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error).toMatchObject({ code: RpcErrorCode.InternalError });
      expect((error as Error).message).toContain(
        `http/request failed: error sending request for url (${target}): through the proxy http://127.0.0.1:${proxy.port} (HTTPS_PROXY): it refused the tunnel to 127.0.0.1:${new URL(target).port}: 407 Proxy Authentication Required`,
      );
    } finally {
      tls.closeAllConnections();
      await new Promise<void>((resolve) => tls.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails a request, naming the variable, when the proxy setting cannot be used', async () => {
    const pair = connect({ handler: through({ HTTP_PROXY: 'socks5://127.0.0.1:1' }) });
    const error = await call(pair, { url: `${base}/echo` }).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toMatchObject({ code: RpcErrorCode.InternalError });
    expect((error as Error).message).toContain('http/request failed: HTTP_PROXY names a socks5 proxy');
    expect(proxy.requests).toEqual([]);
  });
});

describe('http/request (streamed)', () => {
  it('answers with the head first, then deltas, and one done delta for a bodiless 202', async () => {
    const pair = connect();
    const result = await call(pair, { method: 'POST', url: `${base}/accepted`, requestId: 'r202', streamResponse: true });
    expect(result).toMatchObject({ status: 202, bodyBase64: '' });
    expect(await deltasOf(pair, 'r202')).toEqual([{ requestId: 'r202', seq: 1, deltaBase64: '', done: true, error: null }]);
    const responseAt = pair.wire.findIndex((m) => m.id !== undefined && m.method === undefined);
    const firstDeltaAt = pair.wire.findIndex((m) => m.method === HttpRequestBodyDelta.method);
    expect(responseAt).toBeGreaterThanOrEqual(0);
    expect(responseAt).toBeLessThan(firstDeltaAt);
  });

  it('streams an SSE body event by event, the response before the first delta', async () => {
    const pair = connect();
    const result = await call(pair, { url: `${base}/sse`, requestId: 'sse', streamResponse: true });
    expect(result.headers).toContainEqual({ name: 'content-type', value: 'text/event-stream' });
    // The first event arrives while the server is still holding the second one.
    for (;;) {
      if (pair.deltas.length > 0) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(state.secondEventSent).toBe(false);
    expect(pair.deltas[0]).toEqual({ requestId: 'sse', seq: 1, deltaBase64: b64('data: one\n\n'), done: false, error: null });
    state.sseGates[0]!.resolve();
    const deltas = await deltasOf(pair, 'sse');
    expect(deltas.map((d) => d.seq)).toEqual(deltas.map((_, i) => i + 1));
    expect(deltas.map((d) => text(d.deltaBase64)).join('')).toBe('data: one\n\ndata: two\n\n');
    expect(deltas.at(-1)).toMatchObject({ done: true, error: null, deltaBase64: '' });
    const responseAt = pair.wire.findIndex((m) => m.id !== undefined && m.method === undefined);
    expect(responseAt).toBeLessThan(pair.wire.findIndex((m) => m.method === HttpRequestBodyDelta.method));
  });

  it('refuses a requestId that is active, accepts a buffered duplicate, and releases it after done', async () => {
    const pair = connect();
    await call(pair, { url: `${base}/sse`, requestId: 's1', streamResponse: true });
    await expect(call(pair, { url: `${base}/echo`, requestId: 's1', streamResponse: true })).rejects.toMatchObject({
      code: RpcErrorCode.InvalidParams,
      message: 'http/request streamResponse requestId `s1` is already active',
    });
    expect((await call(pair, { url: `${base}/echo`, requestId: 's1' })).status).toBe(200);
    state.sseGates[0]!.resolve();
    await deltasOf(pair, 's1');
    pair.deltas.length = 0;
    expect((await call(pair, { url: `${base}/accepted`, requestId: 's1', streamResponse: true })).status).toBe(202);
    await deltasOf(pair, 's1');
  });

  it('ends the body with an error delta when timeoutMs expires mid-body', async () => {
    const pair = connect();
    const result = await call(pair, { url: `${base}/sse`, requestId: 'late', streamResponse: true, timeoutMs: 500 });
    expect(result.status).toBe(200);
    const deltas = await deltasOf(pair, 'late');
    expect(text(deltas[0]!.deltaBase64)).toBe('data: one\n\n');
    expect(deltas.at(-1)).toMatchObject({ done: true, deltaBase64: '', error: expect.stringMatching(/timed out after 500 ms$/) as unknown });
  });

  it('caps each delta at 1 MiB and delivers the whole body', async () => {
    const pair = connect();
    await call(pair, { url: `${base}/large`, requestId: 'big', streamResponse: true });
    const deltas = await deltasOf(pair, 'big');
    const chunks = deltas.map((d) => Buffer.from(d.deltaBase64, 'base64'));
    expect(chunks.every((c) => c.length <= MAX_BODY_DELTA_BYTES)).toBe(true);
    expect(Buffer.concat(chunks).equals(LARGE_BODY)).toBe(true);
    expect(deltas.map((d) => d.seq)).toEqual(deltas.map((_, i) => i + 1));
  });

  it('pauses the body while the transport is congested', async () => {
    const [a, b] = createMemoryPair('congested');
    let congested = true;
    const send = a.send.bind(a);
    a.send = (message) => {
      send(message);
      return !congested;
    };
    const server = new RpcConnection(a);
    registerHttpHandlers(server, { env: {} });
    server.start();
    const client = new RpcConnection(b);
    const pair: Pair = { server, client, wire: [], deltas: [] };
    client.onNotification(HttpRequestBodyDelta, (delta) => pair.deltas.push(delta));
    client.start();
    pairs.push(pair);
    const settle = async (count: number): Promise<void> => {
      while (pair.deltas.length < count) await new Promise((resolve) => setImmediate(resolve));
      // A few more turns of the event loop: nothing else may arrive while congested.
      for (let turn = 0; turn < 20; turn += 1) await new Promise((resolve) => setImmediate(resolve));
    };

    await call(pair, { url: `${base}/large`, requestId: 'bp', streamResponse: true });
    await settle(1);
    expect(pair.deltas).toHaveLength(1);
    a.ondrain?.();
    await settle(2);
    expect(pair.deltas).toHaveLength(2);
    congested = false;
    a.ondrain?.();
    const deltas = await deltasOf(pair, 'bp');
    expect(Buffer.concat(deltas.map((d) => Buffer.from(d.deltaBase64, 'base64'))).equals(LARGE_BODY)).toBe(true);
  });

  it('destroys in-flight requests when the connection closes', async () => {
    const pair = connect();
    const pending = call(pair, { url: `${base}/slow`, requestId: 'gone', streamResponse: true });
    await state.slowArrived.promise;
    await pair.client.close();
    await expect(pending).rejects.toThrow(/closed/);
    await state.slowClosed.promise;
  });
});

describe('HttpBodyStreams and fetchThrough', () => {
  it('streams SSE through fetch incrementally', async () => {
    const pair = connect({ streams: true });
    const fetchImpl = fetchThrough(pair.streams!);
    const response = await fetchImpl(`${base}/sse`, { headers: { accept: 'text/event-stream' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let received = '';
    while (!received.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) throw new Error('body ended before the first event');
      received += value;
    }
    expect(received).toBe('data: one\n\n');
    expect(state.secondEventSent).toBe(false);
    state.sseGates[0]!.resolve();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      received += value;
    }
    expect(received).toBe('data: one\n\ndata: two\n\n');
    expect(pair.streams!.openCount).toBe(0);
  });

  it('posts a body and keeps repeated response headers', async () => {
    const pair = connect({ streams: true });
    const fetchImpl = fetchThrough(pair.streams!);
    const echo = await fetchImpl(`${base}/echo`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
    expect(await echo.json()).toMatchObject({ method: 'POST', body: 'hello' });
    const multi = await fetchImpl(new URL(`${base}/multi`));
    expect(multi.headers.get('x-multi')).toBe('a, b');
    expect(await multi.text()).toBe('multi');
  });

  it('gives a bodiless 202 an empty body and a 204 a null body', async () => {
    const pair = connect({ streams: true });
    const fetchImpl = fetchThrough(pair.streams!);
    const accepted = await fetchImpl(`${base}/accepted`, { method: 'POST', body: '{}' });
    expect(accepted.status).toBe(202);
    expect(await accepted.text()).toBe('');
    const noContent = await fetchImpl(`${base}/no-content`, { method: 'DELETE' });
    expect(noContent.status).toBe(204);
    expect(noContent.body).toBeNull();
    expect(pair.streams!.openCount).toBe(0);
  });

  it('rejects like fetch when the executor cannot connect', async () => {
    const pair = connect({ streams: true });
    await expect(fetchThrough(pair.streams!)('ftp://127.0.0.1/')).rejects.toMatchObject({
      name: 'TypeError',
      message: 'fetch failed',
      cause: { code: RpcErrorCode.InvalidParams },
    });
    expect(pair.streams!.openCount).toBe(0);
  });

  it('delivers a large body intact', async () => {
    const pair = connect({ streams: true });
    const response = await pair.streams!.request({ method: 'GET', url: `${base}/large` });
    const bytes = Buffer.from(await new Response(response.body).arrayBuffer());
    expect(bytes.equals(LARGE_BODY)).toBe(true);
  });

  it('stops routing deltas to a cancelled body', async () => {
    const pair = connect({ streams: true });
    const response = await pair.streams!.request({ method: 'GET', url: `${base}/sse` });
    const reader = response.body.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: one\n\n');
    await reader.cancel();
    expect(pair.streams!.openCount).toBe(0);
    state.sseGates[0]!.resolve();
  });

  it('errors the body when the caller aborts after the head', async () => {
    const pair = connect({ streams: true });
    const controller = new AbortController();
    const response = await pair.streams!.request({ method: 'GET', url: `${base}/sse` }, { signal: controller.signal });
    const reader = response.body.getReader();
    await reader.read();
    controller.abort(new Error('caller gave up'));
    await expect(reader.read()).rejects.toThrow('caller gave up');
  });

  it('errors the body when the connection closes', async () => {
    const pair = connect({ streams: true });
    const response = await pair.streams!.request({ method: 'GET', url: `${base}/sse` });
    const reader = response.body.getReader();
    await reader.read();
    await pair.client.close();
    await expect(reader.read()).rejects.toThrow(/closed/);
  });

  it('errors the body on a seq gap', async () => {
    // A misbehaving executor: the far edge faked, the client is real.
    const [a, b] = createMemoryPair('gap');
    const server = new RpcConnection(a);
    server.onRequest(HttpRequest, (params) => {
      setImmediate(() => {
        server.notify(HttpRequestBodyDelta, { requestId: params.requestId, seq: 1, deltaBase64: b64('x'), done: false, error: null });
        server.notify(HttpRequestBodyDelta, { requestId: params.requestId, seq: 3, deltaBase64: b64('y'), done: false, error: null });
      });
      return { status: 200, headers: [], bodyBase64: '' };
    });
    server.start();
    const client = new RpcConnection(b);
    const streams = new HttpBodyStreams(client);
    client.start();
    pairs.push({ server, client, wire: [], deltas: [] });
    const response = await streams.request({ method: 'GET', url: 'http://127.0.0.1:1/' });
    const reader = response.body.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('x');
    await expect(reader.read()).rejects.toThrow(/seq 3, expected 2/);
  });

  it('errors the body with the final delta error', async () => {
    const pair = connect({ streams: true });
    const response = await pair.streams!.request({ method: 'GET', url: `${base}/sse`, timeoutMs: 500 });
    const reader = response.body.getReader();
    await reader.read();
    await expect(reader.read()).rejects.toThrow(/timed out after 500 ms/);
  });
});
