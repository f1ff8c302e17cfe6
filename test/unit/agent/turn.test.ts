import { SessionApprovals, denyAllApprover } from '../../../src/agent/approvals.js';
import { ThreadProcessTable } from '../../../src/agent/process-table.js';
import type { AgentTool } from '../../../src/agent/tools/tool.js';
import type { ModelPort } from '../../../src/agent/model-port.js';
import { runTurn, type TurnParams } from '../../../src/agent/turn.js';
import type { ResponseInputItem, ResponseOutputItem } from '../../../src/protocol/responses.js';

/** A model that first calls `echo`, then answers; it records what each request carried. */
function scriptedModel(seen: ResponseInputItem[][]): ModelPort {
  const replies: ResponseOutputItem[][] = [
    [{ type: 'function_call', call_id: 'call-1', name: 'echo', arguments: '{}' }],
    [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'done' }] }],
  ];
  return {
    respond: (request) => {
      seen.push(request.input);
      return Promise.resolve({ output: replies.shift() ?? [] });
    },
  };
}

const echo: AgentTool = { kind: 'function', name: 'echo', description: 'echo', parameters: { type: 'object' }, run: () => Promise.resolve('echoed') };

function params(model: ModelPort, record: (item: ResponseInputItem) => Promise<void>): TurnParams {
  return {
    threadId: 't',
    prompt: 'go',
    model,
    modelName: 'm',
    instructions: [],
    history: [],
    environments: [],
    context: ['<environment_context/>'],
    tools: [echo],
    toolContext: {
      approvalPolicy: 'never',
      approver: denyAllApprover,
      sessionApprovals: new SessionApprovals(),
      processes: new ThreadProcessTable(),
      commandEnvironment: () => ({ envPolicy: { inherit: 'all', ignoreDefaultExcludes: false, exclude: [], set: {}, includeOnly: [] }, env: {} }),
      sandbox: () => null,
      allowLoginShell: false,
      maxOutputTokens: 1000,
    },
    maxSteps: 5,
    maxParallelToolCalls: 1,
    signal: new AbortController().signal,
    record,
    compaction: { tokenLimit: undefined, prompt: 'summarize', contextTokens: undefined },
    replaceHistory: () => Promise.resolve(),
    emit: () => undefined,
  };
}

describe('runTurn and the durability of tool outputs', () => {
  it('sends the next model request while the tool output is being written, and ends only once it is written', async () => {
    const seen: ResponseInputItem[][] = [];
    let finishWrite!: () => void;
    const outputWrite = new Promise<void>((resolve) => (finishWrite = resolve));
    const record = (item: ResponseInputItem): Promise<void> => (item.type === 'function_call_output' ? outputWrite : Promise.resolve());
    let ended = false;
    const turn = runTurn(params(scriptedModel(seen), record)).finally(() => (ended = true));

    while (seen.length < 2) await new Promise((resolve) => setImmediate(resolve));
    expect(seen[1]?.at(-1)).toEqual({ type: 'function_call_output', call_id: 'call-1', output: 'echoed' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(ended).toBe(false);

    finishWrite();
    const { written, ...result } = await turn;
    expect(result).toEqual({ status: 'completed', lastAgentMessage: 'done' });
    await written;
  });

  it('records a tool call before running it, and the last answer deferred, handed back to be written with the turn’s end', async () => {
    const recorded: [string, boolean][] = [];
    let finishWrite!: () => void;
    const lastWrite = new Promise<void>((resolve) => (finishWrite = resolve));
    const record = (item: ResponseInputItem, options?: { defer?: boolean }): Promise<void> => {
      recorded.push([item.type === 'message' ? `${item.type}:${item.role}` : item.type, options?.defer === true]);
      return options?.defer === true ? lastWrite : Promise.resolve();
    };
    const { written, ...result } = await runTurn(params(scriptedModel([]), record));
    expect(result).toEqual({ status: 'completed', lastAgentMessage: 'done' });
    expect(recorded).toEqual([
      ['message:user', false],
      ['message:user', false],
      ['function_call', false],
      ['function_call_output', false],
      ['message:assistant', true],
    ]);
    let settled = false;
    void written?.then(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    finishWrite();
    await written;
  });

  it('fails the turn when a tool output cannot be written', async () => {
    const seen: ResponseInputItem[][] = [];
    const record = (item: ResponseInputItem): Promise<void> => (item.type === 'function_call_output' ? Promise.reject(new Error('disk full')) : Promise.resolve());
    await expect(runTurn(params(scriptedModel(seen), record))).rejects.toThrow('disk full');
  });
});

describe('runTurn and compaction', () => {
  it('goes on with the whole history when compacting at the token limit fails', async () => {
    const seen: { input: ResponseInputItem[]; tools: number }[] = [];
    const model: ModelPort = {
      respond: (request) => {
        seen.push({ input: request.input, tools: request.tools.length });
        if (request.tools.length === 0) return Promise.reject(new Error('summarizer unavailable'));
        return Promise.resolve({ output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'answered' }] }], usage: { totalTokens: 7 } });
      },
    };
    const replaced: unknown[] = [];
    const progress: string[] = [];
    const history: ResponseInputItem[] = [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'earlier' }] }];
    const result = await runTurn({
      ...params(model, () => Promise.resolve()),
      history,
      compaction: { tokenLimit: 10, prompt: 'summarize', contextTokens: 50 },
      replaceHistory: (replacement) => {
        replaced.push(replacement);
        return Promise.resolve();
      },
      emit: (event) => {
        if (event.type === 'progress') progress.push(event.message);
      },
    });
    expect({ ...result, written: undefined }).toEqual({ status: 'completed', lastAgentMessage: 'answered', contextTokens: 7, written: undefined });
    expect(replaced).toEqual([]);
    expect(seen.map((request) => request.tools)).toEqual([0, 1]);
    expect(seen[1]?.input[0]).toEqual(history[0]);
    expect(progress.some((message) => message.includes('compacting the conversation failed (summarizer unavailable)'))).toBe(true);
  });
});
