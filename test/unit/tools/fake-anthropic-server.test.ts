// The fake Messages API on its own, over fetch. Its wire format is proven by the real Claude Code
// (test/interop/claude-code-client.test.ts); these pin the details that run does not reach: the
// JSON answer without `stream`, errors, unknown routes, an exhausted script, the test helpers.

import { offeredTools, parseFakeAnthropicScript, startFakeAnthropicServer, toolResults } from '../../../tools/fake-anthropic-server.js';
import type { FakeAnthropicOptions, FakeAnthropicServer } from '../../../tools/fake-anthropic-server.js';

const servers: FakeAnthropicServer[] = [];

async function start(options: FakeAnthropicOptions): Promise<FakeAnthropicServer> {
  const server = await startFakeAnthropicServer(options);
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

const request = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: 'claude-test',
  max_tokens: 1024,
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

function post(server: FakeAnthropicServer, path: string, body: unknown): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify(body) });
}

/** The `event:` names and `data:` objects of an SSE body, checking each event names its data's type. */
function sse(text: string): Record<string, unknown>[] {
  return text
    .split('\n\n')
    .filter((chunk) => chunk.trim().length > 0)
    .map((chunk) => {
      const [eventLine, dataLine] = chunk.split('\n');
      const data = JSON.parse(dataLine?.replace(/^data: /, '') ?? '') as Record<string, unknown>;
      expect(eventLine).toBe(`event: ${String(data['type'])}`);
      return data;
    });
}

describe('fake Anthropic Messages server', () => {
  it('streams a tool_use after a text block: block events in order, partial JSON that adds up, stop reason tool_use', async () => {
    const input = { prompt: 'write the marker', cwd: '/tmp/x', nested: { list: [1, 2, 3] } };
    const server = await start({ script: [{ kind: 'tool_use', name: 'mcp__s__codex', input, text: 'Calling the tool now.' }] });

    const response = await post(server, '/v1/messages?beta=true', request({ stream: true }));
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const events = sse(await response.text());

    const types = events.map((event) => event['type']);
    expect(types[0]).toBe('message_start');
    expect(types.slice(-2)).toEqual(['message_delta', 'message_stop']);
    expect(types.filter((type) => type === 'content_block_start')).toHaveLength(2);
    const deltas = events.flatMap((event) => (event['type'] === 'content_block_delta' ? [event['delta'] as Record<string, unknown>] : []));
    expect(deltas.flatMap((d) => (d['type'] === 'text_delta' ? [d['text']] : [])).join('')).toBe('Calling the tool now.');
    const partial = deltas.flatMap((d) => (d['type'] === 'input_json_delta' ? [d['partial_json']] : []));
    expect(partial.length).toBeGreaterThan(1);
    expect(JSON.parse(partial.join(''))).toEqual(input);
    const toolStart = events.find((event) => event['type'] === 'content_block_start' && event['index'] === 1);
    expect(toolStart?.['content_block']).toEqual({ type: 'tool_use', id: 'toolu_1', name: 'mcp__s__codex', input: {} });
    expect(events.at(-2)).toMatchObject({ delta: { stop_reason: 'tool_use' }, usage: { output_tokens: expect.any(Number) } });
    expect(server.errors).toEqual([]);
  });

  it('answers one JSON message without `stream`, and counts tokens', async () => {
    const server = await start({ script: [{ kind: 'text', text: 'plain answer' }] });

    const message = (await (await post(server, '/v1/messages', request())).json()) as Record<string, unknown>;
    expect(message).toMatchObject({ type: 'message', role: 'assistant', model: 'claude-test', content: [{ type: 'text', text: 'plain answer' }], stop_reason: 'end_turn' });

    const count = (await (await post(server, '/v1/messages/count_tokens', request())).json()) as Record<string, unknown>;
    expect(count['input_tokens']).toEqual(expect.any(Number));
    expect(server.messages).toHaveLength(1);
    expect(server.requests).toHaveLength(2);
    expect(server.errors).toEqual([]);
  });

  it('records an unknown route, a bad body and an exhausted script as errors, and answers each as the API would', async () => {
    const server = await start({ script: [{ kind: 'http-error', status: 529 }] });

    const overloaded = await post(server, '/v1/messages', request());
    expect(overloaded.status).toBe(529);
    expect(await overloaded.json()).toEqual({ type: 'error', error: { type: 'overloaded_error', message: expect.any(String) } });
    expect(server.errors).toEqual([]);

    expect((await post(server, '/v1/complete', {})).status).toBe(404);
    expect((await post(server, '/v1/messages', { model: 'claude-test' })).status).toBe(400);
    const exhausted = (await (await post(server, '/v1/messages', request())).json()) as Record<string, unknown>;
    expect(exhausted['content']).toEqual([{ type: 'text', text: 'script exhausted' }]);
    expect(server.errors).toEqual([
      'unexpected request POST /v1/complete',
      expect.stringContaining('request #1 is not a Messages request'),
      'script exhausted: request #2 has no step (script has 1)',
    ]);
  });

  it('reads tool results and offered tools out of a recorded request', async () => {
    const server = await start({ respond: () => ({ kind: 'text', text: 'ok' }) });
    await post(
      server,
      '/v1/messages',
      request({
        tools: [{ name: 'Bash', input_schema: {} }, { name: 'mcp__s__codex' }],
        messages: [
          { role: 'user', content: 'go' },
          { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_9', name: 'mcp__s__codex', input: {} }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_9', content: [{ type: 'text', text: '{"threadId":"t"}' }], is_error: false }] },
        ],
      }),
    );
    const recorded = server.messages[0]!;
    expect(offeredTools(recorded)).toEqual(['Bash', 'mcp__s__codex']);
    expect(toolResults(recorded)).toEqual([{ toolUseId: 'toolu_9', text: '{"threadId":"t"}', isError: false }]);
  });

  it('parses a JSON script and names what is wrong in a bad one', () => {
    expect(parseFakeAnthropicScript([{ kind: 'text', text: 'a' }])).toEqual([{ kind: 'text', text: 'a' }]);
    expect(() => parseFakeAnthropicScript([{ kind: 'tool_use', name: 'x', input: {}, extra: 1 }])).toThrow(/invalid fake Anthropic script[\s\S]*extra/);
  });
});
