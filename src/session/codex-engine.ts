import type { ApprovalDecision, ApprovalRequest, FileChange } from '../agent/approvals.js';
import type { McpServerStatus } from '../environments/mcp-servers.js';
import type { RelayedEnvironment } from '../environments/loopback-relay.js';
import {
  EnvironmentAddMethod,
  ThreadResumeMethod,
  ThreadStartMethod,
  TurnInterruptMethod,
  TurnStartMethod,
  type AppServerDecision,
  type AppServerItem,
} from '../protocol/app-server.js';
import type { ThreadContext } from '../protocol/status.js';
import { PlanUpdateSchema, type ThreadEnvironment, type TurnStatus } from '../protocol/thread.js';
import { settlesWithin } from '../util/abort.js';
import type { Channel } from '../util/channel.js';
import { deferred } from '../util/deferred.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { AppServerEvent, AppServerListener, AppServerSession, CodexAppServer } from './codex-app-server.js';
import { engineTurnStream, type EngineEvent, type EngineThread, type EngineThreadInit, type EngineTurn, type EngineTurnResult, type TurnEngine } from './turn-engine.js';

/** How long an interrupted turn gets to end on its own (Codex answers `turn/interrupt` with `turn/completed`). */
export const DEFAULT_CODEX_INTERRUPT_GRACE_MS = 10_000;

/** The environment Codex's app-server always has: its own host. */
const CODEX_LOCAL_ENVIRONMENT = 'local';

/** Options of {@link CodexEngine}. */
export interface CodexEngineOptions {
  /** The app-server every Codex-engine thread runs in. */
  appServer: CodexAppServer;
  logger: Logger;
  now: () => Date;
  /**
   * Where the app-server reaches one of our environments (not `local`, which is Codex's own
   * host): a loopback exec-server address and its token (see `LoopbackRelay`).
   */
  exposeEnvironment: (environmentId: string) => Promise<RelayedEnvironment>;
  /** @default DEFAULT_CODEX_INTERRUPT_GRACE_MS */
  interruptGraceMs?: number;
}

/**
 * The Codex turn engine: each thread is a thread of the real Codex (`codex app-server`), which
 * runs the turn with its own prompts, tools, sandbox and sign-in. The engine keeps one record of
 * its own, the Codex thread id (`codex_thread`), and maps Codex's item and turn notifications to
 * turn events and its approval requests to `approval` events.
 */
export class CodexEngine implements TurnEngine {
  readonly #options: CodexEngineOptions;

  constructor(options: CodexEngineOptions) {
    this.#options = options;
  }

  open(init: EngineThreadInit): EngineThread {
    return new CodexThread(this.#options, init);
  }
}

/** A thread of the Codex engine. */
class CodexThread implements EngineThread {
  readonly #options: CodexEngineOptions;
  readonly #init: EngineThreadInit;
  /** The Codex thread, once Codex started it. */
  #codexThreadId: string | undefined;
  /** Tokens of the thread's last model request, as Codex reported them. */
  #contextTokens: number | undefined;
  #compactions = 0;

  constructor(options: CodexEngineOptions, init: EngineThreadInit) {
    this.#options = options;
    this.#init = init;
    for (const record of init.records) if (record.type === 'codex_thread') this.#codexThreadId = record.codexThreadId;
  }

  /** Codex runs the thread's commands and MCP servers; none are ours to keep the thread loaded for. */
  readonly activeCommands = 0;

  context(): ThreadContext {
    return { tokens: this.#contextTokens ?? null, autoCompactTokenLimit: this.#init.settings.autoCompactTokenLimit ?? null, compactions: this.#compactions };
  }

  mcpServers(): McpServerStatus[] {
    return [];
  }

  /** Codex's thread stays in the app-server (and in its rollout); nothing of ours to let go. */
  async close(): Promise<void> {}

  /** Codex's rollout records its own interrupted turn; the next turn resumes the thread from it. */
  async recoverInterruptedTurn(): Promise<void> {}

  run(turn: EngineTurn): AsyncIterable<EngineEvent> {
    return engineTurnStream((events) => this.#run(turn, events));
  }

  async #run(turn: EngineTurn, events: Channel<EngineEvent>): Promise<EngineTurnResult> {
    const session = await this.#options.appServer.session();
    await this.#registerEnvironments(session, turn.environments);
    const codexThreadId = await this.#ensureThread(session, turn);
    const turnState = new CodexTurn(this.#init.threadId, turn, events, this.#options.logger);
    const stopListening = this.#options.appServer.listen(codexThreadId, turnState);
    try {
      const started = await session.request(TurnStartMethod, {
        threadId: codexThreadId,
        input: [{ type: 'text', text: turn.prompt, text_elements: [] }],
        // Sent on every turn: our selection is per turn, Codex's would stick otherwise.
        environments: turn.environments.map((entry) => ({ environmentId: entry.id, cwd: entry.cwd })),
      });
      turnState.codexTurnId = started.turn.id;
      const result = await turnState.finished(
        turn.signal,
        async () => {
          await session.request(TurnInterruptMethod, { threadId: codexThreadId, turnId: started.turn.id }, { timeoutMs: this.#interruptGraceMs() });
        },
        this.#interruptGraceMs(),
      );
      if (turnState.contextTokens !== undefined) this.#contextTokens = turnState.contextTokens;
      this.#compactions += turnState.compactions;
      return result;
    } finally {
      stopListening();
    }
  }

  /**
   * Makes the turn's environments other than `local` known to the app-server under their own
   * ids, each as its loopback relay address; again when the environment was replaced since (its
   * relay address changed) or in a new app-server process. Codex's `local` is its own host, which
   * is this server's host too.
   */
  async #registerEnvironments(session: AppServerSession, environments: readonly ThreadEnvironment[]): Promise<void> {
    for (const { id } of environments) {
      if (id === CODEX_LOCAL_ENVIRONMENT) continue;
      const relayed = await this.#options.exposeEnvironment(id);
      if (session.environments.get(id) === relayed.url) continue;
      await session.request(EnvironmentAddMethod, { environmentId: id, execServerUrl: relayed.url, authBearerToken: relayed.authBearerToken });
      session.environments.set(id, relayed.url);
    }
  }

  /** The Codex thread in this app-server: started on the first turn, resumed from its rollout after a restart. */
  async #ensureThread(session: AppServerSession, turn: EngineTurn): Promise<string> {
    const config = this.#init.config;
    const settings = this.#init.settings;
    const overrides = codexConfigOverrides(config.configOverrides, settings.selfReferencingMcpServers ?? []);
    if (this.#codexThreadId === undefined) {
      const started = await session.request(ThreadStartMethod, {
        cwd: config.cwd,
        model: settings.model,
        // Codex's app-server no longer takes `on-failure`; asking on request is the closest.
        approvalPolicy: settings.approvalPolicy === 'on-failure' ? 'on-request' : settings.approvalPolicy,
        sandbox: settings.sandbox,
        ...(config.baseInstructions === undefined ? {} : { baseInstructions: config.baseInstructions }),
        ...(config.developerInstructions === undefined ? {} : { developerInstructions: config.developerInstructions }),
        config: overrides,
        environments: turn.environments.map((entry) => ({ environmentId: entry.id, cwd: entry.cwd })),
      });
      const id = started.thread.id;
      await this.#init.record({ type: 'codex_thread', at: this.#options.now().toISOString(), turnId: turn.turnId, codexThreadId: id });
      this.#codexThreadId = id;
      session.loaded.add(id);
      return id;
    }
    const id = this.#codexThreadId;
    if (!session.loaded.has(id)) {
      try {
        await session.request(ThreadResumeMethod, { threadId: id, config: overrides, excludeTurns: true });
      } catch (error) {
        throw new LocalError(LocalErrorCode.NotFound, `could not resume Codex thread ${id} (kept in Codex's CODEX_HOME): ${errorMessage(error)}`, { cause: error });
      }
      session.loaded.add(id);
    }
    return id;
  }

  #interruptGraceMs(): number {
    return this.#options.interruptGraceMs ?? DEFAULT_CODEX_INTERRUPT_GRACE_MS;
  }
}

/**
 * The thread's `config` argument for Codex, plus what keeps Codex from starting this server as
 * one of its MCP servers: the entries that launch it are disabled in Codex's thread.
 */
function codexConfigOverrides(overrides: Record<string, unknown>, selfReferences: readonly string[]): Record<string, unknown> {
  const result: Record<string, unknown> = { ...overrides };
  for (const name of selfReferences) result[`mcp_servers.${name}.enabled`] = false;
  return result;
}

/** One running turn: folds the app-server's notifications into turn events until `turn/completed`. */
class CodexTurn implements AppServerListener {
  readonly #threadId: string;
  readonly #turn: EngineTurn;
  readonly #events: Channel<EngineEvent>;
  readonly #logger: Logger;
  readonly #done = deferred<EngineTurnResult>();
  /** File changes by item id, from `item/started`: Codex's file-change approval names only the item. */
  readonly #changes = new Map<string, Record<string, FileChange>>();
  #lastAgentMessage: string | null = null;
  /** Codex's id of this turn, once `turn/start` answered. */
  codexTurnId: string | undefined;
  contextTokens: number | undefined;
  compactions = 0;

  constructor(threadId: string, turn: EngineTurn, events: Channel<EngineEvent>, logger: Logger) {
    this.#threadId = threadId;
    this.#turn = turn;
    this.#events = events;
    this.#logger = logger;
  }

  /**
   * The turn's result once Codex ends it. An abort of `signal` interrupts the turn; when Codex
   * does not end it within `graceMs`, it is reported interrupted anyway.
   */
  async finished(signal: AbortSignal, interrupt: () => Promise<void>, graceMs: number): Promise<EngineTurnResult> {
    const onAbort = (): void => {
      interrupt().catch((error: unknown) => this.#logger.warn('could not interrupt the Codex turn', { thread: this.#threadId, error: errorMessage(error) }));
      void settlesWithin(this.#done.promise, graceMs).then((ended) => {
        if (!ended) this.#end({ status: 'interrupted', lastAgentMessage: this.#lastAgentMessage, error: 'Codex did not confirm the interrupt in time' });
      });
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.#done.promise;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  #end(result: EngineTurnResult): void {
    this.#done.resolve(result);
  }

  #mine(turnId: string): boolean {
    return this.codexTurnId === undefined || turnId === this.codexTurnId;
  }

  event(event: AppServerEvent): void {
    switch (event.type) {
      case 'item_started': {
        if (!this.#mine(event.params.turnId)) return;
        const item = event.params.item;
        if (item.type === 'fileChange') this.#changes.set(item.id, fileChanges(item));
        const tool = toolName(item);
        if (tool !== undefined) this.#events.push({ type: 'tool_started', callId: item.id, tool });
        return;
      }
      case 'item_completed': {
        if (!this.#mine(event.params.turnId)) return;
        const item = event.params.item;
        if (item.type === 'agentMessage' && item.text !== undefined) {
          this.#lastAgentMessage = item.text;
          this.#events.push({ type: 'agent_message', text: item.text });
        } else if (item.type === 'contextCompaction') {
          this.compactions++;
        }
        const tool = toolName(item);
        if (tool !== undefined) this.#events.push({ type: 'tool_finished', callId: item.id, tool, ok: item.status === 'completed' && (item.exitCode ?? 0) === 0 });
        this.#changes.delete(item.id);
        return;
      }
      case 'plan_updated': {
        const plan = PlanUpdateSchema.safeParse({
          ...(event.params.explanation == null ? {} : { explanation: event.params.explanation }),
          plan: event.params.plan.map((step) => ({ step: step.step, status: step.status === 'inProgress' ? 'in_progress' : step.status })),
        });
        if (plan.success) this.#events.push({ type: 'plan_updated', plan: plan.data });
        return;
      }
      case 'token_usage':
        this.contextTokens = event.params.tokenUsage.last.totalTokens;
        return;
      case 'error':
        if (event.params.willRetry) this.#events.push({ type: 'progress', message: `model request failed, Codex retries: ${event.params.error.message}` });
        return;
      case 'turn_completed': {
        if (!this.#mine(event.params.turn.id)) return;
        const { status, error } = event.params.turn;
        const mapped: TurnStatus = status === 'inProgress' ? 'failed' : status;
        this.#end({ status: mapped, lastAgentMessage: this.#lastAgentMessage, ...(error == null ? {} : { error: error.message }) });
        return;
      }
    }
  }

  exited(reason: string): void {
    this.#end({ status: 'failed', lastAgentMessage: this.#lastAgentMessage, error: `${reason}; the thread stays usable (its next turn resumes it in a new app-server)` });
  }

  commandApproval(
    params: { itemId: string; environmentId?: string | null; command?: string | null; cwd?: string | null; reason?: string | null },
    signal: AbortSignal,
  ): Promise<AppServerDecision> {
    return this.#ask(
      {
        kind: 'exec',
        threadId: this.#threadId,
        callId: params.itemId,
        environmentId: params.environmentId ?? CODEX_LOCAL_ENVIRONMENT,
        cwd: params.cwd ?? this.#turn.environments[0]?.cwd ?? '',
        command: params.command == null ? [] : [params.command],
        ...(params.reason == null ? {} : { reason: params.reason }),
      },
      signal,
    );
  }

  fileChangeApproval(params: { itemId: string; reason?: string | null }, signal: AbortSignal): Promise<AppServerDecision> {
    return this.#ask(
      {
        kind: 'patch',
        threadId: this.#threadId,
        callId: params.itemId,
        // Codex's file-change approval names no environment; its changes are in the primary one.
        environmentId: this.#turn.environments[0]?.id ?? CODEX_LOCAL_ENVIRONMENT,
        cwd: this.#turn.environments[0]?.cwd ?? '',
        changes: this.#changes.get(params.itemId) ?? {},
        ...(params.reason == null ? {} : { reason: params.reason }),
      },
      signal,
    );
  }

  /** Asks the caller through an `approval` event; anything but a clear approval declines. */
  #ask(request: ApprovalRequest, signal: AbortSignal): Promise<AppServerDecision> {
    const asked = AbortSignal.any([signal, this.#turn.signal]);
    return new Promise<ApprovalDecision>((respond) => this.#events.push({ type: 'approval', request, signal: asked, respond })).then(codexDecision);
  }
}

/** Our decision in Codex's words: an abort cancels the turn, a denial declines the action. */
function codexDecision(decision: ApprovalDecision): AppServerDecision {
  switch (decision.decision) {
    case 'approved':
      return 'accept';
    case 'approved_for_session':
      return 'acceptForSession';
    case 'abort':
      return 'cancel';
    case 'denied':
      return 'decline';
  }
}

/** The tool a Codex item stands for, as our events name tools; undefined for items that are not tool calls. */
function toolName(item: AppServerItem): string | undefined {
  switch (item.type) {
    case 'commandExecution':
      return 'exec_command';
    case 'fileChange':
      return 'apply_patch';
    case 'mcpToolCall':
      return `mcp__${item.server ?? ''}__${item.tool ?? ''}`;
    case 'dynamicToolCall':
      return item.tool;
    case 'webSearch':
      return 'web_search';
    case 'imageView':
      return 'view_image';
    default:
      return undefined;
  }
}

/** A file-change item's changes in the shape approvals carry. */
function fileChanges(item: AppServerItem): Record<string, FileChange> {
  const changes: Record<string, FileChange> = {};
  for (const change of item.changes ?? []) {
    const kind = change.kind.type;
    changes[change.path] =
      kind === 'add'
        ? { type: 'add', content: change.diff }
        : kind === 'delete'
          ? { type: 'delete', content: change.diff }
          : { type: 'update', unified_diff: change.diff, move_path: change.kind.move_path ?? null };
  }
  return changes;
}
