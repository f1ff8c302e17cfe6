import type { z } from 'zod';
import { RpcErrorCode, type ErrorObject } from '../protocol/jsonrpc.js';

/** An error that crosses the wire as a JSON-RPC error object. */
export class RpcError extends Error {
  override readonly name = 'RpcError';

  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }

  /**
   * The error a peer answered with. Its stack would only show this connection's message handling,
   * never where the peer failed, and capturing it cost about a percent of the server's main thread
   * (every missing project instruction file is one): it has none.
   */
  static fromWire(code: number, message: string, data?: unknown): RpcError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new RpcError(code, message, data);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }

  /** The wire form. */
  toJSON(): ErrorObject {
    return this.data === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, data: this.data };
  }

  /** -32600: the request is not acceptable in this state. */
  static invalidRequest(message: string): RpcError {
    return new RpcError(RpcErrorCode.InvalidRequest, message);
  }

  /** -32602: the params are malformed. */
  static invalidParams(message: string): RpcError {
    return new RpcError(RpcErrorCode.InvalidParams, message);
  }

  /** -32603: the server failed. */
  static internal(message: string): RpcError {
    return new RpcError(RpcErrorCode.InternalError, message);
  }

  /** -32004: the target does not exist. */
  static notFound(message: string): RpcError {
    return new RpcError(RpcErrorCode.NotFound, message);
  }
}

/**
 * Describes a zod failure the way serde does for the fields that matter most
 * (``missing field `env` ``), and with the field path otherwise.
 */
export function describeParamsError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (issue === undefined) return 'invalid params';
  const path = issue.path.map(String).join('.');
  const field = issue.path.length > 0 ? String(issue.path[issue.path.length - 1]) : undefined;
  if (issue.code === 'invalid_type' && field !== undefined && /received undefined/.test(issue.message)) {
    return `missing field \`${field}\`${issue.path.length > 1 ? ` at \`${path}\`` : ''}`;
  }
  if (issue.code === 'invalid_value' && 'values' in issue && field !== undefined) {
    const values = issue.values.map((v) => `\`${String(v)}\``).join(', ');
    return `invalid value for \`${path}\`, expected one of ${values}`;
  }
  if (issue.code === 'invalid_type' && issue.path.length === 0) return 'params must be an object';
  return path.length > 0 ? `invalid \`${path}\`: ${issue.message}` : issue.message;
}
