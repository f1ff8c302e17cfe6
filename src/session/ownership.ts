import { hostname } from 'node:os';
import type { InterruptRequest, LeaseHolder } from '../protocol/status.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * Thread ownership: which server process may run a thread's turns and write its records. The
 * thread manager talks only to this interface; `cli/` picks the implementation: {@link
 * SoleOwnership} when no other process shares the thread store, file leases (`thread-lease.ts`)
 * when several processes share one threads folder, and lease rows in PostgreSQL (`pg-ownership.ts`)
 * when instances on many hosts share one database.
 */
export interface ThreadOwnership {
  /**
   * Takes the thread for this process (a no-op when it has it). Rejects with
   * {@link ThreadBusyError} while another live owner has it. Resolves with the thread's stamp in
   * the store (`ThreadStore.stamp`) as of the take, when the ownership reads it in the same step
   * (leases in the store's own database: one round trip for both); otherwise undefined.
   */
  acquire(threadId: string): Promise<string | undefined>;
  /** Gives the thread back (a no-op when this process does not have it). */
  release(threadId: string): void | Promise<void>;
  /** The live owner other than this process that has the thread, if any. */
  holderElsewhere(threadId: string): Promise<LeaseHolder | undefined>;
  /** Every thread another live owner has; with `among`, only those of these threads. */
  heldElsewhere(among?: Iterable<string>): Promise<Map<string, LeaseHolder>>;
  /**
   * Resolves true once no other owner has the thread (its turn there ended), false after
   * `timeoutMs` or when `signal` aborts.
   */
  waitReleased(threadId: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /** Asks the owner that has the thread to stop its turn `request.turnId`. */
  requestInterrupt(threadId: string, request: InterruptRequest): void | Promise<void>;
  /**
   * Who stops a turn when another process asks (see {@link requestInterrupt}), or every turn of a
   * thread this process lost (see {@link TurnStopRequest}); set once by the thread manager.
   */
  onInterrupt(handler: (threadId: string, request: TurnStopRequest) => void): void;
  /**
   * Tells the owner that has the thread that a client answered one of its turns' task inputs (the
   * answer is in the thread's records): the wake-up travels as interrupt requests do.
   */
  announceAnswer(threadId: string): void | Promise<void>;
  /** Who reads the answers when another process announced one (see {@link announceAnswer}) for a thread this process has; set once by the thread manager. */
  onAnswer(handler: (threadId: string) => void): void;
  /** Gives back every thread this process has and stops watching for requests. */
  releaseAll(): void | Promise<void>;
}

/**
 * What the ownership asks the thread manager to stop: the turn `turnId` (another process asked),
 * or, without `turnId`, every turn of the thread (this process lost it, e.g. its lease could not
 * be renewed, and must stop writing it before another process may take it).
 */
export type TurnStopRequest = Omit<InterruptRequest, 'turnId'> & { turnId?: string };

/** A thread another live owner is running a turn of; the MCP layer reports it with the id. */
export class ThreadBusyError extends LocalError {
  /** @param hint said last, e.g. how to free a thread whose owner cannot be checked from here */
  constructor(
    readonly threadId: string,
    readonly holder: LeaseHolder,
    hint?: string,
  ) {
    super(
      LocalErrorCode.Busy,
      `thread ${threadId} is running a turn in another codex-multienv process (${describeHolder(holder)}); its result is stored with the thread: follow it with codex-status, then continue the thread${hint === undefined ? '' : `; ${hint}`}`,
    );
  }
}

/** "pid 123 on host, since …", for messages. */
export function describeHolder(holder: LeaseHolder): string {
  const host = holder.host === hostname() ? '' : ` on ${holder.host}`;
  return `pid ${holder.pid}${host}, since ${holder.since}`;
}

/** Ownership when this process is the only one using its thread store: it always has every thread. */
export class SoleOwnership implements ThreadOwnership {
  acquire(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  release(): void {}

  holderElsewhere(): Promise<LeaseHolder | undefined> {
    return Promise.resolve(undefined);
  }

  heldElsewhere(): Promise<Map<string, LeaseHolder>> {
    return Promise.resolve(new Map<string, LeaseHolder>());
  }

  waitReleased(): Promise<boolean> {
    return Promise.resolve(true);
  }

  /** Nobody else has a thread, so there is nobody to ask. */
  requestInterrupt(): void {}

  onInterrupt(): void {}

  /** Nobody else has a thread: an answer is taken where it was given. */
  announceAnswer(): void {}

  onAnswer(): void {}

  releaseAll(): void {}
}
