/** JSON-RPC error codes the modern era (modern-era.ts, modern-tasks.ts) answers with. */
export const ModernErrorCode = {
  InvalidParams: -32602,
  MethodNotFound: -32601,
  InternalError: -32603,
  /** The request needs a capability (here: an extension) the client did not declare on it. */
  MissingRequiredClientCapability: -32021,
  UnsupportedProtocolVersion: -32022,
} as const;

/** A JSON-RPC error the modern era answers a request with. */
export class ModernError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
  }
}
