import type { z } from 'zod';
import {
  APP_SERVER_UNREAD_NOTIFICATIONS,
  CommandApprovalMethod,
  ErrorNotification,
  FileChangeApprovalMethod,
  InitializeMethod,
  InitializedNotification,
  ItemCompletedNotification,
  ItemStartedNotification,
  McpElicitationMethod,
  PermissionsApprovalMethod,
  ServerRequestResolvedNotification,
  TokenUsageUpdatedNotification,
  TurnCompletedNotification,
  TurnPlanUpdatedNotification,
  type AppServerDecision,
} from '../protocol/app-server.js';
import type { MethodSpec } from '../protocol/jsonrpc.js';
import { RpcConnection, type RequestOptions } from '../rpc/connection.js';
import { spawnChildTransport, type ChildCommand, type ChildTransport } from '../transport/child.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** Bound on starting the app-server: spawn plus the `initialize` answer. */
export const DEFAULT_APP_SERVER_START_TIMEOUT_MS = 60_000;

/** Bound on one request to the app-server (a thread start reads config, a resume reads a rollout). */
export const DEFAULT_APP_SERVER_REQUEST_TIMEOUT_MS = 120_000;

/**
 * Largest message read from the app-server. Its items carry whole command outputs and diffs; a
 * bigger message is dropped (the connection says so) instead of growing memory without end.
 */
const APP_SERVER_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Options of {@link CodexAppServer}. */
export interface CodexAppServerOptions {
  /** How to start `codex app-server` (its program, arguments and complete environment). */
  command: ChildCommand;
  /** Runs before each start of the app-server, which waits for it (the CLI brings Codex's home overlay up to date). @default none */
  beforeStart?: () => Promise<void>;
  /** `clientInfo.version` sent in `initialize`. */
  clientVersion: string;
  logger: Logger;
  /** @default DEFAULT_APP_SERVER_START_TIMEOUT_MS */
  startTimeoutMs?: number;
  /** @default DEFAULT_APP_SERVER_REQUEST_TIMEOUT_MS */
  requestTimeoutMs?: number;
}

/** A notification about one Codex thread, as its listener gets it. */
export type AppServerEvent =
  | { type: 'item_started'; params: z.output<typeof ItemStartedNotification.params> }
  | { type: 'item_completed'; params: z.output<typeof ItemCompletedNotification.params> }
  | { type: 'turn_completed'; params: z.output<typeof TurnCompletedNotification.params> }
  | { type: 'plan_updated'; params: z.output<typeof TurnPlanUpdatedNotification.params> }
  | { type: 'token_usage'; params: z.output<typeof TokenUsageUpdatedNotification.params> }
  | { type: 'error'; params: z.output<typeof ErrorNotification.params> };

/** What a Codex thread's engine side hears from the app-server while one of its turns runs. */
export interface AppServerListener {
  event(event: AppServerEvent): void;
  /** Codex asks before running a command; `signal` aborts when it no longer needs the answer. */
  commandApproval(params: z.output<typeof CommandApprovalMethod.params>, signal: AbortSignal): Promise<AppServerDecision>;
  /** Codex asks before changing files. */
  fileChangeApproval(params: z.output<typeof FileChangeApprovalMethod.params>, signal: AbortSignal): Promise<AppServerDecision>;
  /** The model asks for more permissions than the sandbox gives. */
  permissionsApproval(params: z.output<typeof PermissionsApprovalMethod.params>, signal: AbortSignal): Promise<z.input<typeof PermissionsApprovalMethod.result>>;
  /** One of Codex's MCP servers asks the user (Codex's MCP tool-call approvals come this way). */
  mcpElicitation(params: z.output<typeof McpElicitationMethod.params>, signal: AbortSignal): Promise<z.input<typeof McpElicitationMethod.result>>;
  /** The app-server process ended; nothing more comes from it. */
  exited(reason: string): void;
}

/** One running app-server process. */
export interface AppServerSession {
  /** Sends a request, bounded by the client's request timeout unless `options` names one. */
  request<P extends z.ZodType, R extends z.ZodType>(spec: MethodSpec<P, R>, params: z.input<P>, options?: RequestOptions): Promise<z.output<R>>;
  /** The Codex threads loaded in this process (started or resumed here); a new process has none. */
  readonly loaded: Set<string>;
  /** The environments registered in this process (`environment/add`), by id, with the URL given. */
  readonly environments: Map<string, string>;
  /** Aborts when the process is gone. */
  readonly signal: AbortSignal;
}

type RunningAppServer = AppServerSession & { close(): Promise<void> };

/**
 * One `codex app-server` child serving every Codex-engine thread over stdio JSON-RPC. Started on
 * first use; when it dies, its listeners hear so (their running turns fail) and the next use
 * starts a new one, in which the threads are resumed from Codex's rollouts. Notifications and
 * approval requests are routed to the listener of the Codex thread they name.
 */
export class CodexAppServer {
  readonly #options: CodexAppServerOptions;
  readonly #listeners = new Map<string, AppServerListener>();
  #current: Promise<RunningAppServer> | undefined;
  /** The process {@link #current} started, once spawned: its end clears `#current` for the next use. */
  #running: RunningAppServer | undefined;
  #closed = false;

  constructor(options: CodexAppServerOptions) {
    this.#options = options;
  }

  /** The running app-server, started when none runs. */
  session(): Promise<AppServerSession> {
    if (this.#closed) return Promise.reject(new LocalError(LocalErrorCode.ConnectionClosed, 'the Codex app-server client is closed'));
    this.#current ??= this.#start().catch((error: unknown) => {
      this.#current = undefined;
      throw error;
    });
    return this.#current;
  }

  /** Routes what the app-server says about Codex thread `codexThreadId` to `listener` until the returned function is called. */
  listen(codexThreadId: string, listener: AppServerListener): () => void {
    this.#listeners.set(codexThreadId, listener);
    return () => {
      if (this.#listeners.get(codexThreadId) === listener) this.#listeners.delete(codexThreadId);
    };
  }

  /** Stops the app-server (stdin EOF, then SIGTERM, then SIGKILL). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const current = this.#current;
    this.#current = undefined;
    await current?.then(
      (session) => session.close(),
      () => undefined,
    );
  }

  async #start(): Promise<RunningAppServer> {
    const { command, logger } = this.#options;
    try {
      await this.#options.beforeStart?.();
    } catch (error) {
      throw new LocalError(LocalErrorCode.ProcessFailed, `could not prepare the Codex app-server's start: ${errorMessage(error)}`, { cause: error });
    }
    const transport: ChildTransport = await spawnChildTransport(command, { logger, maxMessageBytes: APP_SERVER_MAX_MESSAGE_BYTES });
    const rpc = new RpcConnection(transport, { logger, maxMessageBytes: APP_SERVER_MAX_MESSAGE_BYTES });
    this.#route(rpc);
    rpc.start();
    const requestTimeoutMs = this.#options.requestTimeoutMs ?? DEFAULT_APP_SERVER_REQUEST_TIMEOUT_MS;
    const session: RunningAppServer = {
      loaded: new Set<string>(),
      environments: new Map<string, string>(),
      signal: rpc.signal,
      request: <P extends z.ZodType, R extends z.ZodType>(spec: MethodSpec<P, R>, params: z.input<P>, options: RequestOptions = {}) =>
        rpc.request(spec, params, { timeoutMs: requestTimeoutMs, ...options }),
      close: () => rpc.close(),
    };
    this.#running = session;
    void rpc.closed.then((reason) => {
      if (this.#running === session) {
        this.#running = undefined;
        this.#current = undefined;
      }
      const detail = transport.diagnostics();
      const why = `the Codex app-server stopped${reason === undefined ? '' : ` (${errorMessage(reason)})`}${detail === undefined ? '' : `; its stderr ends with: ${detail}`}`;
      if (!this.#closed) logger.warn(why);
      for (const listener of [...this.#listeners.values()]) listener.exited(why);
    });
    try {
      const answer = await rpc.request(
        InitializeMethod,
        {
          clientInfo: { name: 'codex-multienv', title: null, version: this.#options.clientVersion },
          capabilities: { experimentalApi: true, requestAttestation: false, optOutNotificationMethods: [...APP_SERVER_UNREAD_NOTIFICATIONS] },
        },
        { timeoutMs: this.#options.startTimeoutMs ?? DEFAULT_APP_SERVER_START_TIMEOUT_MS },
      );
      rpc.notify(InitializedNotification, {});
      logger.info('Codex app-server started', { userAgent: answer.userAgent });
    } catch (error) {
      await rpc.close();
      const detail = transport.diagnostics();
      throw new LocalError(
        LocalErrorCode.ProcessFailed,
        `could not start the Codex app-server (\`${command.program}\`): ${errorMessage(error)}${detail === undefined ? '' : `; its stderr ends with: ${detail}`}`,
        { cause: error },
      );
    }
    return session;
  }

  /** Wires notifications and approval requests to the listeners of the threads they name. */
  #route(rpc: RpcConnection): void {
    const to = (threadId: string): AppServerListener | undefined => this.#listeners.get(threadId);
    rpc.onNotification(ItemStartedNotification, (params) => to(params.threadId)?.event({ type: 'item_started', params }));
    rpc.onNotification(ItemCompletedNotification, (params) => to(params.threadId)?.event({ type: 'item_completed', params }));
    rpc.onNotification(TurnCompletedNotification, (params) => to(params.threadId)?.event({ type: 'turn_completed', params }));
    rpc.onNotification(TurnPlanUpdatedNotification, (params) => to(params.threadId)?.event({ type: 'plan_updated', params }));
    rpc.onNotification(TokenUsageUpdatedNotification, (params) => to(params.threadId)?.event({ type: 'token_usage', params }));
    rpc.onNotification(ErrorNotification, (params) => to(params.threadId)?.event({ type: 'error', params }));
    // Codex withdraws a request it no longer needs answered (the turn ended meanwhile).
    const asking = new Map<string, AbortController>();
    rpc.onNotification(ServerRequestResolvedNotification, (params) =>
      asking.get(String(params.requestId))?.abort(new LocalError(LocalErrorCode.Aborted, 'Codex no longer needs this answer')),
    );
    /** Asks the listener of `threadId`; a request about no turn of ours (one that ended) gets `refusal`: nobody can be asked. */
    const ask = async <A>(threadId: string, id: string | number, signal: AbortSignal, refusal: A, question: (listener: AppServerListener, signal: AbortSignal) => Promise<A>) => {
      const listener = to(threadId);
      if (listener === undefined) return refusal;
      const withdrawn = new AbortController();
      asking.set(String(id), withdrawn);
      try {
        return await question(listener, AbortSignal.any([signal, withdrawn.signal]));
      } finally {
        asking.delete(String(id));
      }
    };
    const declined = { decision: 'decline' as const };
    rpc.onRequest(CommandApprovalMethod, (params, context) =>
      ask(params.threadId, context.id, context.signal, declined, async (listener, signal) => ({ decision: await listener.commandApproval(params, signal) })),
    );
    rpc.onRequest(FileChangeApprovalMethod, (params, context) =>
      ask(params.threadId, context.id, context.signal, declined, async (listener, signal) => ({ decision: await listener.fileChangeApproval(params, signal) })),
    );
    rpc.onRequest(PermissionsApprovalMethod, (params, context) =>
      ask(params.threadId, context.id, context.signal, { permissions: {}, scope: 'turn' as const }, (listener, signal) => listener.permissionsApproval(params, signal)),
    );
    rpc.onRequest(McpElicitationMethod, (params, context) =>
      ask(params.threadId, context.id, context.signal, { action: 'decline' as const, content: null }, (listener, signal) => listener.mcpElicitation(params, signal)),
    );
  }
}
