// A stdio environment serves this server's own client and the loopback relay's clients over the
// one command it started (issue 15): a real stdio exec-server (our CLI) behind a command that counts
// its spawns, real websocket clients on the relay in front, on 127.0.0.1.
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LoopbackRelay } from '../../src/environments/loopback-relay.js';
import { EnvironmentRegistry } from '../../src/environments/registry.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, isAlive, tempDir, waitFor } from '../helpers/process.js';
import { rawWebSocket, type RawPeer } from '../helpers/raw-peer.js';

/** The answer to request `id`, skipping the notifications that come before it. */
async function answer(peer: RawPeer, id: number): Promise<Record<string, unknown>> {
  for (;;) {
    const message = await peer.next();
    if (message.id === id) return message;
  }
}

describe('a stdio environment shared by this server and the relay', () => {
  let registry: EnvironmentRegistry;
  let relay: LoopbackRelay;
  let dir: { path: string; cleanup: () => Promise<void> };
  let ws: string;
  let spawns: string;
  const peers: RawPeer[] = [];

  beforeEach(async () => {
    dir = await tempDir('stdio-shared-');
    ws = join(dir.path, 'ws');
    await mkdir(ws);
    spawns = join(dir.path, 'spawns');
    registry = new EnvironmentRegistry({ config: { includeLocal: false, defaultId: null, environments: [] }, configSource: 'test', launcherEnv: networkEnv(process.env) });
    // The command appends a line per start, then becomes the exec-server.
    await registry.add({
      id: 'pipe',
      program: '/bin/sh',
      args: ['-c', 'echo spawn >> "$0"; exec "$1" "$2" exec-server --listen stdio', spawns, process.execPath, CLI],
    });
    relay = new LoopbackRelay({ registry });
  });
  afterEach(async () => {
    await Promise.all(peers.splice(0).map((peer) => peer.close()));
    await relay.close();
    await registry.close();
    await dir.cleanup();
  });

  async function relayPeer(): Promise<RawPeer> {
    const exposed = await relay.expose('pipe');
    const peer = await rawWebSocket(exposed.url, { authorization: `Bearer ${exposed.authBearerToken}` });
    peers.push(peer);
    peer.send(JSON.stringify({ id: 1, method: 'initialize', params: { clientName: 'codex-environment', resumeSessionId: null } }));
    const initialized = await answer(peer, 1);
    peer.send(JSON.stringify({ method: 'initialized', params: {} }));
    return Object.assign(peer, { sessionId: (initialized.result as { sessionId: string }).sessionId });
  }

  const spawnCount = async (): Promise<number> => (await readFile(spawns, 'utf8')).split('\n').filter(Boolean).length;

  it('starts the command once for its own client and every relay client, which share its session', async () => {
    const environment = registry.get('pipe')!;
    const client = await environment.client();
    const first = (await relayPeer()) as RawPeer & { sessionId: string };
    const second = (await relayPeer()) as RawPeer & { sessionId: string };
    expect(first.sessionId).toBe(client.sessionId);
    expect(second.sessionId).toBe(client.sessionId);

    first.send(JSON.stringify({ id: 2, method: 'fs/writeFile', params: { path: `file://${ws}/a.txt`, dataBase64: Buffer.from('from the relay').toString('base64') } }));
    expect(await answer(first, 2)).toEqual({ id: 2, result: {} });
    expect((await client.readFile(join(ws, 'a.txt'))).toString()).toBe('from the relay');
    first.send(JSON.stringify({ id: 3, method: 'process/start', params: { processId: 'p', argv: ['/bin/pwd'], cwd: `file://${ws}`, env: {}, tty: false } }));
    expect(await answer(first, 3)).toMatchObject({ id: 3, result: { processId: 'p' } });
    // Read until the process is closed: a long-poll may return on its exit before its output.
    let output = '';
    for (let id = 4, afterSeq = 0, closed = false; !closed; id++) {
      first.send(JSON.stringify({ id, method: 'process/read', params: { processId: 'p', afterSeq, waitMs: 5000 } }));
      const read = (await answer(first, id)).result as { chunks: { chunk: string }[]; nextSeq: number; closed: boolean };
      output += read.chunks.map((c) => Buffer.from(c.chunk, 'base64').toString()).join('');
      afterSeq = read.nextSeq - 1;
      closed = read.closed;
    }
    expect(output).toBe(`${ws}\n`);

    const ran = await client.startProcess({ argv: ['/bin/echo', 'builtin'], cwd: ws, env: {}, tty: false });
    expect((await ran.collect()).stdout.toString()).toBe('builtin\n');

    // Large answers and output (forwarded with only their ids edited) arrive whole, to the right caller.
    const big = Buffer.alloc(300_000, 'b');
    await client.writeFile(join(ws, 'big.txt'), big);
    first.send(JSON.stringify({ id: 'read-big', method: 'fs/readFile', params: { path: `file://${ws}/big.txt` } }));
    let bigAnswer: Record<string, unknown>;
    do bigAnswer = await first.next();
    while (bigAnswer.id !== 'read-big');
    expect(Buffer.from((bigAnswer.result as { dataBase64: string }).dataBase64, 'base64').equals(big)).toBe(true);
    expect((await client.readFile(join(ws, 'big.txt'))).equals(big)).toBe(true);
    const loud = await client.startProcess({ argv: ['/bin/cat', 'big.txt'], cwd: ws, env: {}, tty: false });
    expect((await loud.collect()).stdout.equals(big)).toBe(true);
    expect(await spawnCount()).toBe(1);
  });

  it("keeps each client's process ids its own, and a closing relay client stops only its processes", async () => {
    const client = await registry.get('pipe')!.client();
    const shell = (name: string): string[] => ['/bin/sh', '-c', `echo $$ > ${name}.pid; exec sleep 600`];
    const mine = await client.startProcess({ processId: 'p1', argv: shell('builtin'), cwd: ws, env: {}, tty: false });
    const peer = await relayPeer();
    // The same id as this server's own process: both exist, each in its own name space.
    peer.send(JSON.stringify({ id: 2, method: 'process/start', params: { processId: 'p1', argv: shell('relay'), cwd: `file://${ws}`, env: {}, tty: false } }));
    expect(await answer(peer, 2)).toMatchObject({ id: 2, result: { processId: 'p1' } });
    await waitFor(() => existsSync(join(ws, 'builtin.pid')) && existsSync(join(ws, 'relay.pid')), 'both processes to start');
    const builtinPid = Number((await readFile(join(ws, 'builtin.pid'), 'utf8')).trim());
    const relayPid = Number((await readFile(join(ws, 'relay.pid'), 'utf8')).trim());

    // Guessing the other client's id as the server sees it reaches nothing.
    peer.send(JSON.stringify({ id: 3, method: 'process/terminate', params: { processId: '1~p1' } }));
    expect(await answer(peer, 3)).toEqual({ id: 3, result: { running: false } });
    peer.send(JSON.stringify({ id: 4, method: 'fs/readBlock', params: { handleId: 'h1', offset: 0, len: 1 } }));
    expect(await answer(peer, 4)).toMatchObject({ id: 4, error: { code: -32004, message: 'unknown file handle `h1`' } });

    await peer.close();
    await waitFor(() => !isAlive(relayPid), "the relay client's process to be stopped");
    expect(isAlive(builtinPid)).toBe(true);
    expect(await mine.terminate()).toBe(true);
    expect(await spawnCount()).toBe(1);
  });

  it('answers a relay client that misbehaves without disturbing the shared session', async () => {
    const client = await registry.get('pipe')!.client();
    const peer = await relayPeer();
    peer.send('{not json');
    expect(await peer.next()).toMatchObject({ id: -1, error: { code: -32600 } });
    peer.send(JSON.stringify({ id: 2, method: 'initialize', params: { clientName: 'again', resumeSessionId: null } }));
    expect(await answer(peer, 2)).toMatchObject({ error: { code: -32600, message: 'initialize may only be sent once per connection' } });
    // An unsolicited response closes that client's connection only, as the server closes its own.
    peer.send(JSON.stringify({ id: 99, result: {} }));
    await peer.closed;
    const ran = await client.startProcess({ argv: ['/bin/echo', 'still here'], cwd: ws, env: {}, tty: false });
    expect((await ran.collect()).stdout.toString()).toBe('still here\n');
    expect(await spawnCount()).toBe(1);
  });
});
