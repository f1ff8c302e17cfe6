import { writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalExecServer } from '../../src/environments/local-server.js';
import { EnvironmentRegistry, LOCAL_ENVIRONMENT_ID } from '../../src/environments/registry.js';
import { ExecServer } from '../../src/exec/server.js';
import { LocalError } from '../../src/util/errors.js';
import { CLI, runCommand, startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';

function runCli(args: string[], env: NodeJS.ProcessEnv): ReturnType<typeof runCommand> {
  return runCommand(process.execPath, [CLI, ...args], env);
}

describe('codex-multienv environments', () => {
  let server: ListeningProcess;
  let home: { path: string; cleanup: () => Promise<void> };

  beforeAll(async () => {
    server = await startOurWsExecServer();
    home = await tempDir('cmx-home-');
  });
  afterAll(async () => {
    await server.stop();
    await home.cleanup();
  });

  it('connects to every configured environment and reports status, with the last error for unreachable ones', async () => {
    await writeFile(
      join(home.path, 'environments.toml'),
      [
        'default = "box"',
        '[[environments]]',
        'id = "box"',
        `url = "${server.url}"`,
        '[[environments]]',
        'id = "pipe"',
        `program = ${JSON.stringify(process.execPath)}`,
        `args = ${JSON.stringify([CLI, 'exec-server', '--listen', 'stdio'])}`,
        '[[environments]]',
        'id = "gone"',
        'url = "ws://127.0.0.1:1"',
        'connect_timeout_sec = 2',
      ].join('\n'),
    );
    const run = await runCli(['environments', '--json'], { ...process.env, CODEX_HOME: home.path });
    expect(run.code).toBe(1);
    const parsed = JSON.parse(run.stdout) as { source: string; environments: { id: string; kind: string; status: string; isDefault: boolean; error?: string; os?: string }[] };
    expect(parsed.source).toBe(join(home.path, 'environments.toml'));
    expect(parsed.environments.map((e) => [e.id, e.kind, e.status, e.isDefault])).toEqual([
      ['local', 'local', 'ready', false],
      ['box', 'websocket', 'ready', true],
      ['pipe', 'stdio', 'ready', false],
      ['gone', 'websocket', 'disconnected', false],
    ]);
    expect(parsed.environments[1]?.os).toBe('linux');
    expect(parsed.environments[3]?.error).toMatch(/connection refused/);
  });

  it('prints a table and exits 0 when everything is reachable', async () => {
    await writeFile(join(home.path, 'environments.toml'), `[[environments]]\nid = "box"\nurl = "${server.url}"\n`);
    const run = await runCli(['environments'], { ...process.env, CODEX_HOME: home.path });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/ID\s+KIND\s+STATUS\s+DEFAULT/);
    expect(run.stdout).toMatch(/local\s+local\s+ready\s+yes/);
    expect(run.stdout).toMatch(/box\s+websocket\s+ready/);
  });

  it('names the file, the entry and the field of a configuration error', async () => {
    await writeFile(join(home.path, 'environments.toml'), '[[environments]]\nid = "box"\nurl = "http://127.0.0.1:9"\n');
    const run = await runCli(['environments'], { ...process.env, CODEX_HOME: home.path });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(join(home.path, 'environments.toml'));
    expect(run.stderr).toContain('environments[0] (id `box`)');
    expect(run.stderr).toContain('must use ws:// or wss://');
  });

  it('follows CODEX_EXEC_SERVER_URL when there is no environments.toml', async () => {
    const empty = await tempDir('cmx-empty-home-');
    try {
      const none = await runCli(['environments', '--json'], { ...process.env, CODEX_HOME: empty.path, CODEX_EXEC_SERVER_URL: 'None' });
      expect(JSON.parse(none.stdout)).toEqual({ source: 'CODEX_EXEC_SERVER_URL', environments: [] });
      const remote = await runCli(['environments', '--json'], { ...process.env, CODEX_HOME: empty.path, CODEX_EXEC_SERVER_URL: server.url });
      const parsed = JSON.parse(remote.stdout) as { environments: { id: string; status: string; isDefault: boolean }[] };
      expect(parsed.environments.map((e) => [e.id, e.status, e.isDefault])).toEqual([['remote', 'ready', true]]);
    } finally {
      await empty.cleanup();
    }
  });
});

describe('EnvironmentRegistry', () => {
  const host = { env: process.env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' };

  it('registers at run time: lazy, upsert by id, local reserved, empty id rejected, status observable', async () => {
    const server = await startOurWsExecServer();
    const localServer = new ExecServer({ env: process.env, host });
    const registry = new EnvironmentRegistry({
      config: { includeLocal: true, defaultId: 'local', environments: [] },
      configSource: 'default',
      localServer,
      launcherEnv: process.env,
    });
    try {
      const added = await registry.add({ id: 'box', url: 'ws://127.0.0.1:1', connectTimeoutSec: 2 });
      expect(added.status).toBe('pending');
      expect((await added.probe()).status).toBe('disconnected');
      expect(registry.get('box')?.lastError).toMatch(/connection refused/);
      const replaced = await registry.add({ id: 'box', url: server.url });
      expect(registry.get('box')).toBe(replaced);
      expect((await replaced.probe()).status).toBe('ready');
      expect(registry.defaultSelection()).toEqual(['local', 'box']);
      await expect(registry.add({ id: 'local', url: server.url })).rejects.toThrow(/reserved/);
      await expect(registry.add({ id: '', url: server.url })).rejects.toThrow(LocalError);
      await expect(registry.add({ id: 'both', url: server.url, program: 'ssh' })).rejects.toThrow(/must set exactly one of url or program/);
      await expect(registry.add({ id: 'x', url: 'http://127.0.0.1:2' })).rejects.toThrow(/ws:\/\/ or wss:\/\//);
      await expect(registry.add({ id: 'x', url: 'ws://10.1.2.3:9', authBearerToken: 't' })).rejects.toThrow(
        /exec-server WebSocket headers require wss:\/\/ or a loopback destination/,
      );
    } finally {
      await registry.close();
      await localServer.close();
      await server.stop();
    }
  });

  it('makes the in-process exec-server of `local` at its first connection, once, and no more after close', async () => {
    const localServer = new LocalExecServer({ env: process.env, host });
    const registry = new EnvironmentRegistry({
      config: { includeLocal: true, defaultId: 'local', environments: [] },
      configSource: 'default',
      localServer,
      launcherEnv: process.env,
    });
    try {
      // The start-up sandbox check asks before any connection; the server made later gives the same cached answer.
      const sandbox = await localServer.sandboxAvailability();
      const local = registry.get(LOCAL_ENVIRONMENT_ID);
      expect((await local?.probe())?.status).toBe('ready');
      // The connection served above and every later caller share one server.
      const server = await localServer.get();
      expect(await localServer.get()).toBe(server);
      expect(await server.sandboxAvailability()).toBe(sandbox);
    } finally {
      await registry.close();
      await localServer.close();
    }
    await expect(localServer.get()).rejects.toThrow(/local exec-server is closed/);
    // Closing again, and closing one that never made its server, are no-ops.
    await localServer.close();
    const unused = new LocalExecServer({ env: process.env, host });
    await unused.close();
    await expect(unused.get()).rejects.toThrow(LocalError);
  });
});
