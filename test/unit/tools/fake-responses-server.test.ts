// The fake model server, driven by the real `openai` SDK: an independent reader of the wire format
// (the model client reads it itself), so the fake cannot drift into a dialect only we accept.

import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { APIError, OpenAI } from 'openai';
import type { ResponseStreamEvent } from 'openai/resources/responses/responses';
import { deferred } from '../../../src/util/deferred.js';
import { functionCallOutputs, inputItems, parseFakeScript, startFakeResponsesServer, toolNames } from '../../../tools/fake-responses-server.js';
import type { FakeResponsesOptions, FakeResponsesServer } from '../../../tools/fake-responses-server.js';

const servers: FakeResponsesServer[] = [];

async function start(options: FakeResponsesOptions): Promise<FakeResponsesServer> {
  const server = await startFakeResponsesServer(options);
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function client(server: FakeResponsesServer, maxRetries = 0): OpenAI {
  return new OpenAI({ apiKey: 'test', baseURL: server.url, maxRetries });
}

async function collect(events: AsyncIterable<ResponseStreamEvent>): Promise<ResponseStreamEvent[]> {
  const seen: ResponseStreamEvent[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

async function run(openai: OpenAI, input: string): Promise<ResponseStreamEvent[]> {
  return collect(await openai.responses.create({ model: 'gpt-5.5', input, stream: true }));
}

function completed(events: ResponseStreamEvent[]): Extract<ResponseStreamEvent, { type: 'response.completed' }> {
  const last = events[events.length - 1];
  if (last?.type !== 'response.completed') throw new Error(`stream ended with ${last?.type ?? 'nothing'}`);
  return last;
}

describe('fake Responses server, through the openai SDK', () => {
  it('streams a text message as deltas and completes with the full output', async () => {
    const text = 'Hello from the scripted model, in several deltas.';
    const server = await start({ script: [{ kind: 'output', items: [{ type: 'message', text }] }] });

    const events = await run(client(server), 'hi');

    expect(events.map((e) => e.type).slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    const deltas = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []));
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(text);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));

    const done = completed(events).response;
    expect(done.status).toBe('completed');
    expect(done.model).toBe('gpt-5.5');
    expect(done.id).toMatch(/^resp_/);
    expect(done.output).toEqual([
      {
        id: expect.stringMatching(/^msg_/) as unknown,
        type: 'message',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
      },
    ]);
    expect(done.usage?.total_tokens).toBe((done.usage?.input_tokens ?? 0) + (done.usage?.output_tokens ?? 0));
    expect(server.errors).toEqual([]);
  });

  it('round-trips a function call and records the tool output sent back', async () => {
    const server = await start({
      script: [
        { kind: 'output', items: [{ type: 'function_call', name: 'exec_command', arguments: { cmd: 'echo hi' } }] },
        { kind: 'output', items: [{ type: 'message', text: 'done' }] },
      ],
    });
    const openai = client(server);
    const tools = [
      {
        type: 'function' as const,
        name: 'exec_command',
        parameters: { type: 'object', properties: { cmd: { type: 'string' } }, required: ['cmd'] },
        strict: false,
      },
      { type: 'custom' as const, name: 'apply_patch' },
    ];

    const first = await collect(await openai.responses.create({ model: 'gpt-5.5', input: 'run it', tools, stream: true }));
    const argDeltas = first.flatMap((e) => (e.type === 'response.function_call_arguments.delta' ? [e.delta] : []));
    expect(argDeltas.join('')).toBe('{"cmd":"echo hi"}');
    const call = completed(first).response.output[0];
    if (call?.type !== 'function_call') throw new Error(`expected a function_call, got ${call?.type}`);
    expect(call).toMatchObject({ call_id: 'call_1', name: 'exec_command', arguments: '{"cmd":"echo hi"}', status: 'completed' });

    const second = await collect(
      await openai.responses.create({
        model: 'gpt-5.5',
        tools,
        stream: true,
        input: [
          { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
          { type: 'function_call_output', call_id: call.call_id, output: 'hi\n' },
        ],
      }),
    );
    expect(completed(second).response.output[0]).toMatchObject({ type: 'message' });

    await server.waitForRequests(2);
    const [req1, req2] = server.requests;
    expect(toolNames(req1!)).toEqual(['exec_command', 'apply_patch']);
    expect(inputItems(req1!)).toEqual([{ type: 'message', role: 'user', content: 'run it' }]);
    expect(functionCallOutputs(req1!)).toEqual([]);
    expect(functionCallOutputs(req2!)).toEqual([{ callId: 'call_1', output: 'hi\n' }]);
    expect(server.errors).toEqual([]);
  });

  it('streams a custom tool call with its raw input', async () => {
    const patch = '*** Begin Patch\n*** Add File: a.txt\n+hello\n*** End Patch\n';
    const server = await start({
      script: [{ kind: 'output', items: [{ type: 'custom_tool_call', name: 'apply_patch', input: patch, callId: 'call_patch' }] }],
    });

    const events = await run(client(server), 'patch it');

    const inputDeltas = events.flatMap((e) => (e.type === 'response.custom_tool_call_input.delta' ? [e.delta] : []));
    expect(inputDeltas.join('')).toBe(patch);
    const doneEvent = events.find((e) => e.type === 'response.custom_tool_call_input.done');
    expect(doneEvent).toMatchObject({ input: patch });
    expect(completed(events).response.output).toEqual([
      {
        id: expect.stringMatching(/^ctc_/) as unknown,
        type: 'custom_tool_call',
        status: 'completed',
        call_id: 'call_patch',
        name: 'apply_patch',
        input: patch,
      },
    ]);
  });

  it('streams a reasoning item with its summary', async () => {
    const server = await start({
      script: [
        {
          kind: 'output',
          items: [
            { type: 'reasoning', summary: 'Thinking it over.' },
            { type: 'message', text: 'ok' },
          ],
        },
      ],
    });

    const events = await run(client(server), 'hi');

    const summary = events.flatMap((e) => (e.type === 'response.reasoning_summary_text.delta' ? [e.delta] : []));
    expect(summary.join('')).toBe('Thinking it over.');
    expect(completed(events).response.output[0]).toMatchObject({
      type: 'reasoning',
      summary: [{ type: 'summary_text', text: 'Thinking it over.' }],
    });
  });

  it('answers an http-error step with an API-style JSON error', async () => {
    const server = await start({ script: [{ kind: 'http-error', status: 500 }] });

    const error: unknown = await run(client(server), 'hi').then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(APIError);
    if (!(error instanceof APIError)) return;
    expect(error.status).toBe(500);
    expect(error.type).toBe('server_error');
    expect(server.requests).toHaveLength(1);
  });

  it('lets the SDK retry a 429 that carries retry-after-ms', async () => {
    const server = await start({
      script: [
        { kind: 'http-error', status: 429, headers: { 'retry-after-ms': '1' } },
        { kind: 'output', items: [{ type: 'message', text: 'after retry' }] },
      ],
    });

    const events = await run(client(server, 1), 'hi');

    expect(completed(events).response.output[0]).toMatchObject({ content: [{ text: 'after retry' }] });
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['POST /v1/responses', 'POST /v1/responses']);
  });

  it('drops the connection mid-stream without response.completed', async () => {
    const server = await start({
      script: [{ kind: 'drop', afterItems: 1, items: [{ type: 'message', text: 'partial answer' }] }],
    });
    const seen: ResponseStreamEvent[] = [];

    const consume = async (): Promise<void> => {
      const events = await client(server).responses.create({ model: 'gpt-5.5', input: 'hi', stream: true });
      for await (const event of events) seen.push(event);
    };

    await expect(consume()).rejects.toThrow();
    expect(seen.map((e) => e.type)).toContain('response.output_item.done');
    expect(seen.map((e) => e.type)).not.toContain('response.completed');
  });

  it('ends a failed step with response.failed', async () => {
    const server = await start({ script: [{ kind: 'failed', message: 'model overloaded' }] });

    const events = await run(client(server), 'hi');

    const last = events[events.length - 1];
    expect(last?.type).toBe('response.failed');
    if (last?.type !== 'response.failed') return;
    expect(last.response.status).toBe('failed');
    expect(last.response.error).toEqual({ code: 'server_error', message: 'model overloaded' });
  });

  it('answers a non-streaming request with the final response object', async () => {
    const server = await start({ script: [{ kind: 'output', items: [{ type: 'message', text: 'plain' }] }] });

    const response = await client(server).responses.create({ model: 'gpt-5.5', input: 'hi' });

    expect(response.output_text).toBe('plain');
    expect(response.status).toBe('completed');
  });

  it('answers "script exhausted" and records an error once the script runs out', async () => {
    const server = await start({ script: [] });

    const events = await run(client(server), 'hi');

    expect(completed(events).response.output[0]).toMatchObject({ content: [{ text: 'script exhausted' }] });
    expect(server.errors).toHaveLength(1);
    expect(server.errors[0]).toContain('script exhausted');
  });

  it('holds an answer until released while other requests are answered (respond mode)', async () => {
    const release = deferred<void>();
    const server = await start({
      respond: (request, index) => {
        const said = JSON.stringify(inputItems(request));
        const text = `answer ${index} to ${said.includes('first') ? 'first' : 'second'}`;
        const output = { kind: 'output' as const, items: [{ type: 'message' as const, text }] };
        return said.includes('first') ? { kind: 'hold', release: release.promise, then: output } : output;
      },
    });
    const openai = client(server);
    let firstSettled = false;

    const first = run(openai, 'first').finally(() => {
      firstSettled = true;
    });
    await server.waitForRequests(1);
    const second = await run(openai, 'second');

    expect(completed(second).response.output[0]).toMatchObject({ content: [{ text: 'answer 1 to second' }] });
    expect(firstSettled).toBe(false);
    release.resolve();
    expect(completed(await first).response.output[0]).toMatchObject({ content: [{ text: 'answer 0 to first' }] });
    expect(server.errors).toEqual([]);
  });

  it('answers 500 and records an error when respond() throws', async () => {
    const server = await start({
      respond: () => {
        throw new Error('no step for this');
      },
    });

    await expect(run(client(server), 'hi')).rejects.toMatchObject({ status: 500 });
    expect(server.errors).toEqual([expect.stringContaining('no step for this')]);
  });

  it('records method, path, lowercased headers and the body of every request', async () => {
    const server = await start({ script: [{ kind: 'output', items: [{ type: 'message', text: 'ok' }] }] });

    await run(client(server), 'record me');

    const [request] = server.requests;
    expect(request).toMatchObject({ method: 'POST', path: '/v1/responses', url: '/v1/responses' });
    expect(request!.headers['authorization']).toBe('Bearer test');
    expect(request!.headers['content-type']).toContain('application/json');
    expect(request!.body).toMatchObject({ model: 'gpt-5.5', input: 'record me', stream: true });
    expect(JSON.parse(request!.rawBody)).toEqual(request!.body);
  });

  it('answers GET /v1/models with an empty list and unknown paths with 404, recording both', async () => {
    const server = await start({ script: [] });

    const models = await fetch(`${server.url}/models?client_version=0.169.0`);
    const unknown = await fetch(`${server.url}/nowhere`, { method: 'POST', body: '{}' });

    expect(models.status).toBe(200);
    expect(await models.json()).toMatchObject({ object: 'list', data: [] });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/models', 'POST /v1/nowhere']);
    expect(server.requests[0]!.url).toBe('/v1/models?client_version=0.169.0');
  });

  it('rejects a POST /v1/responses whose body is not JSON and records the error', async () => {
    const server = await start({ script: [{ kind: 'output', items: [] }] });

    const answer = await fetch(`${server.url}/responses`, { method: 'POST', body: 'not json' });

    expect(answer.status).toBe(400);
    expect(server.errors).toHaveLength(1);
    expect(server.requests[0]!.rawBody).toBe('not json');
  });
});

describe('fake Responses server lifecycle', () => {
  it('waitForRequests resolves at once when enough requests are already recorded', async () => {
    const server = await start({ script: [] });
    await fetch(`${server.url}/models`);

    await expect(server.waitForRequests(1)).resolves.toBeUndefined();
    await expect(server.waitForRequests(0)).resolves.toBeUndefined();
  });

  it('waitForRequests rejects with a clear message on timeout', async () => {
    const server = await start({ script: [] });
    await fetch(`${server.url}/models`);

    await expect(server.waitForRequests(2, 20)).rejects.toThrow(/waitForRequests\(2\) timed out after 20 ms with 1 request\(s\): \[GET \/v1\/models\]/);
  });

  it('waitForRequests rejects when the server closes, and close is idempotent', async () => {
    const server = await start({ script: [] });
    const waiting = server.waitForRequests(1);

    const closes = [server.close(), server.close()];

    await expect(waiting).rejects.toThrow(/server closed/);
    await Promise.all(closes);
    await server.close();
    await expect(server.waitForRequests(1)).rejects.toThrow(/closed/);
  });

  it('close ends a held request instead of waiting for it', async () => {
    const never = deferred<void>();
    const server = await start({
      script: [{ kind: 'hold', release: never.promise, then: { kind: 'output', items: [] } }],
    });
    const pending = run(client(server), 'hi');
    await server.waitForRequests(1);

    await server.close();

    await expect(pending).rejects.toThrow();
  });

  it('generates call ids unique per server', async () => {
    const call = { type: 'function_call' as const, name: 'f', arguments: '{}' };
    const server = await start({
      script: [
        { kind: 'output', items: [call, call] },
        { kind: 'output', items: [call] },
      ],
    });
    const openai = client(server);

    const outputs = [...completed(await run(openai, 'a')).response.output, ...completed(await run(openai, 'b')).response.output];

    const ids = outputs.map((item) => (item.type === 'function_call' ? item.call_id : ''));
    expect(ids).toEqual(['call_1', 'call_2', 'call_3']);
  });
});

describe('parseFakeScript', () => {
  it('accepts JSON steps and rejects unknown kinds and misspelt fields', () => {
    expect(parseFakeScript([{ kind: 'drop' }, { kind: 'failed', message: 'x' }])).toHaveLength(2);
    expect(() => parseFakeScript([{ kind: 'hold' }])).toThrow(/invalid fake responses script/);
    expect(() => parseFakeScript([{ kind: 'drop', afteritems: 1 }])).toThrow(/invalid fake responses script/);
  });
});

async function firstLine(input: NodeJS.ReadableStream): Promise<string> {
  const lines = createInterface({ input });
  for await (const line of lines) {
    lines.close();
    return line;
  }
  throw new Error('stdout ended before the first line');
}

describe('fake Responses server CLI', () => {
  it('prints the base URL first on stdout and serves the JSON script', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fake-responses-'));
    const scriptPath = join(dir, 'script.json');
    await writeFile(scriptPath, JSON.stringify([{ kind: 'output', items: [{ type: 'message', text: 'from the cli' }] }]));
    const child = spawn(process.execPath, ['--import', 'tsx', join(process.cwd(), 'tools/fake-responses-server.ts'), '--script', scriptPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const stderr: string[] = [];
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
    try {
      const url = await firstLine(child.stdout);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);

      const events = await collect(
        await new OpenAI({ apiKey: 'test', baseURL: url, maxRetries: 0 }).responses.create({
          model: 'gpt-5.5',
          input: 'hi',
          stream: true,
        }),
      );

      expect(completed(events).response.output[0]).toMatchObject({ content: [{ text: 'from the cli' }] });
    } finally {
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    }
    expect(stderr.join('')).toContain('POST /v1/responses #0');
  });
});
