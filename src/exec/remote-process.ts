import type { OutputStream, ProcessReadResult } from '../protocol/exec.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { WaitList } from '../util/wait-list.js';

/** An event of a remote process as the client sees it, in order, without duplicates. */
export type RemoteProcessEvent =
  | { kind: 'output'; stream: OutputStream; data: Buffer }
  | { kind: 'exited'; exitCode: number }
  | { kind: 'closed' }
  /** The connection was lost for good; no more events will come. */
  | { kind: 'failed'; error: Error };

/** Bound on output queued for a consumer that is not reading; the oldest is dropped beyond it. */
export const DEFAULT_QUEUED_OUTPUT_BYTES = 16 * 1024 * 1024;

/**
 * A reconnect under way: the connection to the exec-server dropped and its client is resuming the
 * session. Until it succeeds nothing is known about the session's processes.
 */
export interface ReconnectProgress {
  /** The exec-server, for messages (its URL). */
  server: string;
  /** When the connection dropped, in ms since the epoch. */
  since: number;
  /** Attempts made so far, the one under way included. */
  attempts: number;
  /** Why the connection dropped, or why the last attempt failed. */
  lastError: Error;
}

/** `reconnecting to <server> (attempt n, since <ISO time>): <last error>`, for status lines. */
export function describeReconnect(progress: ReconnectProgress): string {
  return `reconnecting to ${progress.server} (attempt ${progress.attempts}, since ${new Date(progress.since).toISOString()}): ${progress.lastError.message}`;
}

/** The operations a {@link RemoteProcess} delegates to its client. */
export interface RemoteProcessControl {
  write(processId: string, data: Buffer): Promise<'accepted' | 'unknownProcess' | 'stdinClosed' | 'starting'>;
  interrupt(processId: string): Promise<void>;
  terminate(processId: string): Promise<boolean>;
  /** The client's reconnect, while one is under way. */
  reconnecting(): ReconnectProgress | undefined;
}

type SeqEvent = { seq: number; kind: 'output'; stream: OutputStream; data: Buffer } | ({ seq: number } & ExitEvent) | { seq: number; kind: 'closed' };

type ExitEvent = { kind: 'exited'; exitCode: number; sandboxDenied?: boolean };

/** What {@link RemoteProcess.acceptRead} knows about the seqs a replay covers but does not carry. */
interface GapState {
  /** Output seqs the server no longer retains; always the oldest of the range. */
  evicted: number;
  /** The exit, when the replay reports one not yet applied. */
  exit: ExitEvent | undefined;
}

/**
 * A process started through an exec client. Notifications are applied strictly in `seq` order;
 * out-of-order ones are held until a `process/read` fills the gap (after a reconnect, or when a
 * detached session dropped notifications).
 */
export class RemoteProcess {
  readonly #queue: RemoteProcessEvent[] = [];
  readonly #held = new Map<number, SeqEvent>();
  readonly #control: RemoteProcessControl;
  readonly #maxQueuedBytes: number;
  #queuedBytes = 0;
  #droppedBytes = 0;
  #lastSeq = 0;
  #exitCode: number | undefined;
  #sandboxDenied = false;
  #closed = false;
  #failure: Error | undefined;
  /** Everyone waiting in {@link RemoteProcess.waitForEvents} (e.g. two `write_stdin` calls on one session). */
  readonly #waiters = new WaitList();
  #writeCounter = 0;
  /** Set by the client: called once when `closed` or `failed` is queued (no event comes after). */
  onFinished?: () => void;
  /** Set by the client: asks the server for what we missed since `lastSeq`. */
  requestFill?: (afterSeq: number) => void;

  constructor(
    readonly id: string,
    control: RemoteProcessControl,
    maxQueuedBytes = DEFAULT_QUEUED_OUTPUT_BYTES,
  ) {
    this.#control = control;
    this.#maxQueuedBytes = maxQueuedBytes;
  }

  /** The exit code once known. */
  get exitCode(): number | undefined {
    return this.#exitCode;
  }

  /** True when the executor judged the exit a denial by its sandbox (`sandboxDenied`). */
  get sandboxDenied(): boolean {
    return this.#sandboxDenied;
  }

  /**
   * Set while the connection to the process's exec-server is being resumed: its events are not
   * arriving, and whether it still runs is unknown until the session is back (its missed output is
   * then replayed) or lost (the process then fails).
   */
  get reconnecting(): ReconnectProgress | undefined {
    return this.finished ? undefined : this.#control.reconnecting();
  }

  /** True once `closed` (or a failure) was delivered to the queue. */
  get finished(): boolean {
    return this.#closed || this.#failure !== undefined;
  }

  /** The last seq applied; the cursor for a replay. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Bytes of output dropped because nobody consumed them in time. */
  get droppedBytes(): number {
    return this.#droppedBytes;
  }

  /** Takes every queued event without waiting. */
  drain(): RemoteProcessEvent[] {
    const events = this.#queue.splice(0);
    this.#queuedBytes = 0;
    return events;
  }

  /**
   * Waits until at least one event is queued, the process finished, the signal aborts, or
   * `timeoutMs` passes (then resolves without events).
   */
  waitForEvents(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.#queue.length > 0 || this.finished) return Promise.resolve();
    return this.#waiters.wait(timeoutMs, signal);
  }

  /** Every event until `closed`, as an async generator; breaking out does not stop the process. */
  async *events(signal?: AbortSignal): AsyncGenerator<RemoteProcessEvent> {
    for (;;) {
      await this.waitForEvents(60_000, signal);
      for (const event of this.drain()) {
        yield event;
        if (event.kind === 'closed' || event.kind === 'failed') return;
      }
    }
  }

  /** Collects all output until the process closes. */
  async collect(signal?: AbortSignal): Promise<{ exitCode: number | undefined; stdout: Buffer; stderr: Buffer; pty: Buffer }> {
    const parts: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [], pty: [] };
    for await (const event of this.events(signal)) {
      if (event.kind === 'output') parts[event.stream].push(event.data);
      if (event.kind === 'failed') throw event.error;
    }
    return { exitCode: this.#exitCode, stdout: Buffer.concat(parts.stdout), stderr: Buffer.concat(parts.stderr), pty: Buffer.concat(parts.pty) };
  }

  /** Writes to the process's stdin (or terminal). */
  write(data: Buffer | string): Promise<'accepted' | 'unknownProcess' | 'stdinClosed' | 'starting'> {
    return this.#control.write(this.id, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  /** Sends SIGINT. */
  interrupt(): Promise<void> {
    return this.#control.interrupt(this.id);
  }

  /** Sends SIGKILL; resolves with whether it was still running. */
  terminate(): Promise<boolean> {
    return this.#control.terminate(this.id);
  }

  /** @internal A unique write id for the next write. */
  nextWriteId(): string {
    return `${this.id}-w${++this.#writeCounter}`;
  }

  /** @internal Applies a notification. */
  accept(event: SeqEvent): void {
    if (this.finished || event.seq <= this.#lastSeq) return;
    if (event.seq !== this.#lastSeq + 1) {
      this.#held.set(event.seq, event);
      this.requestFill?.(this.#lastSeq);
      return;
    }
    this.#apply(event);
    this.#applyHeld();
  }

  /** @internal True while events are held behind a missing seq, waiting for a replay. */
  get awaitingFill(): boolean {
    return !this.finished && this.#held.size > 0;
  }

  /**
   * @internal Applies a `process/read` result: a replay after `lastSeq`, read without a byte
   * budget. The seqs it covers (up to `nextSeq - 1`) are its chunks, the exit unless already
   * applied, `closed` (always the last) and output the server no longer retains. Retention drops
   * the oldest output, so the first unexplained seqs are reported lost and a later missing one is
   * the exit, which keeps its place among the output (trailing output may follow an exit).
   */
  acceptRead(result: ProcessReadResult): void {
    if (this.finished) return;
    const covered = result.nextSeq - 1;
    const chunks = result.chunks.filter((chunk) => chunk.seq > this.#lastSeq && chunk.seq <= covered);
    const exit: ExitEvent | undefined =
      result.exited && result.exitCode !== null && this.#exitCode === undefined
        ? { kind: 'exited', exitCode: result.exitCode, sandboxDenied: result.sandboxDenied === true }
        : undefined;
    const gap: GapState = { evicted: this.#evictedIn(covered, chunks, exit !== undefined, result.closed), exit };
    for (const chunk of chunks) {
      this.#explainGap(chunk.seq, chunk.stream, gap);
      // A held notification may have carried this chunk already.
      if (this.finished || chunk.seq <= this.#lastSeq) continue;
      this.#apply({ seq: chunk.seq, kind: 'output', stream: chunk.stream, data: bytesOf(chunk.chunk) });
    }
    this.#explainGap(result.closed ? covered : covered + 1, chunks[0]?.stream ?? 'stdout', gap);
    // An exit the accounting found no place for (a server counting seqs differently) still counts.
    if (exit !== undefined && this.#exitCode === undefined) this.#apply({ seq: this.#lastSeq, ...exit });
    if (result.closed) this.#apply({ seq: Math.max(covered, this.#lastSeq + 1), kind: 'closed' });
    this.#applyHeld();
  }

  /**
   * Accounts for the seqs between `lastSeq` and `before` that neither a chunk nor a held event
   * carries: evicted output first, then the exit; a seq nothing explains is skipped, since no
   * replay could ever bring it. `state.evicted` counts down across calls; `stream` is the stream
   * a lost-output marker is reported on.
   */
  #explainGap(before: number, stream: OutputStream, state: GapState): void {
    for (;;) {
      this.#applyHeld();
      if (this.#closed) return;
      // After applyHeld the next held seq (if any) is beyond lastSeq + 1: the gap ends there.
      const nextHeld = this.#nextHeldSeq();
      const end = nextHeld !== undefined && nextHeld < before ? nextHeld : before;
      const missing = end - this.#lastSeq - 1;
      if (missing <= 0) return;
      if (state.evicted > 0) {
        const lost = Math.min(state.evicted, missing);
        state.evicted -= lost;
        const first = this.#lastSeq + 1;
        this.#lastSeq += lost;
        this.#push({ kind: 'output', stream, data: Buffer.from(`\n[output lost: events ${first}..${this.#lastSeq} were evicted before they could be read]\n`) });
      } else if (state.exit !== undefined && this.#exitCode === undefined) {
        this.#apply({ seq: this.#lastSeq + 1, ...state.exit });
      } else {
        this.#lastSeq = end - 1;
      }
    }
  }

  /**
   * How many output seqs up to `covered` the server no longer retains: those neither a chunk nor a
   * held event carries, less the exit and `closed` when the replay reports them.
   */
  #evictedIn(covered: number, chunks: readonly { seq: number }[], exitPending: boolean, closed: boolean): number {
    const carried = new Set(chunks.map((chunk) => chunk.seq));
    let exitCarried = false;
    let closedCarried = false;
    for (const [seq, event] of this.#held) {
      if (seq <= this.#lastSeq || seq > covered) continue;
      carried.add(seq);
      exitCarried ||= event.kind === 'exited';
      closedCarried ||= event.kind === 'closed';
    }
    const unseen = covered - this.#lastSeq - carried.size - (exitPending && !exitCarried ? 1 : 0) - (closed && !closedCarried ? 1 : 0);
    return Math.max(0, unseen);
  }

  #nextHeldSeq(): number | undefined {
    let next: number | undefined;
    for (const seq of this.#held.keys()) if (seq > this.#lastSeq && (next === undefined || seq < next)) next = seq;
    return next;
  }

  /** @internal No more events will come (connection lost for good). */
  fail(error: Error): void {
    if (this.finished) return;
    this.#failure = error;
    this.#push({ kind: 'failed', error });
  }

  #applyHeld(): void {
    for (;;) {
      const next = this.#held.get(this.#lastSeq + 1);
      if (next === undefined) break;
      this.#held.delete(next.seq);
      this.#apply(next);
    }
    for (const seq of this.#held.keys()) if (seq <= this.#lastSeq) this.#held.delete(seq);
  }

  #apply(event: SeqEvent): void {
    if (this.#closed) return;
    this.#lastSeq = Math.max(this.#lastSeq, event.seq);
    switch (event.kind) {
      case 'output':
        this.#push({ kind: 'output', stream: event.stream, data: event.data });
        return;
      case 'exited':
        if (this.#exitCode !== undefined) return;
        this.#exitCode = event.exitCode;
        this.#sandboxDenied = event.sandboxDenied === true;
        this.#push({ kind: 'exited', exitCode: event.exitCode });
        return;
      case 'closed':
        this.#closed = true;
        this.#push({ kind: 'closed' });
        return;
    }
  }

  #push(event: RemoteProcessEvent): void {
    this.#queue.push(event);
    if (event.kind === 'output') {
      this.#queuedBytes += event.data.length;
      while (this.#queuedBytes > this.#maxQueuedBytes) {
        const index = this.#queue.findIndex((e) => e.kind === 'output');
        if (index === -1 || index === this.#queue.length - 1) break;
        const [dropped] = this.#queue.splice(index, 1);
        if (dropped?.kind === 'output') {
          this.#queuedBytes -= dropped.data.length;
          this.#droppedBytes += dropped.data.length;
        }
      }
    }
    this.#waiters.wakeAll();
    if (event.kind === 'closed' || event.kind === 'failed') this.onFinished?.();
  }
}

/**
 * The bytes of a bytes field a server sent: its base64 text decoded (as leniently as Node's
 * decoder), or the Buffer an in-process server handed over.
 */
export function bytesOf(field: string | Buffer): Buffer {
  return typeof field === 'string' ? Buffer.from(field, 'base64') : field;
}

/** The error a process gets when its connection is lost for good. */
export function connectionLostError(label: string, cause?: Error): LocalError {
  return new LocalError(LocalErrorCode.ConnectionClosed, `lost the connection to ${label}${cause === undefined ? '' : `: ${cause.message}`}`, { cause });
}
