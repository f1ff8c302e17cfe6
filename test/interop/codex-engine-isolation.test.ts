// The codex engine keeps Codex's app-server to the environments we hand it: Codex would read
// environments.toml in CODEX_HOME (the same file as ours) and reach its entries itself, behind our
// back (our relay, our token and CA settings, our lazy connection); it must not. Codex 0.169
// reads `$CODEX_HOME/environments.toml` with no setting to point it elsewhere, and connects to its
// websocket entries as soon as the app-server starts: its CODEX_HOME is an overlay without it.
import { appendFile, lstat, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { type FakeStep } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, writeMcpConfig, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { say } from '../helpers/steps.js';

const CODEX_EXTRA = ['[features]', 'plugins = false', '[analytics]', 'enabled = false', '[multienv]', 'engine = "codex"'].join('\n');

describe("the codex engine's app-server does not read our environments.toml", () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  let listener: Server;
  let connections = 0;

  beforeEach(async () => {
    steps = [];
    connections = 0;
    listener = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    world = await setUpMcpWorld('codex-isolation', () => steps.shift() ?? say('script exhausted'));
    await writeMcpConfig(world.home.path, world.model.url, '');
    const config = await readFile(join(world.home.path, 'config.toml'), 'utf8');
    await writeFile(
      join(world.home.path, 'config.toml'),
      `${config.replace('[model_providers.fake]', '[model_providers.fake]\nname = "fake"\nwire_api = "responses"')}\n${CODEX_EXTRA}\n`,
    );
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  });

  it('never connects to a websocket environment listed there, nor runs a stdio one, and keeps its state in the real home', async () => {
    const address = listener.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    const spawnLog = join(world.work.path, 'spawned.log');
    const toml = [
      '[[environments]]',
      'id = "watched"',
      `url = "ws://127.0.0.1:${address.port}"`,
      '[[environments]]',
      'id = "counted"',
      `program = ${JSON.stringify(process.execPath)}`,
      `args = ${JSON.stringify(['-e', `require('node:fs').appendFileSync(${JSON.stringify(spawnLog)}, 'x')`])}`,
    ].join('\n');
    await writeFile(join(world.home.path, 'environments.toml'), `${toml}\n`);
    mcp = await startMcp(world.home.path);
    steps.push(say('local only'), say('again'));
    const first = await mcp.call('codex', { prompt: 'hello', cwd: world.work.path, environments: [{ id: 'local', cwd: world.work.path }] });
    expect(first.structuredContent).toMatchObject({ content: 'local only' });
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    const second = await mcp.call('codex-reply', { threadId, prompt: 'more' });
    expect(second.structuredContent).toMatchObject({ content: 'again' });
    await mcp.close();
    mcp = await startMcp(world.home.path);
    steps.push(say('restarted'));
    const third = await mcp.call('codex-reply', { threadId, prompt: 'after restart' });
    expect(third.structuredContent).toMatchObject({ content: 'restarted' });
    // Codex's state is in the real home (its rollouts where the user's own Codex finds them); its home is links to it.
    expect((await lstat(join(world.home.path, 'sessions'))).isDirectory()).toBe(true);
    expect(await readdir(join(world.home.path, 'sessions'), { recursive: true })).toEqual(expect.arrayContaining([expect.stringMatching(/rollout-.*\.jsonl$/)]));
    const overlay = join(world.home.path, 'multienv', 'codex-home');
    const entries = await readdir(overlay);
    expect(entries).not.toContain('environments.toml');
    for (const name of entries) expect((await lstat(join(overlay, name))).isSymbolicLink()).toBe(true);
    await appendFile(spawnLog, '');
    const spawned = await readFile(spawnLog, 'utf8');
    expect(connections).toBe(0);
    expect(spawned).toBe('');
  });
});
