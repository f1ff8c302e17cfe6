import type { ApprovalDecision, ApprovalRequest } from '../agent/approvals.js';
import type { TurnEvent } from '../agent/turn.js';
import type { PermissionProfile } from '../config/permissions.js';
import type { McpServerStatus } from '../environments/mcp-servers.js';
import type { ThreadContext } from '../protocol/status.js';
import type { InstructionFile, ThreadBodyRecord, ThreadConfig, ThreadEnvironment, TurnStatus } from '../protocol/thread.js';
import type { ResolvedThreadSettings } from './settings.js';
import { Channel } from '../util/channel.js';
import type { AppendOptions, NewThreadRecord } from './thread-store.js';

/**
 * The turn engine: what the thread manager asks of "the thing that runs a turn". The manager
 * owns threads, queues, environments selection, ownership and the turn records (`turn_started`,
 * `turn_completed`); an engine owns what a turn does and the records only it understands (the
 * built-in agent's history items and compactions; an external agent's thread mapping). A turn is
 * an async stream of tagged events; the manager folds it into the thread's state and forwards it
 * to the caller.
 */
export interface TurnEngine {
  /**
   * Opens a thread's engine side: a new thread (no records) or a stored one, rebuilt from its
   * records. Nothing is started until a turn runs; the first open may load the engine's modules
   * (see `LazyEngine`), which is why it is asynchronous.
   */
  open(thread: EngineThreadInit): Promise<EngineThread>;
}

/** What an engine gets to open a thread. */
export interface EngineThreadInit {
  threadId: string;
  config: ThreadConfig;
  settings: ResolvedThreadSettings;
  /** The thread's stored records after its header, in order (none for a new thread). */
  records: readonly ThreadBodyRecord[];
  /**
   * Appends one record to the thread in the store; resolves once it is durable, or only written
   * with `durable: false` (`defer`, `durable`: see {@link AppendOptions}).
   */
  record(record: NewThreadRecord, options?: AppendOptions): Promise<void>;
  /**
   * Makes the thread's records so far safe to act on (see `ThreadStore.flushBeforeActing`). The
   * turn's start is written with `durable: false`: an engine calls this (or makes a durable write)
   * before it acts outside the store on the turn's behalf, e.g. runs a command, so a crash of the
   * database cannot lose the turn, or the lease it runs under, while its effects stay.
   */
  flush(): Promise<void>;
}

/** A thread's engine side while the thread is loaded. */
export interface EngineThread {
  /**
   * Runs one turn. The stream ends with one `completed` event; it throws when the turn could not
   * start (an environment unreachable while preparing, an abort meanwhile).
   */
  run(turn: EngineTurn): AsyncIterable<EngineEvent>;
  /**
   * Makes the thread whole after a turn without a completion record (the server stopped during it,
   * or before that record was durable): records what the engine needs (answers to tool calls left
   * without one), and says how the turn ended when the engine's own store knows it (see
   * {@link EngineTurnResult.outcomeKept}); undefined, and the manager records it interrupted.
   */
  recoverInterruptedTurn(turnId: string): Promise<RecoveredTurn | undefined>;
  /** What the thread's context holds, for status reports. */
  context(): ThreadContext;
  /** Commands the thread started that are still registered (their output must stay readable): the thread stays loaded. */
  readonly activeCommands: number;
  /** The thread's MCP servers with their state. */
  mcpServers(): McpServerStatus[];
  /**
   * Lets go of the thread's resources (its commands, its MCP servers). With `keep`, what must
   * outlive an idle unload (the user's "approve for this session" answers) is kept for the next
   * {@link TurnEngine.open} of the thread; without it, it is forgotten.
   */
  close(options: { keep: boolean }): Promise<void>;
}

/** One turn as the manager hands it to an engine. */
export interface EngineTurn {
  turnId: string;
  prompt: string;
  /** The turn's environments, primary first. */
  environments: readonly ThreadEnvironment[];
  /** Each environment's permission profile in this turn, resolved before anything was recorded. */
  permissions: ReadonlyMap<string, PermissionProfile>;
  /** Interrupts the turn. */
  signal: AbortSignal;
}

/** How an engine's turn ended. */
export interface EngineTurnResult {
  status: TurnStatus;
  lastAgentMessage: string | null;
  error?: string;
  /**
   * The turn's last records, appended deferred and still being written: they go in one write with
   * the turn's completion record, and the turn is not over (nor answered) before they are durable;
   * a failed write fails the turn.
   */
  written?: Promise<unknown>;
  /**
   * The engine's own store keeps how the turn ended, and {@link EngineThread.recoverInterruptedTurn}
   * reads it back after a restart: the turn is answered while its completion record is still
   * being written (a failed write is logged, not the turn's failure).
   * @default false
   */
  outcomeKept?: boolean;
}

/** How a turn without a completion record ended, as the engine's own store has it. */
export type RecoveredTurn = Pick<EngineTurnResult, 'status' | 'lastAgentMessage' | 'error'>;

/** What a turn reports while it runs. */
export type EngineEvent =
  | TurnEvent
  /** The instruction files the turn sends (AGENTS.md and the global ones). */
  | { type: 'instructions'; files: InstructionFile[] }
  /**
   * The turn asks the user before it acts and waits for `respond`, which must be called once
   * (a denial when in doubt); `signal` aborts when the turn no longer needs the answer.
   */
  | { type: 'approval'; request: ApprovalRequest; signal: AbortSignal; respond: (decision: ApprovalDecision) => void }
  | { type: 'completed'; result: EngineTurnResult };

/**
 * A turn's event stream for an engine: `run` pushes the turn's events and resolves with its
 * result, which becomes the `completed` event; a rejection is thrown to the reader. An approval
 * nobody will read any more is denied rather than left waiting.
 */
export function engineTurnStream(run: (events: Channel<EngineEvent>) => Promise<EngineTurnResult>): AsyncIterable<EngineEvent> {
  const events = new Channel<EngineEvent>((event) => {
    if (event.type === 'approval') event.respond({ decision: 'denied', reason: 'nobody is following this turn' });
  });
  run(events).then(
    (result) => {
      events.push({ type: 'completed', result });
      events.end();
    },
    (error: unknown) => events.fail(error),
  );
  return events;
}
