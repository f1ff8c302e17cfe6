import type { JSONRPCMessage, JSONRPCRequest, RequestId } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { McpLogLevelSchema } from './logging.js';
import { ModernError, ModernErrorCode } from './modern-error.js';
import { META_CAPABILITIES, META_LOG_LEVEL, META_VERSION, MODERN_PROTOCOL_VERSIONS, discoverResult, resultReply, type ServerInfo } from './handshake.js';

/**
 * The envelope of the modern MCP era (2026-07-28): what every request carries in `_meta` (its
 * protocol version, the client's capabilities, a log level), checked, and the answers built from
 * it; the answers' shapes, and `server/discover`'s, are in handshake.ts.
 */

const { InvalidParams: INVALID_PARAMS, UnsupportedProtocolVersion: UNSUPPORTED_PROTOCOL_VERSION } = ModernErrorCode;

/** A request's `_meta` as this era reads it (unknown members are kept for whoever else reads them). */
const RequestMetaSchema = z.looseObject({
  [META_VERSION]: z.string().optional(),
  [META_CAPABILITIES]: z
    .looseObject({
      elicitation: z.looseObject({ form: z.unknown().optional(), url: z.unknown().optional() }).optional(),
      extensions: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
  progressToken: z.union([z.string(), z.number()]).optional(),
  [META_LOG_LEVEL]: McpLogLevelSchema.optional(),
});

const RequestParamsSchema = z.looseObject({ _meta: RequestMetaSchema.optional() });

/** What every request of this era carries in `_meta`, checked: a version served here, and the client's capabilities. */
export function readEnvelope(request: JSONRPCRequest): {
  meta: z.infer<typeof RequestMetaSchema>;
  version: string;
  capabilities: NonNullable<z.infer<typeof RequestMetaSchema>[typeof META_CAPABILITIES]>;
} {
  const params = RequestParamsSchema.safeParse(request.params ?? {});
  if (!params.success) throw new ModernError(INVALID_PARAMS, `invalid params of ${request.method}: ${problemsOf(params.error)}`);
  const meta = params.data._meta ?? {};
  const version = meta[META_VERSION];
  if (version === undefined) throw new ModernError(INVALID_PARAMS, `${request.method}: params._meta["${META_VERSION}"] is required (a string naming the protocol version)`);
  if (!MODERN_PROTOCOL_VERSIONS.includes(version)) {
    throw new ModernError(UNSUPPORTED_PROTOCOL_VERSION, `Unsupported protocol version ${version} (this server serves ${MODERN_PROTOCOL_VERSIONS.join(', ')})`, {
      supported: [...MODERN_PROTOCOL_VERSIONS],
      requested: version,
    });
  }
  const capabilities = meta[META_CAPABILITIES];
  if (capabilities === undefined) throw new ModernError(INVALID_PARAMS, `${request.method}: params._meta["${META_CAPABILITIES}"] is required (an object, {} for none)`);
  return { meta, version, capabilities };
}

/** The answer to a request that failed with `error`. */
export function errorReply(id: RequestId, error: ModernError): JSONRPCMessage {
  return { jsonrpc: '2.0', id, error: { code: error.code, message: error.message, ...(error.data === undefined ? {} : { data: error.data }) } };
}

/**
 * The answer to a `server/discover` request, exactly as the `ModernEra` (modern-era.ts) gives it, without the
 * server behind it: a client that probes while the server is still starting (Claude Code waits
 * 3 s) is answered at once (see early-answers.ts).
 */
export function answerDiscover(request: JSONRPCRequest, serverInfo: ServerInfo, offersTasks: boolean): JSONRPCMessage {
  try {
    readEnvelope(request);
    return resultReply(request.id, discoverResult(offersTasks), serverInfo);
  } catch (error) {
    if (error instanceof ModernError) return errorReply(request.id, error);
    throw error;
  }
}

/** One line of a zod error, for an error message. */
export function problemsOf(error: z.ZodError): string {
  return z.prettifyError(error).replace(/\n\s*/g, ' ');
}
