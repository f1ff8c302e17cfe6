import type { ApprovalDecision, ApprovalRequest, FileChange } from '../agent/approvals.js';
import type { AppServerDecision, AppServerItem, AppServerPermissionProfile, McpElicitationMethod, PermissionsApprovalMethod } from '../protocol/app-server.js';
import { PlanUpdateSchema, type TurnStatus } from '../protocol/thread.js';
import { settlesWithin } from '../util/abort.js';
import type { Channel } from '../util/channel.js';
import { deferred } from '../util/deferred.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { z } from 'zod';
import type { AppServerEvent, AppServerListener } from './codex-app-server.js';
import type { EngineEvent, EngineTurn, EngineTurnResult } from './turn-engine.js';

/** The environment Codex's app-server always has: its own host. */
export const CODEX_LOCAL_ENVIRONMENT = 'local';

/** `_meta.codex_approval_kind` of the elicitation Codex sends before an MCP tool call. */
const MCP_TOOL_CALL_APPROVAL = 'mcp_tool_call';

/** One running turn: folds the app-server's notifications into turn events until `turn/completed`. */
export class CodexTurn implements AppServerListener {
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
  /** Codex ended the turn (`turn/completed`), so its rollout has the end; not when its app-server died or an interrupt went unconfirmed. */
  endedByCodex = false;
  #ended = false;

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

  /** The first end counts. */
  #end(result: EngineTurnResult, byCodex = false): void {
    if (this.#ended) return;
    this.#ended = true;
    this.endedByCodex = byCodex;
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
        this.#end({ status: mapped, lastAgentMessage: this.#lastAgentMessage, ...(error == null ? {} : { error: error.message }) }, true);
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

  /**
   * Grants what the model asked for, as asked, when the user approves (for the session when the
   * user says so); a denial grants nothing, which Codex reports to the model as refused.
   */
  async permissionsApproval(params: z.output<typeof PermissionsApprovalMethod.params>, signal: AbortSignal): Promise<z.input<typeof PermissionsApprovalMethod.result>> {
    const decision = await this.#decide(
      {
        kind: 'permissions',
        threadId: this.#threadId,
        callId: params.itemId,
        environmentId: params.environmentId ?? CODEX_LOCAL_ENVIRONMENT,
        cwd: params.cwd,
        permissions: describePermissions(params.permissions),
        ...(params.reason == null ? {} : { reason: params.reason }),
      },
      signal,
    );
    if (decision.decision === 'approved') return { permissions: params.permissions, scope: 'turn' };
    if (decision.decision === 'approved_for_session') return { permissions: params.permissions, scope: 'session' };
    return { permissions: {}, scope: 'turn' };
  }

  /**
   * An MCP tool-call approval is asked like ours and accepted with the empty form Codex offers.
   * Any other elicitation (a server asking the user for data) is declined unasked: our
   * approval form cannot carry its fields, and an empty accepted form would be a false answer.
   */
  async mcpElicitation(params: z.output<typeof McpElicitationMethod.params>, signal: AbortSignal): Promise<z.input<typeof McpElicitationMethod.result>> {
    const meta = params._meta;
    if (meta?.codex_approval_kind !== MCP_TOOL_CALL_APPROVAL || params.mode !== 'form') {
      this.#logger.info('declined an MCP elicitation that is not a tool-call approval', { thread: this.#threadId, server: params.serverName, mode: params.mode });
      return { action: 'decline', content: null };
    }
    const args = meta.tool_params;
    const decision = await this.#decide(
      {
        kind: 'mcp',
        threadId: this.#threadId,
        callId: `${params.serverName}/${meta.tool_name ?? ''}`,
        // Codex's MCP servers run on its own host unless its config binds one elsewhere; the request does not say.
        environmentId: CODEX_LOCAL_ENVIRONMENT,
        cwd: this.#turn.environments[0]?.cwd ?? '',
        server: params.serverName,
        tool: meta.tool_name ?? '(unnamed tool)',
        arguments: typeof args === 'object' && args !== null && !Array.isArray(args) ? { ...args } : { value: args },
        ...(params.message === undefined ? {} : { reason: params.message }),
      },
      signal,
    );
    switch (decision.decision) {
      case 'approved':
      case 'approved_for_session':
        return { action: 'accept', content: {} };
      case 'abort':
        return { action: 'cancel', content: null };
      case 'denied':
        return { action: 'decline', content: null };
    }
  }

  /** Asks the caller through an `approval` event; anything but a clear approval declines. */
  #ask(request: ApprovalRequest, signal: AbortSignal): Promise<AppServerDecision> {
    return this.#decide(request, signal).then(codexDecision);
  }

  #decide(request: ApprovalRequest, signal: AbortSignal): Promise<ApprovalDecision> {
    const asked = AbortSignal.any([signal, this.#turn.signal]);
    return new Promise<ApprovalDecision>((respond) => this.#events.push({ type: 'approval', request, signal: asked, respond }));
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

/** A permission request in words, one access a line, for the approval message (Codex sends paths both as `write` and as `entries`). */
function describePermissions(profile: AppServerPermissionProfile): string[] {
  const lines = new Set<string>();
  const fs = profile.fileSystem;
  for (const path of fs?.read ?? []) lines.add(`read ${path}`);
  for (const path of fs?.write ?? []) lines.add(`write ${path}`);
  for (const { access, path } of fs?.entries ?? []) lines.add(`${access} ${path.path ?? path.pattern ?? (path.value === undefined ? path.type : `(${path.value.kind})`)}`);
  if (profile.network?.enabled === true) lines.add('network access');
  return [...lines];
}
