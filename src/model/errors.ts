import { z } from 'zod';

/**
 * Errors of the model client. Callers branch on the class (and `retryable`, `status`, `reason`,
 * `code`), never on message text. Messages name the endpoint's base URL, never the API key.
 */

/** HTTP statuses worth retrying: request timeout, conflict (lock), rate limit, server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** `response.failed` / `error` codes worth retrying; every other code is final. */
export const RETRYABLE_STREAM_ERROR_CODES: readonly string[] = ['server_error', 'rate_limit_exceeded', 'rate_limit'];

/** The common base of the model client's errors. */
export abstract class ModelError extends Error {
  /** Whether trying the same request again may succeed. */
  abstract readonly retryable: boolean;
}

/** Headers as a `Headers`, or a record (as node:http gives them, names in lower case, or as a test writes them). */
export type HeadersInput = Headers | Readonly<Record<string, string | readonly string[] | undefined>> | undefined;

/** Options of {@link ModelApiError.from}. */
export interface ModelApiErrorContext {
  /** The endpoint's base URL, named in the message (without credentials). */
  baseUrl?: string;
  /** Clock for `retry-after` dates. @default Date.now */
  now?: () => number;
}

const ApiErrorBodySchema = z.looseObject({
  error: z.looseObject({
    message: z.string().nullish(),
    type: z.string().nullish(),
    code: z.union([z.string(), z.number()]).nullish(),
  }),
});

/** The API answered with an HTTP error status. */
export class ModelApiError extends ModelError {
  override readonly name = 'ModelApiError';
  /** The HTTP status. */
  readonly status: number;
  /** `error.code` of the body, e.g. `rate_limit_exceeded`. */
  readonly code: string | undefined;
  /** `error.type` of the body, e.g. `invalid_request_error`. */
  readonly type: string | undefined;
  /** `error.message` of the body, or the body text when it is not an API error object. */
  readonly apiMessage: string;
  /** The `x-request-id` response header, for support requests. */
  readonly requestId: string | undefined;
  /** How long the server asked us to wait (`retry-after-ms`, else `retry-after`), in ms. */
  readonly retryAfterMs: number | undefined;
  /** True for 408, 409, 429 and 5xx. */
  readonly retryable: boolean;

  constructor(init: {
    status: number;
    apiMessage: string;
    code?: string | undefined;
    type?: string | undefined;
    requestId?: string | undefined;
    retryAfterMs?: number | undefined;
    baseUrl?: string | undefined;
  }) {
    const where = init.baseUrl === undefined ? '' : ` from ${init.baseUrl}`;
    const detail = init.apiMessage.length > 0 ? `: ${init.apiMessage}` : '';
    super(`model API error: HTTP ${init.status}${where}${detail}`);
    this.status = init.status;
    this.code = init.code;
    this.type = init.type;
    this.apiMessage = init.apiMessage;
    this.requestId = init.requestId;
    this.retryAfterMs = init.retryAfterMs;
    this.retryable = isRetryableStatus(init.status);
  }

  /**
   * Builds the error from an HTTP answer: `body` is the parsed JSON (an API `{error: {…}}`
   * object) or the body text.
   */
  static from(status: number, body: unknown, headers: HeadersInput, context: ModelApiErrorContext = {}): ModelApiError {
    const parsed = ApiErrorBodySchema.safeParse(body);
    let apiMessage: string;
    let code: string | undefined;
    let type: string | undefined;
    if (parsed.success) {
      const error = parsed.data.error;
      apiMessage = error.message ?? '';
      code = error.code == null ? undefined : String(error.code);
      type = error.type ?? undefined;
    } else if (typeof body === 'string') {
      apiMessage = body.trim();
    } else if (body === undefined || body === null) {
      apiMessage = '';
    } else {
      apiMessage = safeStringify(body);
    }
    return new ModelApiError({
      status,
      apiMessage: truncate(apiMessage, MAX_API_MESSAGE_CHARS),
      code,
      type,
      requestId: header(headers, 'x-request-id'),
      retryAfterMs: retryAfterMs(headers, context.now ?? Date.now),
      baseUrl: context.baseUrl,
    });
  }
}

/** The API could not be reached, or the connection failed before an answer arrived. */
export class ModelConnectionError extends ModelError {
  override readonly name = 'ModelConnectionError';
  /** Always true: connection failures are transient as far as we can tell. */
  readonly retryable = true;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Why a {@link ModelStreamError} happened. */
export type ModelStreamErrorReason =
  /** The stream ended (or broke) before `response.completed`. */
  | 'dropped'
  /** Nothing arrived for `idleTimeoutMs`. */
  | 'idle-timeout'
  /** A `response.failed` event. */
  | 'failed'
  /** An `error` event. */
  | 'error'
  /** A `response.incomplete` event (e.g. the output token limit was hit). */
  | 'incomplete'
  /** An event we act on did not match its schema. */
  | 'invalid';

/** The response stream did not end with `response.completed`. */
export class ModelStreamError extends ModelError {
  override readonly name = 'ModelStreamError';
  /** What went wrong. */
  readonly reason: ModelStreamErrorReason;
  /** The API's error code (`response.failed`, `error` events), e.g. `server_error`. */
  readonly code: string | undefined;
  /** The response id, when the stream told us. */
  readonly responseId: string | undefined;
  /** True for dropped and idle streams, and for failures with a retryable code. */
  readonly retryable: boolean;

  constructor(init: { reason: ModelStreamErrorReason; message: string; code?: string | undefined; responseId?: string | undefined }, options?: { cause?: unknown }) {
    super(init.message, options);
    this.reason = init.reason;
    this.code = init.code;
    this.responseId = init.responseId;
    this.retryable =
      init.reason === 'dropped' ||
      init.reason === 'idle-timeout' ||
      ((init.reason === 'failed' || init.reason === 'error') && init.code !== undefined && RETRYABLE_STREAM_ERROR_CODES.includes(init.code));
  }
}

/** The error code the Responses API gives a request whose input does not fit the model's context window. */
export const CONTEXT_LENGTH_EXCEEDED_CODE = 'context_length_exceeded';

/**
 * True when the model refused the request because its input exceeds the context window: an HTTP
 * error or a `response.failed` / `error` event with the code {@link CONTEXT_LENGTH_EXCEEDED_CODE}.
 */
export function isContextWindowExceeded(error: unknown): boolean {
  return (error instanceof ModelApiError || error instanceof ModelStreamError) && error.code === CONTEXT_LENGTH_EXCEEDED_CODE;
}

/** Longest API message kept in an error; some proxies answer with whole HTML pages. */
const MAX_API_MESSAGE_CHARS = 2_000;

function header(headers: HeadersInput, name: string): string | undefined {
  if (headers === undefined) return undefined;
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name || value === undefined) continue;
    return typeof value === 'string' ? value : value.join(', ');
  }
  return undefined;
}

/** `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP date). */
function retryAfterMs(headers: HeadersInput, now: () => number): number | undefined {
  const ms = header(headers, 'retry-after-ms');
  if (ms !== undefined) {
    const value = Number.parseFloat(ms);
    if (Number.isFinite(value) && value >= 0) return value;
  }
  const after = header(headers, 'retry-after');
  if (after === undefined) return undefined;
  const seconds = Number.parseFloat(after);
  if (Number.isFinite(seconds) && /^\s*[\d.]+\s*$/.test(after)) return Math.max(0, seconds * 1000);
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now());
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
