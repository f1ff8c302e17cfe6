import type { Json } from './steps.js';

/**
 * The JSON-RPC messages of a modern (2026-07-28) HTTP answer: one JSON body, or the `data:` lines
 * of an SSE stream (notifications, then the answer).
 */
export function answerMessages(response: Response, text: string): Json[] {
  if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) return [JSON.parse(text) as Json];
  return text
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => JSON.parse(line.slice(5)) as Json);
}

/**
 * POSTs one modern request with `meta` to `url` and resolves with the answer to it (a result or
 * an error message), failing when none came.
 */
export async function modernHttpRequest(url: string, id: string | number, method: string, params: Json, meta: Json): Promise<Json> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { _meta: meta, ...params } }),
  });
  const text = await response.text();
  const answer = answerMessages(response, text).find((message) => message.id === id);
  if (answer === undefined) throw new Error(`${method}: no answer in ${text.slice(0, 500)}`);
  return answer;
}
