// The 2026-07-28 per-request log level end to end: a modern request that names a level in `_meta`
// gets the log events of its own work at or above it on its own stream (stdio lines, an HTTP POST's
// SSE), before its answer; a request without one gets none, and neither do other requests. Raw
// JSON-RPC over stdio and HTTP, and the SDK v2 client; the legacy `logging/setLevel` is
// covered in mcp-ops.test.ts.
import { request as httpRequest } from 'node:http';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { serverEnv, setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { CLI, startListening, waitFor, type ListeningProcess } from '../helpers/process.js';
import { rawStdio, type RawPeer } from '../helpers/raw-peer.js';
import { gate, hold, isRecord, say, type Json } from '../helpers/steps.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';

const MODERN = '2026-07-28';
const LOG_LEVEL = 'io.modelcontextprotocol/logLevel';

/** `_meta` of a modern request, with `extra` keys (a log level). */
const meta = (extra: Json = {}): Json => ({
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'raw-log-test', version: '1.0.0' },
  ...extra,
});

const envOf = (world: McpTestWorld): Record<string, string> => serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' });

const isLog = (message: Json): boolean => message.method === 'notifications/message';
/** The `data.message` of a `notifications/message`. */
const logText = (message: Json): unknown => (isRecord(message.params) && isRecord(message.params.data) ? message.params.data.message : undefined);
const logLevel = (message: Json): unknown => (isRecord(message.params) ? message.params.level : undefined);

/** A modern `codex` call. */
const codexCall = (id: number, prompt: string, cwd: string, extraMeta: Json = {}): string =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'codex', arguments: { prompt, cwd }, _meta: meta(extraMeta) } });

/** Every message up to and including the answer to `id`. */
async function until(raw: RawPeer, id: number): Promise<Json[]> {
  const seen: Json[] = [];
  for (;;) {
    const message = await raw.next(30_000);
    seen.push(message);
    if (message.id === id && !('method' in message)) return seen;
  }
}

/** One modern POST read to its end as SSE: the JSON-RPC messages of its events, in order. */
function post(url: string, body: string): Promise<Json[]> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      url,
      { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => {
          const messages: Json[] = [];
          for (const line of text.split('\n')) if (line.startsWith('data: ')) messages.push(JSON.parse(line.slice('data: '.length)) as Json);
          resolve(messages);
        });
      },
    );
    request.once('error', reject);
    request.end(body);
  });
}

describe('the per-request log level of the modern era (2026-07-28)', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let raw: (RawPeer & { exitCode: Promise<number | null> }) | undefined;
  let server: ListeningProcess | undefined;
  let client: Client | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-modern-log', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await raw?.close();
    raw = undefined;
    await server?.stop();
    server = undefined;
    await tearDownMcpWorld(world, undefined);
  });

  describe('over stdio (raw lines)', () => {
    beforeEach(() => {
      raw = rawStdio(process.execPath, [CLI], envOf(world));
    });

    it('sends the events of a request at or above its level before its answer, and none to a request without one', async () => {
      steps.push(say('loud'));
      raw!.send(codexCall(1, 'with debug', world.work.path, { [LOG_LEVEL]: 'debug' }));
      const loud = await until(raw!, 1);
      const logs = loud.filter(isLog);
      expect(logs.map(logText)).toContain('thread started');
      expect(logs.find((m) => logText(m) === 'thread started')).toMatchObject({
        params: { level: 'info', logger: 'codex-multienv/threads', data: { message: 'thread started', environments: ['local'] } },
      });
      expect(loud.at(-1)).toMatchObject({ id: 1, result: { resultType: 'complete' } });

      steps.push(say('quiet'));
      raw!.send(codexCall(2, 'without a level', world.work.path));
      const quiet = await until(raw!, 2);
      expect(quiet.filter(isLog)).toEqual([]);
      // Nothing of either call follows its answer: the next line is the answer to the next request.
      raw!.send(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'server/discover', params: { _meta: meta() } }));
      expect(await raw!.next()).toMatchObject({ id: 3, result: { capabilities: expect.objectContaining({ logging: {} }) } });
    });

    it('gives a turn that waited in its thread’s queue its own events, not those of the call it waited behind', async () => {
      steps.push(say('made'));
      raw!.send(codexCall(1, 'make the thread', world.work.path));
      const made = await until(raw!, 1);
      const threadId = ((made.at(-1)?.result as Json).structuredContent as Json).threadId as string;
      const release = gate();
      steps.push(hold(release.promise, say('first')), say('second'));
      const reply = (id: number, prompt: string, extraMeta: Json): string =>
        JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'codex-reply', arguments: { threadId, prompt }, _meta: meta(extraMeta) } });
      // A (no level) runs; B (with one) waits behind it in the thread's queue until A ends.
      raw!.send(reply(2, 'A', {}));
      await waitFor(() => world.model.requests.length === 2, "A's model request");
      raw!.send(reply(3, 'B', { [LOG_LEVEL]: 'info', progressToken: 'b' }));
      await raw!.next(); // B's first progress: it was accepted and queued behind A.
      release.open();
      const seen = [...(await until(raw!, 2)), ...(await until(raw!, 3))];
      const answerB = seen.find((m) => m.id === 3 && !('method' in m));
      // A asked for no events: the one 'turn finished' is B's, which ran from A's end.
      const finished = seen.filter(isLog).filter((m) => logText(m) === 'turn finished');
      expect(finished).toHaveLength(1);
      expect(finished[0]).toMatchObject({ params: { level: 'info', data: { thread: threadId, status: 'completed' } } });
      // B's event came on B's stream: before B's answer (stdio: in order on the one stream).
      expect(seen.indexOf(finished[0]!)).toBeLessThan(seen.indexOf(answerB!));
    });

    it('filters by the level: a call at warning gets no info or debug event', async () => {
      steps.push(say('filtered'));
      raw!.send(codexCall(1, 'warnings only', world.work.path, { [LOG_LEVEL]: 'warning' }));
      const messages = await until(raw!, 1);
      expect(messages.filter(isLog).filter((m) => logLevel(m) === 'info' || logLevel(m) === 'debug')).toEqual([]);
    });

    it('refuses a level that is not one, naming the key and the levels (-32602)', async () => {
      raw!.send(codexCall(1, 'bad level', world.work.path, { [LOG_LEVEL]: 'verbose' }));
      const answer = await raw!.next();
      expect(answer).toMatchObject({ id: 1, error: { code: -32602, message: expect.stringContaining(LOG_LEVEL) } });
      expect(JSON.stringify(answer)).toContain('warning');
      expect(world.model.requests).toHaveLength(0);
    });

    it('sends a modern client none of the legacy log events (a warning the server logs with no request open)', async () => {
      // An unreadable line is logged as a warning, which a legacy client gets by default.
      raw!.send('this is not JSON');
      raw!.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: meta({ [LOG_LEVEL]: 'debug' }) } }));
      expect(await raw!.next()).toMatchObject({ id: 1, result: { resultType: 'complete' } });
    });
  });

  it('over HTTP: each POST gets the events of its own call on its own SSE stream, and only when it names a level', async () => {
    server = await startListening(process.execPath, [CLI, 'serve', '--listen', 'http://127.0.0.1:0'], envOf(world));
    steps.push(say('one'), say('two'));
    // Two calls at once: each turn's events go to its own request, never to the other's.
    const [loud, quiet] = await Promise.all([
      post(server.url, codexCall(7, 'loud call', world.work.path, { [LOG_LEVEL]: 'debug' })),
      post(server.url, codexCall(7, 'quiet call', world.work.path)),
    ]);
    const logs = loud.filter(isLog);
    const started = logs.filter((m) => logText(m) === 'thread started');
    expect(started).toHaveLength(1);
    expect(loud.at(-1)).toMatchObject({ id: 7, result: { resultType: 'complete' } });
    const loudThread = (loud.at(-1)?.result as Json).structuredContent as Json;
    const quietThread = (quiet.at(-1)?.result as Json).structuredContent as Json;
    expect(started[0]).toMatchObject({ params: { data: { thread: loudThread.threadId } } });
    expect(JSON.stringify(logs)).not.toContain(String(quietThread.threadId));
    expect(quiet.filter(isLog)).toEqual([]);
  });

  it('the SDK v2 client: a level in a call’s _meta brings that call’s events to its notification handler', async () => {
    client = new Client({ name: 'v2-log-test', version: '1.0.0' }, { versionNegotiation: { mode: { pin: MODERN } } });
    const received: Json[] = [];
    client.setNotificationHandler('notifications/message', (notification) => {
      received.push({ ...notification.params });
    });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLI], env: envOf(world), stderr: 'pipe' }));
    steps.push(say('quiet'), say('loud'));
    await client.callTool({ name: 'codex', arguments: { prompt: 'no level', cwd: world.work.path } });
    expect(received).toEqual([]);
    await client.callTool({ name: 'codex', arguments: { prompt: 'debug', cwd: world.work.path }, _meta: { [LOG_LEVEL]: 'debug' } });
    expect(received).toEqual(expect.arrayContaining([expect.objectContaining({ level: 'info', data: expect.objectContaining({ message: 'thread started' }) })]));
  });
});
