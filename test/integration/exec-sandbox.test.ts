// Our exec-server applying the sandbox it is asked for (process/start and fs/*), over a real
// websocket and in-process: what a Codex client sees (sandboxType, sandboxDenied), terminals under
// bwrap, no capabilities even for root, and file writes judged by where they land.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { localConnector, websocketConnector } from '../../src/environments/connectors.js';
import { ExecClient } from '../../src/exec/client.js';
import { createBwrapProbe } from '../../src/exec/bwrap.js';
import { ExecServer } from '../../src/exec/server.js';
import { FsCopy, FsCreateDirectory, FsOpen, FsWalk, FsWriteFile, ProcessStart, type SandboxContext } from '../../src/protocol/exec.js';
import { startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { DECOY_TEXT, escapeAttempts, escapeSandbox, makeEscapeLayout, workspaceWriteSandbox, type EscapeLayout } from '../helpers/sandbox.js';

const workspaceWrite = (root: string): SandboxContext => workspaceWriteSandbox(root);

describe.each(['in-process', 'websocket'])('our exec-server confines process/start and fs/* (%s)', (transport) => {
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
    const confined = await client.request(ProcessStart, {
      processId: `t-${transport}-1`,
      argv: ['true'],
      cwd: pathToFileURL(ws.path).href,
      env,
      tty: false,
      arg0: null,
      sandbox: workspaceWrite(ws.path),
    });
    expect(confined.sandboxType).toBe('linuxSeccomp');
    const open = await client.request(ProcessStart, {
      processId: `t-${transport}-2`,
      argv: ['true'],
      cwd: pathToFileURL(ws.path).href,
      env,
      tty: false,
      arg0: null,
      sandbox: null,
    });
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

  it('judges fs writes through a link the sandboxed command made by where they land, and hides denied entries from fs/walk and fs/copy', async () => {
    const uri = (...parts: string[]): string => pathToFileURL(join(...parts)).href;
    const sandbox = workspaceWrite(ws.path);
    const target = join(outside.path, `new-${transport}`);
    // The model's command may make a link to a missing file outside: the link itself is inside.
    const linking = await client.startProcess({ argv: ['/bin/ln', '-s', target, `evil-${transport}`], cwd: ws.path, env, tty: false, sandbox });
    expect((await linking.collect()).exitCode).toBe(0);
    const evil = uri(ws.path, `evil-${transport}`);
    const refused = { code: -32600, message: expect.stringContaining(`(it resolves to \`${target}`) as unknown };
    await expect(client.request(FsWriteFile, { path: evil, dataBase64: Buffer.from('x').toString('base64'), sandbox })).rejects.toMatchObject(refused);
    await expect(client.request(FsOpen, { handleId: `evil-${transport}`, path: evil, mode: 'replace', sandbox })).rejects.toMatchObject(refused);
    await expect(client.request(FsCreateDirectory, { path: `${evil}/sub`, sandbox })).rejects.toMatchObject(refused);
    await writeFile(join(ws.path, `source-${transport}`), 'in');
    await expect(client.request(FsCopy, { sourcePath: uri(ws.path, `source-${transport}`), destinationPath: evil, recursive: false, sandbox })).rejects.toMatchObject(refused);
    expect(existsSync(target)).toBe(false);

    // A folder denied next to a readable file, and an alias to it in the workspace.
    const vault = join(outside.path, `vault-${transport}`);
    await mkdir(join(vault, 'secret'), { recursive: true });
    await writeFile(join(vault, 'secret', 'key'), 'vault key');
    await writeFile(join(vault, 'public'), 'public');
    await mkdir(join(ws.path, `walk-${transport}`));
    await symlink(join(vault, 'secret'), join(ws.path, `walk-${transport}`, 'alias'));
    const denying = workspaceWriteSandbox(ws.path, { extra: [{ path: { type: 'path', path: uri(vault, 'secret') }, access: 'deny' }] });
    const walked = await client.request(FsWalk, {
      path: uri(ws.path, `walk-${transport}`),
      options: { maxDepth: 5, maxDirectories: 10, maxEntries: 10, followDirectorySymlinks: true },
      sandbox: denying,
    });
    expect(walked).toEqual({ entries: [], errors: [], truncated: false });
    await client.request(FsCopy, { sourcePath: uri(vault), destinationPath: uri(ws.path, `loot-${transport}`), recursive: true, sandbox: denying });
    expect(readdirSync(join(ws.path, `loot-${transport}`))).toEqual(['public']);
  });

  it('runs a terminal program inside the sandbox', async () => {
    const proc = await client.startProcess({
      argv: ['/bin/sh', '-c', 'tty >/dev/null && echo has-tty; touch in-tty'],
      cwd: ws.path,
      env,
      tty: true,
      sandbox: workspaceWrite(ws.path),
    });
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
      await expect(client.startProcess({ argv: ['true'], cwd: work.path, env: {}, tty: false, sandbox: workspaceWrite(work.path) })).rejects.toThrow(
        /bubblewrap .*not installed.*apt-get install bubblewrap/,
      );
      const open = await client.startProcess({ argv: ['/bin/true'], cwd: work.path, env: {}, tty: false });
      expect((await open.collect()).exitCode).toBe(0);
    } finally {
      await client.close();
      await server.close();
      await work.cleanup();
    }
  });
});

/** The unprivileged user the non-root case runs bubblewrap as, when the suite runs as root. */
const NOBODY = 65534;
const runningAsRoot = process.getuid?.() === 0;

// CI runs the suite as root. bubblewrap keeps every capability of a root caller unless told to
// drop them, and the mounts confine only a command that cannot change them: each case below is
// an escape a root command wins when capabilities are kept. `unprivileged` runs the same attempts
// with bubblewrap started as another user (setpriv), where its user namespace confines them.
describe.each(['in-process', 'websocket', 'unprivileged'] as const)('a sandboxed command gets no privileges (%s)', (transport) => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let layout: EscapeLayout;
  let client: ExecClient;
  let server: ExecServer | undefined;
  let listening: ListeningProcess | undefined;
  let serverPid: number;
  const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

  beforeAll(async () => {
    dir = await tempDir('exec-sbx-priv-');
    layout = await makeEscapeLayout(dir.path);
    const host = { env: process.env, cwd: layout.workspace, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' };
    if (transport === 'websocket') {
      listening = await startOurWsExecServer();
      client = await ExecClient.connect(websocketConnector(listening.url));
      serverPid = listening.child.pid ?? -1;
      return;
    }
    let bwrapProbe: ReturnType<typeof createBwrapProbe> | undefined;
    if (transport === 'unprivileged' && runningAsRoot) {
      // The server stays root; bubblewrap (and so the command) runs as NOBODY, as it would for a
      // server started by that user. The decoys stay root's, readable to all; the workspace is NOBODY's.
      const bwrap = await createBwrapProbe('bwrap', process.env.PATH)();
      if (!bwrap.ok) throw new Error(bwrap.message);
      const wrapper = join(dir.path, 'bwrap-as-nobody');
      await writeFile(wrapper, `#!/bin/sh\nexec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups -- ${bwrap.path} "$@"\n`, { mode: 0o755 });
      await chmod(dir.path, 0o755);
      await chown(layout.workspace, NOBODY, NOBODY);
      bwrapProbe = createBwrapProbe(wrapper);
    }
    server = new ExecServer({ env: process.env, host, ...(bwrapProbe === undefined ? {} : { bwrapProbe }) });
    client = await ExecClient.connect(localConnector(server));
    serverPid = process.pid;
  });
  afterAll(async () => {
    await client.close();
    await server?.close();
    await listening?.stop();
    await dir.cleanup();
  });

  async function run(script: string): Promise<{ exitCode: number | undefined; output: string }> {
    const proc = await client.startProcess({ argv: ['/bin/sh', '-c', script], cwd: layout.workspace, env, tty: false, sandbox: escapeSandbox(layout) });
    const result = await proc.collect();
    return { exitCode: result.exitCode, output: result.stdout.toString() + result.stderr.toString() };
  }

  it('runs the command with empty capability sets and no_new_privs, as the user the sandbox was started by', async () => {
    const { exitCode, output } = await run('grep -E "^(Uid|CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):" /proc/self/status');
    expect(exitCode).toBe(0);
    const fields = Object.fromEntries(
      output
        .trim()
        .split('\n')
        .map((line) => line.split(/:\s+/)),
    );
    expect(fields).toEqual({
      Uid: expect.stringMatching(new RegExp(`^${transport === 'unprivileged' && runningAsRoot ? NOBODY : process.getuid?.()}\\s`)),
      CapInh: '0000000000000000',
      CapPrm: '0000000000000000',
      CapEff: '0000000000000000',
      CapAmb: '0000000000000000',
      NoNewPrivs: '1',
    });
  });

  it('refuses remount, unmount, unshare, a raw socket, a device node and ptrace access to the server; the workspace stays writable', async () => {
    const outcomes: { name: string; escaped: boolean; refused: boolean; output: string }[] = [];
    for (const attempt of escapeAttempts(layout, serverPid)) {
      const { output } = await run(attempt.script);
      outcomes.push({ name: attempt.name, escaped: output.includes(attempt.marker), refused: attempt.refusal.test(output), output });
    }
    // Listed with their output, so a failure says which attempt got out and how.
    expect(outcomes.filter((outcome) => outcome.escaped || !outcome.refused)).toEqual([]);
    expect(readFileSync(layout.decoy, 'utf8')).toBe(DECOY_TEXT);
    expect(existsSync(join(layout.workspace, 'disk'))).toBe(false);

    const write = await run('echo inside > inside.txt && cat inside.txt');
    expect(write).toEqual({ exitCode: 0, output: 'inside\n' });
    expect(readFileSync(join(layout.workspace, 'inside.txt'), 'utf8')).toBe('inside\n');
  });
});
