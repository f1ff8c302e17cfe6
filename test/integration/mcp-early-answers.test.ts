// The client's first requests answered by the relay while the worker loads (cli/mcp-relay.ts,
// mcp/early-answers.ts), with the built server as a client starts it. The worker is held before it
// loads anything (a module given with `--import`, which the relay passes on to it, waits for the
// test's word on a loopback socket), so the relay alone can answer: no timing decides who does.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { serverEnv } from '../helpers/mcp.js';
import { CLI, tempDir, waitFor } from '../helpers/process.js';

type Json = Record<string, unknown>;

/** Holds the worker (argv has `mcp-worker`) until a byte comes on the socket at HOLD_WORKER_PORT; the relay runs on. */
const HOLD_MODULE = `import { connect } from 'node:net';
if (process.argv.includes('mcp-worker')) {
  await new Promise((resolve, reject) => {
    const socket = connect(Number(process.env.HOLD_WORKER_PORT), '127.0.0.1');
    socket.once('data', () => { socket.destroy(); resolve(); });
    socket.once('error', reject);
  });
}
`;

const MODERN = '2026-07-28';
const modernMeta = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} };
const request = (id: number | string, method: string, params?: Json): string => JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
const initialize = (id: number, protocolVersion: string): string =>
  request(id, 'initialize', { protocolVersion, capabilities: { elicitation: {} }, clientInfo: { name: 'early-test', version: '1.0.0' } });
/** Every version the SDK's server negotiates, and one it does not (answered with the newest). */
const VERSIONS = [...SUPPORTED_PROTOCOL_VERSIONS, '1999-01-01'];

/** The server as a client starts it, speaking raw lines, its answers read in order. */
interface Peer {
  child: ChildProcessWithoutNullStreams;
  send(...lines: string[]): void;
  next(): Promise<Json>;
  /** Every holder of the client's pipes is gone (the worker too): the exit code of the process started. */
  closed: Promise<number | null>;
}

function startPeer(args: string[], env: Record<string, string>): Peer {
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stderr.resume();
  const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
  const queue: Json[] = [];
  const waiters: ((message: Json) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const message = JSON.parse(line) as Json;
    const waiter = waiters.shift();
    if (waiter === undefined) queue.push(message);
    else waiter(message);
  });
  return {
    child,
    send: (...lines) => child.stdin.write(lines.map((line) => `${line}\n`).join('')),
    next: () => {
      const queued = queue.shift();
      return queued === undefined ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve(queued);
    },
    closed,
  };
}

describe('the first answers while the server loads (relay)', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let hold: Server;
  const held: Socket[] = [];
  let env: Record<string, string>;
  let holdModule: string;
  const peers: Peer[] = [];

  /** Starts the relay with its worker held before it loads, and waits until it is. */
  const startHeld = async (args: string[] = []): Promise<Peer> => {
    const before = held.length;
    const peer = startPeer(['--import', holdModule, CLI, ...args], env);
    peers.push(peer);
    await waitFor(() => held.length > before, 'the worker to be held');
    return peer;
  };
  const release = (): void => {
    for (const socket of held.splice(0)) socket.write('go');
  };

  beforeEach(async () => {
    home = await tempDir('mcp-early-answers-');
    await writeFile(join(home.path, 'config.toml'), '');
    holdModule = pathToFileURL(join(home.path, 'hold-worker.mjs')).href;
    await writeFile(join(home.path, 'hold-worker.mjs'), HOLD_MODULE);
    hold = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => hold.listen(0, '127.0.0.1', resolve));
    const { port } = hold.address() as AddressInfo;
    env = serverEnv(home.path, { HOME: home.path, SHELL: '/bin/sh', HOLD_WORKER_PORT: String(port), CODEX_MULTIENV_CACHE_DIR: join(home.path, 'cache') });
  });
  afterEach(async () => {
    release();
    for (const peer of peers.splice(0)) {
      peer.child.stdin.end();
      await peer.closed;
    }
    await new Promise<void>((resolve) => hold.close(() => resolve()));
    await home.cleanup();
  });

  it('answers initialize (every version) and server/discover as the started server does; the worker then serves the rest in order, answering none twice', async () => {
    const relay = await startHeld();
    relay.send(...VERSIONS.map((version, i) => initialize(i, version)), request('d', 'server/discover', { _meta: modernMeta }));
    const early = new Map<unknown, Json>();
    for (let i = 0; i <= VERSIONS.length; i++) {
      const answer = await relay.next();
      early.set(answer.id, answer);
    }

    // The same requests to the server once it is up (the ping is answered only then), in one process.
    const foreground = startPeer([CLI, '--foreground'], env);
    peers.push(foreground);
    foreground.send(request('ready', 'ping'));
    expect(await foreground.next()).toEqual({ jsonrpc: '2.0', id: 'ready', result: {} });
    foreground.send(...VERSIONS.map((version, i) => initialize(i, version)), request('d', 'server/discover', { _meta: modernMeta }));
    for (let i = 0; i <= VERSIONS.length; i++) {
      const answer = await foreground.next();
      expect(early.get(answer.id)).toEqual(answer);
    }
    expect(early.get(VERSIONS.length - 1)).toMatchObject({ result: { protocolVersion: SUPPORTED_PROTOCOL_VERSIONS[0] } });

    // Held while the worker loads, then served in order: the worker saw every initialize, and answered none of them again.
    relay.send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), request('list', 'tools/list'), request('ping', 'ping'));
    release();
    expect(await relay.next()).toMatchObject({ id: 'list', result: { tools: expect.arrayContaining([expect.objectContaining({ name: 'codex' })]) } });
    expect(await relay.next()).toEqual({ jsonrpc: '2.0', id: 'ping', result: {} });
    // An initialize after the worker took over is the server's own, answered once.
    relay.send(initialize(99, '2025-06-18'), request('last', 'ping'));
    expect(await relay.next()).toMatchObject({ id: 99, result: { protocolVersion: '2025-06-18' } });
    expect(await relay.next()).toEqual({ jsonrpc: '2.0', id: 'last', result: {} });
  });

  /** Sends `lines` to a server in one process (`--foreground`) once it is up, and returns its answers by id. */
  const foregroundAnswers = async (args: string[], lines: string[]): Promise<Map<unknown, Json>> => {
    const foreground = startPeer([CLI, '--foreground', ...args], env);
    peers.push(foreground);
    foreground.send(request('ready', 'ping'));
    expect(await foreground.next()).toEqual({ jsonrpc: '2.0', id: 'ready', result: {} });
    foreground.send(...lines);
    const answers = new Map<unknown, Json>();
    while (answers.size < lines.filter((line) => 'id' in (JSON.parse(line) as Json)).length) {
      const answer = await foreground.next();
      answers.set(answer.id, answer);
    }
    return answers;
  };

  it.each([
    ['default', [], 'environment/add'],
    ['portable', ['--portable-tool-names'], 'environment_add'],
  ])(
    'answers tools/list (%s names) in both eras, after initialize of every version, exactly as the started server does, and the worker answers none again',
    async (_variant, args, addTool) => {
      const lines = [
        ...VERSIONS.flatMap((version, i) => [initialize(i, version), request(`list-${version}`, 'tools/list')]),
        request('modern-list', 'tools/list', { _meta: modernMeta }),
        request('modern-list-progress', 'tools/list', { _meta: { ...modernMeta, progressToken: 7 } }),
      ];
      const relay = await startHeld(args);
      relay.send(...lines);
      const early = new Map<unknown, Json>();
      for (let i = 0; i < VERSIONS.length * 2 + 2; i++) {
        const answer = await relay.next();
        early.set(answer.id, answer);
      }
      const served = await foregroundAnswers(args, lines);
      expect([...early.keys()].sort()).toEqual([...served.keys()].sort());
      for (const [id, answer] of served) expect(early.get(id)).toEqual(answer);
      expect(early.get('modern-list')).toMatchObject({ result: { tools: expect.arrayContaining([expect.objectContaining({ name: addTool })]) } });

      // The worker saw every tools/list too, and its answers were dropped: the next answer is the ping's.
      release();
      relay.send(request('ping', 'ping'));
      expect(await relay.next()).toEqual({ jsonrpc: '2.0', id: 'ping', result: {} });
      relay.send(request('after', 'tools/list'));
      expect(await relay.next()).toEqual({ ...served.get(`list-${VERSIONS[0] ?? ''}`), id: 'after' });
    },
  );

  it('leaves to the worker a tools/list it cannot tell the answer of: before initialize, with a cursor or other params, a log level; or tool names the configuration might make portable', async () => {
    const relay = await startHeld();
    relay.send(
      request('before-init', 'tools/list'),
      initialize(1, '2025-06-18'),
      request('cursor', 'tools/list', { cursor: 'next' }),
      request('other', 'tools/list', { other: true }),
      request('logged', 'tools/list', { _meta: { ...modernMeta, 'io.modelcontextprotocol/logLevel': 'debug' } }),
      request('d', 'server/discover', { _meta: modernMeta }),
    );
    // Only initialize and server/discover are answered while the worker is held.
    expect(await relay.next()).toMatchObject({ id: 1 });
    expect(await relay.next()).toMatchObject({ id: 'd' });
    release();
    // The worker answers each once (the two eras' answers may come in either order).
    const ids = [(await relay.next()).id, (await relay.next()).id, (await relay.next()).id, (await relay.next()).id];
    expect(ids.sort()).toEqual(['before-init', 'cursor', 'logged', 'other']);
    relay.send(request('ping', 'ping'));
    expect(await relay.next()).toEqual({ jsonrpc: '2.0', id: 'ping', result: {} });

    // The configuration names the key: the relay cannot tell which names the worker publishes.
    await writeFile(join(home.path, 'config.toml'), '[multienv]\nportable_tool_names = true\n');
    const configured = await startHeld();
    configured.send(
      initialize(1, '2025-06-18'),
      request('list', 'tools/list'),
      request('modern-list', 'tools/list', { _meta: modernMeta }),
      request('d', 'server/discover', { _meta: modernMeta }),
    );
    expect(await configured.next()).toMatchObject({ id: 1 });
    expect(await configured.next()).toMatchObject({ id: 'd' });
    release();
    const listed = [await configured.next(), await configured.next()];
    expect(listed.map((answer) => answer.id).sort()).toEqual(['list', 'modern-list']);
    for (const answer of listed) expect(answer).toMatchObject({ result: { tools: expect.arrayContaining([expect.objectContaining({ name: 'environment_add' })]) } });
  });

  it('leaves a first line it cannot answer to the server, which answers with a clear error and serves on', async () => {
    const relay = await startHeld();
    relay.send('not JSON at all', request(1, 'initialize', { protocolVersion: '2025-06-18' }), initialize(2, '2025-06-18'));
    // Only the valid initialize is answered before the worker loads.
    expect(await relay.next()).toMatchObject({ id: 2, result: { protocolVersion: '2025-06-18' } });
    release();
    // An initialize the server cannot read: invalid params, naming what is missing where.
    expect(await relay.next()).toEqual({
      jsonrpc: '2.0',
      id: 1,
      error: {
        code: -32602,
        message:
          'invalid initialize request: ✖ Invalid input: expected object, received undefined → at params.capabilities ✖ Invalid input: expected object, received undefined → at params.clientInfo',
      },
    });
    relay.send(request('after', 'ping'));
    expect(await relay.next()).toEqual({ jsonrpc: '2.0', id: 'after', result: {} });
    relay.child.stdin.end();
    expect(await relay.closed).toBe(0);
  });

  it('in one process (--foreground) too: requests whose params cannot be read get invalid params saying what is wrong where, before and after it is up; it serves on', async () => {
    const foreground = startPeer([CLI, '--foreground'], env);
    peers.push(foreground);
    // Sent at once: read while the server starts or after, the answers are the same.
    foreground.send(request(1, 'initialize', { protocolVersion: '2025-06-18', capabilities: {} }), request(2, 'initialize'));
    const first = [await foreground.next(), await foreground.next()].sort((a, b) => Number(a.id) - Number(b.id));
    expect(first).toEqual([
      { jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'invalid initialize request: ✖ Invalid input: expected object, received undefined → at params.clientInfo' } },
      { jsonrpc: '2.0', id: 2, error: { code: -32602, message: 'invalid initialize request: ✖ Invalid input: expected object, received undefined → at params' } },
    ]);
    foreground.send(request('ready', 'ping'));
    expect(await foreground.next()).toEqual({ jsonrpc: '2.0', id: 'ready', result: {} });
    foreground.send(request(3, 'initialize', { protocolVersion: 20250618, capabilities: {}, clientInfo: { name: 'early-test', version: '1.0.0' } }));
    expect(await foreground.next()).toEqual({
      jsonrpc: '2.0',
      id: 3,
      error: { code: -32602, message: 'invalid initialize request: ✖ Invalid input: expected string, received number → at params.protocolVersion' },
    });
    foreground.send(
      initialize(4, '2025-06-18'),
      JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      request(5, 'tools/call', { arguments: { prompt: 'hi' } }),
    );
    // Answered as they come: the refusal needs no handler, so it may pass the answer before it.
    const [initialized, call] = [await foreground.next(), await foreground.next()].sort((a, b) => Number(a.id) - Number(b.id));
    expect(initialized).toMatchObject({ id: 4, result: { protocolVersion: '2025-06-18' } });
    expect(call).toEqual({
      jsonrpc: '2.0',
      id: 5,
      error: { code: -32602, message: 'invalid tools/call request: ✖ Invalid input: expected string, received undefined → at params.name' },
    });
    foreground.send(request(6, 'tools/list'));
    expect(await foreground.next()).toMatchObject({ id: 6, result: { tools: expect.arrayContaining([expect.objectContaining({ name: 'codex' })]) } });
    foreground.child.stdin.end();
    expect(await foreground.closed).toBe(0);
  });

  it('ends, worker and all, when the client leaves right after initialize: stdin closed, or the relay stopped, before the worker loaded', async () => {
    const closing = await startHeld();
    closing.send(initialize(1, '2025-06-18'));
    expect(await closing.next()).toMatchObject({ id: 1, result: { serverInfo: { name: 'codex-multienv-mcp' } } });
    closing.child.stdin.end();
    release();
    expect(await closing.closed).toBe(0);

    // As the SDK's client stops its server: stdin closed, then SIGTERM (here before the worker loaded).
    const stopped = await startHeld();
    stopped.send(initialize(1, '2025-06-18'));
    expect(await stopped.next()).toMatchObject({ id: 1 });
    stopped.child.kill('SIGTERM');
    release();
    // 'close' waits for the worker too: it holds the client's pipes.
    expect(await stopped.closed).toBe(0);
  });

  it('does not answer for a worker that refuses its command line: the client sees the exit and why', async () => {
    const relay = await startHeld(['--bogus']);
    relay.send(initialize(1, '2025-06-18'));
    let stderr = '';
    relay.child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    release();
    expect(await relay.closed).toBe(2);
    expect(stderr).toMatch(/Unknown option '--bogus'/);
    expect(await Promise.race([relay.next(), Promise.resolve('no answer')])).toBe('no answer');
  });
});
