// The SDK behaviour each entry of src/mcp/sdk-workarounds.ts rests on, checked against the
// installed MCP SDK (a real Server on the SDK's in-memory transport, driven with raw JSON-RPC), so
// an SDK upgrade that changes it fails here, by name, instead of misbehaving in the server.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { InMemoryTaskStore } from '@modelcontextprotocol/sdk/experimental/tasks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  EmptyResultSchema,
  ListToolsRequestSchema,
  SetLevelRequestSchema,
  JSONRPCMessageSchema,
  McpError,
  isJSONRPCErrorResponse,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type ServerCapabilities,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { mcpLogForwarder } from '../../../src/mcp/logging.js';
import {
  HeldForCallsStarting,
  McpWireError,
  PINNED_SDK_VERSION,
  nonObjectResultAsError,
  takeOverCancellation,
  unreadableParamsAnswer,
  vendorNotification,
} from '../../../src/mcp/sdk-workarounds.js';
import { TASK_CAPABILITIES } from '../../../src/mcp/handshake.js';
import { deferred } from '../../../src/util/deferred.js';
import { REPO_ROOT } from '../../helpers/process.js';

/** Lets every pending microtask run (the in-memory transport delivers synchronously, the SDK's steps are microtasks). */
const microtasksDone = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The client's end of a connected server: raw JSON-RPC in and out. */
interface RawClient {
  send(message: JSONRPCMessage): void;
  received: JSONRPCMessage[];
  /** Resolves with the first message received (already or later) that matches. */
  next(predicate: (message: JSONRPCMessage) => boolean): Promise<JSONRPCMessage>;
}

async function connect(server: Server): Promise<RawClient> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const received: JSONRPCMessage[] = [];
  const waiting = new Set<() => void>();
  clientSide.onmessage = (message) => {
    received.push(message);
    for (const check of [...waiting]) check();
  };
  await clientSide.start();
  await server.connect(serverSide);
  return {
    received,
    send: (message) => void clientSide.send(message),
    next: (predicate) =>
      new Promise((resolve) => {
        const check = (): void => {
          const found = received.find(predicate);
          if (found === undefined) return;
          waiting.delete(check);
          resolve(found);
        };
        waiting.add(check);
        check();
      }),
  };
}

const newServer = (capabilities: ServerCapabilities, options: { taskStore?: InMemoryTaskStore } = {}): Server =>
  new Server({ name: 'sdk-check', version: '1' }, { capabilities, ...options });
const isAnswerTo =
  (id: number) =>
  (message: JSONRPCMessage): boolean =>
    'id' in message && message.id === id && !('method' in message);
const call = (id: number): JSONRPCMessage => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'slow', arguments: {} } });
const cancel = (requestId: number, reason?: string): JSONRPCMessage => ({
  jsonrpc: '2.0',
  method: 'notifications/cancelled',
  params: { requestId, ...(reason === undefined ? {} : { reason }) },
});
const ping = (id: number): JSONRPCMessage => ({ jsonrpc: '2.0', id, method: 'ping' });

describe('the MCP SDK the workarounds were checked against', () => {
  it('is the installed version', async () => {
    const manifest: unknown = JSON.parse(await readFile(join(REPO_ROOT, 'node_modules/@modelcontextprotocol/sdk/package.json'), 'utf8'));
    const { version } = z.object({ version: z.string() }).parse(manifest);
    const problem =
      version === PINNED_SDK_VERSION
        ? undefined
        : `@modelcontextprotocol/sdk ${version} is installed, the workarounds were checked against ${PINNED_SDK_VERSION}: re-verify the workarounds in src/mcp/sdk-workarounds.ts, then bump the pinned version`;
    expect(problem).toBeUndefined();
  });
});

describe('takeOverCancellation', () => {
  /** A server whose `tools/call` waits for `gate`, reporting when it started and the signal it got. */
  function slowTool(server: Server): { started: Promise<AbortSignal>; finished: Promise<void>; gate: () => void } {
    const started = deferred<AbortSignal>();
    const finished = deferred<undefined>();
    const gate = deferred<undefined>();
    server.setRequestHandler(CallToolRequestSchema, async (_request, extra) => {
      started.resolve(extra.signal);
      await gate.promise;
      finished.resolve(undefined);
      return { content: [{ type: 'text', text: 'done' }] };
    });
    return { started: started.promise, finished: finished.promise, gate: () => gate.resolve(undefined) };
  }

  it('is needed: the SDK’s own handler aborts a cancelled request and drops its answer', async () => {
    const server = newServer({ tools: {} });
    const tool = slowTool(server);
    const client = await connect(server);
    client.send(call(1));
    const signal = await tool.started;
    client.send(cancel(1, 'stop'));
    await microtasksDone();
    expect(signal.aborted).toBe(true);
    tool.gate();
    await tool.finished;
    await microtasksDone();
    client.send(ping(2));
    await client.next(isAnswerTo(2));
    expect(client.received.filter(isAnswerTo(1))).toEqual([]);
    await server.close();
  });

  it('replaces that handler: the request is not aborted, is still answered, and the cancellation reaches us', async () => {
    const server = newServer({ tools: {} });
    const tool = slowTool(server);
    const cancellations: unknown[] = [];
    takeOverCancellation(server, (requestId, reason) => cancellations.push({ requestId, reason }));
    const client = await connect(server);
    client.send(call(1));
    const signal = await tool.started;
    client.send(cancel(1, 'stop'));
    client.send(cancel(7));
    await microtasksDone();
    expect(cancellations).toEqual([
      { requestId: 1, reason: 'stop' },
      { requestId: 7, reason: undefined },
    ]);
    expect(signal.aborted).toBe(false);
    tool.gate();
    expect(await client.next(isAnswerTo(1))).toMatchObject({ result: { content: [{ type: 'text', text: 'done' }] } });
    await server.close();
  });
});

describe('HeldForCallsStarting', () => {
  it('rests on the SDK’s order: a cancellation read right behind its call is handled first, the call’s handler starts before the next setImmediate', async () => {
    const server = newServer({ tools: {} });
    const held = new HeldForCallsStarting<string>();
    const order: string[] = [];
    let taken: string | undefined;
    takeOverCancellation(server, (requestId, reason) => {
      order.push('cancellation');
      held.hold(requestId, reason ?? '');
    });
    server.setRequestHandler(CallToolRequestSchema, (_request, extra) => {
      order.push('call handler');
      taken = held.take(extra.requestId);
      return { content: [] };
    });
    const client = await connect(server);
    // Both in one tick, as when one read of stdin holds both lines.
    client.send(call(1));
    client.send(cancel(1, 'stop'));
    setImmediate(() => order.push('setImmediate'));
    await client.next(isAnswerTo(1));
    await microtasksDone();
    expect(order).toEqual(['cancellation', 'call handler', 'setImmediate']);
    expect(taken).toBe('stop');
    await server.close();
  });

  it('keeps a cancellation only until the calls read with it have started', async () => {
    const held = new HeldForCallsStarting<string>();
    held.hold(5, 'early');
    held.hold(6, 'never claimed');
    expect(held.take(5)).toBe('early');
    expect(held.take(5)).toBeUndefined();
    await microtasksDone();
    expect(held.take(6)).toBeUndefined();
  });
});

describe('nonObjectResultAsError', () => {
  const bare = { jsonrpc: '2.0', id: 0, result: 'approved' };

  it('is needed: the SDK knows no message with a result that is not an object', () => {
    expect(JSONRPCMessageSchema.safeParse(bare).success).toBe(false);
    expect(isJSONRPCResultResponse(bare)).toBe(false);
    expect(isJSONRPCErrorResponse(bare)).toBe(false);
  });

  it('makes an error response the SDK delivers to the waiting request', async () => {
    const server = newServer({});
    const client = await connect(server);
    const pending = server.request({ method: 'ping' }, EmptyResultSchema);
    const asked = await client.next((message) => 'method' in message && message.method === 'ping');
    const id = 'id' in asked ? asked.id : -1;
    const rewritten = JSONRPCMessageSchema.parse(nonObjectResultAsError({ ...bare, id }));
    client.send(rewritten);
    const failure: unknown = await pending.catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(McpError);
    expect(failure).toMatchObject({ code: -32600, message: expect.stringContaining('the result must be an object, got "approved"') });
    await server.close();
  });

  it('leaves every other message as it is', () => {
    for (const message of [{ jsonrpc: '2.0', id: 1, result: {} }, { jsonrpc: '2.0', id: 1, method: 'x', result: 'r' }, { jsonrpc: '2.0', result: 'no id' }, 'text', null, [1]]) {
      expect(nonObjectResultAsError(message)).toBe(message);
    }
  });
});

describe('vendorNotification', () => {
  it('rests on the SDK sending a notification outside the MCP schema from a request handler as it is', async () => {
    const server = newServer({ tools: {} });
    server.setRequestHandler(CallToolRequestSchema, async (_request, extra) => {
      await extra.sendNotification(vendorNotification('codex/event', { id: 'turn-1', msg: { type: 'task_started' } }));
      return { content: [] };
    });
    const client = await connect(server);
    client.send(call(1));
    await client.next(isAnswerTo(1));
    expect(client.received.filter((message) => 'method' in message && message.method === 'codex/event')).toEqual([
      { jsonrpc: '2.0', method: 'codex/event', params: { id: 'turn-1', msg: { type: 'task_started' } } },
    ]);
    await server.close();
  });
});

describe('unreadableParamsAnswer', () => {
  /** One request per method of the table whose params its schema refuses, and what is wrong where. */
  const UNREADABLE: [method: string, params: Record<string, unknown> | undefined, where: string][] = [
    ['initialize', { protocolVersion: '2025-11-25', capabilities: {} }, 'params.clientInfo'],
    ['logging/setLevel', { level: 'loud' }, 'params.level'],
    ['tools/list', { cursor: 5 }, 'params.cursor'],
    ['tools/call', { arguments: {} }, 'params.name'],
    ['tasks/get', {}, 'params.taskId'],
    ['tasks/result', {}, 'params.taskId'],
    ['tasks/list', { cursor: 5 }, 'params.cursor'],
    ['tasks/cancel', undefined, 'params'],
  ];
  const request = (id: number, method: string, params?: Record<string, unknown>): JSONRPCMessage => ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

  it('is needed: a server made as ours answers a request of each of these methods whose params its schema refuses with -32603, zod’s issues as JSON', async () => {
    const store = new InMemoryTaskStore();
    const server = newServer({ tools: {}, logging: {}, tasks: TASK_CAPABILITIES }, { taskStore: store });
    server.setRequestHandler(SetLevelRequestSchema, () => ({}));
    server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] }));
    server.setRequestHandler(CallToolRequestSchema, () => ({ content: [] }));
    const client = await connect(server);
    for (const [i, [method, params]] of UNREADABLE.entries()) {
      client.send(request(i, method, params));
      const answer = await client.next(isAnswerTo(i));
      expect({ method, answer }).toMatchObject({ method, answer: { error: { code: -32603, message: expect.stringMatching(/^\[\s*\{/) } } });
    }
    // A method without a handler is not found, whatever its params.
    client.send(request(99, 'prompts/get', {}));
    expect(await client.next(isAnswerTo(99))).toMatchObject({ error: { code: -32601 } });
    store.cleanup();
    await server.close();
  });

  it('answers those with -32602 naming the method and what is wrong where; leaves readable requests, other methods, notifications and responses', () => {
    for (const [i, [method, params, where]] of UNREADABLE.entries()) {
      const answer = unreadableParamsAnswer(request(i, method, params));
      expect({ method, answer }).toEqual({ method, answer: { jsonrpc: '2.0', id: i, error: { code: -32602, message: expect.stringContaining(`invalid ${method} request: `) } } });
      expect(answer).toMatchObject({ error: { message: expect.stringContaining(`at ${where}`) } });
    }
    expect(unreadableParamsAnswer(request(1, 'initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } }))).toBeUndefined();
    expect(unreadableParamsAnswer(request(2, 'tools/call', { name: 'codex', arguments: {} }))).toBeUndefined();
    expect(unreadableParamsAnswer(request(3, 'ping'))).toBeUndefined();
    expect(unreadableParamsAnswer(request(4, 'prompts/get', {}))).toBeUndefined();
    expect(unreadableParamsAnswer({ jsonrpc: '2.0', method: 'notifications/initialized' })).toBeUndefined();
    expect(unreadableParamsAnswer({ jsonrpc: '2.0', id: 5, result: {} })).toBeUndefined();
  });
});

describe('McpWireError', () => {
  it('is needed: the SDK’s McpError prefixes its message, and the SDK answers with that message as it is', async () => {
    expect(new McpError(-32602, 'no such thread').message).toBe('MCP error -32602: no such thread');
    const server = newServer({ tools: {} });
    server.setRequestHandler(CallToolRequestSchema, () => {
      throw new McpError(-32602, 'no such thread');
    });
    const client = await connect(server);
    client.send(call(1));
    expect(await client.next(isAnswerTo(1))).toMatchObject({ error: { code: -32602, message: 'MCP error -32602: no such thread' } });
    await server.close();
  });

  it('answers with its code and the message as written; the SDK v1 client shows one prefix; it is still an McpError', async () => {
    const thrown = new McpWireError(-32602, 'no such thread', { threadId: 't-1' });
    expect(thrown).toBeInstanceOf(McpError);
    expect(thrown).toMatchObject({ code: -32602, message: 'no such thread', data: { threadId: 't-1' } });
    const server = newServer({ tools: {} });
    server.setRequestHandler(CallToolRequestSchema, () => {
      throw new McpWireError(-32602, 'no such thread', { threadId: 't-1' });
    });
    const raw = await connect(server);
    raw.send(call(1));
    expect(await raw.next(isAnswerTo(1))).toMatchObject({ error: { code: -32602, message: 'no such thread', data: { threadId: 't-1' } } });
    await server.close();

    const served = newServer({ tools: {} });
    served.setRequestHandler(CallToolRequestSchema, () => {
      throw new McpWireError(-32602, 'no such thread');
    });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await served.connect(serverSide);
    const client = new Client({ name: 'v1-check', version: '1' });
    await client.connect(clientSide);
    const failure: unknown = await client.callTool({ name: 'slow', arguments: {} }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: -32602, message: 'MCP error -32602: no such thread' });
    await client.close();
  });
});

describe('behaviour relied on through the public API', () => {
  it('tasks/cancel marks the task cancelled through the task store, where RecordTaskStore records it and interrupts the turn', async () => {
    const statuses: string[] = [];
    const store = new (class extends InMemoryTaskStore {
      override async updateTaskStatus(taskId: string, status: Task['status'], statusMessage?: string, sessionId?: string): Promise<void> {
        statuses.push(status);
        await super.updateTaskStatus(taskId, status, statusMessage, sessionId);
      }
    })();
    const server = newServer({ tools: {}, tasks: TASK_CAPABILITIES }, { taskStore: store });
    const client = await connect(server);
    const task = await store.createTask({ ttl: 60_000 }, 'call-1', { method: 'tools/call', params: {} });
    client.send({ jsonrpc: '2.0', id: 1, method: 'tasks/cancel', params: { taskId: task.taskId } });
    expect(await client.next(isAnswerTo(1))).toMatchObject({ result: { taskId: task.taskId, status: 'cancelled' } });
    expect(statuses).toEqual(['cancelled']);
    store.cleanup();
    await server.close();
  });

  it('once logging/setLevel is ours, sendLoggingMessage sends every level it is given; getClientVersion is set only by initialize', async () => {
    const server = newServer({ logging: {} });
    const forward = mcpLogForwarder(server);
    const client = await connect(server);
    // The forwarder sends nothing until a legacy client initialized (a modern client never does).
    expect(server.getClientVersion()).toBeUndefined();
    client.send({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'check', version: '1' } } });
    await client.next(isAnswerTo(0));
    expect(server.getClientVersion()).toEqual({ name: 'check', version: '1' });
    client.send({ jsonrpc: '2.0', id: 1, method: 'logging/setLevel', params: { level: 'debug' } });
    await client.next(isAnswerTo(1));
    forward({ level: 'debug', component: 'check', message: 'the lowest level' });
    expect(await client.next((message) => 'method' in message && message.method === 'notifications/message')).toMatchObject({
      params: { level: 'debug', logger: 'check', data: { message: 'the lowest level' } },
    });
    await server.close();
  });
});
