// The model client against the scripted fake Responses server (the real SSE wire format over
// HTTP on 127.0.0.1), or a raw HTTP server on 127.0.0.1 answering with a given stream.

import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { jest } from '@jest/globals';
import { ModelClient } from '../../../src/model/client.js';
import type { ModelClientOptions, ModelRequest } from '../../../src/model/client.js';
import { ModelApiError, ModelConnectionError, ModelStreamError } from '../../../src/model/errors.js';
import { HttpExchange } from '../../../src/model/http-exchange.js';
import { messageText } from '../../../src/protocol/responses.js';
import type { CustomToolSpec, FunctionToolSpec, ResponseInputItem, ResponseOutputItem } from '../../../src/protocol/responses.js';
import { deferred } from '../../../src/util/deferred.js';
import { LocalError } from '../../../src/util/errors.js';
import { startFakeResponsesServer } from '../../../tools/fake-responses-server.js';
import type { FakeResponsesOptions, FakeResponsesServer } from '../../../tools/fake-responses-server.js';
import { startRawHttpServer } from '../../helpers/raw-http.js';

const API_KEY = 'sk-test-secret-key';
const cleanups: (() => Promise<void>)[] = [];

async function start(options: FakeResponsesOptions): Promise<FakeResponsesServer> {
  const server = await startFakeResponsesServer(options);
  cleanups.push(() => server.close());
  return server;
}

afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

/** A sleep that returns at once and records the delays it was asked for. */
function noWaitSleep(): jest.Mock<(ms: number, signal: AbortSignal) => Promise<void>> {
  return jest.fn((_ms: number, _signal: AbortSignal) => Promise.resolve());
}

function makeClient(baseUrl: string, options: Partial<ModelClientOptions> = {}): ModelClient {
  return new ModelClient({ baseUrl, apiKey: API_KEY, sleep: noWaitSleep(), ...options });
}

function simpleRequest(text = 'hi'): ModelRequest {
  return {
    model: 'gpt-test',
    input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text }] }],
    tools: [],
    parallelToolCalls: true,
  };
}

const signal = (): AbortSignal => new AbortController().signal;

function outputOf<T extends ResponseOutputItem['type']>(items: ResponseOutputItem[], type: T): Extract<ResponseOutputItem, { type: T }>[] {
  return items.filter((item): item is Extract<ResponseOutputItem, { type: T }> => item.type === type);
}

/** A raw HTTP server on 127.0.0.1 (closed after the test): `handle` answers each request; resolves with its base URL (`…/v1`). */
async function rawServer(handle: Parameters<typeof startRawHttpServer>[0]): Promise<string> {
  const server = await startRawHttpServer(handle);
  cleanups.push(() => server.close());
  return server.url;
}

/** A server that answers every request with `text` as an event stream, counting the requests. */
function textServer(text: string, calls: { count: number }): Promise<string> {
  return rawServer((_req, res) => {
    calls.count++;
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end(text);
  });
}

/** A server that answers every request with one SSE stream of `events`, counting the requests. */
function sseServer(events: Record<string, unknown>[], calls: { count: number }): Promise<string> {
  return textServer(events.map((event) => `event: ${String(event['type'])}\ndata: ${JSON.stringify(event)}\n\n`).join(''), calls);
}

/**
 * A TCP relay in front of the fake server, so a test can see a connection close on the server
 * side: `closed` resolves when a client connection ends, and the relay then ends the upstream one.
 */
async function startRelay(target: string): Promise<{ url: string; closed: Promise<void>; connections: () => number }> {
  const { hostname, port } = new URL(target);
  const closed = deferred<void>();
  const sockets = new Set<Socket>();
  let connections = 0;
  const relay: Server = createServer((client) => {
    connections++;
    const upstream = connect(Number(port), hostname);
    sockets.add(client).add(upstream);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => {
      upstream.destroy();
      closed.resolve();
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        relay.close(() => resolve());
      }),
  );
  const address = relay.address();
  if (address === null || typeof address === 'string') throw new Error('relay has no TCP address');
  return { url: `http://127.0.0.1:${address.port}/v1`, closed: closed.promise, connections: () => connections };
}

describe('ModelClient', () => {
  it('returns a text response and streams its deltas', async () => {
    const text = 'Hello from the scripted model, in several deltas.';
    const server = await start({ script: [{ kind: 'output', items: [{ type: 'message', text }] }] });
    const deltas: string[] = [];

    const response = await makeClient(server.url).respond(simpleRequest(), {
      signal: signal(),
      onTextDelta: (delta) => deltas.push(delta),
    });

    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(text);
    expect(response.id).toMatch(/^resp_/);
    expect(response.output).toHaveLength(1);
    const [message] = outputOf(response.output, 'message');
    expect(message).toBeDefined();
    expect(messageText(message!)).toBe(text);
    expect(message!.role).toBe('assistant');
    expect(response.usage).toEqual({
      inputTokens: expect.any(Number),
      outputTokens: expect.any(Number),
      totalTokens: expect.any(Number),
    });
    expect(server.errors).toEqual([]);
  });

  it('returns function calls, custom tool calls and reasoning items in output order', async () => {
    const patch = '*** Begin Patch\n*** Add File: a.txt\n+hello\n*** End Patch\n';
    const server = await start({
      script: [
        {
          kind: 'output',
          items: [
            { type: 'reasoning', summary: 'Thinking about it.' },
            { type: 'function_call', name: 'exec_command', arguments: { cmd: 'ls -la' }, callId: 'call_exec' },
            { type: 'custom_tool_call', name: 'apply_patch', input: patch, callId: 'call_patch' },
          ],
        },
      ],
    });

    const response = await makeClient(server.url).respond(simpleRequest(), { signal: signal() });

    expect(response.output.map((item) => item.type)).toEqual(['reasoning', 'function_call', 'custom_tool_call']);
    const [reasoning] = outputOf(response.output, 'reasoning');
    expect(reasoning?.summary).toEqual([{ type: 'summary_text', text: 'Thinking about it.' }]);
    const [call] = outputOf(response.output, 'function_call');
    expect(call).toMatchObject({ call_id: 'call_exec', name: 'exec_command' });
    expect(JSON.parse(call!.arguments)).toEqual({ cmd: 'ls -la' });
    const [custom] = outputOf(response.output, 'custom_tool_call');
    expect(custom).toMatchObject({ call_id: 'call_patch', name: 'apply_patch', input: patch });
    expect(server.errors).toEqual([]);
  });

  it('sends the request envelope, tools and input items, and round-trips tool calls', async () => {
    const server = await start({
      script: [
        {
          kind: 'output',
          items: [
            { type: 'reasoning', summary: 'Plan.' },
            { type: 'function_call', name: 'exec_command', arguments: { cmd: 'pwd' }, callId: 'call_fn' },
            { type: 'custom_tool_call', name: 'apply_patch', input: '*** Begin Patch\n*** End Patch\n', callId: 'call_ct' },
          ],
        },
        { kind: 'output', items: [{ type: 'message', text: 'done' }] },
      ],
    });
    const client = makeClient(server.url);
    const execCommand: FunctionToolSpec = {
      type: 'function',
      name: 'exec_command',
      description: 'Runs a command.',
      strict: false,
      parameters: { type: 'object', properties: { cmd: { type: 'string' } }, required: ['cmd'], additionalProperties: false },
    };
    const applyPatch: CustomToolSpec = {
      type: 'custom',
      name: 'apply_patch',
      description: 'Applies a patch.',
      format: { type: 'grammar', syntax: 'lark', definition: 'start: "*** Begin Patch"' },
    };
    const history: ResponseInputItem[] = [
      { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'You are a coding agent.' }] },
      {
        type: 'message',
        role: 'user',
        content: [
          { type: 'input_text', text: 'Look at this.' },
          { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=' },
        ],
      },
    ];
    const request: ModelRequest = {
      model: 'gpt-test',
      input: history,
      tools: [execCommand, applyPatch],
      parallelToolCalls: false,
      reasoning: { effort: 'medium' },
      promptCacheKey: 'thread-1',
    };

    const first = await client.respond(request, { signal: signal() });

    // Pass the received items back as they came (unknown fields like `status` are not re-sent).
    const [reasoning] = outputOf(first.output, 'reasoning');
    const [call] = outputOf(first.output, 'function_call');
    const [custom] = outputOf(first.output, 'custom_tool_call');
    const next: ResponseInputItem[] = [
      ...history,
      reasoning!,
      call!,
      custom!,
      {
        type: 'function_call_output',
        call_id: 'call_fn',
        output: [
          { type: 'input_text', text: '/work' },
          { type: 'input_image', image_url: 'data:image/png;base64,AAAA' },
        ],
      },
      { type: 'custom_tool_call_output', call_id: 'call_ct', output: 'Success.' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Applied.' }] },
      { type: 'function_call_output', call_id: 'call_other', output: 'plain text' },
    ];
    await client.respond({ ...request, input: next }, { signal: signal() });

    expect(server.requests).toHaveLength(2);
    const [firstRequest, secondRequest] = server.requests;
    expect(firstRequest?.method).toBe('POST');
    expect(firstRequest?.path).toBe('/v1/responses');
    expect(firstRequest?.body).toEqual({
      model: 'gpt-test',
      input: history,
      tools: [execCommand, applyPatch],
      tool_choice: 'auto',
      parallel_tool_calls: false,
      reasoning: { effort: 'medium' },
      store: false,
      stream: true,
      include: ['reasoning.encrypted_content'],
      prompt_cache_key: 'thread-1',
    });
    expect(secondRequest?.body).toMatchObject({ model: 'gpt-test', stream: true, store: false });
    const sent = (secondRequest?.body as { input: unknown[] }).input;
    expect(sent.slice(2)).toEqual([
      { type: 'reasoning', id: reasoning!.id, summary: [{ type: 'summary_text', text: 'Plan.' }] },
      { type: 'function_call', id: call!.id, call_id: 'call_fn', name: 'exec_command', arguments: '{"cmd":"pwd"}' },
      { type: 'custom_tool_call', id: custom!.id, call_id: 'call_ct', name: 'apply_patch', input: '*** Begin Patch\n*** End Patch\n' },
      {
        type: 'function_call_output',
        call_id: 'call_fn',
        output: [
          { type: 'input_text', text: '/work' },
          { type: 'input_image', image_url: 'data:image/png;base64,AAAA' },
        ],
      },
      { type: 'custom_tool_call_output', call_id: 'call_ct', output: 'Success.' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Applied.' }] },
      { type: 'function_call_output', call_id: 'call_other', output: 'plain text' },
    ]);
    expect(server.errors).toEqual([]);
  });

  it('leaves out reasoning, include and prompt_cache_key when not asked for', async () => {
    const server = await start({ script: [{ kind: 'output', items: [{ type: 'message', text: 'ok' }] }] });

    await makeClient(server.url).respond(simpleRequest(), { signal: signal() });

    const body = server.requests[0]?.body;
    expect(body).not.toHaveProperty('reasoning');
    expect(body).not.toHaveProperty('include');
    expect(body).not.toHaveProperty('prompt_cache_key');
  });

  it('rejects an input that does not match the schema before sending anything', async () => {
    const server = await start({ script: [] });
    const request = simpleRequest();
    // Built as unknown data would be; the client must not trust it.
    const bad: unknown = { type: 'function_call_output', output: 'no call id' };
    const input = [bad] as ResponseInputItem[];

    await expect(makeClient(server.url).respond({ ...request, input }, { signal: signal() })).rejects.toBeInstanceOf(LocalError);
    expect(server.requests).toHaveLength(0);
  });

  it('retries a 500 and then succeeds', async () => {
    const server = await start({
      script: [
        { kind: 'http-error', status: 500 },
        { kind: 'output', items: [{ type: 'message', text: 'after retry' }] },
      ],
    });
    const sleep = noWaitSleep();
    const retries: [number, Error, number][] = [];

    const response = await makeClient(server.url, { sleep }).respond(simpleRequest(), {
      signal: signal(),
      onRetry: (attempt, error, delayMs) => retries.push([attempt, error, delayMs]),
    });

    expect(messageText(outputOf(response.output, 'message')[0]!)).toBe('after retry');
    expect(server.requests).toHaveLength(2);
    expect(sleep).toHaveBeenCalledTimes(1);
    expect(retries).toHaveLength(1);
    const [attempt, error, delayMs] = retries[0]!;
    expect(attempt).toBe(1);
    expect(error).toBeInstanceOf(ModelApiError);
    expect((error as ModelApiError).status).toBe(500);
    expect(sleep.mock.calls[0]?.[0]).toBe(delayMs);
    expect(delayMs).toBeGreaterThan(0);
    expect(delayMs).toBeLessThanOrEqual(10_000);
    // Each attempt may be sent twice by the exchange (a kept-alive connection found closed), and a retry is a new request.
    const keys = server.requests.map((request) => request.headers['idempotency-key']);
    expect(keys).toEqual([expect.stringMatching(/^[0-9a-f-]{36}$/), expect.stringMatching(/^[0-9a-f-]{36}$/)]);
    expect(keys[0]).not.toBe(keys[1]);
  });

  it('honours retry-after-ms on a 429', async () => {
    const server = await start({
      script: [
        { kind: 'http-error', status: 429, headers: { 'retry-after-ms': '1234' } },
        { kind: 'output', items: [{ type: 'message', text: 'ok' }] },
      ],
    });
    const sleep = noWaitSleep();

    await makeClient(server.url, { sleep }).respond(simpleRequest(), { signal: signal() });

    expect(sleep).toHaveBeenCalledTimes(1);
    expect(sleep.mock.calls[0]?.[0]).toBe(1234);
    expect(server.requests).toHaveLength(2);
  });

  it('honours retry-after (seconds) on a 503', async () => {
    const server = await start({
      script: [
        { kind: 'http-error', status: 503, headers: { 'retry-after': '2' } },
        { kind: 'output', items: [{ type: 'message', text: 'ok' }] },
      ],
    });
    const sleep = noWaitSleep();

    await makeClient(server.url, { sleep }).respond(simpleRequest(), { signal: signal() });

    expect(sleep.mock.calls[0]?.[0]).toBe(2000);
  });

  it('gives up after maxRetries with a ModelApiError carrying the status', async () => {
    const server = await start({ respond: () => ({ kind: 'http-error', status: 502 }) });
    const sleep = noWaitSleep();

    // random() = 0.5 puts the jitter factor at exactly 1: delays are 200 ms, then 400 ms.
    const failure = makeClient(server.url, { sleep, maxRetries: 2, random: () => 0.5 }).respond(simpleRequest(), {
      signal: signal(),
    });

    await expect(failure).rejects.toBeInstanceOf(ModelApiError);
    await expect(failure).rejects.toMatchObject({ status: 502, retryable: true });
    expect(server.requests).toHaveLength(3);
    expect(sleep).toHaveBeenCalledTimes(2);
    expect(sleep.mock.calls.map(([ms]) => ms)).toEqual([200, 400]);
  });

  it('does not retry a 400 and reports status, API message and base URL, never the key', async () => {
    const server = await start({
      script: [
        {
          kind: 'http-error',
          status: 400,
          body: { error: { message: 'Unsupported parameter: foo.', type: 'invalid_request_error', code: 'unsupported_parameter' } },
          headers: { 'x-request-id': 'req_abc' },
        },
      ],
    });
    const sleep = noWaitSleep();

    const error = await makeClient(server.url, { sleep })
      .respond(simpleRequest(), { signal: signal() })
      .then(
        () => undefined,
        (e: unknown) => e,
      );

    expect(error).toBeInstanceOf(ModelApiError);
    const apiError = error as ModelApiError;
    expect(apiError).toMatchObject({
      status: 400,
      code: 'unsupported_parameter',
      type: 'invalid_request_error',
      apiMessage: 'Unsupported parameter: foo.',
      requestId: 'req_abc',
      retryable: false,
    });
    expect(apiError.message).toContain('400');
    expect(apiError.message).toContain('Unsupported parameter: foo.');
    expect(apiError.message).toContain(server.url);
    expect(apiError.message).not.toContain(API_KEY);
    expect(server.requests).toHaveLength(1);
    expect(sleep).not.toHaveBeenCalled();
  });

  it.each([401, 403, 404])('does not retry a %i', async (status) => {
    const server = await start({ script: [{ kind: 'http-error', status }] });

    await expect(makeClient(server.url).respond(simpleRequest(), { signal: signal() })).rejects.toMatchObject({
      name: 'ModelApiError',
      status,
      retryable: false,
    });
    expect(server.requests).toHaveLength(1);
  });

  it('keeps a non-JSON error body as the API message', async () => {
    const server = await start({ script: [{ kind: 'http-error', status: 418, body: 'I am a teapot' }] });

    await expect(makeClient(server.url).respond(simpleRequest(), { signal: signal() })).rejects.toMatchObject({
      status: 418,
      apiMessage: 'I am a teapot',
    });
  });

  it('retries a dropped stream and then succeeds', async () => {
    const server = await start({
      script: [
        { kind: 'drop', afterItems: 1 },
        { kind: 'output', items: [{ type: 'message', text: 'second time lucky' }] },
      ],
    });
    const retries: Error[] = [];

    const response = await makeClient(server.url).respond(simpleRequest(), {
      signal: signal(),
      onRetry: (_attempt, error) => retries.push(error),
    });

    expect(messageText(outputOf(response.output, 'message')[0]!)).toBe('second time lucky');
    expect(response.output).toHaveLength(1);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toBeInstanceOf(ModelStreamError);
    expect(retries[0]).toMatchObject({ reason: 'dropped', retryable: true });
    expect(server.requests).toHaveLength(2);
  });

  it('gives up on a stream that keeps dropping after streamMaxRetries', async () => {
    const server = await start({ respond: () => ({ kind: 'drop' }) });

    await expect(makeClient(server.url, { streamMaxRetries: 2 }).respond(simpleRequest(), { signal: signal() })).rejects.toMatchObject({
      name: 'ModelStreamError',
      reason: 'dropped',
    });
    expect(server.requests).toHaveLength(3);
  });

  it('turns response.failed into a ModelStreamError (server_error is retried, then reported)', async () => {
    const server = await start({ respond: () => ({ kind: 'failed', message: 'The model exploded.' }) });
    const sleep = noWaitSleep();

    const error = await makeClient(server.url, { sleep, streamMaxRetries: 1 })
      .respond(simpleRequest(), { signal: signal() })
      .then(
        () => undefined,
        (e: unknown) => e,
      );

    expect(error).toBeInstanceOf(ModelStreamError);
    expect(error).toMatchObject({ reason: 'failed', code: 'server_error', retryable: true });
    expect((error as Error).message).toContain('The model exploded.');
    expect(server.requests).toHaveLength(2);
  });

  it('does not retry response.failed with a non-retryable code', async () => {
    const calls = { count: 0 };
    const client = makeClient(
      await sseServer(
        [
          { type: 'response.created', sequence_number: 0, response: { id: 'resp_x' } },
          {
            type: 'response.failed',
            sequence_number: 1,
            response: { id: 'resp_x', status: 'failed', error: { code: 'invalid_prompt', message: 'Prompt flagged.' } },
          },
        ],
        calls,
      ),
    );

    await expect(client.respond(simpleRequest(), { signal: signal() })).rejects.toMatchObject({
      name: 'ModelStreamError',
      reason: 'failed',
      code: 'invalid_prompt',
      responseId: 'resp_x',
      retryable: false,
    });
    expect(calls.count).toBe(1);
  });

  it('takes the output of response.completed when present, keeping unknown item types', async () => {
    const calls = { count: 0 };
    const client = makeClient(
      await sseServer(
        [
          { type: 'response.output_text.delta', sequence_number: 0, delta: 'Hi' },
          {
            type: 'response.completed',
            sequence_number: 1,
            response: {
              id: 'resp_y',
              output: [
                { type: 'image_generation_call', id: 'ig_1', status: 'completed' },
                { type: 'message', id: 'msg_1', role: 'assistant', content: [{ type: 'output_text', text: 'Hi', annotations: [] }] },
              ],
              usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 },
            },
          },
        ],
        calls,
      ),
    );

    const response = await client.respond(simpleRequest(), { signal: signal() });

    expect(response.id).toBe('resp_y');
    expect(response.usage).toEqual({ inputTokens: 3, outputTokens: 1, totalTokens: 4 });
    expect(response.output[0]).toEqual({ type: 'unknown', item: { type: 'image_generation_call', id: 'ig_1', status: 'completed' } });
    expect(response.output[1]).toMatchObject({ type: 'message', id: 'msg_1' });
  });

  it('answers at once when a stream stays open after response.completed, and aborts it after a grace period', async () => {
    const completed = { type: 'response.completed', sequence_number: 0, response: { id: 'resp_open', output: [] } };
    const closed = deferred<void>();
    const url = await rawServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' }).write(`event: response.completed\ndata: ${JSON.stringify(completed)}\n\n`);
      res.once('close', () => closed.resolve());
    });

    const response = await makeClient(url).respond(simpleRequest(), { signal: signal() });

    expect(response.id).toBe('resp_open');
    // The client closes the connection of the stream that never ends.
    await closed.promise;
  });

  it('turns an error event into a ModelStreamError with its code', async () => {
    const calls = { count: 0 };
    const client = makeClient(await sseServer([{ type: 'error', sequence_number: 0, code: 'invalid_prompt', message: 'Prompt flagged.' }], calls));

    const error = await client.respond(simpleRequest(), { signal: signal() }).then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(error).toMatchObject({ name: 'ModelStreamError', reason: 'error', code: 'invalid_prompt', retryable: false });
    expect((error as Error).message).toContain('Prompt flagged.');
    expect(calls.count).toBe(1);
  });

  it('reads an event carrying an `error` object as a stream error, and retries a retryable code', async () => {
    const calls = { count: 0 };
    const client = makeClient(await sseServer([{ type: 'error', error: { type: 'tokens', code: 'rate_limit_exceeded', message: 'Slow down.' } }], calls), {
      streamMaxRetries: 1,
    });

    await expect(client.respond(simpleRequest(), { signal: signal() })).rejects.toMatchObject({
      name: 'ModelStreamError',
      reason: 'error',
      code: 'rate_limit_exceeded',
      retryable: true,
      message: expect.stringContaining('Slow down.'),
    });
    expect(calls.count).toBe(2);
  });

  it('rejects an event that is not JSON without retrying', async () => {
    const calls = { count: 0 };
    const url = await textServer('event: response.created\ndata: {not json\n\n', calls);

    await expect(makeClient(url).respond(simpleRequest(), { signal: signal() })).rejects.toMatchObject({
      name: 'ModelStreamError',
      reason: 'invalid',
      retryable: false,
    });
    expect(calls.count).toBe(1);
  });

  it('skips named events it does not act on without parsing them, and parses unnamed ones', async () => {
    const completed = { type: 'response.completed', sequence_number: 2, response: { id: 'resp_z', output: [] } };
    const text = [
      'event: response.in_progress\ndata: {not json, and never parsed}\n\n',
      `data: ${JSON.stringify({ type: 'response.output_text.delta', sequence_number: 1, delta: 'unnamed' })}\n\n`,
      `event: response.completed\ndata: ${JSON.stringify(completed)}\n\n`,
    ].join('');
    const deltas: string[] = [];
    const url = await textServer(text, { count: 0 });

    const response = await makeClient(url).respond(simpleRequest(), { signal: signal(), onTextDelta: (delta) => deltas.push(delta) });

    expect(response.id).toBe('resp_z');
    expect(deltas).toEqual(['unnamed']);
  });

  it('rejects a malformed function_call item without retrying', async () => {
    const calls = { count: 0 };
    const client = makeClient(await sseServer([{ type: 'response.output_item.done', sequence_number: 0, output_index: 0, item: { type: 'function_call', name: 'x' } }], calls));

    await expect(client.respond(simpleRequest(), { signal: signal() })).rejects.toMatchObject({
      name: 'ModelStreamError',
      reason: 'invalid',
      retryable: false,
    });
    expect(calls.count).toBe(1);
  });

  it('lets an exception from onTextDelta through without retrying', async () => {
    const server = await start({ respond: () => ({ kind: 'output', items: [{ type: 'message', text: 'some text' }] }) });
    const thrown = new Error('consumer failed');

    await expect(
      makeClient(server.url).respond(simpleRequest(), {
        signal: signal(),
        onTextDelta: () => {
          throw thrown;
        },
      }),
    ).rejects.toBe(thrown);
    expect(server.requests).toHaveLength(1);
  });

  it('aborting while the server holds the answer rejects with the reason and closes the connection', async () => {
    const never = deferred<void>();
    const server = await start({
      script: [{ kind: 'hold', release: never.promise, then: { kind: 'output', items: [{ type: 'message', text: 'late' }] } }],
    });
    const relay = await startRelay(server.url);
    const controller = new AbortController();
    const reason = new Error('user pressed stop');

    const pending = makeClient(relay.url).respond(simpleRequest(), { signal: controller.signal });
    await server.waitForRequests(1);
    controller.abort(reason);

    await expect(pending).rejects.toBe(reason);
    await relay.closed;
    expect(server.requests).toHaveLength(1);
  });

  it('reuses one connection for consecutive requests (a completed stream is not aborted)', async () => {
    const server = await start({ respond: () => ({ kind: 'output', items: [{ type: 'message', text: 'again' }] }) });
    const relay = await startRelay(server.url);
    const client = makeClient(relay.url, { http: new HttpExchange() });

    for (let i = 0; i < 5; i++) {
      const response = await client.respond(simpleRequest(`turn ${i}`), { signal: signal() });
      expect(messageText(outputOf(response.output, 'message')[0]!)).toBe('again');
    }
    // The end of the last stream is read in the background; a request reusing the connection proves it was.
    await client.respond(simpleRequest('last'), { signal: signal() });

    expect(server.requests).toHaveLength(6);
    expect(relay.connections()).toBe(1);
  });

  it('rejects at once with the reason when the signal is already aborted', async () => {
    const server = await start({ script: [] });
    const controller = new AbortController();
    const reason = new Error('already stopped');
    controller.abort(reason);

    await expect(makeClient(server.url).respond(simpleRequest(), { signal: controller.signal })).rejects.toBe(reason);
    expect(server.requests).toHaveLength(0);
  });

  it('aborting during the backoff wait rejects with the reason', async () => {
    const server = await start({ respond: () => ({ kind: 'http-error', status: 500 }) });
    const controller = new AbortController();
    const reason = new Error('stop retrying');
    const sleep = jest.fn((_ms: number, _signal: AbortSignal) => {
      controller.abort(reason);
      return Promise.reject(reason);
    });

    await expect(makeClient(server.url, { sleep }).respond(simpleRequest(), { signal: controller.signal })).rejects.toBe(reason);
    expect(server.requests).toHaveLength(1);
  });

  it('treats a silent server as a dropped stream and retries', async () => {
    const never = deferred<void>();
    const server = await start({
      respond: (_request, index) =>
        index === 0 ? { kind: 'hold', release: never.promise, then: { kind: 'output', items: [] } } : { kind: 'output', items: [{ type: 'message', text: 'awake' }] },
    });
    const retries: Error[] = [];

    const response = await makeClient(server.url, { idleTimeoutMs: 500 }).respond(simpleRequest(), {
      signal: signal(),
      onRetry: (_attempt, error) => retries.push(error),
    });

    expect(messageText(outputOf(response.output, 'message')[0]!)).toBe('awake');
    expect(retries[0]).toMatchObject({ name: 'ModelStreamError', reason: 'idle-timeout', retryable: true });
  });

  it('retries connection failures, then reports a ModelConnectionError', async () => {
    const closed = await startFakeResponsesServer({ script: [] });
    await closed.close();
    const sleep = noWaitSleep();

    const error = await makeClient(closed.url, { sleep, maxRetries: 1 })
      .respond(simpleRequest(), { signal: signal() })
      .then(
        () => undefined,
        (e: unknown) => e,
      );

    expect(error).toBeInstanceOf(ModelConnectionError);
    expect((error as Error).message).toContain(closed.url);
    expect(sleep).toHaveBeenCalledTimes(1);
  });

  it('sends extra headers, query parameters and the bearer key', async () => {
    const server = await start({ script: [{ kind: 'output', items: [] }] });

    await makeClient(server.url, {
      headers: { 'X-Custom-Header': 'custom-value' },
      queryParams: { 'api-version': '2025-04-01' },
    }).respond(simpleRequest(), { signal: signal() });

    const recorded = server.requests[0];
    expect(recorded?.path).toBe('/v1/responses');
    expect(new URL(recorded!.url, server.url).searchParams.get('api-version')).toBe('2025-04-01');
    expect(recorded?.headers['x-custom-header']).toBe('custom-value');
    expect(recorded?.headers['authorization']).toBe(`Bearer ${API_KEY}`);
  });

  it('sends the request without an Authorization header when there is no key', async () => {
    const server = await start({ script: [{ kind: 'output', items: [{ type: 'message', text: 'local' }] }] });

    const response = await makeClient(server.url, { apiKey: undefined }).respond(simpleRequest(), { signal: signal() });

    expect(messageText(outputOf(response.output, 'message')[0]!)).toBe('local');
    expect(server.requests[0]?.headers).not.toHaveProperty('authorization');
  });
});
