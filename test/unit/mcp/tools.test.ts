// The tool table: listings derived once (when first read) from the zod schemas, calls parsed with them, and the
// errors a client gets, served by a real SDK Server on the SDK's in-memory transport.
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ListToolsResultSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { TASK_CAPABILITIES } from '../../../src/mcp/handshake.js';
import { defineTool, serveTools, type McpTool } from '../../../src/mcp/tools.js';

interface Served {
  request(method: string, params: Record<string, unknown>): Promise<JSONRPCMessage>;
  events: string[];
  close(): Promise<void>;
}

async function serve(tools: McpTool[]): Promise<Served> {
  const server = new Server({ name: 'tools-check', version: '1' }, { capabilities: { tools: {}, tasks: TASK_CAPABILITIES } });
  const events: string[] = [];
  serveTools(server, tools, (requestId) => {
    events.push(`call ${String(requestId)} arrived`);
    return () => events.push(`call ${String(requestId)} answered`);
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const answers = new Map<unknown, (message: JSONRPCMessage) => void>();
  clientSide.onmessage = (message) => {
    if ('id' in message) answers.get(message.id)?.(message);
  };
  await clientSide.start();
  await server.connect(serverSide);
  let nextId = 0;
  return {
    events,
    request: (method, params) => {
      nextId += 1;
      const id = nextId;
      const answered = new Promise<JSONRPCMessage>((resolve) => answers.set(id, resolve));
      void clientSide.send({ jsonrpc: '2.0', id, method, params });
      return answered;
    },
    close: () => server.close(),
  };
}

const Answer = z.object({ result: z.looseObject({}).optional(), error: z.object({ code: z.number(), message: z.string() }).optional() });
const answerOf = (message: JSONRPCMessage): z.infer<typeof Answer> => Answer.parse(message);
const textOf = (message: JSONRPCMessage): string =>
  z
    .object({ content: z.array(z.object({ text: z.string() })) })
    .parse(answerOf(message).result)
    .content.map((c) => c.text)
    .join('');

const echo = defineTool({
  name: 'echo/args',
  title: 'Echo',
  description: 'Answers with its arguments.',
  input: z.object({
    text: z.string().describe('What to say.'),
    mode: z.enum(['loud', 'quiet']).default('quiet').describe('How.'),
    items: z.array(z.object({ id: z.string() }).strict()).optional(),
  }),
  output: z.object({ said: z.string() }),
  annotations: { readOnlyHint: true },
  run: (args) => ({ content: [{ type: 'text', text: `${args.text} (${args.mode})` }], structuredContent: { said: args.text } }),
});

const broken = defineTool({
  name: 'broken',
  title: 'Broken',
  description: 'Answers off its output schema.',
  input: z.object({}),
  output: z.object({ count: z.number() }),
  run: () => ({ content: [{ type: 'text', text: 'oops' }], structuredContent: { count: 'many' } }),
});

const tasked = defineTool({
  name: 'tasked',
  title: 'Tasked',
  description: 'Runs as a task.',
  input: z.object({ n: z.number() }),
  output: z.object({}),
  run: () => ({ content: [], structuredContent: {} }),
  runAsTask: (args) =>
    Promise.resolve({ task: { taskId: `task-${args.n}`, status: 'working', ttl: null, createdAt: '2026-01-01T00:00:00Z', lastUpdatedAt: '2026-01-01T00:00:00Z' } }),
});

describe('defineTool', () => {
  it('advertises the JSON Schema of its zod schemas: descriptions, required, enums, defaults, strictness, task support', () => {
    expect(echo.listing).toEqual({
      name: 'echo/args',
      title: 'Echo',
      description: 'Answers with its arguments.',
      inputSchema: {
        $schema: 'http://json-schema.org/draft-07/schema#',
        type: 'object',
        properties: {
          text: { type: 'string', description: 'What to say.' },
          mode: { type: 'string', enum: ['loud', 'quiet'], default: 'quiet', description: 'How.' },
          items: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'], additionalProperties: false } },
        },
        required: ['text'],
      },
      outputSchema: {
        $schema: 'http://json-schema.org/draft-07/schema#',
        type: 'object',
        properties: { said: { type: 'string' } },
        required: ['said'],
        additionalProperties: false,
      },
      annotations: { readOnlyHint: true },
      execution: { taskSupport: 'forbidden' },
    });
    expect(tasked.listing.execution).toEqual({ taskSupport: 'optional' });
    expect(() => ListToolsResultSchema.parse({ tools: [echo.listing, broken.listing, tasked.listing] })).not.toThrow();
  });

  it('refuses a schema that is not an object when its listing is made', () => {
    expect(() => defineTool({ name: 'bad', title: 'Bad', description: 'x', input: z.string(), output: z.object({}), run: () => ({ content: [] }) }).listing).toThrow(
      /the input schema of MCP tool bad is not an object schema/,
    );
  });
});

describe('serveTools', () => {
  it('answers tools/list with the listings, made once, the same objects every time', async () => {
    const served = await serve([echo, tasked]);
    const first = answerOf(await served.request('tools/list', {})).result;
    const second = answerOf(await served.request('tools/list', {})).result;
    expect(first).toEqual({ tools: [echo.listing, tasked.listing] });
    // The in-memory transport hands over the objects themselves: nothing was derived per request.
    expect(second?.tools).toBe(first?.tools);
    await served.close();
  });

  it('parses the arguments (defaults applied) and tracks the call from its arrival to its answer', async () => {
    const served = await serve([echo]);
    const answer = await served.request('tools/call', { name: 'echo/args', arguments: { text: 'hi' } });
    expect(answerOf(answer).result).toEqual({ content: [{ type: 'text', text: 'hi (quiet)' }], structuredContent: { said: 'hi' } });
    expect(served.events).toEqual(['call 1 arrived', 'call 1 answered']);
    await served.close();
  });

  it('answers a bad plain call with an isError result that says what is wrong and where', async () => {
    const served = await serve([echo, broken]);
    const bad = await served.request('tools/call', { name: 'echo/args', arguments: { text: 3, items: [{ id: 'a', extra: 1 }] } });
    expect(answerOf(bad).result?.isError).toBe(true);
    expect(textOf(bad)).toBe(
      'Input validation error: Invalid arguments for tool echo/args: Invalid input: expected string, received number at text\nUnrecognized key: "extra" at items[0]',
    );
    const unknown = await served.request('tools/call', { name: 'nope', arguments: {} });
    expect(answerOf(unknown).result).toEqual({ content: [{ type: 'text', text: 'Tool nope not found' }], isError: true });
    const off = await served.request('tools/call', { name: 'broken' });
    expect(textOf(off)).toMatch(/^Output validation error: Invalid structured content for tool broken: .*at count$/);
    expect(served.events).toEqual(['call 1 arrived', 'call 1 answered', 'call 2 arrived', 'call 2 answered', 'call 3 arrived', 'call 3 answered']);
    await served.close();
  });

  it('runs a task-augmented call as the tool’s task, and refuses one the tool cannot run as a task', async () => {
    const served = await serve([echo, tasked]);
    expect(answerOf(await served.request('tools/call', { name: 'tasked', arguments: { n: 4 }, task: {} })).result).toMatchObject({ task: { taskId: 'task-4', status: 'working' } });
    expect(answerOf(await served.request('tools/call', { name: 'tasked', arguments: { n: 'four' }, task: {} })).error).toEqual({
      code: -32602,
      message: 'Input validation error: Invalid arguments for tool tasked: Invalid input: expected number, received string at n',
    });
    expect(answerOf(await served.request('tools/call', { name: 'echo/args', arguments: { text: 'x' }, task: {} })).error).toEqual({
      code: -32601,
      message: 'Tool echo/args does not run as a task (its execution.taskSupport is "forbidden"): call it without `task`',
    });
    expect(answerOf(await served.request('tools/call', { name: 'nope', arguments: {}, task: {} })).error).toEqual({
      code: -32602,
      message: 'Tool nope not found',
    });
    await served.close();
  });

  it('refuses two tools of one name', () => {
    const server = new Server({ name: 'tools-check', version: '1' }, { capabilities: { tools: {} } });
    expect(() => serveTools(server, [echo, echo], () => () => undefined)).toThrow('two MCP tools are named echo/args');
  });
});
