import type { ServerNotification } from '@modelcontextprotocol/sdk/types.js';
import type { TurnEvent } from '../agent/turn.js';
import { describeTurnEvent } from '../session/live-turn.js';
import type { TurnOutcome } from '../session/turn-stream.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { vendorNotification } from './sdk-workarounds.js';
import type { ToolExtra } from './tools.js';

/** Reports a turn's progress to the caller of one `tools/call`. */
export interface ProgressReporter {
  /** The turn was accepted; `created` is set when the call created the thread (`codex`). */
  started(threadId: string, turnId: string, created?: { model: string }): void;
  event(event: TurnEvent & { turnId: string }): void;
  finished(outcome: TurnOutcome): void;
  /** The call was answered while its turn goes on: send nothing more for it. */
  stop(): void;
}

/**
 * Sends `notifications/progress` (only when the call carried a progress token) with short
 * messages, and, behind `multienv.codex_events`, `codex/event` notifications shaped like the old
 * `codex mcp-server`'s for hubs that consumed them. A failed send never affects the turn.
 */
export function progressReporter(extra: ToolExtra, options: { codexEvents: boolean; logger: Logger }): ProgressReporter {
  const token = extra._meta?.progressToken;
  let progress = 0;
  let threadId: string | undefined;
  let stopped = false;
  const send = (notification: ServerNotification): void => {
    if (stopped) return;
    extra.sendNotification(notification).catch((error: unknown) => options.logger.debug('could not send a notification', { error: errorMessage(error) }));
  };
  const progressNote = (message: string): void => {
    if (token === undefined) return;
    progress += 1;
    send({ method: 'notifications/progress', params: { progressToken: token, progress, message } });
  };
  const codexEvent = (turnId: string, msg: Record<string, unknown>): void => {
    if (!options.codexEvents) return;
    const meta: Record<string, unknown> = { requestId: extra.requestId };
    if (threadId !== undefined) meta.threadId = threadId;
    // A vendor notification outside the MCP schema, as the old server sent it.
    send(vendorNotification('codex/event', { _meta: meta, id: turnId, msg }));
  };
  return {
    started: (id, turnId, created) => {
      threadId = id;
      progressNote(`turn started on thread ${id}`);
      // The old server announced a new session first (event id ""), which is where hubs read its id.
      if (created !== undefined) codexEvent('', { type: 'session_configured', session_id: id, model: created.model });
      codexEvent(turnId, { type: 'task_started' });
    },
    event: (event) => {
      const message = describeTurnEvent(event);
      if (message !== undefined) progressNote(message);
      if (event.type === 'agent_message') codexEvent(event.turnId, { type: 'agent_message', message: event.text });
      if (event.type === 'tool_started') codexEvent(event.turnId, { type: 'tool_call_begin', call_id: event.callId, tool: event.tool });
      if (event.type === 'tool_finished') codexEvent(event.turnId, { type: 'tool_call_end', call_id: event.callId, tool: event.tool, success: event.ok });
      if (event.type === 'plan_updated') codexEvent(event.turnId, { type: 'plan_update', ...event.plan });
    },
    finished: (outcome) => {
      progressNote(`turn ${outcome.status}`);
      if (outcome.status === 'failed') codexEvent(outcome.turnId, { type: 'error', message: outcome.error ?? 'turn failed' });
      codexEvent(outcome.turnId, { type: 'task_complete', last_agent_message: outcome.lastAgentMessage });
    },
    stop: () => {
      stopped = true;
    },
  };
}
