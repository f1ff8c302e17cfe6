import { AsyncResource } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import type { ThreadEnvironment, TurnStatus } from '../protocol/thread.js';
import type { Channel } from '../util/channel.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { EnvironmentSelector } from './environment-selection.js';
import { FINISHED_TURNS_KEPT, LiveTurn, latest } from './live-turn.js';
import type { Thread } from './thread-table.js';
import type { ThreadStore } from './thread-store.js';
import type { EngineEvent, EngineTurnResult } from './turn-engine.js';
import type { TurnCallEvent, TurnOutcome } from './turn-stream.js';

/** Bounds of {@link TurnRunner}. */
export interface TurnRunnerLimits {
  /** Turns running at once across all threads. @default 8 */
  maxConcurrentTurns: number;
  /** Turns waiting behind a running one on the same thread. @default 4 */
  maxQueuedTurnsPerThread: number;
}

/** Options of {@link TurnRunner}. */
export interface TurnRunnerOptions {
  store: ThreadStore;
  selector: EnvironmentSelector;
  limits: TurnRunnerLimits;
  logger: Logger;
  now: () => Date;
}

/**
 * Runs turns: one at a time per thread (a bounded queue behind it), at most so many at once
 * across threads. A turn's records of its own (`turn_started`, `turn_completed`) are written
 * here; its engine's events are folded into the thread's state and forwarded to the call.
 */
export class TurnRunner {
  readonly #options: TurnRunnerOptions;
  readonly #global: PQueue;
  /** The environments each accepted turn runs in (a removal is refused while one uses it). */
  readonly #turnEnvironments = new WeakMap<LiveTurn, readonly string[]>();

  constructor(options: TurnRunnerOptions) {
    this.#options = options;
    this.#global = new PQueue({ concurrency: options.limits.maxConcurrentTurns });
  }

  /** The accepted turns (running or queued) that run in environment `id`, described for an error. */
  usersOf(id: string, threads: Iterable<Thread>): string[] {
    return [...threads].flatMap((thread) =>
      thread.live
        .filter((turn) => this.#turnEnvironments.get(turn)?.includes(id) === true)
        .map((turn) => `thread ${thread.id} (turn ${turn.turnId}, ${turn.started ? 'running' : 'queued'})`),
    );
  }

  /**
   * Accepts a turn on a thread the caller holds and runs it when its turn comes; resolves once it
   * has settled. Its events go to `call`, `finished` last.
   */
  async run(thread: Thread, prompt: string, selection: ThreadEnvironment[], signal: AbortSignal, call: Channel<TurnCallEvent>): Promise<void> {
    // Checked in the same synchronous step that makes the turn live: an environment/remove either
    // sees this turn (and refuses) or has already removed the environment (and this fails here).
    this.#options.selector.checkRegistered(selection);
    const limit = this.#options.limits.maxQueuedTurnsPerThread;
    if (thread.queue.size >= limit) {
      throw new LocalError(
        LocalErrorCode.LimitExceeded,
        `thread ${thread.id} is busy: ${thread.queue.size} turns are already waiting (limit ${limit}); wait for a response before replying again`,
      );
    }
    const turnId = randomUUID();
    // The turn is tracked (progress, approvals, interrupt) from here until it settles.
    const live = new LiveTurn(turnId, this.#at());
    thread.live.push(live);
    this.#turnEnvironments.set(
      live,
      selection.map((entry) => entry.id),
    );
    const turnSignal = AbortSignal.any([signal, live.interrupt.signal]);
    call.push({ type: 'accepted', threadId: thread.id, turnId, model: thread.settings.model });
    // The call's signal only withdraws a turn that is still waiting: p-queue races a running task
    // against its signal, which would free the thread for the next turn while this one winds down.
    const waiting = new AbortController();
    const withdraw = (): void => waiting.abort(turnSignal.reason);
    if (turnSignal.aborted) withdraw();
    else turnSignal.addEventListener('abort', withdraw, { once: true });
    // Bound to the caller's async context: p-queue starts a waiting job from the end of the one
    // before it, whose context (another caller's: where its log events go) it would otherwise run in.
    // Set when the turn ran to its end: its records are then as durable as its answer needs.
    let ranToEnd = false;
    const task = AsyncResource.bind((): Promise<TurnOutcome> => {
      turnSignal.removeEventListener('abort', withdraw);
      return this.#global.add(
        AsyncResource.bind(async () => {
          live.begin(this.#at());
          const outcome = await this.#runTurn(thread, live, prompt, selection, turnSignal, call);
          ranToEnd = true;
          return outcome;
        }),
      );
    });
    try {
      const outcome: TurnOutcome = await thread.queue.add(task, { signal: waiting.signal }).catch((error: unknown) => {
        if (error instanceof LocalError && error.code === LocalErrorCode.Fenced) {
          // Another instance took the thread over (this one's lease ran out): the turn stops here,
          // writing nothing more, as a turn interrupted by the takeover.
          live.interrupt.abort(error);
          this.#options.logger.warn('turn stopped: another instance took the thread over', { thread: thread.id, turn: turnId, error: error.message });
          return { threadId: thread.id, turnId, status: 'interrupted' as const, lastAgentMessage: thread.lastAgentMessage, error: errorMessage(error) };
        }
        if (turnSignal.aborted) return { threadId: thread.id, turnId, status: 'interrupted' as const, lastAgentMessage: thread.lastAgentMessage };
        throw error;
      });
      // The answer leaves with the outcome: what the turn wrote without a flush is made durable first
      // (a turn that ran to its end did so itself, see #runTurn).
      if (!ranToEnd) await this.#options.store.flush(thread.id);
      this.#settle(thread, live, outcome.status, outcome.lastAgentMessage, outcome.error);
      call.push({ type: 'finished', outcome });
    } catch (error) {
      // An error answer too: what the turn wrote is made durable, as far as the database lets it.
      await this.#options.store.flush(thread.id).catch(() => undefined);
      this.#settle(thread, live, 'failed', null, errorMessage(error));
      throw error;
    }
  }

  async #runTurn(thread: Thread, live: LiveTurn, prompt: string, selection: ThreadEnvironment[], signal: AbortSignal, call: Channel<TurnCallEvent>): Promise<TurnOutcome> {
    const { store, selector, logger } = this.#options;
    const turnId = live.turnId;
    // Resolved before anything is recorded or the model is called: a profile that vanished from
    // the config fails the turn here, clearly.
    const permissions = new Map(selection.map((entry) => [entry.id, selector.permissionsOf(thread.settings, entry)]));
    thread.lastActivity = this.#at();
    // In the store before anything else is prepared: other processes see the open turn at once.
    // Not awaited yet: it is written while the engine prepares. Without a flush: the completion's
    // write flushes it before the answer, and the engine flushes before it acts on the turn's
    // behalf (EngineThreadInit.flush), so one flush per turn keeps the prompt.
    const started = store.append(thread.id, { type: 'turn_started', at: this.#at(), turnId, prompt, environments: selection }, { durable: false });
    started.catch(() => undefined);
    let result: EngineTurnResult | undefined;
    try {
      for await (const event of thread.engine.run({ turnId, prompt, environments: selection, permissions, signal })) {
        if (event.type === 'completed') result = event.result;
        else this.#fold(thread, live, event, call);
      }
    } catch (error) {
      // The turn could not start (or stopped while it prepared): it ends here, recorded as such.
      await started;
      const status = signal.aborted ? 'interrupted' : 'failed';
      await store.append(thread.id, { type: 'turn_completed', at: this.#at(), turnId, status, lastAgentMessage: null, error: errorMessage(error) });
      throw error;
    }
    // A failed write of the turn's start fails the turn, as the items sharing it did.
    await started;
    if (result === undefined) throw new LocalError(LocalErrorCode.ProtocolViolation, `the turn engine ended turn ${turnId} without its result`);
    thread.lastActivity = this.#at();
    if (result.lastAgentMessage !== null) thread.lastAgentMessage = result.lastAgentMessage;
    // One write with the turn's deferred last records (see EngineTurnResult.written); the answer
    // goes out once both are durable (the completion's write flushes everything before it), and a
    // failed write of either fails the turn. Unless the engine keeps the outcome itself: then what
    // the turn wrote before is made durable, and the answer goes out while the end is written,
    // without a flush of its own (the store keeps a thread's writes in order, so the thread's next
    // turn still comes after them).
    const kept = result.outcomeKept === true;
    if (kept) await store.flush(thread.id);
    const completed = Promise.all([
      store.append(
        thread.id,
        {
          type: 'turn_completed',
          at: this.#at(),
          turnId,
          status: result.status,
          lastAgentMessage: result.lastAgentMessage,
          ...(result.error === undefined ? {} : { error: result.error }),
        },
        { durable: !kept },
      ),
      result.written,
    ]);
    if (kept) {
      completed.catch((error: unknown) =>
        logger.warn("could not record the turn's end; its engine keeps it (a restart reads it from there)", {
          thread: thread.id,
          turn: turnId,
          error: errorMessage(error),
        }),
      );
    } else {
      await completed;
    }
    logger.info('turn finished', { thread: thread.id, turn: turnId, status: result.status, error: result.error });
    return { threadId: thread.id, turnId, status: result.status, lastAgentMessage: result.lastAgentMessage, ...(result.error === undefined ? {} : { error: result.error }) };
  }

  /** One event of a running turn: into the thread's state and the turn's progress, then to the call. */
  #fold(thread: Thread, live: LiveTurn, event: Exclude<EngineEvent, { type: 'completed' }>, call: Channel<TurnCallEvent>): void {
    const turnId = live.turnId;
    switch (event.type) {
      case 'instructions':
        thread.instructions = event.files;
        return;
      case 'approval': {
        // Counted while the caller is asked: the thread waits for approval meanwhile.
        const asked = live.countApprovals({ request: (request, signal) => new Promise((respond) => call.push({ type: 'approval', turnId, request, signal, respond })) });
        void asked.request(event.request, event.signal).then(event.respond);
        return;
      }
      default:
        if (event.type === 'plan_updated') thread.plan = event.plan;
        live.record(event, this.#at());
        call.push({ ...event, turnId });
    }
  }

  /** A live turn ended: it leaves the thread's live list for its finished ones, then its waiters wake. */
  #settle(thread: Thread, live: LiveTurn, status: TurnStatus, lastAgentMessage: string | null, error?: string): void {
    const index = thread.live.indexOf(live);
    if (index !== -1) thread.live.splice(index, 1);
    const finished = live.finish(status, lastAgentMessage, error, this.#at());
    thread.finished.push(finished);
    if (thread.finished.length > FINISHED_TURNS_KEPT) thread.finished.shift();
    thread.lastActivity = latest(thread.lastActivity, finished.finishedAt);
  }

  #at(): string {
    return this.#options.now().toISOString();
  }
}
