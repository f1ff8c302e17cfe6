// The MCP tools end to end: our server composed in-process as the CLI composes it (the built CLI
// where a test kills the server), the SDK client, the fake model, real exec-servers.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { functionCallOutputs, inputItems, toolNames, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, textOf, type McpHarness } from '../helpers/mcp.js';
import { CODEX, startCodexWsExecServer, startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { exec, say } from '../helpers/steps.js';

describe('MCP server with the fake model', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    ({ home, work, model } = await setUpMcpWorld('mcp', () => steps.shift() ?? say('script exhausted')));
  });
  afterEach(async () => {
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
  });

  it('lists the tools with the old names and an output schema', async () => {
    mcp = await startInProcessMcp(home.path);
    const { tools } = await mcp.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      'codex',
      'codex-reply',
      'codex-status',
      'environment/add',
      'environment/list',
      'environment/remove',
      'thread/close',
      'thread/list',
      'turn/interrupt',
    ]);
    const codex = tools.find((t) => t.name === 'codex');
    expect(codex?.outputSchema).toMatchObject({ properties: { threadId: { type: 'string' }, content: { type: 'string' } } });
    expect(Object.keys(codex?.inputSchema.properties ?? {})).toEqual(
      expect.arrayContaining([
        'prompt',
        'model',
        'profile',
        'cwd',
        'approval-policy',
        'sandbox',
        'config',
        'base-instructions',
        'developer-instructions',
        'compact-prompt',
        'environments',
      ]),
    );
  });

  it('runs a turn with a command, returns {threadId, content}, and continues the thread with codex-reply', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(exec('echo hello-from-turn'), say('first done'));
    const first = await mcp.call('codex', { prompt: 'run echo', cwd: work.path });
    expect(first.isError).toBeFalsy();
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    expect(first.structuredContent).toEqual({ threadId, content: 'first done' });
    expect(textOf(first)).toBe('first done');
    const outputs = functionCallOutputs(model.requests[1]!);
    expect(String(outputs[0]?.output)).toMatch(/Process exited with code 0[\s\S]*Output:\nhello-from-turn/);
    expect(toolNames(model.requests[0]!)).toEqual(expect.arrayContaining(['exec_command', 'write_stdin', 'apply_patch', 'view_image', 'list_dir']));

    steps.push(say('second done'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'and again' });
    expect(second.structuredContent).toEqual({ threadId, content: 'second done' });
    const history = JSON.stringify(inputItems(model.requests[2]!));
    expect(history).toContain('run echo');
    expect(history).toContain('hello-from-turn');
    expect(history).toContain('and again');
  });

  it('continues a thread after the server restarts, with its history and sticky environments', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(say('before restart'));
    const first = await mcp.call('codex', { prompt: 'remember the word pineapple', cwd: work.path, environments: [{ id: 'local', cwd: work.path }] });
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    await mcp.close();
    mcp = await startInProcessMcp(home.path);
    steps.push(exec('pwd'), say('after restart'));
    const again = await mcp.call('codex-reply', { conversationId: threadId, prompt: 'what was the word?' });
    expect(again.structuredContent).toEqual({ threadId, content: 'after restart' });
    const input = JSON.stringify(inputItems(model.requests[1]!));
    expect(input).toContain('remember the word pineapple');
    expect(input).toContain('before restart');
    expect(String(functionCallOutputs(model.requests[2]!)[0]?.output)).toContain(work.path);
  });

  it('recovers a thread whose server was killed mid-turn: the dangling call is answered and the thread continues', async () => {
    // The built CLI: the command kills the server's process.
    mcp = await startMcp(home.path);
    steps.push(say('turn one'));
    const first = await mcp.call('codex', { prompt: 'start', cwd: work.path });
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    // The command's parent is the MCP server (the local exec-server runs in-process): kill it.
    steps.push(exec('kill -9 $PPID'));
    await expect(mcp.call('codex-reply', { threadId, prompt: 'crash now' })).rejects.toThrow();
    await mcp.close().catch(() => undefined);
    mcp = await startMcp(home.path);
    steps.push(say('recovered'));
    const again = await mcp.call('codex-reply', { threadId, prompt: 'are you there?' });
    expect(again.structuredContent).toEqual({ threadId, content: 'recovered' });
    const last = model.requests[model.requests.length - 1]!;
    const outputs = functionCallOutputs(last).map((o) => String(o.output));
    expect(outputs).toContain('the server stopped before this tool call finished; its effect is unknown');
    expect(JSON.stringify(inputItems(last))).toContain('crash now');
  });

  it('rejects bad environments before any model call, and reports unknown threads with their id', async () => {
    mcp = await startInProcessMcp(home.path);
    const unknown = await mcp.call('codex', { prompt: 'x', environments: [{ id: 'nope' }] });
    expect(unknown.isError).toBe(true);
    expect(unknown.structuredContent).toBeUndefined();
    expect(textOf(unknown)).toMatch(/unknown turn environment id `nope`; known environments: local/);
    const relative = await mcp.call('codex', { prompt: 'x', environments: [{ id: 'local', cwd: 'relative/dir' }] });
    expect(textOf(relative)).toMatch(/invalid cwd for environment `local`: path `relative\/dir` is not an absolute path/);
    const duplicate = await mcp.call('codex', { prompt: 'x', environments: [{ id: 'local' }, { id: 'local' }] });
    expect(textOf(duplicate)).toMatch(/duplicate turn environment id `local`/);
    expect(model.requests).toHaveLength(0);
    const missing = await mcp.call('codex-reply', { threadId: 'no-such-thread', prompt: 'x' });
    expect(missing).toMatchObject({ isError: true, structuredContent: { threadId: 'no-such-thread', content: 'Session not found for thread_id: no-such-thread' } });
    const noPrompt = await mcp.call('codex', {});
    expect(noPrompt.isError).toBe(true);
    expect(noPrompt.structuredContent).toBeUndefined();
    expect(textOf(noPrompt)).toMatch(/prompt/);
  });

  it('routes tool calls by environment_id across local and a websocket exec-server added at run time', async () => {
    const box = await tempDir('mcp-box-');
    const server: ListeningProcess = await startOurWsExecServer([], { ...process.env, MARK: 'on-box' });
    try {
      mcp = await startInProcessMcp(home.path);
      const added = await mcp.call('environment/add', { environmentId: 'box', execServerUrl: server.url });
      expect(added.isError).toBeFalsy();
      expect(added.structuredContent).toMatchObject({ environment: { id: 'box', kind: 'websocket', status: 'pending' } });
      steps.push(
        exec('echo mark=$MARK', { environment_id: 'box' }),
        {
          kind: 'output',
          items: [{ type: 'custom_tool_call', name: 'apply_patch', input: '*** Begin Patch\n*** Environment ID: box\n*** Add File: made-on-box.txt\n+box file\n*** End Patch\n' }],
        },
        exec('echo local-mark=$MARK'),
        say('routed'),
      );
      const result = await mcp.call('codex', {
        prompt: 'use both',
        environments: [
          { id: 'local', cwd: work.path },
          { id: 'box', cwd: box.path },
        ],
        config: { 'shell_environment_policy.inherit': 'all' },
      });
      expect(result.structuredContent).toMatchObject({ content: 'routed' });
      const outputs = model.requests.flatMap((r) => functionCallOutputs(r)).map((o) => String(o.output));
      expect(outputs.join('\n')).toContain('mark=on-box');
      expect(outputs.join('\n')).not.toContain('local-mark=on-box');
      expect(await readFile(join(box.path, 'made-on-box.txt'), 'utf8')).toBe('box file\n');
      const context = JSON.stringify(inputItems(model.requests[0]!));
      expect(context).toContain('<environment id=\\"local\\" primary=\\"true\\">');
      expect(context).toContain('<environment id=\\"box\\" primary=\\"false\\">');
      const list = await mcp.call('environment/list', {});
      expect((list.structuredContent as { environments: { id: string; status: string }[] }).environments.map((e) => [e.id, e.status])).toEqual([
        ['local', 'ready'],
        ['box', 'ready'],
      ]);
    } finally {
      await server.stop();
      await box.cleanup();
    }
  });

  it('uses the real codex exec-server as remote environments (stdio from environments.toml, websocket added at run time)', async () => {
    const codexHome = await tempDir('real-codex-home-');
    const wsHome = await tempDir('real-codex-ws-home-');
    const wsWork = await tempDir('real-codex-ws-work-');
    const server = await startCodexWsExecServer(wsHome.path);
    try {
      await writeFile(
        join(home.path, 'environments.toml'),
        `[[environments]]\nid = "real"\nprogram = ${JSON.stringify(CODEX)}\nargs = ["exec-server", "--listen", "stdio"]\nenv = { CODEX_HOME = ${JSON.stringify(codexHome.path)}, MARK = "real-stdio" }\n`,
      );
      mcp = await startInProcessMcp(home.path);
      const added = await mcp.call('environment/add', { id: 'realws', url: server.url });
      expect(added.isError).toBeFalsy();
      steps.push(
        exec('echo on-$MARK', { environment_id: 'real' }),
        {
          kind: 'output',
          items: [
            {
              type: 'custom_tool_call',
              name: 'apply_patch',
              input: '*** Begin Patch\n*** Environment ID: real\n*** Add File: via-real.txt\n+from the real exec-server\n*** End Patch\n',
            },
          ],
        },
        exec('pwd', { environment_id: 'realws' }),
        {
          kind: 'output',
          items: [
            {
              type: 'custom_tool_call',
              name: 'apply_patch',
              input: '*** Begin Patch\n*** Environment ID: realws\n*** Add File: via-real-ws.txt\n+over websocket\n*** End Patch\n',
            },
          ],
        },
        say('real done'),
      );
      const result = await mcp.call('codex', {
        prompt: 'use the real exec-servers',
        environments: [
          { id: 'real', cwd: work.path },
          { id: 'realws', cwd: wsWork.path },
        ],
        config: { 'shell_environment_policy.inherit': 'all' },
      });
      expect(result.structuredContent).toMatchObject({ content: 'real done' });
      const outputs = model.requests
        .flatMap((r) => functionCallOutputs(r))
        .map((o) => String(o.output))
        .join('\n');
      expect(outputs).toContain('on-real-stdio');
      expect(outputs).toContain(wsWork.path);
      expect(await readFile(join(work.path, 'via-real.txt'), 'utf8')).toBe('from the real exec-server\n');
      expect(await readFile(join(wsWork.path, 'via-real-ws.txt'), 'utf8')).toBe('over websocket\n');
    } finally {
      await server.stop();
      await codexHome.cleanup();
      await wsHome.cleanup();
      await wsWork.cleanup();
    }
  });

  it('shows images to the model with view_image and lists directories with list_dir', async () => {
    // A 1x1 PNG.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
    await writeFile(join(work.path, 'pixel.png'), png);
    await writeFile(join(work.path, 'notes.txt'), 'not an image');
    mcp = await startInProcessMcp(home.path);
    steps.push(
      { kind: 'output', items: [{ type: 'function_call', name: 'view_image', arguments: { path: 'pixel.png' } }] },
      { kind: 'output', items: [{ type: 'function_call', name: 'view_image', arguments: { path: 'notes.txt' } }] },
      { kind: 'output', items: [{ type: 'function_call', name: 'list_dir', arguments: { dir_path: '.' } }] },
      say('seen'),
    );
    const result = await mcp.call('codex', { prompt: 'look', cwd: work.path });
    expect(result.structuredContent).toMatchObject({ content: 'seen' });
    const image = functionCallOutputs(model.requests[1]!)[0]?.output;
    expect(image).toEqual([{ type: 'input_image', image_url: `data:image/png;base64,${png.toString('base64')}` }]);
    expect(String(functionCallOutputs(model.requests[2]!).at(-1)?.output)).toMatch(/notes.txt is not a PNG, JPEG, GIF or WebP image/);
    const listing = String(functionCallOutputs(model.requests[3]!).at(-1)?.output);
    expect(listing).toContain(`Absolute path: ${work.path}`);
    expect(listing).toMatch(/notes\.txt\npixel\.png/);
  });
});
