import type { McpServerStatus } from '../environments/mcp-servers.js';
import type { RelayedEnvironment } from '../environments/loopback-relay.js';
import type { z } from 'zod';
import { EnvironmentAddMethod, ThreadResumeMethod, ThreadStartMethod, ThreadTurnsListMethod, TurnInterruptMethod, TurnStartMethod } from '../protocol/app-server.js';
import type { ThreadContext } from '../protocol/status.js';
import type { ThreadEnvironment } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { AppServerSession, CodexAppServer } from './codex-app-server.js';
import type { Channel } from '../util/channel.js';
import { CODEX_LOCAL_ENVIRONMENT, CodexTurn } from './codex-turn.js';
import {
  engineTurnStream,
  type EngineEvent,
  type EngineThread,
  type EngineThreadInit,
  type EngineTurn,
  type EngineTurnResult,
  type RecoveredTurn,
  type TurnEngine,
} from './turn-engine.js';

/** How long an interrupted turn gets to end on its own (Codex answers `turn/interrupt` with `turn/completed`). */
export const DEFAULT_CODEX_INTERRUPT_GRACE_MS = 10_000;

/**
 * Codex turns read back to find a turn without our completion record: it is the thread's last
 * turn we started, so Codex's last or none; a few more cost nothing.
 */
const RECOVERY_TURNS_READ = 4;

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

  open(init: EngineThreadInit): Promise<EngineThread> {
    return Promise.resolve(new CodexThread(this.#options, init));
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

  /**
   * How Codex ended the turn, read from its rollout (the thread need not be loaded): the turn was
   * started with our turn id as its user message's client id. Undefined when Codex never got the
   * turn, did not finish it (its app-server stopped with ours), or cannot be asked; the manager
   * then records the turn interrupted. The next turn resumes the Codex thread from the rollout.
   */
  async recoverInterruptedTurn(turnId: string): Promise<RecoveredTurn | undefined> {
    const codexThreadId = this.#codexThreadId;
    if (codexThreadId === undefined) return undefined;
    let turns: z.output<typeof ThreadTurnsListMethod.result>['data'];
    try {
      const session = await this.#options.appServer.session();
      turns = (await session.request(ThreadTurnsListMethod, { threadId: codexThreadId, limit: RECOVERY_TURNS_READ, sortDirection: 'desc', itemsView: 'summary' })).data;
    } catch (error) {
      this.#options.logger.warn('could not ask Codex how a turn ended; it is recorded interrupted', { thread: this.#init.threadId, turn: turnId, error: errorMessage(error) });
      return undefined;
    }
    const turn = turns.find((candidate) => candidate.items.some((item) => item.type === 'userMessage' && item.clientId === turnId));
    if (turn === undefined || turn.status === 'inProgress') return undefined;
    const lastAgentMessage = turn.items.findLast((item) => item.type === 'agentMessage' && item.text !== undefined)?.text ?? null;
    return { status: turn.status, lastAgentMessage, ...(turn.error == null ? {} : { error: turn.error.message }) };
  }

  run(turn: EngineTurn): AsyncIterable<EngineEvent> {
    return engineTurnStream((events) => this.#run(turn, events));
  }

  async #run(turn: EngineTurn, events: Channel<EngineEvent>): Promise<EngineTurnResult> {
    const session = await this.#options.appServer.session();
    await this.#registerEnvironments(session, turn.environments);
    const { id: codexThreadId, recorded } = await this.#ensureThread(session, turn);
    // Codex runs the turn's commands by itself from its start on: the turn's start (written without
    // a flush) and the lease it runs under are made safe to act on before (durable where the store
    // can fail apart from this process; written, and synced meanwhile, in a folder).
    await this.#init.flush();
    const turnState = new CodexTurn(this.#init.threadId, turn, events, this.#options.logger);
    const stopListening = this.#options.appServer.listen(codexThreadId, turnState);
    try {
      const started = await session.request(TurnStartMethod, {
        threadId: codexThreadId,
        // Finds the turn in Codex's rollout after a restart (see recoverInterruptedTurn).
        clientUserMessageId: turn.turnId,
        input: [{ type: 'text', text: turn.prompt, text_elements: [] }],
        // Sent on every turn: our selection is per turn, Codex's would stick otherwise.
        environments: turn.environments.map((entry) => ({ environmentId: entry.id, cwd: entry.cwd })),
      });
      turnState.codexTurnId = started.turn.id;
      // The Codex thread's record was written while Codex started the turn; a failed write fails the turn, which Codex then stops.
      await recorded.catch(async (error: unknown) => {
        await session.request(TurnInterruptMethod, { threadId: codexThreadId, turnId: started.turn.id }, { timeoutMs: this.#interruptGraceMs() }).catch(() => undefined);
        throw error;
      });
      const result = await turnState.finished(
        turn.signal,
        async () => {
          await session.request(TurnInterruptMethod, { threadId: codexThreadId, turnId: started.turn.id }, { timeoutMs: this.#interruptGraceMs() });
        },
        this.#interruptGraceMs(),
      );
      if (turnState.contextTokens !== undefined) this.#contextTokens = turnState.contextTokens;
      this.#compactions += turnState.compactions;
      // Codex hands an event to its rollout before it sends it: the end it sent is kept there.
      return { ...result, outcomeKept: turnState.endedByCodex };
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
    // All at once: each is a relay listener to open and an app-server round trip, independent of the others.
    await Promise.all(
      environments.map(async ({ id }) => {
        if (id === CODEX_LOCAL_ENVIRONMENT) return;
        const relayed = await this.#options.exposeEnvironment(id);
        if (session.environments.get(id) === relayed.url) return;
        await session.request(EnvironmentAddMethod, { environmentId: id, execServerUrl: relayed.url, authBearerToken: relayed.authBearerToken });
        session.environments.set(id, relayed.url);
      }),
    );
  }

  /**
   * The Codex thread in this app-server: started on the first turn, resumed from its rollout after
   * a restart. `recorded` settles once a new thread's `codex_thread` record is written: the turn
   * starts meanwhile, the user's prompt being durable already (`turn_started`).
   */
  async #ensureThread(session: AppServerSession, turn: EngineTurn): Promise<{ id: string; recorded: Promise<void> }> {
    const config = this.#init.config;
    const settings = this.#init.settings;
    const overrides = codexConfigOverrides(settings.profileValues ?? {}, config.configOverrides, settings.selfReferencingMcpServers ?? []);
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
      const recorded = this.#init.record({ type: 'codex_thread', at: this.#options.now().toISOString(), turnId: turn.turnId, codexThreadId: id });
      // Awaited by the turn; kept from counting as unhandled should the turn fail first.
      recorded.catch(() => undefined);
      this.#codexThreadId = id;
      session.loaded.add(id);
      return { id, recorded };
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
    return { id, recorded: Promise.resolve() };
  }

  #interruptGraceMs(): number {
    return this.#options.interruptGraceMs ?? DEFAULT_CODEX_INTERRUPT_GRACE_MS;
  }
}

/**
 * The thread's configuration for Codex over what Codex reads itself (config.toml, the server's
 * `-c`): the applied profile's keys (Codex 0.169 no longer reads `[profiles.NAME]` tables), then
 * the thread's `config` argument, plus what keeps Codex from starting this server as one of its
 * MCP servers: the entries that launch it are disabled in Codex's thread.
 */
function codexConfigOverrides(profile: Readonly<Record<string, unknown>>, overrides: Record<string, unknown>, selfReferences: readonly string[]): Record<string, unknown> {
  const result: Record<string, unknown> = { ...profile, ...overrides };
  for (const name of selfReferences) result[`mcp_servers.${name}.enabled`] = false;
  return result;
}
