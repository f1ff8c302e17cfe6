// The API key Codex stores with `codex login --with-api-key` ($CODEX_HOME/auth.json) serves the
// built-in `openai` provider when OPENAI_API_KEY is not set, as it does for Codex; never another
// provider. Our server composed in-process, the SDK client, the fake model standing in for OpenAI.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FakeResponsesServer, FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, textOf, type McpHarness } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, runCommand } from '../helpers/process.js';
import { say } from '../helpers/steps.js';

describe("Codex's stored API key (auth.json)", () => {
  let world: Awaited<ReturnType<typeof setUpMcpWorld>>;
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  /** config.toml with the built-in `openai` provider pointed at the fake model, plus `extra`. */
  const configure = (extra = ''): Promise<void> =>
    writeFile(
      join(world.home.path, 'config.toml'),
      [
        'model = "gpt-5.5"',
        'model_provider = "openai"',
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        extra,
        '[model_providers.openai]',
        `base_url = "${model.url}"`,
        'request_max_retries = 0',
      ].join('\n'),
    );
  const writeAuth = (json: unknown): Promise<void> => writeFile(join(world.home.path, 'auth.json'), JSON.stringify(json));
  /** No OPENAI_API_KEY from the developer's shell. */
  const noEnvKey = { OPENAI_API_KEY: '' };

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('codex-auth', () => steps.shift() ?? say('script exhausted'));
    model = world.model;
    await configure();
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('uses the key from auth.json when OPENAI_API_KEY is not set, and the variable when it is', async () => {
    await writeAuth({ OPENAI_API_KEY: 'sk-from-auth-json', tokens: null, last_refresh: null });
    mcp = await startInProcessMcp(world.home.path, { env: noEnvKey });
    steps.push(say('hello from openai'));
    const result = await mcp.call('codex', { prompt: 'hi', cwd: world.work.path });
    expect(result.structuredContent).toMatchObject({ content: 'hello from openai' });
    expect(model.requests[0]!.headers.authorization).toBe('Bearer sk-from-auth-json');
    await mcp.close();

    mcp = await startInProcessMcp(world.home.path, { env: { OPENAI_API_KEY: 'sk-from-env' } });
    steps.push(say('again'));
    await mcp.call('codex', { prompt: 'hi', cwd: world.work.path });
    expect(model.requests[1]!.headers.authorization).toBe('Bearer sk-from-env');
  });

  it('says that a ChatGPT sign-in cannot be used, naming the file, before any model request', async () => {
    // The built-in engine: with `auto`, a ChatGPT sign-in alone would pick the codex engine.
    await configure('multienv.engine = "builtin"');
    await writeAuth({ OPENAI_API_KEY: null, tokens: { id_token: 'x', access_token: 'y', refresh_token: 'z', account_id: 'a' } });
    mcp = await startInProcessMcp(world.home.path, { env: noEnvKey });
    const result = await mcp.call('codex', { prompt: 'hi', cwd: world.work.path });
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain(`${join(world.home.path, 'auth.json')} holds a ChatGPT sign-in, which this server cannot use`);
    expect(textOf(result)).toContain('codex login --with-api-key');
    expect(model.requests).toHaveLength(0);
  });

  it('never sends the stored OpenAI key to another provider', async () => {
    await writeAuth({ OPENAI_API_KEY: 'sk-from-auth-json' });
    await writeFile(
      join(world.home.path, 'config.toml'),
      ['model = "gpt-5.5"', 'model_provider = "other"', '[model_providers.other]', `base_url = "${model.url}"`, 'env_key = "OTHER_KEY"', 'request_max_retries = 0'].join('\n'),
    );
    mcp = await startInProcessMcp(world.home.path, { env: { ...noEnvKey, OTHER_KEY: '' } });
    const result = await mcp.call('codex', { prompt: 'hi', cwd: world.work.path });
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain('model provider `other` takes its API key from the environment variable OTHER_KEY, which is not set');
    expect(model.requests).toHaveLength(0);
  });

  it('starts with a damaged auth.json (warning) and still uses OPENAI_API_KEY; doctor names where the key comes from', async () => {
    await writeFile(join(world.home.path, 'auth.json'), '{ not json');
    mcp = await startInProcessMcp(world.home.path, { env: { OPENAI_API_KEY: 'sk-from-env' } });
    await mcp.waitForStderr(/ignoring Codex's sign-in: .*auth\.json: not JSON/, 'the auth.json warning');
    steps.push(say('fine'));
    expect((await mcp.call('codex', { prompt: 'hi', cwd: world.work.path })).structuredContent).toMatchObject({ content: 'fine' });

    await writeAuth({ OPENAI_API_KEY: 'sk-from-auth-json' });
    steps.push(say('OK'));
    const doctor = await runCommand(process.execPath, [CLI, 'doctor', '--json'], { ...networkEnv(process.env), CODEX_HOME: world.home.path, OPENAI_API_KEY: '' });
    expect(doctor.stdout).toContain(`(key from ${join(world.home.path, 'auth.json')})`);
  });
});
