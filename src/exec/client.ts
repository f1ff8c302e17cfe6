import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import {
  ProcessRead,
  ProcessSignal,
  ProcessStart,
  type ProcessStartParamsSchema,
  ProcessTerminate,
  ProcessWrite,
  type EnvironmentInfo,
  type EnvPolicy,
  type SandboxContext,
} from '../protocol/exec.js';
import { RpcErrorCode, type MethodSpec } from '../protocol/jsonrpc.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../protocol/limits.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, type RpcConnection, type RequestOptions } from '../rpc/connection.js';
import { RpcError } from '../rpc/errors.js';
import { abortReason, sleep } from '../util/abort.js';
import { encodeBase64 } from '../util/base64.js';
import { deferred, type Deferred } from '../util/deferred.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { handshake, type Attached, type ExecClientOptions, type ExecConnector } from './client-connect.js';
import { ExecFileSystem } from './client-fs.js';
import { withDefaultExcludesListed } from './env-policy.js';
import { pathToUri } from './path-uri.js';
import { connectionLostError, RemoteProcess, type ReconnectProgress } from './remote-process.js';

export { DEFAULT_INITIALIZE_TIMEOUT_MS, type ExecClientOptions, type ExecConnector } from './client-connect.js';
export type { FsRequestOptions } from './client-fs.js';

/**
 * How long a dropped websocket is retried with session resume (as the Codex client: 25 s). A
 * refused connection ends it at once: nothing listens there any more, so no session is left.
 */
export const DEFAULT_RECONNECT_WINDOW_MS = 25_000;
/** Pause between reconnect attempts. */
const RECONNECT_INTERVAL_MS = 100;
/**
 * Long-poll of a replay whose previous answer brought nothing while events still wait behind a
 * gap: the server is behind what it already notified, so wait for it instead of asking in a loop.
 */
const GAP_FILL_WAIT_MS = 1000;
/** How many dropped connections one `process/start` rides out before it gives up. */
const MAX_START_RECOVERIES = 3;
/**
 * The `process/read` and `process/start` refusals that settle whether a start happened. Both
 * servers answer them with -32600 and these words (see the protocol notes, section 6); the code
 * alone cannot tell them apart.
 */
const UNKNOWN_PROCESS = /unknown process id/;
const PROCESS_STARTING = /is starting/;
const DUPLICATE_PROCESS = /already exists/;

/** The connection state of a client. */
export type ExecClientState = 'connected' | 'reconnecting' | 'closed';

/** What to start; `cwd` is a native absolute path on the executor. */
export interface StartProcessParams {
  /** Assigned by the client when absent. */
  processId?: string;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  tty: boolean;
  pipeStdin?: boolean;
  arg0?: string | null;
  /**
   * How the executor builds the child's environment from its own; sent with the default excludes
   * listed in `exclude` (see {@link withDefaultExcludesListed}). Absent or null: exactly `env`.
   */
  envPolicy?: EnvPolicy | null;
  sandbox?: SandboxContext | null;
}

let processCounter = 0;

/**
 * A client of one exec-server session (ours or Codex's). Keeps an ordered event log per process,
 * resumes a dropped websocket session and replays missed output, and fails everything clearly
 * when the session is lost for good.
 */
export class ExecClient extends ExecFileSystem {
  readonly #connector: ExecConnector;
  readonly #options: ExecClientOptions;
  readonly #logger: Logger;
  readonly #processes: Map<string, RemoteProcess>;
  readonly #fills = new Set<string>();
  /** Processes whose `process/start` is unanswered; a resume leaves them to {@link ExecClient.startProcess}. */
  readonly #startsInFlight = new Set<string>();
  readonly #listeners = new Set<(state: ExecClientState, error?: Error) => void>();
  #attached: Attached;
  #sessionId: string;
  #info: EnvironmentInfo;
  #state: ExecClientState = 'connected';
  #reconnected?: Deferred<void>;
  #reconnectProgress?: ReconnectProgress;
  #closing = false;
  #lastError?: Error;

  private constructor(
    connector: ExecConnector,
    options: ExecClientOptions,
    first: { attached: Attached; sessionId: string; info: EnvironmentInfo },
    processes: Map<string, RemoteProcess>,
  ) {
    super();
    this.#processes = processes;
    this.#connector = connector;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#attached = first.attached;
    this.#sessionId = first.sessionId;
    this.#info = first.info;
    this.#watch(first.attached.connection);
  }

  /** Connects, initializes a fresh session and sends `initialized`. */
  static async connect(connector: ExecConnector, options: ExecClientOptions = {}): Promise<ExecClient> {
    const processes = new Map<string, RemoteProcess>();
    const first = await handshake(connector, options, undefined, (processId) => processes.get(processId));
    return new ExecClient(connector, options, first, processes);
  }

  /** What the executor said about itself at `initialize`. */
  get info(): EnvironmentInfo {
    return this.#info;
  }

  /** The session id; stable across resumed reconnects. */
  get sessionId(): string {
    return this.#sessionId;
  }

  /** The connection state. */
  get state(): ExecClientState {
    return this.#state;
  }

  /** The reconnect under way, while the state is `reconnecting`. */
  get reconnecting(): ReconnectProgress | undefined {
    return this.#state === 'reconnecting' && this.#reconnectProgress !== undefined ? { ...this.#reconnectProgress } : undefined;
  }

  /** Why the client was last disconnected, if it was. */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /** Label of the exec-server, for messages. */
  get label(): string {
    return this.#connector.label;
  }

  protected get maxMessageBytes(): number {
    return this.#options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** Subscribes to state changes; returns the unsubscribe function. */
  onStateChange(listener: (state: ExecClientState, error?: Error) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sends any exec-server request on the current connection (waiting out a reconnect). */
  async request<P extends z.ZodType, R extends z.ZodType>(spec: MethodSpec<P, R>, params: z.input<P>, options?: RequestOptions): Promise<z.output<R>> {
    const attached = await this.#current();
    return attached.connection.request(spec, params, options);
  }

  /**
   * Starts a process. The returned handle receives its events in order; it is registered before
   * the request is sent because output can arrive before the response.
   */
  async startProcess(params: StartProcessParams, options?: RequestOptions): Promise<RemoteProcess> {
    const processId = params.processId ?? `${++processCounter}-${randomUUID()}`;
    if (this.#processes.has(processId)) throw new LocalError(LocalErrorCode.InvalidArgument, `process id ${processId} is already in use`);
    const handle: RemoteProcess = new RemoteProcess(processId, {
      write: async (id, data) => (await this.request(ProcessWrite, { processId: id, chunk: encodeBase64(data), writeId: handle.nextWriteId() })).status,
      interrupt: async (id) => {
        await this.request(ProcessSignal, { processId: id, signal: 'interrupt' });
      },
      terminate: async (id) => (await this.request(ProcessTerminate, { processId: id })).running,
      reconnecting: () => this.reconnecting,
    });
    handle.requestFill = () => this.#fill(handle);
    // A finished process gets no more events: forget it, or a long-lived client would keep every
    // process it ever started (and walk them all after each reconnect).
    handle.onFinished = () => {
      if (this.#processes.get(processId) === handle) this.#processes.delete(processId);
    };
    this.#processes.set(processId, handle);
    try {
      const { sandbox, envPolicy, ...rest } = params;
      const policy = envPolicy === undefined ? {} : { envPolicy: envPolicy === null ? null : withDefaultExcludesListed(envPolicy) };
      await this.#start(handle, { ...rest, ...policy, sandbox: sandbox ?? null, processId, cwd: pathToUri(params.cwd) }, options);
    } catch (error) {
      if (this.#processes.get(processId) === handle) this.#processes.delete(processId);
      throw error;
    }
    return handle;
  }

  /**
   * Sends `process/start`. When the connection drops before the answer, the start may or may not
   * have happened. The process id is ours, so once the session is resumed the server is asked
   * about it, and the start is sent again (once per resumed connection) only when the server
   * does not know the id; a server refuses a second start of one id, so nothing runs twice.
   */
  async #start(handle: RemoteProcess, params: z.input<typeof ProcessStartParamsSchema>, options: RequestOptions | undefined): Promise<void> {
    let connection = (await this.#current()).connection;
    // An abort stays an abort; any other failure after the answer was lost leaves it uncertain.
    const unsettled = (error: unknown): Error => (options?.signal?.aborted === true ? abortReason(options.signal) : this.#startUncertain(handle, error));
    this.#startsInFlight.add(handle.id);
    try {
      let drops = 0;
      let resent = false;
      for (;;) {
        try {
          await connection.request(ProcessStart, params, options);
          return;
        } catch (error) {
          if (!isConnectionLoss(error)) {
            // The first start was still being handled when the probe asked: it did start.
            if (resent && isRefusal(error, DUPLICATE_PROCESS)) {
              if ((await this.#probeStart(handle, connection, options).catch((e: unknown) => unsettled(e))) === 'started') return;
              throw unsettled(error);
            }
            throw error;
          }
          if (!this.#connector.resumable) throw unsettled(error);
        }
        for (;;) {
          if (++drops > MAX_START_RECOVERIES) throw unsettled(new LocalError(LocalErrorCode.ConnectionClosed, `the connection dropped ${drops} times`));
          connection = await this.#resumedAfter(connection, options?.signal).catch((error: unknown) => {
            throw unsettled(error);
          });
          try {
            if ((await this.#probeStart(handle, connection, options)) === 'started') return;
            break;
          } catch (error) {
            // Dropped again: wait for the next resume and ask again.
            if (!isConnectionLoss(error)) throw unsettled(error);
          }
        }
        resent = true;
      }
    } finally {
      this.#startsInFlight.delete(handle.id);
    }
  }

  /**
   * Asks the server whether the process `handle` names exists, with a `process/read` that also
   * brings what it printed so far (its later events arrive as notifications on this connection).
   * A process still starting is asked about again until the request timeout.
   */
  async #probeStart(handle: RemoteProcess, connection: RpcConnection, options: RequestOptions | undefined): Promise<'started' | 'absent'> {
    const deadline = Date.now() + (options?.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    for (;;) {
      try {
        const result = await connection.request(ProcessRead, { processId: handle.id, afterSeq: handle.lastSeq, waitMs: 0 }, options);
        handle.acceptRead(result);
        if (handle.awaitingFill) this.#fill(handle);
        return 'started';
      } catch (error) {
        if (isRefusal(error, UNKNOWN_PROCESS)) return 'absent';
        if (!isRefusal(error, PROCESS_STARTING) || Date.now() >= deadline) throw error;
      }
      await sleep(RECONNECT_INTERVAL_MS, options?.signal);
    }
  }

  /** Waits until the client is attached to a connection other than `lost` (the session resumed). */
  async #resumedAfter(lost: RpcConnection, signal: AbortSignal | undefined): Promise<RpcConnection> {
    // The reconnect begins in the `closed` callback #watch registered first; waiting on the same
    // promise lets it begin before the state is read.
    await lost.closed;
    const resumed = this.#current();
    return (await (signal === undefined ? resumed : untilAborted(resumed, signal))).connection;
  }

  /** The error of a start whose answer was lost with the connection and that could not be settled. */
  #startUncertain(handle: RemoteProcess, cause: unknown): LocalError {
    return new LocalError(
      LocalErrorCode.ConnectionClosed,
      `the connection to ${this.label} was lost before it answered process/start of ${handle.id}, so the command may or may not have started on ${this.label}: ${errorMessage(cause)}`,
      { cause },
    );
  }

  /** HTTP through the executor (`http/request`), as a WHATWG fetch. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const attached = await this.#current();
    return attached.fetch(input, init);
  };

  /** Closes the connection; the server ends (stdio) or detaches (websocket) the session. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#setState('closed');
    this.#reconnected?.reject(new LocalError(LocalErrorCode.ConnectionClosed, `client of ${this.label} closed`));
    await this.#attached.connection.close();
    for (const handle of [...this.#processes.values()]) handle.fail(connectionLostError(this.label));
  }

  async #current(): Promise<Attached> {
    if (this.#state === 'connected') return this.#attached;
    if (this.#state === 'reconnecting' && this.#reconnected !== undefined) {
      await this.#reconnected.promise;
      return this.#attached;
    }
    throw new LocalError(LocalErrorCode.ConnectionClosed, `exec-server ${this.label} is disconnected${this.#lastError === undefined ? '' : `: ${this.#lastError.message}`}`, {
      cause: this.#lastError,
    });
  }

  #setState(state: ExecClientState, error?: Error): void {
    if (this.#state === state) return;
    this.#state = state;
    for (const listener of this.#listeners) listener(state, error);
  }

  #watch(connection: RpcConnection): void {
    void connection.closed.then((reason) => {
      if (this.#closing || connection !== this.#attached.connection) return;
      const error = connectionLostError(this.label, reason);
      this.#lastError = error;
      if (!this.#connector.resumable) {
        this.#lost(error);
        return;
      }
      void this.#reconnect(error);
    });
  }

  #lost(error: Error): void {
    this.#setState('closed', error);
    this.#reconnected?.reject(error);
    this.#reconnected = undefined;
    for (const handle of [...this.#processes.values()]) handle.fail(error);
  }

  async #reconnect(cause: Error): Promise<void> {
    const reconnected = deferred<void>();
    this.#reconnected = reconnected;
    // Nobody may be waiting; keep a rejection from being reported as unhandled.
    reconnected.promise.catch(() => undefined);
    const progress: ReconnectProgress = { server: this.label, since: Date.now(), attempts: 0, lastError: cause };
    this.#reconnectProgress = progress;
    this.#setState('reconnecting', cause);
    this.#logger.warn('exec-server connection dropped; resuming the session', { server: this.label, error: cause.message });
    const deadline = progress.since + (this.#options.reconnectWindowMs ?? DEFAULT_RECONNECT_WINDOW_MS);
    let refused = false;
    while (!this.#closing && Date.now() < deadline) {
      progress.attempts += 1;
      try {
        const route = (processId: string): RemoteProcess | undefined => this.#processes.get(processId);
        const resumed = await handshake(this.#connector, this.#options, this.#sessionId, route);
        this.#attached = resumed.attached;
        this.#info = resumed.info;
        this.#watch(resumed.attached.connection);
        this.#setState('connected');
        reconnected.resolve();
        this.#reconnected = undefined;
        for (const handle of this.#processes.values()) if (!handle.finished && !this.#startsInFlight.has(handle.id)) this.#fill(handle);
        this.#logger.info('exec-server session resumed', { server: this.label, session: this.#sessionId });
        return;
      } catch (error) {
        progress.lastError = error instanceof Error ? error : new Error(String(error));
        // Matched by its text, as nothing else tells it apart: Codex answers an unknown session
        // with -32600, the code of every invalid request, and no `data` (exec-server.md 5.4).
        if (error instanceof RpcError && error.code === RpcErrorCode.InvalidRequest && /unknown session id/.test(error.message)) break;
        // Nothing listens there any more (the exec-server died or was stopped), and a session
        // lives only in the process that listened: waiting out the window would only keep
        // reporting processes that are gone as merely unreachable.
        refused = error instanceof LocalError && error.code === LocalErrorCode.ConnectRefused;
        if (refused) break;
        await sleep(RECONNECT_INTERVAL_MS);
      }
    }
    if (this.#closing) return;
    const lastError = progress.lastError;
    const reason = refused ? `nothing listens there any more (connection refused), so the session cannot be resumed` : lastError.message;
    this.#lastError = new LocalError(LocalErrorCode.ConnectionClosed, `lost the session on ${this.label}: ${reason}`, { cause: lastError });
    this.#lost(this.#lastError);
  }

  /**
   * Replays what `handle` missed with `process/read`. One fill runs per process; a gap found while
   * it runs is left to it: after each answer it reads again while events are still held behind a
   * missing seq (an answer may have been computed before that gap existed), long-polling when the
   * server had nothing newer, so a process's held events are never left waiting for a fill nobody
   * requests.
   */
  #fill(handle: RemoteProcess): void {
    if (this.#fills.has(handle.id)) return;
    this.#fills.add(handle.id);
    void (async () => {
      try {
        let waitMs = 0;
        for (;;) {
          const afterSeq = handle.lastSeq;
          const result = await this.request(ProcessRead, { processId: handle.id, afterSeq, waitMs });
          handle.acceptRead(result);
          if (handle.finished) return;
          const progressed = handle.lastSeq !== afterSeq;
          // Output came: there may be more. Otherwise stop unless events still wait behind a gap.
          if (!(progressed && result.chunks.length > 0) && !handle.awaitingFill) return;
          waitMs = progressed ? 0 : GAP_FILL_WAIT_MS;
        }
      } catch (error) {
        this.#fillFailed(handle, error);
      } finally {
        this.#fills.delete(handle.id);
      }
    })();
  }

  /**
   * A replay failed. A lost connection is the reconnect's business (it fills every process again
   * once resumed, or fails them all); anything else would leave the process's held events waiting
   * forever, so the process fails with the reason instead.
   */
  #fillFailed(handle: RemoteProcess, error: unknown): void {
    const connectionLost = error instanceof LocalError && error.code === LocalErrorCode.ConnectionClosed;
    if (this.#closing || connectionLost || !handle.awaitingFill) {
      this.#logger.debug('process/read replay failed', { process: handle.id, error: errorMessage(error) });
      return;
    }
    this.#logger.warn('process/read replay failed; the process has missed events', { server: this.label, process: handle.id, error: errorMessage(error) });
    handle.fail(
      new LocalError(LocalErrorCode.ProtocolViolation, `events of process ${handle.id} on ${this.label} were missed and could not be replayed: ${errorMessage(error)}`, {
        cause: error,
      }),
    );
  }
}

/** True when a request failed because its connection was lost, not because the server refused it. */
function isConnectionLoss(error: unknown): boolean {
  return error instanceof LocalError && error.code === LocalErrorCode.ConnectionClosed;
}

/** True for the server's -32600 refusal whose message matches `pattern`. */
function isRefusal(error: unknown, pattern: RegExp): boolean {
  return error instanceof RpcError && error.code === RpcErrorCode.InvalidRequest && pattern.test(error.message);
}

/** Settles as `promise` does, or rejects with the signal's reason when it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
