import { AsyncLocalStorage } from 'node:async_hooks';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { SetLevelRequestSchema, type JSONRPCMessage, type LoggingLevel } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { LogEntry } from '../util/logger.js';

/** MCP log levels, least severe first. */
const MCP_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'] as const satisfies readonly LoggingLevel[];

/** An MCP log level as a request's `_meta` names it (the 2026-07-28 per-request level). */
export const McpLogLevelSchema = z.enum(MCP_LEVELS);

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

/** `entry` as the params of a `notifications/message` (`logger` = component, `data` = the message and its fields). */
function messageParams(level: LoggingLevel, entry: LogEntry): { level: LoggingLevel; logger: string; data: Record<string, unknown> } {
  return { level, logger: entry.component, data: { message: entry.message, ...plainFields(entry.fields) } };
}

/**
 * Forwards log events to a legacy client as `notifications/message` at or above the level it chose
 * with `logging/setLevel` ({@link DEFAULT_MCP_LOG_LEVEL} until it does). Replaces the SDK's
 * `logging/setLevel` handler, whose default forwards every level. Nothing is sent before a legacy
 * client has initialized: a modern client on the same stdio connection never asked for these (the
 * SDK would send them anyway). A failed send is dropped silently: logging it would loop.
 */
export function mcpLogForwarder(server: Server): (entry: LogEntry) => void {
  let threshold = MCP_LEVELS.indexOf(DEFAULT_MCP_LOG_LEVEL);
  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    threshold = MCP_LEVELS.indexOf(request.params.level);
    return {};
  });
  return (entry) => {
    const level = MCP_LEVEL_OF[entry.level];
    if (level === undefined || MCP_LEVELS.indexOf(level) < threshold || server.getClientVersion() === undefined) return;
    server.sendLoggingMessage(messageParams(level, entry)).catch(() => undefined);
  };
}

/** Where the log events of a modern request go: its level and its response stream; undefined when it asked for none (or is answered). */
export type RequestLogTarget = { level: LoggingLevel; send: (message: JSONRPCMessage) => Promise<void> } | undefined;

/**
 * The 2026-07-28 per-request log level: a modern request that names a level in `_meta`
 * (`io.modelcontextprotocol/logLevel`) gets the log events of its own work at or above it, as
 * `notifications/message` on its own response stream before its answer; a request without one
 * gets none. Events are tied to a request by the async context they are logged in
 * ({@link run}), so one client never sees what another's request logged. The target is read when
 * an event is logged, so a call answered over several requests (MRTR rounds) reports to whichever
 * has it open.
 */
export class RequestLogs {
  readonly #context = new AsyncLocalStorage<() => RequestLogTarget>();
  /** Set while an event is being sent: whatever the send logs is not sent again. */
  #sending = false;

  /** Runs `fn` with the events logged in it (and in the work it starts) going to `target()`. */
  run<T>(target: () => RequestLogTarget, fn: () => T): T {
    return this.#context.run(target, fn);
  }

  /** Hands `entry` to the request it was logged for, if that request asked for its level. */
  forward(entry: LogEntry): void {
    const level = MCP_LEVEL_OF[entry.level];
    if (level === undefined || this.#sending) return;
    const target = this.#context.getStore()?.();
    if (target === undefined || MCP_LEVELS.indexOf(level) < MCP_LEVELS.indexOf(target.level)) return;
    this.#sending = true;
    try {
      target.send({ jsonrpc: '2.0', method: 'notifications/message', params: messageParams(level, entry) }).catch(() => undefined);
    } finally {
      this.#sending = false;
    }
  }
}
