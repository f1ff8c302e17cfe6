/**
 * The `fs/*` methods of the Codex exec-server, registered on a connection: each handler turns its
 * params into paths, asks the sandbox, and hands the work to the module that does it
 * (`fs-files.ts`, `fs-session.ts`, `fs-walk.ts`, `fs-copy.ts`, `fs-confined.ts`).
 */
import { constants, type Dirent, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, realpath, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import { decodeBase64Field, withBase64Bytes } from '../rpc/base64-field.js';
import type { RpcConnection } from '../rpc/connection.js';
import { RpcError } from '../rpc/errors.js';
import { describeInvalidBase64 } from '../util/base64.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import {
  assertOpenedReadable,
  lookUpConfined,
  lookUpPathConfined,
  lstatOrUndefined,
  makeDirectoryConfined,
  openReadableDirectory,
  refuseSymlinkAncestors,
  writeAt,
  type RaceWindow,
} from './fs-confined.js';
import { copyEntry } from './fs-copy.js';
import { removeEntry } from './fs-remove.js';
import { closeInBackground, fileTooLarge, MAX_SCRATCH_BYTES, openRegularFile, readWhole, replaceContents, ScratchBuffer } from './fs-files.js';
import { createFsSessionState, FsSessionState } from './fs-session.js';
import { walk } from './fs-walk.js';
import { errnoError, io, ioError, isErrno } from './io-errors.js';
import { uriToPath, pathToUri } from './path-uri.js';
import type { PinnedDirectory } from './pinned-directory.js';
import { ReadBudget, readMemoryCost, type ReadReservation } from './read-budget.js';
import { assertLandsWritable, assertReadable, assertWritable, deniedEntryFilter, parseSandboxRequest, readCheck, type SandboxHost, type SandboxPolicy } from './sandbox-policy.js';

// Re-exported: whoever registers these handlers makes the session state they share.
export { createFsSessionState, FsSessionState };

/** Default bound on the `fs/open` handles one session may hold at once. */
export const DEFAULT_MAX_OPEN_HANDLES = 256;
/** Largest `len` of one `fs/readBlock` (the Codex 0.169.0 limit). */
export const MAX_READ_BLOCK_BYTES = 1024 * 1024;
/** Largest decoded `chunk` of one `fs/writeBlock` (the Codex 0.169.0 limit). */
export const MAX_WRITE_BLOCK_BYTES = 1024 * 1024;

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
  /**
   * Tests only: awaited between a sandboxed path's check and its use, where a test swaps a path
   * component for a symlink (see {@link RaceWindow}). @default none
   */
  raceWindow?: RaceWindow;
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
  const { raceWindow } = options;

  connection.onRequest(FsReadFile, async (params, context) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    assertReadable(policy, path, FsReadFile.method);
    const follow = params.followSymlinks ?? true;
    if (!follow) await refuseSymlinkAncestors(path);
    if (policy !== undefined) await raceWindow?.(path);
    const { handle, size } = await openRegularFile(path, follow ? 0 : constants.O_NOFOLLOW);
    let reservation: ReadReservation | undefined;
    try {
      if (policy !== undefined) await assertOpenedReadable(policy, handle, path, FsReadFile.method);
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
      writeAt(
        policy,
        path,
        landing,
        FsWriteFile.method,
        async (target, pinned) => {
          const handle = await open(target, constants.O_WRONLY | constants.O_CREAT | (follow && !pinned ? 0 : constants.O_NOFOLLOW), 0o666);
          try {
            await replaceContents(handle, data);
          } finally {
            closeInBackground(handle);
          }
        },
        raceWindow,
      ),
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
    else await io(() => makeDirectoryConfined(policy, path, landing, recursive, raceWindow));
    return {};
  });

  connection.onRequest(FsGetMetadata, async (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    const follow = params.followSymlinks ?? true;
    assertReadable(policy, path, FsGetMetadata.method, follow);
    if (!follow) await refuseSymlinkAncestors(path);
    const canRead = readCheck(policy);
    let found: { info: Stats; isSymlink: boolean };
    if (canRead === undefined) {
      const link = await io(() => lstat(path));
      found = { info: !follow || !link.isSymbolicLink() ? link : await io(() => stat(path)), isSymlink: link.isSymbolicLink() };
    } else {
      // What the path leads to now is looked up from held-open directories and judged again.
      await raceWindow?.(path);
      found = await io(() => lookUpPathConfined(canRead, path, follow, FsGetMetadata.method));
    }
    if (!follow && found.isSymlink) throw RpcError.invalidRequest('path contains a symbolic link');
    return metadataOf(found.info, found.isSymlink);
  });

  connection.onRequest(FsReadDirectory, async (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    assertReadable(policy, path, FsReadDirectory.method);
    const visible = deniedEntryFilter(policy);
    if (policy !== undefined) await raceWindow?.(path);
    const entries = await io(async () => {
      const opened = openReadableDirectory(policy, path, FsReadDirectory.method);
      try {
        const dirents = await readdir(opened?.path ?? path, { withFileTypes: true });
        // The directory stays open while symlinks are looked up in it, not through `path` again.
        const typeOf = symlinkTypeLookup(path, opened, readCheck(policy), raceWindow);
        return await Promise.all(dirents.filter((dirent) => visible?.(join(path, dirent.name)) ?? true).map((dirent) => directoryEntry(dirent, typeOf)));
      } finally {
        opened?.close();
      }
    });
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
    const policy = policyOf(params.sandbox);
    assertReadable(policy, path, FsCanonicalize.method);
    const canRead = readCheck(policy);
    if (canRead === undefined) return { path: pathToUri(await io(() => realpath(path))) };
    // Resolved again from held-open directories, and the answer judged: never a name from outside.
    await raceWindow?.(path);
    return { path: pathToUri((await io(() => lookUpPathConfined(canRead, path, true, FsCanonicalize.method))).real) };
  });

  connection.onRequest(FsRemove, async (params) => {
    const path = toPath(params.path);
    const policy = policyOf(params.sandbox);
    const landing = assertWritable(policy, path, FsRemove.method, false);
    const recursive = params.recursive ?? true;
    const force = params.force ?? true;
    const followSymlinks = params.followSymlinks ?? true;
    if (!followSymlinks) await refuseSymlinkAncestors(path);
    try {
      const assertRemovable =
        policy === undefined || landing === undefined ? undefined : (listed: string, real: string) => assertLandsWritable(policy, listed, real, FsRemove.method);
      await writeAt(policy, path, landing, FsRemove.method, (entry) => removeEntry(entry, path, { recursive, followSymlinks, assertRemovable, raceWindow }), raceWindow);
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
    await copyEntry(policy, source, destination, landing, params.recursive, raceWindow);
    return {};
  });

  connection.onRequest(FsOpen, async (params) => {
    const path = toPath(params.path);
    const mode = params.mode ?? 'read';
    const policy = policyOf(params.sandbox);
    if (mode === 'read') {
      assertReadable(policy, path, FsOpen.method);
      if (policy !== undefined) await raceWindow?.(path);
      await state.open(params.handleId, path, mode, maxOpenHandles, 0, (handle) => assertOpenedReadable(policy, handle, path, FsOpen.method));
    } else {
      const landing = assertWritable(policy, path, FsOpen.method);
      await io(() =>
        writeAt(policy, path, landing, FsOpen.method, (target, pinned) => state.open(params.handleId, target, mode, maxOpenHandles, pinned ? constants.O_NOFOLLOW : 0), raceWindow),
      );
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

/** `uriToPath`, with Node's own URL-to-path refusals (e.g. an encoded `/`) as -32602 too. */
function toPath(uri: string): string {
  try {
    return uriToPath(uri);
  } catch (error) {
    if (error instanceof RpcError) throw error;
    throw RpcError.invalidParams(`invalid URI: ${error instanceof Error ? error.message : String(error)}`);
  }
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

/** The `stat` of what the symlink `name` of a listed directory leads to, or undefined when none may be had. */
type SymlinkTypeLookup = (name: string) => Promise<Stats | undefined>;

/**
 * How `fs/readDirectory` learns what the symlinks it lists lead to. Under a restricted sandbox
 * (`opened` is the held-open listed directory) each link is read inside that directory and
 * followed by {@link lookUpConfined}: a target the sandbox does not let be read counts as
 * unresolvable, so its type does not leak. Without one, by the listed path.
 */
function symlinkTypeLookup(
  path: string,
  opened: PinnedDirectory | undefined,
  canRead: ((real: string) => boolean) | undefined,
  raceWindow: RaceWindow | undefined,
): SymlinkTypeLookup {
  const orUndefined = <T>(lookup: Promise<T>): Promise<T | undefined> => lookup.catch(() => undefined);
  if (opened === undefined || canRead === undefined) return (name) => orUndefined(stat(join(path, name)));
  return async (name) => {
    await raceWindow?.(join(path, name));
    return (await orUndefined(lookUpConfined(canRead, opened, name, true)))?.info;
  };
}

/**
 * One `fs/readDirectory` entry. A symlink reports what it points to; one that cannot be resolved
 * (dangling, a loop, or out of the sandbox's reach) is left out, as Codex does.
 */
async function directoryEntry(dirent: Dirent, typeOf: SymlinkTypeLookup): Promise<DirectoryEntry | undefined> {
  if (!dirent.isSymbolicLink()) return { fileName: dirent.name, isDirectory: dirent.isDirectory(), isFile: dirent.isFile() };
  const target = await typeOf(dirent.name);
  return target === undefined ? undefined : { fileName: dirent.name, isDirectory: target.isDirectory(), isFile: target.isFile() };
}
