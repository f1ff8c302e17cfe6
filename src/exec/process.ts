import type { IPty } from '@lydell/node-pty';
import type { OutputStream, WriteStatus } from '../protocol/exec.js';
import { RpcError } from '../rpc/errors.js';
import { abortReason } from '../util/abort.js';
import { ioError } from './io-errors.js';
import { OUTPUT_WINDOW_MS, OutputGather } from './output-gather.js';
import { OutputRing } from './output-ring.js';
import { startPiped, type PipedChild, type PipedEvents, type PipedSpec } from './piped-start.js';
import { startTerminal, type TerminalChild, type TerminalEvents } from './terminal-start.js';

/** Default bytes of recent output retained per process for `process/read` (as Codex: ~1 MiB). */
export const DEFAULT_RETAINED_OUTPUT_BYTES = 1024 * 1024;

/** An event of a process's log; `seq` is shared by all kinds and starts at 1. */
export type ProcessEvent =
  { kind: 'output'; seq: number; stream: OutputStream; data: Buffer } | { kind: 'exited'; seq: number; exitCode: number; sandboxDenied: boolean } | { kind: 'closed'; seq: number };

/** What to spawn; paths are native and already validated. */
export interface SpawnSpec extends PipedSpec {
  tty: boolean;
  /**
   * The process runs confined (under bubblewrap): a failure whose output looks like a denial is
   * reported as `sandboxDenied`, so a client can offer to re-run it outside the sandbox.
   * @default false
   */
  sandboxed?: boolean;
}

/** How long a confined process's exit waits for its output to drain, so the denial check sees it. */
const SANDBOXED_EXIT_DRAIN_MS = 250;
/**
 * node-pty (used only where the native starter is not built) closes the terminal 200 ms after its
 * process exits, losing output a busy event loop had not read by then: `closed` waits until the
 * terminal has been quiet for PTY_QUIET_MS, at most PTY_EXIT_DRAIN_MS.
 */
const PTY_QUIET_MS = 10;
const PTY_EXIT_DRAIN_MS = 250;
/** Bytes of recent output the denial check looks at. */
const DENIAL_SCAN_BYTES = 16 * 1024;
/** What confined programs print when the sandbox stopped them (lower case). */
const DENIAL_MARKERS = ['operation not permitted', 'permission denied', 'read-only file system', 'network is unreachable', 'bwrap:'];

/** Options of {@link ManagedProcess.spawn}. */
export interface ManagedProcessOptions {
  /** @default DEFAULT_RETAINED_OUTPUT_BYTES */
  retainedOutputBytes?: number;
  /** Receives every event as it happens. */
  onEvent: (event: ProcessEvent) => void;
  /**
   * Start piped commands with the native starter when it loads. Terminals start with it whenever
   * it loads: node-pty, the alternative, can lose a terminal's last output.
   * @default true
   */
  nativeStarter?: boolean;
  /** How long piped output is gathered after an output event (see {@link OUTPUT_WINDOW_MS}); 0: not at all. @default OUTPUT_WINDOW_MS */
  outputWindowMs?: number;
}

/**
 * A `process/read` result whose chunks hold the output's bytes: base64 only where a wire carries
 * it (send it with `withBytes`), the Buffers themselves to an in-process client.
 */
export type ProcessReadBytes = {
  chunks: { seq: number; stream: OutputStream; chunk: Buffer }[];
  nextSeq: number;
  exited: boolean;
  exitCode: number | null;
  closed: boolean;
  failure: null;
  sandboxDenied: boolean;
};

/** Options of {@link ManagedProcess.read}. */
export interface ReadOptions {
  afterSeq: number;
  maxBytes?: number;
  waitMs: number;
  signal: AbortSignal;
}

const PTY_COLS = 80;
const PTY_ROWS = 24;

/**
 * One process started by `process/start`: its ordered event log, the retained output ring, stdin
 * with idempotent writes, and signals to its whole process group.
 */
export class ManagedProcess {
  readonly #retained: OutputRing;
  readonly #writeIds = new Set<string>();
  readonly #waiters = new Set<() => void>();
  readonly #onEvent: (event: ProcessEvent) => void;
  #seq = 0;
  #exitCode: number | null = null;
  #exitSeq: number | null = null;
  #sandboxDenied = false;
  readonly #sandboxed: boolean;
  #closed = false;
  /** Piped output held in an output window or while paused. */
  readonly #gather: OutputGather;
  /** When output last arrived (ms since the epoch), for the terminal's drain after exit. */
  #lastOutputAt = 0;
  #child?: PipedChild;
  /** A terminal the native starter started. */
  #terminal?: TerminalChild;
  #pty?: IPty;
  #stdinOpen: boolean;
  /**
   * False once the process group is known to be empty. The group id is the leader's pid, and
   * Linux does not hand that number out again while the group has a member, so after the leader
   * exited the group is signalled only while this holds and a check finds members.
   */
  #groupMayHaveMembers = true;

  private constructor(
    readonly pid: number,
    spec: SpawnSpec,
    options: ManagedProcessOptions,
  ) {
    this.#retained = new OutputRing(options.retainedOutputBytes ?? DEFAULT_RETAINED_OUTPUT_BYTES);
    this.#onEvent = options.onEvent;
    this.#stdinOpen = spec.tty || spec.pipeStdin;
    this.#sandboxed = spec.sandboxed === true;
    this.#gather = new OutputGather(
      (stream, data) => this.#emitOutput(stream, data),
      () => this.#stopReading(),
      options.outputWindowMs ?? OUTPUT_WINDOW_MS,
    );
  }

  /** Starts the process; rejects with the wire error Codex gives (e.g. a missing cwd is -32603). */
  static async spawn(spec: SpawnSpec, options: ManagedProcessOptions): Promise<ManagedProcess> {
    return spec.tty ? ManagedProcess.#spawnPty(spec, options) : ManagedProcess.#spawnPiped(spec, options);
  }

  static async #spawnPiped(spec: SpawnSpec, options: ManagedProcessOptions): Promise<ManagedProcess> {
    // The child's events arrive in later turns of the event loop, after `started.process` is set.
    const started: { process?: ManagedProcess } = {};
    let pendingExit: number | undefined;
    const events: PipedEvents = {
      onExit: (exitCode) => {
        const process = started.process;
        if (process === undefined) return;
        if (!process.#sandboxed) {
          process.#exited(exitCode);
          return;
        }
        // Confined: the PID namespace dies with the command, so the pipes close at once; waiting
        // for them lets the denial check see the whole output. Bounded, so exit is never withheld.
        pendingExit = exitCode;
        setTimeout(() => process.#exited(exitCode), SANDBOXED_EXIT_DRAIN_MS).unref();
      },
      onClose: () => {
        const process = started.process;
        if (process === undefined) return;
        if (pendingExit !== undefined) process.#exited(pendingExit);
        process.#markClosed();
      },
    };
    let child: PipedChild;
    try {
      child = await startPiped(spec, events, { native: options.nativeStarter });
    } catch (error) {
      throw ioError(error);
    }
    const process = new ManagedProcess(child.pid, spec, options);
    started.process = process;
    process.#child = child;
    child.stdin?.on('error', () => undefined);
    child.stdout.onData((data) => process.#output('stdout', data));
    child.stderr.onData((data) => process.#output('stderr', data));
    return process;
  }

  static async #spawnPty(spec: SpawnSpec, options: ManagedProcessOptions): Promise<ManagedProcess> {
    // As node-pty does: the terminal type, `dumb` unless the environment names one, and PWD.
    const env = { ...spec.env, TERM: spec.env.TERM ?? 'dumb', PWD: spec.cwd };
    // The terminal's events arrive in later turns of the event loop, after `started.process` is set.
    const started: { process?: ManagedProcess } = {};
    const events: TerminalEvents = {
      onOutput: (data) => {
        if (started.process !== undefined) started.process.#output('pty', data);
      },
      onExit: (exitCode) => {
        if (started.process !== undefined) started.process.#exited(exitCode);
      },
      onClose: () => {
        if (started.process !== undefined) started.process.#markClosed();
      },
    };
    let terminal;
    try {
      terminal = await startTerminal({ ...spec, env, cols: PTY_COLS, rows: PTY_ROWS }, events);
    } catch (error) {
      throw ioError(error);
    }
    if (terminal === undefined) return ManagedProcess.#spawnNodePty({ ...spec, env }, options);
    const process = new ManagedProcess(terminal.pid, spec, options);
    started.process = process;
    process.#terminal = terminal;
    return process;
  }

  /** Where the native starter is not built (not Linux, no C compiler). */
  static async #spawnNodePty(spec: SpawnSpec, options: ManagedProcessOptions): Promise<ManagedProcess> {
    // Loaded on first use: most sessions never open a terminal, and start-up time matters.
    const { spawn: spawnPty } = await import('@lydell/node-pty');
    let pty: IPty;
    try {
      pty = spawnPty(spec.file, [...spec.argv.slice(1)], {
        name: spec.env.TERM ?? 'dumb',
        cols: PTY_COLS,
        rows: PTY_ROWS,
        cwd: spec.cwd,
        env: spec.env,
        encoding: null,
      });
    } catch (error) {
      throw RpcError.internal(`failed to start a terminal: ${error instanceof Error ? error.message : String(error)}`);
    }
    const process = new ManagedProcess(pty.pid, spec, options);
    process.#pty = pty;
    pty.onData((data: string | Buffer) => process.#output('pty', typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
    pty.onExit(({ exitCode, signal }) => {
      process.#exited(signal !== undefined && signal > 0 ? 128 + signal : exitCode);
      const deadline = Date.now() + PTY_EXIT_DRAIN_MS;
      const settle = (): void => {
        const now = Date.now();
        const quietFor = now - process.#lastOutputAt;
        if (quietFor >= PTY_QUIET_MS || now >= deadline) process.#markClosed();
        else setTimeout(settle, PTY_QUIET_MS - quietFor).unref();
      };
      setTimeout(settle, PTY_QUIET_MS).unref();
    });
    return process;
  }

  /** True once the process has exited and its output is drained. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes of piped output held and not yet emitted: in an output window, or read ahead while paused (see {@link ManagedProcess.pause}). */
  get heldBytes(): number {
    return this.#gather.heldBytes;
  }

  /** True while the process has not exited. */
  get running(): boolean {
    return this.#exitCode === null;
  }

  /**
   * Reads retained output after `afterSeq`, long-polling up to `waitMs` for something new. The
   * chunks are the bytes (copies), not base64 (see {@link ProcessReadBytes}).
   */
  async read(options: ReadOptions): Promise<ProcessReadBytes> {
    const deadline = Date.now() + options.waitMs;
    for (;;) {
      const result = this.#collect(options.afterSeq, options.maxBytes);
      const exitUnseen = this.#exitSeq !== null && this.#exitSeq > options.afterSeq;
      const remaining = deadline - Date.now();
      if (result.chunks.length > 0 || this.#closed || exitUnseen || remaining <= 0) return result;
      await this.#waitForChange(remaining, options.signal);
    }
  }

  /** Writes to stdin; a repeated `writeId` is accepted but not delivered again. */
  write(chunk: Buffer, writeId: string): WriteStatus {
    if (!this.#stdinOpen || this.#exitCode !== null) return 'stdinClosed';
    if (this.#writeIds.has(writeId)) return 'accepted';
    this.#writeIds.add(writeId);
    if (chunk.length === 0) return 'accepted';
    if (this.#terminal !== undefined) this.#terminal.write(chunk);
    // With `encoding: null` node-pty writes straight to its socket, which takes raw bytes; its
    // typings only say string.
    else if (this.#pty !== undefined) (this.#pty.write as (data: string | Buffer) => void).call(this.#pty, chunk);
    else this.#child?.stdin?.write(chunk);
    return 'accepted';
  }

  /** Sends SIGINT to the process group. */
  interrupt(): void {
    this.#signalGroup('SIGINT');
  }

  /**
   * Sends SIGKILL to the process group; returns whether the process was still running. An exited
   * process's group is left alone, as Codex does (clients terminate every process once it closed,
   * and a command may have started a background job on purpose).
   */
  terminate(): boolean {
    if (this.#exitCode !== null) return false;
    this.#signalGroup('SIGKILL');
    return true;
  }

  /**
   * Kills whatever is left of the process: its leader if running, and every member of its process
   * group even after the leader exited (`sleep 60 & echo bye`). For the end of its session.
   */
  killGroup(): void {
    if (this.#exitCode === null) {
      this.#signalGroup('SIGKILL');
      return;
    }
    if (!this.#groupHasMembers()) return;
    this.#groupMayHaveMembers = false;
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // Emptied meanwhile.
    }
  }

  /**
   * Back-pressure: the consumer of the events is behind. Piped output is then read ahead into a
   * hold of at most 512 KiB ({@link OutputGather}), and only a full hold stops reading (the child then
   * blocks once its pipe is full). The pipe never waits for the consumer that way, and the hold
   * goes out on {@link ManagedProcess.resume} in full-size events instead of as many pipe-sized
   * ones: a 4 KiB read costs a wire message about as much as a 64 KiB one. Held output is not yet
   * in the event log (no seq, not retained), as if still in the pipe. A terminal started by the
   * native starter just stops being read (its output is interactive-sized; it is drained in full
   * after the exit all the same).
   */
  pause(): void {
    // node-pty's terminal is never paused: it destroys its socket 200 ms after the child exits if
    // the socket has not closed by then, so output left unread while paused would be lost.
    this.#terminal?.pause();
    if (this.#child !== undefined) this.#gather.pause();
  }

  /** Emits the held output and resumes reading. */
  resume(): void {
    // Emitting may pause again (the consumer still behind): reading resumes into a new hold then.
    this.#gather.resume();
    this.#child?.stdout.resume();
    this.#child?.stderr.resume();
    this.#terminal?.resume();
  }

  /** Drops retained output of a finished process to free memory; its id stays taken. */
  releaseOutput(): void {
    this.#retained.clear();
  }

  /** Whether the group still has members; only meaningful once the leader has exited and been reaped. */
  #groupHasMembers(): boolean {
    if (!this.#groupMayHaveMembers) return false;
    try {
      process.kill(-this.pid, 0);
      return true;
    } catch (error) {
      // EPERM: members exist that this user may not signal.
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') return true;
      this.#groupMayHaveMembers = false;
      return false;
    }
  }

  #signalGroup(signal: NodeJS.Signals): void {
    if (this.#exitCode !== null) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      try {
        process.kill(this.pid, signal);
      } catch {
        // Already gone.
      }
    }
  }

  #collect(afterSeq: number, maxBytes: number | undefined): ProcessReadBytes {
    const chunks: ProcessReadBytes['chunks'] = [];
    let bytes = 0;
    let cutShort = false;
    for (const retained of this.#retained.chunks) {
      if (retained.seq <= afterSeq) continue;
      // At least one chunk is returned even when it alone exceeds the budget; chunks are never split.
      if (maxBytes !== undefined && chunks.length > 0 && bytes + retained.length > maxBytes) {
        cutShort = true;
        break;
      }
      chunks.push({ seq: retained.seq, stream: retained.stream, chunk: this.#retained.read(retained) });
      bytes += retained.length;
    }
    const last = chunks[chunks.length - 1];
    return {
      chunks,
      nextSeq: cutShort && last !== undefined ? last.seq + 1 : this.#seq + 1,
      exited: this.#exitCode !== null,
      exitCode: this.#exitCode,
      closed: this.#closed,
      failure: null,
      sandboxDenied: this.#sandboxDenied,
    };
  }

  #waitForChange(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortReason(signal));
        return;
      }
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#waiters.delete(done);
        resolve();
      };
      const onAbort = (): void => {
        done();
      };
      const timer = setTimeout(done, ms);
      timer.unref?.();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(done);
    });
  }

  #changed(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  #output(stream: OutputStream, data: Buffer): void {
    this.#lastOutputAt = Date.now();
    // Piped output only is gathered in windows: a terminal is interactive.
    this.#gather.add(stream, data, this.#child !== undefined);
  }

  #emitOutput(stream: OutputStream, data: Buffer): void {
    const event = { kind: 'output' as const, seq: ++this.#seq, stream, data };
    // Raw bytes are retained (base64 is made only where a wire carries them): a third less memory.
    this.#retained.push(event.seq, stream, data);
    this.#onEvent(event);
    this.#changed();
  }

  #stopReading(): void {
    this.#child?.stdout.pause();
    this.#child?.stderr.pause();
  }

  #exited(exitCode: number): void {
    if (this.#exitCode !== null) return;
    // Output read before the exit keeps its place before it, held or not.
    this.#gather.flush();
    this.#exitCode = exitCode;
    this.#exitSeq = ++this.#seq;
    this.#stdinOpen = false;
    this.#sandboxDenied = this.#sandboxed && exitCode !== 0 && this.#outputLooksDenied();
    this.#onEvent({ kind: 'exited', seq: this.#exitSeq, exitCode, sandboxDenied: this.#sandboxDenied });
    this.#changed();
  }

  /** Codex's heuristic: a failed confined command whose recent output names a denial. */
  #outputLooksDenied(): boolean {
    const tail: Buffer[] = [];
    let bytes = 0;
    const retained = this.#retained.chunks;
    for (let i = retained.length - 1; i >= 0 && bytes < DENIAL_SCAN_BYTES; i--) {
      const chunk = retained[i];
      if (chunk === undefined) continue;
      tail.unshift(this.#retained.read(chunk));
      bytes += chunk.length;
    }
    const text = Buffer.concat(tail).toString('utf8').toLowerCase();
    return DENIAL_MARKERS.some((marker) => text.includes(marker));
  }

  #markClosed(): void {
    if (this.#closed) return;
    // `closed` is the last event: nothing may stay held behind it.
    this.#gather.close();
    this.#closed = true;
    // The leader is gone and reaped: a group that emptied with it is never signalled again.
    this.#groupHasMembers();
    this.#onEvent({ kind: 'closed', seq: ++this.#seq });
    this.#changed();
  }
}
