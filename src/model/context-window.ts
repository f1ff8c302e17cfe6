/**
 * Context windows of the models Codex users commonly run, for the default auto-compaction limit
 * when the config sets neither `model_context_window` nor `model_auto_compact_token_limit`.
 * Conservative values; unknown models get none (compaction then happens only when the provider
 * says the context window was exceeded).
 */
const KNOWN_CONTEXT_WINDOWS: readonly (readonly [prefix: string, tokens: number])[] = [
  ['gpt-5', 272_000],
  ['gpt-4.1', 1_047_576],
  ['gpt-4o', 128_000],
  ['o3', 200_000],
  ['o4-mini', 200_000],
  ['codex-mini', 200_000],
];

/** The share of the context window at which the history is compacted by default (as Codex: 90%). */
export const AUTO_COMPACT_SHARE = 0.9;

/** The context window of a known model (by name prefix), in tokens. */
export function knownContextWindow(model: string): number | undefined {
  return KNOWN_CONTEXT_WINDOWS.find(([prefix]) => model.startsWith(prefix))?.[1];
}

/**
 * The token count at which a thread's history is compacted: the configured limit, else
 * {@link AUTO_COMPACT_SHARE} of the configured or known context window; none when neither is known.
 */
export function autoCompactTokenLimit(model: string, configured: { contextWindow?: number | undefined; limit?: number | undefined }): number | undefined {
  if (configured.limit !== undefined) return configured.limit;
  const window = configured.contextWindow ?? knownContextWindow(model);
  return window === undefined ? undefined : Math.floor(window * AUTO_COMPACT_SHARE);
}

/**
 * Name prefixes of models that reason (OpenAI's reasoning families). Their reasoning must be asked
 * for and passed back (`include: ["reasoning.encrypted_content"]` with `store: false`), or it is
 * lost between the requests of a turn.
 */
const REASONING_MODEL_PREFIXES: readonly string[] = ['gpt-5', 'o1', 'o3', 'o4', 'codex-', 'gpt-oss'];

/** Whether `model` is a known reasoning model (by name prefix). */
export function isKnownReasoningModel(model: string): boolean {
  return REASONING_MODEL_PREFIXES.some((prefix) => model.startsWith(prefix));
}

/**
 * The `reasoning` a request carries: what the config sets; for a known reasoning model with
 * nothing set, a summary (`auto`) and the provider's default effort, as Codex asks for. `summary =
 * "none"` asks for no summary. Undefined: send no `reasoning` (a model not known to reason, with
 * nothing configured: such providers may refuse the field).
 */
export function requestReasoning(model: string, configured: { effort?: string | undefined; summary?: string | undefined }): { effort?: string; summary?: string } | undefined {
  const reasoning = isKnownReasoningModel(model);
  if (!reasoning && configured.effort === undefined && configured.summary === undefined) return undefined;
  const summary = configured.summary ?? (reasoning ? 'auto' : undefined);
  return {
    ...(configured.effort === undefined ? {} : { effort: configured.effort }),
    ...(summary === undefined || summary === 'none' ? {} : { summary }),
  };
}
