// Task status notifications of the tasks extension (`notifications/tasks` through
// `subscriptions/listen`, 2026-07-28), end to end against our built server over stdio and over
// HTTP (`serve`), with raw JSON-RPC (the SDK v2 client refuses `resultType: "task"`). A listen is
// acknowledged, then carries the task as tasks/get shows it on each status change (working →
// input_required → working → completed); a client without the extension is refused with -32021;
// the limits are clear errors; a cancelled listen sends nothing more and frees its place. Turns are
// held with gates, never sleeps.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { serverEnv, setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { CLI, startListening, waitFor, type ListeningProcess } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';
import { answerMessages } from '../helpers/modern-http.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';

const TASKS = 'io.modelcontextprotocol/tasks';
const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
const WITH_TASKS: Json = { elicitation: { form: {} }, extensions: { [TASKS]: {} } };
const meta = (capabilities: Json): Json => ({
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': capabilities,
  'io.modelcontextprotocol/clientInfo': { name: 'task-notifications-test', version: '1.0.0' },
});

/** Messages as they arrive, and a wait for the first (from `from` on) that matches. */
class Inbox {
  readonly seen: Json[] = [];
  readonly #waiters = new Set<() => void>();

  push(message: Json): void {
    this.seen.push(message);
    for (const wake of [...this.#waiters]) wake();
  }

  async next(match: (message: Json) => boolean, what: string, from = 0, timeoutMs = 60_000): Promise<Json> {
    for (;;) {
      const found = this.seen.slice(from).find(match);
      if (found !== undefined) return found;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#waiters.delete(wake);
          reject(new Error(`no ${what} arrived; seen: ${JSON.stringify(this.seen).slice(-2000)}`));
        }, timeoutMs);
        const wake = (): void => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        this.#waiters.add(wake);
      });
    }
  }
}

/** A modern client on one transport: requests answered (`request`), and listens whose messages (each naming its listen) land in `inbox`. */
interface Client {
  inbox: Inbox;
  request(method: string, params: Json, capabilities?: Json): Promise<Json>;
  /** Opens a listen with id `id`. */
  listen(id: string | number, notifications: Json, capabilities?: Json): void;
  /** Cancels the listen `id` as the transport does (notifications/cancelled on stdio, closing the stream over HTTP). */
  cancel(id: string | number): void;
  close(): Promise<void>;
}

function stdioClient(world: McpTestWorld): Client {
  const child: ChildProcess = spawn(process.execPath, [CLI], { env: serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' }), stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const inbox = new Inbox();
  const { stdin, stdout } = child;
  if (stdout === null || stdin === null) throw new Error('no stdio');
  createInterface({ input: stdout }).on('line', (line) => inbox.push(JSON.parse(line) as Json));
  let ids = 0;
  const send = (message: Json): void => void stdin.write(`${JSON.stringify(message)}\n`);
  return {
    inbox,
    request: async (method, params, capabilities = WITH_TASKS) => {
      ids += 1;
      const id = `r${ids}`;
      const from = inbox.seen.length;
      send({ jsonrpc: '2.0', id, method, params: { _meta: meta(capabilities), ...params } });
      return inbox.next((message) => message.id === id, `answer to ${method}`, from);
    },
    listen: (id, notifications, capabilities = WITH_TASKS) => send({ jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { _meta: meta(capabilities), notifications } }),
    cancel: (id) => send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'the test cancels the listen' } }),
    close: async () => {
      stdin.end();
      await exited;
    },
  };
}

/** The JSON-RPC messages of an SSE body, as they arrive. */
async function readSse(body: ReadableStream<Uint8Array>, onMessage: (message: Json) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      for (const line of event.split('\n')) if (line.startsWith('data:')) onMessage(JSON.parse(line.slice(5)) as Json);
    }
  }
}

async function httpClient(world: McpTestWorld): Promise<Client & { server: ListeningProcess }> {
  const server = await startListening(process.execPath, [CLI, 'serve', '--listen', 'http://127.0.0.1:0'], serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' }));
  const inbox = new Inbox();
  const streams = new Map<string | number, AbortController>();
  const reading: Promise<void>[] = [];
  let closing = false;
  let ids = 0;
  const post = (message: Json, signal?: AbortSignal): Promise<Response> =>
    fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(message), signal });
  return {
    server,
    inbox,
    request: async (method, params, capabilities = WITH_TASKS) => {
      ids += 1;
      const id = `r${ids}`;
      const response = await post({ jsonrpc: '2.0', id, method, params: { _meta: meta(capabilities), ...params } });
      const text = await response.text();
      const messages = answerMessages(response, text);
      const answer = messages.find((message) => message.id === id);
      if (answer === undefined) throw new Error(`${method}: no answer in ${text.slice(0, 500)}`);
      return answer;
    },
    listen: (id, notifications, capabilities = WITH_TASKS) => {
      const stop = new AbortController();
      streams.set(id, stop);
      const opened = post({ jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { _meta: meta(capabilities), notifications } }, stop.signal);
      reading.push(
        opened
          .then(async (response) => {
            if (response.body === null) return;
            await readSse(response.body, (message) => inbox.push(message));
          })
          .catch((error: unknown) => {
            // A stream ends by our cancel, or by the server stopping at the end of a test.
            if (!stop.signal.aborted && !closing) throw error;
          }),
      );
    },
    cancel: (id) => streams.get(id)?.abort(),
    close: async () => {
      closing = true;
      await server.stop();
      for (const stop of streams.values()) stop.abort();
      await Promise.allSettled(reading);
    },
  };
}

/** Whether `message` belongs to the listen `id` (its messages name it in `_meta`). */
const onListen =
  (id: string | number) =>
  (message: Json): boolean => {
    const body = isRecord(message.params) ? message.params : isRecord(message.result) ? message.result : {};
    return isRecord(body._meta) && body._meta[SUBSCRIPTION_ID] === id;
  };
const isAck =
  (id: string | number) =>
  (message: Json): boolean =>
    message.method === 'notifications/subscriptions/acknowledged' && onListen(id)(message);
const taskNote =
  (id: string | number, status?: string) =>
  (message: Json): boolean =>
    message.method === 'notifications/tasks' && onListen(id)(message) && (status === undefined || (isRecord(message.params) && message.params.status === status));
const resultOf = (answer: Json): Json => {
  if (!isRecord(answer.result)) throw new Error(`expected a result, got ${JSON.stringify(answer)}`);
  return answer.result;
};

describe.each([
  ['stdio', (world: McpTestWorld): Promise<Client> => Promise.resolve(stdioClient(world))],
  ['HTTP', (world: McpTestWorld): Promise<Client> => httpClient(world)],
])('task status notifications over %s', (_transport, connect) => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let clients: Client[];
  let gates: (() => void)[];

  beforeEach(async () => {
    steps = [];
    clients = [];
    gates = [];
    world = await setUpMcpWorld('mcp-task-notifications', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    for (const open of gates) open();
    for (const client of clients) await client.close();
    await tearDownMcpWorld(world, undefined);
  });

  const start = async (): Promise<Client> => {
    const client = await connect(world);
    clients.push(client);
    return client;
  };
  const heldGate = (): { promise: Promise<void>; open: () => void } => {
    const g = gate();
    gates.push(g.open);
    return g;
  };

  it('acknowledges a listen, then sends the task on each status change: working, input_required, working, completed', async () => {
    const client = await start();
    const beforeAsking = heldGate();
    const beforeEnding = heldGate();
    steps.push(hold(beforeAsking.promise, exec('touch approved.txt', {}, 'call-touch')), hold(beforeEnding.promise, say('approved and done')));
    const created = resultOf(await client.request('tools/call', { name: 'codex', arguments: { prompt: 'ask first', cwd: world.work.path, 'approval-policy': 'untrusted' } }));
    const taskId = String(created.taskId);

    client.listen(7, { taskIds: [taskId, 'task.nothread.AAAAAAAAAAAAAAAAAAAAAA'], toolsListChanged: true });
    const ack = await client.inbox.next(isAck(7), 'acknowledgement');
    // Only what the server agreed to: this task (the unknown one, and tool list changes it never sends, are left out).
    expect(ack.params).toEqual({ _meta: { [SUBSCRIPTION_ID]: 7 }, notifications: { taskIds: [taskId] } });
    const ackAt = client.inbox.seen.indexOf(ack);
    await client.inbox.next(taskNote(7, 'working'), 'working', ackAt);

    beforeAsking.open();
    const asking = await client.inbox.next(taskNote(7, 'input_required'), 'input_required', ackAt);
    const waiting = isRecord(asking.params) ? asking.params : {};
    // The full task, as tasks/get shows it.
    const { _meta: _serverMeta, resultType: _resultType, ...polled } = resultOf(await client.request('tasks/get', { taskId }));
    const { _meta: _listenMeta, ...notified } = waiting;
    expect(notified).toEqual(polled);
    const [key] = Object.keys(isRecord(waiting.inputRequests) ? waiting.inputRequests : {});
    expect(resultOf(await client.request('tasks/update', { taskId, inputResponses: { [key!]: { action: 'accept', content: { decision: 'approve' } } } })).resultType).toBe(
      'complete',
    );
    const again = client.inbox.seen.indexOf(asking);
    await client.inbox.next(taskNote(7, 'working'), 'working again', again);
    beforeEnding.open();
    const done = await client.inbox.next(taskNote(7, 'completed'), 'completed', again);
    expect(done.params).toMatchObject({ taskId, status: 'completed', result: { structuredContent: { content: 'approved and done' } } });
    expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(true);

    const statuses = client.inbox.seen.filter(taskNote(7)).map((message) => (isRecord(message.params) ? message.params.status : undefined));
    expect(statuses).toEqual(['working', 'input_required', 'working', 'completed']);
    // The acknowledgement comes first on the listen; the listen itself stays open (no answer to it).
    expect(client.inbox.seen.filter(onListen(7))[0]).toBe(ack);
    expect(client.inbox.seen.some((message) => message.id === 7)).toBe(false);
  });

  it('refuses task ids from a client without the tasks extension with -32021, and too many task ids with a clear error', async () => {
    const client = await start();
    client.listen('plain', { taskIds: ['task.x.AAAAAAAAAAAAAAAAAAAAAA'] }, { elicitation: { form: {} } });
    const refused = await client.inbox.next((message) => message.id === 'plain', 'refusal');
    expect(refused.error).toMatchObject({ code: -32021, data: { requiredCapabilities: { extensions: { [TASKS]: {} } } } });

    client.listen('many', { taskIds: Array.from({ length: 65 }, (_, i) => `task.x.${String(i).padStart(22, 'A')}`) });
    const tooMany = await client.inbox.next((message) => message.id === 'many', 'refusal');
    expect(tooMany.error).toMatchObject({ code: -32602, message: expect.stringContaining('65 tasks, over the limit of 64 per listen') });
  });

  it('caps the listens open at once; a cancelled listen sends nothing more and frees its place', async () => {
    const client = await start();
    const release = heldGate();
    steps.push(hold(release.promise, say('ended')));
    const taskId = String(resultOf(await client.request('tools/call', { name: 'codex', arguments: { prompt: 'held', cwd: world.work.path } })).taskId);
    for (let i = 0; i < 32; i += 1) client.listen(`l${i}`, i === 0 ? { taskIds: [taskId] } : {});
    for (let i = 0; i < 32; i += 1) await client.inbox.next(isAck(`l${i}`), `acknowledgement ${i}`);
    client.listen('over', {});
    const refused = await client.inbox.next((message) => message.id === 'over', 'refusal');
    expect(refused.error).toMatchObject({ message: expect.stringContaining('32 listens are open already') });

    client.cancel('l0');
    const cancelledAt = client.inbox.seen.length;
    // The place is free again (stdio reads in order; over HTTP the server learns of the closed stream a moment later).
    let attempt = 0;
    let listening = '';
    await waitFor(
      async () => {
        attempt += 1;
        const id = `after${attempt}`;
        client.listen(id, { taskIds: [taskId] });
        const answer = await client.inbox.next((message) => message.id === id || isAck(id)(message), 'the listen after the cancel');
        if (answer.method === undefined) expect(answer.error).toMatchObject({ message: expect.stringContaining('32 listens are open already') });
        else listening = id;
        return listening !== '';
      },
      'a place for a listen after the cancel',
      30_000,
    );
    release.open();
    await client.inbox.next(taskNote(listening, 'completed'), 'completed on the new listen');
    // Nothing more on the cancelled listen, not even an answer.
    expect(client.inbox.seen.slice(cancelledAt).filter((message) => onListen('l0')(message) || message.id === 'l0')).toEqual([]);
  });
});
