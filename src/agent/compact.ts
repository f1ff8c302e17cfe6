/**
 * Compaction: when a thread's conversation no longer fits the model's context window (or is close
 * to its configured limit), the model summarizes it and the history sent from then on is the
 * latest environment context, the user's recent messages and that summary. The replaced items
 * stay in the thread file; only what is sent changes.
 */
import { messageText, type ResponseInputItem, type UserMessageInputItem } from '../protocol/responses.js';
import { isContextWindowExceeded } from '../model/errors.js';
import { contextTagOf, inputMessage } from './instructions.js';
import { truncateForModel } from './output.js';
import type { ModelPort } from './model-port.js';

/** The instructions of the summarizing request when the thread or config names none (`compact_prompt`). */
export const DEFAULT_COMPACT_PROMPT = `Your context window is nearly full, so this conversation is about to be replaced by a summary you write now. Another model instance will continue the work from your summary and the user's messages alone, so include everything it needs:
- the user's goal, requests and constraints, and any decision already agreed;
- what has been done: commands run and their important results, files created or changed (with paths and environment ids), and what was verified;
- the current state: what works, what fails, errors not yet solved, and anything left half-done;
- the next steps, in order.
Be specific and concise: exact names, paths, commands and values; no pleasantries. Do not call tools; answer with the summary only.`;

/** Opens the summary message of a compacted history, so the model knows what it is reading. */
export const SUMMARY_PREFIX =
  'Earlier parts of this conversation were replaced by the summary below, written by the model that did that work. The user messages above are the most recent ones of that part. Continue from here; re-check anything the summary is unsure about.';

/** Tokens of the user's own messages kept verbatim in a compacted history (≈ 4 bytes a token). */
export const COMPACT_USER_MESSAGES_MAX_TOKENS = 20_000;

/** How often a summarizing request that itself does not fit is retried with fewer, newer items. */
const MAX_TRIMS = 6;

/**
 * The summary of a history too big even to summarize (one huge message, say): the compacted
 * history then keeps only the user's recent messages, shortened, so the thread can go on.
 */
export const NO_SUMMARY_NOTICE =
  'No summary could be written: the conversation so far was too large for the model even to summarize. Only the most recent user messages above were kept, shortened where they were long; ask the user about anything else you need.';

/** What {@link compactHistory} needs. */
export interface CompactionParams {
  model: ModelPort;
  modelName: string;
  reasoning?: { effort?: string; summary?: string };
  /** The developer messages sent first on every request. */
  instructions: readonly string[];
  /** The whole history, as the next request would send it. */
  items: readonly ResponseInputItem[];
  /** The summarizing instructions (the thread's `compact_prompt`, else {@link DEFAULT_COMPACT_PROMPT}). */
  prompt: string;
  /** The thread's prompt cache key: the summarizing request shares the thread's prefix. */
  cacheKey?: string;
  signal: AbortSignal;
}

/** The outcome of {@link compactHistory}. */
export interface Compaction {
  /** The history to send from now on. */
  history: ResponseInputItem[];
  summary: string;
  /** Items of the oldest part left out of the summarizing request because even it did not fit. */
  trimmed: number;
  /** True when no summary could be had because even the shortest summarizing request did not fit. */
  unsummarized: boolean;
}

/**
 * Asks the model for a summary of `items` and builds the compacted history. When the
 * summarizing request itself exceeds the context window, the oldest items are left out of it
 * (never from the thread file) and it is tried again, a few times; when even that does not fit,
 * the history keeps the user's recent messages, shortened, with {@link NO_SUMMARY_NOTICE}.
 * @throws Error when the model fails otherwise or answers without text; the history is then unchanged.
 */
export async function compactHistory(params: CompactionParams): Promise<Compaction> {
  const developer = params.instructions.map((text): ResponseInputItem => inputMessage('developer', text));
  let items = params.items;
  let trimmed = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const { output } = await params.model.respond(
        {
          model: params.modelName,
          input: [...developer, ...items, inputMessage('user', params.prompt)],
          tools: [],
          parallelToolCalls: false,
          reasoning: params.reasoning,
          promptCacheKey: params.cacheKey,
        },
        { signal: params.signal },
      );
      const summary = output
        .map((item) => (item.type === 'message' ? messageText(item) : ''))
        .join('')
        .trim();
      if (summary.length === 0) throw new Error('the model answered the summarizing request without text');
      return { history: compactedHistory(params.items, summary), summary, trimmed, unsummarized: false };
    } catch (error) {
      if (!isContextWindowExceeded(error)) throw error;
      if (attempt >= MAX_TRIMS || items.length <= 1) {
        return { history: compactedHistory(params.items, NO_SUMMARY_NOTICE), summary: NO_SUMMARY_NOTICE, trimmed: params.items.length, unsummarized: true };
      }
      const next = withoutOldest(items, Math.max(1, Math.floor(items.length / 4)));
      trimmed += items.length - next.length;
      items = next;
    }
  }
}

/**
 * The history after a compaction: the latest context message of each kind (environments, project
 * instructions), the user's most recent messages (within {@link COMPACT_USER_MESSAGES_MAX_TOKENS},
 * oldest first) and the summary.
 */
export function compactedHistory(items: readonly ResponseInputItem[], summary: string): ResponseInputItem[] {
  const contexts = new Map<string, ResponseInputItem>();
  const userTexts: string[] = [];
  for (const item of items) {
    if (item.type !== 'message' || item.role !== 'user') continue;
    const text = inputText(item);
    const tag = contextTagOf(text);
    if (tag !== undefined) contexts.set(tag, item);
    else if (!text.startsWith(SUMMARY_PREFIX)) userTexts.push(text);
  }
  const kept: string[] = [];
  let budget = COMPACT_USER_MESSAGES_MAX_TOKENS;
  for (let index = userTexts.length - 1; index >= 0 && budget > 0; index--) {
    const bounded = truncateForModel(userTexts[index]!, budget);
    kept.unshift(bounded.text);
    budget -= Math.min(bounded.originalTokens, budget);
  }
  return [...contexts.values(), ...kept.map((text) => inputMessage('user', text)), inputMessage('user', `${SUMMARY_PREFIX}\n\n${summary}`)];
}

/**
 * `items` without its oldest `count` items, and without the outputs of tool calls that were cut
 * (the API rejects an output whose call it has not seen).
 */
function withoutOldest(items: readonly ResponseInputItem[], count: number): ResponseInputItem[] {
  const rest = items.slice(count);
  const calls = new Set<string>();
  for (const item of rest) if (item.type === 'function_call' || item.type === 'custom_tool_call') calls.add(item.call_id);
  return rest.filter((item) => (item.type !== 'function_call_output' && item.type !== 'custom_tool_call_output') || calls.has(item.call_id));
}

function inputText(item: UserMessageInputItem): string {
  return item.content.map((part) => (part.type === 'input_text' ? part.text : '')).join('');
}
