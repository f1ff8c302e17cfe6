// Our exec-server applying the sandbox it is asked for (process/start), over a real websocket and
// in-process: what a Codex client sees (sandboxType, sandboxDenied) and terminals under bwrap.
import { existsSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { localConnector, websocketConnector } from '../../src/environments/connectors.js';
import { ExecClient } from '../../src/exec/client.js';
import { createBwrapProbe } from '../../src/exec/bwrap.js';
import { ExecServer } from '../../src/exec/server.js';
import { ProcessStart, type SandboxContext } from '../../src/protocol/exec.js';
import { startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { workspaceWriteSandbox } from '../helpers/sandbox.js';

const workspaceWrite = (root: string): SandboxContext => workspaceWriteSandbox(root);

describe.each(['in-process', 'websocket'])('our exec-server confines process/start (%s)', (transport) => {
  let ws: { path: string; cleanup: () => Promise<void> };
  let outside: { path: string; cleanup: () => Promise<void> };
  let client: ExecClient;
  let server: ExecServer | undefined;
  let listening: ListeningProcess | undefined;
  const env = { PATH: '/usr/bin:/bin' };

  beforeAll(async () => {
    ws = await tempDir('exec-sbx-ws-');
    outside = await tempDir('exec-sbx-out-');
    if (transport === 'websocket') {
      listening = await startOurWsExecServer();
      client = await ExecClient.connect(websocketConnector(listening.url));
    } else {
      server = new ExecServer({ env: process.env, host: { env: process.env, cwd: ws.path, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' } });
      client = await ExecClient.connect(localConnector(server));
    }
  });
  afterAll(async () => {
    await client.close();
    await server?.close();
    await listening?.stop();
    await ws.cleanup();
    await outside.cleanup();
  });

  it('reports linuxSeccomp for a confined process and none otherwise', async () => {
    const confined = await client.request(ProcessStart, { processId: `t-${transport}-1`, argv: ['true'], cwd: pathToFileURL(ws.path).href, env, tty: false, arg0: null, sandbox: workspaceWrite(ws.path) });
    expect(confined.sandboxType).toBe('linuxSeccomp');
    const open = await client.request(ProcessStart, { processId: `t-${transport}-2`, argv: ['true'], cwd: pathToFileURL(ws.path).href, env, tty: false, arg0: null, sandbox: null });
    expect(open.sandboxType).toBe('none');
  });

  it('marks a write the sandbox refused as sandboxDenied, and a plain failure not', async () => {
    const denied = await client.startProcess({ argv: ['/bin/sh', '-c', `echo x > ${join(outside.path, 'f')}`], cwd: ws.path, env, tty: false, sandbox: workspaceWrite(ws.path) });
    const deniedResult = await denied.collect();
    expect(deniedResult.exitCode).not.toBe(0);
    expect(deniedResult.stderr.toString()).toMatch(/Read-only file system/);
    expect(denied.sandboxDenied).toBe(true);
    expect(existsSync(join(outside.path, 'f'))).toBe(false);

    const failed = await client.startProcess({ argv: ['/bin/sh', '-c', 'echo fine > ok; exit 3'], cwd: ws.path, env, tty: false, sandbox: workspaceWrite(ws.path) });
    expect((await failed.collect()).exitCode).toBe(3);
    expect(failed.sandboxDenied).toBe(false);
    expect(existsSync(join(ws.path, 'ok'))).toBe(true);
  });

  it('runs a terminal program inside the sandbox', async () => {
    const proc = await client.startProcess({ argv: ['/bin/sh', '-c', 'tty >/dev/null && echo has-tty; touch in-tty'], cwd: ws.path, env, tty: true, sandbox: workspaceWrite(ws.path) });
    const result = await proc.collect();
    expect(result.exitCode).toBe(0);
    expect(result.pty.toString()).toContain('has-tty');
    expect(existsSync(join(ws.path, 'in-tty'))).toBe(true);
  });
});

describe('without bubblewrap', () => {
  it('refuses a confined start with the fix, and still runs unconfined requests', async () => {
    const work = await tempDir('exec-sbx-nobwrap-');
    const server = new ExecServer({
      env: process.env,
      host: { env: process.env, cwd: work.path, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' },
      bwrapProbe: createBwrapProbe('bwrap', join(work.path, 'empty-bin')),
    });
    const client = await ExecClient.connect(localConnector(server));
    try {
      await expect(client.startProcess({ argv: ['true'], cwd: work.path, env: {}, tty: false, sandbox: workspaceWrite(work.path) })).rejects.toThrow(/bubblewrap .*not installed.*apt-get install bubblewrap/);
      const open = await client.startProcess({ argv: ['/bin/true'], cwd: work.path, env: {}, tty: false });
      expect((await open.collect()).exitCode).toBe(0);
    } finally {
      await client.close();
      await server.close();
      await work.cleanup();
    }
  });
});
