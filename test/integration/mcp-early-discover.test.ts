// `server/discover` answered while the server is still starting: a modern client (Claude Code waits
// 3 s for it) probes before anything else, and nothing in the answer depends on the configuration,
// the thread store or the environments. The built server as a client starts it (relay + worker),
// raw JSON-RPC lines over its stdio.
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { serverEnv, setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { CLI, waitFor } from '../helpers/process.js';
import { rawStdio, type RawPeer } from '../helpers/raw-peer.js';
import { say, type Json } from '../helpers/steps.js';

const MODERN = '2026-07-28';
const meta: Json = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} };
const line = (id: number, method: string, params: Json = { _meta: meta }): string => JSON.stringify({ jsonrpc: '2.0', id, method, params });

describe('server/discover while the server starts', () => {
  let world: McpTestWorld;
  let raw: (RawPeer & { exitCode: Promise<number | null> }) | undefined;
  let silent: Server | undefined;
  const sockets: Socket[] = [];

  beforeEach(async () => {
    world = await setUpMcpWorld('mcp-early-discover', () => say('unused'));
  });
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await raw?.close();
    raw = undefined;
    await new Promise<void>((resolve) => (silent === undefined ? resolve() : silent.close(() => resolve())));
    silent = undefined;
    await tearDownMcpWorld(world, undefined);
  });

  it('answers it while the start waits on a thread database that never answers; the rest waits for the server', async () => {
    // A loopback "database" that accepts and says nothing: the start waits there (until its connect time-out).
    silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent!.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    raw = rawStdio(
      process.execPath,
      [CLI],
      serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh', CODEX_MULTIENV_DATABASE_URL: `postgres://test@127.0.0.1:${port}/threads` }),
    );
    await waitFor(() => sockets.length > 0, 'the start to reach the database');

    raw.send(line(1, 'server/discover'));
    expect(await raw.next()).toEqual({
      jsonrpc: '2.0',
      id: 1,
      result: expect.objectContaining({
        resultType: 'complete',
        supportedVersions: [MODERN],
        capabilities: { tools: { listChanged: false }, logging: {}, extensions: { 'io.modelcontextprotocol/tasks': {} } },
        _meta: { 'io.modelcontextprotocol/serverInfo': expect.objectContaining({ name: 'codex-multienv-mcp' }) },
      }),
    });
    // The same checks as once started: an unsupported version is refused with -32022.
    raw.send(line(2, 'server/discover', { _meta: { ...meta, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } }));
    expect(await raw.next()).toMatchObject({ id: 2, error: { code: -32022, data: { supported: [MODERN], requested: '2099-01-01' } } });
    expect(sockets.every((socket) => !socket.destroyed)).toBe(true);
  });

  it('hands every other line to the server in order once it is up, whatever arrived with the probe', async () => {
    raw = rawStdio(process.execPath, [CLI], serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' }));
    raw.send([line(1, 'server/discover'), line(2, 'tools/list'), 'not JSON at all', line(3, 'server/discover')].join('\n'));
    const answers = [await raw.next(), await raw.next(), await raw.next()];
    const byId = new Map(answers.map((answer) => [answer.id, answer]));
    expect(byId.get(1)).toMatchObject({ result: { resultType: 'complete', supportedVersions: [MODERN] } });
    expect(byId.get(3)).toEqual({ ...byId.get(1), id: 3 });
    expect(byId.get(2)).toMatchObject({ result: { resultType: 'complete', tools: expect.arrayContaining([expect.objectContaining({ name: 'codex' })]) } });
    // A legacy client after the probe: initialize is the server's, as always.
    raw.send(line(4, 'initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'late-legacy', version: '1' } }));
    expect(await raw.next()).toMatchObject({ id: 4, result: { serverInfo: { name: 'codex-multienv-mcp' } } });
  });
});
