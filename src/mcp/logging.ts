import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { SetLevelRequestSchema, type LoggingLevel } from '@modelcontextprotocol/sdk/types.js';
import type { LogEntry } from '../util/logger.js';

/** MCP log levels, least severe first. */
const MCP_LEVELS: readonly LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/** What the client gets before it sends `logging/setLevel`: problems only, not the chatter. */
export const DEFAULT_MCP_LOG_LEVEL: LoggingLevel = 'warning';

/** Our levels as MCP's; `trace` (per-message detail) is never forwarded. */
const MCP_LEVEL_OF: Record<LogEntry['level'], LoggingLevel | undefined> = { trace: undefined, debug: 'debug', info: 'info', warn: 'warning', error: 'error' };

/** Field values as JSON can carry them (errors become their message). */
function plainFields(fields: LogEntry['fields']): Record<string, unknown> {
  const plain: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields ?? {})) plain[key] = value instanceof Error ? value.message : value;
  return plain;
}

/**
 * Forwards log events to the client as `notifications/message` (`logger` = component, `data` =
 * the message and its fields) at or above the level the client chose with `logging/setLevel`
 * ({@link DEFAULT_MCP_LOG_LEVEL} until it does). Replaces the SDK's `logging/setLevel` handler,
 * whose default forwards every level. A failed send is dropped silently: logging it would loop.
 */
export function mcpLogForwarder(server: Server): (entry: LogEntry) => void {
  let threshold = MCP_LEVELS.indexOf(DEFAULT_MCP_LOG_LEVEL);
  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    threshold = MCP_LEVELS.indexOf(request.params.level);
    return {};
  });
  return (entry) => {
    const level = MCP_LEVEL_OF[entry.level];
    if (level === undefined || MCP_LEVELS.indexOf(level) < threshold) return;
    server.sendLoggingMessage({ level, logger: entry.component, data: { message: entry.message, ...plainFields(entry.fields) } }).catch(() => undefined);
  };
}
