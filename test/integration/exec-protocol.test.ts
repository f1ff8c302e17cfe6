import { readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { ExecClient } from '../../src/exec/client.js';
import { websocketConnector } from '../../src/environments/connectors.js';
import { rawStdio, rawWebSocket, type RawPeer } from '../helpers/raw-peer.js';
import { CLI, isAlive, startCodexWsExecServer, startListening, startOurWsExecServer, startTcpProxy, tempDir, waitFor, type ListeningProcess } from '../helpers/process.js';
import { inPrivateNetwork } from '../helpers/network.js';

async function initialize(peer: RawPeer, id = 1, resumeSessionId: string | null = null): Promise<Record<string, unknown>> {
  peer.send(JSON.stringify({ id, method: 'initialize', params: { clientName: 'test', resumeSessionId } }));
  return peer.next();
}

describe('our exec-server: protocol edges over websocket', () => {
  let server: ListeningProcess;
  let work: { path: string; cleanup: () => Promise<void> };

  beforeAll(async () => {
    server = await startOurWsExecServer();
    work = await tempDir('exec-proto-');
  });
  afterAll(async () => {
    await server.stop();
    await work.cleanup();
  });

  it('enforces the handshake order and answers ids verbatim', async () => {
    const peer = await rawWebSocket(server.url);
    peer.send(JSON.stringify({ id: 1, method: 'process/start', params: { processId: 'early', argv: ['true'], cwd: `file://${work.path}`, env: {}, tty: false } }));
    expect(await peer.next()).toEqual({ id: 1, error: { code: -32600, message: 'client must call initialize before using exec methods' } });
    const init = await initialize(peer, 2);
    expect(init).toMatchObject({ id: 2, result: { sessionId: expect.any(String), environmentInfo: { platformOs: 'linux' } } });
    peer.send(JSON.stringify({ id: 'str-3', method: 'fs/getMetadata', params: { path: `file://${work.path}` } }));
    expect(await peer.next()).toEqual({ id: 'str-3', error: { code: -32600, message: 'client must send initialized before using filesystem methods' } });
    peer.send(JSON.stringify({ method: 'initialized', params: {} }));
    peer.send(JSON.stringify({ id: 4, method: 'initialize', params: { clientName: 'again' } }));
    expect(await peer.next()).toEqual({ id: 4, error: { code: -32600, message: 'initialize may only be sent once per connection' } });
    peer.send(JSON.stringify({ id: 5, method: 'environment/status' }));
    expect(await peer.next()).toEqual({ id: 5, result: { status: 'ready' } });
    await peer.close();
  });

  it('answers malformed input with clear errors and keeps the connection usable', async () => {
    const peer = await rawWebSocket(server.url);
    await initialize(peer);
    peer.send(JSON.stringify({ method: 'initialized' }));
    peer.send('{not json');
    expect(await peer.next()).toMatchObject({ id: -1, error: { code: -32600, message: expect.stringContaining('failed to parse JSON-RPC message') } });
    peer.send('[1,2]');
    expect(await peer.next()).toMatchObject({ id: -1, error: { code: -32600, message: expect.stringContaining('expected a JSON-RPC object') } });
    peer.send(JSON.stringify({ id: 1.5, method: 'environment/status' }));
    expect(await peer.next()).toMatchObject({ id: -1, error: { code: -32600 } });
    peer.send(JSON.stringify({ id: 7, method: 'process/kill', params: {} }));
    expect(await peer.next()).toEqual({ id: 7, error: { code: -32601, message: 'exec-server stub does not implement `process/kill` yet' } });
    peer.send(JSON.stringify({ id: 8, method: 'process/start', params: { processId: 'p', argv: ['true'], cwd: `file://${work.path}`, tty: false } }));
    expect(await peer.next()).toEqual({ id: 8, error: { code: -32602, message: 'missing field `env`' } });
    peer.send(JSON.stringify({ id: 9, method: 'process/signal', params: { processId: 'p', signal: 'kill' } }));
    expect(await peer.next()).toMatchObject({ id: 9, error: { code: -32602, message: expect.stringContaining('interrupt') } });
    peer.send(JSON.stringify({ id: 10, method: 'fs/readFile', params: { path: '/etc/hostname' } }));
    expect(await peer.next()).toEqual({ id: 10, error: { code: -32602, message: 'invalid URI: relative URL without a base' } });
    peer.send(JSON.stringify({ id: 11, method: 'environment/status', jsonrpc: '2.0' }));
    expect(await peer.next()).toEqual({ id: 11, result: { status: 'ready' } });
    await peer.close();
  });

  it('bounds the ids a client chooses, with invalid-params errors naming the field', async () => {
    const peer = await rawWebSocket(server.url);
    await initialize(peer);
    peer.send(JSON.stringify({ method: 'initialized' }));
    const cwd = `file://${work.path}`;
    const start = (id: number, processId: string): void =>
      peer.send(JSON.stringify({ id, method: 'process/start', params: { processId, argv: ['/bin/true'], cwd, env: {}, tty: false } }));
    const tooLong = (field: string, length: number): unknown => ({ code: -32602, message: `invalid \`${field}\`: must be at most 256 characters, got ${length}` });
    const empty = (field: string): unknown => ({ code: -32602, message: `invalid \`${field}\`: must not be empty` });
    start(1, '');
    expect(await peer.next()).toEqual({ id: 1, error: empty('processId') });
    start(2, 'p'.repeat(100_000));
    expect(await peer.next()).toEqual({ id: 2, error: tooLong('processId', 100_000) });
    start(3, 'p'.repeat(257));
    expect(await peer.next()).toEqual({ id: 3, error: tooLong('processId', 257) });
    peer.send(JSON.stringify({ id: 4, method: 'process/read', params: { processId: 'p'.repeat(300) } }));
    expect(await peer.next()).toEqual({ id: 4, error: tooLong('processId', 300) });
    peer.send(JSON.stringify({ id: 5, method: 'process/write', params: { processId: 'p', chunk: '', writeId: '' } }));
    expect(await peer.next()).toEqual({ id: 5, error: empty('writeId') });
    peer.send(JSON.stringify({ id: 6, method: 'process/write', params: { processId: 'p', chunk: '', writeId: 'w'.repeat(100_000) } }));
    expect(await peer.next()).toEqual({ id: 6, error: tooLong('writeId', 100_000) });
    peer.send(JSON.stringify({ id: 7, method: 'fs/open', params: { handleId: 'h'.repeat(33), path: cwd, mode: 'read' } }));
    expect(await peer.next()).toEqual({ id: 7, error: { code: -32602, message: 'invalid `handleId`: must not exceed 32 bytes, got 33' } });
    peer.send(JSON.stringify({ id: 8, method: 'http/request', params: { method: 'GET', url: 'http://127.0.0.1:9/', requestId: 'r'.repeat(100_000) } }));
    expect(await peer.next()).toEqual({ id: 8, error: tooLong('requestId', 100_000) });
    // The longest allowed id works, and the connection stayed usable throughout.
    start(9, 'p'.repeat(256));
    expect(await peer.next()).toMatchObject({ id: 9, result: { processId: 'p'.repeat(256) } });
    await peer.close();
    const other = await rawWebSocket(server.url);
    expect(await initialize(other, 1, 's'.repeat(100_000))).toEqual({ id: 1, error: tooLong('resumeSessionId', 100_000) });
    other.send(JSON.stringify({ id: 2, method: 'initialize', params: { clientName: 'c'.repeat(300) } }));
    expect(await other.next()).toEqual({ id: 2, error: { code: -32602, message: 'invalid `clientName`: must be at most 256 characters' } });
    await other.close();
  });

  it('closes the connection on an unexpected notification', async () => {
    const peer = await rawWebSocket(server.url);
    await initialize(peer);
    peer.send(JSON.stringify({ method: 'bogus/notification', params: {} }));
    await peer.closed;
  });

  it('does not let a long-poll process/read block other requests on the connection', async () => {
    const peer = await rawWebSocket(server.url);
    await initialize(peer);
    peer.send(JSON.stringify({ method: 'initialized' }));
    peer.send(JSON.stringify({ id: 2, method: 'process/start', params: { processId: 'slow', argv: ['/bin/sleep', '30'], cwd: `file://${work.path}`, env: {}, tty: false } }));
    expect(await peer.next()).toMatchObject({ id: 2, result: { processId: 'slow' } });
    peer.send(JSON.stringify({ id: 3, method: 'process/read', params: { processId: 'slow', afterSeq: 0, waitMs: 20000 } }));
    peer.send(JSON.stringify({ id: 4, method: 'environment/status' }));
    expect(await peer.next()).toEqual({ id: 4, result: { status: 'ready' } });
    peer.send(JSON.stringify({ id: 5, method: 'process/terminate', params: { processId: 'slow' } }));
    const seen: Record<string, unknown>[] = [];
    while (!seen.some((m) => m.id === 3)) seen.push(await peer.next());
    expect(seen.find((m) => m.id === 5)).toEqual({ id: 5, result: { running: true } });
    expect(seen.find((m) => m.id === 3)).toMatchObject({ result: { exited: true, exitCode: 137 } });
    await peer.close();
  });

  it('refuses a second attachment to a live session with -32010 and unknown sessions with -32600', async () => {
    const a = await rawWebSocket(server.url);
    const init = await initialize(a);
    const sessionId = (init.result as { sessionId: string }).sessionId;
    const b = await rawWebSocket(server.url);
    expect(await initialize(b, 1, sessionId)).toEqual({ id: 1, error: { code: -32010, message: `session ${sessionId} is already attached to another connection` } });
    expect(await initialize(b, 2, 'no-such-session')).toEqual({ id: 2, error: { code: -32600, message: 'unknown session id no-such-session' } });
    await a.close();
    await b.close();
  });
});

describe('our exec-server: authentication and listening', () => {
  let work: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    work = await tempDir('exec-auth-');
  });
  afterAll(() => work.cleanup());

  it('requires the capability token on the upgrade, serves /readyz without it', async () => {
    const tokenFile = join(work.path, 'token');
    await writeFile(tokenFile, 's3cret-token\n');
    const server = await startOurWsExecServer(['--ws-auth', 'capability-token', '--ws-token-file', tokenFile]);
    try {
      const httpUrl = server.url.replace('ws://', 'http://');
      expect((await fetch(`${httpUrl}/readyz`)).status).toBe(200);
      expect((await fetch(`${httpUrl}/exec`)).status).toBe(404);
      await expect(rawWebSocket(server.url)).rejects.toThrow(/HTTP 401: missing websocket bearer token/);
      await expect(rawWebSocket(server.url, { authorization: 'Bearer wrong' })).rejects.toThrow(/HTTP 401: invalid websocket bearer token/);
      await expect(rawWebSocket(server.url, { authorization: 's3cret-token' })).rejects.toThrow(/HTTP 401: invalid authorization header/);
      const ok = await rawWebSocket(server.url, { authorization: 'bearer s3cret-token' });
      expect(await initialize(ok)).toMatchObject({ result: { sessionId: expect.any(String) } });
      await ok.close();
    } finally {
      await server.stop();
    }
  });

  it('refuses to listen on a non-loopback address without auth, and rejects bad --listen values', async () => {
    // In a network namespace of its own: were the refusal broken, it would bind nothing real.
    await expect(startListening(...inPrivateNetwork(process.execPath, [CLI, 'exec-server', '--listen', 'ws://0.0.0.0:0']))).rejects.toThrow(
      /refusing to listen on non-loopback address 0.0.0.0 without authentication/,
    );
    await expect(startListening(process.execPath, [CLI, 'exec-server', '--listen', 'http://127.0.0.1:0'])).rejects.toThrow(
      /unsupported --listen URL `http:\/\/127.0.0.1:0`; expected `ws:\/\/IP:PORT` or `stdio`/,
    );
  });
});

/** Sends a websocket upgrade by hand on 127.0.0.1; answers the status and, for a refusal, the body. */
function rawUpgrade(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => fail(new Error(`no complete answer to the upgrade: ${JSON.stringify(received)}`)), 10_000);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const answer = (): { status: number; body: string } | undefined => {
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1]), body: received.slice(end + 4) };
    };
    socket.on('error', fail);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      const result = answer();
      // A 101 keeps the socket open; anything else is complete when the server closes.
      if (result?.status === 101) {
        clearTimeout(timer);
        socket.destroy();
        resolve(result);
      }
    });
    socket.on('end', () => {
      clearTimeout(timer);
      const result = answer();
      if (result === undefined) reject(new Error(`the server closed without an answer: ${JSON.stringify(received)}`));
      else resolve(result);
    });
    const lines = [
      'GET / HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

describe('our exec-server: upgrades from web pages', () => {
  const refused = { status: 403, body: 'websocket upgrade refused: requests from web pages (with an Origin header) are not allowed' };
  let work: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    work = await tempDir('exec-origin-');
  });
  afterAll(() => work.cleanup());

  it('refuses an upgrade carrying an Origin header when no token is configured', async () => {
    const server = await startOurWsExecServer();
    try {
      expect(await rawUpgrade(server.url, { Origin: 'https://evil.example' })).toEqual(refused);
      expect(await rawUpgrade(server.url, { Origin: 'null' })).toEqual(refused);
      expect(await rawUpgrade(server.url, { Origin: `http://127.0.0.1:${new URL(server.url).port}` })).toEqual(refused);
      expect(await rawUpgrade(server.url)).toEqual({ status: 101, body: '' });
    } finally {
      await server.stop();
    }
  });

  it('refuses an Origin header before checking the token, and serves only the allowed origins', async () => {
    const tokenFile = join(work.path, 'token');
    await writeFile(tokenFile, 'origin-token\n');
    const allow = ['--allow-origin', 'https://App.example:443/', '--allow-origin', 'http://localhost:3000'];
    const server = await startOurWsExecServer(['--ws-auth', 'capability-token', '--ws-token-file', tokenFile, ...allow]);
    const token = { Authorization: 'Bearer origin-token' };
    try {
      expect(await rawUpgrade(server.url, { ...token, Origin: 'https://evil.example' })).toEqual(refused);
      expect(await rawUpgrade(server.url, { Origin: 'https://evil.example' })).toEqual(refused);
      expect(await rawUpgrade(server.url, { ...token, Origin: 'http://app.example' })).toEqual(refused);
      expect(await rawUpgrade(server.url, { ...token, Origin: 'https://app.example' })).toEqual({ status: 101, body: '' });
      expect(await rawUpgrade(server.url, { ...token, Origin: 'http://localhost:3000' })).toEqual({ status: 101, body: '' });
      expect(await rawUpgrade(server.url, { Origin: 'https://app.example' })).toEqual({ status: 401, body: 'missing websocket bearer token' });
      expect(await rawUpgrade(server.url, token)).toEqual({ status: 101, body: '' });
      // A client that sends an allowed origin gets a working session.
      const peer = await rawWebSocket(server.url, { ...token, origin: 'https://app.example' });
      expect(await initialize(peer)).toMatchObject({ result: { sessionId: expect.any(String) } });
      await peer.close();
    } finally {
      await server.stop();
    }
  });

  it('rejects an --allow-origin that is not an origin', async () => {
    await expect(startOurWsExecServer(['--allow-origin', 'https://app.example/path'])).rejects.toThrow(/--allow-origin `https:\/\/app.example\/path` is not an origin/);
  });
});

/** Prints the pid of a background job it leaves in its process group, then exits. */
const LEAVES_A_BACKGROUND_JOB = 'sleep 300 & echo $!; echo bye';

/** A background job the test started: its pid once printed, and whether it was seen gone. */
interface Job {
  pid: number;
  gone: boolean;
}

/**
 * Starts {@link LEAVES_A_BACKGROUND_JOB} and returns once the command has exited; `job.pid` is set
 * as soon as it is printed, so a failure after that still cleans up.
 */
async function startBackgroundJob(peer: RawPeer, cwd: string, job: Job): Promise<void> {
  const params = { processId: 'job', argv: ['/bin/sh', '-c', LEAVES_A_BACKGROUND_JOB], cwd: `file://${cwd}`, env: { PATH: '/usr/bin:/bin' }, tty: false };
  peer.send(JSON.stringify({ id: 2, method: 'process/start', params }));
  let stdout = '';
  let exited = false;
  while (!exited || !stdout.endsWith('bye\n')) {
    const message = await peer.next(30_000);
    const event = message.params as { chunk?: string; exitCode?: number } | undefined;
    if (message.method === 'process/output') stdout += Buffer.from(event?.chunk ?? '', 'base64').toString();
    if (message.method === 'process/exited') {
      expect(event?.exitCode).toBe(0);
      exited = true;
    }
    if (job.pid === 0 && stdout.includes('\n')) job.pid = Number(stdout.split('\n')[0]);
  }
  expect(isAlive(job.pid)).toBe(true);
}

/** After a failed test: kills the background job it started, if still there. */
function killLeftoverJob(job: Job): void {
  if (!job.gone && job.pid > 0 && isAlive(job.pid)) process.kill(job.pid, 'SIGKILL');
}

/** The exit code, or a failure when the process has not exited within `ms`. */
async function exitWithin(exitCode: Promise<number | null>, what: string, ms = 20_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not exit within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([exitCode, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

describe('our exec-server over stdio', () => {
  it('accepts initialize, initialized and a request pipelined in one write', async () => {
    const work = await tempDir('exec-pipelined-');
    const peer = rawStdio(process.execPath, [CLI, 'exec-server', '--listen', 'stdio']);
    peer.send(
      [
        JSON.stringify({ id: 1, method: 'initialize', params: { clientName: 'pipelined' } }),
        JSON.stringify({ method: 'initialized' }),
        JSON.stringify({ id: 2, method: 'fs/getMetadata', params: { path: `file://${work.path}` } }),
      ].join('\n'),
    );
    expect(await peer.next()).toMatchObject({ id: 1, result: { sessionId: expect.any(String) } });
    expect(await peer.next()).toMatchObject({ id: 2, result: { isDirectory: true } });
    await peer.close();
    expect(await peer.exitCode).toBe(0);
    await work.cleanup();
  });

  it('exits, with a warning, after an unexpected notification (the real codex exec-server stops answering and exits on its next read)', async () => {
    const work = await tempDir('exec-stdio-notification-');
    const log = join(work.path, 'log');
    const ours = rawStdio(process.execPath, [CLI, 'exec-server', '--listen', 'stdio'], { ...process.env, CODEX_MULTIENV_LOG_FILE: log });
    try {
      await initialize(ours);
      ours.send(JSON.stringify({ method: 'initialized' }));
      ours.send(JSON.stringify({ method: 'bogus/notification', params: {} }));
      // Stdin stays open: only the notification can make it exit. (How soon Codex 0.169 exits
      // depends on when it next reads, so it is not run side by side here.)
      expect(await exitWithin(ours.exitCode, 'our exec-server')).toBe(0);
      const logged = await readFile(log, 'utf8');
      expect(logged).toMatch(/WARN .*closing connection after an unexpected notification .*"method":"bogus\/notification"/);
      expect(logged).toMatch(/WARN .*stdio exec-server exiting: it closed the connection after a protocol violation by the client/);
    } finally {
      await ours.close();
      await work.cleanup();
    }
  });

  it('kills the background jobs of a command that already exited when stdin closes', async () => {
    const work = await tempDir('exec-stdio-job-');
    const peer = rawStdio(process.execPath, [CLI, 'exec-server', '--listen', 'stdio']);
    const job: Job = { pid: 0, gone: false };
    try {
      await initialize(peer);
      peer.send(JSON.stringify({ method: 'initialized' }));
      await startBackgroundJob(peer, work.path, job);
      await peer.close();
      expect(await peer.exitCode).toBe(0);
      await waitFor(() => !isAlive(job.pid), `background job ${job.pid} to be killed`);
      job.gone = true;
    } finally {
      killLeftoverJob(job);
      await peer.close();
      await work.cleanup();
    }
  });

  it('kills the whole process group of every process when stdin closes', async () => {
    const work = await tempDir('exec-stdio-');
    const peer = rawStdio(process.execPath, [CLI, 'exec-server', '--listen', 'stdio']);
    await initialize(peer);
    peer.send(JSON.stringify({ method: 'initialized' }));
    peer.send(
      JSON.stringify({
        id: 2,
        method: 'process/start',
        params: { processId: 'bg', argv: ['/bin/sh', '-c', 'sleep 300 & echo $!; wait'], cwd: `file://${work.path}`, env: {}, tty: false },
      }),
    );
    let pid = 0;
    while (pid === 0) {
      const message = await peer.next();
      if (message.method === 'process/output')
        pid = Number(
          Buffer.from((message.params as { chunk: string }).chunk, 'base64')
            .toString()
            .trim(),
        );
    }
    expect(isAlive(pid)).toBe(true);
    await peer.close();
    expect(await peer.exitCode).toBe(0);
    await waitFor(() => !isAlive(pid), `grandchild ${pid} to be killed`);
    await work.cleanup();
  });
});

async function resumeAcrossDrop(url: string, work: string): Promise<void> {
  const proxy = await startTcpProxy(Number(new URL(url).port));
  const client = await ExecClient.connect(websocketConnector(`ws://127.0.0.1:${proxy.port}`));
  const states: string[] = [];
  client.onStateChange((state) => states.push(state));
  const sessionId = client.sessionId;
  try {
    const script = 'echo one; while [ ! -e go ]; do sleep 0.02; done; echo two; echo three; touch done';
    const process = await client.startProcess({ argv: ['/bin/sh', '-c', script], cwd: work, env: { PATH: '/usr/bin:/bin' }, tty: false });
    let seen = '';
    while (!seen.includes('one')) {
      await process.waitForEvents(10_000);
      for (const event of process.drain()) if (event.kind === 'output') seen += event.data.toString();
    }
    proxy.pause();
    proxy.cut();
    await waitFor(() => client.state === 'reconnecting', 'the client to notice the drop');
    await writeFile(join(work, 'go'), '');
    await waitFor(() => existsSync(join(work, 'done')), 'the process to finish while detached');
    proxy.resume();
    const rest = await process.collect();
    expect(seen + rest.stdout.toString()).toBe('one\ntwo\nthree\n');
    expect(rest.exitCode).toBe(0);
    expect(client.sessionId).toBe(sessionId);
    expect(states).toEqual(['reconnecting', 'connected']);
  } finally {
    await client.close();
    await proxy.close();
  }
}

describe('websocket session resume with output replay', () => {
  it('resumes our exec-server session after a dropped connection', async () => {
    const work = await tempDir('resume-ours-');
    const server = await startOurWsExecServer();
    try {
      await resumeAcrossDrop(server.url, work.path);
    } finally {
      await server.stop();
      await work.cleanup();
    }
  });

  it('resumes a real codex exec-server session after a dropped connection', async () => {
    const work = await tempDir('resume-codex-');
    const home = await tempDir('codex-home-');
    const server = await startCodexWsExecServer(home.path);
    try {
      await resumeAcrossDrop(server.url, work.path);
    } finally {
      await server.stop();
      await work.cleanup();
      await home.cleanup();
    }
  });

  it('kills the background jobs of a command that already exited when a detached session expires', async () => {
    const work = await tempDir('retention-job-');
    const server = await startOurWsExecServer(['--session-retention-sec', '0.3']);
    const job: Job = { pid: 0, gone: false };
    try {
      const peer = await rawWebSocket(server.url);
      await initialize(peer);
      peer.send(JSON.stringify({ method: 'initialized' }));
      await startBackgroundJob(peer, work.path, job);
      await peer.close();
      await waitFor(() => !isAlive(job.pid), `the detached session to expire and kill background job ${job.pid}`);
      job.gone = true;
    } finally {
      killLeftoverJob(job);
      await server.stop();
      await work.cleanup();
    }
  });

  it('kills a detached session after the retention window, and it cannot be resumed', async () => {
    const work = await tempDir('retention-');
    const server = await startOurWsExecServer(['--session-retention-sec', '0.3']);
    try {
      const peer = await rawWebSocket(server.url);
      const init = await initialize(peer);
      const sessionId = (init.result as { sessionId: string }).sessionId;
      peer.send(JSON.stringify({ method: 'initialized' }));
      peer.send(
        JSON.stringify({
          id: 2,
          method: 'process/start',
          params: { processId: 'hb', argv: ['/bin/sh', '-c', 'echo $$; exec sleep 300'], cwd: `file://${work.path}`, env: {}, tty: false },
        }),
      );
      let pid = 0;
      while (pid === 0) {
        const message = await peer.next();
        if (message.method === 'process/output')
          pid = Number(
            Buffer.from((message.params as { chunk: string }).chunk, 'base64')
              .toString()
              .trim(),
          );
      }
      await peer.close();
      await waitFor(() => !isAlive(pid), 'the detached session to expire and kill its process');
      const again = await rawWebSocket(server.url);
      expect(await initialize(again, 1, sessionId)).toEqual({ id: 1, error: { code: -32600, message: `unknown session id ${sessionId}` } });
      await again.close();
    } finally {
      await server.stop();
      await work.cleanup();
    }
  });
});
