import type { FileHandle } from 'node:fs/promises';
import { RpcError } from '../rpc/errors.js';
import { openForReplace, openRegularFile, writeAll } from './fs-files.js';
import { ioError } from './io-errors.js';

/** How an `fs/open` handle was opened. */
export type FileHandleMode = 'read' | 'replace';

interface OpenFile {
  readonly handle: FileHandle;
  readonly mode: FileHandleMode;
}

/**
 * Per-session filesystem state: the handles opened by `fs/open`. It belongs to the exec-server
 * session, not to a connection, so a resumed session keeps its handles; {@link closeAll} releases
 * them when the session ends.
 */
export class FsSessionState {
  readonly #handles = new Map<string, OpenFile>();
  /** Ids whose `open` is in flight: they count against the limit and cannot be reused. */
  readonly #opening = new Set<string>();
  #closed = false;

  /** Handles held or being opened. */
  get openHandles(): number {
    return this.#handles.size + this.#opening.size;
  }

  /**
   * Opens `path` under `handleId`. `read` refuses anything but a regular file; `replace` creates or
   * truncates. Fails with -32600 when the id is taken or `maxOpenHandles` are already open.
   * `extraFlags` are added to the open (`O_NOFOLLOW` for a sandboxed write); `check` judges the
   * file once opened (a rejection closes it and fails the open).
   */
  async open(handleId: string, path: string, mode: FileHandleMode, maxOpenHandles: number, extraFlags = 0, check?: (handle: FileHandle) => Promise<void>): Promise<void> {
    if (this.#closed) throw RpcError.invalidRequest('the filesystem session is closed');
    if (this.#handles.has(handleId) || this.#opening.has(handleId)) {
      throw RpcError.invalidRequest(`file handle \`${handleId}\` already exists`);
    }
    if (this.openHandles >= maxOpenHandles) {
      throw RpcError.invalidRequest(`too many open file handles (limit ${maxOpenHandles}); close handles with fs/close before opening \`${handleId}\``);
    }
    this.#opening.add(handleId);
    try {
      const handle = mode === 'read' ? (await openRegularFile(path, extraFlags)).handle : await openForReplace(path, extraFlags);
      if (check !== undefined) {
        try {
          await check(handle);
        } catch (error) {
          await handle.close();
          throw error;
        }
      }
      if (this.#closed) {
        await handle.close();
        throw RpcError.invalidRequest('the filesystem session is closed');
      }
      this.#handles.set(handleId, { handle, mode });
    } finally {
      this.#opening.delete(handleId);
    }
  }

  /** Reads up to `len` bytes at `offset`; `eof` is true when fewer bytes than asked remained. */
  async read(handleId: string, offset: number, len: number): Promise<{ bytes: Buffer; eof: boolean }> {
    const file = this.#lookup(handleId);
    if (file.mode !== 'read') {
      throw RpcError.invalidRequest(`file handle \`${handleId}\` was opened with mode \`replace\` and cannot be read; open it with mode \`read\``);
    }
    const buffer = Buffer.allocUnsafe(len);
    let filled = 0;
    try {
      // A regular file returns short reads only at its end, but loop to be sure of it.
      while (filled < len) {
        const { bytesRead } = await file.handle.read(buffer, filled, len - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
    } catch (error) {
      throw ioError(error);
    }
    return { bytes: buffer.subarray(0, filled), eof: filled < len };
  }

  /** Writes all of `bytes` at `offset`; a gap past the end reads back as zeros. */
  async write(handleId: string, offset: number, bytes: Buffer): Promise<void> {
    const file = this.#lookup(handleId);
    if (file.mode !== 'replace') {
      throw RpcError.invalidRequest(`file handle \`${handleId}\` was opened with mode \`read\` and cannot be written; open it with mode \`replace\``);
    }
    try {
      await writeAll(file.handle, bytes, offset);
    } catch (error) {
      throw ioError(error);
    }
  }

  /** Closes `handleId`; closing an unknown or already closed handle succeeds (idempotent). */
  async close(handleId: string): Promise<void> {
    const file = this.#handles.get(handleId);
    if (file === undefined) return;
    this.#handles.delete(handleId);
    try {
      await file.handle.close();
    } catch (error) {
      throw ioError(error);
    }
  }

  /** Closes every handle and refuses new ones; idempotent, never rejects. */
  async closeAll(): Promise<void> {
    this.#closed = true;
    const files = [...this.#handles.values()];
    this.#handles.clear();
    // A close that fails leaves nothing to retry; teardown must complete.
    await Promise.allSettled(files.map((file) => file.handle.close()));
  }

  #lookup(handleId: string): OpenFile {
    const file = this.#handles.get(handleId);
    if (file === undefined) throw RpcError.notFound(`unknown file handle \`${handleId}\``);
    return file;
  }
}

/** A fresh {@link FsSessionState} for a new exec-server session. */
export function createFsSessionState(): FsSessionState {
  return new FsSessionState();
}
