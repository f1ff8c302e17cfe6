import type { ApprovalRequest, Approver } from '../agent/approvals.js';
import type { TurnEvent } from '../agent/turn.js';
import type { FinishedTurn, LeaseHolder, LiveTurnState, TurnProgress } from '../protocol/status.js';
import { PlanUpdateSchema, type InstructionFile, type PlanUpdate, type ThreadBodyRecord, type TurnStatus } from '../protocol/thread.js';
import { UPDATE_PLAN_TOOL } from '../agent/tools/update-plan.js';
import { parseJsonAs } from '../util/json.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { deferred } from '../util/deferred.js';

/** Events a live turn keeps for status reports (the oldest are dropped). */
export const RECENT_TURN_EVENTS = 20;

/** Finished turns a thread keeps in memory for status reports. */
export const FINISHED_TURNS_KEPT = 32;

function clip(text: string, max = 160): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * A short line for a turn event, or undefined for events that only count (a tool started or
 * succeeded: the tool's own progress messages say more).
 */
export function describeTurnEvent(event: TurnEvent): string | undefined {
  switch (event.type) {
    case 'model_request':
      return event.step === 1 ? 'thinking' : `thinking (step ${event.step})`;
    case 'agent_message':
      return `agent: ${clip(event.text)}`;
    case 'tool_started':
      return undefined;
    case 'tool_finished':
      return event.ok ? undefined : `${event.tool} failed`;
    case 'plan_updated':
      return describePlan(event.plan);
    case 'progress':
      return event.message;
  }
}

/** A plan in one line: how far it is and the step in progress. */
export function describePlan(update: PlanUpdate): string {
  const done = update.plan.filter((step) => step.status === 'completed').length;
  const current = update.plan.find((step) => step.status === 'in_progress');
  return `plan: ${done}/${update.plan.length} done${current === undefined ? '' : `; now: ${clip(current.step, 100)}`}`;
}

/** The plan an `update_plan` call set, or undefined for any other item (or one the tool refused). */
export function planOf(item: { type: string; name?: unknown; arguments?: unknown }): PlanUpdate | undefined {
  if (item.type !== 'function_call' || item.name !== UPDATE_PLAN_TOOL || typeof item.arguments !== 'string') return undefined;
  return parseJsonAs(PlanUpdateSchema, item.arguments).value;
}

/**
 * The in-memory state of one accepted turn until it finishes: its progress for status reports,
 * a signal to interrupt it, and a promise of its end. Progress is folded from the events the
 * turn emits and the approvals it asks, so the turn loop knows nothing about it.
 */
export class LiveTurn {
  readonly turnId: string;
  readonly acceptedAt: string;
  /** Aborted by `turn/interrupt` (or a shutdown); the turn's signal follows it. */
  readonly interrupt = new AbortController();
  #startedAt: string | null = null;
  #lastEventAt: string;
  #modelRequests = 0;
  readonly #toolCalls = { started: 0, finished: 0, failed: 0 };
  #pendingApprovals = 0;
  #lastAgentMessage: string | null = null;
  readonly #recent: { at: string; text: string }[] = [];
  readonly #done = deferred<FinishedTurn>();

  constructor(turnId: string, now: string = new Date().toISOString()) {
    this.turnId = turnId;
    this.acceptedAt = now;
    this.#lastEventAt = now;
  }

  /** Resolves when the turn has finished (never rejects). */
  get done(): Promise<FinishedTurn> {
    return this.#done.promise;
  }

  /** True once it left the queue. */
  get started(): boolean {
    return this.#startedAt !== null;
  }

  /** When it last did something (ISO). */
  get lastEventAt(): string {
    return this.#lastEventAt;
  }

  /** It left the queue and runs now. */
  begin(now: string = new Date().toISOString()): void {
    this.#startedAt = now;
    this.#lastEventAt = now;
  }

  /** Folds one event of the turn into its progress. */
  record(event: TurnEvent, now: string = new Date().toISOString()): void {
    this.#lastEventAt = now;
    if (event.type === 'model_request') this.#modelRequests = event.step;
    else if (event.type === 'agent_message') this.#lastAgentMessage = event.text;
    else if (event.type === 'tool_started') this.#toolCalls.started += 1;
    else if (event.type === 'tool_finished') {
      this.#toolCalls.finished += 1;
      if (!event.ok) this.#toolCalls.failed += 1;
    }
    const text = describeTurnEvent(event);
    if (text === undefined) return;
    this.#recent.push({ at: now, text });
    if (this.#recent.length > RECENT_TURN_EVENTS) this.#recent.shift();
  }

  /** `inner`, counting the requests waiting for an answer (the thread then waits for approval). */
  countApprovals(inner: Approver): Approver {
    return {
      request: async (request: ApprovalRequest, signal: AbortSignal) => {
        this.#pendingApprovals += 1;
        this.#lastEventAt = new Date().toISOString();
        try {
          return await inner.request(request, signal);
        } finally {
          this.#pendingApprovals -= 1;
        }
      },
    };
  }

  /** Records how it ended and resolves {@link done}; only the first call counts. */
  finish(status: TurnStatus, lastAgentMessage: string | null, error?: string, now: string = new Date().toISOString()): FinishedTurn {
    const finished: FinishedTurn = { turnId: this.turnId, state: 'finished', status, lastAgentMessage, finishedAt: now, ...(error === undefined ? {} : { error }) };
    this.#done.resolve(finished);
    return finished;
  }

  /** Where it is now. */
  get state(): LiveTurnState {
    if (this.#startedAt === null) return 'queued';
    return this.#pendingApprovals > 0 ? 'waiting-for-approval' : 'running';
  }

  /** Its progress now. */
  snapshot(): TurnProgress {
    return {
      turnId: this.turnId,
      state: this.state,
      acceptedAt: this.acceptedAt,
      startedAt: this.#startedAt,
      modelRequests: this.#modelRequests,
      toolCalls: { ...this.#toolCalls },
      pendingApprovals: this.#pendingApprovals,
      lastAgentMessage: this.#lastAgentMessage,
      recent: this.#recent.map((entry) => ({ ...entry })),
    };
  }
}

/** What a thread's stored records say about its turns. */
export interface StoredTurns {
  /** Finished turns, oldest first, at most {@link FINISHED_TURNS_KEPT}. */
  finished: FinishedTurn[];
  /** A turn that started and has no completion record (it runs elsewhere, or the server stopped during it). */
  open?: { turnId: string; startedAt: string };
  /** The last agent message of the last finished turn that had one. */
  lastAgentMessage: string | null;
  /** The time of the last record (ISO). */
  lastActivity: string | undefined;
  /** The agent's latest plan (`update_plan`), null when it never set one. */
  plan: PlanUpdate | null;
  /** The instruction files of the latest turn that recorded them. */
  instructions: InstructionFile[] | null;
}

/** Folds a thread's stored records into its turns, without side effects. */
export function storedTurns(records: readonly ThreadBodyRecord[]): StoredTurns {
  const finished: FinishedTurn[] = [];
  let open: StoredTurns['open'];
  let lastAgentMessage: string | null = null;
  let lastActivity: string | undefined;
  let plan: PlanUpdate | null = null;
  let instructions: InstructionFile[] | null = null;
  for (const record of records) {
    lastActivity = record.at;
    if (record.type === 'item') plan = planOf(record.item) ?? plan;
    else if (record.type === 'instructions') instructions = record.files;
    else if (record.type === 'turn_started') open = { turnId: record.turnId, startedAt: record.at };
    else if (record.type === 'turn_completed') {
      if (open?.turnId === record.turnId) open = undefined;
      if (record.lastAgentMessage !== null) lastAgentMessage = record.lastAgentMessage;
      finished.push({
        turnId: record.turnId,
        state: 'finished',
        status: record.status,
        lastAgentMessage: record.lastAgentMessage,
        finishedAt: record.at,
        ...(record.error === undefined ? {} : { error: record.error }),
      });
      if (finished.length > FINISHED_TURNS_KEPT) finished.shift();
    }
  }
  return { finished, ...(open === undefined ? {} : { open }), lastAgentMessage, lastActivity, plan, instructions };
}

/** A turn asked to stop by {@link ThreadManager.interrupt}. */
export interface InterruptedTurn {
  turnId: string;
  /** The other server process asked to stop it, when the turn runs there. */
  elsewhere?: LeaseHolder;
}

/** The later of two ISO times (the first when the second is missing). */
export function latest(a: string, b: string | undefined): string {
  return b !== undefined && b > a ? b : a;
}

/** A stored turn without a completion record, as a status report shows it. */
export function unfinishedTurn(turnId: string, at: string): FinishedTurn {
  return {
    turnId,
    state: 'finished',
    status: 'interrupted',
    lastAgentMessage: null,
    error: 'the server stopped during this turn (or another server process is running it)',
    finishedAt: at,
  };
}

/** The finished turn `turnId` of a thread; a not-found error when it is unknown or too old. */
export function findTurn(threadId: string, turnId: string, finished: readonly FinishedTurn[]): FinishedTurn {
  const found = finished.find((turn) => turn.turnId === turnId);
  if (found === undefined) throw new LocalError(LocalErrorCode.NotFound, `thread ${threadId} has no turn ${turnId} (or it is older than the last ${FINISHED_TURNS_KEPT} turns)`);
  return found;
}
