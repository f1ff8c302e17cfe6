// The hand-assembled request body must be exactly what parsing through the body's schema and
// serializing would give, including for items received from the model (unknown fields dropped).

import { requestBodyCandidate, requestBodyJson, type RequestBodyParts } from '../../../src/model/request-body.js';
import { ResponseOutputItemSchema, ResponsesRequestBodySchema, type ResponseInputItem, type ToolSpec } from '../../../src/protocol/responses.js';
import { LocalError } from '../../../src/util/errors.js';

const tools: ToolSpec[] = [
  { type: 'function', name: 'exec_command', description: 'Runs a command.', strict: false, parameters: { type: 'object', properties: { cmd: { type: 'string' } } } },
  { type: 'custom', name: 'apply_patch', description: 'Patches.', format: { type: 'grammar', syntax: 'lark', definition: 'start: "x"' } },
];

function receivedReasoning(): ResponseInputItem {
  const parsed = ResponseOutputItemSchema.parse({
    type: 'reasoning',
    id: 'rs_1',
    status: 'completed',
    summary: [{ type: 'summary_text', text: 'Plan.', extra: 1 }],
    encrypted_content: 'abc',
  });
  if (parsed.type !== 'reasoning') throw new Error('unreachable');
  return parsed;
}

const input: ResponseInputItem[] = [
  { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'Be "careful"\nand brief.' }] },
  {
    type: 'message',
    role: 'user',
    content: [
      { type: 'input_text', text: 'hi ✓' },
      { type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail: 'low' },
    ],
  },
  receivedReasoning(),
  { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'exec_command', arguments: '{"cmd":"ls"}' },
  { type: 'function_call_output', call_id: 'call_1', output: [{ type: 'input_text', text: 'a\nb' }] },
  { type: 'custom_tool_call', call_id: 'call_2', name: 'apply_patch', input: '*** Begin Patch\n*** End Patch\n' },
  { type: 'custom_tool_call_output', call_id: 'call_2', output: 'Success.' },
  { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'done' }] },
];

const variants: [string, RequestBodyParts][] = [
  ['plain', { model: 'gpt-test', input, tools, parallelToolCalls: true }],
  ['no tools, no parallel calls', { model: 'gpt-test', input, tools: [], parallelToolCalls: false }],
  ['reasoning and cache key', { model: 'gpt-test', input, tools, parallelToolCalls: true, reasoning: { effort: 'high', summary: 'auto' }, promptCacheKey: 'thread-1' }],
  ['reasoning without summary', { model: 'gpt-test', input, tools, parallelToolCalls: true, reasoning: { effort: 'low', summary: undefined } }],
];

describe('requestBodyJson', () => {
  it.each(variants)('equals the schema-parsed body, serialized (%s)', (_name, parts) => {
    const expected = JSON.stringify(ResponsesRequestBodySchema.parse(requestBodyCandidate(parts)));
    expect(requestBodyJson(parts)).toBe(expected);
    // Items and tools come from the caches the second time; the text must not change.
    expect(requestBodyJson(parts)).toBe(expected);
  });

  it('sends tool_choice with tools only', () => {
    expect(JSON.parse(requestBodyJson({ model: 'gpt-test', input, tools, parallelToolCalls: true }))).toHaveProperty('tool_choice', 'auto');
    expect(JSON.parse(requestBodyJson({ model: 'gpt-test', input, tools: [], parallelToolCalls: false }))).not.toHaveProperty('tool_choice');
  });

  it('reports an invalid item with its path, as the body schema words it', () => {
    const bad: unknown = { type: 'function_call_output', output: 'no call id' };
    const parts: RequestBodyParts = { model: 'gpt-test', input: [input[0]!, bad as ResponseInputItem], tools, parallelToolCalls: true };

    expect(() => requestBodyJson(parts)).toThrow(LocalError);
    expect(() => requestBodyJson(parts)).toThrow(/invalid model request: .*input\[1\]/s);
  });

  it.each([
    ['a tag no branch has', { type: 'image_generation_call', id: 'ig_1' }],
    ['no tag', { role: 'user', content: [] }],
    ['a message of neither role', { type: 'message', role: 'system', content: [] }],
    ['no object', 'text'],
  ])('refuses an item with %s, as the whole union does', (_name, bad: unknown) => {
    const parts: RequestBodyParts = { model: 'gpt-test', input: [bad as ResponseInputItem], tools, parallelToolCalls: true };
    expect(() => requestBodyJson(parts)).toThrow(/invalid model request: .*input\[0\]/s);
  });

  it('reports an invalid tool', () => {
    const bad: unknown = { type: 'function', name: 'x' };
    expect(() => requestBodyJson({ model: 'gpt-test', input, tools: [bad as ToolSpec], parallelToolCalls: true })).toThrow(/invalid model request: .*tools\[0\]/s);
  });
});
