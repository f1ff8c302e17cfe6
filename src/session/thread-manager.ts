import { randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import PQueue from 'p-queue';
import { DEFAULT_COMPACT_PROMPT } from '../agent/compact.js';
import { SessionApprovals, type ApprovalPolicy, type Approver } from '../agent/approvals.js';
import { BASE_INSTRUCTIONS, environmentContextMessage, instructionFiles, projectInstructionsMessage, type GlobalInstructions } from '../agent/instructions.js';
import { discoverProjectDocs, type ProjectDocOptions, type ProjectDocs } from '../agent/project-docs.js';
import { updatePlanTool } from '../agent/tools/update-plan.js';
import { ThreadProcessTable } from '../agent/process-table.js';
import { applyPatchTool } from '../agent/tools/apply-patch.js';
import { execCommandTool, writeStdinTool } from '../agent/tools/exec-command.js';
import { listDirTool } from '../agent/tools/list-dir.js';
import { mcpFailureNotice, mcpTools } from '../agent/tools/mcp-tool.js';
import type { AgentTool, TurnEnvironment } from '../agent/tools/tool.js';
import { viewImageTool } from '../agent/tools/view-image.js';
import type { ModelPort } from '../agent/model-port.js';
import { runTurn, type TurnEvent, type TurnResult } from '../agent/turn.js';
import type { McpServerConfig } from '../config/mcp-servers.js';
import { describeProfile, type PermissionProfile } from '../config/permissions.js';
import { ThreadMcpServers, type McpServerStatus, type McpTurnServers } from '../environments/mcp-servers.js';
import type { Environment } from '../environments/environment.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import { DEFAULT_EXCLUDES } from '../exec/env-policy.js';
import type { EnvPolicy, SandboxContext } from '../protocol/exec.js';
import { ResponseInputItemSchema, type ResponseInputItem, type ToolSpec } from '../protocol/responses.js';
import { THREAD_ID_PATTERN, type InstructionFile, type PlanUpdate, type PersistedItem, type TurnStatus, type ThreadConfig, type ThreadEnvironment, type ThreadRecord } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { settlesWithin } from '../util/abort.js';
import { silentLogger, type Logger } from '../util/logger.js';
import type { FinishedTurn, LeaseHolder, ThreadListEntry, ThreadState, ThreadStatus, TurnProgress } from '../protocol/status.js';
import { FINISHED_TURNS_KEPT, LiveTurn, findTurn, latest, storedTurns, unfinishedTurn, type InterruptedTurn } from './live-turn.js';
import { sandboxContextFor } from './sandbox-context.js';
import { ThreadLeases, describeHolder } from './thread-lease.js';
import { promptPreview, type LoadedThread, type ThreadStore, type ThreadSummary } from './thread-store.js';

/** One environment a caller selects: an id and optionally an absolute cwd on that host. */
export interface EnvironmentSelection {
  id: string;
  cwd?: string;
  /** A permission profile name for this environment in this thread. */
  permissions?: string;
}

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

/** Hooks of one call that runs a turn. */
export interface TurnCallbacks {
  /** Interrupts the turn. */
  signal: AbortSignal;
  approver: Approver;
  onEvent?: (event: TurnEvent & { turnId: string }) => void;
  /** Called once the thread exists and the turn is accepted (before the model is called). */
  onThread?: (threadId: string, turnId: string, thread: { model: string }) => void;
}

/** The outcome of a turn as the MCP layer reports it. */
export interface TurnOutcome {
  threadId: string;
  turnId: string;
  status: TurnStatus;
  lastAgentMessage: string | null;
  error?: string;
}

/** What the thread manager needs from the configuration for one thread. */
export interface ResolvedThreadSettings {
  model: string;
  modelProvider: string;
  approvalPolicy: ApprovalPolicy;
  sandbox: ThreadConfig['sandbox'];
  reasoning?: { effort?: string; summary?: string };
  baseInstructions?: string;
  developerInstructions?: string;
  compactPrompt?: string;
  /** The provider's hosted web search: live fetches or cached results only; none: not offered. */
  webSearch?: 'live' | 'cached';
  /** How AGENTS.md files are found in each environment. */
  projectDocs: ProjectDocOptions;
  /** Compact the history once a request used this many tokens; none: only when the context window is exceeded. */
  autoCompactTokenLimit?: number | undefined;
  shellEnvironmentPolicy: EnvPolicy;
  /** The thread's default permissions: `default_permissions`, or the sandbox mode as a profile. */
  permissions: PermissionProfile;
  /**
   * A named profile (configured or built-in), for environments that carry their own.
   * @throws LocalError naming the known profiles when there is none by that name.
   */
  permissionProfile(name: string): PermissionProfile;
  /** Commands may run in a login shell (`allow_login_shell`). */
  allowLoginShell: boolean;
  /** `[mcp_servers]`, validated. @default [] */
  mcpServers?: readonly McpServerConfig[];
  /** Creates the model client for this thread's provider. */
  createModel(): ModelPort;
}

/** What a call (or a stored thread) pins; everything else comes from the config files. */
export interface CallSettings {
  model?: string;
  profile?: string;
  approvalPolicy?: ApprovalPolicy;
  sandbox?: ThreadConfig['sandbox'];
  /** A default permission profile pinned by a stored thread; wins over {@link sandbox}. */
  permissions?: string;
  /** The `config` argument: dotted keys to values. */
  configOverrides: Record<string, unknown>;
  baseInstructions?: string;
  developerInstructions?: string;
  compactPrompt?: string;
}

/** Resolves a thread's settings from the config files and what the call pinned. */
export type ResolveThreadSettings = (call: CallSettings) => ResolvedThreadSettings;

/** Bounds of {@link ThreadManager}. */
export interface ThreadLimits {
  /** Turns running at once across all threads. @default 8 */
  maxConcurrentTurns: number;
  /** Turns waiting behind a running one on the same thread. @default 4 */
  maxQueuedTurnsPerThread: number;
  /** Model requests per turn. @default 100 */
  maxTurnSteps: number;
  /** Tool calls run at once within a turn. @default 4 */
  maxParallelToolCalls: number;
  /** Bound on tool output returned to the model, in tokens. @default 10000 */
  toolOutputMaxTokens: number;
  /**
   * A loaded thread with no turn and no running command for this long is let go: its MCP servers
   * stop and its memory is freed; the next call reads it from the store again. 0 never. @default 0
   */
  idleThreadUnloadMs?: number;
}

/** The longest pause between two looks for idle threads. */
const IDLE_SWEEP_MAX_INTERVAL_MS = 60_000;

/** Options of {@link ThreadManager}. */
export interface ThreadManagerOptions {
  registry: EnvironmentRegistry;
  store: ThreadStore;
  resolveSettings: ResolveThreadSettings;
  /** Thread cwd when a call gives none (the server's working directory). */
  defaultCwd: string;
  limits: ThreadLimits;
  logger?: Logger;
  now?: () => Date;
  timezone?: string;
  /** `clientInfo.version` our MCP client sends to the threads' MCP servers. @default '0.0.0' */
  mcpClientVersion?: string;
  /**
   * Reads the user's global instructions (`$CODEX_HOME/AGENTS.override.md` or `AGENTS.md`) before
   * each turn, so an edit applies to the next turn. @default none
   */
  globalInstructions?: () => Promise<GlobalInstructions | undefined>;
  /** The fetch of Streamable HTTP MCP servers on `local` (the one honouring the proxy settings). @default globalThis.fetch */
  localFetch?: typeof fetch;
}

/** A thread the manager has in memory. */
interface Thread {
  id: string;
  createdAt: string;
  config: ThreadConfig;
  settings: ResolvedThreadSettings;
  model: ModelPort;
  sticky: ThreadEnvironment[];
  history: ResponseInputItem[];
  /** The first prompt, shortened, for lists. */
  preview: string | undefined;
  /** Tokens the thread's last model request used, when known (decides auto-compaction). */
  contextTokens: number | undefined;
  /** How often the history was compacted (the `compacted` records). */
  compactions: number;
  /** The agent's latest plan (`update_plan`). */
  plan: PlanUpdate | null;
  /** The instruction files sent for the latest turn. */
  instructions: InstructionFile[] | null;
  queue: PQueue;
  approvals: SessionApprovals;
  processes: ThreadProcessTable;
  /** The thread's `[mcp_servers]`, started lazily by its turns. */
  mcp: ThreadMcpServers;
  status: 'idle' | 'running' | 'failed';
  lastAgentMessage: string | null;
  lastActivity: string;
  /** Accepted turns that have not finished, in order: the running one first, then the queued. */
  live: LiveTurn[];
  /** The latest finished turns, oldest first (at most FINISHED_TURNS_KEPT). */
  finished: FinishedTurn[];
  /**
   * The thread file's {@link ThreadStore.stamp} when this process last let go of it (or read it);
   * a different stamp later means another process wrote it, and the thread is read again.
   */
  stamp: string | undefined;
}

/** This process's hold on a thread: its lease is held while `count` > 0. */
interface ThreadClaim {
  count: number;
  /** The thread, current with its file, once the lease is taken. */
  ready: Promise<Thread>;
}

/** How often a wait for another process's turn looks at the thread's lease besides watching it. */
const LEASE_POLL_MS = 100;

/** The outcome of {@link ThreadManager.closeThread}. */
export interface ClosedThread {
  threadId: string;
  /** Where the thread file went, when archived. */
  archivedTo: string | null;
  /** Commands of the thread (running, or finished with unread output) that were stopped. */
  stoppedCommands: number;
  /** MCP servers of the thread that were running. */
  stoppedMcpServers: number;
}

/** How long `list()` reuses the store's summaries of threads this process has not loaded. */
export const STORED_LIST_MAX_AGE_MS = 5_000;

/** An error about a thread id that does not exist; the MCP layer reports it with the id. */
export class ThreadNotFoundError extends LocalError {
  /** @param detail said after the old server's message, e.g. where an archived thread went */
  constructor(
    readonly threadId: string,
    detail?: string,
  ) {
    super(LocalErrorCode.NotFound, `Session not found for thread_id: ${threadId}${detail === undefined ? '' : ` (${detail})`}`);
  }
}

/**
 * Owns the threads: creates them, runs one turn at a time per thread (a bounded queue behind it),
 * caps concurrent turns across threads, persists every item, and reloads threads from the store
 * after a restart.
 */
export class ThreadManager {
  readonly #options: ThreadManagerOptions;
  readonly #logger: Logger;
  readonly #threads = new Map<string, Thread>();
  readonly #loading = new Map<string, Promise<Thread>>();
  readonly #global: PQueue;
  #defaults?: ResolvedThreadSettings;
  #stored: { at: number; summaries: Promise<ThreadSummary[]> } | undefined;
  /** Which process may write which thread file (several servers may share one threads folder). */
  readonly #leases: ThreadLeases;
  readonly #claims = new Map<string, ThreadClaim>();
  /** Leases being given back; a new claim of the thread waits for its release first. */
  readonly #releasing = new Map<string, Promise<void>>();
  /** "Approve for this session" answers of threads let go while idle, handed back when they load again. */
  readonly #keptApprovals = new Map<string, SessionApprovals>();
  readonly #idleSweep: NodeJS.Timeout | undefined;
  /** The environments each accepted turn runs in (a removal is refused while one uses it). */
  readonly #turnEnvironments = new WeakMap<LiveTurn, readonly string[]>();

  constructor(options: ThreadManagerOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#leases = new ThreadLeases({
      dir: options.store.dir,
      logger: this.#logger,
      onInterrupt: (threadId, request) => {
        const live = this.#threads.get(threadId)?.live.find((turn) => turn.turnId === request.turnId);
        if (live === undefined) return;
        this.#logger.info('interrupting a turn at the request of another server process', { thread: threadId, turn: live.turnId, reason: request.reason });
        live.interrupt.abort(new LocalError(LocalErrorCode.Aborted, request.reason));
      },
    });
    this.#global = new PQueue({ concurrency: options.limits.maxConcurrentTurns });
    const idleMs = options.limits.idleThreadUnloadMs ?? 0;
    if (idleMs > 0) {
      this.#idleSweep = setInterval(() => this.#unloadIdle(idleMs), Math.min(IDLE_SWEEP_MAX_INTERVAL_MS, Math.max(idleMs / 2, 10)));
      this.#idleSweep.unref();
    }
  }

  /**
   * Lets go of threads idle for `idleMs`: no live turn, no claim, no command still registered
   * (its output must stay readable). Their MCP servers stop; the store has everything else, and
   * their session approvals are kept for when they load again.
   */
  #unloadIdle(idleMs: number): void {
    const now = Date.now();
    for (const thread of [...this.#threads.values()]) {
      const id = thread.id;
      if (thread.live.length > 0 || thread.processes.size > 0 || this.#claims.has(id) || this.#releasing.has(id) || this.#loading.has(id)) continue;
      const idleFor = now - Date.parse(thread.lastActivity);
      if (!(idleFor >= idleMs)) continue;
      this.#keptApprovals.set(id, thread.approvals);
      this.#logger.info('thread let go after being idle', { thread: id, idleSec: Math.round(idleFor / 1000) });
      this.#letGo(thread).catch((error: unknown) => this.#logger.warn("stopping an idle thread's MCP servers failed", { thread: id, error: errorMessage(error) }));
    }
  }

  /** Drops a loaded thread from memory and stops what it started: its registered commands and its MCP servers. */
  async #letGo(thread: Thread): Promise<void> {
    if (this.#threads.get(thread.id) === thread) this.#threads.delete(thread.id);
    await Promise.all([thread.processes.terminateAll(), thread.mcp.close()]);
  }

  /** Starts a thread and runs its first turn. Invalid settings fail before any model call. */
  async startThread(params: StartThreadParams, callbacks: TurnCallbacks): Promise<TurnOutcome> {
    const cwd = params.cwd ?? this.#options.defaultCwd;
    if (!isAbsolute(cwd)) throw new LocalError(LocalErrorCode.InvalidArgument, `cwd \`${cwd}\` must be an absolute path`);
    const call: CallSettings = {
      model: params.model,
      profile: params.profile,
      approvalPolicy: params.approvalPolicy,
      sandbox: params.sandbox,
      configOverrides: params.config ?? {},
      baseInstructions: params.baseInstructions,
      developerInstructions: params.developerInstructions,
      compactPrompt: params.compactPrompt,
    };
    const settings = this.#options.resolveSettings(call);
    // The resolved values are stored, so a thread keeps its model and policies across restarts.
    const config: ThreadConfig = {
      model: settings.model,
      modelProvider: settings.modelProvider,
      approvalPolicy: settings.approvalPolicy,
      sandbox: settings.sandbox,
      ...(settings.permissions.legacyMode === undefined ? { permissions: settings.permissions.name } : {}),
      cwd,
      configOverrides: call.configOverrides,
      ...(params.profile === undefined ? {} : { profile: params.profile }),
      ...(params.baseInstructions === undefined ? {} : { baseInstructions: params.baseInstructions }),
      ...(params.developerInstructions === undefined ? {} : { developerInstructions: params.developerInstructions }),
      ...(params.compactPrompt === undefined ? {} : { compactPrompt: params.compactPrompt }),
    };
    const sticky = await this.#resolveSelection(params.environments, undefined, cwd, params.cwd !== undefined, settings);
    const id = randomUUID();
    const createdAt = new Date().toISOString();
    await this.#options.store.create({ threadId: id, createdAt, config, environments: sticky });
    const thread = this.#newThread(id, createdAt, config, settings, sticky, []);
    thread.preview = promptPreview(params.prompt);
    this.#threads.set(id, thread);
    this.#logger.info('thread started', { thread: id, environments: sticky.map((e) => e.id) });
    await this.#hold(id);
    try {
      return await this.#enqueue(thread, params.prompt, sticky, callbacks);
    } finally {
      await this.#unhold(id);
    }
  }

  /**
   * Runs the next turn of a thread, loading it from the store after a restart (or when another
   * process wrote it since). A thread another live process is running a turn of rejects with
   * {@link ThreadBusyError}.
   */
  async reply(params: ReplyParams, callbacks: TurnCallbacks): Promise<TurnOutcome> {
    const thread = await this.#hold(params.threadId);
    try {
      let selection = thread.sticky;
      if (params.stickyEnvironments !== undefined) {
        const sticky = await this.#resolveSelection(params.stickyEnvironments, thread.sticky, thread.config.cwd, false, thread.settings);
        thread.sticky = sticky;
        await this.#options.store.append(thread.id, { type: 'environments_changed', at: new Date().toISOString(), environments: sticky });
        selection = sticky;
      }
      if (params.environments !== undefined) selection = await this.#resolveSelection(params.environments, thread.sticky, thread.config.cwd, false, thread.settings);
      return await this.#enqueue(thread, params.prompt, selection, callbacks);
    } finally {
      await this.#unhold(params.threadId);
    }
  }

  /**
   * Takes this process's hold on a thread: its lease (so no other process writes the file
   * meanwhile), and the thread itself, loaded or read again when another process wrote it since.
   * Every hold is paired with {@link ThreadManager.#unhold}.
   */
  async #hold(threadId: string): Promise<Thread> {
    let claim = this.#claims.get(threadId);
    if (claim === undefined) {
      claim = { count: 0, ready: this.#claim(threadId) };
      this.#claims.set(threadId, claim);
    }
    claim.count += 1;
    try {
      return await claim.ready;
    } catch (error) {
      await this.#unhold(threadId);
      throw error;
    }
  }

  async #claim(threadId: string): Promise<Thread> {
    await this.#releasing.get(threadId);
    if (!this.#threads.has(threadId) && (!THREAD_ID_PATTERN.test(threadId) || (await this.#options.store.stamp(threadId)) === undefined)) {
      const archived = THREAD_ID_PATTERN.test(threadId) ? this.#options.store.archivedPath(threadId) : undefined;
      throw new ThreadNotFoundError(threadId, archived === undefined ? undefined : `it was archived with thread/close: ${archived}; move the file back into ${this.#options.store.dir} to continue it`);
    }
    await this.#leases.acquire(threadId);
    const loaded = this.#threads.get(threadId);
    if (loaded === undefined || loaded.stamp === undefined || loaded.live.length > 0) return this.#get(threadId);
    if ((await this.#options.store.stamp(threadId)) === loaded.stamp) return loaded;
    // Another process ran turns of this thread since this one let go of it: read it again.
    this.#logger.info('thread changed in another process; reading it again', { thread: threadId });
    await this.#letGo(loaded);
    return this.#get(threadId);
  }

  async #unhold(threadId: string): Promise<void> {
    const claim = this.#claims.get(threadId);
    if (claim === undefined) return;
    claim.count -= 1;
    if (claim.count > 0) return;
    this.#claims.delete(threadId);
    const releasing = (async (): Promise<void> => {
      const thread = this.#threads.get(threadId);
      if (thread !== undefined) thread.stamp = await this.#options.store.stamp(threadId).catch(() => undefined);
      this.#leases.release(threadId);
    })();
    this.#releasing.set(threadId, releasing);
    try {
      await releasing;
    } finally {
      if (this.#releasing.get(threadId) === releasing) this.#releasing.delete(threadId);
    }
  }

  /**
   * Closes a thread that has no running turn: stops its registered commands and its MCP servers
   * and lets go of it; with `archive`, also moves its file into the store's archive folder, so it
   * is no longer listed or continued (nothing is deleted). Without `archive`, its next call reads
   * it back as after a restart.
   * @throws ThreadNotFoundError, ThreadBusyError (another process runs it), or a LocalError
   *   `INVALID_ARGUMENT` while a turn of it runs here.
   */
  async closeThread(threadId: string, options: { archive: boolean }): Promise<ClosedThread> {
    const thread = await this.#hold(threadId);
    try {
      if (thread.live.length > 0) {
        throw new LocalError(LocalErrorCode.InvalidArgument, `thread ${threadId} has a turn running (${thread.live[0]?.turnId ?? '?'}); stop it with turn/interrupt first, or wait for it (codex-status with waitMs)`);
      }
      const stoppedCommands = thread.processes.size;
      const stoppedMcpServers = thread.mcp.statuses().filter((server) => server.state === 'ready' || server.state === 'starting').length;
      this.#keptApprovals.delete(threadId);
      await this.#letGo(thread);
      const archivedTo = options.archive ? await this.#options.store.archive(threadId) : undefined;
      // The cached summaries still list an archived thread.
      if (archivedTo !== undefined) this.#stored = undefined;
      this.#logger.info(archivedTo === undefined ? 'thread closed' : 'thread closed and archived', { thread: threadId, stoppedCommands, stoppedMcpServers, archivedTo });
      return { threadId, archivedTo: archivedTo ?? null, stoppedCommands, stoppedMcpServers };
    } finally {
      await this.#unhold(threadId);
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
    const users = [...this.#threads.values()].flatMap((thread) =>
      thread.live.filter((turn) => this.#turnEnvironments.get(turn)?.includes(id) === true).map((turn) => `thread ${thread.id} (turn ${turn.turnId}, ${turn.started ? 'running' : 'queued'})`),
    );
    if (users.length > 0) {
      throw new LocalError(
        LocalErrorCode.Busy,
        `environment \`${id}\` is in use by ${users.length === 1 ? 'a turn' : `${users.length} turns`}: ${users.join(', ')}; wait for ${users.length === 1 ? 'it' : 'them'} (codex-status with waitMs) or stop ${users.length === 1 ? 'it' : 'them'} (turn/interrupt), then remove the environment`,
      );
    }
    // No await before this: the check above and the removal are one step (see #enqueue).
    const { removed, restored, closed } = this.#options.registry.remove(id);
    await closed;
    return { removed, restored };
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
   * loading it (no settings resolved, no crash repair), so another process may own its open turn.
   */
  async status(threadId: string, turnId?: string): Promise<ThreadStatus> {
    const thread = this.#threads.get(threadId);
    if (thread !== undefined && (this.#claims.has(threadId) || thread.live.length > 0)) return this.#statusOf(thread, turnId);
    const elsewhere = await this.#leases.holderElsewhere(threadId);
    if (thread !== undefined && elsewhere === undefined && (await this.#options.store.stamp(threadId)) === thread.stamp) return this.#statusOf(thread, turnId);
    // Not loaded here, or written by another process since: the file is the truth.
    const loaded = await this.#readOnly(threadId);
    const turns = storedTurns(loaded.records);
    let sticky = loaded.header.environments;
    for (const record of loaded.records) if (record.type === 'environments_changed') sticky = record.environments;
    const runningElsewhere = elsewhere !== undefined && turns.open !== undefined ? { ...elsewhere, turnId: turns.open.turnId } : undefined;
    const finished = turns.open === undefined || runningElsewhere !== undefined ? turns.finished : [...turns.finished, unfinishedTurn(turns.open.turnId, turns.lastActivity ?? loaded.header.createdAt)];
    const lastTurn = finished[finished.length - 1] ?? null;
    const report: ThreadStatus = {
      threadId,
      status: runningElsewhere !== undefined ? 'running' : lastTurn?.status === 'failed' ? 'failed' : 'idle',
      createdAt: loaded.header.createdAt,
      lastActivity: turns.lastActivity ?? loaded.header.createdAt,
      environments: sticky,
      lastAgentMessage: turns.lastAgentMessage,
      currentTurn: null,
      queuedTurns: 0,
      lastTurn,
      context: { tokens: null, autoCompactTokenLimit: null, compactions: loaded.records.filter((record) => record.type === 'compacted').length },
      plan: turns.plan,
      instructions: turns.instructions,
      ...(runningElsewhere === undefined ? {} : { runningElsewhere }),
    };
    if (turnId !== undefined && turnId !== runningElsewhere?.turnId) report.turn = findTurn(threadId, turnId, finished);
    return report;
  }

  /** Every thread, loaded or stored, most recent activity first. */
  async list(): Promise<ThreadListEntry[]> {
    const entries = new Map<string, ThreadListEntry>();
    const [elsewhere, cached] = await Promise.all([this.#leases.heldElsewhere(), this.#storedSummaries()]);
    // Threads another process runs now change by the second: read their summaries fresh (only
    // what was appended since), not from the few-seconds-old cache.
    const fresh = new Map<string, ThreadSummary>();
    for (const summary of await Promise.all([...elsewhere.keys()].map((threadId) => this.#options.store.summary(threadId).catch(() => undefined)))) {
      if (summary !== undefined) fresh.set(summary.threadId, summary);
    }
    const cachedIds = new Set(cached.map((summary) => summary.threadId));
    const stored = [...cached.map((summary) => fresh.get(summary.threadId) ?? summary), ...[...fresh.values()].filter((summary) => !cachedIds.has(summary.threadId))];
    for (const thread of this.#threads.values()) {
      // Another process runs it now: what this process holds in memory is behind.
      if (elsewhere.has(thread.id)) continue;
      const current = thread.live[0];
      entries.set(thread.id, {
        threadId: thread.id,
        createdAt: thread.createdAt,
        lastActivity: latest(thread.lastActivity, current?.lastEventAt),
        status: this.#stateOf(thread),
        environments: thread.sticky,
        currentTurnId: current?.turnId ?? null,
        preview: thread.preview ?? null,
      });
    }
    for (const summary of stored) {
      if (entries.has(summary.threadId)) continue;
      const holder = elsewhere.get(summary.threadId);
      const ok = summary.error === undefined ? summary : undefined;
      entries.set(summary.threadId, {
        threadId: summary.threadId,
        createdAt: ok?.createdAt ?? null,
        lastActivity: summary.updatedAt,
        status: holder !== undefined ? 'running' : ok === undefined || ok.lastStatus === 'failed' ? 'failed' : 'idle',
        environments: ok?.environments ?? [],
        currentTurnId: holder !== undefined && ok?.lastStatus === 'incomplete' ? (ok.lastTurnId ?? null) : null,
        preview: ok?.preview ?? null,
        ...(holder === undefined ? (ok === undefined ? { error: summary.error } : {}) : { runningElsewhere: holder }),
      });
    }
    // Held elsewhere, but its file could not be read just now.
    for (const [threadId, holder] of elsewhere) {
      if (!entries.has(threadId)) entries.set(threadId, { threadId, createdAt: null, lastActivity: holder.since, status: 'running', environments: [], currentTurnId: null, preview: null, runningElsewhere: holder });
    }
    return [...entries.values()].sort((a, b) => b.lastActivity.localeCompare(a.lastActivity) || a.threadId.localeCompare(b.threadId));
  }

  /**
   * Interrupts the thread's current turn, or the live turn `turnId` (a queued one is withdrawn).
   * Undefined when nothing of this thread is running in this process.
   */
  async interrupt(threadId: string, turnId?: string, reason = 'interrupted by turn/interrupt'): Promise<InterruptedTurn | undefined> {
    const thread = this.#threads.get(threadId);
    if (thread === undefined || thread.live.length === 0) {
      const holder = await this.#leases.holderElsewhere(threadId);
      if (holder !== undefined) return this.#interruptElsewhere(threadId, turnId, reason, holder);
    }
    if (thread === undefined) {
      await this.#readOnly(threadId);
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
   * Asks the server process that runs the thread's open turn to stop it (it watches the threads
   * folder for such requests); undefined when the thread has no open turn (or not `turnId`).
   */
  async #interruptElsewhere(threadId: string, turnId: string | undefined, reason: string, holder: LeaseHolder): Promise<InterruptedTurn | undefined> {
    const open = storedTurns((await this.#readOnly(threadId)).records).open;
    if (open === undefined || (turnId !== undefined && turnId !== open.turnId)) return undefined;
    this.#logger.info('asking another server process to interrupt a turn', { thread: threadId, turn: open.turnId, holder: describeHolder(holder) });
    this.#leases.requestInterrupt(threadId, { turnId: open.turnId, reason: `${reason} (from server process ${process.pid})` });
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
    return this.#leaseFreedWithin(threadId, options.timeoutMs, options.signal);
  }

  /**
   * Resolves true once no other process holds the thread's lease (its turn there ended), false
   * after `timeoutMs` or when `signal` aborts. Another process's turn cannot be awaited directly,
   * so its lease file is watched (and looked at every LEASE_POLL_MS, for missed file events).
   */
  async #leaseFreedWithin(threadId: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const lease = this.#leases.watchLease(threadId);
    try {
      for (;;) {
        if ((await this.#leases.holderElsewhere(threadId)) === undefined) return true;
        const left = deadline - Date.now();
        // An aborted wait just ends the wait (false), as settlesWithin does.
        if (left <= 0 || signal?.aborted === true) return false;
        await lease.next(Math.min(LEASE_POLL_MS, left), signal);
      }
    } finally {
      lease.close();
    }
  }

  /** The progress of a live turn of a loaded thread; undefined once it finished. */
  progress(threadId: string, turnId: string): TurnProgress | undefined {
    return this.#threads.get(threadId)?.live.find((turn) => turn.turnId === turnId)?.snapshot();
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
    const pending: Promise<FinishedTurn>[] = [];
    for (const thread of this.#threads.values()) {
      for (const turn of thread.live) {
        turn.interrupt.abort(new LocalError(LocalErrorCode.Aborted, reason));
        pending.push(turn.done);
      }
    }
    if (pending.length > 0) await settlesWithin(Promise.all(pending), timeoutMs);
  }

  /** Session approvals a thread had before it was let go while idle, or new ones. */
  #takeApprovals(threadId: string): SessionApprovals {
    const kept = this.#keptApprovals.get(threadId);
    this.#keptApprovals.delete(threadId);
    return kept ?? new SessionApprovals();
  }

  /** Stops every process left running by threads, and their MCP servers. */
  async close(): Promise<void> {
    clearInterval(this.#idleSweep);
    await Promise.all([...this.#threads.values()].map((thread) => this.#letGo(thread)));
    this.#leases.releaseAll();
  }

  /** The MCP servers of every loaded thread, with their state. */
  mcpServerStatuses(): (McpServerStatus & { threadId: string })[] {
    return [...this.#threads.values()].flatMap((thread) => thread.mcp.statuses().map((status) => ({ threadId: thread.id, ...status })));
  }

  /**
   * The store's thread summaries, re-read at most every STORED_LIST_MAX_AGE_MS: reading every
   * file's state costs far more than a listing should. Threads this process runs are listed from
   * memory anyway; the cache only delays threads another process writes.
   */
  async #storedSummaries(): Promise<ThreadSummary[]> {
    const now = Date.now();
    if (this.#stored === undefined || now - this.#stored.at > STORED_LIST_MAX_AGE_MS) {
      const stored = { at: now, summaries: this.#options.store.list() };
      this.#stored = stored;
      stored.summaries.catch(() => {
        if (this.#stored === stored) this.#stored = undefined;
      });
    }
    return this.#stored.summaries;
  }

  #stateOf(thread: Thread): ThreadState {
    const current = thread.live[0];
    if (current !== undefined) return current.state === 'waiting-for-approval' ? 'waiting-for-approval' : 'running';
    return thread.finished[thread.finished.length - 1]?.status === 'failed' ? 'failed' : 'idle';
  }

  #statusOf(thread: Thread, turnId: string | undefined): ThreadStatus {
    const current = thread.live[0];
    const report: ThreadStatus = {
      threadId: thread.id,
      status: this.#stateOf(thread),
      createdAt: thread.createdAt,
      lastActivity: latest(thread.lastActivity, current?.lastEventAt),
      environments: thread.sticky,
      lastAgentMessage: thread.lastAgentMessage,
      currentTurn: current?.snapshot() ?? null,
      queuedTurns: Math.max(0, thread.live.length - 1),
      lastTurn: thread.finished[thread.finished.length - 1] ?? null,
      context: { tokens: thread.contextTokens ?? null, autoCompactTokenLimit: thread.settings.autoCompactTokenLimit ?? null, compactions: thread.compactions },
      plan: thread.plan,
      instructions: thread.instructions,
    };
    if (turnId !== undefined) report.turn = thread.live.find((turn) => turn.turnId === turnId)?.snapshot() ?? findTurn(thread.id, turnId, thread.finished);
    return report;
  }

  /** Reads a stored thread without loading it; a missing or unreadable id is not found. */
  async #readOnly(threadId: string): Promise<LoadedThread> {
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

  /** A live turn ended: it leaves the thread's live list for its finished ones, then its waiters wake. */
  #settle(thread: Thread, live: LiveTurn, status: TurnStatus, lastAgentMessage: string | null, error?: string): void {
    const index = thread.live.indexOf(live);
    if (index !== -1) thread.live.splice(index, 1);
    const finished = live.finish(status, lastAgentMessage, error);
    thread.finished.push(finished);
    if (thread.finished.length > FINISHED_TURNS_KEPT) thread.finished.shift();
    thread.lastActivity = latest(thread.lastActivity, finished.finishedAt);
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

  async #load(threadId: string): Promise<Thread> {
    const loaded = await this.#readOnly(threadId);
    for (const warning of loaded.warnings) this.#logger.warn(warning, { thread: threadId });
    const history: ResponseInputItem[] = [];
    const keep = (stored: PersistedItem): void => {
      const item = ResponseInputItemSchema.safeParse(stored);
      if (item.success) history.push(item.data);
      else this.#logger.warn('skipping a stored item the model API would not accept', { thread: threadId, type: stored.type });
    };
    let sticky = loaded.header.environments;
    let lastAgentMessage: string | null = null;
    let openTurn: string | undefined;
    let firstPrompt: string | undefined;
    let compactions = 0;
    for (const record of loaded.records) {
      if (record.type === 'item') keep(record.item);
      else if (record.type === 'compacted') {
        // Later requests send the compacted history; the items above stay in the file.
        history.length = 0;
        for (const stored of record.history) keep(stored);
        compactions++;
      } else if (record.type === 'environments_changed') sticky = record.environments;
      else if (record.type === 'turn_started') {
        openTurn = record.turnId;
        firstPrompt ??= record.prompt;
      } else if (record.type === 'turn_completed') {
        lastAgentMessage = record.lastAgentMessage;
        openTurn = undefined;
      }
    }
    if (openTurn !== undefined) await this.#closeCrashedTurn(threadId, openTurn, history, lastAgentMessage);
    const stored = loaded.header.config;
    const settings = this.#options.resolveSettings({
      model: stored.model,
      profile: stored.profile,
      approvalPolicy: stored.approvalPolicy,
      sandbox: stored.sandbox,
      permissions: stored.permissions,
      configOverrides: stored.configOverrides,
      baseInstructions: stored.baseInstructions,
      developerInstructions: stored.developerInstructions,
      compactPrompt: stored.compactPrompt,
    });
    const thread = this.#newThread(threadId, loaded.header.createdAt, loaded.header.config, settings, sticky, history);
    thread.lastAgentMessage = lastAgentMessage;
    thread.compactions = compactions;
    if (firstPrompt !== undefined) thread.preview = promptPreview(firstPrompt);
    const turns = storedTurns(loaded.records);
    thread.plan = turns.plan;
    thread.instructions = turns.instructions;
    thread.finished = turns.open === undefined ? turns.finished : [...turns.finished, unfinishedTurn(turns.open.turnId, new Date().toISOString())].slice(-FINISHED_TURNS_KEPT);
    if (turns.lastActivity !== undefined) thread.lastActivity = turns.lastActivity;
    this.#threads.set(threadId, thread);
    this.#logger.info('thread reloaded from the store', { thread: threadId, items: history.length });
    return thread;
  }

  /**
   * The server stopped during a turn (a crash, a kill): answer every tool call left without an
   * output, since the model API rejects such a history, and record the turn as interrupted.
   */
  async #closeCrashedTurn(threadId: string, turnId: string, history: ResponseInputItem[], lastAgentMessage: string | null): Promise<void> {
    const answered = new Set<string>();
    for (const item of history) if (item.type === 'function_call_output' || item.type === 'custom_tool_call_output') answered.add(item.call_id);
    const at = new Date().toISOString();
    for (const item of [...history]) {
      if ((item.type !== 'function_call' && item.type !== 'custom_tool_call') || answered.has(item.call_id)) continue;
      const output = 'the server stopped before this tool call finished; its effect is unknown';
      const answer: ResponseInputItem =
        item.type === 'function_call' ? { type: 'function_call_output', call_id: item.call_id, output } : { type: 'custom_tool_call_output', call_id: item.call_id, output };
      history.push(answer);
      await this.#options.store.append(threadId, { type: 'item', at, turnId, item: answer });
    }
    await this.#options.store.append(threadId, {
      type: 'turn_completed',
      at,
      turnId,
      status: 'interrupted',
      lastAgentMessage,
      error: 'the server stopped during this turn',
    });
    this.#logger.warn('closed a turn the server did not finish before it stopped', { thread: threadId, turn: turnId });
  }

  #newThread(id: string, createdAt: string, config: ThreadConfig, settings: ResolvedThreadSettings, sticky: ThreadEnvironment[], history: ResponseInputItem[]): Thread {
    return {
      id,
      createdAt,
      config,
      settings,
      model: settings.createModel(),
      sticky,
      history,
      preview: undefined,
      contextTokens: undefined,
      compactions: 0,
      plan: null,
      instructions: null,
      queue: new PQueue({ concurrency: 1 }),
      approvals: this.#takeApprovals(id),
      processes: new ThreadProcessTable(),
      mcp: new ThreadMcpServers({
        configs: settings.mcpServers ?? [],
        registry: this.#options.registry,
        launcherEnv: this.#options.registry.launcherEnv,
        clientVersion: this.#options.mcpClientVersion ?? '0.0.0',
        ...(this.#options.localFetch === undefined ? {} : { directFetch: this.#options.localFetch }),
        logger: this.#logger,
      }),
      status: 'idle',
      lastAgentMessage: null,
      lastActivity: createdAt,
      live: [],
      finished: [],
      stamp: undefined,
    };
  }

  /**
   * Fails before any model request when the thread's sticky selection names an environment this
   * server does not have (one added with environment/add before a restart, or removed since).
   */
  #checkRegistered(selection: readonly ThreadEnvironment[]): void {
    const missing = selection.filter((entry) => this.#options.registry.get(entry.id) === undefined).map((entry) => `\`${entry.id}\``);
    if (missing.length === 0) return;
    const known = this.#options.registry.list().map((e) => e.id).join(', ') || '(none)';
    throw new LocalError(
      LocalErrorCode.InvalidArgument,
      `the thread's environment${missing.length === 1 ? '' : 's'} ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not registered in this server (environments added with environment/add last as long as the server process, or until environment/remove); add ${missing.length === 1 ? 'it' : 'them'} again with environment/add, or choose environments for this turn (\`environments\`) or for the thread (\`stickyEnvironments\`); known environments: ${known}`,
    );
  }

  /**
   * Validates a selection against the registry: known ids, absolute cwds, no duplicates. A missing
   * cwd keeps the sticky one, else the thread cwd for `local` (or when the caller set the thread
   * cwd explicitly), else the remote environment's own working directory. A permission profile
   * named for an environment must exist; a missing one keeps the sticky one.
   */
  async #resolveSelection(
    selection: EnvironmentSelection[] | undefined,
    sticky: ThreadEnvironment[] | undefined,
    threadCwd: string,
    threadCwdExplicit: boolean,
    settings: ResolvedThreadSettings,
  ): Promise<ThreadEnvironment[]> {
    const wanted: EnvironmentSelection[] = selection ?? this.#options.registry.defaultSelection().map((id) => ({ id }));
    const seen = new Set<string>();
    const known = (): string => this.#options.registry.list().map((e) => e.id).join(', ') || '(none)';
    for (const entry of wanted) {
      if (this.#options.registry.get(entry.id) === undefined) {
        throw new LocalError(LocalErrorCode.InvalidArgument, `unknown turn environment id \`${entry.id}\`; known environments: ${known()}`);
      }
      if (seen.has(entry.id)) throw new LocalError(LocalErrorCode.InvalidArgument, `duplicate turn environment id \`${entry.id}\``);
      seen.add(entry.id);
      if (entry.cwd !== undefined && !isAbsolute(entry.cwd)) {
        throw new LocalError(LocalErrorCode.InvalidArgument, `invalid cwd for environment \`${entry.id}\`: path \`${entry.cwd}\` is not an absolute path`);
      }
      if (entry.permissions !== undefined) checkProfile(settings, entry.permissions, `environment \`${entry.id}\``);
    }
    return Promise.all(
      wanted.map(async (entry): Promise<ThreadEnvironment> => {
        const previous = sticky?.find((e) => e.id === entry.id);
        const permissions = entry.permissions ?? previous?.permissions;
        const withPermissions = (chosen: ThreadEnvironment): ThreadEnvironment => (permissions === undefined ? chosen : { ...chosen, permissions });
        if (entry.cwd !== undefined) return withPermissions({ id: entry.id, cwd: entry.cwd });
        if (previous !== undefined) return withPermissions({ id: previous.id, cwd: previous.cwd });
        const environment = this.#options.registry.get(entry.id);
        if (environment === undefined || environment.kind === 'local' || threadCwdExplicit) return withPermissions({ id: entry.id, cwd: threadCwd });
        try {
          const client = await environment.client();
          const reported = client.info.cwd;
          if (typeof reported === 'string') return withPermissions({ id: entry.id, cwd: new URL(reported).pathname });
        } catch (error) {
          this.#logger.warn('environment unreachable while choosing its cwd; using the thread cwd', { environment: entry.id, error: errorMessage(error) });
        }
        return withPermissions({ id: entry.id, cwd: threadCwd });
      }),
    );
  }

  /** An environment's permissions in a thread: the thread's pick, the environment's own, or the thread default. */
  #permissionsOf(settings: ResolvedThreadSettings, entry: ThreadEnvironment): PermissionProfile {
    if (entry.permissions !== undefined) return checkProfile(settings, entry.permissions, `environment \`${entry.id}\``);
    const own = this.#options.registry.get(entry.id)?.permissions;
    return own === undefined ? settings.permissions : checkProfile(settings, own, `environment \`${entry.id}\` (its configured permissions)`);
  }

  async #enqueue(thread: Thread, prompt: string, selection: ThreadEnvironment[], callbacks: TurnCallbacks): Promise<TurnOutcome> {
    // Checked in the same synchronous step that makes the turn live: an environment/remove either
    // sees this turn (and refuses) or has already removed the environment (and this fails here).
    this.#checkRegistered(selection);
    const limit = this.#options.limits.maxQueuedTurnsPerThread;
    if (thread.queue.size >= limit) {
      throw new LocalError(LocalErrorCode.LimitExceeded, `thread ${thread.id} is busy: ${thread.queue.size} turns are already waiting (limit ${limit}); wait for a response before replying again`);
    }
    const turnId = randomUUID();
    // The turn is tracked (progress, approvals, interrupt) from here until it settles.
    const live = new LiveTurn(turnId);
    thread.live.push(live);
    this.#turnEnvironments.set(live, selection.map((entry) => entry.id));
    const tracked: TurnCallbacks = {
      signal: AbortSignal.any([callbacks.signal, live.interrupt.signal]),
      approver: live.countApprovals(callbacks.approver),
      onEvent: (event) => {
        live.record(event);
        callbacks.onEvent?.(event);
      },
    };
    callbacks.onThread?.(thread.id, turnId, { model: thread.settings.model });
    // The call's signal only withdraws a turn that is still waiting: p-queue races a running task
    // against its signal, which would free the thread for the next turn while this one winds down.
    const waiting = new AbortController();
    const withdraw = (): void => waiting.abort(tracked.signal.reason);
    if (tracked.signal.aborted) withdraw();
    else tracked.signal.addEventListener('abort', withdraw, { once: true });
    const run = (): Promise<TurnOutcome> => {
      tracked.signal.removeEventListener('abort', withdraw);
      return this.#global.add(() => {
        live.begin();
        return this.#runTurn(thread, turnId, prompt, selection, tracked);
      });
    };
    try {
      const outcome: TurnOutcome = await thread.queue.add(run, { signal: waiting.signal }).catch((error: unknown) => {
        if (tracked.signal.aborted) return { threadId: thread.id, turnId, status: 'interrupted' as const, lastAgentMessage: thread.lastAgentMessage };
        throw error;
      });
      this.#settle(thread, live, outcome.status, outcome.lastAgentMessage, outcome.error);
      return outcome;
    } catch (error) {
      this.#settle(thread, live, 'failed', null, errorMessage(error));
      throw error;
    }
  }

  /**
   * What a turn needs from its environments before the model is called: each one's shell and
   * AGENTS.md files, the user's global instructions (all at once: one round trip each), and the
   * tools, with the thread's MCP servers started.
   */
  async #prepareTurn(thread: Thread, turnId: string, selection: ThreadEnvironment[], environments: TurnEnvironment[], sandboxOf: (environmentId: string, cwd: string) => SandboxContext | null, callbacks: TurnCallbacks): Promise<PreparedTurn> {
    // The shells and instruction files of every environment at once: one round trip each.
    const [shells, projectDocs, globalInstructions] = await Promise.all([
      Promise.all(
        environments.map(async (environment) => {
          try {
            return (await environment.client(callbacks.signal)).info.shell?.name ?? undefined;
          } catch {
            return undefined;
          }
        }),
      ),
      Promise.all(environments.map((environment) => discoverProjectDocs(environment, thread.settings.projectDocs, sandboxOf(environment.id, environment.cwd), callbacks.signal))),
      this.#globalInstructions(),
    ]);
    for (const docs of projectDocs) {
      if (docs.error !== undefined) callbacks.onEvent?.({ type: 'progress', message: `AGENTS.md files of environment ${docs.environmentId} could not be read: ${docs.error}`, turnId });
    }
    const multi = environments.length > 1;
    const builtIn = agentTools(multi);
    const mcp = await this.#prepareMcpServers(thread, selection, turnId, callbacks);
    // The built-in tools are shared (their JSON is built once); MCP tools make a new array.
    const tools = mcp.tools.length === 0 ? builtIn : [...builtIn, ...mcpTools(mcp.tools, { reservedNames: builtIn.map((tool) => tool.name), multiEnvironment: multi })];
    const mcpNotice = mcpFailureNotice(mcp.failures);
    const requiredFailure = mcp.failures.find((failure) => failure.required);
    return { shells, projectDocs, globalInstructions, tools, mcpNotice, requiredFailure };
  }

  /** The user's global instructions now; a failure to read them is logged and the turn goes on without them. */
  async #globalInstructions(): Promise<GlobalInstructions | undefined> {
    try {
      return await this.#options.globalInstructions?.();
    } catch (error) {
      this.#logger.warn('could not read the global instructions (AGENTS.md in CODEX_HOME)', { error: errorMessage(error) });
      return undefined;
    }
  }

  /** Starts the MCP servers this turn can use; each failure is also a progress event. */
  async #prepareMcpServers(thread: Thread, selection: ThreadEnvironment[], turnId: string, callbacks: TurnCallbacks): Promise<McpTurnServers> {
    if (!thread.mcp.configured) return { tools: [], failures: [] };
    const prepared = await thread.mcp.prepare(selection, callbacks.signal);
    for (const failure of prepared.failures) callbacks.onEvent?.({ type: 'progress', message: failure.error, turnId });
    return prepared;
  }

  async #runTurn(thread: Thread, turnId: string, prompt: string, selection: ThreadEnvironment[], callbacks: TurnCallbacks): Promise<TurnOutcome> {
    const store = this.#options.store;
    const at = (): string => new Date().toISOString();
    // Resolved before anything is recorded or the model is called: a profile that vanished from
    // the config fails the turn here, clearly.
    const permissions = new Map(selection.map((entry) => [entry.id, this.#permissionsOf(thread.settings, entry)]));
    thread.status = 'running';
    thread.lastActivity = at();
    const environments: TurnEnvironment[] = selection.map((entry) => {
      const environment = this.#options.registry.get(entry.id);
      return {
        id: entry.id,
        cwd: entry.cwd,
        client: (signal?: AbortSignal) => {
          if (environment === undefined) return Promise.reject(new Error(`environment \`${entry.id}\` no longer exists`));
          return environment.client(signal);
        },
      };
    });
    const profileOf = (environmentId: string): PermissionProfile => permissions.get(environmentId) ?? thread.settings.permissions;
    const cwdOf = (environmentId: string): string => selection.find((entry) => entry.id === environmentId)?.cwd ?? thread.config.cwd;
    const sandboxOf = (environmentId: string, cwd: string) => sandboxContextFor(profileOf(environmentId), cwdOf(environmentId), cwd);
    // On disk before anything else is prepared: the prompt is kept, and other processes see the
    // open turn at once. Not awaited yet: it is written while the environments are asked.
    const started = store.append(thread.id, { type: 'turn_started', at: at(), turnId, prompt, environments: selection });
    started.catch(() => undefined);
    let prepared: PreparedTurn;
    try {
      prepared = await this.#prepareTurn(thread, turnId, selection, environments, sandboxOf, callbacks);
    } catch (error) {
      // Aborted (or failed) while preparing: the turn ends here, recorded as such.
      await started;
      const status = callbacks.signal.aborted ? 'interrupted' : 'failed';
      await store.append(thread.id, { type: 'turn_completed', at: at(), turnId, status, lastAgentMessage: null, error: errorMessage(error) });
      throw error;
    }
    const { shells, projectDocs, globalInstructions, tools, mcpNotice, requiredFailure } = prepared;
    thread.instructions = instructionFiles(globalInstructions, projectDocs);
    const settings = thread.settings;
    const limits = this.#options.limits;
    const instructions = [settings.baseInstructions ?? BASE_INSTRUCTIONS, ...(settings.developerInstructions === undefined ? [] : [settings.developerInstructions])];
    // Not awaited yet: runTurn appends the turn's first items in this same tick, so they share one
    // write and flush, which runTurn waits for before it calls the model.
    const instructionsRecorded = store.append(thread.id, { type: 'instructions', at: at(), turnId, files: thread.instructions });
    instructionsRecorded.catch(() => undefined);
    const running: Promise<TurnResult> =
      requiredFailure !== undefined
        ? Promise.resolve({ status: 'failed', lastAgentMessage: null, error: `a required MCP server is unavailable: ${requiredFailure.error}` })
        : runTurn({
          threadId: thread.id,
          prompt,
          model: thread.model,
          modelName: settings.model,
          reasoning: settings.reasoning,
          instructions,
          history: thread.history,
          environments,
          context: [
            environmentContextMessage(
              environments.map((environment, index) => ({
                environment,
                shell: shells[index],
                permissions: describeProfile(profileOf(environment.id)),
                commandEnvironment: commandEnvironmentProvenance(this.#options.registry.get(environment.id)?.kind === 'local', settings.shellEnvironmentPolicy),
              })),
              (this.#options.now ?? (() => new Date()))(),
              this.#options.timezone ?? 'Etc/UTC',
              settings.approvalPolicy,
            ) + (mcpNotice === undefined ? '' : `\n${mcpNotice}`),
            projectInstructionsMessage(globalInstructions, projectDocs),
          ],
          tools,
          hostedTools: settings.webSearch === undefined ? undefined : WEB_SEARCH_TOOLS[settings.webSearch],
          toolContext: {
            approvalPolicy: settings.approvalPolicy,
            approver: callbacks.approver,
            sessionApprovals: thread.approvals,
            processes: thread.processes,
            commandEnvironment: () => ({ envPolicy: settings.shellEnvironmentPolicy, env: { ...COMMAND_ENV_OVERLAY, CODEX_THREAD_ID: thread.id } }),
            sandbox: sandboxOf,
            allowLoginShell: settings.allowLoginShell,
            maxOutputTokens: limits.toolOutputMaxTokens,
          },
          maxSteps: limits.maxTurnSteps,
          maxParallelToolCalls: limits.maxParallelToolCalls,
          signal: callbacks.signal,
          record: async (item) => {
            thread.history.push(item);
            await store.append(thread.id, { type: 'item', at: at(), turnId, item });
          },
          compaction: { tokenLimit: settings.autoCompactTokenLimit, prompt: settings.compactPrompt ?? DEFAULT_COMPACT_PROMPT, contextTokens: thread.contextTokens },
          replaceHistory: async (replacement) => {
            // On disk first: the history in memory never runs ahead of the file.
            await store.append(thread.id, { type: 'compacted', at: at(), turnId, reason: replacement.reason, replacedItems: replacement.replacedItems, summary: replacement.summary, history: replacement.history });
            thread.history.splice(0, thread.history.length, ...replacement.history);
            thread.compactions++;
          },
          emit: (event) => {
            if (event.type === 'plan_updated') thread.plan = event.plan;
            callbacks.onEvent?.({ ...event, turnId });
          },
          logger: this.#logger,
        });
    let result: TurnResult;
    try {
      result = await running;
    } finally {
      // A failed write of the turn's start fails the turn, as the items sharing it did.
      await Promise.all([started, instructionsRecorded]);
    }
    thread.status = result.status === 'failed' ? 'failed' : 'idle';
    thread.lastActivity = at();
    thread.contextTokens = result.contextTokens;
    if (result.lastAgentMessage !== null) thread.lastAgentMessage = result.lastAgentMessage;
    const completed: ThreadRecord = { type: 'turn_completed', at: at(), turnId, status: result.status, lastAgentMessage: result.lastAgentMessage };
    if (result.error !== undefined) completed.error = result.error;
    await store.append(thread.id, completed);
    this.#logger.info('turn finished', { thread: thread.id, turn: turnId, status: result.status, error: result.error });
    return { threadId: thread.id, turnId, status: result.status, lastAgentMessage: result.lastAgentMessage, ...(result.error === undefined ? {} : { error: result.error }) };
  }
}

/** What a turn gathered from its environments and MCP servers before the model is called. */
interface PreparedTurn {
  /** The shell of each environment, in the turn's order (undefined when it is not known). */
  shells: (string | undefined)[];
  projectDocs: ProjectDocs[];
  globalInstructions: GlobalInstructions | undefined;
  tools: readonly AgentTool[];
  mcpNotice: string | undefined;
  requiredFailure: McpTurnServers['failures'][number] | undefined;
}

/** The tools offered, by whether the turn has several environments; built once each. */
const AGENT_TOOLS = new Map<boolean, readonly AgentTool[]>();

/**
 * The tools of a turn. The same array every time (the tools are stateless), so the model client
 * serializes their specs once instead of with every request.
 */
function agentTools(multiEnvironment: boolean): readonly AgentTool[] {
  let tools = AGENT_TOOLS.get(multiEnvironment);
  if (tools === undefined) {
    tools = [execCommandTool({ multiEnvironment }), writeStdinTool(), applyPatchTool({ multiEnvironment }), viewImageTool({ multiEnvironment }), listDirTool({ multiEnvironment }), updatePlanTool()];
    AGENT_TOOLS.set(multiEnvironment, tools);
  }
  return tools;
}

/** The hosted web search tool by mode; one array each, so its JSON is built once. */
const WEB_SEARCH_TOOLS: Record<'live' | 'cached', readonly ToolSpec[]> = {
  live: [{ type: 'web_search', external_web_access: true, search_content_types: ['text', 'image'] }],
  cached: [{ type: 'web_search', external_web_access: false, search_content_types: ['text', 'image'] }],
};

/** Variables every command gets on top of its environment: no pagers, no colours. */
const COMMAND_ENV_OVERLAY: Record<string, string> = { NO_COLOR: '1', TERM: 'dumb', PAGER: 'cat', GIT_PAGER: 'cat', GH_PAGER: 'cat' };

/** A permission profile name must resolve; the error says where it was named. */
function checkProfile(settings: ResolvedThreadSettings, name: string, where: string): PermissionProfile {
  try {
    return settings.permissionProfile(name);
  } catch (error) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `${where}: ${errorMessage(error)}`);
  }
}

/**
 * Where a command's variables come from on an environment, for the model and status tools: the
 * base (this server's own environment for `local`, the executor's own otherwise; never ours on a
 * remote host) and the policy applied on that host.
 */
export function commandEnvironmentProvenance(local: boolean, policy: EnvPolicy): string {
  const base = local ? "this server's own environment (launcher)" : "the remote executor's own environment (nothing from this server's machine)";
  // The URL rule is applied by our exec-server only (local is ours; a remote one may be Codex's).
  const urls = local ? 'values holding a URL with a password' : 'on our exec-server, values holding a URL with a password';
  const parts = [`inherit=${policy.inherit}`, policy.ignoreDefaultExcludes ? 'credential-looking variables kept' : `credentials removed (names ${DEFAULT_EXCLUDES.join(',')}; ${urls})`];
  if (policy.exclude.length > 0) parts.push(`exclude=${policy.exclude.join(',')}`);
  if (Object.keys(policy.set).length > 0) parts.push(`set=${Object.keys(policy.set).join(',')}`);
  if (policy.includeOnly.length > 0) parts.push(`include_only=${policy.includeOnly.join(',')}`);
  return `${base}, filtered by shell_environment_policy (${parts.join('; ')}), plus ${Object.keys(COMMAND_ENV_OVERLAY).join(', ')}, CODEX_THREAD_ID`;
}
