// The model client's own HTTP request (no SDK): the headers it sends, HTTP errors mapped with
// their status and retry-after, connection failures, an abort mid-stream, compressed streams,
// redirects and proxies. Against the scripted fake Responses server or a raw HTTP server, both on
// 127.0.0.1.

import type { IncomingHttpHeaders } from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { jest } from '@jest/globals';
import { DEFAULT_USER_AGENT, MAX_ERROR_BODY_BYTES } from '../../../src/model/api-request.js';
import { ModelClient, type ModelClientOptions, type ModelRequest } from '../../../src/model/client.js';
import { ModelApiError, ModelConnectionError } from '../../../src/model/errors.js';
import { HttpExchange } from '../../../src/model/http-exchange.js';
import { messageText, type ResponseOutputItem } from '../../../src/protocol/responses.js';
import { deferred } from '../../../src/util/deferred.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';
import { startFakeResponsesServer, type FakeResponsesOptions, type FakeResponsesServer } from '../../../tools/fake-responses-server.js';
import { startHttpProxy } from '../../helpers/http-proxy.js';
import { startRawHttpServer } from '../../helpers/raw-http.js';

const API_KEY = 'sk-test-secret-key';
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

async function fakeModel(options: FakeResponsesOptions): Promise<FakeResponsesServer> {
  const server = await startFakeResponsesServer(options);
  cleanups.push(() => server.close());
  return server;
}

/** A raw HTTP server on 127.0.0.1 (closed after the test): `handle` answers each request; resolves with its base URL (`…/v1`). */
async function rawServer(handle: Parameters<typeof startRawHttpServer>[0]): Promise<string> {
  const server = await startRawHttpServer(handle);
  cleanups.push(() => server.close());
  return server.url;
}

function makeClient(baseUrl: string, options: Partial<ModelClientOptions> = {}): ModelClient {
  return new ModelClient({ baseUrl, apiKey: API_KEY, http: new HttpExchange(), maxRetries: 0, streamMaxRetries: 0, ...options });
}

function request(text = 'hi'): ModelRequest {
  return { model: 'gpt-test', input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text }] }], tools: [], parallelToolCalls: true };
}

const signal = (): AbortSignal => new AbortController().signal;

function sse(event: Record<string, unknown>): string {
  return `event: ${String(event['type'])}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** A whole stream answering with one assistant message. */
function messageStream(text: string): string {
  const item = { type: 'message', id: 'msg_1', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] };
  return [
    sse({ type: 'response.created', sequence_number: 0, response: { id: 'resp_1' } }),
    sse({ type: 'response.output_text.delta', sequence_number: 1, delta: text }),
    sse({ type: 'response.output_item.done', sequence_number: 2, output_index: 0, item }),
    sse({ type: 'response.completed', sequence_number: 3, response: { id: 'resp_1', output: [item] } }),
  ].join('');
}

function textOf(output: ResponseOutputItem[]): string {
  return output.flatMap((item) => (item.type === 'message' ? [messageText(item)] : [])).join('');
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('ModelClient request headers', () => {
  it('sends JSON, asks for an event stream, names itself, carries the bearer key and an Idempotency-Key, and nothing of an SDK', async () => {
    const server = await fakeModel({ script: [{ kind: 'output', items: [] }] });

    await makeClient(server.url, { userAgent: 'codex-multienv-mcp/1.2.3' }).respond(request(), { signal: signal() });

    const headers = server.requests[0]?.headers ?? {};
    expect(headers['content-type']).toBe('application/json');
    expect(headers['accept']).toBe('text/event-stream');
    expect(headers['user-agent']).toBe('codex-multienv-mcp/1.2.3');
    expect(headers['authorization']).toBe(`Bearer ${API_KEY}`);
    expect(headers['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
    expect(Object.keys(headers).filter((name) => name.startsWith('x-stainless'))).toEqual([]);
  });

  it('names itself with the default User-Agent when given none', async () => {
    const server = await fakeModel({ script: [{ kind: 'output', items: [] }] });

    await makeClient(server.url).respond(request(), { signal: signal() });

    expect(server.requests[0]?.headers['user-agent']).toBe(DEFAULT_USER_AGENT);
  });

  it('sends no Authorization without a key, and the configured Authorization (whatever its case) instead of the key', async () => {
    const server = await fakeModel({ respond: () => ({ kind: 'output', items: [] }) });

    await makeClient(server.url, { apiKey: undefined }).respond(request(), { signal: signal() });
    await makeClient(server.url, { apiKey: undefined, headers: { Authorization: 'Token own' } }).respond(request(), { signal: signal() });
    await makeClient(server.url, { headers: { AUTHORIZATION: 'Token own' } }).respond(request(), { signal: signal() });

    expect(server.requests[0]?.headers).not.toHaveProperty('authorization');
    expect(server.requests[1]?.headers['authorization']).toBe('Token own');
    expect(server.requests[2]?.headers['authorization']).toBe('Token own');
  });

  it('adds the query parameters to a base URL with its own query and a trailing slash', async () => {
    const server = await fakeModel({ script: [{ kind: 'output', items: [] }] });

    await makeClient(`${server.url}/?tenant=a&api-version=old`, { queryParams: { 'api-version': '2025-04-01' } }).respond(request(), { signal: signal() });

    const recorded = server.requests[0];
    expect(recorded?.path).toBe('/v1/responses');
    const query = new URL(recorded!.url, server.url).searchParams;
    expect(query.get('tenant')).toBe('a');
    expect(query.getAll('api-version')).toEqual(['2025-04-01']);
  });

  it('fails a base URL that is not an http(s) URL with INVALID_CONFIG, sending nothing', async () => {
    for (const baseUrl of ['not a url', 'ftp://127.0.0.1/v1']) {
      const error = await failure(makeClient(baseUrl, { maxRetries: 3 }).respond(request(), { signal: signal() }));
      expect(error).toBeInstanceOf(LocalError);
      expect(error).toMatchObject({ code: LocalErrorCode.InvalidConfig });
    }
  });
});

describe('ModelClient HTTP errors and failures', () => {
  it('maps an error status with its JSON body, request id and retry-after, and waits as asked before the retry', async () => {
    const body = { error: { message: 'Rate limit reached.', type: 'requests', code: 'rate_limit_exceeded' } };
    const url = await rawServer((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '3', 'x-request-id': 'req_42' }).end(JSON.stringify(body));
    });
    const sleep = jest.fn((_ms: number, _signal: AbortSignal) => Promise.resolve());

    const error = await failure(makeClient(url, { maxRetries: 1, sleep }).respond(request(), { signal: signal() }));

    expect(error).toBeInstanceOf(ModelApiError);
    expect(error).toMatchObject({
      status: 429,
      code: 'rate_limit_exceeded',
      type: 'requests',
      apiMessage: 'Rate limit reached.',
      requestId: 'req_42',
      retryAfterMs: 3000,
      retryable: true,
    });
    expect((error as Error).message).toContain(url);
    expect(sleep.mock.calls.map(([ms]) => ms)).toEqual([3000]);
  });

  it('keeps a text error body as the message, and reads no more of an endless one than the bound', async () => {
    const url = await rawServer((req, res) => {
      if (req.url?.includes('endless') !== true) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('  bad gateway config  ');
        return;
      }
      // More than the bound, and never an end: only the bound ends the read.
      res.writeHead(502, { 'content-type': 'text/html' }).write('x'.repeat(MAX_ERROR_BODY_BYTES * 2));
    });

    const text = await failure(makeClient(url).respond(request(), { signal: signal() }));
    const endless = await failure(makeClient(`${url}?endless=1`).respond(request(), { signal: signal() }));

    expect(text).toMatchObject({ name: 'ModelApiError', status: 400, apiMessage: 'bad gateway config', retryable: false });
    expect(endless).toMatchObject({ name: 'ModelApiError', status: 502, apiMessage: expect.stringMatching(/^x+…$/) });
  });

  it('reports a redirect without a Location as an HTTP error, without retrying', async () => {
    let calls = 0;
    const url = await rawServer((_req, res) => {
      calls++;
      res.writeHead(302, { 'content-type': 'text/plain' }).end('moved, somewhere');
    });

    const error = await failure(makeClient(url, { maxRetries: 2, streamMaxRetries: 2 }).respond(request(), { signal: signal() }));

    expect(error).toMatchObject({ name: 'ModelApiError', status: 302, apiMessage: 'moved, somewhere', retryable: false });
    expect(calls).toBe(1);
  });

  it('reports a refused connection as a ModelConnectionError with the cause', async () => {
    const closed = await startFakeResponsesServer({ script: [] });
    await closed.close();

    const error = await failure(makeClient(closed.url).respond(request(), { signal: signal() }));

    expect(error).toBeInstanceOf(ModelConnectionError);
    expect((error as Error).message).toContain(closed.url);
    expect((error as Error).message).toContain('ECONNREFUSED');
  });

  it('an abort mid-stream rejects at once with the reason and closes the connection of the unfinished stream', async () => {
    const closed = deferred<void>();
    const url = await rawServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sse({ type: 'response.created', sequence_number: 0, response: { id: 'resp_held' } }));
      res.write(sse({ type: 'response.output_text.delta', sequence_number: 1, delta: 'partial' }));
      res.once('close', () => closed.resolve());
    });
    const controller = new AbortController();
    const reason = new Error('user pressed stop');

    const pending = makeClient(url).respond(request(), { signal: controller.signal, onTextDelta: () => controller.abort(reason) });

    await expect(pending).rejects.toBe(reason);
    await closed.promise;
  });
});

describe('ModelClient stream transport', () => {
  it.each([
    ['gzip', gzipSync],
    ['br', brotliCompressSync],
    ['deflate', deflateSync],
  ])('decodes a %s-encoded event stream', async (encoding, compress) => {
    const url = await rawServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': encoding }).end(compress(Buffer.from(messageStream('squeezed'))));
    });
    const deltas: string[] = [];

    const response = await makeClient(url).respond(request(), { signal: signal(), onTextDelta: (delta) => deltas.push(delta) });

    expect(textOf(response.output)).toBe('squeezed');
    expect(deltas).toEqual(['squeezed']);
  });

  it('follows a 307 with the same POST and body, and sends no key on to another origin', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const bodies: string[] = [];
    const elsewhere = await rawServer((req, res) => {
      seen.push(req.headers);
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(200, { 'content-type': 'text/event-stream' }).end(messageStream('moved'));
      });
    });
    const origin = await rawServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      res.writeHead(307, { location: `${elsewhere}/responses` }).end();
    });

    const response = await makeClient(origin).respond(request('follow me'), { signal: signal() });

    expect(textOf(response.output)).toBe('moved');
    expect(seen[0]?.['authorization']).toBe(`Bearer ${API_KEY}`);
    expect(seen[1]).not.toHaveProperty('authorization');
    expect(JSON.parse(bodies[0] ?? '{}')).toMatchObject({ model: 'gpt-test', stream: true });
  });

  it('goes through the configured proxy', async () => {
    const server = await fakeModel({ script: [{ kind: 'output', items: [{ type: 'message', text: 'proxied' }] }] });
    const proxy = await startHttpProxy();
    cleanups.push(() => proxy.close());
    const http = new HttpExchange({ network: { httpProxy: { variable: 'HTTP_PROXY', url: new URL(proxy.url) } } });

    const response = await makeClient(server.url, { http }).respond(request(), { signal: signal() });

    expect(textOf(response.output)).toBe('proxied');
    expect(proxy.requests).toEqual([expect.objectContaining({ kind: 'forward', target: `${server.url}/responses`, status: 200 })]);
  });
});
