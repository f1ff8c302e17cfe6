// Compaction end to end: our server composed in-process, the SDK client, the fake model (which reports
// usage as about one token per 16 bytes of the request). The summarizing request, the history sent
// after it, the thread file and a restart are checked on the wire and on disk.
import { functionCallOutputs, inputItems, toolNames, type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, storedRecords, tearDownMcpWorld, type McpHarness, threadIdOf } from '../helpers/mcp.js';
import { exec, isRecord, say, type Json } from '../helpers/steps.js';

const SUMMARY_PREFIX_START = 'Earlier parts of this conversation were replaced by the summary below';

/** The text of every message item of a request, in order, with its role. */
function messages(request: RecordedRequest): { role: string; text: string }[] {
  return inputItems(request)
    .filter(isRecord)
    .filter((item) => item.type === 'message')
    .map((item) => ({
      role: String(item.role),
      text: Array.isArray(item.content)
        ? item.content
            .filter(isRecord)
            .map((part) => (typeof part.text === 'string' ? part.text : ''))
            .join('')
        : String(item.content),
    }));
}

const contextLengthExceeded: FakeStep = {
  kind: 'http-error',
  status: 400,
  body: { error: { message: 'Your input exceeds the context window of this model.', type: 'invalid_request_error', param: 'input', code: 'context_length_exceeded' } },
};

describe('compaction through MCP', () => {
  let world: Awaited<ReturnType<typeof setUpMcpWorld>>;
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  /** When set, answers instead of the script. */
  let decide: ((request: RecordedRequest) => FakeStep) | undefined;
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    decide = undefined;
    world = await setUpMcpWorld('mcp-compaction', (request) => decide?.(request) ?? steps.shift() ?? say('script exhausted'));
    model = world.model;
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  /** A limit of one token: every request after the first finds the history over it. */
  const LOW_LIMIT = ['-c', 'model_auto_compact_token_limit=1'];

  it('summarizes the history once the last request reached model_auto_compact_token_limit, sends the summary instead, and keeps it after a restart', async () => {
    mcp = await startInProcessMcp(world.home.path, { args: LOW_LIMIT });
    steps.push(say('first answer'));
    const first = await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path, 'compact-prompt': 'CUSTOM COMPACT PROMPT' });
    const threadId = threadIdOf(first);
    expect(model.requests).toHaveLength(1);

    steps.push(say('SUMMARY OF THE FIRST TURN'), say('second answer'));
    const progress: string[] = [];
    const second = await mcp.call('codex-reply', { threadId, prompt: 'second prompt' }, { onprogress: (p) => progress.push(isRecord(p) ? String(p.message) : '') });
    expect(second.structuredContent).toEqual({ threadId, content: 'second answer' });
    expect(model.requests).toHaveLength(3);

    // The summarizing request: the whole history (this turn's prompt included), no tools, the
    // thread's compact prompt last.
    const summarizing = model.requests[1]!;
    expect(toolNames(summarizing)).toEqual([]);
    expect(summarizing.body).not.toHaveProperty('tool_choice');
    // Every request of the thread, the summarizing one too, shares its prompt cache key.
    expect(model.requests.map((request) => (request.body as Json).prompt_cache_key)).toEqual([threadId, threadId, threadId]);
    const asked = messages(summarizing);
    expect(asked.at(-1)).toEqual({ role: 'user', text: 'CUSTOM COMPACT PROMPT' });
    expect(asked.map((m) => m.text)).toEqual(expect.arrayContaining(['first prompt', 'first answer', 'second prompt']));

    // The next request carries the compacted history: the environment context, the user's
    // prompts and the summary; the old assistant answer is gone.
    const after = messages(model.requests[2]!).filter((m) => m.role !== 'developer');
    expect(after.map((m) => m.role)).toEqual(['user', 'user', 'user', 'user']);
    expect(after[0]!.text).toMatch(/^<environment_context>/);
    expect(after.slice(1, 3).map((m) => m.text)).toEqual(['first prompt', 'second prompt']);
    expect(after[3]!.text).toContain(SUMMARY_PREFIX_START);
    expect(after[3]!.text).toContain('SUMMARY OF THE FIRST TURN');
    expect(JSON.stringify(inputItems(model.requests[2]!))).not.toContain('first answer');
    expect(progress.some((message) => message.includes('compacting the conversation'))).toBe(true);
    const status = await mcp.call('codex-status', { threadId });
    expect((status.structuredContent as Json).context).toEqual({ tokens: expect.any(Number) as number, autoCompactTokenLimit: 1, compactions: 1 });

    // On disk: the replaced items stay, followed by the compacted record.
    const records = await storedRecords(world.home.path, threadId);
    const compacted = records.filter((record) => record.type === 'compacted');
    expect(compacted).toHaveLength(1);
    // The second turn's context was unchanged, so it added only its prompt (and the answer) to the first turn's three items.
    expect(compacted[0]).toMatchObject({ reason: 'token_limit', summary: 'SUMMARY OF THE FIRST TURN', replacedItems: 4 });
    expect(JSON.stringify(records)).toContain('first answer');

    // After a restart the thread continues from the compacted history.
    await mcp.close();
    mcp = await startInProcessMcp(world.home.path, { args: LOW_LIMIT });
    steps.push(say('third answer'));
    const third = await mcp.call('codex-reply', { threadId, prompt: 'third prompt' });
    expect(third.structuredContent).toEqual({ threadId, content: 'third answer' });
    const resumed = messages(model.requests[3]!).map((m) => m.text);
    expect(resumed.some((text) => text.includes('SUMMARY OF THE FIRST TURN'))).toBe(true);
    expect(resumed).toContain('second answer');
    expect(resumed).not.toContain('first answer');
    expect(resumed.at(-1)).toBe('third prompt');
    // A restarted server counts the stored compaction.
    expect(((await mcp.call('codex-status', { threadId })).structuredContent as Json).context).toMatchObject({ compactions: 1 });
    expect(model.errors).toEqual([]);
  });

  it('compacts in the middle of a turn, between a tool output and the next request, and the summary covers the tool call', async () => {
    mcp = await startInProcessMcp(world.home.path, { args: LOW_LIMIT });
    steps.push(exec('echo tool-ran-here'), say('SUMMARY: the command printed tool-ran-here'), say('done after compaction'));
    const result = await mcp.call('codex', { prompt: 'run it', cwd: world.work.path });
    expect(result.structuredContent).toMatchObject({ content: 'done after compaction' });
    expect(model.requests).toHaveLength(3);
    const summarizing = model.requests[1]!;
    expect(toolNames(summarizing)).toEqual([]);
    expect(JSON.stringify(functionCallOutputs(summarizing))).toContain('tool-ran-here');
    const after = inputItems(model.requests[2]!).filter(isRecord);
    expect(after.some((item) => item.type === 'function_call' || item.type === 'function_call_output')).toBe(false);
    expect(
      messages(model.requests[2]!)
        .map((m) => m.text)
        .some((text) => text.includes('SUMMARY: the command printed tool-ran-here')),
    ).toBe(true);
    // The default compact prompt was used.
    expect(messages(summarizing).at(-1)?.text).toMatch(/^Your context window is nearly full/);
  });

  it('compacts when the provider says the context window is exceeded and asks again, without a configured limit', async () => {
    mcp = await startInProcessMcp(world.home.path);
    steps.push(say('first answer'));
    const threadId = threadIdOf(await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path }));
    steps.push(contextLengthExceeded, say('SUMMARY AFTER OVERFLOW'), say('answer after overflow'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'second prompt' });
    expect(second.isError).toBeFalsy();
    expect(second.structuredContent).toEqual({ threadId, content: 'answer after overflow' });
    expect(model.requests).toHaveLength(4);
    expect(toolNames(model.requests[2]!)).toEqual([]);
    const retried = messages(model.requests[3]!).map((m) => m.text);
    expect(retried.some((text) => text.includes('SUMMARY AFTER OVERFLOW'))).toBe(true);
    expect(retried).not.toContain('first answer');
    const records = await storedRecords(world.home.path, threadId);
    expect(records.find((record) => record.type === 'compacted')).toMatchObject({ reason: 'context_window_exceeded', summary: 'SUMMARY AFTER OVERFLOW' });
  });

  it('fails the turn with a clear error (and the thread goes on) when the history is still too big after compacting', async () => {
    mcp = await startInProcessMcp(world.home.path);
    steps.push(say('first answer'));
    const threadId = threadIdOf(await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path }));
    steps.push(contextLengthExceeded, say('A SUMMARY'), contextLengthExceeded);
    const failed = await mcp.call('codex-reply', { threadId, prompt: 'second prompt' });
    expect(failed.isError).toBe(true);
    const structured = failed.structuredContent as Json;
    expect(structured.threadId).toBe(threadId);
    expect(String(structured.content)).toMatch(/exceeds the model's context window and compacting it did not help/);
    // The thread is still usable: the next turn is sent the compacted history.
    steps.push(say('still alive'));
    const next = await mcp.call('codex-reply', { threadId, prompt: 'third prompt' });
    expect(next.structuredContent).toEqual({ threadId, content: 'still alive' });
  });

  it('keeps a thread usable after a prompt too large even to summarize: the recent user messages are kept, shortened, without a summary', async () => {
    mcp = await startInProcessMcp(world.home.path);
    steps.push(say('first answer'));
    const threadId = threadIdOf(await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path }));
    // A model whose window is about 100 KB of request: the huge prompt never fits, not even to be summarized.
    decide = (request) =>
      request.rawBody.length > 100_000 ? contextLengthExceeded : toolNames(request).length === 0 ? say('unexpected summary') : say('answer without the huge paste');
    const huge = `${'log line that goes on and on\n'.repeat(8_000)}the question at the end`;
    const result = await mcp.call('codex-reply', { threadId, prompt: huge });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toEqual({ threadId, content: 'answer without the huge paste' });
    const last = model.requests.at(-1)!;
    expect(last.rawBody.length).toBeLessThan(100_000);
    const texts = messages(last).map((m) => m.text);
    expect(texts.some((text) => text.includes('No summary could be written'))).toBe(true);
    // The prompt's head and tail are kept around a marker.
    expect(texts.some((text) => text.startsWith('log line that goes on and on') && text.includes('tokens truncated') && text.endsWith('the question at the end'))).toBe(true);
    // The thread goes on, and the whole prompt stays in the thread file.
    decide = undefined;
    steps.push(say('next answer'));
    expect((await mcp.call('codex-reply', { threadId, prompt: 'and now?' })).structuredContent).toEqual({ threadId, content: 'next answer' });
    expect(JSON.stringify(await storedRecords(world.home.path, threadId))).toContain('the question at the end');
  });

  it('rejects a model_auto_compact_token_limit that is not a positive integer, naming the key, before any model request', async () => {
    mcp = await startInProcessMcp(world.home.path);
    const result = await mcp.call('codex', { prompt: 'hello', cwd: world.work.path, config: { model_auto_compact_token_limit: 'lots' } });
    expect(result.isError).toBe(true);
    expect(JSON.stringify(result.content)).toContain('model_auto_compact_token_limit');
    expect(model.requests).toHaveLength(0);
  });
});
