// The MCP Inspector CLI (@modelcontextprotocol/inspector-cli 1.0.3, which runs on Node 20) as a
// real third-party client of our built server over stdio: one inspector process, and so one
// server process, per call. The inspector prints the JSON result on stdout and exits 0 even for
// `isError` results, so the tests read the result, never only the exit code.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { functionCallOutputs, startFakeResponsesServer, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, REPO_ROOT, runCommand, startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { say } from '../helpers/steps.js';

const INSPECTOR = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/inspector-cli/build/cli.js');

const ToolResultSchema = z.looseObject({
  content: z.array(z.looseObject({ type: z.string(), text: z.string().optional() })),
  structuredContent: z.record(z.string(), z.unknown()).optional(),
  isError: z.boolean().optional(),
});

/**
 * Runs `mcp-inspector-cli --cli node dist/cli/main.js …` and parses its stdout. It runs from
 * test/: the inspector finds its own package.json relative to the current folder and fails from
 * a folder whose parent has none.
 */
async function inspect(codexHome: string, args: string[], server: string[] = [process.execPath, CLI]): Promise<unknown> {
  const serverEnv = ['-e', `CODEX_HOME=${codexHome}`, '-e', 'FAKE_MODEL_API_KEY=test-key', '-e', 'CODEX_MULTIENV_LOG=warn'];
  const run = await runCommand(process.execPath, [INSPECTOR, '--cli', ...server, ...serverEnv, ...args], networkEnv(process.env), join(REPO_ROOT, 'test'));
  if (run.code !== 0) throw new Error(`inspector exited with ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as unknown;
}

function textOf(result: z.infer<typeof ToolResultSchema>): string {
  return result.content.map((item) => item.text ?? '').join('\n');
}

describe('MCP Inspector CLI against the built server', () => {
  let world: McpTestWorld;
  let execServer: ListeningProcess;
  let steps: FakeStep[] = [];

  beforeAll(async () => {
    world = await setUpMcpWorld('cmx-inspector', (_request, index) => steps[index] ?? { kind: 'output', items: [{ type: 'message', text: 'script exhausted' }] });
    execServer = await startOurWsExecServer();
  });
  afterAll(async () => {
    await execServer.stop();
    await tearDownMcpWorld(world, undefined);
  });

  it('lists the tools with their input and output schemas', async () => {
    const listed = z
      .object({ tools: z.array(z.looseObject({ name: z.string(), inputSchema: z.looseObject({ type: z.literal('object') }), outputSchema: z.unknown() })) })
      .parse(await inspect(world.home.path, ['--method', 'tools/list']));
    const names = listed.tools.map((tool) => tool.name);
    expect(names).toEqual(expect.arrayContaining(['codex', 'codex-reply', 'environment/add', 'environment/list']));
    const codex = listed.tools.find((tool) => tool.name === 'codex');
    expect(codex?.inputSchema).toMatchObject({ required: ['prompt'] });
    expect(codex?.outputSchema).toMatchObject({ properties: { threadId: expect.anything(), content: expect.anything() } });
  });

  it('starts every server of mcp.config.example.json as written (only the install path filled in)', async () => {
    const example = await readFile(join(REPO_ROOT, 'mcp.config.example.json'), 'utf8');
    const config = join(world.work.path, 'mcp.config.json');
    await writeFile(config, example.replaceAll('/path/to/codex-multienv-mcp', REPO_ROOT));
    const servers = Object.keys(z.object({ mcpServers: z.record(z.string(), z.unknown()) }).parse(JSON.parse(example)).mcpServers);
    expect(servers.length).toBeGreaterThan(0);
    for (const server of servers) {
      const listed = z
        .object({ tools: z.array(z.object({ name: z.string() }).loose()) })
        .parse(await inspect(world.home.path, ['--method', 'tools/list'], ['--config', config, '--server', server]));
      expect(listed.tools.map((tool) => tool.name)).toContain('codex');
    }
  });

  it('runs a codex turn against the fake model: a command runs in the work folder, the answer comes back with its threadId', async () => {
    steps = [
      { kind: 'output', items: [{ type: 'function_call', name: 'exec_command', arguments: { cmd: 'printf inspected > marker.txt && echo wrote' } }] },
      { kind: 'output', items: [{ type: 'message', text: 'marker written' }] },
    ];
    const before = world.model.requests.length;
    const result = ToolResultSchema.parse(
      await inspect(world.home.path, [
        '--method',
        'tools/call',
        '--tool-name',
        'codex',
        '--tool-arg',
        'prompt="write the marker"',
        `cwd=${world.work.path}`,
        'sandbox=danger-full-access',
        'approval-policy=never',
      ]),
    );
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toEqual({ threadId: expect.stringMatching(/\S/), content: 'marker written' });
    expect(textOf(result)).toContain('marker written');
    expect(await readFile(join(world.work.path, 'marker.txt'), 'utf8')).toBe('inspected');
    const second = world.model.requests[before + 1];
    expect(second).toBeDefined();
    expect(functionCallOutputs(second!)[0]?.output).toContain('wrote');
    expect(world.model.errors).toEqual([]);
  });

  it('adds our websocket exec-server with environment/add, and reports a bad one as a tool error', async () => {
    const added = ToolResultSchema.parse(
      await inspect(world.home.path, ['--method', 'tools/call', '--tool-name', 'environment/add', '--tool-arg', 'id=box', `url=${execServer.url}`, 'connectTimeoutMs=5000']),
    );
    expect(added.isError).toBeFalsy();
    expect(added.structuredContent).toMatchObject({ environment: { id: 'box', kind: 'websocket', endpoint: execServer.url } });
    const bad = ToolResultSchema.parse(
      await inspect(world.home.path, ['--method', 'tools/call', '--tool-name', 'environment/add', '--tool-arg', 'id=box', 'url=http://127.0.0.1:9']),
    );
    expect(bad.isError).toBe(true);
    expect(textOf(bad)).toMatch(/ws:\/\/ or wss:\/\//);
  });
});

/**
 * The command lines README's Clients section documents for the Inspector CLI (the `sh` block after
 * `<!-- inspector-cli -->`): a `cd`, then one command per line. Returns the folder and the commands.
 */
function documentedInspectorLines(readme: string): { folder: string; commands: string[] } {
  const lines = readme.split('\n');
  const marker = lines.indexOf('<!-- inspector-cli -->');
  if (marker < 0 || lines[marker + 1] !== '```sh') throw new Error('README.md has no `<!-- inspector-cli -->` marker before a sh block');
  const end = lines.indexOf('```', marker + 2);
  const [cd, ...commands] = lines.slice(marker + 2, end);
  const folder = /^cd (\S+)$/.exec(cd ?? '')?.[1];
  if (folder === undefined || commands.length === 0)
    throw new Error(`README.md line ${marker + 3}: the Inspector block must be a \`cd\` and then commands, got ${JSON.stringify(cd)}`);
  return { folder, commands };
}

describe('the Inspector CLI command lines of the README, as written', () => {
  const KEY = 'sk-test-inspector-readme';
  let model: FakeResponsesServer;
  let home: { path: string; cleanup: () => Promise<void> };

  beforeAll(async () => {
    model = await startFakeResponsesServer({ respond: () => say('hello from the documented command') });
    home = await tempDir('cmx-inspector-readme-');
    // The user's CODEX_HOME, with the default provider's key variable (the one the lines set with -e).
    await mkdir(join(home.path, '.codex'));
    await writeFile(
      join(home.path, '.codex', 'config.toml'),
      [
        'model = "gpt-5.5"',
        'model_provider = "fake"',
        '[model_providers.fake]',
        'name = "fake"',
        `base_url = "${model.url}"`,
        'env_key = "OPENAI_API_KEY"',
        'request_max_retries = 0',
        'stream_max_retries = 0',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await model.close();
    await home.cleanup();
  });

  it('run by a shell from the documented folder through npx: tools/list, then a codex turn with the key given by -e', async () => {
    const fill = (text: string): string => {
      const out = text.replaceAll('/path/to/codex-multienv-mcp', REPO_ROOT).replaceAll('/home/you', home.path).replaceAll('sk-...', KEY);
      if (/\/path\/to\b|\.\.\.|<|\$/.test(out)) throw new Error(`an undocumented placeholder or shell expansion is left in: ${text}`);
      return out;
    };
    const { folder, commands } = documentedInspectorLines(await readFile(join(REPO_ROOT, 'README.md'), 'utf8'));
    expect(commands.map((command) => /--method (\S+)/.exec(command)?.[1])).toEqual(['tools/list', 'tools/call']);
    const env: NodeJS.ProcessEnv = { ...process.env, CODEX_HOME: join(home.path, '.codex'), CODEX_MULTIENV_LOG: 'warn', npm_config_offline: 'true' };
    delete env.OPENAI_API_KEY;
    const results: unknown[] = [];
    for (const command of commands) {
      // Offline: npx must take the pinned inspector-cli of this repository, never the registry.
      const run = await runCommand('bash', ['-c', fill(command)], env, fill(folder));
      if (run.code !== 0) throw new Error(`\`${command}\` exited with ${run.code}: ${run.stderr}`);
      results.push(JSON.parse(run.stdout) as unknown);
    }
    const listed = z.object({ tools: z.array(z.looseObject({ name: z.string() })) }).parse(results[0]);
    expect(listed.tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['codex', 'codex-reply', 'environment/add']));
    const called = ToolResultSchema.parse(results[1]);
    expect(called.isError).toBeFalsy();
    expect(called.structuredContent).toEqual({ threadId: expect.stringMatching(/\S/), content: 'hello from the documented command' });
    expect(model.requests.map((request) => request.headers.authorization)).toEqual([`Bearer ${KEY}`]);
    expect(model.requests[0]?.rawBody).toContain('Say hello');
  });
});
