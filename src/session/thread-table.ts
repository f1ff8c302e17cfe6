import PQueue from 'p-queue';
import type { FinishedTurn } from '../protocol/status.js';
import { THREAD_ID_PATTERN, type InstructionFile, type PlanUpdate, type ThreadConfig, type ThreadEnvironment } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { FINISHED_TURNS_KEPT, storedTurns, unfinishedTurn, type LiveTurn } from './live-turn.js';
import { ThreadBusyError, type ThreadOwnership } from './ownership.js';
import { storedCallSettings, type ResolveThreadSettings, type ResolvedThreadSettings } from './settings.js';
import { ThreadNotFoundError, promptPreview, type LoadedThread, type ThreadStore } from './thread-store.js';
import type { EngineThread, TurnEngine } from './turn-engine.js';

/** A thread the manager has in memory. */
export interface Thread {
  readonly id: string;
  readonly createdAt: string;
  readonly config: ThreadConfig;
  readonly settings: ResolvedThreadSettings;
  /** The engine's side of the thread: its history, commands, MCP servers. */
  readonly engine: EngineThread;
  sticky: ThreadEnvironment[];
  /** The first prompt, shortened, for lists. */
  preview: string | undefined;
  /** The agent's latest plan (`update_plan`). */
  plan: PlanUpdate | null;
  /** The instruction files sent for the latest turn. */
  instructions: InstructionFile[] | null;
  /** One turn at a time; the queued ones wait here. */
  readonly queue: PQueue;
  lastAgentMessage: string | null;
  lastActivity: string;
  /** Accepted turns that have not finished, in order: the running one first, then the queued. */
  live: LiveTurn[];
  /** The latest finished turns, oldest first (at most FINISHED_TURNS_KEPT). */
  finished: FinishedTurn[];
  /**
   * The store's {@link ThreadStore.stamp} when this process last let go of the thread (or read
   * it); a different stamp later means another owner wrote it, and the thread is read again.
   */
  stamp: string | undefined;
}

/** What a new thread starts with. */
export interface NewThread {
  id: string;
  createdAt: string;
  config: ThreadConfig;
  settings: ResolvedThreadSettings;
  sticky: ThreadEnvironment[];
  preview: string;
}

/** This process's hold on a thread: it owns the thread while `count` > 0. */
interface ThreadClaim {
  count: number;
  /** The thread, current with the store, once it is owned. */
  ready: Promise<Thread>;
  /** The store's stamp after this process's last write of the thread when the hold began (see `ThreadStore.writtenStamp`). */
  writtenBefore: string | undefined;
}

/** The longest pause between two looks for idle threads. */
const IDLE_SWEEP_MAX_INTERVAL_MS = 60_000;

/**
 * How long a call waits for another process to give a thread back when that process holds it
 * with no turn open in the store (its turn ended and its call was answered; the lease follows a
 * moment later): a client that continues a thread on another instance right after the answer
 * gets it instead of a busy error.
 */
const WINDING_DOWN_WAIT_MS = 5_000;

/** Options of {@link ThreadTable}. */
export interface ThreadTableOptions {
  store: ThreadStore;
  ownership: ThreadOwnership;
  engine: TurnEngine;
  resolveSettings: ResolveThreadSettings;
  logger: Logger;
  now: () => Date;
  /** Threads idle this long are let go (see `ThreadLimits.idleThreadUnloadMs`); 0 never. */
  idleThreadUnloadMs: number;
}

/**
 * The threads this process has in memory: loads them from the store (rebuilding their state from
 * the records, closing a turn the server did not finish), holds them while a call uses them (the
 * thread's ownership is taken for as long), and lets go of idle ones.
 */
export class ThreadTable {
  readonly #options: ThreadTableOptions;
  readonly #threads = new Map<string, Thread>();
  readonly #loading = new Map<string, Promise<Thread>>();
  readonly #claims = new Map<string, ThreadClaim>();
  /** Threads being given back; a new claim of the thread waits for its release first. */
  readonly #releasing = new Map<string, Promise<void>>();
  /**
   * Threads whose release still waits for their stamp (behind their last writes, e.g. a turn's
   * completion record written after its answer): nothing is given back yet, so a new claim keeps
   * the thread as it is, without waiting for those writes, and the release is called off.
   */
  readonly #stamping = new Set<string>();
  readonly #idleSweep: NodeJS.Timeout | undefined;

  constructor(options: ThreadTableOptions) {
    this.#options = options;
    const idleMs = options.idleThreadUnloadMs;
    if (idleMs > 0) {
      this.#idleSweep = setInterval(() => this.#unloadIdle(idleMs), Math.min(IDLE_SWEEP_MAX_INTERVAL_MS, Math.max(idleMs / 2, 10)));
      this.#idleSweep.unref();
    }
  }

  /** A loaded thread. */
  get(threadId: string): Thread | undefined {
    return this.#threads.get(threadId);
  }

  /** Every loaded thread. */
  values(): IterableIterator<Thread> {
    return this.#threads.values();
  }

  get size(): number {
    return this.#threads.size;
  }

  /** Whether a call of this process holds the thread now. */
  isHeld(threadId: string): boolean {
    return this.#claims.has(threadId);
  }

  /** Adds a thread just created in the store. */
  async add(created: NewThread): Promise<Thread> {
    const engine = await this.#engineOf(created.id, created.config, created.settings, []);
    const thread = this.#newThread(created.id, created.createdAt, created.config, created.settings, created.sticky, engine);
    thread.preview = created.preview;
    this.#threads.set(created.id, thread);
    return thread;
  }

  /**
   * Takes this process's hold on a thread: its ownership (so no other process writes it
   * meanwhile), and the thread itself, loaded, or read again when another owner wrote it since.
   * Every hold is paired with {@link unhold}.
   */
  async hold(threadId: string): Promise<Thread> {
    let claim = this.#claims.get(threadId);
    if (claim === undefined) {
      claim = { count: 0, ready: this.#claim(threadId), writtenBefore: this.#options.store.writtenStamp(threadId) };
      this.#claims.set(threadId, claim);
    }
    claim.count += 1;
    try {
      const thread = await claim.ready;
      // A no-op while this process has the thread; taken again (or refused) when the ownership lost
      // it while an earlier call's turn was winding down, so no turn starts without it.
      await this.#options.ownership.acquire(threadId);
      return thread;
    } catch (error) {
      await this.unhold(threadId);
      throw error;
    }
  }

  async #claim(threadId: string): Promise<Thread> {
    const { store } = this.#options;
    const kept = this.#threads.get(threadId);
    // This process never gave it up (see #stamping): no other process can have written it since.
    if (kept !== undefined && this.#stamping.has(threadId)) return kept;
    await this.#releasing.get(threadId);
    if (!this.#threads.has(threadId) && (!THREAD_ID_PATTERN.test(threadId) || (await store.stamp(threadId)) === undefined)) {
      throw new ThreadNotFoundError(threadId, THREAD_ID_PATTERN.test(threadId) ? store.archivedHint(threadId) : undefined);
    }
    const taken = await this.#acquire(threadId);
    const loaded = this.#threads.get(threadId);
    if (loaded === undefined || loaded.stamp === undefined || loaded.live.length > 0) return this.#get(threadId);
    if ((taken ?? (await store.stamp(threadId))) === loaded.stamp) return loaded;
    // Another owner ran turns of this thread since this process let go of it: read it again.
    this.#options.logger.info('thread changed in another process; reading it again', { thread: threadId });
    await this.letGo(loaded, { keep: false });
    return this.#get(threadId);
  }

  /**
   * Takes the thread's ownership; waits a moment for a holder elsewhere whose turn already ended (see
   * {@link WINDING_DOWN_WAIT_MS}). Resolves with the stamp read with the take, if the ownership reads one.
   */
  async #acquire(threadId: string): Promise<string | undefined> {
    const { store, ownership } = this.#options;
    try {
      return await ownership.acquire(threadId);
    } catch (error) {
      if (!(error instanceof ThreadBusyError)) throw error;
      const summary = await store.summary(threadId).catch(() => undefined);
      // A turn open in the store runs there: refused at once, as a busy thread is.
      if (summary === undefined || summary.error !== undefined || summary.lastStatus === 'incomplete') throw error;
      if (!(await ownership.waitReleased(threadId, WINDING_DOWN_WAIT_MS))) throw error;
      return ownership.acquire(threadId);
    }
  }

  /** Ends a hold taken with {@link hold}; the last one gives the thread's ownership back. */
  async unhold(threadId: string): Promise<void> {
    const claim = this.#claims.get(threadId);
    if (claim === undefined) return;
    claim.count -= 1;
    if (claim.count > 0) return;
    this.#claims.delete(threadId);
    const releasing = (async (): Promise<void> => {
      const thread = this.#threads.get(threadId);
      // Taken before the thread is given back (another owner may write it from then on). When the
      // hold wrote the thread, the stamp its last write left is as good (a later write by anyone
      // makes them differ, and the thread is read again) and costs no round trip.
      const written = this.#options.store.writtenStamp(threadId);
      let stamp: string | undefined;
      if (written !== undefined && written !== claim.writtenBefore) {
        stamp = written;
      } else {
        this.#stamping.add(threadId);
        try {
          stamp = await this.#options.store.stamp(threadId).catch(() => undefined);
        } finally {
          this.#stamping.delete(threadId);
        }
        // Claimed again meanwhile: that hold keeps the ownership and gives it back when it ends.
        if (this.#claims.has(threadId)) return;
      }
      if (thread !== undefined) thread.stamp = stamp;
      await this.#options.ownership.release(threadId);
    })();
    this.#releasing.set(threadId, releasing);
    try {
      await releasing;
    } finally {
      if (this.#releasing.get(threadId) === releasing) this.#releasing.delete(threadId);
    }
  }

  /**
   * Drops a loaded thread from memory and lets its engine stop what it started (its commands, its
   * MCP servers); with `keep`, the engine keeps what must outlive an idle unload.
   */
  async letGo(thread: Thread, options: { keep: boolean }): Promise<void> {
    if (this.#threads.get(thread.id) === thread) this.#threads.delete(thread.id);
    await thread.engine.close(options);
  }

  /** Reads a stored thread without loading it; a missing or unreadable id is not found. */
  async readOnly(threadId: string): Promise<LoadedThread> {
    let loaded: LoadedThread | undefined;
    try {
      loaded = await this.#options.store.load(threadId);
    } catch (error) {
      if (error instanceof LocalError && error.code === LocalErrorCode.InvalidArgument) throw new ThreadNotFoundError(threadId);
      throw error;
    }
    if (loaded === undefined) throw new ThreadNotFoundError(threadId);
    return loaded;
  }

  /** Stops the idle sweep and lets go of every thread. */
  async close(): Promise<void> {
    clearInterval(this.#idleSweep);
    await Promise.all([...this.#threads.values()].map((thread) => this.letGo(thread, { keep: false })));
  }

  /**
   * Lets go of threads idle for `idleMs`: no live turn, no hold, no command still registered
   * (its output must stay readable). The store has everything else, and the engine keeps what
   * must outlive the unload.
   */
  #unloadIdle(idleMs: number): void {
    const now = this.#options.now().getTime();
    for (const thread of [...this.#threads.values()]) {
      const id = thread.id;
      if (thread.live.length > 0 || thread.engine.activeCommands > 0 || this.#claims.has(id) || this.#releasing.has(id) || this.#loading.has(id)) continue;
      const idleFor = now - Date.parse(thread.lastActivity);
      if (!(idleFor >= idleMs)) continue;
      this.#options.logger.info('thread let go after being idle', { thread: id, idleSec: Math.round(idleFor / 1000) });
      this.letGo(thread, { keep: true }).catch((error: unknown) =>
        this.#options.logger.warn("stopping an idle thread's MCP servers failed", { thread: id, error: errorMessage(error) }),
      );
    }
  }

  async #get(threadId: string): Promise<Thread> {
    const loaded = this.#threads.get(threadId);
    if (loaded !== undefined) return loaded;
    let loading = this.#loading.get(threadId);
    if (loading === undefined) {
      loading = this.#load(threadId).finally(() => this.#loading.delete(threadId));
      this.#loading.set(threadId, loading);
    }
    return loading;
  }

  /** Rebuilds a stored thread; a turn the server did not finish is closed as interrupted. */
  async #load(threadId: string): Promise<Thread> {
    const { store, logger } = this.#options;
    // The store logged its warnings (once per thread for records of unknown kinds).
    const loaded = await this.readOnly(threadId);
    let sticky = loaded.header.environments;
    let lastAgentMessage: string | null = null;
    let firstPrompt: string | undefined;
    for (const record of loaded.records) {
      if (record.type === 'environments_changed') sticky = record.environments;
      else if (record.type === 'turn_started') firstPrompt ??= record.prompt;
      else if (record.type === 'turn_completed') lastAgentMessage = record.lastAgentMessage;
    }
    const config = loaded.header.config;
    const settings = this.#options.resolveSettings(storedCallSettings(config));
    const engine = await this.#engineOf(threadId, config, settings, loaded.records);
    const turns = storedTurns(loaded.records);
    let repaired: FinishedTurn | undefined;
    if (turns.open !== undefined) {
      const turnId = turns.open.turnId;
      // The engine may know how the turn ended (Codex's rollout): the turn was answered, and the
      // server stopped before its completion record was durable.
      const recovered = await engine.recoverInterruptedTurn(turnId);
      const at = this.#at();
      const outcome = recovered ?? { status: 'interrupted' as const, lastAgentMessage, error: 'the server stopped during this turn' };
      await store.append(threadId, {
        type: 'turn_completed',
        at,
        turnId,
        status: outcome.status,
        lastAgentMessage: outcome.lastAgentMessage,
        ...(outcome.error === undefined ? {} : { error: outcome.error }),
      });
      if (recovered === undefined) {
        logger.warn('closed a turn the server did not finish before it stopped', { thread: threadId, turn: turnId });
        repaired = unfinishedTurn(turnId, at);
      } else {
        logger.info("recorded the end of a turn from its engine's store (the server stopped before recording it)", { thread: threadId, turn: turnId, status: recovered.status });
        if (recovered.lastAgentMessage !== null) lastAgentMessage = recovered.lastAgentMessage;
        repaired = {
          turnId,
          state: 'finished',
          status: recovered.status,
          lastAgentMessage: recovered.lastAgentMessage,
          finishedAt: at,
          ...(recovered.error === undefined ? {} : { error: recovered.error }),
        };
      }
    }
    const thread = this.#newThread(threadId, loaded.header.createdAt, config, settings, sticky, engine);
    thread.lastAgentMessage = lastAgentMessage;
    if (firstPrompt !== undefined) thread.preview = promptPreview(firstPrompt);
    thread.plan = turns.plan;
    thread.instructions = turns.instructions;
    thread.finished = repaired === undefined ? turns.finished : [...turns.finished, repaired].slice(-FINISHED_TURNS_KEPT);
    if (turns.lastActivity !== undefined) thread.lastActivity = turns.lastActivity;
    this.#threads.set(threadId, thread);
    logger.info('thread reloaded from the store', { thread: threadId, records: loaded.records.length });
    return thread;
  }

  #engineOf(threadId: string, config: ThreadConfig, settings: ResolvedThreadSettings, records: LoadedThread['records']): Promise<EngineThread> {
    const store = this.#options.store;
    return this.#options.engine.open({
      threadId,
      config,
      settings,
      records,
      record: (record, options) => store.append(threadId, record, options),
      flush: () => store.flushBeforeActing(threadId),
    });
  }

  #newThread(id: string, createdAt: string, config: ThreadConfig, settings: ResolvedThreadSettings, sticky: ThreadEnvironment[], engine: EngineThread): Thread {
    return {
      id,
      createdAt,
      config,
      settings,
      engine,
      sticky,
      preview: undefined,
      plan: null,
      instructions: null,
      queue: new PQueue({ concurrency: 1 }),
      lastAgentMessage: null,
      lastActivity: createdAt,
      live: [],
      finished: [],
      stamp: undefined,
    };
  }

  #at(): string {
    return this.#options.now().toISOString();
  }
}
