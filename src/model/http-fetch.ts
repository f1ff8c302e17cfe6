import { HttpExchange, abortError, type HttpAnswer, type HttpExchangeOptions, type HttpRequest } from './http-exchange.js';

/**
 * A `fetch` for the MCP SDK's HTTP transport over {@link HttpExchange} (`node:http`/`node:https`
 * with keep-alive agents). Node's built-in fetch (undici) costs about 1 ms of CPU per request on
 * top of the HTTP work itself (its Request/Response machinery, WHATWG streams end to end, a
 * DOMException per abort); this one hands the caller a standard `Response` whose body is fed
 * straight from the socket.
 *
 * Every `http:` and `https:` request goes out through the exchange, the way its network settings
 * say (proxies, `NO_PROXY`, extra roots), redirects followed by the fetch standard's rules; a
 * `Request` object or a streamed or form body is read into bytes first. Only other URL schemes
 * are handed to the fallback fetch, so no request can slip past the proxy.
 */

/** Options of {@link createHttpFetch}. */
export interface HttpFetchOptions extends HttpExchangeOptions {
  /**
   * The exchange to send with, shared with other users (e.g. the model client) so they share its
   * connections; `keepAliveMs` and `network` are then its own. @default a new one from `keepAliveMs` and `network`
   */
  exchange?: HttpExchange;
  /** Handles URLs that are neither http nor https (e.g. `data:`). @default globalThis.fetch */
  fallback?: typeof fetch;
}

/** Creates the fetch. */
export function createHttpFetch(options: HttpFetchOptions = {}): typeof fetch {
  const fallback = options.fallback ?? globalThis.fetch;
  const exchange = options.exchange ?? new HttpExchange(options);

  const httpFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const body = init.body ?? undefined;
    const simple = (typeof input === 'string' || input instanceof URL) && (body === undefined || typeof body === 'string' || body instanceof Uint8Array);
    const url = simple ? new URL(input) : new URL(input instanceof Request ? input.url : input);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return fallback(input, init);
    let request: HttpRequest;
    let signal: AbortSignal | undefined;
    let redirect: NonNullable<RequestInit['redirect']>;
    if (simple) {
      signal = init.signal ?? undefined;
      redirect = init.redirect ?? 'follow';
      request = { target: url, method: init.method ?? 'GET', headers: headerRecord(new Headers(init.headers)), payload: typeof body === 'string' ? Buffer.from(body) : body };
    } else {
      // The standard's own parsing of a Request or a form/stream body, then bytes like any other.
      const parsed = new Request(input, init);
      signal = parsed.signal;
      redirect = parsed.redirect;
      const bytes = parsed.body === null ? undefined : new Uint8Array(await parsed.arrayBuffer());
      request = { target: url, method: parsed.method, headers: headerRecord(parsed.headers), payload: bytes };
    }
    if (signal?.aborted === true) throw abortError(signal);
    const answer = await exchange.send(request, signal, redirect);
    return new Response(bodyStream(answer), { status: answer.status, statusText: answer.statusText, headers: responseHeaders(answer) });
  };
  return httpFetch;
}

/** The request's headers as the exchange takes them: lower-case names (which `Headers` gives). */
function headerRecord(headers: Headers): Record<string, string> {
  const record: Record<string, string> = {};
  headers.forEach((value, name) => {
    record[name] = value;
  });
  return record;
}

function responseHeaders(answer: HttpAnswer): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(answer.headers)) {
    if (Array.isArray(value)) for (const item of value) headers.append(name, item);
    else if (value !== undefined) headers.set(name, value);
  }
  return headers;
}

/** The answer's body as a byte stream, with back-pressure; none for the statuses without one. */
function bodyStream(answer: HttpAnswer): ReadableStream<Uint8Array> | null {
  if (!answer.hasBody) return null;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      answer.read({
        data: (chunk) => {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 1) <= 0) answer.pause();
        },
        end: () => controller.close(),
        error: (error) => controller.error(error),
      });
    },
    pull() {
      answer.resume();
    },
    cancel() {
      answer.cancel();
    },
  });
}
