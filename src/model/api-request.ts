/**
 * The parts of a Responses API request that do not change between requests (its URL and
 * headers), and the reading of an HTTP error's body: what the model client sends over
 * {@link HttpExchange} itself, since an SDK's request machinery cost more CPU than the exchange.
 */
import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { HttpAnswer } from './http-exchange.js';

/** The `User-Agent` of model requests when the caller names none. */
export const DEFAULT_USER_AGENT = 'codex-multienv-mcp';

/**
 * The most of an HTTP error's body that is read; the rest is not waited for (the connection is
 * closed). An API error object is far smaller; some proxies answer with whole HTML pages.
 */
export const MAX_ERROR_BODY_BYTES = 256 * 1024;

/**
 * `<baseUrl>/responses` with `queryParams` added (a parameter of the base URL's own query with the
 * same name is replaced). A LocalError (`INVALID_CONFIG`) when the base URL is not an http(s) URL.
 */
export function responsesUrl(baseUrl: string, queryParams: Record<string, string> | undefined): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new LocalError(LocalErrorCode.InvalidConfig, `the model base URL ${JSON.stringify(baseUrl)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new LocalError(LocalErrorCode.InvalidConfig, `the model base URL must be http or https, not ${url.protocol}`);
  }
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/responses`;
  url.hash = '';
  for (const [name, value] of Object.entries(queryParams ?? {})) url.searchParams.set(name, value);
  return url;
}

/** What {@link requestHeaders} is made from (see `ModelClientOptions`). */
export interface RequestHeaderSettings {
  apiKey: string | undefined;
  headers: Record<string, string> | undefined;
  userAgent: string;
}

/**
 * The headers of every request, names in lower case: `Accept: text/event-stream`, the user agent,
 * the bearer key (only when one is configured and the configured headers carry no `Authorization`
 * of their own), then the configured headers (which may replace any of those), and the JSON
 * content type, which is what the body is.
 */
export function requestHeaders(settings: RequestHeaderSettings): Record<string, string> {
  const headers: Record<string, string> = { accept: 'text/event-stream', 'user-agent': settings.userAgent };
  if (settings.apiKey !== undefined) headers['authorization'] = `Bearer ${settings.apiKey}`;
  for (const [name, value] of Object.entries(settings.headers ?? {})) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  return headers;
}

/**
 * The body of an HTTP error answer: its JSON when it is JSON (an API `{error: {…}}` object), else
 * its text; `undefined` when empty. At most {@link MAX_ERROR_BODY_BYTES} are read. Rejects when
 * the body fails before it ended (a broken connection, an abort).
 */
export function readErrorBody(answer: HttpAnswer): Promise<unknown> {
  return new Promise<unknown>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (): void => {
      const text = Buffer.concat(chunks, Math.min(size, MAX_ERROR_BODY_BYTES)).toString('utf8');
      if (text.trim().length === 0) {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(text));
      } catch {
        resolve(text);
      }
    };
    answer.read({
      data: (chunk) => {
        chunks.push(chunk);
        size += chunk.byteLength;
        if (size < MAX_ERROR_BODY_BYTES) return;
        answer.cancel();
        settle();
      },
      end: settle,
      error: reject,
    });
  });
}
