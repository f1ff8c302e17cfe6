import type { ApprovalDecision, ApprovalRequest } from '../agent/approvals.js';
import type { TurnEvent } from '../agent/turn.js';
import type { TurnStatus } from '../protocol/thread.js';

/** The outcome of a turn as the MCP layer reports it. */
export interface TurnOutcome {
  threadId: string;
  turnId: string;
  status: TurnStatus;
  lastAgentMessage: string | null;
  error?: string;
}

/**
 * What the caller that started a turn (`codex`, `codex-reply`) sees of it, in order: `accepted`
 * once the thread exists and the turn is queued, the turn's events, approvals to answer, and
 * `finished` last. A call that fails before the turn is accepted (bad settings, an unknown or busy
 * thread) throws from the stream instead.
 */
export type TurnCallEvent =
  | { type: 'accepted'; threadId: string; turnId: string; model: string }
  | (TurnEvent & { turnId: string })
  | {
      type: 'approval';
      turnId: string;
      request: ApprovalRequest;
      /** Aborts when the turn no longer needs the answer. */
      signal: AbortSignal;
      /** Must be called once; anything but a clear approval is a denial. */
      respond: (decision: ApprovalDecision) => void;
    }
  | { type: 'finished'; outcome: TurnOutcome };

/** What a call gives to start or continue a turn. */
export interface TurnCallOptions {
  /** Withdraws the turn while it is queued, and interrupts it once it runs. */
  signal: AbortSignal;
}
