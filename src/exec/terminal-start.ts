import { readSync } from 'node:fs';
import { ReadStream } from 'node:tty';
import { nativeAddon, nativeCommand, startOnAddon, type PipedEvents, type PipedSpec } from './piped-start.js';

/** What to start on a terminal; paths are native and already validated. */
export interface TerminalSpec extends Omit<PipedSpec, 'pipeStdin'> {
  cols: number;
  rows: number;
}

/** What a command started on a terminal reports: its output, then (in any order) its exit and the end of its output, then the close. */
export interface TerminalEvents extends PipedEvents {
  /** Output (stderr included), in order. */
  onOutput: (data: Buffer) => void;
}

/** A command started on a terminal of its own, which is its controlling terminal; it leads its own session. */
export interface TerminalChild {
  readonly pid: number;
  /** Writes input to the terminal. */
  write(data: Buffer): void;
  /** Stops reading output (back-pressure): the command blocks once the terminal is full. */
  pause(): void;
  resume(): void;
}

/** Bytes read at a time when draining a terminal that hung up. */
const DRAIN_CHUNK_BYTES = 64 * 1024;

/**
 * Starts a command on a new terminal with the native starter; undefined when the starter is not
 * built (or was built before it knew terminals).
 *
 * `onClose` comes after the exit and after every byte written to the terminal was read, whatever
 * the load. Two things stood in the way. node-pty closes the terminal 200 ms after the command's
 * exit, losing what a busy event loop had not read by then; here nothing closes it early. And libuv
 * takes a hang-up (every holder of the terminal closed it) after a short read for end-of-file,
 * while the kernel still holds output: a terminal hands over at most 4 KiB a read, so every read is
 * short. So at that end-of-file the rest is read at once, until Linux answers EIO, which it does
 * only once the terminal is empty; the kernel bounds what is left (its buffer, some 64 KiB).
 */
export async function startTerminal(spec: TerminalSpec, events: TerminalEvents): Promise<TerminalChild | undefined> {
  const spawnPty = nativeAddon()?.spawnPty;
  if (spawnPty === undefined) return undefined;
  const { argv, env } = nativeCommand(spec);
  let exited = false;
  let drained = false;
  const closeIfDone = (): void => {
    if (exited && drained) events.onClose();
  };
  return startOnAddon(
    (onEvent) => spawnPty(spec.file, argv, env, spec.cwd, spec.cols, spec.rows, onEvent),
    spec.file,
    (pid, [masterFd]) => {
      const terminal = new ReadStream(masterFd);
      terminal.on('data', (data: Buffer) => events.onOutput(data));
      // The stream has not closed the master yet when it reports the end.
      terminal.once('end', () => drainHungUp(masterFd, events.onOutput));
      // EIO is a hang-up found by a read (the terminal is empty then); any other error ends the
      // output the same way (the stream closes after it).
      terminal.on('error', () => undefined);
      terminal.once('close', () => {
        drained = true;
        closeIfDone();
      });
      return { pid, write: (data) => terminal.write(data), pause: () => terminal.pause(), resume: () => terminal.resume() };
    },
    (exitCode) => {
      exited = true;
      events.onExit(exitCode);
      closeIfDone();
    },
  );
}

/** Reads what a hung-up terminal still holds (its master is non-blocking), until EIO. */
function drainHungUp(fd: number, onOutput: (data: Buffer) => void): void {
  for (;;) {
    const buffer = Buffer.allocUnsafe(DRAIN_CHUNK_BYTES);
    let length: number;
    try {
      length = readSync(fd, buffer);
    } catch {
      // EIO: empty. EAGAIN cannot follow a hang-up, but would also mean nothing is left.
      return;
    }
    if (length === 0) return;
    onOutput(buffer.subarray(0, length));
  }
}
