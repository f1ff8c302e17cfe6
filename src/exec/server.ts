import { randomUUID } from 'node:crypto';
import { access, constants as fsConstants } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve as resolvePath } from 'node:path';
import {
  EnvironmentInfoMethod,
  EnvironmentStatus,
  Initialize,
  Initialized,
  ProcessClosed,
  ProcessExited,
  ProcessOutput,
  ProcessRead,
  ProcessSignal,
  ProcessStart,
  ProcessTerminate,
  ProcessWrite,
} from '../protocol/exec.js';
import { RpcErrorCode } from '../protocol/jsonrpc.js';
import { DEFAULT_MAX_MESSAGE_BYTES, maxBase64PayloadBytes } from '../protocol/limits.js';
import { withBytes } from '../rpc/base64-field.js';
import { RpcConnection } from '../rpc/connection.js';
import { RpcError } from '../rpc/errors.js';
import type { MessageTransport } from '../transport/transport.js';
import { decodeBase64 } from '../util/base64.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { buildChildEnv } from './env-policy.js';
import { describeHost, type HostFacts } from './environment-info.js';
import { createFsSessionState, registerFsHandlers, type FsSessionState } from './fs-handlers.js';
import { registerHttpHandlers } from './http-handler.js';
import { uriToPath } from './path-uri.js';
import { DEFAULT_RETAINED_OUTPUT_BYTES, ManagedProcess, type ProcessEvent } from './process.js';
import { ReadBudget } from './read-budget.js';
import { bwrapArgs, createBwrapProbe, requireBwrap, type BwrapProbe } from './bwrap.js';
import { parseSandboxRequest } from './sandbox-policy.js';
import type { NetworkSettings } from '../transport/network.js';

/** How long a detached websocket session can be resumed (Codex 0.169 observed ~80 s). */
export const DEFAULT_SESSION_RETENTION_MS = 80_000;
/** Bound on processes alive at once in one session. */
export const DEFAULT_MAX_PROCESSES_PER_SESSION = 256;
/** How long a finished process keeps its retained output for late `process/read`s. */
export const DEFAULT_EXITED_OUTPUT_RETENTION_MS = 5 * 60_000;

/** Options of {@link ExecServer}. */
export interface ExecServerOptions {
  /** The server's own environment: the base of `envPolicy` and `valueEnvVar`. */
  env: Readonly<Record<string, string | undefined>>;
  /**
   * How `http/request` reaches HTTP servers: the proxies and extra roots of `env` as Codex reads
   * them (`cli/` makes them with `networkSettings(env)`). @default direct, trusting Node.js's roots
   */
  network?: NetworkSettings;
  /** Facts reported by `environment/info`. */
  host: HostFacts;
  logger?: Logger;
  /** @default DEFAULT_SESSION_RETENTION_MS */
  sessionRetentionMs?: number;
  /** @default DEFAULT_MAX_PROCESSES_PER_SESSION */
  maxProcessesPerSession?: number;
  /** @default DEFAULT_RETAINED_OUTPUT_BYTES */
  retainedOutputBytes?: number;
  /** @default DEFAULT_EXITED_OUTPUT_RETENTION_MS */
  exitedOutputRetentionMs?: number;
  /**
   * Says whether bubblewrap can confine commands here (and where it is); asked once, on the first
   * sandboxed request. @default createBwrapProbe()
   */
  bwrapProbe?: () => Promise<BwrapProbe>;
  /**
   * Start piped commands with the native `posix_spawn` starter when it is built; false uses
   * Node.js's `child_process`. @default true
   */
  nativeStarter?: boolean;
  /**
   * How long piped output is gathered into one event after an output event: fewer, larger
   * messages for a client across a wire. 0: no gathering, for a client in this process, which
   * pays nothing per event and would only pay the gathering's copies and timers.
   * @default OUTPUT_WINDOW_MS (exec/output-gather.ts)
   */
  outputWindowMs?: number;
  /**
   * Largest message sent to a client (what clients accept; set the transports' incoming limit to
   * the same). Whole-file reads and buffered HTTP bodies are bounded by what fits in one.
   * @default DEFAULT_MAX_MESSAGE_BYTES
   */
  maxMessageBytes?: number;
  /**
   * Largest file `fs/readFile` returns. @default the largest whose base64 fits in a message:
   * `maxBase64PayloadBytes(maxMessageBytes)`, DEFAULT_MAX_WHOLE_FILE_BYTES by default
   */
  maxReadFileBytes?: number;
  /**
   * The memory budget `fs/readFile` and `fs/readBlock` share across every session and connection;
   * reads beyond it wait. @default new ReadBudget(): DEFAULT_READ_MEMORY_BUDGET_BYTES, waits of
   * at most DEFAULT_READ_BUDGET_WAIT_MS
   */
  readBudget?: ReadBudget;
}

/** What `process/start` reports for a confined process: the Linux sandbox value Codex clients know. */
export const LINUX_SANDBOX_TYPE = 'linuxSeccomp';

/** Options of {@link ExecServer.serve}. */
export interface ServeOptions {
  /**
   * When the connection drops, keep the session (and its processes) for resumption instead of
   * ending it. True for websockets; false for stdio and in-process connections.
   */
  resumable: boolean;
}

type Handshake = 'new' | 'initializing' | 'awaiting-initialized' | 'ready';

const FAMILIES: Record<string, string> = { process: 'exec', fs: 'filesystem', http: 'http' };

/** A session owns processes and file handles; it outlives a websocket connection. */
class Session {
  readonly processes = new Map<string, ManagedProcess | 'starting'>();
  readonly fs: FsSessionState = createFsSessionState();
  readonly #paused = new Set<ManagedProcess>();
  attached?: RpcConnection;
  #expiry?: NodeJS.Timeout;
  #ended = false;

  constructor(
    readonly id: string,
    private readonly server: ExecServer,
  ) {}

  get ended(): boolean {
    return this.#ended;
  }

  liveProcessCount(): number {
    let count = 0;
    for (const entry of this.processes.values()) if (entry === 'starting' || entry.running) count++;
    return count;
  }

  attach(connection: RpcConnection): void {
    clearTimeout(this.#expiry);
    this.#expiry = undefined;
    this.attached = connection;
  }

  detach(retentionMs: number): void {
    this.attached = undefined;
    // Nobody is listening: keep reading output into the retention ring.
    for (const process of this.#paused) process.resume();
    this.#paused.clear();
    this.#expiry = setTimeout(() => void this.end(), retentionMs);
    this.#expiry.unref();
  }

  forward(processId: string, process: ManagedProcess, event: ProcessEvent): void {
    const connection = this.attached;
    if (connection === undefined) return;
    let ok: boolean;
    switch (event.kind) {
      case 'output':
        ok = connection.notify(ProcessOutput, withBytes({ processId, seq: event.seq, stream: event.stream, chunk: event.data }));
        break;
      case 'exited':
        ok = connection.notify(ProcessExited, { processId, seq: event.seq, exitCode: event.exitCode, sandboxDenied: event.sandboxDenied });
        break;
      case 'closed':
        ok = connection.notify(ProcessClosed, { processId, seq: event.seq });
        break;
    }
    if (!ok && !this.#paused.has(process)) {
      this.#paused.add(process);
      process.pause();
      void connection.waitForDrain().then(() => {
        if (this.#paused.delete(process)) process.resume();
      });
    }
  }

  async end(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#expiry);
    // The whole group of every process, also of those whose leader exited: a background job
    // (`server &`) must not outlive the session.
    for (const entry of this.processes.values()) if (entry !== 'starting') entry.killGroup();
    await this.fs.closeAll();
    this.server.forget(this);
  }
}

/**
 * A Codex-compatible exec-server: sessions with processes, files and HTTP, served over any
 * transport. The same handlers serve remote clients and the in-process `local` environment.
 */
export class ExecServer {
  readonly #options: ExecServerOptions;
  readonly #logger: Logger;
  readonly #sessions = new Map<string, Session>();
  readonly #connections = new Set<RpcConnection>();
  readonly #bwrapProbe: () => Promise<BwrapProbe>;
  readonly #maxMessageBytes: number;
  /** Shared by every connection, so that reads are bounded together. */
  readonly #readBudget: ReadBudget;

  constructor(options: ExecServerOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#bwrapProbe = options.bwrapProbe ?? createBwrapProbe('bwrap', options.env.PATH);
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#readBudget = options.readBudget ?? new ReadBudget();
  }

  /**
   * Whether this host can confine commands, and with which bubblewrap: the answer sandboxed
   * `process/start`s get (asked once, then cached).
   */
  sandboxAvailability(): Promise<BwrapProbe> {
    return this.#bwrapProbe();
  }

  /** Sessions currently alive (attached or detached). */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** @internal Called by a session that ended. */
  forget(session: Session): void {
    this.#sessions.delete(session.id);
  }

  /** Serves one connection until it closes. */
  serve(transport: MessageTransport, options: ServeOptions): RpcConnection {
    let handshake: Handshake = 'new';
    let session: Session | undefined;
    const connection: RpcConnection = new RpcConnection(transport, {
      logger: this.#logger,
      maxMessageBytes: this.#maxMessageBytes,
      methodNotFoundMessage: (method) => `exec-server stub does not implement \`${method}\` yet`,
      guard: (method) => {
        const family = FAMILIES[method.split('/')[0] ?? ''];
        if (family === undefined || handshake === 'ready') return undefined;
        return RpcError.invalidRequest(
          handshake === 'new' || handshake === 'initializing'
            ? `client must call initialize before using ${family} methods`
            : `client must send initialized before using ${family} methods`,
        );
      },
      onUnknownNotification: (method) => {
        this.#logger.warn('closing connection after an unexpected notification (a client sends only `initialized`)', { method, from: connection.label });
        void connection.close();
      },
      onUnsolicitedResponse: () => {
        this.#logger.warn('closing connection after an unsolicited response', { from: connection.label });
        void connection.close();
      },
    });

    connection.onRequest(Initialize, (params) => {
      if (handshake !== 'new') throw RpcError.invalidRequest('initialize may only be sent once per connection');
      let target: Session;
      if (params.resumeSessionId !== undefined && params.resumeSessionId !== null) {
        const existing = this.#sessions.get(params.resumeSessionId);
        if (existing === undefined || existing.ended) throw RpcError.invalidRequest(`unknown session id ${params.resumeSessionId}`);
        if (existing.attached !== undefined && !existing.attached.isClosed) {
          throw new RpcError(RpcErrorCode.SessionAlreadyAttached, `session ${existing.id} is already attached to another connection`);
        }
        target = existing;
      } else {
        target = new Session(randomUUID(), this);
        this.#sessions.set(target.id, target);
      }
      handshake = 'awaiting-initialized';
      session = target;
      target.attach(connection);
      this.#registerSessionHandlers(connection, target);
      this.#logger.debug('session attached', { session: target.id, client: params.clientName, resumed: target.id === params.resumeSessionId });
      return { sessionId: target.id, environmentInfo: describeHost(this.#options.host) };
    });
    connection.onNotification(Initialized, () => {
      if (handshake !== 'awaiting-initialized') {
        this.#logger.warn('closing connection: initialized before initialize', { from: connection.label });
        void connection.close();
        return;
      }
      handshake = 'ready';
    });
    connection.onRequest(EnvironmentInfoMethod, () => describeHost(this.#options.host));
    connection.onRequest(EnvironmentStatus, () => ({ status: 'ready' }));
    registerHttpHandlers(connection, {
      env: this.#options.env,
      ...(this.#options.network === undefined ? {} : { network: this.#options.network }),
      maxBufferedBodyBytes: maxBase64PayloadBytes(this.#maxMessageBytes),
    });

    this.#connections.add(connection);
    void connection.closed.then(() => {
      this.#connections.delete(connection);
      if (session === undefined || session.attached !== connection) return;
      if (options.resumable) session.detach(this.#options.sessionRetentionMs ?? DEFAULT_SESSION_RETENTION_MS);
      else void session.end();
    });
    connection.start();
    return connection;
  }

  /** Ends every session (killing their processes) and closes every connection. */
  async close(): Promise<void> {
    await Promise.all([...this.#connections].map((connection) => connection.close()));
    await Promise.all([...this.#sessions.values()].map((session) => session.end()));
  }

  #registerSessionHandlers(connection: RpcConnection, session: Session): void {
    const options = this.#options;
    const sandboxHost = { tempDir: options.host.tempDir };
    registerFsHandlers(connection, session.fs, {
      sandboxHost,
      maxReadFileBytes: options.maxReadFileBytes ?? maxBase64PayloadBytes(this.#maxMessageBytes),
      readBudget: this.#readBudget,
    });
    const bwrapProbe = this.#bwrapProbe;

    connection.onRequest(ProcessStart, async (params) => {
      if (params.argv.length === 0) throw RpcError.invalidParams('argv must not be empty');
      const cwd = uriToPath(params.cwd);
      const policy = parseSandboxRequest(params.sandbox, sandboxHost);
      // Confinement is needed unless the request leaves both the filesystem and the network open.
      const confine = policy !== undefined && (policy.restrictedFileSystem || !policy.network);
      const bwrap = confine ? await requireBwrap(bwrapProbe) : undefined;
      if (session.processes.has(params.processId)) throw RpcError.invalidRequest(`process ${params.processId} already exists`);
      const limit = options.maxProcessesPerSession ?? DEFAULT_MAX_PROCESSES_PER_SESSION;
      if (session.liveProcessCount() >= limit) {
        throw RpcError.invalidRequest(`too many running processes in this session (limit ${limit}); terminate some before starting more`);
      }
      session.processes.set(params.processId, 'starting');
      try {
        const env = buildChildEnv(options.env, params.envPolicy, params.env);
        const file = await resolveExecutable(params.argv[0] ?? '', cwd, [env.PATH, options.env.PATH]);
        const tty = params.tty;
        const spec =
          bwrap === undefined || policy === undefined
            ? { file, argv: params.argv, arg0: params.arg0 ?? undefined }
            : { file: bwrap, argv: [bwrap, ...bwrapArgs(policy, { file, argv: params.argv, cwd, tty })], sandboxed: true };
        const process = await ManagedProcess.spawn(
          { ...spec, cwd, env, tty, pipeStdin: params.pipeStdin === true },
          {
            retainedOutputBytes: options.retainedOutputBytes ?? DEFAULT_RETAINED_OUTPUT_BYTES,
            nativeStarter: options.nativeStarter,
            outputWindowMs: options.outputWindowMs,
            onEvent: (event) => {
              session.forward(params.processId, process, event);
              if (event.kind === 'closed') {
                setTimeout(() => process.releaseOutput(), options.exitedOutputRetentionMs ?? DEFAULT_EXITED_OUTPUT_RETENTION_MS).unref();
              }
            },
          },
        );
        if (session.ended) process.killGroup();
        session.processes.set(params.processId, process);
        return { processId: params.processId, sandboxType: bwrap === undefined ? 'none' : LINUX_SANDBOX_TYPE };
      } catch (error) {
        session.processes.delete(params.processId);
        throw error instanceof RpcError ? error : RpcError.internal(errorMessage(error));
      }
    });

    connection.onRequest(ProcessRead, async (params) => {
      const entry = session.processes.get(params.processId);
      if (entry === undefined) throw RpcError.invalidRequest(`unknown process id ${params.processId}`);
      if (entry === 'starting') throw RpcError.invalidRequest(`process id ${params.processId} is starting`);
      const read = await entry.read({
        afterSeq: params.afterSeq ?? 0,
        maxBytes: params.maxBytes ?? undefined,
        waitMs: params.waitMs ?? 0,
        signal: connection.signal,
      });
      return withBytes(read);
    });

    connection.onRequestWithBytes(ProcessWrite, 'chunk', (params) => {
      const entry = session.processes.get(params.processId);
      if (entry === undefined) return { status: 'unknownProcess' as const };
      if (entry === 'starting') return { status: 'starting' as const };
      const bytes = typeof params.chunk === 'string' ? decodeBase64(params.chunk) : params.chunk;
      if (bytes === undefined) throw RpcError.invalidParams('process/write requires valid base64 chunk');
      return { status: entry.write(bytes, params.writeId) };
    });

    connection.onRequest(ProcessSignal, (params) => {
      const entry = session.processes.get(params.processId);
      if (entry !== undefined && entry !== 'starting') entry.interrupt();
      return {};
    });

    connection.onRequest(ProcessTerminate, (params) => {
      const entry = session.processes.get(params.processId);
      if (entry === undefined || entry === 'starting') return { running: false };
      return { running: entry.terminate() };
    });
  }
}

/**
 * Resolves argv[0] like the Codex exec-server: a name with a slash is taken relative to cwd,
 * a bare name is searched on the child's PATH and then the server's, so commands work even when
 * the child's environment has no PATH.
 */
async function resolveExecutable(program: string, cwd: string, paths: readonly (string | undefined)[]): Promise<string> {
  if (program.includes('/')) return isAbsolute(program) ? program : resolvePath(cwd, program);
  for (const pathList of paths) {
    for (const dir of (pathList ?? '').split(delimiter)) {
      if (dir.length === 0) continue;
      const candidate = join(dir, program);
      try {
        await access(candidate, fsConstants.X_OK);
        return candidate;
      } catch {
        // Keep looking.
      }
    }
  }
  throw RpcError.internal('No such file or directory (os error 2)');
}
