// What the model is given beyond the prompt, through the MCP surface: the user's and each
// environment's AGENTS.md files (read through that environment), the context sent once and again
// only when it changes, the plan tool, web search and the reasoning Codex asks for.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inputItems, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, textOf, writeMcpConfig, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { isRecord, say, type Json } from '../helpers/steps.js';

/** The texts of the user messages of a request, in order. */
function userTexts(request: RecordedRequest): string[] {
  return inputItems(request)
    .filter((item): item is Json => isRecord(item) && item['type'] === 'message' && item['role'] === 'user')
    .map((item) => (Array.isArray(item['content']) ? item['content'].map((part) => (isRecord(part) && typeof part['text'] === 'string' ? part['text'] : '')).join('') : ''));
}

/** The last user message's text: the prompt of the request's turn. */
function promptOf(request: RecordedRequest): string {
  return userTexts(request).at(-1) ?? '';
}

/** config.toml for the fake model with top-level `keys` (writeMcpConfig's extra lines land in the provider's table). */
async function configWith(world: McpTestWorld, keys: string): Promise<void> {
  await writeMcpConfig(world.home.path, world.model.url);
  const path = join(world.home.path, 'config.toml');
  await writeFile(path, `${keys}\n${await readFile(path, 'utf8')}`);
}

/**
 * The messages of the progress notifications the server sent, read from everything it sent: the
 * SDK client handles notifications a microtask late, so it drops those that arrive in the same read
 * as the call's result (as they do on a busy machine), though the server sent them in order.
 */
function progressMessages(mcp: McpHarness): string[] {
  return mcp.received
    .filter((message): message is Json => isRecord(message) && message['method'] === 'notifications/progress')
    .map((message) => (isRecord(message['params']) && typeof message['params']['message'] === 'string' ? message['params']['message'] : ''));
}

function body(request: RecordedRequest): Json {
  return isRecord(request.body) ? request.body : {};
}

describe('the model context through MCP', () => {
  let world: McpTestWorld;
  let mcp: McpHarness | undefined;
  let remote: ListeningProcess;
  let remoteDir: { path: string; cleanup: () => Promise<void> };
  const steps = new Map<string, FakeStep[]>();

  beforeAll(async () => {
    remote = await startOurWsExecServer();
    remoteDir = await tempDir('cmx-ctx-remote-');
  });
  afterAll(async () => {
    await remote.stop();
    await remoteDir.cleanup();
  });
  beforeEach(async () => {
    steps.clear();
    // Each prompt may name a script of steps; the rest of a turn says "done".
    world = await setUpMcpWorld('cmx-ctx', (request) => {
      const script = steps.get(promptOf(request).split(':')[0] ?? '');
      const last = inputItems(request).at(-1);
      if (script !== undefined && isRecord(last) && last['type'] === 'message') return script[0] ?? say('done');
      if (script !== undefined && script.length > 1 && isRecord(last) && last['type'] === 'function_call_output') return script[1] ?? say('done');
      return say('done');
    });
    await writeFile(join(world.home.path, 'environments.toml'), ['[[environments]]', 'id = "box"', `url = "${remote.url}"`].join('\n'));
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it("sends the global file and each environment's AGENTS.md, read there, labelled, root first, override first", async () => {
    const repo = join(world.work.path, 'repo');
    await mkdir(join(repo, '.git'), { recursive: true });
    await mkdir(join(repo, 'pkg', 'sub'), { recursive: true });
    await writeFile(join(world.home.path, 'AGENTS.md'), 'GLOBAL RULE\n');
    await writeFile(join(repo, 'AGENTS.md'), 'REPO ROOT RULE\n');
    await writeFile(join(repo, 'pkg', 'AGENTS.md'), 'PKG RULE (overridden)\n');
    await writeFile(join(repo, 'pkg', 'AGENTS.override.md'), 'PKG OVERRIDE RULE\n');
    await writeFile(join(repo, 'pkg', 'sub', 'AGENTS.md'), '   \n');
    await writeFile(join(world.work.path, 'AGENTS.md'), 'ABOVE THE ROOT: NEVER SENT\n');
    await writeFile(join(remoteDir.path, 'AGENTS.md'), 'REMOTE RULE\n');
    mcp = await startInProcessMcp(world.home.path);

    const started = await mcp.call('codex', {
      prompt: 'first',
      cwd: join(repo, 'pkg', 'sub'),
      environments: [
        { id: 'local', cwd: join(repo, 'pkg', 'sub') },
        { id: 'box', cwd: remoteDir.path },
      ],
    });
    expect(started.isError).toBeFalsy();
    const threadId = (started.structuredContent as { threadId: string }).threadId;
    const first = world.model.requests[0]!;
    const instructions = userTexts(first).find((text) => text.startsWith('<project_instructions>'));
    expect(instructions).toBeDefined();
    const text = instructions!;
    expect(text).toContain(`<user_instructions path="${join(world.home.path, 'AGENTS.md')}">\nGLOBAL RULE`);
    expect(text).toContain(`<environment id="local" cwd="${join(repo, 'pkg', 'sub')}">`);
    expect(text).toContain(`<environment id="box" cwd="${remoteDir.path}">\n<agents_md path="${join(remoteDir.path, 'AGENTS.md')}">\nREMOTE RULE`);
    expect(text.indexOf('REPO ROOT RULE')).toBeLessThan(text.indexOf('PKG OVERRIDE RULE'));
    expect(text).not.toContain('PKG RULE (overridden)');
    expect(text).not.toContain('ABOVE THE ROOT');
    // The model is told the approval policy in force.
    expect(userTexts(first).find((t) => t.startsWith('<environment_context>'))).toContain('<approval_policy>never:');

    const status = await mcp.call('codex-status', { threadId });
    expect((status.structuredContent as { instructions: unknown }).instructions).toEqual([
      { environmentId: null, path: join(world.home.path, 'AGENTS.md'), bytes: 12, truncated: false },
      { environmentId: 'local', path: join(repo, 'AGENTS.md'), bytes: 15, truncated: false },
      { environmentId: 'local', path: join(repo, 'pkg', 'AGENTS.override.md'), bytes: 18, truncated: false },
      { environmentId: 'box', path: join(remoteDir.path, 'AGENTS.md'), bytes: 12, truncated: false },
    ]);

    // Same environments, same files: the next turn sends neither context message again.
    await mcp.call('codex-reply', { threadId, prompt: 'second' });
    const second = world.model.requests[1]!;
    expect(userTexts(second).filter((t) => t.startsWith('<project_instructions>'))).toHaveLength(1);
    expect(userTexts(second).filter((t) => t.startsWith('<environment_context>'))).toHaveLength(1);
    expect(promptOf(second)).toBe('second');

    // A file changed on the remote host: the next turn carries the new instructions once more.
    await writeFile(join(remoteDir.path, 'AGENTS.md'), 'REMOTE RULE, EDITED\n');
    await mcp.call('codex-reply', { threadId, prompt: 'third' });
    const third = userTexts(world.model.requests[2]!);
    expect(third.filter((t) => t.startsWith('<project_instructions>'))).toHaveLength(2);
    expect(third.filter((t) => t.startsWith('<project_instructions>'))[1]).toContain('REMOTE RULE, EDITED');
    expect(third.filter((t) => t.startsWith('<environment_context>'))).toHaveLength(1);

    // A turn in another working directory (no AGENTS.md there, no root): both contexts change.
    const elsewhere = join(world.work.path, 'elsewhere');
    await mkdir(elsewhere);
    await mcp.call('codex-reply', { threadId, prompt: 'fourth', environments: [{ id: 'local', cwd: elsewhere }] });
    const fourth = userTexts(world.model.requests[3]!);
    const latest = fourth.filter((t) => t.startsWith('<project_instructions>')).at(-1)!;
    expect(latest).toContain('GLOBAL RULE');
    expect(latest).not.toContain('REPO ROOT RULE');
    expect(fourth.filter((t) => t.startsWith('<environment_context>'))).toHaveLength(2);
  });

  it('cuts the instructions at project_doc_max_bytes and reads fallback names', async () => {
    await configWith(world, 'project_doc_max_bytes = 10\nproject_doc_fallback_filenames = ["CLAUDE.md"]');
    await writeFile(join(world.work.path, 'CLAUDE.md'), '0123456789ABCDEF\n');
    mcp = await startInProcessMcp(world.home.path);
    const started = await mcp.call('codex', { prompt: 'go', cwd: world.work.path, environments: [{ id: 'local', cwd: world.work.path }] });
    const text = userTexts(world.model.requests[0]!).find((t) => t.startsWith('<project_instructions>'))!;
    expect(text).toContain(`<agents_md path="${join(world.work.path, 'CLAUDE.md')}" truncated="true">\n0123456789\n</agents_md>`);
    const status = await mcp.call('codex-status', { threadId: (started.structuredContent as { threadId: string }).threadId });
    expect((status.structuredContent as { instructions: unknown }).instructions).toEqual([
      { environmentId: 'local', path: join(world.work.path, 'CLAUDE.md'), bytes: 10, truncated: true },
    ]);
  });

  it("update_plan: the plan reaches progress notifications, codex-status and the next request; a bad plan is the model's error", async () => {
    const plan = {
      explanation: 'two steps',
      plan: [
        { step: 'read the code', status: 'completed' },
        { step: 'fix the bug', status: 'in_progress' },
      ],
    };
    steps.set('plan', [{ kind: 'output', items: [{ type: 'function_call', name: 'update_plan', arguments: plan }] }]);
    steps.set('bad', [
      {
        kind: 'output',
        items: [
          {
            type: 'function_call',
            name: 'update_plan',
            arguments: {
              plan: [
                { step: 'a', status: 'in_progress' },
                { step: 'b', status: 'in_progress' },
              ],
            },
          },
        ],
      },
    ]);
    mcp = await startInProcessMcp(world.home.path);
    const started = await mcp.call('codex', { prompt: 'plan: please', cwd: world.work.path }, { onprogress: () => undefined });
    expect(started.isError).toBeFalsy();
    expect(progressMessages(mcp)).toContain('plan: 1/2 done; now: fix the bug');
    const threadId = (started.structuredContent as { threadId: string }).threadId;
    expect(world.model.requests[0]!.rawBody).toContain('"name":"update_plan"');
    const output = inputItems(world.model.requests[1]!).find((item) => isRecord(item) && item['type'] === 'function_call_output');
    expect(output).toMatchObject({ output: 'Plan updated' });
    const status = await mcp.call('codex-status', { threadId });
    expect((status.structuredContent as { plan: unknown }).plan).toEqual(plan);

    await mcp.call('codex-reply', { threadId, prompt: 'bad: plan' });
    const refused = inputItems(world.model.requests[3]!)
      .filter((item) => isRecord(item) && item['type'] === 'function_call_output')
      .at(-1);
    expect(refused).toMatchObject({ output: expect.stringContaining('at most one step may be in_progress') });
    // The refused update did not replace the plan.
    const after = await mcp.call('codex-status', { threadId });
    expect((after.structuredContent as { plan: unknown }).plan).toEqual(plan);
  });

  it('offers web search as configured, passes its calls back, and asks a reasoning model for its reasoning', async () => {
    await configWith(world, 'web_search = "cached"');
    steps.set('search', [
      {
        kind: 'output',
        items: [
          { type: 'web_search_call', query: 'node 20 release date' },
          { type: 'message', text: 'searched' },
        ],
      },
    ]);
    mcp = await startInProcessMcp(world.home.path, { args: ['-c', 'sandbox_mode="read-only"'] });
    const started = await mcp.call('codex', { prompt: 'search: the web', cwd: world.work.path }, { onprogress: () => undefined });
    expect(started.isError).toBeFalsy();
    const request = body(world.model.requests[0]!);
    expect(request['tools']).toContainEqual({ type: 'web_search', external_web_access: false, search_content_types: ['text', 'image'] });
    expect(request['reasoning']).toEqual({ summary: 'auto' });
    expect(request['include']).toEqual(['reasoning.encrypted_content']);
    expect(textOf(started)).toBe('searched');
    expect(progressMessages(mcp)).toContain('web search: node 20 release date');
    // The next request carries the search the model made, so it knows it searched.
    await mcp.call('codex-reply', { threadId: (started.structuredContent as { threadId: string }).threadId, prompt: 'again' });
    expect(inputItems(world.model.requests[1]!)).toContainEqual(
      expect.objectContaining({ type: 'web_search_call', status: 'completed', action: { type: 'search', query: 'node 20 release date' } }),
    );
  });

  it('offers no web search to a provider that is not OpenAI unless configured, and live search without a sandbox', async () => {
    mcp = await startInProcessMcp(world.home.path);
    await mcp.call('codex', { prompt: 'plain', cwd: world.work.path });
    expect((body(world.model.requests[0]!)['tools'] as Json[]).some((tool) => tool['type'] === 'web_search')).toBe(false);
    await mcp.close();
    await configWith(world, 'web_search = "cached"');
    mcp = await startInProcessMcp(world.home.path);
    await mcp.call('codex', { prompt: 'plain', cwd: world.work.path });
    // The test config runs commands with danger-full-access: cached becomes live, as in Codex.
    expect(body(world.model.requests[1]!)['tools']).toContainEqual({ type: 'web_search', external_web_access: true, search_content_types: ['text', 'image'] });
  });
});
