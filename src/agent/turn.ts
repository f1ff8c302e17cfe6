import { messageText, type ResponseInputItem, type ResponseOutputItem, type ToolSpec } from '../protocol/responses.js';
import type { CompactionReason, PlanUpdate, TurnStatus } from '../protocol/thread.js';
import { isContextWindowExceeded } from '../model/errors.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { compactHistory } from './compact.js';
import { contextUpdates, inputMessage } from './instructions.js';
import type { ModelPort } from './model-port.js';
import { TurnAbortedError } from './errors.js';
import { ToolError, type AgentTool, type ToolContext, type ToolOutput, type TurnEnvironment } from './tools/tool.js';

/** A compaction the turn made, for the caller to record and apply to the thread. */
export interface HistoryReplacement {
  reason: CompactionReason;
  /** The history from now on. */
  history: ResponseInputItem[];
  summary: string;
  /** How many items it replaces. */
  replacedItems: number;
}

/** What happened during a turn, for progress notifications and event streams. */
export type TurnEvent =
  | { type: 'model_request'; step: number }
  | { type: 'agent_message'; text: string }
  | { type: 'tool_started'; callId: string; tool: string }
  | { type: 'tool_finished'; callId: string; tool: string; ok: boolean }
  | { type: 'plan_updated'; plan: PlanUpdate }
  | { type: 'progress'; message: string };

/** The outcome of {@link runTurn}. */
export interface TurnResult {
  status: TurnStatus;
  lastAgentMessage: string | null;
  error?: string;
  /** Tokens the last model request of the turn used (input and output), when the provider said. */
  contextTokens?: number;
  /**
   * The turn's last output items, recorded deferred (see {@link TurnParams.record}) and still being
   * written: the caller's next record carries them, and awaits this before the turn counts as over.
   */
  written?: Promise<unknown>;
}

/** The tool context without the per-call and per-turn parts the loop fills in. */
export type ToolContextBase = Omit<ToolContext, 'callId' | 'threadId' | 'environments' | 'environment' | 'progress' | 'plan' | 'signal'>;

/** Everything one turn needs. */
export interface TurnParams {
  threadId: string;
  prompt: string;
  model: ModelPort;
  modelName: string;
  reasoning?: { effort?: string; summary?: string };
  /** Developer messages sent first on every request (base, then developer instructions). */
  instructions: readonly string[];
  /** The thread's items so far. */
  history: readonly ResponseInputItem[];
  /** The turn's environments, primary first. */
  environments: readonly TurnEnvironment[];
  /**
   * The turn's context messages (`<environment_context>`, `<project_instructions>`): each is sent
   * before the prompt only when it differs from the latest one of its kind in the history, so an
   * unchanged context costs nothing on later turns.
   */
  context: readonly string[];
  tools: readonly AgentTool[];
  /** The provider's hosted tools offered too (web search); the same array each turn keeps their JSON cached. */
  hostedTools?: readonly ToolSpec[];
  toolContext: ToolContextBase;
  /** Bound on model requests in this turn. */
  maxSteps: number;
  /** Bound on tool calls run at once. */
  maxParallelToolCalls: number;
  signal: AbortSignal;
  /**
   * Persists one new item and appends it to the thread's history; called in order. `defer`: the
   * write may wait for the caller's next record (the turn's last items, written with the turn's end).
   * `durable: false`: the write need not wait for the disk; a later durable one makes it durable
   * (the turn's items are durable before a tool runs on them, and before the turn's answer).
   */
  record(item: ResponseInputItem, options?: RecordOptions): Promise<void>;
  /** When and how the history is compacted (see `compact.ts`). */
  compaction: {
    /** Compact before a request once the previous one used this many tokens; none: only on a context-window error. */
    tokenLimit: number | undefined;
    /** The summarizing instructions. */
    prompt: string;
    /** Tokens the thread's last request used, from its previous turn. */
    contextTokens: number | undefined;
  };
  /** Persists a compaction and replaces the thread's history with its result; called between items. */
  replaceHistory(replacement: HistoryReplacement): Promise<void>;
  emit(event: TurnEvent): void;
  logger?: Logger;
}

/** Options of {@link TurnParams.record}. */
export interface RecordOptions {
  /** @default false */
  defer?: boolean;
  /** @default true */
  durable?: boolean;
}

type PendingCall = { kind: 'function' | 'custom'; callId: string; name: string; payload: string };

function toolSpec(tool: AgentTool): ToolSpec {
  if (tool.kind === 'function') return { type: 'function', name: tool.name, description: tool.description, strict: false, parameters: tool.parameters };
  return { type: 'custom', name: tool.name, description: tool.description, format: { type: 'grammar', syntax: 'lark', definition: tool.grammar } };
}

/** Specs by tools array, then by hosted tools array: a caller that passes the same arrays each turn gets the same specs (cached downstream). */
const SPECS = new WeakMap<readonly AgentTool[], WeakMap<readonly ToolSpec[], ToolSpec[]>>();
const NO_HOSTED_TOOLS: readonly ToolSpec[] = [];

function toolSpecs(tools: readonly AgentTool[], hosted: readonly ToolSpec[] = NO_HOSTED_TOOLS): ToolSpec[] {
  let byHosted = SPECS.get(tools);
  if (byHosted === undefined) {
    byHosted = new WeakMap();
    SPECS.set(tools, byHosted);
  }
  let specs = byHosted.get(hosted);
  if (specs === undefined) {
    specs = [...tools.map(toolSpec), ...hosted];
    byHosted.set(hosted, specs);
  }
  return specs;
}

function textOf(output: ToolOutput): string {
  if (typeof output === 'string') return output;
  return output.map((part) => (part.type === 'input_text' ? part.text : '[image]')).join('\n');
}

function environmentLookup(environments: readonly TurnEnvironment[]): (id: string | undefined) => TurnEnvironment {
  return (id) => {
    if (environments.length === 0) {
      throw new ToolError('No usable execution environment is available in this turn: the thread or turn selected no environments.');
    }
    if (id === undefined || id === '') return environments[0]!;
    const found = environments.find((environment) => environment.id === id);
    if (found === undefined) {
      throw new ToolError(`unknown environment_id \`${id}\`; this turn's environments are: ${environments.map((e) => e.id).join(', ')}`);
    }
    return found;
  };
}

/**
 * Runs one turn: sends the conversation to the model, runs the tool calls it asks for (in their
 * environments), feeds the results back, and repeats until the model answers without tool calls.
 * Every item is recorded as soon as it exists, so a crash loses at most the item in flight.
 * Failures of tools are results the model reads; only model failures fail the turn.
 */
export function runTurn(params: TurnParams): Promise<TurnResult> {
  return new TurnLoop(params).run();
}

/** The state of one {@link runTurn}: the conversation so far and what is being written. */
class TurnLoop {
  readonly #params: TurnParams;
  readonly #logger: Logger;
  readonly #byName: Map<string, AgentTool>;
  readonly #specs: ToolSpec[];
  readonly #environment: (id: string | undefined) => TurnEnvironment;
  readonly #developer: ResponseInputItem[];
  #items: ResponseInputItem[];
  #contextTokens: number | undefined;
  /** Items added since the last compaction: compacting again without any would only summarize the summary. */
  #newItems: number;
  #lastAgentMessage: string | null = null;
  /**
   * The last tool outputs, being written while the model already reads them: they are ours, not
   * the user's, and a crash before they are on disk leaves calls that a reload answers as "effect
   * unknown", as a crash during the tools would. Awaited before anything else is recorded and
   * before the turn ends, so a failed write still fails the turn.
   */
  #outputsWritten: Promise<unknown> = Promise.resolve();

  constructor(params: TurnParams) {
    this.#params = params;
    this.#logger = params.logger ?? silentLogger;
    this.#items = [...params.history];
    this.#newItems = this.#items.length;
    this.#byName = new Map(params.tools.map((tool) => [tool.name, tool]));
    this.#specs = toolSpecs(params.tools, params.hostedTools);
    this.#environment = environmentLookup(params.environments);
    this.#contextTokens = params.compaction.contextTokens;
    this.#developer = params.instructions.map((text) => inputMessage('developer', text));
  }

  async run(): Promise<TurnResult> {
    const params = this.#params;
    // Recorded together: the store writes them in one go. Without waiting for the disk: nothing
    // outside the store acts on them before a durable write (the model's calls, or the turn's end).
    const unflushed = { durable: false };
    await Promise.all([
      ...contextUpdates(this.#items, params.context).map((text) => this.#push(inputMessage('user', text), unflushed)),
      this.#push(inputMessage('user', params.prompt), unflushed),
    ]);
    for (let step = 1; ; step++) {
      if (params.signal.aborted) return this.#end('interrupted');
      if (step > params.maxSteps) return this.#end('failed', `the turn stopped after ${params.maxSteps} model requests (multienv.max_turn_steps)`);
      const stopped = await this.#compactAtLimit();
      if (stopped !== undefined) return stopped;
      params.emit({ type: 'model_request', step });
      const output = await this.#respond();
      if (!Array.isArray(output)) return output;
      await this.#outputsWritten;
      const calls = await this.#recordOutput(output);
      if (calls.length === 0) return this.#ended({ status: 'completed', lastAgentMessage: this.#lastAgentMessage, written: this.#outputsWritten });
      if (await this.#runCalls(calls)) return this.#end('interrupted');
    }
  }

  /** Ends the turn once the pending tool outputs are written. */
  async #end(status: 'interrupted' | 'failed', error?: string): Promise<TurnResult> {
    await this.#outputsWritten;
    return this.#ended({ status, lastAgentMessage: this.#lastAgentMessage, ...(error === undefined ? {} : { error }) });
  }

  #ended(result: TurnResult): TurnResult {
    return this.#contextTokens === undefined ? result : { ...result, contextTokens: this.#contextTokens };
  }

  async #push(item: ResponseInputItem, options?: RecordOptions): Promise<void> {
    this.#items.push(item);
    this.#newItems++;
    await this.#params.record(item, options);
  }

  async #request(): Promise<ResponseOutputItem[]> {
    const params = this.#params;
    const response = await params.model.respond(
      {
        model: params.modelName,
        input: [...this.#developer, ...this.#items],
        tools: this.#specs,
        parallelToolCalls: params.maxParallelToolCalls > 1,
        reasoning: params.reasoning,
        promptCacheKey: params.threadId,
      },
      { signal: params.signal },
    );
    if (response.usage !== undefined) this.#contextTokens = response.usage.totalTokens;
    return response.output;
  }

  /** The model's answer, or how the turn ended when there is none (a context window outgrown is compacted and asked again, once). */
  async #respond(): Promise<ResponseOutputItem[] | TurnResult> {
    const params = this.#params;
    try {
      return await this.#request();
    } catch (error) {
      await this.#outputsWritten;
      if (params.signal.aborted) return this.#ended({ status: 'interrupted', lastAgentMessage: this.#lastAgentMessage });
      if (!isContextWindowExceeded(error) || this.#newItems === 0)
        return this.#ended({ status: 'failed', lastAgentMessage: this.#lastAgentMessage, error: `model request failed: ${errorMessage(error)}` });
      // The history outgrew the model's context window: summarize it, then ask again, once.
      try {
        await this.#compact('context_window_exceeded');
        return await this.#request();
      } catch (retryError) {
        if (params.signal.aborted) return this.#ended({ status: 'interrupted', lastAgentMessage: this.#lastAgentMessage });
        return this.#ended({
          status: 'failed',
          lastAgentMessage: this.#lastAgentMessage,
          error: `the conversation exceeds the model's context window and compacting it did not help: ${errorMessage(retryError)}`,
        });
      }
    }
  }

  /** Compacts before a request once the previous one reached the token limit; a result when the turn was interrupted meanwhile. */
  async #compactAtLimit(): Promise<TurnResult | undefined> {
    const params = this.#params;
    const limit = params.compaction.tokenLimit;
    if (limit === undefined || this.#contextTokens === undefined || this.#contextTokens < limit || this.#newItems === 0) return undefined;
    await this.#outputsWritten;
    try {
      await this.#compact('token_limit');
    } catch (error) {
      if (params.signal.aborted) return this.#ended({ status: 'interrupted', lastAgentMessage: this.#lastAgentMessage });
      // The history still fits below the window; a request that does not is compacted then.
      this.#logger.warn('compacting the conversation failed; continuing with the whole history', { thread: params.threadId, error: errorMessage(error) });
      params.emit({ type: 'progress', message: `compacting the conversation failed (${errorMessage(error)}); continuing with the whole history` });
      this.#contextTokens = undefined;
    }
    return undefined;
  }

  /** Summarizes the history and replaces it; the caller has awaited every pending write. */
  async #compact(reason: CompactionReason): Promise<void> {
    const params = this.#params;
    const before = this.#items.length;
    params.emit({ type: 'progress', message: `compacting the conversation (${before} items${this.#contextTokens === undefined ? '' : `, ${this.#contextTokens} tokens`})` });
    const result = await compactHistory({
      model: params.model,
      modelName: params.modelName,
      reasoning: params.reasoning,
      instructions: params.instructions,
      items: this.#items,
      prompt: params.compaction.prompt,
      cacheKey: params.threadId,
      signal: params.signal,
    });
    await params.replaceHistory({ reason, history: result.history, summary: result.summary, replacedItems: before });
    this.#items = [...result.history];
    this.#newItems = 0;
    this.#contextTokens = undefined;
    const trimmed = result.unsummarized
      ? ' without a summary (even the shortest summarizing request was too large; the recent user messages were kept, shortened)'
      : result.trimmed === 0
        ? ''
        : ` (the ${result.trimmed} oldest items did not fit the summarizing request either and are only in the thread file)`;
    params.emit({ type: 'progress', message: `conversation compacted: ${before} items replaced by ${this.#items.length}${trimmed}` });
    this.#logger.info('conversation compacted', { thread: params.threadId, reason, replacedItems: before, items: this.#items.length, trimmed: result.trimmed });
  }

  /**
   * Records the model's output items in order, appended at once so the store writes them together;
   * the tool calls among them are returned to run, once the items are durable. An output without
   * tool calls ends the turn: its items are recorded deferred, to be written with the turn's end
   * (see {@link TurnResult.written}).
   */
  async #recordOutput(output: readonly ResponseOutputItem[]): Promise<PendingCall[]> {
    const params = this.#params;
    const calls: PendingCall[] = [];
    const last = output.every((item) => item.type !== 'function_call' && item.type !== 'custom_tool_call');
    const writes: Promise<void>[] = [];
    const push = (item: ResponseInputItem): void => {
      // Durable when calls follow (they run once on record, with everything before them); the
      // turn's last items go with its end, whose write is durable.
      writes.push(this.#push(item, { defer: last, durable: !last }));
    };
    for (const item of output) {
      switch (item.type) {
        case 'message': {
          const text = messageText(item);
          if (text.length > 0) {
            this.#lastAgentMessage = text;
            params.emit({ type: 'agent_message', text });
          }
          push({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text }] });
          break;
        }
        case 'function_call':
          push({ type: 'function_call', ...(item.id === undefined ? {} : { id: item.id }), call_id: item.call_id, name: item.name, arguments: item.arguments });
          calls.push({ kind: 'function', callId: item.call_id, name: item.name, payload: item.arguments });
          break;
        case 'custom_tool_call':
          push({ type: 'custom_tool_call', ...(item.id === undefined ? {} : { id: item.id }), call_id: item.call_id, name: item.name, input: item.input });
          calls.push({ kind: 'custom', callId: item.call_id, name: item.name, payload: item.input });
          break;
        case 'reasoning':
          push({
            type: 'reasoning',
            id: item.id,
            summary: item.summary.map((s) => ({ type: 'summary_text', text: s.text })),
            encrypted_content: item.encrypted_content ?? null,
          });
          break;
        case 'web_search_call': {
          // Run by the provider; passed back so the model knows what it searched.
          push({ type: 'web_search_call', id: item.id, status: item.status, ...(item.action === undefined ? {} : { action: item.action }) });
          const query = item.action?.['query'];
          params.emit({ type: 'progress', message: typeof query === 'string' ? `web search: ${query}` : `web search (${item.action?.type ?? item.status})` });
          break;
        }
        case 'unknown':
          this.#logger.debug('ignoring an output item of unknown type', { type: item.item.type });
          break;
      }
    }
    const written = Promise.all(writes);
    if (!last) {
      // A call runs only once it is on record: a reload then knows it may have had effects.
      await written;
      return calls;
    }
    this.#outputsWritten = written;
    // Awaited on every path; until then a failure must not count as unhandled.
    written.catch(() => undefined);
    return calls;
  }

  /** Runs the calls (bounded) and records their outputs; true when the turn was interrupted meanwhile. */
  async #runCalls(calls: readonly PendingCall[]): Promise<boolean> {
    const params = this.#params;
    let aborted: TurnAbortedError | undefined;
    const results = await runBounded(calls, params.maxParallelToolCalls, async (call) => {
      params.emit({ type: 'tool_started', callId: call.callId, tool: call.name });
      try {
        const output = await this.#invoke(call);
        params.emit({ type: 'tool_finished', callId: call.callId, tool: call.name, ok: true });
        return output;
      } catch (error) {
        params.emit({ type: 'tool_finished', callId: call.callId, tool: call.name, ok: false });
        if (error instanceof TurnAbortedError) {
          aborted = error;
          return `${call.name} was aborted: ${error.message}`;
        }
        if (params.signal.aborted) return `${call.name} was interrupted`;
        if (error instanceof ToolError) return error.message;
        this.#logger.error('tool failed unexpectedly', { tool: call.name, error: errorMessage(error) });
        return `${call.name} failed: ${errorMessage(error)}`;
      }
    });
    // Every call gets its output, even when interrupted: the API rejects unanswered calls. All
    // are appended at once, so the store writes them together; without waiting for the disk, as
    // the next durable write (the next calls, or the turn's end) flushes them.
    this.#outputsWritten = Promise.all(
      calls.map((call, index) => {
        const output = results[index] ?? `${call.name} was not run`;
        return this.#push(
          call.kind === 'function'
            ? { type: 'function_call_output', call_id: call.callId, output }
            : { type: 'custom_tool_call_output', call_id: call.callId, output: textOf(output) },
          { durable: false },
        );
      }),
    );
    // Awaited on every path; until then a failure must not count as unhandled.
    this.#outputsWritten.catch(() => undefined);
    return aborted !== undefined || params.signal.aborted;
  }

  #invoke(call: PendingCall): Promise<ToolOutput> {
    const params = this.#params;
    const tool = this.#byName.get(call.name);
    if (tool === undefined) {
      return Promise.resolve(`unknown tool \`${call.name}\`; available tools: ${[...this.#byName.keys()].join(', ')}`);
    }
    const context: ToolContext = {
      ...params.toolContext,
      threadId: params.threadId,
      callId: call.callId,
      environments: params.environments,
      environment: this.#environment,
      progress: (message) => params.emit({ type: 'progress', message }),
      plan: (plan) => params.emit({ type: 'plan_updated', plan }),
      signal: params.signal,
    };
    if (tool.kind === 'custom') {
      if (call.kind !== 'custom') return Promise.resolve(`${tool.name} takes freeform input, not JSON arguments`);
      return tool.run(call.payload, context);
    }
    let args: unknown;
    try {
      args = call.payload.trim() === '' ? {} : JSON.parse(call.payload);
    } catch (error) {
      return Promise.resolve(`invalid JSON arguments for ${tool.name}: ${errorMessage(error)}`);
    }
    return tool.run(args, context);
  }
}

/** Runs `work` over `inputs` with at most `limit` at once; results keep the input order. */
async function runBounded<T, R>(inputs: readonly T[], limit: number, work: (input: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(inputs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < inputs.length) {
      const index = next++;
      results[index] = await work(inputs[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, inputs.length)) }, worker));
  return results;
}
