import type { OutputStream } from '../protocol/exec.js';

/**
 * Bound on piped output read ahead while paused (see {@link OutputGather.pause}); the read that
 * reaches it may overshoot it by up to one read (at most `LARGE_PIPE_BYTES`, exec/output-pipe.ts). Its base64
 * (683 KiB) is more than a websocket transport's drain-to-resume gap (half its 1 MiB high-water
 * mark), so while the consumer stays behind, the hold emitted on a resume congests the transport
 * again at once and the next output is held too: the output goes out in full-size events, not in
 * the pipe's small reads between congestions.
 */
export const HELD_OUTPUT_BYTES = 512 * 1024;
/**
 * Held output is joined into events of at most this many bytes (a default-sized pipe's largest
 * read), and output gathered in a window goes out as soon as it reaches this size: output that
 * already comes in full reads is neither copied nor delayed. A larger read (from a pipe that was
 * enlarged) goes out whole.
 */
export const OUTPUT_EVENT_BYTES = 64 * 1024;
/**
 * After a piped output event, further output is held this long (or until it makes a full event)
 * and then goes out as one event: a command streaming output may give the pipe's reads of 4 KiB,
 * and each read made into its own message costs a send, a receive and a parse on both ends. The
 * first output after a quiet spell goes out at once; later output waits at most about this.
 */
export const OUTPUT_WINDOW_MS = 1;
/**
 * A process's piped output on its way to events: after an output event, further output is held for
 * a window ({@link OUTPUT_WINDOW_MS}) and goes out as one event; while paused (the consumer is
 * behind) it is held up to {@link HELD_OUTPUT_BYTES}, and only a full hold stops reading. Held
 * output goes out in order, runs of one stream joined into events of at most
 * {@link OUTPUT_EVENT_BYTES} (a larger read goes out alone, whole).
 */
export class OutputGather {
  readonly #emit: (stream: OutputStream, data: Buffer) => void;
  readonly #stopReading: () => void;
  readonly #windowMs: number;
  /** Set by {@link OutputGather.pause}: output is held, not emitted. */
  #holding = false;
  /** Output held (in a window or while paused), oldest first; at most about {@link HELD_OUTPUT_BYTES}. */
  #held: { stream: OutputStream; data: Buffer }[] = [];
  #heldBytes = 0;
  /** Set while output is gathered after an output event. */
  #window: NodeJS.Timeout | undefined;

  /**
   * @param emit makes one output event.
   * @param stopReading stops reading the pipes (a full hold while paused); the owner resumes them.
   * @param windowMs how long output is gathered after an output event; 0: not at all.
   */
  constructor(emit: (stream: OutputStream, data: Buffer) => void, stopReading: () => void, windowMs: number) {
    this.#emit = emit;
    this.#stopReading = stopReading;
    this.#windowMs = windowMs;
  }

  /** Bytes held and not yet emitted. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Output read: emitted, or held in the window or the pause hold. `windowed`: the output may be gathered in windows. */
  add(stream: OutputStream, data: Buffer, windowed: boolean): void {
    if (this.#holding || this.#window !== undefined) {
      this.#held.push({ stream, data });
      this.#heldBytes += data.length;
      // Paused: a full hold stops reading until resumed. In a window: a full event goes out now.
      if (this.#holding) {
        if (this.#heldBytes >= HELD_OUTPUT_BYTES) this.#stopReading();
      } else if (this.#heldBytes >= OUTPUT_EVENT_BYTES) {
        this.flush();
      }
      return;
    }
    this.#emit(stream, data);
    if (windowed && this.#windowMs > 0) this.#openWindow();
  }

  /** The consumer is behind: output is held from now on. */
  pause(): void {
    this.#holding = true;
    if (this.#heldBytes >= HELD_OUTPUT_BYTES) this.#stopReading();
  }

  /** The consumer caught up: the hold goes out (emitting may pause again). */
  resume(): void {
    this.#holding = false;
    this.flush();
  }

  /** Emits the held output in order, runs of one stream joined into events of at most {@link OUTPUT_EVENT_BYTES}. */
  flush(): void {
    const held = this.#held;
    if (held.length === 0) return;
    this.#held = [];
    this.#heldBytes = 0;
    let run: Buffer[] = [];
    let runBytes = 0;
    let runStream: OutputStream = 'stdout';
    const emitRun = (): void => {
      if (run.length === 0) return;
      this.#emit(runStream, run.length === 1 ? (run[0] ?? Buffer.alloc(0)) : Buffer.concat(run, runBytes));
      run = [];
      runBytes = 0;
    };
    for (const piece of held) {
      if (piece.stream !== runStream || runBytes + piece.data.length > OUTPUT_EVENT_BYTES) emitRun();
      runStream = piece.stream;
      run.push(piece.data);
      runBytes += piece.data.length;
    }
    emitRun();
  }

  /** The output ended: whatever is held goes out, and no window stays open. */
  close(): void {
    this.flush();
    clearTimeout(this.#window);
    this.#window = undefined;
  }

  #openWindow(): void {
    this.#window = setTimeout(this.#windowEnded, this.#windowMs);
    this.#window.unref();
  }

  readonly #windowEnded = (): void => {
    this.#window = undefined;
    // Paused: the hold goes out on resume.
    if (this.#holding || this.#held.length === 0) return;
    this.flush();
    // Still streaming: gather the next window's output too.
    this.#openWindow();
  };
}
