import { RpcError } from '../rpc/errors.js';

/**
 * Refuses a request that asks for a platform sandbox this server cannot apply, so nothing ever
 * runs unconfined by mistake. `null` or absent means "no sandbox" and passes.
 */
export function refuseUnsupportedSandbox(sandbox: unknown, method: string): void {
  if (sandbox === null || sandbox === undefined) return;
  throw RpcError.internal(
    `${method}: this exec-server cannot apply the requested sandbox; run the session with sandbox \`danger-full-access\` or use an executor that supports sandboxing`,
  );
}
