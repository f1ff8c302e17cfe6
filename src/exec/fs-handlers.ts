import { constants, type Dirent, type Stats } from 'node:fs';
import { copyFile, lstat, mkdir, open, readdir, readlink, realpath, rm, rmdir, stat, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, parse, sep } from 'node:path';
import {
  FsCanonicalize,
  FsClose,
  FsCopy,
  FsCreateDirectory,
  FsGetMetadata,
  FsOpen,
  FsReadBlock,
  FsReadDirectory,
  FsReadFile,
  FsRemove,
  FsWalk,
  FsWriteBlock,
  FsWriteFile,
  type DirectoryEntry,
  type FileMetadata,
} from '../protocol/exec.js';
import { DEFAULT_MAX_WHOLE_FILE_BYTES } from '../protocol/limits.js';
import { withBase64Bytes } from '../rpc/base64-field.js';
import type { RpcConnection } from '../rpc/connection.js';
import { RpcError } from '../rpc/errors.js';
import { decodeBase64 } from '../util/base64.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import { ioError } from './io-errors.js';
import { uriToPath, pathToUri } from './path-uri.js';
import { copyOpenedFile, openDirectory, realPathOfOpened, type PinnedDirectory } from './pinned-directory.js';
import { ReadBudget, readMemoryCost, type ReadReservation } from './read-budget.js';
import {
  assertLandsWritable,
  assertReadable,
  assertWritable,
  deniedEntryFilter,
  parseSandboxRequest,
  readCheck,
  type SandboxHost,
  type SandboxPolicy,
} from './sandbox-policy.js';

/** Default bound on the `fs/open` handles one session may hold at once. */
export const DEFAULT_MAX_OPEN_HANDLES = 256;
/** Largest `len` of one `fs/readBlock` (the Codex 0.169.0 limit). */
export const MAX_READ_BLOCK_BYTES = 1024 * 1024;
/** Largest decoded `chunk` of one `fs/writeBlock` (the Codex 0.169.0 limit). */
export const MAX_WRITE_BLOCK_BYTES = 1024 * 1024;
/** Largest `fs/walk` limits accepted (the Codex 0.169.0 maximums). */
export const MAX_WALK_LIMITS = { depth: 64, directories: 10_000, entries: 50_000 } as const;
/** Bound on the paths and messages of one `fs/walk` result; reaching it sets `truncated`. */
const MAX_WALK_RESPONSE_BYTES = 4 * 1024 * 1024;
const WALK_ITEM_OVERHEAD_BYTES = 64;

/** Options of {@link registerFsHandlers}. */
export interface FsHandlerOptions {
  /**
   * Files larger than this are refused by `fs/readFile` (use `fs/open` + `fs/readBlock`): the
   * largest whose base64 fits in one message. @default DEFAULT_MAX_WHOLE_FILE_BYTES
   */
  maxReadFileBytes?: number;
  /**
   * The memory budget `fs/readFile` and `fs/readBlock` take their buffers from; share one across
   * connections to bound them all together. @default a ReadBudget of this registration alone
   */
  readBudget?: ReadBudget;
  /** Open `fs/open` handles allowed per session. @default DEFAULT_MAX_OPEN_HANDLES */
  maxOpenHandles?: number;
  /** What special sandbox paths (`tmpdir`) mean on this host. @default the process's temp dir */
  sandboxHost?: SandboxHost;
}

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
   * `extraFlags` are added to the open (`O_NOFOLLOW` for a sandboxed write).
   */
  async open(handleId: string, path: string, mode: FileHandleMode, maxOpenHandles: number, extraFlags = 0): Promise<void> {
    if (this.#closed) throw RpcError.invalidRequest('the filesystem session is closed');
    if (this.#handles.has(handleId) || this.#opening.has(handleId)) {
      throw RpcError.invalidRequest(`file handle \`${handleId}\` already exists`);
    }
    if (this.openHandles >= maxOpenHandles) {
      throw RpcError.invalidRequest(
        `too many open file handles (limit ${maxOpenHandles}); close handles with fs/close before opening \`${handleId}\``,
      );
    }
    this.#opening.add(handleId);
    try {
      const handle = mode === 'read' ? await openRegularFile(path, extraFlags) : await openForReplace(path, extraFlags);
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

/**
 * Registers every `fs/*` method of the Codex exec-server (0.169.0 semantics and error codes) on
 * `connection`, acting on this machine's filesystem through `node:fs/promises`. Block I/O handles
 * live in `state`, shared by every connection of the session.
 */
export function registerFsHandlers(connection: RpcConnection, state: FsSessionState, options: FsHandlerOptions = {}): void {
  const maxReadFileBytes = options.maxReadFileBytes ?? DEFAULT_MAX_WHOLE_FILE_BYTES;
  const maxOpenHandles = options.maxOpenHandles ?? DEFAULT_MAX_OPEN_HANDLES;
  const readBudget = options.readBudget ?? new ReadBudget();
  const readBuffers = new ScratchBuffer(MAX_SCRATCH_BYTES);
  const sandboxHost = options.sandboxHost ?? { tempDir: tmpdir() };
  const policyOf = (sandbox: unknown): SandboxPolicy | undefined => parseSandboxRequest(sandbox, sandboxHost);

  connection.onRequest(FsReadFile, async (params, context) => {
    const path = toPath(params.path);
    assertReadable(policyOf(params.sandbox), path, FsReadFile.method);
    const follow = params.followSymlinks ?? true;
    if (!follow) await refuseSymlinkAncestors(path);
    const { handle, size } = await openRegularFileWithSize(path, follow ? 0 : constants.O_NOFOLLOW);
    let reservation: ReadReservation | undefined;
    try {
      // Refused before anything is allocated: the size is known from the open file.
      if (size > maxReadFileBytes) throw fileTooLarge(path, size, maxReadFileBytes);
      const held = await budgeted(FsReadFile.method, () => readBudget.reserve(readMemoryCost(size), context.signal));
      reservation = held;
      // A file that grew since its fstat may be read up to the limit: budget for that first.
      const grow = (): Promise<void> => budgeted(FsReadFile.method, () => held.extend(readMemoryCost(maxReadFileBytes) - held.bytes, context.signal));
      const { data, release } = await io(() => readWhole(handle, size, path, maxReadFileBytes, readBuffers, grow));
      // The budget comes back once the answer has left the transport's buffer.
      return withBase64Bytes({}, 'dataBase64', data, {}, { encoded: release, sent: held.release });
    } catch (error) {
      reservation?.release();
      throw error;
    } finally {
      closeInBackground(handle);
    }
  });

  connection.onRequestWithBytes(FsWriteFile, 'dataBase64', async (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    const follow = params.followSymlinks ?? true;
    const landing = assertWritable(policy, path, FsWriteFile.method, follow);
    const data = decodeBase64Field(params.dataBase64);
    if (typeof data === 'string') {
      throw RpcError.invalidRequest(`fs/writeFile requires valid base64 dataBase64: ${describeInvalidBase64(data)}`);
    }
    if (!follow) await refuseSymlinkAncestors(path);
    await io(() =>
      writeAt(policy, path, landing, FsWriteFile.method, async (target, pinned) => {
        const handle = await open(target, constants.O_WRONLY | constants.O_CREAT | (follow && !pinned ? 0 : constants.O_NOFOLLOW), 0o666);
        try {
          await replaceContents(handle, data);
        } finally {
          closeInBackground(handle);
        }
      }),
    );
    return {};
  });

  connection.onRequest(FsCreateDirectory, async (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    const landing = assertWritable(policy, path, FsCreateDirectory.method);
    if (params.followSymlinks === false) {
      await refuseSymlinkAncestors(path);
      const existing = await lstatOrUndefined(path);
      if (existing?.isSymbolicLink() === true) throw ioError(errnoError('EEXIST'));
    }
    const recursive = params.recursive ?? true;
    if (policy === undefined || landing === undefined) await io(() => mkdir(path, { recursive }));
    else await io(() => makeDirectoryConfined(policy, path, landing, recursive));
    return {};
  });

  connection.onRequest(FsGetMetadata, async (params) => {
    const path = toPath(params.path);
    assertReadable(policyOf(params.sandbox), path, FsGetMetadata.method);
    if (params.followSymlinks === false) {
      await refuseSymlinkAncestors(path);
      const link = await io(() => lstat(path));
      if (link.isSymbolicLink()) throw RpcError.invalidRequest('path contains a symbolic link');
      return metadataOf(link, false);
    }
    const link = await io(() => lstat(path));
    if (!link.isSymbolicLink()) return metadataOf(link, false);
    return metadataOf(await io(() => stat(path)), true);
  });

  connection.onRequest(FsReadDirectory, async (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    assertReadable(policy, path, FsReadDirectory.method);
    const visible = deniedEntryFilter(policy);
    const dirents = await io(() => readdir(path, { withFileTypes: true }));
    const entries = await Promise.all(dirents.filter((dirent) => visible?.(join(path, dirent.name)) ?? true).map((dirent) => directoryEntry(path, dirent)));
    return { entries: entries.filter((entry): entry is DirectoryEntry => entry !== undefined) };
  });

  connection.onRequest(FsWalk, (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    assertReadable(policy, path, FsWalk.method);
    return walk(path, params.options, readCheck(policy));
  });

  connection.onRequest(FsCanonicalize, async (params) => {
    const path = toPath(params.path);
    assertReadable(policyOf(params.sandbox), path, FsCanonicalize.method);
    return { path: pathToUri(await io(() => realpath(path))) };
  });

  connection.onRequest(FsRemove, async (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    const landing = assertWritable(policy, path, FsRemove.method, false);
    const recursive = params.recursive ?? true;
    const force = params.force ?? true;
    if (params.followSymlinks === false) await refuseSymlinkAncestors(path);
    try {
      await writeAt(policy, path, landing, FsRemove.method, async (entry) => {
        const target = await lstat(entry);
        if (target.isSymbolicLink() && params.followSymlinks === false) throw RpcError.invalidRequest('path contains a symbolic link');
        // lstat, so a symlink (even to a directory) is unlinked, never followed.
        if (!target.isDirectory()) await unlink(entry);
        else if (recursive) await rm(entry, { recursive: true, force: true });
        else await rmdir(entry);
      });
    } catch (error) {
      if (error instanceof RpcError) throw error;
      // `force` forgives only a missing path (also one removed concurrently), like `rm -f`.
      if (force && isErrno(error, 'ENOENT')) return {};
      throw ioError(error);
    }
    return {};
  });

  connection.onRequest(FsCopy, async (params) => {
    const source = toPath(params.sourcePath);
    const destination = toPath(params.destinationPath);
    const policy = policyOf(params.sandbox);
    // The source entry itself is what is read: a symlink is copied as a link, not followed.
    assertReadable(policy, source, FsCopy.method, false);
    const landing = assertWritable(policy, destination, FsCopy.method);
    const canRead = readCheck(policy);
    const info = await io(() => lstat(source));
    if (info.isSymbolicLink()) {
      await io(() => writeAt(policy, destination, landing, FsCopy.method, (target) => copySymlink(source, target)));
    } else if (info.isDirectory()) {
      if (!params.recursive) throw RpcError.invalidRequest('fs/copy requires recursive: true when sourcePath is a directory');
      if (await isSameOrInside(source, destination)) {
        throw RpcError.invalidRequest('fs/copy cannot copy a directory to itself or one of its descendants');
      }
      const judge = policy === undefined || canRead === undefined ? undefined : copyJudge(policy, canRead);
      await io(async () => {
        const from = openDirectory(source, false);
        try {
          if (judge !== undefined && !judge.canRead(source, from.real)) throw readRefused(source);
          await writeAt(policy, destination, landing, FsCopy.method, (target) => copyTreeInto(from, source, target, judge));
        } finally {
          from.close();
        }
      });
    } else if (info.isFile()) {
      if (canRead === undefined) {
        // libuv's copyfile keeps the source's mode and is a no-op when both name the same file.
        await io(() => copyFile(source, destination));
      } else {
        await io(() => writeAt(policy, destination, landing, FsCopy.method, (target) => copyRegularFile(source, target, canRead)));
      }
    } else {
      throw RpcError.invalidRequest('fs/copy only supports regular files, directories, and symlinks');
    }
    return {};
  });

  connection.onRequest(FsOpen, async (params) => {
    const path = toPath(params.path);
    const mode = params.mode ?? 'read';
    const policy = policyOf(params.sandbox);
    if (mode === 'read') {
      assertReadable(policy, path, FsOpen.method);
      await state.open(params.handleId, path, mode, maxOpenHandles);
    } else {
      const landing = assertWritable(policy, path, FsOpen.method);
      await io(() => writeAt(policy, path, landing, FsOpen.method, (target, pinned) => state.open(params.handleId, target, mode, maxOpenHandles, pinned ? constants.O_NOFOLLOW : 0)));
    }
    return { handleId: params.handleId };
  });

  connection.onRequest(FsReadBlock, async (params, context) => {
    if (params.len < 1 || params.len > MAX_READ_BLOCK_BYTES) {
      throw RpcError.invalidRequest(`file read block length must be between 1 and ${MAX_READ_BLOCK_BYTES}`);
    }
    // Blocks are small, but a client can ask for many at once: they share the reads' budget.
    const reservation = await budgeted(FsReadBlock.method, () => readBudget.reserve(readMemoryCost(params.len), context.signal));
    try {
      const { bytes, eof } = await state.read(params.handleId, params.offset, params.len);
      return withBase64Bytes({}, 'chunk', bytes, { eof }, { sent: reservation.release });
    } catch (error) {
      reservation.release();
      throw error;
    }
  });

  connection.onRequestWithBytes(FsWriteBlock, 'chunk', async (params) => {
    const bytes = decodeBase64Field(params.chunk);
    if (typeof bytes === 'string') {
      throw RpcError.invalidParams(`fs/writeBlock requires valid base64 chunk: ${describeInvalidBase64(bytes)}`);
    }
    if (bytes.length < 1 || bytes.length > MAX_WRITE_BLOCK_BYTES) {
      throw RpcError.invalidRequest(`file write block length must be between 1 and ${MAX_WRITE_BLOCK_BYTES}`);
    }
    await state.write(params.handleId, params.offset, bytes);
    return {};
  });

  connection.onRequest(FsClose, async (params) => {
    await state.close(params.handleId);
    return {};
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** `uriToPath`, with Node's own URL-to-path refusals (e.g. an encoded `/`) as -32602 too. */
function toPath(uri: string): string {
  try {
    return uriToPath(uri);
  } catch (error) {
    if (error instanceof RpcError) throw error;
    throw RpcError.invalidParams(`invalid URI: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Runs an fs operation, mapping system errors to wire errors (an RpcError passes through). */
async function io<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof RpcError) throw error;
    throw ioError(error);
  }
}

function isErrno(error: unknown, code: string): boolean {
  // Not `instanceof Error`: errors from another realm (a vm context) fail that test.
  return typeof error === 'object' && error !== null && 'code' in error && error.code === code;
}

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch {
    return undefined;
  }
}

/**
 * Runs a write of `path` (`write` gets the path to act on and whether it is pinned). Without a
 * restricted sandbox (`landing` undefined) it acts on `path` itself. Under one, `landing` is where
 * the write was judged to land, and the write goes exactly there: the parent directory is held
 * open and judged again by the real path of what was opened, and `write` gets a path to the final
 * name inside that open directory, which it must use without following a final symlink
 * (`O_NOFOLLOW`). A symlink swapped in after the check cannot lead the write anywhere else.
 */
async function writeAt<T>(
  policy: SandboxPolicy | undefined,
  path: string,
  landing: string | undefined,
  method: string,
  write: (target: string, pinned: boolean) => Promise<T>,
): Promise<T> {
  if (policy === undefined || landing === undefined) return write(path, false);
  const parent = openDirectory(dirname(landing), false);
  try {
    assertLandsWritable(policy, path, join(parent.real, basename(landing)), method);
    return await write(parent.at(basename(landing)), true);
  } finally {
    parent.close();
  }
}

/**
 * `fs/createDirectory` under a restricted sandbox: makes `landing` (where `path` was judged to
 * land) one level at a time below its deepest existing ancestor, each inside the one before, held
 * open, and opened without following a symlink; one planted on the way fails the call instead of
 * leading the new directories elsewhere. Errors are those of `mkdir` (recursive or not).
 */
async function makeDirectoryConfined(policy: SandboxPolicy, path: string, landing: string, recursive: boolean): Promise<void> {
  const method = FsCreateDirectory.method;
  if (!recursive) {
    await writeAt(policy, path, landing, method, (target) => mkdir(target));
    return;
  }
  const missing: string[] = [];
  let directory: PinnedDirectory | undefined;
  for (let at = landing; directory === undefined; ) {
    try {
      directory = openDirectory(at, false);
    } catch (error) {
      const parent = dirname(at);
      // An existing file where the directory should be is `File exists`, as `mkdir -p` says.
      if (at === landing && isErrno(error, 'ENOTDIR') && (await lstatOrUndefined(at)) !== undefined) throw errnoError('EEXIST');
      if (!isErrno(error, 'ENOENT') || parent === at) throw error;
      missing.unshift(basename(at));
      at = parent;
    }
  }
  try {
    assertLandsWritable(policy, path, join(directory.real, ...missing), method);
    for (const name of missing) {
      try {
        await mkdir(directory.at(name));
      } catch (error) {
        if (!isErrno(error, 'EEXIST')) throw error; // made meanwhile: fine if it is a directory
      }
      const child = openDirectory(directory.at(name), true);
      directory.close();
      directory = child;
    }
  } finally {
    directory.close();
  }
}

/** How a tree copy under a restricted sandbox judges the entries it reads and writes. */
interface CopyJudge {
  /** The read check of a direct read, on the entry's path as listed and its real path. */
  canRead(listed: string, real: string): boolean;
  /** Throws unless the entry about to be made at `real` may be written. */
  assertCanWrite(real: string): void;
}

function copyJudge(policy: SandboxPolicy, canRead: (path: string) => boolean): CopyJudge {
  return {
    canRead: (listed, real) => canRead(listed) && canRead(real),
    assertCanWrite: (real) => assertLandsWritable(policy, real, real, FsCopy.method),
  };
}

function readRefused(path: string): RpcError {
  return RpcError.invalidRequest(`${FsCopy.method}: reading \`${path}\` is not allowed by the sandbox`);
}

/**
 * Copies the regular file `source` to `target` (contents and mode; a no-op when both are the same
 * file), opening both without following a final symlink and copying between the open files, so
 * that the copy reads and writes the entries that were judged. `canRead` (under a sandbox) judges
 * the source again by where its open really landed.
 */
async function copyRegularFile(source: string, target: string, canRead: ((path: string) => boolean) | undefined): Promise<void> {
  const from = await open(source, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  try {
    if (canRead !== undefined && !canRead(await realPathOfOpened(from, source))) throw readRefused(source);
    if (!(await from.stat()).isFile()) throw RpcError.invalidRequest(`fs/copy: \`${source}\` is no longer a regular file`);
    const to = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o666);
    try {
      await copyOpenedFile(from, source, to, target);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/**
 * For `followSymlinks: false`: a symlink among the parent directories of `path` fails like an
 * `O_NOFOLLOW` walk of the components does in Codex (`Not a directory (os error 20)`). Missing
 * components end the check: the operation itself reports them (or creates them).
 */
async function refuseSymlinkAncestors(path: string): Promise<void> {
  const root = parse(path).root;
  const parts = path.slice(root.length).split(sep).filter((part) => part !== '');
  let current = root;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    const info = await lstatOrUndefined(current);
    if (info === undefined) return;
    if (info.isSymbolicLink()) throw ioError(errnoError('ENOTDIR'));
  }
}

/**
 * Opens a regular file for reading. `O_NONBLOCK` keeps a FIFO from blocking the open; anything
 * but a regular file is refused as Codex does.
 */
async function openRegularFile(path: string, extraFlags: number): Promise<FileHandle> {
  return (await openRegularFileWithSize(path, extraFlags)).handle;
}

/** {@link openRegularFile}, with the size its `fstat` found. */
async function openRegularFileWithSize(path: string, extraFlags: number): Promise<{ handle: FileHandle; size: number }> {
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

/**
 * Closes a file without holding up the answer: the contents are in place (a close reports no
 * error a later reader would care about on a local file system; Codex, in Rust, drops its files
 * and ignores the same errors). Saves a thread-pool round trip per whole-file read and write.
 */
function closeInBackground(handle: FileHandle): void {
  handle.close().catch(() => undefined);
}

/** Opens for writing, creating or truncating, as `fs/writeFile` and `fs/open` `replace` do. */
function openForReplace(path: string, extraFlags: number): Promise<FileHandle> {
  return io(() => open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | extraFlags, 0o666));
}

/**
 * Writes all of `bytes` at `offset`. One `write` per call, looping only on a short write:
 * `FileHandle.writeFile` would cut a megabyte into 512 KiB writes, each a thread-pool round trip.
 */
async function writeAll(handle: FileHandle, bytes: Buffer, offset: number): Promise<void> {
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
async function replaceContents(handle: FileHandle, data: Buffer): Promise<void> {
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
const MAX_SCRATCH_BYTES = 4 * 1024 * 1024;

/**
 * One buffer lent out for a whole-file read and taken back once its contents are encoded, so that
 * a connection reading file after file does not allocate a new megabyte each time: V8 counts
 * such buffers as external memory and answers its growth with full garbage collections. A second
 * read while the buffer is out, or a file larger than `maxBytes`, gets a buffer of its own.
 */
class ScratchBuffer {
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
function fileTooLarge(path: string, reported: number | string, limit: number): RpcError {
  return RpcError.invalidRequest(
    `fs/readFile: \`${path}\` is too large to read whole: ${reported} bytes, over the ${limit}-byte limit of fs/readFile (its base64 must fit in one message); read it in blocks with fs/open and fs/readBlock`,
  );
}

/**
 * Runs a {@link ReadBudget} call of `method`, turning its refusals into wire errors: a read larger
 * than the whole budget is -32600, a wait for room that ran out -32603 (try again later).
 */
async function budgeted<T>(method: string, take: () => Promise<T>): Promise<T> {
  try {
    return await take();
  } catch (error) {
    if (error instanceof LocalError && error.code === LocalErrorCode.LimitExceeded) throw RpcError.invalidRequest(`${method}: ${error.message}`);
    throw RpcError.internal(`${method}: ${errorMessage(error)}`);
  }
}

/**
 * Reads a whole file whose `fstat` said `size` (already checked against `limit`), refusing to go
 * past `limit` bytes while reading. A file that grew or shrank since is read to its end all the
 * same; before reading past its size, `grow` is awaited (it takes the memory for that). The data
 * may live in a scratch buffer: call `release` once done with it.
 */
async function readWhole(
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

function metadataOf(info: Stats, isSymlink: boolean): FileMetadata {
  const born = Number.isFinite(info.birthtimeMs) && info.birthtimeMs > 0 ? Math.floor(info.birthtimeMs) : 0;
  return {
    isDirectory: info.isDirectory(),
    isFile: info.isFile(),
    isSymlink,
    size: info.size,
    createdAtMs: born,
    modifiedAtMs: Math.floor(info.mtimeMs),
  };
}

/**
 * One `fs/readDirectory` entry. A symlink reports what it points to; one that cannot be resolved
 * (dangling, a loop) is left out, as Codex does.
 */
async function directoryEntry(directory: string, dirent: Dirent): Promise<DirectoryEntry | undefined> {
  if (!dirent.isSymbolicLink()) return { fileName: dirent.name, isDirectory: dirent.isDirectory(), isFile: dirent.isFile() };
  try {
    const target = await stat(join(directory, dirent.name));
    return { fileName: dirent.name, isDirectory: target.isDirectory(), isFile: target.isFile() };
  } catch {
    return undefined;
  }
}

interface WalkOptions {
  maxDepth: number;
  maxDirectories: number;
  maxEntries: number;
  followDirectorySymlinks: boolean;
}

// A type alias, not an interface, so it fits the result schema's loose (index-signature) shape.
type WalkResult = {
  entries: { path: string; kind: 'file' | 'directory' }[];
  errors: { path: string; message: string }[];
  truncated: boolean;
};

/**
 * `fs/walk`, as Codex does it: breadth-first, each directory's entries in name order; the root's
 * own entries are depth 0. Every examined entry counts against `maxEntries` (skipped ones too);
 * the root counts against `maxDirectories`. Symlinks are listed and descended only when they
 * point to a directory and `followDirectorySymlinks` is set (cycles are cut by real path).
 * A directory that cannot be read is reported under `errors` and the walk goes on. Under a
 * sandbox, `canRead` is the check of a direct read: an entry is reported only when both its path
 * as listed and its real path (where a symlink leads) pass it, and each directory is judged again
 * by the real path of what was opened to list it; the others are skipped and not descended.
 */
async function walk(root: string, options: WalkOptions, canRead?: (path: string) => boolean): Promise<WalkResult> {
  if (options.maxDirectories === 0 || options.maxEntries === 0) {
    throw RpcError.invalidRequest('filesystem walk limits must be greater than zero');
  }
  if (options.maxDepth > MAX_WALK_LIMITS.depth || options.maxDirectories > MAX_WALK_LIMITS.directories || options.maxEntries > MAX_WALK_LIMITS.entries) {
    throw RpcError.invalidRequest(
      `filesystem walk limits exceed maximums: depth=${MAX_WALK_LIMITS.depth}, directories=${MAX_WALK_LIMITS.directories}, entries=${MAX_WALK_LIMITS.entries}`,
    );
  }
  const result: WalkResult = { entries: [], errors: [], truncated: false };
  const rootInfo = await io(() => stat(root));
  const rootLink = await io(() => lstat(root));
  if (!rootInfo.isDirectory() || (rootLink.isSymbolicLink() && !options.followDirectorySymlinks)) return result;

  const identity = async (path: string): Promise<string> => (options.followDirectorySymlinks ? realpath(path) : path);
  const visited = new Set<string>([await io(() => identity(root))]);
  const queue: { path: string; depth: number }[] = [{ path: root, depth: 0 }];
  let directoryCount = 1;
  let entryCount = 0;
  let responseBytes = 0;
  const reserve = (bytes: number): boolean => {
    responseBytes += bytes + WALK_ITEM_OVERHEAD_BYTES;
    if (responseBytes <= MAX_WALK_RESPONSE_BYTES) return true;
    result.truncated = true;
    return false;
  };
  const pushError = (path: string, error: unknown): boolean => {
    const item = { path: pathToUri(path), message: ioError(error).message };
    if (!reserve(item.path.length + item.message.length)) return false;
    result.errors.push(item);
    return true;
  };

  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const { path: directory, depth } = next;
    let listing: { real: string; dirents: Dirent[] } | undefined;
    try {
      listing = await listDirectory(directory, canRead);
    } catch (error) {
      if (!pushError(directory, error)) return result;
      continue;
    }
    if (listing === undefined) continue;
    const { real: realDirectory, dirents } = listing;
    dirents.sort((a, b) => compareBytes(a.name, b.name));
    for (const dirent of dirents) {
      if (entryCount === options.maxEntries) {
        result.truncated = true;
        return result;
      }
      entryCount += 1;
      const path = join(directory, dirent.name);
      if (canRead !== undefined && !canRead(path)) continue;
      const kind = await walkKind(path, dirent, options.followDirectorySymlinks);
      if (kind === undefined) continue;
      if (canRead !== undefined) {
        // A symlink (to a directory, when followed) is judged by where it leads, as a read through it is.
        const real = dirent.isSymbolicLink() ? await realpath(path).catch(() => undefined) : join(realDirectory, dirent.name);
        if (real === undefined || !canRead(real)) continue;
      }
      const uri = pathToUri(path);
      if (!reserve(uri.length)) return result;
      result.entries.push({ path: uri, kind });
      if (kind !== 'directory' || depth >= options.maxDepth) continue;
      let id: string;
      try {
        id = await identity(path);
      } catch (error) {
        if (!pushError(path, error)) return result;
        continue;
      }
      if (visited.has(id)) continue;
      visited.add(id);
      if (directoryCount === options.maxDirectories) {
        result.truncated = true;
      } else {
        directoryCount += 1;
        queue.push({ path, depth: depth + 1 });
      }
    }
  }
  return result;
}

/**
 * The entries of a directory, and its real path under a sandbox (its path as given otherwise).
 * Under a sandbox (`canRead`), the directory is opened, judged by where the open really landed
 * (undefined when that may not be read: its path was swapped for a symlink since it was listed)
 * and listed through the open directory.
 */
async function listDirectory(directory: string, canRead: ((path: string) => boolean) | undefined): Promise<{ real: string; dirents: Dirent[] } | undefined> {
  if (canRead === undefined) return { real: directory, dirents: await readdir(directory, { withFileTypes: true }) };
  const opened = openDirectory(directory, false);
  try {
    if (!canRead(opened.real)) return undefined;
    return { real: opened.real, dirents: await readdir(opened.path, { withFileTypes: true }) };
  } finally {
    opened.close();
  }
}

/** What a walk lists an entry as, or undefined to skip it (special files, unwanted symlinks). */
async function walkKind(path: string, dirent: Dirent, followDirectorySymlinks: boolean): Promise<'file' | 'directory' | undefined> {
  if (dirent.isDirectory()) return 'directory';
  if (dirent.isFile()) return 'file';
  if (!dirent.isSymbolicLink() || !followDirectorySymlinks) return undefined;
  try {
    return (await stat(path)).isDirectory() ? 'directory' : undefined;
  } catch {
    return undefined; // dangling or looping
  }
}

/** Orders names by their UTF-8 bytes, as Rust sorts `OsString`s. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

async function copySymlink(source: string, destination: string): Promise<void> {
  await symlink(await readlink(source), destination);
}

/**
 * Makes the directory `target` and copies into it the tree of the open directory `from` (whose
 * path as asked is `listed`): directories are created (an existing destination is `File exists`),
 * files copied with their mode, symlinks recreated as symlinks; sockets, FIFOs and devices are
 * skipped. Each directory is held open while its entries are copied, and each entry is used
 * through it without following a symlink, so the copy reads and writes exactly what it listed.
 * Under a sandbox (`judge`), an entry a direct read would be refused is left out, and every entry
 * made is judged as a write.
 */
async function copyTreeInto(from: PinnedDirectory, listed: string, target: string, judge: CopyJudge | undefined): Promise<void> {
  const info = await from.stat();
  await mkdir(target);
  const to = openDirectory(target, true);
  try {
    for (const dirent of await readdir(from.path, { withFileTypes: true })) {
      const name = dirent.name;
      if (judge !== undefined) {
        if (!judge.canRead(join(listed, name), join(from.real, name))) continue;
        judge.assertCanWrite(join(to.real, name));
      }
      if (dirent.isSymbolicLink()) {
        await symlink(await readlink(from.at(name)), to.at(name));
      } else if (dirent.isDirectory()) {
        const child = openDirectory(from.at(name), true);
        try {
          await copyTreeInto(child, join(listed, name), to.at(name), judge);
        } finally {
          child.close();
        }
      } else if (dirent.isFile()) {
        await copyRegularFile(from.at(name), to.at(name), undefined);
      }
    }
    // Last, so a read-only source directory does not stop its own copy from being filled.
    await to.chmod(info.mode & 0o7777);
  } finally {
    to.close();
  }
}

/** True when `destination` is `source` or lies inside it, comparing real paths. */
async function isSameOrInside(source: string, destination: string): Promise<boolean> {
  const realSource = await io(() => realpath(source));
  const realDestination = await realpathOfNew(destination);
  if (realDestination === undefined) return false; // a missing parent fails the copy itself
  return realDestination === realSource || realDestination.startsWith(realSource.endsWith(sep) ? realSource : realSource + sep);
}

/** The real path `path` has, or would have once created (its parent resolved). */
async function realpathOfNew(path: string): Promise<string | undefined> {
  try {
    return await realpath(path);
  } catch {
    try {
      return join(await realpath(dirname(path)), basename(path));
    } catch {
      return undefined;
    }
  }
}

/**
 * The bytes of a base64 field of params registered with `onRequestWithBytes`: already decoded by
 * the connection, or decoded here; invalid text comes back as is, for the error message.
 */
function decodeBase64Field(field: string | Buffer): Buffer | string {
  return typeof field === 'string' ? (decodeBase64(field) ?? field) : field;
}

/** The reason text is not valid base64, in the words of the Rust `base64` crate Codex uses. */
function describeInvalidBase64(text: string): string {
  const symbol = /[^A-Za-z0-9+/=]/.exec(text);
  const firstPad = text.indexOf('=');
  const misplacedPad = firstPad >= 0 && /[^=]/.test(text.slice(firstPad)) ? firstPad : -1;
  const offset = symbol === null ? misplacedPad : misplacedPad < 0 ? symbol.index : Math.min(symbol.index, misplacedPad);
  if (offset >= 0) return `Invalid symbol ${text.charCodeAt(offset)}, offset ${offset}.`;
  return 'Invalid padding';
}
