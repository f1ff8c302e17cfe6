import type { IncomingMessage, RequestId } from '../protocol/jsonrpc.js';

/**
 * The common shapes, classified without a schema pass: a request or a result whose id is a safe
 * integer or a string, a notification, all with a string method. Anything else (errors, odd ids,
 * malformed messages) returns undefined and goes through `classifyMessage`, which has the
 * last word; what this accepts, it accepts too, with the same outcome.
 */
export function classifyFast(value: unknown): IncomingMessage | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const record = value as Record<string, unknown>;
  const { id, method } = record;
  const idOk = typeof id === 'string' || Number.isSafeInteger(id);
  if (typeof method === 'string') {
    if (id === undefined && !('id' in record)) return { kind: 'notification', method, params: record.params };
    if (idOk) return { kind: 'request', id: id as RequestId, method, params: record.params };
    return undefined;
  }
  if (method === undefined && !('method' in record) && !('error' in record) && 'result' in record && idOk) {
    return { kind: 'result', id: id as RequestId, result: record.result };
  }
  return undefined;
}
