// The bound on calls the modern era keeps for a retry (a client that never retries an
// `input_required` answer cannot grow them without bound) counts the calls parked between
// rounds, not the calls open on a request: a hub has hundreds of those at once.
import { z } from 'zod';
import { ModernEra } from '../../../src/mcp/modern-era.js';
import { defineTool, toolTable } from '../../../src/mcp/tools.js';
import { askingTool, modernCall } from '../../helpers/modern-era.js';
import type { Json } from '../../helpers/steps.js';

/** More calls than the bound (256). */
const CALLS = 300;

describe('the modern era under many calls at once', () => {
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  /** A tool that answers once released: its calls stay open on their requests meanwhile. */
  const held = defineTool({
    name: 'held',
    title: 'Held',
    description: 'Answers when the test releases it.',
    input: z.object({}),
    output: z.object({ done: z.boolean() }),
    run: async () => {
      await released;
      return { content: [{ type: 'text', text: 'done' }], structuredContent: { done: true } };
    },
  });
  const era = new ModernEra({ tools: toolTable([held, askingTool]), serverInfo: { name: 'test', version: '1' }, approvalTimeoutMs: 60_000 });
  afterAll(() => era.close());

  const call = (id: number, name: string): Promise<Json> => modernCall(era, id, name);

  it('serves more open calls than the bound, and refuses a call only when the parked ones reach it', async () => {
    const open = Array.from({ length: CALLS }, (_, i) => call(i, 'held'));
    release();
    for (const answer of await Promise.all(open)) expect(answer).toMatchObject({ result: { resultType: 'complete', structuredContent: { done: true } } });

    // 256 calls parked waiting for their retries: the next one is refused, saying why.
    const parked = await Promise.all(Array.from({ length: 256 }, (_, i) => call(1000 + i, 'ask')));
    for (const answer of parked) expect(answer).toMatchObject({ result: { resultType: 'input_required' } });
    expect(await call(2000, 'ask')).toMatchObject({ error: { message: expect.stringContaining('too many calls waiting for input (256)') } });
  });
});
