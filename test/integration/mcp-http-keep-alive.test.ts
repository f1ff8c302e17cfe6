// Kept-alive connections of `codex-multienv serve` (issue 17's scale-out failures): a client
// closes an idle connection by a timer set from the server's `Keep-Alive: timeout=N`, and a busy
// client's timer runs late. The server must not be the one closing at that moment, or the late
// client's request fails ("fetch failed") unanswered. One raw connection plays the late client.
import { connect, type Socket } from 'node:net';
import { serverEnv, setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { CLI, startListening, type ListeningProcess } from '../helpers/process.js';
import { say } from '../helpers/steps.js';

/** The idle time the server announces in these tests. */
const KEEP_ALIVE_SEC = 1;

/** A modern `server/discover` request as raw HTTP/1.1 (kept alive: the default). */
function discoverRequest(port: string): string {
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'server/discover',
    params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} } },
  });
  return (
    `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\naccept: application/json\r\n` + `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/** Reads one answer (headers and a `content-length` or chunked body) off `socket`; rejects if the connection ends first. */
function readAnswer(socket: Socket): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = text.slice(0, end);
      const rest = text.slice(end + 4);
      const length = /\r\ncontent-length: (\d+)/i.exec(head)?.[1];
      let body: string;
      if (length !== undefined) {
        if (Buffer.byteLength(rest) < Number(length)) return;
        body = rest;
      } else {
        // Chunked: whole once the last (empty) chunk came; the chunks are joined without their sizes.
        if (!rest.endsWith('0\r\n\r\n')) return;
        body = rest.replace(/(?:^|\r\n)[0-9a-f]+\r\n/gi, '');
      }
      socket.off('data', onData);
      socket.off('end', onEnd);
      resolve({ head, body });
    };
    const onEnd = (): void => reject(new Error(`the server closed the connection before answering (read so far: ${JSON.stringify(text)})`));
    socket.on('data', onData);
    socket.once('end', onEnd);
  });
}

describe('serve: kept-alive connections', () => {
  let world: McpTestWorld;
  let server: ListeningProcess | undefined;
  let socket: Socket | undefined;

  beforeEach(async () => {
    world = await setUpMcpWorld('mcp-keep-alive', () => say('unused'));
  });
  afterEach(async () => {
    socket?.destroy();
    await server?.stop();
    await tearDownMcpWorld(world, undefined);
  });

  it('serves a client that reuses an idle connection well after the announced time (its idle timer ran late)', async () => {
    server = await startListening(
      process.execPath,
      [CLI, 'serve', '--listen', 'http://127.0.0.1:0', '--keep-alive-sec', String(KEEP_ALIVE_SEC)],
      serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' }),
    );
    const url = new URL(server.url);
    const client = connect(Number(url.port), url.hostname);
    socket = client;
    await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));

    client.write(discoverRequest(url.port));
    const first = await readAnswer(client);
    expect(first.head).toMatch(/^HTTP\/1\.1 200 /);
    expect(first.head).toMatch(new RegExp(`\\r\\nKeep-Alive: timeout=${KEEP_ALIVE_SEC}\\r\\n`, 'i'));

    // The late client: its idle timer fires two seconds after the announced time (a prompt one
    // would close the connection a second before it). Node.js alone closes the connection one
    // second after the announced time; whichever comes first decides.
    const lateBy = 2_000;
    const outcome = await new Promise<'timer' | 'closed'>((resolve) => {
      client.setTimeout(KEEP_ALIVE_SEC * 1000 + lateBy, () => resolve('timer'));
      client.once('end', () => resolve('closed'));
    });
    client.setTimeout(0);
    expect(outcome).toBe('timer');

    client.write(discoverRequest(url.port));
    const second = await readAnswer(client);
    expect(second.head).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(second.body)).toMatchObject({ jsonrpc: '2.0', id: 1, result: expect.any(Object) });
  });

  it('refuses a --keep-alive-sec that is not a whole number of seconds', async () => {
    await expect(
      startListening(process.execPath, [CLI, 'serve', '--listen', 'http://127.0.0.1:0', '--keep-alive-sec', '0.5'], serverEnv(world.home.path, { HOME: world.home.path })),
    ).rejects.toThrow(/--keep-alive-sec must be a whole number of at least 1, got `0\.5`/);
  });
});
