// The MCP stdio transport over real streams: framing, the bound on one message (its id read
// without keeping the message), and the repairs of what the SDK would drop silently.
import { PassThrough } from 'node:stream';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { McpStdioTransport } from '../../../src/mcp/stdio-transport.js';
import { createLogger } from '../../../src/util/logger.js';

const LIMIT = 4096;

interface Harness {
  input: PassThrough;
  delivered: JSONRPCMessage[];
  /** The JSON lines written to the client. */
  written: () => unknown[];
  logs: string[];
  closed: () => boolean;
  /** Writes `text` in chunks of `chunk` bytes, then lets the transport read them. */
  feed(text: string, chunk?: number): Promise<void>;
}

async function started(): Promise<Harness> {
  const input = new PassThrough();
  const output = new PassThrough();
  let out = '';
  output.on('data', (data: Buffer) => (out += data.toString()));
  const logs: string[] = [];
  const transport = new McpStdioTransport(input, output, { maxMessageBytes: LIMIT, logger: createLogger({ write: (line) => logs.push(line), level: 'warn' }) });
  const delivered: JSONRPCMessage[] = [];
  let closed = false;
  transport.onmessage = (message) => delivered.push(message);
  transport.onclose = () => (closed = true);
  await transport.start();
  return {
    input,
    delivered,
    written: () =>
      out
        .split('\n')
        .filter((line) => line.length > 0)
        .map((line) => JSON.parse(line) as unknown),
    logs,
    closed: () => closed,
    feed: async (text, chunk = 1000) => {
      const bytes = Buffer.from(text);
      for (let at = 0; at < bytes.length; at += chunk) input.write(bytes.subarray(at, at + chunk));
      // PassThrough delivers on a later tick; a ping behind the data marks the point it was all read.
      const marker = delivered.length;
      input.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'ping', id: `marker-${marker}` })}\n`);
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (delivered.some((m) => 'id' in m && m.id === `marker-${marker}`)) resolve();
          else setImmediate(check);
        };
        check();
      });
      delivered.splice(
        delivered.findIndex((m) => 'id' in m && m.id === `marker-${marker}`),
        1,
      );
      // Answers written while reading go out on the next tick (the transport corks its output).
      await new Promise<void>((resolve) => setImmediate(resolve));
    },
  };
}

/** A JSON string value of about `bytes` bytes full of what looks like JSON-RPC members. */
function decoy(bytes: number): string {
  return JSON.stringify('{"id":99,"method":"tools/call"}, \\"id\\": 98}]]}'.repeat(Math.ceil(bytes / 40)));
}

describe('McpStdioTransport', () => {
  it('delivers messages split across chunks and several in one chunk', async () => {
    const t = await started();
    const one = { jsonrpc: '2.0', id: 1, method: 'tools/list' };
    const two = { jsonrpc: '2.0', method: 'notifications/initialized' };
    await t.feed(`${JSON.stringify(one)}\n${JSON.stringify(two)}\r\n\n`, 7);
    expect(t.delivered).toEqual([one, two]);
    expect(t.written()).toEqual([]);
  });

  it('a line over the bound: its request is answered with an error naming the bound, wherever its id is, and the next message is read', async () => {
    const t = await started();
    const lines = [
      // The SDK client writes the id last.
      `{"method":"tools/call","params":{"name":"codex","arguments":{"prompt":${decoy(3 * LIMIT)},"id":7}},"jsonrpc":"2.0","id":"last"}`,
      `{ "id" : 12 , "jsonrpc":"2.0", "method" : "tools/call", "params": {"x": [${decoy(2 * LIMIT)}, {"id": 13}]} }`,
      `{"jsonrpc":"2.0","method":"tools/call","params":{"p":${decoy(2 * LIMIT)}},"id":"with \\"quotes\\" and \\u00e9"}`,
    ];
    for (const line of lines) await t.feed(`${line}\n`);
    const written = t.written();
    expect(written.map((m) => (m as { id: unknown }).id)).toEqual(['last', 12, 'with "quotes" and é']);
    for (const [index, message] of written.entries()) {
      expect(message).toEqual({
        jsonrpc: '2.0',
        id: expect.anything(),
        error: {
          code: -32600,
          message: `the message is ${Buffer.byteLength(lines[index]!)} bytes, over the limit of 4096 bytes (0.004 MiB, multienv.max_message_mb); it was not processed`,
        },
      });
    }
    expect(t.delivered).toEqual([]);
    expect(t.logs.join('')).toMatch(/refused an MCP request: a message of \d+ bytes over the limit/);
    expect(t.closed()).toBe(false);
  });

  it('fails our own request when the client’s answer to it is over the bound', async () => {
    const t = await started();
    await t.feed(`{"jsonrpc":"2.0","result":{"decision":{"denied":{"rejection":${decoy(2 * LIMIT)}}}},"id":0}\n`);
    expect(t.written()).toEqual([]);
    expect(t.delivered).toEqual([
      { jsonrpc: '2.0', id: 0, error: { code: -32600, message: expect.stringMatching(/^the client's answer is \d+ bytes, over the limit of 4096 bytes/) } },
    ]);
  });

  it.each([
    ['a notification', `{"jsonrpc":"2.0","method":"notifications/progress","params":{"id":5,"message":${decoy(2 * LIMIT)}}}`, /dropped an MCP notification of \d+ bytes/],
    ['a line that is not JSON', `{"id":5,"method":"tools/call",${'x'.repeat(2 * LIMIT)}`, /no readable id/],
    ['an object that is never closed', `{"id":5,"method":"tools/call","params":${decoy(2 * LIMIT)}`, /no readable id/],
    ['text after the object', `{"id":5,"method":"tools/call","params":${decoy(2 * LIMIT)}} {"id":6}`, /no readable id/],
    ['a batch', `[{"jsonrpc":"2.0","id":5,"method":"tools/call","params":${decoy(2 * LIMIT)}}]`, /no readable id/],
    ['an id that is an object', `{"jsonrpc":"2.0","id":{"n":5},"method":"tools/call","params":${decoy(2 * LIMIT)}}`, /no readable id/],
    ['an id over the capture bound', `{"jsonrpc":"2.0","id":${decoy(2 * LIMIT)},"method":"tools/call"}`, /no readable id/],
    ['a stray closing bracket', `{"jsonrpc":"2.0","id":5]],"method":"tools/call","params":${decoy(2 * LIMIT)}}`, /no readable id/],
  ])('a line over the bound that cannot be answered (%s) is dropped with a log line', async (_name, line, logged) => {
    const t = await started();
    await t.feed(`${line}\n`);
    expect(t.written()).toEqual([]);
    expect(t.delivered).toEqual([]);
    expect(t.logs.join('')).toMatch(logged);
    expect(t.closed()).toBe(false);
  });

  it('turns a response whose result is not an object into an error response', async () => {
    const t = await started();
    await t.feed('{"jsonrpc":"2.0","id":3,"result":"approved"}\n');
    expect(t.delivered).toEqual([{ jsonrpc: '2.0', id: 3, error: { code: -32600, message: 'the result must be an object, got "approved"' } }]);
  });

  it('answers an invalid request with a readable id, and logs lines that are not JSON-RPC at all', async () => {
    const t = await started();
    await t.feed('{"id":4,"method":"tools/list"}\nnot json\n{"jsonrpc":"2.0","params":{}}\n');
    expect(t.written()).toEqual([{ jsonrpc: '2.0', id: 4, error: { code: -32600, message: expect.stringMatching(/^invalid JSON-RPC request: .*jsonrpc/) } }]);
    expect(t.delivered).toEqual([]);
    const logs = t.logs.join('');
    expect(logs).toMatch(/not JSON/);
    expect(logs).toMatch(/not JSON-RPC/);
  });

  it('closes when the input ends', async () => {
    const t = await started();
    t.input.end();
    await new Promise<void>((resolve) => {
      const check = (): void => (t.closed() ? resolve() : void setImmediate(check));
      check();
    });
    expect(t.closed()).toBe(true);
  });
});
