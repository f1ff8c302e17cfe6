import { randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import type { ApprovalPolicy } from '../agent/approvals.js';
import type { EnvironmentEntry } from '../config/environment-spec.js';
import { describeProfile } from '../config/permissions.js';
import type { McpServerStatus } from '../environments/mcp-servers.js';
import type { Environment } from '../environments/environment.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import type { LeaseHolder, ThreadState, ThreadStatus, TurnProgress } from '../protocol/status.js';
import type { ThreadConfig } from '../protocol/thread.js';
import { settlesWithin } from '../util/abort.js';
import { Channel } from '../util/channel.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { EnvironmentSelector, commandEnvironmentProvenance, type EnvironmentSelection } from './environment-selection.js';
import { storedTurns, type InterruptedTurn } from './live-turn.js';
import { SoleOwnership, ThreadBusyError, describeHolder, type ThreadOwnership } from './ownership.js';
import { checkProfile, threadConfigOf, type CallSettings, type ResolveThreadSettings, type ResolvedThreadSettings } from './settings.js';
import { decodeListCursor, listEntries, loadedStatus, mergePage, storedStatus, type ThreadListPage } from './thread-reports.js';
import { promptPreview, type ThreadStore, type ThreadSummary, type ThreadSummaryPage } from './thread-store.js';
import { ThreadTable, type Thread } from './thread-table.js';
import type { TurnEngine } from './turn-engine.js';
import { ThreadTasks, type KnownTurn } from './thread-tasks.js';
import { TurnRunner, type TurnRunnerLimits } from './turn-runner.js';
import type { TurnCallEvent, TurnCallOptions } from './turn-stream.js';

/** The per-call settings of `codex` (the old tool's arguments, plus environments). */
export interface StartThreadParams {
  prompt: string;
  model?: string;
  profile?: string;
  cwd?: string;
  approvalPolicy?: ApprovalPolicy;
  sandbox?: ThreadConfig['sandbox'];
  config?: Record<string, unknown>;
  baseInstructions?: string;
  developerInstructions?: string;
  compactPrompt?: string;
  /** Omitted: the default environments; `[]`: no environment access; first is primary. */
  environments?: EnvironmentSelection[];
}

/** The settings of `codex-reply`. */
export interface ReplyParams {
  threadId: string;
  prompt: string;
  /** This turn only: omitted inherits the sticky selection, `[]` means no environment access. */
  environments?: EnvironmentSelection[];
  /** Replaces the sticky selection for this and later turns. */
  stickyEnvironments?: EnvironmentSelection[];
}

/** Bounds of {@link ThreadManager}. */
export interface ThreadLimits extends TurnRunnerLimits {
  /**
   * A loaded thread with no turn and no running command for this long is let go: its MCP servers
   * stop and its memory is freed; the next call reads it from the store again. 0 never. @default 0
   */
  idleThreadUnloadMs?: number;
}

/** Options of {@link ThreadManager}. */
export interface ThreadManagerOptions {
  registry: EnvironmentRegistry;
  store: ThreadStore;
  /** Runs the turns. */
  engine: TurnEngine;
  /** Who may run which thread when several server processes share the store. @default SoleOwnership */
  ownership?: ThreadOwnership;
  resolveSettings: ResolveThreadSettings;
  /** Thread cwd when a call gives none (the server's working directory). */
  defaultCwd: string;
  limits: ThreadLimits;
  logger?: Logger;
  /** The clock of records and reports. @default () => new Date() */
  now?: () => Date;
}

/** The outcome of {@link ThreadManager.closeThread}. */
export interface ClosedThread {
  threadId: string;
  /** Where the thread went, when archived. */
  archivedTo: string | null;
  /** Commands of the thread (running, or finished with unread output) that were stopped. */
  stoppedCommands: number;
  /** MCP servers of the thread that were running. */
  stoppedMcpServers: number;
}

/** What {@link ThreadManager.list} is asked for. */
export interface ThreadListOptions {
  /** Only threads in this state. */
  status?: ThreadState;
  /** At most this many threads. */
  limit: number;
  /** The `nextCursor` of the previous page; omitted: the first page. */
  cursor?: string;
}

/**
 * The session layer's face: starts threads and runs their turns (each call gets the turn as a
 * stream of events), reports them, interrupts and closes them. The work is done by the modules
 * behind it: the thread table (threads in memory, holds, loading), the turn runner (queues and a
 * turn's records), the turn engine (what a turn does), the thread store (the records) and thread
 * ownership (which process runs which thread).
 */
export class ThreadManager {
  readonly #options: ThreadManagerOptions;
  readonly #logger: Logger;
  readonly #now: () => Date;
  readonly #ownership: ThreadOwnership;
  readonly #selector: EnvironmentSelector;
  readonly #threads: ThreadTable;
  readonly #runner: TurnRunner;
  #defaults?: ResolvedThreadSettings;
  /** The MCP tasks of the threads, kept as records of their threads (see thread-tasks.ts). */
  readonly tasks: ThreadTasks;

  constructor(options: ThreadManagerOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? (() => new Date());
    this.#ownership = options.ownership ?? new SoleOwnership();
    this.#selector = new EnvironmentSelector(options.registry, this.#logger);
    this.#threads = new ThreadTable({
      store: options.store,
      ownership: this.#ownership,
      engine: options.engine,
      resolveSettings: options.resolveSettings,
      logger: this.#logger,
      now: this.#now,
      idleThreadUnloadMs: options.limits.idleThreadUnloadMs ?? 0,
    });
    this.#runner = new TurnRunner({ store: options.store, selector: this.#selector, limits: options.limits, logger: this.#logger, now: this.#now });
    this.tasks = new ThreadTasks({ store: options.store, turns: this, now: this.#now });
    this.#ownership.onInterrupt((threadId, request) => {
      const live = this.#threads.get(threadId)?.live ?? [];
      for (const turn of request.turnId === undefined ? [...live] : live.filter((each) => each.turnId === request.turnId)) {
        this.#logger.info('interrupting a turn at the request of the thread ownership', { thread: threadId, turn: turn.turnId, reason: request.reason });
        turn.interrupt.abort(new LocalError(LocalErrorCode.Aborted, request.reason));
      }
    });
    this.#ownership.onAnswer((threadId) => {
      this.tasks.collectAnswers(threadId).catch((error: unknown) => {
        // Unread, the answer is as good as none: the input is denied at its deadline.
        this.#logger.warn('cannot read the answers to task inputs', { thread: threadId, error: errorMessage(error) });
      });
    });
  }

  /** Starts a thread and runs its first turn. Invalid settings fail (from the stream) before any model call. */
  startThread(params: StartThreadParams, options: TurnCallOptions): AsyncIterable<TurnCallEvent> {
    return this.#call((call) => this.#startThread(params, options.signal, call));
  }

  /**
   * Runs the next turn of a thread, loading it from the store after a restart (or when another
   * process wrote it since). A thread another owner is running a turn of fails with
   * `ThreadBusyError`.
   */
  reply(params: ReplyParams, options: TurnCallOptions): AsyncIterable<TurnCallEvent> {
    return this.#call((call) => this.#reply(params, options.signal, call));
  }

  /** A call's stream, fed by `run`; an approval nobody will read any more is denied. */
  #call(run: (call: Channel<TurnCallEvent>) => Promise<void>): AsyncIterable<TurnCallEvent> {
    const call = new Channel<TurnCallEvent>((event) => {
      if (event.type === 'approval') event.respond({ decision: 'denied', reason: 'the call that started this turn stopped following it' });
    });
    run(call).then(
      () => call.end(),
      (error: unknown) => call.fail(error),
    );
    return call;
  }

  async #startThread(params: StartThreadParams, signal: AbortSignal, call: Channel<TurnCallEvent>): Promise<void> {
    const cwd = params.cwd ?? this.#options.defaultCwd;
    if (!isAbsolute(cwd)) throw new LocalError(LocalErrorCode.InvalidArgument, `cwd \`${cwd}\` must be an absolute path`);
    const pinned: CallSettings = {
      model: params.model,
      profile: params.profile,
      approvalPolicy: params.approvalPolicy,
      sandbox: params.sandbox,
      configOverrides: params.config ?? {},
      baseInstructions: params.baseInstructions,
      developerInstructions: params.developerInstructions,
      compactPrompt: params.compactPrompt,
    };
    const settings = this.#options.resolveSettings(pinned);
    const config = threadConfigOf(settings, pinned, cwd);
    const sticky = await this.#selector.resolve(params.environments, undefined, cwd, params.cwd !== undefined, settings);
    const id = randomUUID();
    const createdAt = this.#now().toISOString();
    await this.#options.store.create({ threadId: id, createdAt, config, environments: sticky });
    const thread = await this.#threads.add({ id, createdAt, config, settings, sticky, preview: promptPreview(params.prompt) });
    this.#logger.info('thread started', { thread: id, environments: sticky.map((e) => e.id) });
    await this.#threads.hold(id);
    try {
      await this.#runner.run(thread, params.prompt, sticky, signal, call);
    } finally {
      await this.#threads.unhold(id);
    }
  }

  async #reply(params: ReplyParams, signal: AbortSignal, call: Channel<TurnCallEvent>): Promise<void> {
    const thread = await this.#threads.hold(params.threadId);
    try {
      let selection = thread.sticky;
      if (params.stickyEnvironments !== undefined) {
        const sticky = await this.#selector.resolve(params.stickyEnvironments, thread.sticky, thread.config.cwd, false, thread.settings);
        thread.sticky = sticky;
        await this.#options.store.append(thread.id, { type: 'environments_changed', at: this.#now().toISOString(), environments: sticky });
        selection = sticky;
      }
      if (params.environments !== undefined) selection = await this.#selector.resolve(params.environments, thread.sticky, thread.config.cwd, false, thread.settings);
      await this.#runner.run(thread, params.prompt, selection, signal, call);
    } finally {
      await this.#threads.unhold(params.threadId);
    }
  }

  /**
   * Closes a thread that has no running turn: stops its registered commands and its MCP servers
   * and lets go of it; with `archive`, also archives it in the store, so it is no longer listed
   * or continued (nothing is deleted). Without `archive`, its next call reads it back as after a
   * restart.
   * @throws ThreadNotFoundError, ThreadBusyError (another owner runs it), or a LocalError
   *   `INVALID_ARGUMENT` while a turn of it runs here.
   */
  async closeThread(threadId: string, options: { archive: boolean }): Promise<ClosedThread> {
    const thread = await this.#threads.hold(threadId);
    try {
      if (thread.live.length > 0) {
        throw new LocalError(
          LocalErrorCode.InvalidArgument,
          `thread ${threadId} has a turn running (${thread.live[0]?.turnId ?? '?'}); stop it with turn/interrupt first, or wait for it (codex-status with waitMs)`,
        );
      }
      const stoppedCommands = thread.engine.activeCommands;
      const stoppedMcpServers = thread.engine.mcpServers().filter((server) => server.state === 'ready' || server.state === 'starting').length;
      await this.#threads.letGo(thread, { keep: false });
      const archivedTo = options.archive ? await this.#options.store.archive(threadId) : undefined;
      this.#logger.info(archivedTo === undefined ? 'thread closed' : 'thread closed and archived', { thread: threadId, stoppedCommands, stoppedMcpServers, archivedTo });
      return { threadId, archivedTo: archivedTo ?? null, stoppedCommands, stoppedMcpServers };
    } finally {
      await this.#threads.unhold(threadId);
    }
  }

  /**
   * Removes an environment added at run time (`environment/remove`) and closes its connection,
   * unless a turn accepted by this process (running or queued) runs in it. Threads whose sticky
   * selection names it fail their next turn before any model request, as after a restart.
   * @throws LocalError `BUSY` naming the threads and turns that use it; the registry's errors for
   *   an unknown id or an environment that was not added at run time.
   */
  async removeEnvironment(id: string): Promise<{ removed: Environment; restored: Environment | undefined }> {
    this.assertEnvironmentUnused(id, 'remove');
    // No await before this: the check above and the removal are one step (see TurnRunner.run).
    const { removed, restored, closed } = this.#options.registry.remove(id);
    await closed;
    return { removed, restored };
  }

  /**
   * Registers an environment at run time (`environment/add`), or replaces the one of the same id
   * unless a turn accepted by this process (running or queued) runs in it: replacing would close
   * the connection its commands run on and send its next tool calls to another endpoint. Threads
   * that only name it (sticky, no turn now) use the new definition from their next turn.
   * @throws LocalError `BUSY` naming the threads and turns that use it; the registry's errors for
   *   an invalid entry.
   */
  async addEnvironment(entry: EnvironmentEntry): Promise<Environment> {
    this.assertEnvironmentUnused(entry.id, 'replace');
    // No await before this: the check above and the replacement are one step (see TurnRunner.run);
    // the registry swaps the entry before its first await.
    return this.#options.registry.add(entry);
  }

  /**
   * Throws a LocalError `BUSY` naming the turns (running or queued) that run in environment `id`,
   * saying it cannot be `action`d until they end; nothing when none does.
   */
  assertEnvironmentUnused(id: string, action: 'remove' | 'replace'): void {
    const users = this.#runner.usersOf(id, this.#threads.values());
    if (users.length === 0) return;
    const them = users.length === 1 ? 'it' : 'them';
    throw new LocalError(
      LocalErrorCode.Busy,
      `environment \`${id}\` is in use by ${users.length === 1 ? 'a turn' : `${users.length} turns`}: ${users.join(', ')}; wait for ${them} (codex-status with waitMs) or stop ${them} (turn/interrupt), then ${action} the environment`,
    );
  }

  /**
   * Throws a LocalError `INVALID_ARGUMENT` naming the known profiles unless `name` is a
   * permission profile of the current configuration.
   */
  checkPermissions(name: string): void {
    checkProfile(this.#defaultSettings(), name, 'permissions');
  }

  /** Settings with nothing pinned; the config is read once at start-up, so this is cached. */
  #defaultSettings(): ResolvedThreadSettings {
    this.#defaults ??= this.#options.resolveSettings({ configOverrides: {} });
    return this.#defaults;
  }

  /**
   * What commands get on an environment under the current configuration (status tools): its
   * permissions (its own profile, else the default) and where its variables come from.
   */
  environmentPolicy(environment: { id: string; kind: string; permissions?: string }): { permissions: string; commandEnvironment: string } {
    const settings = this.#defaultSettings();
    let permissions: string;
    try {
      permissions = describeProfile(environment.permissions === undefined ? settings.permissions : settings.permissionProfile(environment.permissions));
    } catch (error) {
      permissions = `invalid: ${errorMessage(error)}`;
    }
    if (environment.permissions === undefined) permissions = `${permissions} (the thread default unless a thread picks another)`;
    return { permissions, commandEnvironment: commandEnvironmentProvenance(environment.kind === 'local', settings.shellEnvironmentPolicy) };
  }

  /** Known threads in memory (the store lists the others). */
  get loadedThreadCount(): number {
    return this.#threads.size;
  }

  /**
   * The state of a thread. A thread this process has not loaded is read from the store without
   * loading it (no settings resolved), so another owner may run its open turn; an open turn that
   * nobody runs is repaired first (the thread is loaded), for its engine may know how it ended.
   */
  async status(threadId: string, turnId?: string): Promise<ThreadStatus> {
    const thread = this.#threads.get(threadId);
    if (thread !== undefined && (this.#threads.isHeld(threadId) || thread.live.length > 0)) {
      // An answer about a turn running here: what it wrote so far is made durable first.
      await this.flush(threadId);
      return loadedStatus(thread, turnId);
    }
    const elsewhere = await this.#ownership.holderElsewhere(threadId);
    if (thread !== undefined && elsewhere === undefined && (await this.#options.store.stamp(threadId)) === thread.stamp) return loadedStatus(thread, turnId);
    // Not loaded here, or written by another owner since: the store is the truth.
    const stored = await this.#threads.readOnly(threadId);
    if (elsewhere !== undefined || storedTurns(stored.records).open === undefined) return storedStatus(threadId, stored, elsewhere, turnId);
    const repaired = await this.#threads.hold(threadId).catch((error: unknown) => {
      // Taken by another owner meanwhile: its turn may be running there.
      if (error instanceof ThreadBusyError) return undefined;
      throw error;
    });
    if (repaired === undefined) return storedStatus(threadId, await this.#threads.readOnly(threadId), await this.#ownership.holderElsewhere(threadId), turnId);
    try {
      return loadedStatus(repaired, turnId);
    } finally {
      await this.#threads.unhold(threadId);
    }
  }

  /**
   * Opens what listings read (the store's summary index), for after start-up: the first `list()`
   * then does not wait for it. A failure is left for `list()` to report.
   */
  async warmUp(): Promise<void> {
    await this.#options.store.list({ limit: 0 });
  }

  /**
   * One page of threads, loaded or stored, most recent activity first. Threads this process has
   * loaded are listed from memory and threads another owner runs from their records read now;
   * the store's index pages through the others.
   * @throws LocalError `INVALID_ARGUMENT` for a cursor this server did not give.
   */
  async list(options: ThreadListOptions): Promise<ThreadListPage> {
    const after = options.cursor === undefined ? undefined : decodeListCursor(options.cursor);
    // Only a thread whose last turn is open in the store can be running in another process.
    const elsewhere = await this.#ownership.heldElsewhere(await this.#options.store.openTurns());
    const fresh = (await Promise.all([...elsewhere.keys()].map((threadId) => this.#options.store.summary(threadId).catch(() => undefined)))).filter(
      (summary): summary is ThreadSummary => summary !== undefined,
    );
    // Memory speaks for the threads this process runs or holds; an idle thread loaded here reads as
    // the store has it, so a turn, close or archive by another process shows at once.
    const active = [...this.#threads.values()].filter((thread) => thread.live.length > 0 || this.#threads.isHeld(thread.id));
    const listed = listEntries(active, fresh, elsewhere).filter((entry) => options.status === undefined || entry.status === options.status);
    const exclude = new Set(active.map((thread) => thread.id));
    for (const threadId of elsewhere.keys()) exclude.add(threadId);
    // A thread nobody runs is idle, or failed when its last turn failed or its file does not read back.
    const failed = options.status === undefined ? undefined : options.status === 'failed' ? true : options.status === 'idle' ? false : 'none';
    const stored: ThreadSummaryPage =
      failed === 'none' ? { summaries: [], next: undefined, total: 0 } : await this.#options.store.list({ limit: options.limit, after, failed, exclude });
    return mergePage(listed, stored, after, options.limit);
  }

  /**
   * Interrupts the thread's current turn, or the live turn `turnId` (a queued one is withdrawn).
   * Undefined when nothing of this thread is running.
   */
  async interrupt(threadId: string, turnId?: string, reason = 'interrupted by turn/interrupt'): Promise<InterruptedTurn | undefined> {
    const thread = this.#threads.get(threadId);
    if (thread === undefined || thread.live.length === 0) {
      const holder = await this.#ownership.holderElsewhere(threadId);
      if (holder !== undefined) return this.#interruptElsewhere(threadId, turnId, reason, holder);
    }
    if (thread === undefined) {
      await this.#threads.readOnly(threadId);
      return undefined;
    }
    const live = turnId === undefined ? thread.live[0] : thread.live.find((turn) => turn.turnId === turnId);
    if (live === undefined) {
      if (turnId !== undefined && !thread.finished.some((turn) => turn.turnId === turnId)) {
        throw new LocalError(LocalErrorCode.NotFound, `thread ${threadId} has no turn ${turnId}`);
      }
      return undefined;
    }
    this.#logger.info('interrupting a turn', { thread: threadId, turn: live.turnId, reason });
    live.interrupt.abort(new LocalError(LocalErrorCode.Aborted, reason));
    return { turnId: live.turnId };
  }

  /**
   * Asks the owner that runs the thread's open turn to stop it; undefined when the thread has no
   * open turn (or not `turnId`).
   */
  async #interruptElsewhere(threadId: string, turnId: string | undefined, reason: string, holder: LeaseHolder): Promise<InterruptedTurn | undefined> {
    const open = storedTurns((await this.#threads.readOnly(threadId)).records).open;
    if (open === undefined || (turnId !== undefined && turnId !== open.turnId)) return undefined;
    this.#logger.info('asking another server process to interrupt a turn', { thread: threadId, turn: open.turnId, holder: describeHolder(holder) });
    await this.#ownership.requestInterrupt(threadId, { turnId: open.turnId, reason: `${reason} (from server process ${process.pid})` });
    return { turnId: open.turnId, elsewhere: holder };
  }

  /**
   * Waits until the thread's turn `turnId` (by default: every turn accepted so far) has finished,
   * for at most `timeoutMs`. Resolves true when nothing is left to wait for.
   */
  async waitForTurns(threadId: string, options: { turnId?: string; timeoutMs: number; signal?: AbortSignal }): Promise<boolean> {
    const thread = this.#threads.get(threadId);
    const target = options.turnId === undefined ? thread?.live[thread.live.length - 1] : thread?.live.find((turn) => turn.turnId === options.turnId);
    if (target !== undefined) return settlesWithin(target.done, options.timeoutMs, options.signal);
    return this.#ownership.waitReleased(threadId, options.timeoutMs, options.signal);
  }

  /**
   * Where turn `turnId` is, as this process knows it: live (running or queued here), or among the
   * recent finished turns of a thread loaded here; undefined when only the store can say.
   */
  turnState(threadId: string, turnId: string): KnownTurn {
    const thread = this.#threads.get(threadId);
    if (thread === undefined) return undefined;
    if (thread.live.some((turn) => turn.turnId === turnId)) return { state: 'live' };
    const turn = thread.finished.find((finished) => finished.turnId === turnId);
    return turn === undefined ? undefined : { state: 'finished', turn };
  }

  /** Whether another live owner has the thread (for tasks, see thread-tasks.ts). */
  async heldElsewhere(threadId: string): Promise<boolean> {
    return (await this.#ownership.holderElsewhere(threadId)) !== undefined;
  }

  /** Wakes the owner of the thread to read an answer to a task input (for tasks, see thread-tasks.ts). */
  async announceAnswer(threadId: string): Promise<void> {
    await this.#ownership.announceAnswer(threadId);
  }

  /**
   * Makes everything the thread's turns wrote so far durable (see `ThreadStore.flush`): called
   * before an answer about the thread leaves while its turn runs. Costs nothing when it is.
   */
  async flush(threadId: string): Promise<void> {
    await this.#options.store.flush(threadId);
  }

  /** The progress of a live turn of a loaded thread; undefined once it finished. */
  progress(threadId: string, turnId: string): TurnProgress | undefined {
    return this.#threads
      .get(threadId)
      ?.live.find((turn) => turn.turnId === turnId)
      ?.snapshot();
  }

  /** Turns accepted and not finished, across all threads. */
  get liveTurnCount(): number {
    let count = 0;
    for (const thread of this.#threads.values()) count += thread.live.length;
    return count;
  }

  /**
   * Waits (at most `timeoutMs`, or until `signal` aborts) for every accepted turn to finish,
   * e.g. after the client went away. Resolves with the number still running.
   */
  async drain(timeoutMs: number, signal?: AbortSignal): Promise<number> {
    const pending = [...this.#threads.values()].flatMap((thread) => thread.live.map((turn) => turn.done));
    if (pending.length > 0) await settlesWithin(Promise.all(pending), timeoutMs, signal);
    return this.liveTurnCount;
  }

  /** Interrupts every live turn (queued ones are withdrawn); resolves once they have wound down or after `timeoutMs`. */
  async interruptAll(reason: string, timeoutMs: number): Promise<void> {
    const pending = [...this.#threads.values()].flatMap((thread: Thread) =>
      thread.live.map((turn) => {
        turn.interrupt.abort(new LocalError(LocalErrorCode.Aborted, reason));
        return turn.done;
      }),
    );
    if (pending.length > 0) await settlesWithin(Promise.all(pending), timeoutMs);
  }

  /** Stops every process left running by threads, and their MCP servers, and gives every thread back. */
  async close(): Promise<void> {
    await this.#threads.close();
    await this.#ownership.releaseAll();
  }

  /** The MCP servers of every loaded thread, with their state. */
  mcpServerStatuses(): (McpServerStatus & { threadId: string })[] {
    return [...this.#threads.values()].flatMap((thread) => thread.engine.mcpServers().map((status) => ({ threadId: thread.id, ...status })));
  }
}
