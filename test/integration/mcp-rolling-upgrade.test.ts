// A rolling upgrade: a newer version appended records of a kind this one does not know to a thread
// this one then continues. The thread still runs with its history, the unknown records stay in
// the file for the newer version, and the server says so once. Our server composed in-process, the
// SDK client and the fake model.
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inputItems, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, storedRecords, tearDownMcpWorld, threadIdOf, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { say } from '../helpers/steps.js';

describe('a thread with records of a kind a newer version added', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-upgrade', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('continues with its history, keeps those records, and warns once', async () => {
    mcp = await startInProcessMcp(world.home.path);
    steps.push(say('first answer'));
    const threadId = threadIdOf(await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path }));
    await mcp.close();

    const future = { type: 'turn_review', at: new Date().toISOString(), turnId: 'from-a-newer-version', verdict: 'fine' };
    await appendFile(join(world.home.path, 'multienv', 'threads', `${threadId}.jsonl`), `${JSON.stringify(future)}\n`);

    mcp = await startInProcessMcp(world.home.path);
    steps.push(say('second answer'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'second prompt' });
    expect(second.isError).toBeFalsy();
    expect(second.structuredContent).toEqual({ threadId, content: 'second answer' });
    const history = JSON.stringify(inputItems(world.model.requests[1]!));
    expect(history).toContain('first prompt');
    expect(history).toContain('first answer');
    expect(history).not.toContain('turn_review');
    // Status reads load the thread again: still one warning.
    steps.push(say('third answer'));
    await mcp.call('codex-reply', { threadId, prompt: 'third prompt' });
    await mcp.call('thread/list', {});
    expect(mcp.stderr().match(/skipped 1 record of kinds this version does not know/g)).toHaveLength(1);
    expect(mcp.stderr()).toContain('"turn_review" at line');

    const types = (await storedRecords(world.home.path, threadId)).map((record) => record.type);
    expect(types.filter((type) => type === 'turn_review')).toHaveLength(1);
    expect(types.indexOf('turn_review')).toBeLessThan(types.lastIndexOf('turn_started'));
    expect(world.model.errors).toEqual([]);
  });
});
