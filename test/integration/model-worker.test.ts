// The model client on its worker thread: the built worker script (dist/cli/model-worker.cjs, so
// run `npm run build` first) against the scripted fake Responses server and a raw HTTP server on
// 127.0.0.1. Same contract as the in-thread client: responses, text deltas in order, retries and
// error classes with their fields, cancellation mid-stream, and a worker that dies.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelRequest } from '../../src/model/client.js';
import { ModelApiError, ModelStreamError } from '../../src/model/errors.js';
import { ModelWorker, WorkerModelClient } from '../../src/model/worker-client.js';
import type { ModelClientSettings } from '../../src/model/worker-protocol.js';
import { messageText, type ResponseOutputItem } from '../../src/protocol/responses.js';
import { deferred } from '../../src/util/deferred.js';
import { LocalError, LocalErrorCode } from '../../src/util/errors.js';
import { startFakeResponsesServer, type FakeResponsesOptions, type FakeResponsesServer } from '../../tools/fake-responses-server.js';
import { REPO_ROOT, tempDir } from '../helpers/process.js';
import { startRawHttpServer } from '../helpers/raw-http.js';

const SCRIPT = join(REPO_ROOT, 'dist/cli/model-worker.cjs');
/** The worker reads its network settings from this environment: no proxies, whatever the ambient one says. */
const WORKER_DATA = { env: {}, userAgent: 'codex-multienv-mcp/9.9.9-test' };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeModel(options: FakeResponsesOptions): Promise<FakeResponsesServer> {
  const server = await startFakeResponsesServer(options);
  cleanups.push(() => server.close());
  return server;
}

function modelWorker(script = SCRIPT, stallMs?: number): ModelWorker {
  const worker = new ModelWorker({ script, workerData: WORKER_DATA, ...(stallMs === undefined ? {} : { stallMs }) });
  cleanups.push(() => worker.close());
  return worker;
}

function settings(baseUrl: string, extra: Partial<ModelClientSettings> = {}): ModelClientSettings {
  return { baseUrl, apiKey: 'sk-test', ...extra };
}

function request(text: string): ModelRequest {
  return { model: 'gpt-test', input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text }] }], tools: [], parallelToolCalls: true };
}

const signal = (): AbortSignal => new AbortController().signal;

function texts(output: ResponseOutputItem[]): string[] {
  return output.flatMap((item) => (item.type === 'message' ? [messageText(item)] : []));
}

/** A raw HTTP server on 127.0.0.1 (closed after the test): `handle` answers each request. */
async function rawServer(handle: Parameters<typeof startRawHttpServer>[0]): Promise<{ url: string }> {
  const server = await startRawHttpServer(handle);
  cleanups.push(() => server.close());
  return server;
}

function sse(event: Record<string, unknown>): string {
  return `event: ${String(event['type'])}\ndata: ${JSON.stringify(event)}\n\n`;
}

describe('the model worker thread', () => {
  it('answers with the validated output, usage, and the text deltas in order, sending the User-Agent it was given', async () => {
    const server = await fakeModel({ script: [{ kind: 'output', items: [{ type: 'message', text: 'hello from the worker' }] }] });
    const client = new WorkerModelClient(modelWorker(), settings(server.url));
    const deltas: string[] = [];

    const response = await client.respond(request('hi'), { signal: signal(), onTextDelta: (delta) => deltas.push(delta) });

    expect(texts(response.output)).toEqual(['hello from the worker']);
    expect(deltas.join('')).toBe('hello from the worker');
    expect(response.id).toMatch(/^resp_/);
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]?.headers['authorization']).toBe('Bearer sk-test');
    expect(server.requests[0]?.headers['user-agent']).toBe('codex-multienv-mcp/9.9.9-test');
  });

  it('retries a 500 in the worker, tells the caller with the error class and fields, then answers', async () => {
    const server = await fakeModel({
      script: [
        { kind: 'http-error', status: 500, headers: { 'retry-after-ms': '0', 'x-request-id': 'req_1' } },
        { kind: 'output', items: [{ type: 'message', text: 'after the retry' }] },
      ],
    });
    const client = new WorkerModelClient(modelWorker(), settings(server.url));
    const retries: { attempt: number; error: Error; delayMs: number }[] = [];

    const response = await client.respond(request('hi'), { signal: signal(), onRetry: (attempt, error, delayMs) => retries.push({ attempt, error, delayMs }) });

    expect(texts(response.output)).toEqual(['after the retry']);
    expect(retries).toHaveLength(1);
    const [retry] = retries;
    expect(retry?.attempt).toBe(1);
    expect(retry?.delayMs).toBe(0);
    expect(retry?.error).toBeInstanceOf(ModelApiError);
    expect(retry?.error).toMatchObject({ status: 500, requestId: 'req_1', retryable: true });
    expect(server.requests).toHaveLength(2);
  });

  it('rejects with the same error classes and fields as the in-thread client', async () => {
    const server = await fakeModel({
      script: [
        { kind: 'http-error', status: 400, body: { error: { message: 'bad tool', type: 'invalid_request_error', code: 'invalid_tool' } } },
        { kind: 'failed', message: 'the model gave up' },
      ],
    });
    const client = new WorkerModelClient(modelWorker(), settings(server.url, { maxRetries: 0, streamMaxRetries: 0 }));

    const apiError = await client.respond(request('one'), { signal: signal() }).catch((error: unknown) => error);
    expect(apiError).toBeInstanceOf(ModelApiError);
    expect(apiError).toMatchObject({ status: 400, code: 'invalid_tool', type: 'invalid_request_error', apiMessage: 'bad tool', retryable: false });
    expect((apiError as Error).message).toContain(`HTTP 400 from ${server.url}`);

    const streamError = await client.respond(request('two'), { signal: signal() }).catch((error: unknown) => error);
    expect(streamError).toBeInstanceOf(ModelStreamError);
    expect(streamError).toMatchObject({ reason: 'failed', code: 'server_error', retryable: true });
    expect((streamError as Error).message).toContain('the model gave up');
  });

  it('cancels mid-stream: rejects with the reason at once, the worker closes the connection, and the next request works', async () => {
    const connectionClosed = deferred<void>();
    let requests = 0;
    const { url } = await rawServer((req, res) => {
      requests++;
      req.resume();
      if (requests === 1) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(sse({ type: 'response.created', response: { id: 'resp_held' } }));
        res.write(sse({ type: 'response.output_text.delta', delta: 'partial', item_id: 'm1', output_index: 0, content_index: 0 }));
        // The stream stays open until the client goes.
        res.once('close', () => connectionClosed.resolve());
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(
        sse({ type: 'response.created', response: { id: 'resp_next' } }) +
          sse({
            type: 'response.completed',
            response: { id: 'resp_next', output: [{ type: 'message', role: 'assistant', id: 'm2', content: [{ type: 'output_text', text: 'next' }] }] },
          }),
      );
    });
    const client = new WorkerModelClient(modelWorker(), settings(url));
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    const firstDelta = deferred<string>();

    const pending = client.respond(request('hold'), { signal: controller.signal, onTextDelta: (delta) => firstDelta.resolve(delta) });
    expect(await firstDelta.promise).toBe('partial');
    controller.abort(reason);

    await expect(pending).rejects.toBe(reason);
    await connectionClosed.promise;
    const next = await client.respond(request('again'), { signal: signal() });
    expect(texts(next.output)).toEqual(['next']);
  });

  it('fails the requests of a worker that dies with a clear error, and the next request starts a new worker', async () => {
    const never = deferred<void>();
    const server = await fakeModel({
      respond: (recorded) =>
        recorded.rawBody.includes('CRASH-WORKER')
          ? { kind: 'hold', release: never.promise, then: { kind: 'output', items: [] } }
          : { kind: 'output', items: [{ type: 'message', text: 'new worker' }] },
    });
    // The real worker script, plus listeners that make it throw (uncaught, in the worker) once the
    // request marked CRASH-WORKER has gone out on HTTP.
    const dir = await tempDir('model-worker-crash-');
    cleanups.push(() => dir.cleanup());
    const script = join(dir.path, 'crashing-worker.cjs');
    await writeFile(
      script,
      [
        "const { parentPort } = require('node:worker_threads');",
        "const { subscribe } = require('node:diagnostics_channel');",
        'let crash = false;',
        "parentPort.on('message', (message) => { if (message.type === 'respond' && message.body.includes('CRASH-WORKER')) crash = true; });",
        "subscribe('http.client.request.start', () => { if (crash) setImmediate(() => { throw new Error('crash asked for by the test'); }); });",
        `require(${JSON.stringify(SCRIPT)});`,
      ].join('\n'),
    );
    const client = new WorkerModelClient(modelWorker(script), settings(server.url));

    const crashed = client.respond(request('CRASH-WORKER'), { signal: signal() }).catch((error: unknown) => error);
    const error = await crashed;
    expect(error).toBeInstanceOf(LocalError);
    expect(error).toMatchObject({ code: LocalErrorCode.Unavailable });
    expect((error as Error).message).toMatch(/model worker thread stopped \(.*crash asked for by the test.*\)/);

    const next = await client.respond(request('after the crash'), { signal: signal() });
    expect(texts(next.output)).toEqual(['new worker']);
  });

  it('ends a worker sent settings it cannot use, saying which, and the next request with good settings works', async () => {
    const server = await fakeModel({ respond: () => ({ kind: 'output', items: [{ type: 'message', text: 'good settings' }] }) });
    const worker = modelWorker();
    // Settings are validated in the worker when a client is built from them, not per message.
    const bad: unknown = { baseUrl: server.url, maxRetries: -1 };
    const error = await new WorkerModelClient(worker, bad as ModelClientSettings).respond(request('bad'), { signal: signal() }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LocalError);
    expect(error).toMatchObject({ code: LocalErrorCode.Unavailable });
    expect((error as Error).message).toMatch(/model worker thread stopped \(.*unexpected settings.*maxRetries/s);

    const next = await new WorkerModelClient(worker, settings(server.url)).respond(request('good'), { signal: signal() });
    expect(texts(next.output)).toEqual(['good settings']);
  });

  it('ends a worker whose event loop is held (it answers no ping) and fails its requests; the next request starts a new worker', async () => {
    const server = await fakeModel({ respond: () => ({ kind: 'output', items: [{ type: 'message', text: 'new worker' }] }) });
    // The real worker script, plus a listener that holds the worker's event loop for good once
    // it is sent the request marked STALL-WORKER.
    const dir = await tempDir('model-worker-stall-');
    cleanups.push(() => dir.cleanup());
    const script = join(dir.path, 'stalling-worker.cjs');
    await writeFile(
      script,
      [
        "const { parentPort } = require('node:worker_threads');",
        "parentPort.on('message', (message) => { if (message.type === 'respond' && message.body.includes('STALL-WORKER')) for (;;); });",
        `require(${JSON.stringify(SCRIPT)});`,
      ].join('\n'),
    );
    const client = new WorkerModelClient(modelWorker(script, 300), settings(server.url));

    const error = await client.respond(request('STALL-WORKER'), { signal: signal() }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LocalError);
    expect(error).toMatchObject({ code: LocalErrorCode.Unavailable });
    expect((error as Error).message).toContain('model worker thread stopped (it answered nothing for 300 ms)');

    const next = await client.respond(request('after the stall'), { signal: signal() });
    expect(texts(next.output)).toEqual(['new worker']);
  });
});
