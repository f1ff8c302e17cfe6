/**
 * Opening, reading and writing whole files for the `fs/*` handlers: the reads and writes of
 * `fs/readFile` and `fs/writeFile`, and the opens behind `fs/open`.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { RpcError } from '../rpc/errors.js';
import { io, ioError } from './io-errors.js';

/**
 * Opens a regular file for reading, with the size its `fstat` found. `O_NONBLOCK` keeps a FIFO
 * from blocking the open; anything but a regular file is refused as Codex does.
 */
export async function openRegularFile(path: string, extraFlags: number): Promise<{ handle: FileHandle; size: number }> {
  const handle = await io(() => open(path, constants.O_RDONLY | constants.O_NONBLOCK | extraFlags));
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw RpcError.invalidRequest(`path \`${path}\` is not a file`);
    return { handle, size: info.size };
  } catch (error) {
    await handle.close();
    throw error instanceof RpcError ? error : ioError(error);
  }
}

/** Opens for writing, creating or truncating, as `fs/writeFile` and `fs/open` `replace` do. */
export function openForReplace(path: string, extraFlags: number): Promise<FileHandle> {
  return io(() => open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | extraFlags, 0o666));
}

/**
 * Closes a file without holding up the answer: the contents are in place (a close reports no
 * error a later reader would care about on a local file system; Codex, in Rust, drops its files
 * and ignores the same errors). Saves a thread-pool round trip per whole-file read and write.
 */
export function closeInBackground(handle: FileHandle): void {
  handle.close().catch(() => undefined);
}

/**
 * Writes all of `bytes` at `offset`. One `write` per call, looping only on a short write:
 * `FileHandle.writeFile` would cut a megabyte into 512 KiB writes, each a thread-pool round trip.
 */
export async function writeAll(handle: FileHandle, bytes: Buffer, offset: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, offset + written);
    written += bytesWritten;
  }
}

/**
 * Makes a file just opened for writing (without `O_TRUNC`) hold exactly `data`: written over the
 * old contents while it is cut to the new length. The outcome is that of a truncating open
 * followed by the write, without freeing and reallocating every block of a file being rewritten,
 * which on ext4 costs several times the write itself. A failed write leaves what a truncating
 * write would have: the file cut to the bytes written. A file that cannot be truncated (a pipe, a
 * device), which `O_TRUNC` leaves alone, is left alone.
 */
export async function replaceContents(handle: FileHandle, data: Buffer): Promise<void> {
  let written = 0;
  const writing = (async () => {
    while (written < data.length) {
      // At the file's offset (0 after open), so that a pipe works too.
      const { bytesWritten } = await handle.write(data, written, data.length - written, null);
      written += bytesWritten;
    }
  })();
  // The two touch different things (blocks past the length, contents before it), so they run at once.
  const [write, cut] = await Promise.allSettled([writing, handle.truncate(data.length)]);
  if (write.status === 'rejected') {
    await handle.truncate(written).catch(() => undefined);
    throw write.reason;
  }
  if (cut.status === 'rejected' && (await handle.stat()).isFile()) throw cut.reason;
}

/** Largest buffer {@link ScratchBuffer} keeps between whole-file reads. */
export const MAX_SCRATCH_BYTES = 4 * 1024 * 1024;

/**
 * One buffer lent out for a whole-file read and taken back once its contents are encoded, so that
 * a connection reading file after file does not allocate a new megabyte each time: V8 counts
 * such buffers as external memory and answers its growth with full garbage collections. A second
 * read while the buffer is out, or a file larger than `maxBytes`, gets a buffer of its own.
 */
export class ScratchBuffer {
  #buffer?: Buffer;

  constructor(private readonly maxBytes: number) {}

  /** A buffer of `size` bytes (contents undefined) and the function that gives it back. */
  take(size: number): { buffer: Buffer; release: () => void } {
    const lent = this.#buffer;
    if (lent !== undefined && lent.length >= size) {
      this.#buffer = undefined;
      return { buffer: lent.subarray(0, size), release: () => (this.#buffer = lent) };
    }
    const fresh = Buffer.allocUnsafe(size);
    if (size > this.maxBytes) return { buffer: fresh, release: () => undefined };
    return { buffer: fresh, release: () => (this.#buffer = fresh) };
  }
}

/** The refusal of a file over the `fs/readFile` limit; `reported` is its size, or a bound on it. */
export function fileTooLarge(path: string, reported: number | string, limit: number): RpcError {
  return RpcError.invalidRequest(
    `fs/readFile: \`${path}\` is too large to read whole: ${reported} bytes, over the ${limit}-byte limit of fs/readFile (its base64 must fit in one message); read it in blocks with fs/open and fs/readBlock`,
  );
}

/**
 * Reads a whole file whose `fstat` said `size` (already checked against `limit`), refusing to go
 * past `limit` bytes while reading. A file that grew or shrank since is read to its end all the
 * same; before reading past its size, `grow` is awaited (it takes the memory for that). The data
 * may live in a scratch buffer: call `release` once done with it.
 */
export async function readWhole(
  handle: FileHandle,
  size: number,
  path: string,
  limit: number,
  scratch: ScratchBuffer,
  grow: () => Promise<void>,
): Promise<{ data: Buffer; release: () => void }> {
  // The usual case takes one read: a buffer of the size plus one byte, so that a read that stops
  // exactly at the size is known to have met the end (a regular file reads short only there).
  // Nothing is zero-filled or concatenated; only what was read is returned.
  const { buffer: first, release } = scratch.take(size + 1);
  let total = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(first, total, first.length - total, total);
      if (bytesRead === 0 || total + bytesRead === size) return { data: first.subarray(0, total + bytesRead), release };
      total += bytesRead;
      if (total === first.length) break;
    }
  } catch (error) {
    release();
    throw error;
  }
  // The file grew past its size: read on in chunks up to the limit.
  const chunks: Buffer[] = [Buffer.from(first)];
  release();
  await grow();
  for (;;) {
    // One byte past the limit is enough to know a growing file went over it.
    if (total > limit) throw fileTooLarge(path, `more than ${limit}`, limit);
    const want = Math.min(64 * 1024, limit + 1 - total);
    const buffer = Buffer.allocUnsafe(want);
    const { bytesRead } = await handle.read(buffer, 0, want, total);
    if (bytesRead === 0) break;
    chunks.push(buffer.subarray(0, bytesRead));
    total += bytesRead;
  }
  return { data: Buffer.concat(chunks, total), release: () => undefined };
}
