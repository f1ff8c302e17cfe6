// The codex engine on our environments: the real Codex 0.169.0 (`codex app-server` from the pinned
// @openai/codex) runs the turn, the scripted fake model names an `environment_id`, and the command
// or patch lands in that environment: our exec-server over websocket and over stdio, and the real
// `codex exec-server`, each with its own folder, all on 127.0.0.1.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { functionCallOutputs, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, threadIdOf, writeMcpConfig, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { CLI, startCodexWsExecServer, startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { exec, patch, say } from '../helpers/steps.js';

/** Keeps Codex off the network and makes codex the engine of new threads. */
const CODEX_EXTRA = ['[features]', 'plugins = false', '[analytics]', 'enabled = false', '[multienv]', 'engine = "codex"'].join('\n');

/** The request came from the real Codex 0.169.0 (its user agent and turn metadata), not from our agent. */
function fromCodex(request: RecordedRequest): boolean {
  return /^codex-multienv\/0\.169\.0 /.test(request.headers['user-agent'] ?? '') && request.headers['x-codex-turn-metadata'] !== undefined;
}

describe('the codex engine runs tool calls in the environment the model names', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  let ours: ListeningProcess;
  let real: ListeningProcess;
  let realHome: { path: string; cleanup: () => Promise<void> };
  /** Each environment's folder, by id. */
  const dirs: Record<string, string> = {};

  beforeAll(async () => {
    realHome = await tempDir('codex-exec-home-');
    ours = await startOurWsExecServer();
    real = await startCodexWsExecServer(realHome.path);
  });
  afterAll(async () => {
    await ours.stop();
    await real.stop();
    await realHome.cleanup();
  });

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('codex-envs', () => steps.shift() ?? say('script exhausted'));
    await writeMcpConfig(world.home.path, world.model.url, '');
    const config = await readFile(join(world.home.path, 'config.toml'), 'utf8');
    await writeFile(
      join(world.home.path, 'config.toml'),
      `${config.replace('[model_providers.fake]', '[model_providers.fake]\nname = "fake"\nwire_api = "responses"')}\n${CODEX_EXTRA}\nallow_runtime_program_environments = true\n`,
    );
    for (const id of ['local', 'ws', 'pipe', 'real', 'added', 'counted']) {
      dirs[id] = join(world.work.path, id);
      await mkdir(dirs[id], { recursive: true });
    }
    const toml = [
      '[[environments]]',
      'id = "ws"',
      `url = "${ours.url}"`,
      '[[environments]]',
      'id = "pipe"',
      `program = ${JSON.stringify(process.execPath)}`,
      `args = ${JSON.stringify([CLI, 'exec-server', '--listen', 'stdio'])}`,
      '[[environments]]',
      'id = "real"',
      `url = "${real.url}"`,
      // A stdio environment whose command appends a line per start to a file, then becomes the exec-server.
      '[[environments]]',
      'id = "counted"',
      'program = "/bin/sh"',
      `args = ${JSON.stringify(['-c', 'echo spawn >> "$0"; exec "$1" "$2" exec-server --listen stdio', join(world.work.path, 'spawns'), process.execPath, CLI])}`,
    ].join('\n');
    await writeFile(join(world.home.path, 'environments.toml'), `${toml}\n`);
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  const selection = (...ids: string[]) => ids.map((id) => ({ id, cwd: dirs[id] }));

  it('runs a command on each kind of environment: ours over websocket and over stdio, the real codex exec-server', async () => {
    mcp = await start();
    for (const id of ['ws', 'pipe', 'real']) steps.push(exec(`echo ${id} > ran.txt`, { environment_id: id }, `call-${id}`));
    steps.push(say('ran everywhere'));
    const result = await mcp.call('codex', {
      prompt: 'run it everywhere',
      cwd: dirs.local,
      sandbox: 'danger-full-access',
      'approval-policy': 'never',
      environments: selection('local', 'ws', 'pipe', 'real'),
    });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ content: 'ran everywhere' });
    expect(world.model.requests.every(fromCodex)).toBe(true);
    for (const id of ['ws', 'pipe', 'real']) expect(await readFile(join(dirs[id]!, 'ran.txt'), 'utf8')).toBe(`${id}\n`);
    expect(existsSync(join(dirs.local!, 'ran.txt'))).toBe(false);
  });

  it('reaches an environment added at run time (a stdio command) and patches files there with `*** Environment ID:`', async () => {
    mcp = await start();
    const added = await mcp.call('environment/add', { id: 'added', program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'] });
    expect(added.isError).toBeFalsy();
    steps.push(
      patch(['*** Begin Patch', '*** Environment ID: added', '*** Add File: patched.txt', '+written by codex', '*** End Patch', ''].join('\n')),
      exec('cat patched.txt', { environment_id: 'added' }, 'call-cat'),
      say('patched'),
    );
    const result = await mcp.call('codex', {
      prompt: 'patch it there',
      cwd: dirs.local,
      sandbox: 'danger-full-access',
      'approval-policy': 'never',
      environments: selection('local', 'added'),
    });
    expect(result.structuredContent).toMatchObject({ content: 'patched' });
    expect(await readFile(join(dirs.added!, 'patched.txt'), 'utf8')).toBe('written by codex\n');
    expect(existsSync(join(dirs.local!, 'patched.txt'))).toBe(false);
    expect(JSON.stringify(functionCallOutputs(world.model.requests[2]!))).toContain('written by codex');
    expect(world.model.requests.every(fromCodex)).toBe(true);
  });

  it('keeps a turn override to its turn and changes the sticky selection only when asked; `[]` is no environment', async () => {
    mcp = await start();
    const turn = async (n: number, args: Record<string, unknown>, threadId?: string): Promise<string> => {
      steps.push(exec(`echo ${n} > t${n}.txt`, {}, `call-${n}`), say(`turn ${n}`));
      const common = { sandbox: 'danger-full-access', 'approval-policy': 'never' };
      const result =
        threadId === undefined
          ? await mcp!.call('codex', { prompt: `turn ${n}`, cwd: dirs.local, ...common, ...args })
          : await mcp!.call('codex-reply', { threadId, prompt: `turn ${n}`, ...args });
      expect(result.structuredContent).toMatchObject({ content: `turn ${n}` });
      return threadIdOf(result);
    };
    /** Where turn n's command (which names no environment, so runs in the primary one) wrote its file. */
    const ranIn = (n: number): string[] => Object.keys(dirs).filter((id) => existsSync(join(dirs[id]!, `t${n}.txt`)));

    const threadId = await turn(1, { environments: selection('ws', 'pipe') });
    expect(ranIn(1)).toEqual(['ws']);
    await turn(2, { environments: selection('pipe') }, threadId);
    expect(ranIn(2)).toEqual(['pipe']);
    await turn(3, {}, threadId);
    expect(ranIn(3)).toEqual(['ws']);
    await turn(4, { stickyEnvironments: selection('real') }, threadId);
    expect(ranIn(4)).toEqual(['real']);
    await turn(5, {}, threadId);
    expect(ranIn(5)).toEqual(['real']);
    await turn(6, { environments: [] }, threadId);
    expect(ranIn(6)).toEqual([]);
    const lastCall = world.model.requests.at(-1)!;
    expect(JSON.stringify(functionCallOutputs(lastCall))).toMatch(/no usable execution environment/i);
    expect(world.model.requests.every(fromCodex)).toBe(true);
  });

  it("starts a stdio environment's command once for codex-engine and builtin threads alike", async () => {
    mcp = await start();
    const common = { cwd: dirs.local, sandbox: 'danger-full-access', 'approval-policy': 'never', environments: selection('local', 'counted') };
    steps.push(
      exec('echo builtin > builtin.txt', { environment_id: 'counted' }, 'call-builtin'),
      say('builtin done'),
      patch(['*** Begin Patch', '*** Environment ID: counted', '*** Add File: patched.txt', '+written by codex', '*** End Patch', ''].join('\n')),
      exec('cat patched.txt builtin.txt > both.txt', { environment_id: 'counted' }, 'call-codex'),
      say('codex done'),
    );
    const builtin = await mcp.call('codex', { prompt: 'builtin first', ...common, config: { 'multienv.engine': 'builtin' } });
    expect(builtin.structuredContent).toMatchObject({ content: 'builtin done' });
    const codex = await mcp.call('codex', { prompt: 'then codex', ...common });
    expect(codex.structuredContent).toMatchObject({ content: 'codex done' });
    expect(world.model.requests.slice(2).every(fromCodex)).toBe(true);
    expect(world.model.requests.slice(0, 2).some(fromCodex)).toBe(false);
    expect(await readFile(join(dirs.counted!, 'both.txt'), 'utf8')).toBe('written by codex\nbuiltin\n');
    // Codex's connection (through the relay) and the builtin thread's client share the one child.
    const spawns = (await readFile(join(world.work.path, 'spawns'), 'utf8')).split('\n').filter(Boolean);
    expect(spawns).toHaveLength(1);
  });

  function start(): Promise<McpHarness> {
    return startMcp(world.home.path);
  }
});
