import { randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import PQueue from 'p-queue';
import { SessionApprovals, type ApprovalPolicy, type Approver } from '../agent/approvals.js';
import { BASE_INSTRUCTIONS, environmentContextMessage } from '../agent/instructions.js';
import { ThreadProcessTable } from '../agent/process-table.js';
import { applyPatchTool } from '../agent/tools/apply-patch.js';
import { execCommandTool, writeStdinTool } from '../agent/tools/exec-command.js';
import { listDirTool } from '../agent/tools/list-dir.js';
import type { AgentTool, TurnEnvironment } from '../agent/tools/tool.js';
import { viewImageTool } from '../agent/tools/view-image.js';
import { runTurn, type ModelPort, type TurnEvent, type TurnResult, type TurnStatus } from '../agent/turn.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import { pathToUri } from '../exec/path-uri.js';
import type { EnvPolicy, SandboxContext } from '../protocol/exec.js';
import { ResponseInputItemSchema, type ResponseInputItem } from '../protocol/responses.js';
import type { ThreadConfig, ThreadEnvironment, ThreadRecord } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import type { ThreadStore } from './thread-store.js';

/** One environment a caller selects: an id and optionally an absolute cwd on that host. */
export interface EnvironmentSelection {
  id: string;
  cwd?: string;
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
  /** Called once the thread exists (before the model is called). */
  onThread?: (threadId: string, turnId: string) => void;
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
  shellEnvironmentPolicy: EnvPolicy;
  /** Creates the model client for this thread's provider. */
  createModel(): ModelPort;
}

/** What a call (or a stored thread) pins; everything else comes from the config files. */
export interface CallSettings {
  model?: string;
  profile?: string;
  approvalPolicy?: ApprovalPolicy;
  sandbox?: ThreadConfig['sandbox'];
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
}

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
  queue: PQueue;
  approvals: SessionApprovals;
  processes: ThreadProcessTable;
  status: 'idle' | 'running' | 'failed';
  lastAgentMessage: string | null;
  lastActivity: string;
}

/** An error about a thread id that does not exist; the MCP layer reports it with the id. */
export class ThreadNotFoundError extends LocalError {
  constructor(readonly threadId: string) {
    super(LocalErrorCode.NotFound, `Session not found for thread_id: ${threadId}`);
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

  constructor(options: ThreadManagerOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#global = new PQueue({ concurrency: options.limits.maxConcurrentTurns });
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
      cwd,
      configOverrides: call.configOverrides,
      ...(params.profile === undefined ? {} : { profile: params.profile }),
      ...(params.baseInstructions === undefined ? {} : { baseInstructions: params.baseInstructions }),
      ...(params.developerInstructions === undefined ? {} : { developerInstructions: params.developerInstructions }),
      ...(params.compactPrompt === undefined ? {} : { compactPrompt: params.compactPrompt }),
    };
    const sticky = await this.#resolveSelection(params.environments, undefined, cwd, params.cwd !== undefined);
    const id = randomUUID();
    const createdAt = new Date().toISOString();
    await this.#options.store.create({ threadId: id, createdAt, config, environments: sticky });
    const thread = this.#newThread(id, createdAt, config, settings, sticky, []);
    this.#threads.set(id, thread);
    this.#logger.info('thread started', { thread: id, environments: sticky.map((e) => e.id) });
    return this.#enqueue(thread, params.prompt, sticky, callbacks);
  }

  /** Runs the next turn of a thread, loading it from the store after a restart. */
  async reply(params: ReplyParams, callbacks: TurnCallbacks): Promise<TurnOutcome> {
    const thread = await this.#get(params.threadId);
    let selection = thread.sticky;
    if (params.stickyEnvironments !== undefined) {
      const sticky = await this.#resolveSelection(params.stickyEnvironments, thread.sticky, thread.config.cwd, false);
      thread.sticky = sticky;
      await this.#options.store.append(thread.id, { type: 'environments_changed', at: new Date().toISOString(), environments: sticky });
      selection = sticky;
    }
    if (params.environments !== undefined) selection = await this.#resolveSelection(params.environments, thread.sticky, thread.config.cwd, false);
    return this.#enqueue(thread, params.prompt, selection, callbacks);
  }

  /** Known threads in memory (the store lists the others). */
  get loadedThreadCount(): number {
    return this.#threads.size;
  }

  /** Stops every process left running by threads. */
  async close(): Promise<void> {
    await Promise.all([...this.#threads.values()].map((thread) => thread.processes.terminateAll()));
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
    let loaded;
    try {
      loaded = await this.#options.store.load(threadId);
    } catch (error) {
      if (error instanceof LocalError && error.code === LocalErrorCode.InvalidArgument) throw new ThreadNotFoundError(threadId);
      throw error;
    }
    if (loaded === undefined) throw new ThreadNotFoundError(threadId);
    for (const warning of loaded.warnings) this.#logger.warn(warning, { thread: threadId });
    const history: ResponseInputItem[] = [];
    let sticky = loaded.header.environments;
    let lastAgentMessage: string | null = null;
    let openTurn: string | undefined;
    for (const record of loaded.records) {
      if (record.type === 'item') {
        const item = ResponseInputItemSchema.safeParse(record.item);
        if (item.success) history.push(item.data);
        else this.#logger.warn('skipping a stored item the model API would not accept', { thread: threadId, type: record.item.type });
      } else if (record.type === 'environments_changed') sticky = record.environments;
      else if (record.type === 'turn_started') openTurn = record.turnId;
      else if (record.type === 'turn_completed') {
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
      configOverrides: stored.configOverrides,
      baseInstructions: stored.baseInstructions,
      developerInstructions: stored.developerInstructions,
      compactPrompt: stored.compactPrompt,
    });
    const thread = this.#newThread(threadId, loaded.header.createdAt, loaded.header.config, settings, sticky, history);
    thread.lastAgentMessage = lastAgentMessage;
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
      queue: new PQueue({ concurrency: 1 }),
      approvals: new SessionApprovals(),
      processes: new ThreadProcessTable(),
      status: 'idle',
      lastAgentMessage: null,
      lastActivity: createdAt,
    };
  }

  /**
   * Validates a selection against the registry: known ids, absolute cwds, no duplicates. A missing
   * cwd keeps the sticky one, else the thread cwd for `local` (or when the caller set the thread
   * cwd explicitly), else the remote environment's own working directory.
   */
  async #resolveSelection(selection: EnvironmentSelection[] | undefined, sticky: ThreadEnvironment[] | undefined, threadCwd: string, threadCwdExplicit: boolean): Promise<ThreadEnvironment[]> {
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
    }
    return Promise.all(
      wanted.map(async (entry): Promise<ThreadEnvironment> => {
        if (entry.cwd !== undefined) return { id: entry.id, cwd: entry.cwd };
        const previous = sticky?.find((e) => e.id === entry.id);
        if (previous !== undefined) return previous;
        const environment = this.#options.registry.get(entry.id);
        if (environment === undefined || environment.kind === 'local' || threadCwdExplicit) return { id: entry.id, cwd: threadCwd };
        try {
          const client = await environment.client();
          const reported = client.info.cwd;
          if (typeof reported === 'string') return { id: entry.id, cwd: new URL(reported).pathname };
        } catch (error) {
          this.#logger.warn('environment unreachable while choosing its cwd; using the thread cwd', { environment: entry.id, error: errorMessage(error) });
        }
        return { id: entry.id, cwd: threadCwd };
      }),
    );
  }

  async #enqueue(thread: Thread, prompt: string, selection: ThreadEnvironment[], callbacks: TurnCallbacks): Promise<TurnOutcome> {
    const limit = this.#options.limits.maxQueuedTurnsPerThread;
    if (thread.queue.size >= limit) {
      throw new LocalError(LocalErrorCode.LimitExceeded, `thread ${thread.id} is busy: ${thread.queue.size} turns are already waiting (limit ${limit}); wait for a response before replying again`);
    }
    const turnId = randomUUID();
    callbacks.onThread?.(thread.id, turnId);
    // The call's signal only withdraws a turn that is still waiting: p-queue races a running task
    // against its signal, which would free the thread for the next turn while this one winds down.
    const waiting = new AbortController();
    const withdraw = (): void => waiting.abort(callbacks.signal.reason);
    if (callbacks.signal.aborted) withdraw();
    else callbacks.signal.addEventListener('abort', withdraw, { once: true });
    const run = (): Promise<TurnOutcome> => {
      callbacks.signal.removeEventListener('abort', withdraw);
      return this.#global.add(() => this.#runTurn(thread, turnId, prompt, selection, callbacks));
    };
    const outcome = await thread.queue.add(run, { signal: waiting.signal }).catch((error: unknown) => {
      if (callbacks.signal.aborted) return { threadId: thread.id, turnId, status: 'interrupted' as const, lastAgentMessage: thread.lastAgentMessage };
      throw error;
    });
    return outcome;
  }

  async #runTurn(thread: Thread, turnId: string, prompt: string, selection: ThreadEnvironment[], callbacks: TurnCallbacks): Promise<TurnOutcome> {
    const store = this.#options.store;
    const at = (): string => new Date().toISOString();
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
    const shells = await Promise.all(
      environments.map(async (environment) => {
        try {
          return (await environment.client(callbacks.signal)).info.shell?.name ?? undefined;
        } catch {
          return undefined;
        }
      }),
    );
    const multi = environments.length > 1;
    const tools = agentTools(multi);
    const settings = thread.settings;
    const limits = this.#options.limits;
    const instructions = [settings.baseInstructions ?? BASE_INSTRUCTIONS, ...(settings.developerInstructions === undefined ? [] : [settings.developerInstructions])];
    // Not awaited yet: runTurn appends the turn's first two items in this same tick, so the three
    // records share one write and flush, which runTurn waits for before it calls the model.
    const started = store.append(thread.id, { type: 'turn_started', at: at(), turnId, prompt, environments: selection });
    started.catch(() => undefined);
    const running = runTurn({
      threadId: thread.id,
      prompt,
      model: thread.model,
      modelName: settings.model,
      reasoning: settings.reasoning,
      instructions,
      history: thread.history,
      environments,
      environmentContext: environmentContextMessage(
        environments.map((environment, index) => ({ environment, shell: shells[index] })),
        (this.#options.now ?? (() => new Date()))(),
        this.#options.timezone ?? 'Etc/UTC',
      ),
      tools,
      toolContext: {
        approvalPolicy: settings.approvalPolicy,
        approver: callbacks.approver,
        sessionApprovals: thread.approvals,
        processes: thread.processes,
        commandEnvironment: () => ({ envPolicy: settings.shellEnvironmentPolicy, env: { ...COMMAND_ENV_OVERLAY, CODEX_THREAD_ID: thread.id } }),
        sandbox: (_environmentId, cwd) => sandboxContext(settings.sandbox, cwd),
        maxOutputTokens: limits.toolOutputMaxTokens,
      },
      maxSteps: limits.maxTurnSteps,
      maxParallelToolCalls: limits.maxParallelToolCalls,
      signal: callbacks.signal,
      record: async (item) => {
        thread.history.push(item);
        await store.append(thread.id, { type: 'item', at: at(), turnId, item });
      },
      emit: (event) => callbacks.onEvent?.({ ...event, turnId }),
      logger: this.#logger,
    });
    let result: TurnResult;
    try {
      result = await running;
    } finally {
      // A failed write of the turn's start fails the turn, as the items sharing it did.
      await started;
    }
    thread.status = result.status === 'failed' ? 'failed' : 'idle';
    thread.lastActivity = at();
    if (result.lastAgentMessage !== null) thread.lastAgentMessage = result.lastAgentMessage;
    const completed: ThreadRecord = { type: 'turn_completed', at: at(), turnId, status: result.status, lastAgentMessage: result.lastAgentMessage };
    if (result.error !== undefined) completed.error = result.error;
    await store.append(thread.id, completed);
    this.#logger.info('turn finished', { thread: thread.id, turn: turnId, status: result.status, error: result.error });
    return { threadId: thread.id, turnId, status: result.status, lastAgentMessage: result.lastAgentMessage, ...(result.error === undefined ? {} : { error: result.error }) };
  }
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
    tools = [execCommandTool({ multiEnvironment }), writeStdinTool(), applyPatchTool({ multiEnvironment }), viewImageTool({ multiEnvironment }), listDirTool({ multiEnvironment })];
    AGENT_TOOLS.set(multiEnvironment, tools);
  }
  return tools;
}

/** Variables every command gets on top of its environment: no pagers, no colours. */
const COMMAND_ENV_OVERLAY: Record<string, string> = { NO_COLOR: '1', TERM: 'dumb', PAGER: 'cat', GIT_PAGER: 'cat', GH_PAGER: 'cat' };

/**
 * The sandbox request for a command or a write: none for `danger-full-access`; otherwise Codex's
 * `FileSystemSandboxContext` shape, which an executor that can confine applies (and ours refuses
 * until it can).
 */
function sandboxContext(mode: ThreadConfig['sandbox'], cwd: string): SandboxContext | null {
  if (mode === 'danger-full-access') return null;
  const entries: unknown[] = [{ path: { type: 'special', value: { kind: 'root' } }, access: 'read' }];
  if (mode === 'workspace-write') {
    entries.push(
      { path: { type: 'special', value: { kind: 'project_roots' } }, access: 'write' },
      { path: { type: 'special', value: { kind: 'slash_tmp' } }, access: 'write' },
      { path: { type: 'special', value: { kind: 'tmpdir' } }, access: 'write' },
    );
  }
  return {
    permissions: { type: 'managed', file_system: { type: 'restricted', entries }, network: 'restricted' },
    cwd: pathToUri(cwd),
    workspaceRoots: [pathToUri(cwd)],
  };
}
