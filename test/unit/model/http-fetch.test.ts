// The node:http fetch against real HTTP servers on 127.0.0.1: what it sends, what it returns,
// connection reuse, aborts, broken bodies, and what it hands to the fallback fetch.

import { X509Certificate } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { rootCertificates } from 'node:tls';
import type { Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { jest } from '@jest/globals';
import { createHttpFetch } from '../../../src/model/http-fetch.js';
import { NoProxy, type NetworkSettings } from '../../../src/transport/network.js';
import { deferred } from '../../../src/util/deferred.js';
import { startHttpProxy, type TestHttpProxy } from '../../helpers/http-proxy.js';
import { makeTestCertificates, type TestCertificates } from '../../helpers/network.js';
import { tempDir } from '../../helpers/process.js';

interface TestServer {
  url: string;
  /** TCP connections accepted so far. */
  connections: number;
  /** Resolves when a connection closes. */
  closed: () => Promise<void>;
  requests: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
}

const servers: Server[] = [];

/** A PEM certificate as the network settings hold it: base64 DER. */
const der = (pem: string): string => new X509Certificate(pem).raw.toString('base64');

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

  describe('a kept-alive connection the server closed as it was reused (the idle time-out race)', () => {
    /** Answers the first request of each connection; a later one on it finds the connection closed, unanswered. */
    const closingReused = (): Promise<TestServer> => {
      const served = new WeakMap<Socket, number>();
      return serve((req, res) => {
        const count = (served.get(req.socket) ?? 0) + 1;
        served.set(req.socket, count);
        if (count === 1) res.end('ok');
        else req.socket.destroy();
      });
    };

    it('sends a request that may be sent twice (an Idempotency-Key, or an idempotent method) again on a new connection', async () => {
      const server = await closingReused();
      const httpFetch = createHttpFetch();
      const post = (): Promise<Response> => httpFetch(server.url, { method: 'POST', headers: { 'Idempotency-Key': 'k1' }, body: 'x' });

      expect(await (await post()).text()).toBe('ok');
      expect(await (await post()).text()).toBe('ok');
      expect(await (await httpFetch(server.url)).text()).toBe('ok');

      // Each later request went out on the kept connection first, then on a new one.
      expect(server.connections).toBe(3);
      expect(server.requests.map((request) => request.method)).toEqual(['POST', 'POST', 'POST', 'GET', 'GET']);
    });

    it('does not send a POST without an Idempotency-Key again, and says why', async () => {
      const server = await closingReused();
      const httpFetch = createHttpFetch();
      expect(await (await httpFetch(server.url, { method: 'POST', body: 'x' })).text()).toBe('ok');

      const error = await httpFetch(server.url, { method: 'POST', body: 'y' }).then(
        () => undefined,
        (e: unknown) => e,
      );

      expect(error).toBeInstanceOf(TypeError);
      expect(error).toMatchObject({
        message: 'fetch failed',
        cause: {
          message: expect.stringMatching(/^the server closed the kept-alive connection before answering \(.+\); a POST without an Idempotency-Key header is not sent again/),
        },
      });
      expect(server.requests.map((request) => request.body)).toEqual(['x', 'y']);
    });
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

  it('follows redirects by the fetch standard: 307 keeps the method and body, 303 turns into a GET', async () => {
    const server = await serve((req, res, body) => {
      if (req.url === '/keep') return void res.writeHead(307, { location: '/kept' }).end();
      if (req.url === '/see-other') return void res.writeHead(303, { location: `${server.url}/seen` }).end();
      res.end(`${req.method ?? ''} ${req.url ?? ''} ${body} ${req.headers['content-type'] ?? 'no type'}`);
    });
    const httpFetch = createHttpFetch();
    const post = { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } };

    expect(await (await httpFetch(`${server.url}/keep`, post)).text()).toBe('POST /kept {"a":1} application/json');
    expect(await (await httpFetch(`${server.url}/see-other`, post)).text()).toBe('GET /seen  no type');
  });

  it('does not send credentials on to another origin, and stops after 20 redirects', async () => {
    const other = await serve((req, res) => res.end(`auth: ${req.headers.authorization ?? 'none'}`));
    const server = await serve((req, res) => {
      if (req.url === '/away') return void res.writeHead(302, { location: `${other.url}/there` }).end();
      if (req.url === '/same') return void res.writeHead(302, { location: '/here' }).end();
      if (req.url === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
      res.end(`auth: ${req.headers.authorization ?? 'none'}`);
    });
    const httpFetch = createHttpFetch();
    const headers = { authorization: 'Bearer sk-test' };

    expect(await (await httpFetch(`${server.url}/same`, { headers })).text()).toBe('auth: Bearer sk-test');
    expect(await (await httpFetch(`${server.url}/away`, { headers })).text()).toBe('auth: none');
    const error: unknown = await httpFetch(`${server.url}/loop`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ message: 'fetch failed', cause: { message: expect.stringContaining('more than 20 redirects') } });
    expect(server.requests.filter((r) => r.url === '/loop')).toHaveLength(21);
  });

  it("returns a redirect as is with redirect: 'manual', and fails with 'error'", async () => {
    const server = await serve((_req, res) => res.writeHead(301, { location: '/elsewhere' }).end('moved'));
    const httpFetch = createHttpFetch();

    const manual = await httpFetch(server.url, { redirect: 'manual' });
    expect({ status: manual.status, location: manual.headers.get('location'), body: await manual.text() }).toEqual({ status: 301, location: '/elsewhere', body: 'moved' });
    await expect(httpFetch(server.url, { redirect: 'error' })).rejects.toMatchObject({ message: 'fetch failed' });
  });

  it('sends Request objects and form or blob bodies itself, and hands other URL schemes to the fallback', async () => {
    const server = await serve((req, res, body) => res.end(`${req.method ?? ''} ${req.url ?? ''} ${body} ${req.headers['content-type'] ?? ''}`));
    const fallback = jest.fn((input: string | URL | Request, init?: RequestInit) => fetch(input, init));
    const httpFetch = createHttpFetch({ fallback });

    expect(await (await httpFetch(new Request(`${server.url}/req`, { method: 'PUT', body: 'r' }))).text()).toBe('PUT /req r text/plain;charset=UTF-8');
    expect(await (await httpFetch(`${server.url}/blob`, { method: 'POST', body: new Blob(['b']) })).text()).toBe('POST /blob b ');
    expect(await (await httpFetch(`${server.url}/form`, { method: 'POST', body: new URLSearchParams({ q: '1' }) })).text()).toBe(
      'POST /form q=1 application/x-www-form-urlencoded;charset=UTF-8',
    );
    expect(server.requests).toHaveLength(3);
    expect(fallback).not.toHaveBeenCalled();
    expect(await (await httpFetch('data:text/plain,inline')).text()).toBe('inline');
    expect(fallback).toHaveBeenCalledTimes(1);
  });
});

describe('createHttpFetch with network settings', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let certs: TestCertificates;
  let proxy: TestHttpProxy;
  /** An https server with the test CA's certificate for localhost and 127.0.0.1. */
  let secureServer: Server;
  let securePort: number;
  const secureUrl = (host: string): string => `https://${host}:${securePort}`;

  beforeAll(async () => {
    dir = await tempDir('http-fetch-net-');
    certs = makeTestCertificates(dir.path);
    secureServer = createHttpsServer({ key: certs.key, cert: certs.cert }, (req, res) => {
      if (req.url === '/hop') return void res.writeHead(307, { location: '/landed' }).end();
      res.end(`secure ${req.url ?? ''}`);
    });
    await new Promise<void>((resolve) => secureServer.listen(0, '127.0.0.1', resolve));
    const address = secureServer.address();
    if (address === null || typeof address === 'string') throw new Error('no address');
    securePort = address.port;
  });
  afterAll(async () => {
    secureServer.closeAllConnections();
    await new Promise((resolve) => secureServer.close(resolve));
    await dir.cleanup();
  });
  beforeEach(async () => {
    proxy = await startHttpProxy();
  });
  afterEach(() => proxy.close());

  const ca = (): NetworkSettings['ca'] => ({ variable: 'CODEX_CA_CERTIFICATE', path: certs.caPath, certificates: [der(certs.caPem)] });
  const viaProxy = (variable = 'HTTPS_PROXY'): NetworkSettings['httpsProxy'] => ({ variable, url: new URL(proxy.url) });

  it('tunnels https requests through the proxy with CONNECT, trusting the extra CA, one tunnel for sequential requests', async () => {
    const httpFetch = createHttpFetch({ network: { httpsProxy: viaProxy(), ca: ca() } });

    expect(await (await httpFetch(`${secureUrl('localhost')}/a`)).text()).toBe('secure /a');
    expect(await (await httpFetch(`${secureUrl('localhost')}/b`)).text()).toBe('secure /b');
    expect(proxy.requests).toEqual([{ kind: 'connect', target: `${new URL(secureUrl('localhost')).host}`, status: 200, proxyAuthorization: undefined }]);
  });

  it('follows a redirect through the same proxy', async () => {
    const httpFetch = createHttpFetch({ network: { httpsProxy: viaProxy(), ca: ca() } });

    expect(await (await httpFetch(`${secureUrl('localhost')}/hop`, { method: 'POST', body: 'x' })).text()).toBe('secure /landed');
    expect(proxy.requests.map((r) => r.kind)).toEqual(['connect']);
  });

  it('without the extra CA the server is not trusted, through the proxy or not', async () => {
    const tunnelled = createHttpFetch({ network: { httpsProxy: viaProxy() } });
    const direct = createHttpFetch();

    await expect(tunnelled(secureUrl('localhost'))).rejects.toMatchObject({
      message: 'fetch failed',
      cause: { message: expect.stringMatching(/^through the proxy http:\/\/127\.0\.0\.1:\d+ \(HTTPS_PROXY\): .*certificate/) },
    });
    await expect(direct(secureUrl('localhost'))).rejects.toMatchObject({ message: 'fetch failed', cause: { message: expect.stringContaining('certificate') } });
    expect(await (await createHttpFetch({ network: { ca: ca() } })(`${secureUrl('127.0.0.1')}/direct`)).text()).toBe('secure /direct');
  });

  it('keeps trusting the roots of NODE_EXTRA_CA_CERTS when an extra CA makes a context of its own', async () => {
    const other = makeTestCertificates(dir.path, 'other');
    const otherCa = { variable: 'SSL_CERT_FILE', path: other.caPath, certificates: [der(other.caPem)] };

    await expect(createHttpFetch({ network: { ca: otherCa } })(secureUrl('localhost'))).rejects.toMatchObject({ message: 'fetch failed' });
    expect(await (await createHttpFetch({ network: { ca: otherCa, nodeExtraCertificates: [der(certs.caPem)] } })(`${secureUrl('localhost')}/kept`)).text()).toBe('secure /kept');
  });

  it('sends plain-http requests to the proxy in absolute form, with the credentials of the proxy URL', async () => {
    const server = await serve((req, res) => res.end(`plain ${req.url ?? ''} host ${req.headers.host ?? ''}`));
    const port = new URL(server.url).port;
    const proxyUrl = new URL(proxy.url);
    proxyUrl.username = 'alice';
    proxyUrl.password = 'p@ss';
    const httpFetch = createHttpFetch({ network: { httpProxy: { variable: 'http_proxy', url: proxyUrl } } });

    expect(await (await httpFetch(`http://localhost:${port}/v1/models?x=1`)).text()).toBe(`plain /v1/models?x=1 host localhost:${port}`);
    expect(proxy.requests).toEqual([
      { kind: 'forward', target: `http://localhost:${port}/v1/models?x=1`, status: 200, proxyAuthorization: `Basic ${Buffer.from('alice:p@ss').toString('base64')}` },
    ]);
  });

  it('goes direct to NO_PROXY hosts: 127.0.0.1 listed, localhost not', async () => {
    const httpFetch = createHttpFetch({ network: { httpsProxy: viaProxy(), noProxy: new NoProxy('NO_PROXY', '127.0.0.1'), ca: ca() } });

    expect(await (await httpFetch(`${secureUrl('127.0.0.1')}/direct`)).text()).toBe('secure /direct');
    expect(proxy.requests).toEqual([]);
    expect(await (await httpFetch(`${secureUrl('localhost')}/proxied`)).text()).toBe('secure /proxied');
    expect(proxy.requests.map((r) => r.target)).toEqual([new URL(secureUrl('localhost')).host]);
  });

  it('a proxy that refuses (407) is a failure naming the proxy and its variable, for tunnels and plain requests', async () => {
    const strict = await startHttpProxy({ requireAuthorization: 'Basic nobody' });
    try {
      const server = await serve((_req, res) => res.end('never'));
      const settings = { variable: 'ALL_PROXY', url: new URL(strict.url) };
      const httpFetch = createHttpFetch({ network: { httpsProxy: settings, httpProxy: settings, ca: ca() } });
      const refused = {
        message: 'fetch failed',
        cause: {
          message: expect.stringMatching(
            /^through the proxy http:\/\/127\.0\.0\.1:\d+ \(ALL_PROXY\): it refused the request for localhost:\d+: 407 Proxy Authentication Required$/,
          ),
        },
      };

      await expect(httpFetch(secureUrl('localhost'))).rejects.toMatchObject(refused);
      await expect(httpFetch(`http://localhost:${new URL(server.url).port}/`)).rejects.toMatchObject(refused);
      expect(server.requests).toEqual([]);
      expect(strict.requests.map((r) => `${r.kind} ${r.status}`)).toEqual(['connect 407', 'forward 407']);
    } finally {
      await strict.close();
    }
  });

  it('a proxy that is not there is named in the failure', async () => {
    const gone = await startHttpProxy();
    await gone.close();
    const httpFetch = createHttpFetch({ network: { httpsProxy: { variable: 'https_proxy', url: new URL(gone.url) } } });

    await expect(httpFetch(secureUrl('localhost'))).rejects.toMatchObject({
      message: 'fetch failed',
      cause: { message: expect.stringMatching(/^through the proxy .* \(https_proxy\): connect ECONNREFUSED/) },
    });
  });

  it('a certificate OpenSSL would skip fails the first request that needs the roots, and every later one, naming the variable and path', async () => {
    const server = await serve((_req, res) => res.end('never'));
    // One DER element that is no certificate: it has the shape, so only parsing finds it out.
    const notACertificate = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05]).toString('base64');
    const httpFetch = createHttpFetch({ network: { ca: { variable: 'SSL_CERT_FILE', path: '/etc/corp.pem', certificates: [der(certs.caPem), notACertificate] } } });
    const refused = expect.objectContaining({
      code: 'INVALID_CONFIG',
      message: expect.stringMatching(/^a certificate in \/etc\/corp\.pem \(named by SSL_CERT_FILE\) cannot be read/),
    });

    await expect(httpFetch(secureUrl('localhost'))).rejects.toEqual(refused);
    await expect(httpFetch(server.url)).rejects.toEqual(refused);
    expect(server.requests).toEqual([]);
  });

  it("a bundle of bundled roots only trusts nothing more (Node.js's default context serves it)", async () => {
    const httpFetch = createHttpFetch({ network: { ca: { variable: 'SSL_CERT_FILE', path: '/etc/ssl/certs/bundle.pem', certificates: rootCertificates.slice(0, 3).map(der) } } });

    await expect(httpFetch(secureUrl('localhost'))).rejects.toMatchObject({ message: 'fetch failed', cause: { message: expect.stringContaining('certificate') } });
  });

  it('rejects every request with the settings error, and a request needing a proxy that cannot be used with its error', async () => {
    const server = await serve((_req, res) => res.end('never'));
    const broken = createHttpFetch({ network: { error: 'cannot read the CA certificate file /x.pem named by SSL_CERT_FILE' } });
    const badProxy = createHttpFetch({
      network: { httpsProxy: { variable: 'ALL_PROXY', error: 'ALL_PROXY names a socks5 proxy' }, noProxy: new NoProxy('NO_PROXY', '127.0.0.1') },
    });

    await expect(broken(server.url)).rejects.toEqual(
      expect.objectContaining({ code: 'INVALID_CONFIG', message: 'cannot read the CA certificate file /x.pem named by SSL_CERT_FILE' }),
    );
    await expect(badProxy(secureUrl('localhost'))).rejects.toEqual(expect.objectContaining({ code: 'INVALID_CONFIG', message: 'ALL_PROXY names a socks5 proxy' }));
    expect(server.requests).toEqual([]);
  });
});
