import { COMPACT_USER_MESSAGES_MAX_TOKENS, NO_SUMMARY_NOTICE, SUMMARY_PREFIX, compactHistory, compactedHistory } from '../../../src/agent/compact.js';
import { inputMessage } from '../../../src/agent/instructions.js';
import type { ModelPort } from '../../../src/agent/model-port.js';
import { ModelApiError, ModelStreamError, isContextWindowExceeded } from '../../../src/model/errors.js';
import type { ResponseInputItem } from '../../../src/protocol/responses.js';

const user = (text: string): ResponseInputItem => inputMessage('user', text);
const assistant = (text: string): ResponseInputItem => ({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] });
const call = (id: string): ResponseInputItem => ({ type: 'function_call', call_id: id, name: 'exec_command', arguments: '{}' });
const output = (id: string): ResponseInputItem => ({ type: 'function_call_output', call_id: id, output: `out ${id}` });
const textOf = (item: ResponseInputItem | undefined): string => (item?.type === 'message' ? JSON.stringify(item.content) : '');

const overflow = (): ModelApiError => new ModelApiError({ status: 400, apiMessage: 'too long', code: 'context_length_exceeded' });

describe('compactedHistory', () => {
  it('keeps the latest environment context, the user prompts oldest first, and the summary last; drops assistant items, tool items and older summaries', () => {
    const history = compactedHistory(
      [
        user('<environment_context>old</environment_context>'),
        user('first'),
        assistant('answer'),
        call('c1'),
        output('c1'),
        user(`${SUMMARY_PREFIX}\n\nan older summary`),
        user('<environment_context>new</environment_context>'),
        user('second'),
      ],
      'the summary',
    );
    expect(history.map(textOf)).toEqual([
      textOf(user('<environment_context>new</environment_context>')),
      textOf(user('first')),
      textOf(user('second')),
      textOf(user(`${SUMMARY_PREFIX}\n\nthe summary`)),
    ]);
  });

  it('keeps only the most recent user messages within the budget, shortening the one that crosses it', () => {
    const big = 'x'.repeat(COMPACT_USER_MESSAGES_MAX_TOKENS * 4);
    const history = compactedHistory([user('oldest'), user(big), user('newest')], 's');
    const texts = history.map(textOf);
    expect(texts.some((text) => text.includes('oldest'))).toBe(false);
    expect(texts[1]).toContain('newest');
    expect(texts[0]).toContain('tokens truncated');
    expect(texts).toHaveLength(3);
  });
});

describe('compactHistory', () => {
  it('asks without tools, with the prompt last, and returns the summary', async () => {
    const seen: ResponseInputItem[][] = [];
    const model: ModelPort = {
      respond: (request) => {
        seen.push(request.input);
        expect(request.tools).toEqual([]);
        return Promise.resolve({ output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: ' the summary ' }] }] });
      },
    };
    const result = await compactHistory({
      model,
      modelName: 'm',
      instructions: ['base'],
      items: [user('do it'), assistant('done')],
      prompt: 'SUMMARIZE',
      signal: new AbortController().signal,
    });
    expect(result.summary).toBe('the summary');
    expect(result.trimmed).toBe(0);
    expect(seen[0]?.map(textOf)).toEqual([textOf(inputMessage('developer', 'base')), textOf(user('do it')), textOf(assistant('done')), textOf(user('SUMMARIZE'))]);
  });

  it('leaves the oldest items out of the summarizing request while it does not fit, never leaving an output whose call was cut', async () => {
    const seen: ResponseInputItem[][] = [];
    const model: ModelPort = {
      respond: (request) => {
        seen.push(request.input);
        if (seen.length < 3) return Promise.reject(overflow());
        return Promise.resolve({ output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'short' }] }] });
      },
    };
    const items = [user('a'), call('c1'), output('c1'), user('b'), call('c2'), output('c2'), user('c'), assistant('d')];
    const result = await compactHistory({ model, modelName: 'm', instructions: [], items, prompt: 'P', signal: new AbortController().signal });
    expect(seen).toHaveLength(3);
    expect(result.trimmed).toBeGreaterThan(0);
    for (const input of seen) {
      const calls = new Set(input.flatMap((item) => (item.type === 'function_call' ? [item.call_id] : [])));
      for (const item of input) if (item.type === 'function_call_output') expect(calls.has(item.call_id)).toBe(true);
    }
    // The compacted history is built from every item, not only those the summary saw.
    expect(result.history.map(textOf).filter((text) => text.includes('"a"'))).toHaveLength(1);
  });

  it('keeps the recent user messages, shortened, with a notice instead of a summary when even one item does not fit', async () => {
    let asked = 0;
    const model: ModelPort = {
      respond: () => {
        asked++;
        return Promise.reject(overflow());
      },
    };
    const huge = 'y'.repeat(COMPACT_USER_MESSAGES_MAX_TOKENS * 8);
    const result = await compactHistory({
      model,
      modelName: 'm',
      instructions: [],
      items: [user('<environment_context>e</environment_context>'), user(huge)],
      prompt: 'P',
      signal: new AbortController().signal,
    });
    expect(result.unsummarized).toBe(true);
    expect(result.summary).toBe(NO_SUMMARY_NOTICE);
    expect(asked).toBe(2);
    const texts = result.history.map(textOf);
    expect(texts).toHaveLength(3);
    expect(texts[1]!.length).toBeLessThan(COMPACT_USER_MESSAGES_MAX_TOKENS * 4 + 200);
    expect(texts[2]).toContain(NO_SUMMARY_NOTICE);
  });

  it('fails (leaving the caller to keep the history) on an empty answer or another error', async () => {
    const empty: ModelPort = { respond: () => Promise.resolve({ output: [] }) };
    await expect(compactHistory({ model: empty, modelName: 'm', instructions: [], items: [user('a')], prompt: 'P', signal: new AbortController().signal })).rejects.toThrow(
      /without text/,
    );
    const broken: ModelPort = { respond: () => Promise.reject(new ModelApiError({ status: 401, apiMessage: 'bad key' })) };
    await expect(compactHistory({ model: broken, modelName: 'm', instructions: [], items: [user('a')], prompt: 'P', signal: new AbortController().signal })).rejects.toThrow(
      /bad key/,
    );
  });
});

describe('isContextWindowExceeded', () => {
  it('recognizes the code in HTTP errors and in failed streams, and nothing else', () => {
    expect(isContextWindowExceeded(overflow())).toBe(true);
    expect(isContextWindowExceeded(new ModelStreamError({ reason: 'failed', code: 'context_length_exceeded', message: 'x' }))).toBe(true);
    expect(isContextWindowExceeded(new ModelStreamError({ reason: 'failed', code: 'server_error', message: 'x' }))).toBe(false);
    expect(isContextWindowExceeded(new ModelApiError({ status: 400, apiMessage: 'context_length_exceeded' }))).toBe(false);
    expect(isContextWindowExceeded(new Error('context_length_exceeded'))).toBe(false);
  });
});
