/**
 * The `openai` SDK as the model client uses it: loaded on first use, set up so that it reads
 * nothing from the environment and neither retries nor logs on its own, and its errors mapped to
 * ours. The only user of `openai`.
 */
import type * as OpenAiModule from 'openai';
import type { ClientOptions } from 'openai';
import { abortReason } from '../util/abort.js';
import { errorMessage, LocalError } from '../util/errors.js';
import { ModelApiError, ModelConnectionError } from './errors.js';

/** The `openai` module. */
export type OpenAiSdk = typeof OpenAiModule;

/** Sent to the SDK when no key is configured; the `Authorization` header is then left out. */
const PLACEHOLDER_API_KEY = 'no-api-key';

let sdkLoading: Promise<OpenAiSdk> | undefined;

/** Loads the `openai` package on first use: it costs ~70 ms of start-up otherwise. */
export function loadSdk(): Promise<OpenAiSdk> {
  sdkLoading ??= import('openai');
  return sdkLoading;
}

/** What {@link sdkClientOptions} needs (see `ModelClientOptions`). */
export interface SdkSettings {
  baseUrl: string;
  apiKey: string | undefined;
  headers: Record<string, string> | undefined;
  queryParams: Record<string, string> | undefined;
  timeoutMs: number;
  fetch: typeof fetch;
}

/** The SDK client's options: no retries, no logging, nothing taken from environment variables. */
export function sdkClientOptions(settings: SdkSettings): ClientOptions {
  const headers: Record<string, string | null> = { ...settings.headers };
  // The SDK insists on a key; without one, drop the header so no made-up credential is sent,
  // unless the caller supplies its own Authorization header.
  const hasAuthHeader = Object.keys(headers).some((name) => name.toLowerCase() === 'authorization');
  if (settings.apiKey === undefined && !hasAuthHeader) headers['Authorization'] = null;
  return {
    apiKey: settings.apiKey ?? PLACEHOLDER_API_KEY,
    baseURL: settings.baseUrl,
    defaultHeaders: headers,
    defaultQuery: { ...settings.queryParams },
    maxRetries: 0,
    timeout: settings.timeoutMs,
    fetch: settings.fetch,
    // Explicit nulls so the SDK does not fill these from environment variables (only cli/ reads them).
    organization: null,
    project: null,
    adminAPIKey: null,
    webhookSecret: null,
    // The SDK logs to the console, which may be our protocol's stdout.
    logLevel: 'off',
  };
}

/**
 * Maps an error of the SDK's request (before the stream started) to our error classes: an abort
 * is the signal's reason, a connection failure a {@link ModelConnectionError} (or the fetch's own
 * `LocalError`), an HTTP error a {@link ModelApiError}. `displayUrl` names the API in messages.
 */
export function sdkRequestError(sdk: OpenAiSdk, error: unknown, signal: AbortSignal, displayUrl: string): Error {
  if (error instanceof sdk.APIUserAbortError) return abortReason(signal);
  if (error instanceof sdk.APIConnectionError) {
    const cause: unknown = error.cause ?? error;
    // Our fetch would not send it (network settings that cannot be used): a retry cannot help.
    if (cause instanceof LocalError) return new LocalError(cause.code, `cannot reach the model API at ${displayUrl}: ${cause.message}`, { cause });
    // fetch says `fetch failed`; its own cause says why (ECONNRESET, a refused tunnel…).
    const why = cause instanceof Error && cause.cause !== undefined ? `${errorMessage(cause)} (${errorMessage(cause.cause)})` : errorMessage(cause);
    return new ModelConnectionError(`cannot reach the model API at ${displayUrl}: ${why}`, { cause });
  }
  if (error instanceof sdk.APIError) {
    // The SDK's error class is generic over `any`; read its fields as unknown.
    const status: unknown = error.status;
    const headers: unknown = error.headers;
    const body: unknown = error.error;
    if (typeof status === 'number') {
      return ModelApiError.from(status, apiErrorBody(body, error.message, status), headers instanceof Headers ? headers : undefined, { baseUrl: displayUrl });
    }
  }
  return error instanceof Error ? error : new Error(errorMessage(error));
}

/**
 * The error body as the server sent it, recovered from the SDK's error: the `{error}` object
 * when the body was one, else the body text (the SDK prefixes its message with the status).
 */
function apiErrorBody(inner: unknown, message: string, status: number): unknown {
  if (inner !== undefined) return { error: inner };
  const text = message.startsWith(`${status} `) ? message.slice(`${status} `.length) : message;
  return text === 'status code (no body)' ? undefined : text;
}
