// `thread/list` paging end to end: our built server over stdio, the SDK client, the fake model.
// Pages follow `nextCursor` through threads loaded in memory and, after a restart, through the
// persistent summary index; a cursor the server did not give is a clear error.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, textOf, threadIdOf, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { isRecord, say, type Json } from '../helpers/steps.js';

function structured(result: { structuredContent?: unknown }): Json {
  const value = result.structuredContent;
  if (!isRecord(value)) throw new Error(`no structuredContent in ${JSON.stringify(result)}`);
  return value;
}

interface Page {
  threads: Json[];
  total: number;
  nextCursor?: string;
}

/** Follows nextCursor from the first page to the last. */
async function pages(mcp: McpHarness, args: Json): Promise<Page[]> {
  const out: Page[] = [];
  let cursor: string | undefined;
  do {
    const result = await mcp.call('thread/list', { ...args, ...(cursor === undefined ? {} : { cursor }) });
    expect(result.isError).toBeFalsy();
    const page = structured(result) as unknown as Page;
    out.push(page);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return out;
}

describe('thread/list paging', () => {
  let world: McpTestWorld;
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    world = await setUpMcpWorld('mcp-thread-list', () => say('done'));
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('pages with limit and cursor, loaded and after a restart (from the summary index), and refuses a cursor it did not give', async () => {
    mcp = await startMcp(world.home.path);
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(threadIdOf(await mcp.call('codex', { prompt: `task ${i}`, cwd: world.work.path })));

    // Without a cursor or limit: today's shape, every thread on one page, no nextCursor.
    const whole = structured(await mcp.call('thread/list', {}));
    expect(Object.keys(whole).sort()).toEqual(['threads', 'total']);
    const order = (whole.threads as Json[]).map((thread) => thread.threadId);
    expect([...order].sort()).toEqual([...ids].sort());

    const loaded = await pages(mcp, { limit: 2 });
    expect(loaded.map((page) => page.threads.length)).toEqual([2, 2, 1]);
    expect(loaded.flatMap((page) => page.threads.map((thread) => thread.threadId))).toEqual(order);
    expect(loaded.map((page) => page.total)).toEqual([5, 5, 5]);
    expect(loaded[2]).not.toHaveProperty('nextCursor');

    const bad = await mcp.call('thread/list', { cursor: 'not-a-cursor' });
    expect(bad.isError).toBe(true);
    expect(textOf(bad)).toMatch(/thread\/list: invalid cursor "not-a-cursor": pass the nextCursor of a previous answer unchanged/);
    await mcp.close();

    // A new server process pages through the stored threads from the index it keeps beside them.
    mcp = await startMcp(world.home.path);
    const stored = await pages(mcp, { limit: 2, status: 'idle' });
    expect(stored.flatMap((page) => page.threads.map((thread) => [thread.threadId, thread.status, thread.preview]))).toEqual(
      order.map((threadId) => [threadId, 'idle', `task ${ids.indexOf(String(threadId))}`]),
    );
    expect(stored.map((page) => page.total)).toEqual([5, 5, 5]);
    expect(structured(await mcp.call('thread/list', { status: 'failed' }))).toEqual({ threads: [], total: 0 });
    expect(await readdir(join(world.home.path, 'multienv', 'threads', 'index'))).toEqual(expect.arrayContaining(['summaries', 'summaries.log']));

    // A thread continued here is listed from memory, at the front, and once across pages.
    const last = String(order[order.length - 1]);
    await mcp.call('codex-reply', { threadId: last, prompt: 'again' });
    const mixed = await pages(mcp, { limit: 3 });
    const mixedOrder = mixed.flatMap((page) => page.threads.map((thread) => thread.threadId));
    expect(mixedOrder).toEqual([last, ...order.slice(0, -1)]);
    expect(mixed.map((page) => page.total)).toEqual([5, 5]);
  });
});
