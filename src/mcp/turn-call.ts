import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Approver } from '../agent/approvals.js';
import type { TurnProgress } from '../protocol/status.js';
import { ThreadBusyError } from '../session/ownership.js';
import { ThreadNotFoundError } from '../session/thread-store.js';
import type { TurnCallEvent, TurnCallOptions as SessionCallOptions, TurnOutcome } from '../session/turn-stream.js';
import { deferred } from '../util/deferred.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { ElicitationApprover } from './elicitation-approver.js';
import { progressReporter } from './progress.js';
import type { ToolExtra } from './tools.js';

/** What a `codex`/`codex-reply` call does with the thread manager: start the turn, get its events. */
export type TurnRun = (options: SessionCallOptions) => AsyncIterable<TurnCallEvent>;

/** The thread and turn a call started (or continued). */
export interface StartedTurn {
  threadId: string;
  turnId: string;
}

/** One call's turn while it runs. */
export interface TurnCall {
  /** Resolves once the thread and turn exist; undefined when the call failed before that. */
  readonly started: Promise<StartedTurn | undefined>;
  /** The answer for when the turn has ended; errors are results too (never rejects). */
  readonly result: Promise<CallToolResult>;
  /** Interrupts the turn (an explicit MCP cancellation, a task cancelled). */
  interrupt(reason: string): void;
  /** The call was answered before the turn ended: stop reporting progress to it. */
  detach(): void;
}

/** What {@link startTurnCall} needs from the server. */
export interface TurnCallContext {
  server: Server;
  logger: Logger;
  approvalTimeoutMs: number;
  codexEvents: boolean;
  /** A live turn's progress (for task status messages); tasks say less without it. */
  progressOf?: (threadId: string, turnId: string) => TurnProgress | undefined;
}

/** What a caller other than a plain `tools/call` adds to a turn call (an MCP task does). */
export interface TurnCallOptions {
  /** Sent with each approval request as its related task (undefined until the task is recorded). */
  relatedTaskId?: () => string | undefined;
  /** Wraps the approver, to follow the approvals the turn asks. */
  approvals?: (inner: Approver) => Approver;
}

/** A `{threadId, content}` result. */
export function threadResult(threadId: string, text: string, isError = false): CallToolResult {
  const result: CallToolResult = { content: [{ type: 'text', text }], structuredContent: { threadId, content: text } };
  if (isError) result.isError = true;
  return result;
}

/** An error result without a thread. */
export function plainError(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

/** The `{threadId, content}` answer for how a turn ended (also rebuilt from the stored turn for a task's result). */
export function outcomeResult(outcome: TurnOutcome): CallToolResult {
  if (outcome.status === 'completed') return threadResult(outcome.threadId, outcome.lastAgentMessage ?? '');
  if (outcome.status === 'interrupted') {
    return threadResult(outcome.threadId, `The turn was interrupted.${outcome.lastAgentMessage === null ? '' : ` Last message: ${outcome.lastAgentMessage}`}`, true);
  }
  return threadResult(outcome.threadId, `The turn failed: ${outcome.error ?? 'unknown error'}`, true);
}

/**
 * Starts the turn of one call with approvals as elicitations and progress reported to the call.
 * The turn belongs to the thread, not to the request: only {@link TurnCall.interrupt} stops it,
 * never the request's end or the client going away.
 */
export function startTurnCall(context: TurnCallContext, extra: ToolExtra, run: TurnRun, knownThreadId?: string, options: TurnCallOptions = {}): TurnCall {
  const controller = new AbortController();
  const started = deferred<StartedTurn | undefined>();
  let threadId = knownThreadId;
  let turnId: string | undefined;
  const report = progressReporter(extra, { codexEvents: context.codexEvents, logger: context.logger });
  // The call's own way of asking (the modern era's input requests) comes before elicitation/create.
  const asker =
    extra.approver ??
    new ElicitationApprover({
      server: context.server,
      timeoutMs: context.approvalTimeoutMs,
      logger: context.logger,
      toolCallId: extra.requestId,
      turnId: () => turnId,
      relatedTaskId: options.relatedTaskId,
    });
  const approver = options.approvals?.(asker) ?? asker;
  /** The call's answer is a fold over the turn's events; the turn's approvals are asked as they come. */
  const fold = async (): Promise<TurnOutcome> => {
    for await (const event of run({ signal: controller.signal })) {
      switch (event.type) {
        case 'accepted':
          threadId = event.threadId;
          turnId = event.turnId;
          report.started(event.threadId, event.turnId, knownThreadId === undefined ? { model: event.model } : undefined);
          started.resolve({ threadId: event.threadId, turnId: event.turnId });
          extra.onTurnStarted?.(event.threadId, event.turnId);
          break;
        case 'approval':
          // Asked without holding up the turn's other events; the approver never rejects.
          void approver.request(event.request, event.signal).then(event.respond);
          break;
        case 'finished':
          return event.outcome;
        default:
          report.event(event);
      }
    }
    throw new LocalError(LocalErrorCode.ProtocolViolation, 'the turn ended without an outcome');
  };
  const result = fold().then(
    (outcome) => {
      report.finished(outcome);
      return outcomeResult(outcome);
    },
    (error: unknown) => {
      if (error instanceof ThreadNotFoundError || error instanceof ThreadBusyError) return threadResult(error.threadId, error.message, true);
      if (threadId !== undefined) return threadResult(threadId, errorMessage(error), true);
      return plainError(errorMessage(error));
    },
  );
  void result.then(() => started.resolve(undefined));
  return {
    started: started.promise,
    result,
    interrupt: (reason) => controller.abort(new Error(reason)),
    detach: () => report.stop(),
  };
}

/**
 * A cancellation reason that says the client's own request time-out fired: "timed out",
 * "timeout", "time out" (any case, `-`/`_` between the words), or the MCP error code -32001
 * (RequestTimeout). The MCP TypeScript SDK sends `McpError: MCP error -32001: Request timed out`;
 * rmcp-based clients send `timed out`; an `AbortSignal.timeout()` gives `TimeoutError: …`.
 */
const CLIENT_TIMEOUT_REASON = /\btim(?:e|ed)[\s_-]?outs?\b|(?<!\d)-32001(?!\d)/i;

/**
 * The abort reason for a client's `notifications/cancelled`, classified once at the edge (the
 * wire gives only text): a LocalError `REQUEST_TIMEOUT` when the reason says the client gave up
 * waiting (see {@link CLIENT_TIMEOUT_REASON}), else `ABORTED` (an explicit cancel, with or without
 * a reason). Callers branch on the code, see {@link isClientTimeout}.
 */
export function clientCancellation(reason: string | undefined): LocalError {
  if (reason !== undefined && CLIENT_TIMEOUT_REASON.test(reason)) return clientStoppedWaiting(reason);
  return new LocalError(LocalErrorCode.Aborted, reason === undefined || reason === '' ? 'cancelled by the client' : reason);
}

/**
 * The abort reason of a call whose client stopped waiting for it (its own time-out, or a closed
 * connection that cannot be told from one): the call ends, its turn goes on.
 */
export function clientStoppedWaiting(reason: string): LocalError {
  return new LocalError(LocalErrorCode.RequestTimeout, `the client stopped waiting: ${reason}`);
}

/** Whether an abort reason made by {@link clientCancellation} or {@link clientStoppedWaiting} is the client's own time-out. */
export function isClientTimeout(reason: unknown): boolean {
  return reason instanceof LocalError && reason.code === LocalErrorCode.RequestTimeout;
}

/** The names a running-turn answer points the caller to. */
export interface FollowUpNames {
  status: string;
  interrupt: string;
}

/**
 * Answers a call with the turn's result when it ends within `waitMs`; otherwise, as soon as the
 * thread exists, with `status: "running"`, the turn id and its progress so far, while the turn
 * goes on. `end` cuts the wait short the same way (the client timed out on the call).
 * `progressOf` also makes what the turn wrote so far durable before that answer leaves.
 */
export async function answerWithin(
  call: TurnCall,
  waitMs: number,
  progressOf: (started: StartedTurn) => Promise<TurnProgress | undefined>,
  names: FollowUpNames,
  end?: AbortSignal,
): Promise<CallToolResult> {
  let timer: NodeJS.Timeout | undefined;
  let stop: (() => void) | undefined;
  const budget = new Promise<'budget'>((resolve) => {
    stop = () => resolve('budget');
    timer = setTimeout(stop, waitMs);
    if (end?.aborted === true) stop();
    else end?.addEventListener('abort', stop, { once: true });
  });
  try {
    const first = await Promise.race([call.result, budget]);
    if (first !== 'budget') return first;
  } finally {
    clearTimeout(timer);
    if (stop !== undefined) end?.removeEventListener('abort', stop);
  }
  // The budget is spent; the answer needs the thread id, so wait for the thread if it is not there yet.
  const started = await Promise.race([call.started, call.result]);
  if (started === undefined || 'content' in started) return call.result;
  const progress = await progressOf(started);
  if (progress === undefined) return call.result;
  call.detach();
  return runningResult(started, progress, names);
}

function runningResult(started: StartedTurn, progress: TurnProgress, names: FollowUpNames): CallToolResult {
  const done = progress.toolCalls.finished;
  const lines = [
    `The turn is still ${progress.state === 'queued' ? 'queued' : progress.state === 'waiting-for-approval' ? 'waiting for an approval' : 'running'} (thread ${started.threadId}, turn ${started.turnId}): ${progress.modelRequests} model request(s), ${done} tool call(s) done so far.`,
  ];
  if (progress.lastAgentMessage !== null) lines.push(`Last agent message: ${progress.lastAgentMessage}`);
  const recent = progress.recent.slice(-5).map((entry) => `- ${entry.text}`);
  if (recent.length > 0) lines.push('Recent:', ...recent);
  lines.push(`It goes on without this call: use ${names.status} with this threadId (and waitMs) to wait for it and read its result, or ${names.interrupt} to stop it.`);
  const text = lines.join('\n');
  return {
    content: [{ type: 'text', text }],
    structuredContent: { threadId: started.threadId, content: text, status: 'running', turnId: started.turnId, progress },
  };
}
