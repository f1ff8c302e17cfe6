import { DEFAULT_COMPACT_PROMPT } from '../agent/compact.js';
import { SessionApprovals, type Approver } from '../agent/approvals.js';
import { BASE_INSTRUCTIONS, environmentContextMessage, instructionFiles, projectInstructionsMessage, type GlobalInstructions } from '../agent/instructions.js';
import type { ModelPort } from '../agent/model-port.js';
import { ThreadProcessTable } from '../agent/process-table.js';
import type { TurnEnvironment } from '../agent/tools/tool.js';
import { runTurn, type TurnResult } from '../agent/turn.js';
import { describeProfile, type PermissionProfile } from '../config/permissions.js';
import { ThreadMcpServers, type McpServerStatus } from '../environments/mcp-servers.js';
import { requestItemJson } from '../model/request-body.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import { ResponseInputItemSchema, type ResponseInputItem, type ToolSpec } from '../protocol/responses.js';
import type { ThreadContext } from '../protocol/status.js';
import type { PersistedItem } from '../protocol/thread.js';
import type { Channel } from '../util/channel.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { prepareTurn, type PreparedTurn } from './builtin-preparation.js';
import { COMMAND_ENV_OVERLAY, commandEnvironmentProvenance } from './environment-selection.js';
import { sandboxContextFor } from './sandbox-context.js';
import type { ResolvedThreadSettings } from './settings.js';
import { engineTurnStream, type EngineEvent, type EngineThread, type EngineThreadInit, type EngineTurn, type EngineTurnResult, type TurnEngine } from './turn-engine.js';

/** Bounds of one built-in turn. */
export interface BuiltinEngineLimits {
  /** Model requests per turn. @default 100 */
  maxTurnSteps: number;
  /** Tool calls run at once within a turn. @default 4 */
  maxParallelToolCalls: number;
  /** Bound on tool output returned to the model, in tokens. @default 10000 */
  toolOutputMaxTokens: number;
}

/** Options of {@link BuiltinEngine}. */
export interface BuiltinEngineOptions {
  registry: EnvironmentRegistry;
  limits: BuiltinEngineLimits;
  logger: Logger;
  /** The clock of the `<environment_context>` date. */
  now: () => Date;
  /** The timezone the model is told. @default 'Etc/UTC' */
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

/** The hosted web search tool by mode; one array each, so its JSON is built once. */
const WEB_SEARCH_TOOLS: Record<'live' | 'cached', readonly ToolSpec[]> = {
  live: [{ type: 'web_search', external_web_access: true, search_content_types: ['text', 'image'] }],
  cached: [{ type: 'web_search', external_web_access: false, search_content_types: ['text', 'image'] }],
};

/**
 * The built-in turn engine: our agent loop (`agent/turn.ts`) against the thread's model provider,
 * its tools running in the turn's environments. Its records are the conversation items and
 * compactions, from which it rebuilds a stored thread's history.
 */
export class BuiltinEngine implements TurnEngine {
  readonly #options: BuiltinEngineOptions;
  /** "Approve for this session" answers of threads let go while idle, handed back when they open again. */
  readonly #keptApprovals = new Map<string, SessionApprovals>();

  constructor(options: BuiltinEngineOptions) {
    this.#options = options;
  }

  async open(init: EngineThreadInit): Promise<EngineThread> {
    const model = await init.settings.createModel();
    const approvals = this.#keptApprovals.get(init.threadId) ?? new SessionApprovals();
    this.#keptApprovals.delete(init.threadId);
    return new BuiltinThread(this.#options, init, model, approvals, (keep) => {
      if (keep) this.#keptApprovals.set(init.threadId, approvals);
      else this.#keptApprovals.delete(init.threadId);
    });
  }
}

/** A thread of the built-in engine: its history and what its turns started. */
class BuiltinThread implements EngineThread {
  readonly #options: BuiltinEngineOptions;
  readonly #init: EngineThreadInit;
  readonly #settings: ResolvedThreadSettings;
  readonly #model: ModelPort;
  readonly #history: ResponseInputItem[] = [];
  readonly #approvals: SessionApprovals;
  readonly #processes = new ThreadProcessTable();
  /** The thread's `[mcp_servers]`, started lazily by its turns. */
  readonly #mcp: ThreadMcpServers;
  readonly #onClose: (keep: boolean) => void;
  /** Tokens the thread's last model request used, when known (decides auto-compaction). */
  #contextTokens: number | undefined;
  /** How often the history was compacted (the `compacted` records). */
  #compactions = 0;

  constructor(options: BuiltinEngineOptions, init: EngineThreadInit, model: ModelPort, approvals: SessionApprovals, onClose: (keep: boolean) => void) {
    this.#options = options;
    this.#init = init;
    this.#settings = init.settings;
    this.#model = model;
    this.#approvals = approvals;
    this.#onClose = onClose;
    this.#mcp = new ThreadMcpServers({
      configs: init.settings.mcpServers ?? [],
      registry: options.registry,
      launcherEnv: options.registry.launcherEnv,
      clientVersion: options.mcpClientVersion ?? '0.0.0',
      ...(options.localFetch === undefined ? {} : { directFetch: options.localFetch }),
      logger: options.logger,
    });
    this.#rebuildHistory();
  }

  /** The history later requests send: every item, restarting from each compaction's result. */
  #rebuildHistory(): void {
    const keep = (stored: PersistedItem): void => {
      const item = ResponseInputItemSchema.safeParse(stored);
      if (item.success) this.#history.push(item.data);
      else this.#options.logger.warn('skipping a stored item the model API would not accept', { thread: this.#init.threadId, type: stored.type });
    };
    for (const record of this.#init.records) {
      if (record.type === 'item') keep(record.item);
      else if (record.type === 'compacted') {
        // Later requests send the compacted history; the items above stay in the store.
        this.#history.length = 0;
        for (const stored of record.history) keep(stored);
        this.#compactions++;
      }
    }
  }

  get activeCommands(): number {
    return this.#processes.size;
  }

  context(): ThreadContext {
    return { tokens: this.#contextTokens ?? null, autoCompactTokenLimit: this.#settings.autoCompactTokenLimit ?? null, compactions: this.#compactions };
  }

  mcpServers(): McpServerStatus[] {
    return this.#mcp.statuses();
  }

  async close(options: { keep: boolean }): Promise<void> {
    this.#onClose(options.keep);
    await Promise.all([this.#processes.terminateAll(), this.#mcp.close()]);
  }

  /**
   * Every tool call left without an output gets one, since the model API rejects such a history.
   * The turn's outcome is nowhere but in our records: none to report.
   */
  async recoverInterruptedTurn(turnId: string): Promise<undefined> {
    const answered = new Set<string>();
    for (const item of this.#history) if (item.type === 'function_call_output' || item.type === 'custom_tool_call_output') answered.add(item.call_id);
    const at = this.#options.now().toISOString();
    for (const item of [...this.#history]) {
      if ((item.type !== 'function_call' && item.type !== 'custom_tool_call') || answered.has(item.call_id)) continue;
      const output = 'the server stopped before this tool call finished; its effect is unknown';
      const answer: ResponseInputItem =
        item.type === 'function_call' ? { type: 'function_call_output', call_id: item.call_id, output } : { type: 'custom_tool_call_output', call_id: item.call_id, output };
      this.#history.push(answer);
      await this.#init.record({ type: 'item', at, turnId, item: answer });
    }
  }

  run(turn: EngineTurn): AsyncIterable<EngineEvent> {
    return engineTurnStream((events) => this.#run(turn, events));
  }

  async #run(turn: EngineTurn, events: Channel<EngineEvent>): Promise<EngineTurnResult> {
    const { turnId, environments: selection, signal } = turn;
    const settings = this.#settings;
    const registry = this.#options.registry;
    const at = (): string => this.#options.now().toISOString();
    const environments: TurnEnvironment[] = selection.map((entry) => {
      const environment = registry.get(entry.id);
      return {
        id: entry.id,
        cwd: entry.cwd,
        client: (clientSignal?: AbortSignal) => {
          if (environment === undefined) return Promise.reject(new Error(`environment \`${entry.id}\` no longer exists`));
          return environment.client(clientSignal);
        },
      };
    });
    const profileOf = (environmentId: string): PermissionProfile => turn.permissions.get(environmentId) ?? settings.permissions;
    const cwdOf = (environmentId: string): string => selection.find((entry) => entry.id === environmentId)?.cwd ?? this.#init.config.cwd;
    const sandboxOf = (environmentId: string, cwd: string) => sandboxContextFor(profileOf(environmentId), cwdOf(environmentId), cwd);
    const progress = (message: string): void => events.push({ type: 'progress', message });
    const prepared: PreparedTurn = await prepareTurn({
      settings,
      environments,
      selection,
      mcp: this.#mcp,
      sandboxOf,
      signal,
      progress,
      globalInstructions: () => this.#globalInstructions(),
    });
    const { shells, projectDocs, globalInstructions, tools, mcpNotice, requiredFailure } = prepared;
    const files = instructionFiles(globalInstructions, projectDocs);
    events.push({ type: 'instructions', files });
    // Not awaited yet: runTurn appends the turn's first items in this same tick, so they share one
    // write, which runTurn waits for before it calls the model (without a flush, as those items).
    const instructionsRecorded = this.#init.record({ type: 'instructions', at: at(), turnId, files }, { durable: false });
    instructionsRecorded.catch(() => undefined);
    const approver: Approver = {
      request: (request, requestSignal) => new Promise((respond) => events.push({ type: 'approval', request, signal: requestSignal, respond })),
    };
    const limits = this.#options.limits;
    const running: Promise<TurnResult> =
      requiredFailure !== undefined
        ? Promise.resolve({ status: 'failed', lastAgentMessage: null, error: `a required MCP server is unavailable: ${requiredFailure.error}` })
        : runTurn({
            threadId: this.#init.threadId,
            prompt: turn.prompt,
            model: this.#model,
            modelName: settings.model,
            reasoning: settings.reasoning,
            instructions: [settings.baseInstructions ?? BASE_INSTRUCTIONS, ...(settings.developerInstructions === undefined ? [] : [settings.developerInstructions])],
            history: this.#history,
            environments,
            context: [
              environmentContextMessage(
                environments.map((environment, index) => ({
                  environment,
                  shell: shells[index],
                  permissions: describeProfile(profileOf(environment.id)),
                  commandEnvironment: commandEnvironmentProvenance(registry.get(environment.id)?.kind === 'local', settings.shellEnvironmentPolicy),
                })),
                this.#options.now(),
                this.#options.timezone ?? 'Etc/UTC',
                settings.approvalPolicy,
              ) + (mcpNotice === undefined ? '' : `\n${mcpNotice}`),
              projectInstructionsMessage(globalInstructions, projectDocs),
            ],
            tools,
            hostedTools: settings.webSearch === undefined ? undefined : WEB_SEARCH_TOOLS[settings.webSearch],
            toolContext: {
              approvalPolicy: settings.approvalPolicy,
              approver,
              sessionApprovals: this.#approvals,
              processes: this.#processes,
              commandEnvironment: () => ({ envPolicy: settings.shellEnvironmentPolicy, env: { ...COMMAND_ENV_OVERLAY, CODEX_THREAD_ID: this.#init.threadId } }),
              sandbox: sandboxOf,
              allowLoginShell: settings.allowLoginShell,
              maxOutputTokens: limits.toolOutputMaxTokens,
            },
            maxSteps: limits.maxTurnSteps,
            maxParallelToolCalls: limits.maxParallelToolCalls,
            signal,
            record: async (item, options) => {
              this.#history.push(item);
              // Serialized once: the store writes the JSON the model requests send.
              const itemJson = requestItemJson(item);
              await this.#init.record({ type: 'item', at: at(), turnId, item }, itemJson === undefined ? options : { ...options, itemJson });
            },
            compaction: { tokenLimit: settings.autoCompactTokenLimit, prompt: settings.compactPrompt ?? DEFAULT_COMPACT_PROMPT, contextTokens: this.#contextTokens },
            replaceHistory: async (replacement) => {
              // In the store first: the history in memory never runs ahead of it.
              await this.#init.record({
                type: 'compacted',
                at: at(),
                turnId,
                reason: replacement.reason,
                replacedItems: replacement.replacedItems,
                summary: replacement.summary,
                history: replacement.history,
              });
              this.#history.splice(0, this.#history.length, ...replacement.history);
              this.#compactions++;
            },
            emit: (event) => events.push(event),
            logger: this.#options.logger,
          });
    let result: TurnResult;
    try {
      result = await running;
    } finally {
      // A failed write of the instructions fails the turn, as the items sharing it did.
      await instructionsRecorded;
    }
    this.#contextTokens = result.contextTokens;
    return {
      status: result.status,
      lastAgentMessage: result.lastAgentMessage,
      ...(result.error === undefined ? {} : { error: result.error }),
      ...(result.written === undefined ? {} : { written: result.written }),
    };
  }

  /** The user's global instructions now; a failure to read them is logged and the turn goes on without them. */
  async #globalInstructions(): Promise<GlobalInstructions | undefined> {
    try {
      return await this.#options.globalInstructions?.();
    } catch (error) {
      this.#options.logger.warn('could not read the global instructions (AGENTS.md in CODEX_HOME)', { error: errorMessage(error) });
      return undefined;
    }
  }
}
