// The codex engine end to end: our built server over stdio with the real SDK client, a thread on
// the engine that drives the real Codex 0.169.0 (`codex app-server` from the pinned
// @openai/codex), and the scripted fake model, whose requests must come from Codex itself.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { functionCallOutputs, inputItems, toolNames, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import {
  setUpMcpWorld,
  startMcp,
  storedRecords,
  tearDownMcpWorld,
  threadIdOf,
  writeMcpConfig,
  type ElicitationAnswer,
  type McpHarness,
  type McpTestWorld,
} from '../helpers/mcp.js';
import { CLI } from '../helpers/process.js';
import { exec, isRecord, say, type Json } from '../helpers/steps.js';

const APPROVE = { action: 'accept', content: { decision: 'approve' } };
const DENY = { action: 'accept', content: { decision: 'deny' } };

/** Keeps Codex off the network (plugins sync, analytics) and makes codex the engine of new threads. */
const CODEX_EXTRA = ['[features]', 'plugins = false', '[analytics]', 'enabled = false', '[multienv]', 'engine = "codex"'].join('\n');

/** config.toml for both readers, our server and Codex (which wants the provider's `name`). */
async function writeConfig(world: McpTestWorld, extra: string): Promise<void> {
  await writeMcpConfig(world.home.path, world.model.url, '');
  const ours = await readFile(join(world.home.path, 'config.toml'), 'utf8');
  await writeFile(join(world.home.path, 'config.toml'), `${ours.replace('[model_providers.fake]', '[model_providers.fake]\nname = "fake"\nwire_api = "responses"')}\n${extra}\n`);
}

/**
 * The request came from the real Codex 0.169.0, not from our agent: its user agent carries Codex's
 * version (our client's name in front), and it sends its turn metadata.
 */
function fromCodex(request: RecordedRequest): boolean {
  return /^codex-multienv\/0\.169\.0 /.test(request.headers['user-agent'] ?? '') && request.headers['x-codex-turn-metadata'] !== undefined;
}

/** Every user message text the model was sent in `request`. */
function userTexts(request: RecordedRequest): string[] {
  return inputItems(request).flatMap((item) => {
    if (!isRecord(item) || item.role !== 'user' || !Array.isArray(item.content)) return [];
    return item.content.flatMap((part: unknown) => (isRecord(part) && typeof part.text === 'string' ? [part.text] : []));
  });
}

describe('the codex engine (real codex app-server 0.169.0) behind the MCP tools', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  const start = (answer?: ElicitationAnswer): Promise<McpHarness> => startMcp(world.home.path, answer === undefined ? {} : { answer });

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('codex-engine', () => steps.shift() ?? say('script exhausted'));
    await writeConfig(world, CODEX_EXTRA);
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('runs a turn in Codex, continues it with codex-reply, and resumes the Codex thread after a restart', async () => {
    mcp = await start();
    steps.push(say('hello from codex'));
    const first = await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path });
    expect(first.isError).toBeFalsy();
    const threadId = threadIdOf(first);
    expect(first.structuredContent).toEqual({ threadId, content: 'hello from codex' });
    expect(world.model.requests).toHaveLength(1);
    expect(fromCodex(world.model.requests[0]!)).toBe(true);

    // Codex's token count of its last model request is the thread's context, as with the builtin engine.
    const status = await mcp.call('codex-status', { threadId });
    expect(status.structuredContent).toMatchObject({ context: { tokens: expect.any(Number), compactions: 0 } });
    expect((status.structuredContent as { context: { tokens: number } }).context.tokens).toBeGreaterThan(0);

    const records = await storedRecords(world.home.path, threadId);
    expect(records[0]).toMatchObject({ type: 'thread', config: { engine: 'codex' } });
    const mapping = records.filter((record) => record.type === 'codex_thread');
    expect(mapping).toHaveLength(1);

    steps.push(say('second answer'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'second prompt' });
    expect(second.structuredContent).toEqual({ threadId, content: 'second answer' });
    expect(userTexts(world.model.requests[1]!)).toEqual(expect.arrayContaining(['first prompt', 'second prompt']));

    // A new server process: the thread's next turn resumes the same Codex thread from its rollout.
    await mcp.close();
    mcp = await start();
    steps.push(say('after restart'));
    const third = await mcp.call('codex-reply', { threadId, prompt: 'third prompt' });
    expect(third.structuredContent).toEqual({ threadId, content: 'after restart' });
    const request = world.model.requests[2]!;
    expect(fromCodex(request)).toBe(true);
    expect(userTexts(request)).toEqual(expect.arrayContaining(['first prompt', 'second prompt', 'third prompt']));
    expect((await storedRecords(world.home.path, threadId)).filter((record) => record.type === 'codex_thread')).toEqual(mapping);
    expect(world.model.errors).toEqual([]);
  });

  it.each([
    ['accept', APPROVE, true],
    ['decline', DENY, false],
  ] as const)('asks through elicitation before Codex runs a command (%s)', async (_name, answer, runs) => {
    const asked: Json[] = [];
    mcp = await start((params) => {
      asked.push(params);
      return answer;
    });
    steps.push(exec('touch approved.txt', {}, 'call-touch'), say('done'));
    const result = await mcp.call('codex', { prompt: 'make the file', cwd: world.work.path, 'approval-policy': 'untrusted' });
    expect(result.isError).toBeFalsy();
    expect(asked).toHaveLength(1);
    expect(asked[0]!.message).toEqual(expect.stringContaining('touch approved.txt'));
    expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(runs);
    const outputs = functionCallOutputs(world.model.requests[1]!).map((output) => JSON.stringify(output.output));
    expect(outputs).toHaveLength(1);
    if (!runs) expect(outputs[0]).toMatch(/reject/i);
    expect(fromCodex(world.model.requests[1]!)).toBe(true);
  });

  it.each([
    ['-c', ['-c', 'model_reasoning_effort="high"', '-c', 'multienv.max_concurrent_turns=3'], 'high'],
    ['--profile', ['--profile', 'careful'], 'low'],
  ] as const)("passes the server's %s overrides to Codex (the model request carries them)", async (_name, args, effort) => {
    await writeConfig(world, `${CODEX_EXTRA}\n[profiles.careful]\nmodel_reasoning_effort = "low"`);
    mcp = await startMcp(world.home.path, { args: [...args] });
    steps.push(say('effort noted'));
    const result = await mcp.call('codex', { prompt: 'hello', cwd: world.work.path });
    expect(result.structuredContent).toMatchObject({ content: 'effort noted' });
    const request = world.model.requests[0]!;
    expect(fromCodex(request)).toBe(true);
    expect(request.body).toMatchObject({ model: 'gpt-5.5', reasoning: { effort } });
  });

  it('keeps Codex from starting this server as one of its MCP servers', async () => {
    const nestedLog = join(world.work.path, 'nested.log');
    const entry = [
      '[mcp_servers.self]',
      `command = ${JSON.stringify(process.execPath)}`,
      `args = ${JSON.stringify([CLI])}`,
      `env = { CODEX_MULTIENV_LOG_FILE = ${JSON.stringify(nestedLog)} }`,
      // Codex waits for a required server before the turn: a nested copy would have logged by its end.
      'required = true',
    ].join('\n');
    await writeConfig(world, `${CODEX_EXTRA}\n${entry}`);
    mcp = await start();
    steps.push(say('no nesting'));
    const result = await mcp.call('codex', { prompt: 'hello', cwd: world.work.path });
    expect(result.structuredContent).toMatchObject({ content: 'no nesting' });
    const request = world.model.requests[0]!;
    expect(fromCodex(request)).toBe(true);
    expect(toolNames(request).filter((name) => name.includes('self'))).toEqual([]);
    expect(existsSync(nestedLog)).toBe(false);
  });
});

describe('engine choice', () => {
  let world: McpTestWorld;
  let mcp: McpHarness | undefined;
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('auto takes the real Codex when a ChatGPT sign-in is the only credential', async () => {
    world = await setUpMcpWorld('engine-auto-codex', () => say('codex answer'));
    // Our server is told to take the provider's key from a variable that is not set, so its own
    // agent has no key. The `-c` goes to Codex too, which then reports the missing variable in its
    // own words: the thread is Codex's, and no model request is made by either.
    await writeConfig(world, '[features]\nplugins = false\n[analytics]\nenabled = false');
    await writeFile(join(world.home.path, 'auth.json'), JSON.stringify({ OPENAI_API_KEY: null, tokens: { id_token: 'x', access_token: 'y', refresh_token: 'z' } }));
    mcp = await startMcp(world.home.path, { args: ['-c', 'model_providers.fake.env_key="UNSET_MODEL_KEY"'] });
    const result = await mcp.call('codex', { prompt: 'hello', cwd: world.work.path });
    const threadId = threadIdOf(result);
    expect(result.structuredContent).toEqual({ threadId, content: 'The turn failed: Missing environment variable: `UNSET_MODEL_KEY`.' });
    expect(world.model.requests).toEqual([]);
    const header = (await storedRecords(world.home.path, threadId))[0]!;
    expect(isRecord(header.config) && header.config.engine).toBe('codex');
  });

  it('auto keeps the builtin engine when the provider has its key', async () => {
    world = await setUpMcpWorld('engine-auto', () => say('builtin answer'));
    await writeFile(join(world.home.path, 'auth.json'), JSON.stringify({ OPENAI_API_KEY: null, tokens: { id_token: 'x', access_token: 'y', refresh_token: 'z' } }));
    mcp = await startMcp(world.home.path);
    const result = await mcp.call('codex', { prompt: 'hello', cwd: world.work.path });
    const threadId = threadIdOf(result);
    expect(result.structuredContent).toEqual({ threadId, content: 'builtin answer' });
    expect(fromCodex(world.model.requests[0]!)).toBe(false);
    const header = (await storedRecords(world.home.path, threadId))[0]!;
    expect(isRecord(header.config) && header.config.engine).toBeUndefined();
  });
});
