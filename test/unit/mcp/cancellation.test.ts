// Which `notifications/cancelled` reasons are a client's own request time-out (the call ends, the
// turn goes on) and which are an explicit cancel (the turn is interrupted).
import { clientCancellation, isClientTimeout } from '../../../src/mcp/turn-call.js';
import { LocalErrorCode } from '../../../src/util/errors.js';

describe('clientCancellation', () => {
  it.each([
    // The MCP TypeScript SDK v1: String(McpError) of its timeoutHandler.
    'McpError: MCP error -32001: Request timed out',
    // rmcp-based clients.
    'timed out',
    'request timeout',
    // AbortSignal.timeout() passed as a request's signal.
    'TimeoutError: The operation was aborted due to timeout',
    'Time-out while waiting for the tool',
    'TIMED_OUT',
    'tool call time out after 60s',
    'error -32001',
    'timeouts exceeded',
  ])('%j is a client time-out', (reason) => {
    const error = clientCancellation(reason);
    expect(error.code).toBe(LocalErrorCode.RequestTimeout);
    expect(error.message).toContain(reason);
    expect(isClientTimeout(error)).toBe(true);
  });

  it.each([
    undefined,
    '',
    'User requested cancellation',
    // What the SDK sends for controller.abort() and controller.abort(new Error(…)).
    'AbortError: This operation was aborted',
    'Error: the user pressed stop',
    'the tool call was abandoned',
    // Near misses: the words inside others, another code.
    'runtime outage',
    'lifetime output was too long',
    'MCP error -320011',
    'MCP error -32000: Connection closed',
    'overtime out of budget',
  ])('%j is an explicit cancel', (reason) => {
    const error = clientCancellation(reason);
    expect(error.code).toBe(LocalErrorCode.Aborted);
    expect(isClientTimeout(error)).toBe(false);
  });

  it('only its own time-out errors count: other reasons for an abort are not time-outs', () => {
    expect(isClientTimeout(new Error('Request timed out'))).toBe(false);
    expect(isClientTimeout('timed out')).toBe(false);
    expect(isClientTimeout(undefined)).toBe(false);
  });
});
