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
