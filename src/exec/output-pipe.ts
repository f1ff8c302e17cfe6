import { Socket, type ConnectOpts, type SocketConstructorOpts } from 'node:net';
import type { Readable } from 'node:stream';

/**
 * A command's stdout or stderr as its process reads it: every read is handed to the listener as a
 * Buffer the listener may keep, in order; reading can be paused (the command then blocks once the
 * pipe is full). `close` fires once, after the last read.
 */
export interface OutputPipe {
  /** Sets the receiver of the reads; set it before output can arrive (in the tick the command started). */
  onData(listener: (data: Buffer) => void): void;
  /** Stops reading until {@link OutputPipe.resume}. */
  pause(): void;
  resume(): void;
}

/** An output pipe Node.js's `child_process` made: its `data` events, as they come. */
export function readableOutput(readable: Readable): OutputPipe {
  return {
    onData: (listener) => readable.on('data', listener),
    pause: () => readable.pause(),
    resume: () => readable.resume(),
  };
}

/** The kernel's default pipe capacity on Linux, and what Node.js reads at most per read from a pipe. */
const DEFAULT_PIPE_BYTES = 64 * 1024;
/**
 * The capacity a pipe a command fills gets (the default `/proc/sys/fs/pipe-max-size`, so an
 * unprivileged user may ask for it), and the largest read: a command writing fast then runs 16
 * times longer before it blocks, and each read, and each output event made of it, moves up to
 * 16 times more.
 */
export const LARGE_PIPE_BYTES = 1024 * 1024;
/**
 * Bound on pipes enlarged at once by this process. The kernel counts every pipe's capacity against
 * its user (`pipe-user-pages-soft`, 64 MiB by default), and once a user is over it, that user's
 * new pipes get one or two pages: 16 MiB keeps well clear of it for the user's other programs.
 */
export const MAX_LARGE_PIPES = 16;
/** The smallest read buffer: what an idle pipe holds while nothing comes. */
const MIN_READ_BYTES = 16 * 1024;

/** Pipes enlarged and still open in this process (see {@link MAX_LARGE_PIPES}). */
let largePipes = 0;

/** Sets a pipe's capacity; returns the capacity it now has, or a negative errno (the native starter's `setPipeSize`). */
export type SetPipeSize = (fd: number, bytes: number) => unknown;

/** Options of {@link nativeOutput}. */
export interface NativeOutputOptions {
  /** Enlarges the pipe once a read finds it full; without it the pipe keeps its size. */
  setPipeSize?: SetPipeSize;
  /** Runs once, after the last read (end of file or a read error). */
  onClose: () => void;
}

/**
 * Reads the pipe end `fd` (the native starter's) into buffers of its own making rather than
 * Node.js's: Node.js allocates 64 KiB for every read and reads at most that. Here a read that
 * fills at least half its buffer hands that buffer over as it is (no copy) and the next read gets
 * a new one; a smaller read is copied out and its buffer read into again, so a command printing a
 * line at a time costs no more than before. A read that fills the pipe's default capacity enlarges
 * the pipe to {@link LARGE_PIPE_BYTES} (while fewer than {@link MAX_LARGE_PIPES} are) and the
 * buffers grow with it: a command streaming output is read in up to 1 MiB at a time, and every
 * event, message and copy downstream is per read.
 */
export function nativeOutput(fd: number, options: NativeOutputOptions): OutputPipe {
  return new NativeOutputPipe(fd, options);
}

class NativeOutputPipe implements OutputPipe {
  readonly #socket: Socket;
  readonly #fd: number;
  /** Set until the pipe was enlarged or could not be. */
  #setPipeSize: SetPipeSize | undefined;
  #listener: ((data: Buffer) => void) | undefined;
  #buffer = Buffer.allocUnsafeSlow(MIN_READ_BYTES);
  /** The largest read buffer: the pipe's capacity, as far as it is known. */
  #maxRead = DEFAULT_PIPE_BYTES;
  #enlarged = false;

  constructor(fd: number, options: NativeOutputOptions) {
    this.#fd = fd;
    this.#setPipeSize = options.setPipeSize;
    // Node.js takes `onread` here too, though its typings only have it for connect().
    const socketOptions: SocketConstructorOpts & Pick<ConnectOpts, 'onread'> = {
      fd,
      readable: true,
      writable: false,
      onread: { buffer: () => this.#buffer, callback: (bytes, buffer) => this.#read(bytes, buffer) },
    };
    this.#socket = new Socket(socketOptions);
    // A read error destroys the socket, which then closes as at end of file: the output ends there.
    this.#socket.on('error', () => undefined);
    this.#socket.once('close', () => {
      if (this.#enlarged) largePipes -= 1;
      options.onClose();
    });
  }

  onData(listener: (data: Buffer) => void): void {
    this.#listener = listener;
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  /** One read of `bytes` into `buffer` (the current read buffer); the next read goes into the read buffer this leaves. */
  #read(bytes: number, buffer: Uint8Array): boolean {
    let data: Buffer;
    if (bytes * 2 >= buffer.length) {
      data = Buffer.from(buffer.buffer, buffer.byteOffset, bytes);
      if (bytes === buffer.length) this.#enlarge(bytes);
      this.#buffer = Buffer.allocUnsafeSlow(bytes === buffer.length ? Math.min(buffer.length * 2, this.#maxRead) : buffer.length);
    } else {
      data = Buffer.from(buffer.subarray(0, bytes));
      // A large buffer that gets only small reads goes back to the smallest size: idle memory.
      if (bytes * 8 <= buffer.length && buffer.length > MIN_READ_BYTES) this.#buffer = Buffer.allocUnsafeSlow(MIN_READ_BYTES);
    }
    this.#listener?.(data);
    return true;
  }

  /** A read filled its buffer: a read of the pipe's whole default capacity found the pipe full, which then is enlarged. */
  #enlarge(bytes: number): void {
    const setPipeSize = this.#setPipeSize;
    if (bytes < DEFAULT_PIPE_BYTES || setPipeSize === undefined || largePipes >= MAX_LARGE_PIPES) return;
    // Asked once: a pipe the kernel would not enlarge is not asked again.
    this.#setPipeSize = undefined;
    const capacity = setPipeSize(this.#fd, LARGE_PIPE_BYTES);
    if (typeof capacity !== 'number' || capacity <= DEFAULT_PIPE_BYTES) return;
    this.#enlarged = true;
    largePipes += 1;
    this.#maxRead = Math.min(capacity, LARGE_PIPE_BYTES);
  }
}
