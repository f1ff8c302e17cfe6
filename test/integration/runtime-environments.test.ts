// An environment added with environment/add lives as long as the server process. A thread sticky
// to it, continued by a later server process, fails its turn before any model request, naming the
// missing id, and works again (history kept) once the environment is added again.
import { inputItems, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, textOf, type McpHarness } from '../helpers/mcp.js';
import { startOurWsExecServer, type ListeningProcess } from '../helpers/process.js';
import { exec, say } from '../helpers/steps.js';

describe('environments added at run time', () => {
  let world: Awaited<ReturnType<typeof setUpMcpWorld>>;
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  let box: ListeningProcess | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('runtime-env', () => steps.shift() ?? say('script exhausted'));
    model = world.model;
    box = await startOurWsExecServer();
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
    await box?.stop();
  });

  it('are gone after a restart: the sticky thread fails clearly without a model request, then continues once the environment is added again', async () => {
    mcp = await startMcp(world.home.path);
    const added = await mcp.call('environment/add', { id: 'box', url: box!.url });
    expect(added.isError).toBeFalsy();
    steps.push(exec('echo on-the-box'), say('first done'));
    const first = await mcp.call('codex', { prompt: 'use the box', cwd: world.work.path, environments: [{ id: 'box', cwd: world.work.path }] });
    expect(first.structuredContent).toMatchObject({ content: 'first done' });
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    await mcp.close();

    mcp = await startMcp(world.home.path);
    const requestsBefore = model.requests.length;
    const failed = await mcp.call('codex-reply', { threadId, prompt: 'again' });
    expect(failed.isError).toBe(true);
    expect(textOf(failed)).toContain("the thread's environment `box` is not registered in this server");
    expect(textOf(failed)).toContain('known environments: local');
    expect(model.requests).toHaveLength(requestsBefore);

    await mcp.call('environment/add', { id: 'box', url: box!.url });
    steps.push(say('second done'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'again' });
    expect(second.structuredContent).toEqual({ threadId, content: 'second done' });
    expect(JSON.stringify(inputItems(model.requests.at(-1)!))).toContain('on-the-box');
  });
});
