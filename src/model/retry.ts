/** The retry policy of the model client: how many retries of each kind, and the wait before each. */
import { ModelApiError, type ModelError } from './errors.js';

/** Retries of HTTP errors (408/409/429/5xx) and connection failures, by default. */
export const DEFAULT_MAX_RETRIES = 4;
/** Retries of dropped or idle streams (and retryable `response.failed`), by default. */
export const DEFAULT_STREAM_MAX_RETRIES = 5;
/** The first backoff delay; each retry doubles it, with jitter. */
export const RETRY_BASE_DELAY_MS = 200;
/** The longest computed backoff delay. */
export const RETRY_MAX_DELAY_MS = 10_000;
/** The longest wait a `retry-after` header can impose; longer asks are clamped to this. */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * The wait before retry number `attempt` (from 1): the server's `retry-after`, else exponential
 * backoff with jitter from `random` (in [0, 1)).
 */
export function retryDelay(attempt: number, error: ModelError, random: () => number): number {
  if (error instanceof ModelApiError && error.retryAfterMs !== undefined) {
    return Math.min(error.retryAfterMs, MAX_RETRY_AFTER_MS);
  }
  const exponential = RETRY_BASE_DELAY_MS * 2 ** Math.min(attempt - 1, 30);
  const jittered = exponential * (0.8 + 0.4 * random());
  return Math.min(RETRY_MAX_DELAY_MS, jittered);
}
