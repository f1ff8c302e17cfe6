import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExecClient } from '../../src/exec/client.js';
import { websocketConnector } from '../../src/environments/connectors.js';
import { startCodexWsExecServer, startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { startWsProxy, type StartDrop } from '../helpers/ws-proxy.js';

// A websocket drop while `process/start` is unanswered: the client resumes the session, asks the
// server whether the start happened and sends it again only if not. The command appends a line to
// a marks file, so the test sees how many times it ran.

const ENV = { PATH: '/usr/bin:/bin' };
/** Marks its run, prints, waits for the test's go file, prints again, exits 3. */
const SCRIPT = 'echo ran >> marks; echo one; while [ ! -e go ]; do sleep 0.02; done; echo two; exit 3';

async function startsOnceAcrossDrop(serverUrl: string, when: StartDrop): Promise<void> {
  const work = await tempDir('start-drop-');
  const proxy = await startWsProxy(serverUrl);
  const client = await ExecClient.connect(websocketConnector(proxy.url));
  const sessionId = client.sessionId;
  try {
    const dropped = proxy.dropAtStart(when);
    const proc = await client.startProcess({ argv: ['/bin/sh', '-c', SCRIPT], cwd: work.path, env: ENV, tty: false });
    await dropped;
    expect(client.sessionId).toBe(sessionId);
    await writeFile(join(work.path, 'go'), '');
    const collected = await proc.collect();
    expect({ stdout: collected.stdout.toString(), stderr: collected.stderr.toString(), exitCode: collected.exitCode }).toEqual({ stdout: 'one\ntwo\n', stderr: '', exitCode: 3 });
    expect(await readFile(join(work.path, 'marks'), 'utf8')).toBe('ran\n');
    // Started and answered: sent once. Swallowed before the server: sent once more after the resume.
    expect(proxy.forwarded.filter((method) => method === 'process/start')).toEqual(['process/start']);
    expect(client.state).toBe('connected');
  } finally {
    await client.close();
    await proxy.close();
    await work.cleanup();
  }
}

describe('process/start across a dropped websocket, our exec-server', () => {
  let server: ListeningProcess;

  beforeAll(async () => {
    server = await startOurWsExecServer();
  });

  afterAll(async () => {
    await server.stop();
  });

  it('a start the server answered while the connection dropped is found on the resumed session and not sent again', async () => {
    await startsOnceAcrossDrop(server.url, 'after-answer');
  });

  it('a start lost before it reached the server is sent again once after the resume', async () => {
    await startsOnceAcrossDrop(server.url, 'before-forward');
  });

  it('when the session cannot be resumed, the error says the command may have started', async () => {
    const work = await tempDir('start-drop-');
    const proxy = await startWsProxy(server.url);
    const client = await ExecClient.connect(websocketConnector(proxy.url), { reconnectWindowMs: 500 });
    try {
      // The open connection stays; every reconnect is refused, as when the server is gone.
      proxy.refuse();
      const dropped = proxy.dropAtStart('after-answer');
      const start = client.startProcess({ argv: ['/bin/sh', '-c', 'echo ran >> marks'], cwd: work.path, env: ENV, tty: false });
      await expect(start).rejects.toThrow(`the connection to ${proxy.url} was lost before it answered process/start`);
      await expect(start).rejects.toThrow(`the command may or may not have started on ${proxy.url}`);
      await dropped;
      // It had started: the message was right not to say otherwise.
      expect(await readFile(join(work.path, 'marks'), 'utf8')).toBe('ran\n');
      expect(client.state).toBe('closed');
    } finally {
      await client.close();
      await proxy.close();
      await work.cleanup();
    }
  });
});

describe('process/start across a dropped websocket, the real codex exec-server', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let server: ListeningProcess;

  beforeAll(async () => {
    home = await tempDir('codex-home-');
    server = await startCodexWsExecServer(home.path);
  });

  afterAll(async () => {
    await server.stop();
    await home.cleanup();
  });

  it('a start the server answered while the connection dropped is found on the resumed session and not sent again', async () => {
    await startsOnceAcrossDrop(server.url, 'after-answer');
  });

  it('a start lost before it reached the server is sent again once after the resume', async () => {
    await startsOnceAcrossDrop(server.url, 'before-forward');
  });
});
