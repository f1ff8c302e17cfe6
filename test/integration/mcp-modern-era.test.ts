// The 2026-07-28 ("modern") MCP era on our stdio entry, end to end: the SDK v2 client pinned to the
// modern era against our built server (turns, replies, approvals as input_required), and raw
// JSON-RPC lines for the protocol edges (versions, _meta, requestState).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';
import { setUpMcpWorld, tearDownMcpWorld, threadIdOf, type McpTestWorld } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI } from '../helpers/process.js';
import { rawStdio, type RawPeer } from '../helpers/raw-peer.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';

const MODERN = '2026-07-28';

/** `_meta` a modern request carries. */
const meta = (version = MODERN, capabilities: Json = {}): Json => ({
  'io.modelcontextprotocol/protocolVersion': version,
  'io.modelcontextprotocol/clientCapabilities': capabilities,
  'io.modelcontextprotocol/clientInfo': { name: 'raw-test', version: '1.0.0' },
});

/** The server's environment: CODEX_HOME with the fake model's config. */
const serverEnv = (world: McpTestWorld): Record<string, string> => ({
  ...(networkEnv(process.env) as Record<string, string>),
  CODEX_HOME: world.home.path,
  FAKE_MODEL_API_KEY: 'test-key',
  HOME: world.home.path,
  SHELL: '/bin/sh',
});

type ElicitAnswer = (params: Json) => Json;

/** The SDK v2 client, pinned to the modern era, over stdio to our built server. */
async function modernClient(world: McpTestWorld, answer?: ElicitAnswer): Promise<{ client: Client; asked: Json[] }> {
  const asked: Json[] = [];
  const client = new Client(
    { name: 'v2-modern-test', version: '1.0.0' },
    { capabilities: answer === undefined ? {} : { elicitation: { form: {} } }, versionNegotiation: { mode: { pin: MODERN } } },
  );
  if (answer !== undefined) {
    client.setRequestHandler('elicitation/create', (request) => {
      const params: Json = { ...request.params };
      asked.push(params);
      return answer(params) as never;
    });
  }
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI], env: serverEnv(world), stderr: 'pipe' });
  await client.connect(transport);
  return { client, asked };
}

/** A request line with `id`, `method` and `params`. */
const line = (id: number, method: string, params: Json): string => JSON.stringify({ jsonrpc: '2.0', id, method, params });

describe('the modern MCP era (2026-07-28) on the stdio entry', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let client: Client | undefined;
  let raw: RawPeer | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-modern', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await raw?.close();
    raw = undefined;
    await tearDownMcpWorld(world, undefined);
  });

  it('serves the v2 client pinned to 2026-07-28: discover, tools, a codex turn and a codex-reply on its thread', async () => {
    ({ client } = await modernClient(world));
    expect(client.getProtocolEra()).toBe('modern');
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);

    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['codex', 'codex-reply', 'codex-status']));

    steps.push(say('first answer'));
    const notes: unknown[] = [];
    const first = await client.callTool({ name: 'codex', arguments: { prompt: 'hello', cwd: world.work.path } }, { onprogress: (note) => notes.push(note) });
    // Progress reaches the open call under its own token.
    expect(notes).toEqual(expect.arrayContaining([expect.objectContaining({ message: expect.stringContaining('turn started on thread') })]));
    expect(first.isError).toBeFalsy();
    const threadId = threadIdOf(first);
    expect(first.structuredContent).toEqual({ threadId, content: 'first answer' });

    steps.push(say('second answer'));
    const second = await client.callTool({ name: 'codex-reply', arguments: { threadId, prompt: 'again' } });
    expect(second.structuredContent).toEqual({ threadId, content: 'second answer' });
    // The reply continued the same conversation: the model saw the first exchange.
    expect(JSON.stringify(world.model.requests[1]?.body)).toContain('first answer');
  });

  it('asks an approval as input_required on the open call; the v2 client answers on its retry and the command runs', async () => {
    let asked: Json[];
    ({ client, asked } = await modernClient(world, () => ({ action: 'accept', content: { decision: 'approve' } })));
    steps.push(exec('touch approved.txt', {}, 'call-touch'), say('touched'));
    const result = await client.callTool({ name: 'codex', arguments: { prompt: 'make the file', cwd: world.work.path, 'approval-policy': 'untrusted' } });

    expect(result.structuredContent).toEqual({ threadId: threadIdOf(result), content: 'touched' });
    expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(true);
    expect(asked).toHaveLength(1);
    expect(asked[0]?.mode).toBe('form');
    expect(asked[0]?.message).toEqual(expect.stringContaining('touch approved.txt'));
  });

  it('denies when the v2 client declines, and the command does not run', async () => {
    ({ client } = await modernClient(world, () => ({ action: 'decline' })));
    steps.push(exec('touch denied.txt', {}, 'call-touch'), say('gave up'));
    const result = await client.callTool({ name: 'codex', arguments: { prompt: 'make the file', cwd: world.work.path, 'approval-policy': 'untrusted' } });
    expect(result.structuredContent).toEqual({ threadId: threadIdOf(result), content: 'gave up' });
    expect(existsSync(join(world.work.path, 'denied.txt'))).toBe(false);
  });

  it('fails the v2 client pinned to a version the server does not serve, naming the supported ones', async () => {
    const pinned = new Client({ name: 'v2-future', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2099-01-01' } } });
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI], env: serverEnv(world), stderr: 'pipe' });
    await expect(pinned.connect(transport)).rejects.toThrow('Unsupported protocol version 2099-01-01 (this server serves 2026-07-28)');
    await pinned.close();
  });

  describe('raw lines', () => {
    beforeEach(() => {
      raw = rawStdio(process.execPath, [CLI], serverEnv(world));
    });

    it('answers server/discover, and an unsupported version with -32022 naming the supported ones', async () => {
      raw!.send(line(1, 'server/discover', { _meta: meta() }));
      const discover = await raw!.next();
      expect(discover.result).toEqual(
        expect.objectContaining({
          resultType: 'complete',
          supportedVersions: [MODERN],
          capabilities: { tools: { listChanged: false }, logging: {}, extensions: { 'io.modelcontextprotocol/tasks': {} } },
          _meta: { 'io.modelcontextprotocol/serverInfo': expect.objectContaining({ name: 'codex-multienv-mcp' }) },
        }),
      );

      raw!.send(line(2, 'tools/list', { _meta: meta('1900-01-01') }));
      expect(await raw!.next()).toEqual({
        jsonrpc: '2.0',
        id: 2,
        error: { code: -32022, message: 'Unsupported protocol version 1900-01-01 (this server serves 2026-07-28)', data: { supported: [MODERN], requested: '1900-01-01' } },
      });

      raw!.send(line(3, 'server/discover', {}));
      const missing = await raw!.next();
      expect(missing.error).toEqual({ code: -32602, message: expect.stringContaining('io.modelcontextprotocol/protocolVersion') });

      raw!.send(line(4, 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } }));
      const noCapabilities = await raw!.next();
      expect(noCapabilities.error).toEqual({ code: -32602, message: expect.stringContaining('io.modelcontextprotocol/clientCapabilities') });

      raw!.send(line(5, 'tools/list', { _meta: meta() }));
      const listed = await raw!.next();
      expect(isRecord(listed.result) && listed.result.resultType).toBe('complete');
    });

    it('keeps the wait budget (a running answer), and a cancelled call stops its turn (here: withdrawn from the queue) and is not answered', async () => {
      const release = gate();
      try {
        steps.push(hold(release.promise, say('too late')));
        raw!.send(line(1, 'tools/call', { _meta: meta(), name: 'codex', arguments: { prompt: 'slow', cwd: world.work.path, waitMs: 0 } }));
        const early = await raw!.next();
        const running = isRecord(early.result) ? early.result : {};
        expect(running.resultType).toBe('complete');
        const structured = isRecord(running.structuredContent) ? running.structuredContent : {};
        expect(structured).toMatchObject({ status: 'running', threadId: expect.any(String) });
        const threadId = String(structured.threadId);

        steps.push(hold(release.promise, say('never read')));
        await world.model.waitForRequests(1);
        raw!.send(line(2, 'tools/call', { _meta: meta(), name: 'codex-reply', arguments: { threadId, prompt: 'queued behind', waitMs: 600_000 } }));
        raw!.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2, reason: 'user pressed stop' } }));
        release.open();
        // The first turn ends, the cancelled one (withdrawn from the queue) never reaches the model.
        raw!.send(line(3, 'tools/call', { _meta: meta(), name: 'codex-status', arguments: { threadId, waitMs: 60_000 } }));
        const status = await raw!.next(60_000);
        expect(status.id).toBe(3);
        raw!.send(line(4, 'tools/list', { _meta: meta() }));
        expect((await raw!.next()).id).toBe(4);
        expect(world.model.requests).toHaveLength(1);
      } finally {
        release.open();
      }
    });

    it('brings an approval raised after the call was answered back on the next call naming the thread, as input_required', async () => {
      const capabilities = { elicitation: { form: {} } };
      const release = gate();
      try {
        steps.push(hold(release.promise, exec('touch later.txt', {}, 'call-later')), say('done later'));
        raw!.send(
          line(1, 'tools/call', {
            _meta: meta(MODERN, capabilities),
            name: 'codex',
            arguments: { prompt: 'slow', cwd: world.work.path, 'approval-policy': 'untrusted', waitMs: 0 },
          }),
        );
        const early = await raw!.next();
        const structured = isRecord(early.result) && isRecord(early.result.structuredContent) ? early.result.structuredContent : {};
        expect(structured).toMatchObject({ status: 'running', threadId: expect.any(String) });
        const threadId = String(structured.threadId);

        // The approval comes while the client waits on the thread with codex-status: that call carries it.
        release.open();
        const args = { threadId, waitMs: 60_000 };
        raw!.send(line(2, 'tools/call', { _meta: meta(MODERN, capabilities), name: 'codex-status', arguments: args }));
        const asked = await raw!.next(60_000);
        const result = isRecord(asked.result) ? asked.result : {};
        expect(result.resultType).toBe('input_required');
        const inputRequests = isRecord(result.inputRequests) ? result.inputRequests : {};
        const [key] = Object.keys(inputRequests);
        expect(inputRequests[key!]).toMatchObject({ method: 'elicitation/create', params: { message: expect.stringContaining('touch later.txt') } });

        const approve = { [key!]: { action: 'accept', content: { decision: 'approve' } } };
        raw!.send(line(3, 'tools/call', { _meta: meta(MODERN, capabilities), name: 'codex-status', arguments: args, inputResponses: approve, requestState: result.requestState }));
        const status = await raw!.next(60_000);
        expect(isRecord(status.result) && status.result.structuredContent).toMatchObject({ status: 'idle', lastTurn: { status: 'completed' } });
        expect(existsSync(join(world.work.path, 'later.txt'))).toBe(true);
      } finally {
        release.open();
      }
    });

    it('refuses a requestState that was altered, and one moved to other arguments', async () => {
      const capabilities = { elicitation: { form: {} } };
      steps.push(exec('touch outside-marker.txt', {}, 'call-touch'), say('done'));
      const args = { prompt: 'make the file', cwd: world.work.path, 'approval-policy': 'untrusted' };
      raw!.send(line(1, 'tools/call', { _meta: meta(MODERN, capabilities), name: 'codex', arguments: args }));
      const first = await raw!.next();
      const result = isRecord(first.result) ? first.result : {};
      expect(result.resultType).toBe('input_required');
      const inputRequests = isRecord(result.inputRequests) ? result.inputRequests : {};
      const [key] = Object.keys(inputRequests);
      expect(isRecord(inputRequests[key!]) && inputRequests[key!]).toEqual(expect.objectContaining({ method: 'elicitation/create' }));
      const state = String(result.requestState);
      const approve = { [key!]: { action: 'accept', content: { decision: 'approve' } } };

      // One character of the sealed payload changed: refused, nothing approved.
      const altered = `${state[0] === 'A' ? 'B' : 'A'}${state.slice(1)}`;
      raw!.send(line(2, 'tools/call', { _meta: meta(MODERN, capabilities), name: 'codex', arguments: args, inputResponses: approve, requestState: altered }));
      expect((await raw!.next()).error).toEqual({ code: -32602, message: expect.stringContaining('requestState failed verification') });

      // The genuine state on a call with other arguments: refused too.
      raw!.send(
        line(3, 'tools/call', { _meta: meta(MODERN, capabilities), name: 'codex', arguments: { ...args, prompt: 'something else' }, inputResponses: approve, requestState: state }),
      );
      expect((await raw!.next()).error).toEqual({ code: -32602, message: expect.stringContaining('belongs to another request') });
      expect(existsSync(join(world.work.path, 'outside-marker.txt'))).toBe(false);

      // A clear denial on the genuine retry: the turn goes on without running the command.
      raw!.send(
        line(4, 'tools/call', {
          _meta: meta(MODERN, capabilities),
          name: 'codex',
          arguments: args,
          inputResponses: { [key!]: { action: 'accept', content: { decision: 'deny' } } },
          requestState: state,
        }),
      );
      const last = await raw!.next(30_000);
      expect(isRecord(last.result) && last.result.resultType).toBe('complete');
      expect(isRecord(last.result) && last.result.structuredContent).toEqual(expect.objectContaining({ content: 'done' }));
      expect(existsSync(join(world.work.path, 'outside-marker.txt'))).toBe(false);
    });

    it('refuses a requestState replayed to answer a later approval of the same call; the later one is asked and answered on its own', async () => {
      const capabilities = { elicitation: { form: {} } };
      steps.push(exec('touch first.txt', {}, 'call-first'), exec('touch second.txt', {}, 'call-second'), say('done'));
      const args = { prompt: 'make two files', cwd: world.work.path, 'approval-policy': 'untrusted' };
      const ask = async (id: number, extra: Json): Promise<{ key: string; state: string }> => {
        raw!.send(line(id, 'tools/call', { _meta: meta(MODERN, capabilities), name: 'codex', arguments: args, ...extra }));
        const answer = await raw!.next(30_000);
        const result = isRecord(answer.result) ? answer.result : {};
        expect(result.resultType).toBe('input_required');
        const keys = Object.keys(isRecord(result.inputRequests) ? result.inputRequests : {});
        expect(keys).toHaveLength(1);
        return { key: keys[0]!, state: String(result.requestState) };
      };
      const approve = { action: 'accept', content: { decision: 'approve' } };
      const first = await ask(1, {});
      const second = await ask(2, { inputResponses: { [first.key]: approve }, requestState: first.state });
      expect(second.key).not.toBe(first.key);
      expect(existsSync(join(world.work.path, 'first.txt'))).toBe(true);

      // The first round's state, replayed to approve the second command: refused, nothing approved.
      raw!.send(line(3, 'tools/call', { _meta: meta(MODERN, capabilities), name: 'codex', arguments: args, inputResponses: { [second.key]: approve }, requestState: first.state }));
      expect((await raw!.next()).error).toEqual({ code: -32602, message: expect.stringContaining('this requestState is from round 1 of the call, which has had 2') });
      expect(existsSync(join(world.work.path, 'second.txt'))).toBe(false);

      // The second approval is still asked, and its own state answers it (here: a denial).
      raw!.send(
        line(4, 'tools/call', {
          _meta: meta(MODERN, capabilities),
          name: 'codex',
          arguments: args,
          inputResponses: { [second.key]: { action: 'accept', content: { decision: 'deny' } } },
          requestState: second.state,
        }),
      );
      const last = await raw!.next(30_000);
      expect(isRecord(last.result) && last.result.structuredContent).toEqual(expect.objectContaining({ content: 'done' }));
      expect(existsSync(join(world.work.path, 'second.txt'))).toBe(false);
    });
  });
});
