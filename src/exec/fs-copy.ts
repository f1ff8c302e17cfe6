/** `fs/copy`: files, symlinks and directory trees, kept to what the sandbox lets be read and written. */
import { constants } from 'node:fs';
import { copyFile, lstat, mkdir, open, readdir, readlink, realpath, symlink } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { FsCopy } from '../protocol/exec.js';
import { RpcError } from '../rpc/errors.js';
import { writeAt, type RaceWindow } from './fs-confined.js';
import { io } from './io-errors.js';
import { copyOpenedFile, openDirectory, realPathOfOpened, type PinnedDirectory } from './pinned-directory.js';
import { assertLandsWritable, readCheck, type SandboxPolicy } from './sandbox-policy.js';

/**
 * Copies the entry at `source` to `destination`, both already judged by the sandbox (`landing`
 * is where the destination was judged to land): a symlink is copied as a link, a directory (only
 * with `recursive`) as a tree, a regular file with its mode. Under a sandbox every entry read or
 * made is judged again where it really is. `raceWindow` (tests) is awaited before a link is read and
 * before the write.
 */
export async function copyEntry(
  policy: SandboxPolicy | undefined,
  source: string,
  destination: string,
  landing: string | undefined,
  recursive: boolean,
  raceWindow?: RaceWindow,
): Promise<void> {
  const canRead = readCheck(policy);
  const info = await io(() => lstat(source));
  if (info.isSymbolicLink()) {
    if (canRead !== undefined) await raceWindow?.(source);
    const linkTarget = await io(() => readLinkJudged(source, canRead));
    await io(() => writeAt(policy, destination, landing, FsCopy.method, (target) => symlink(linkTarget, target), raceWindow));
  } else if (info.isDirectory()) {
    if (!recursive) throw RpcError.invalidRequest('fs/copy requires recursive: true when sourcePath is a directory');
    if (await isSameOrInside(source, destination)) {
      throw RpcError.invalidRequest('fs/copy cannot copy a directory to itself or one of its descendants');
    }
    const judge = policy === undefined || canRead === undefined ? undefined : copyJudge(policy, canRead);
    await io(async () => {
      const from = openDirectory(source, false);
      try {
        if (judge !== undefined && !judge.canRead(source, from.real)) throw readRefused(source);
        await writeAt(policy, destination, landing, FsCopy.method, (target) => copyTreeInto(from, source, target, judge), raceWindow);
      } finally {
        from.close();
      }
    });
  } else if (info.isFile()) {
    if (canRead === undefined) {
      // libuv's copyfile keeps the source's mode and is a no-op when both name the same file.
      await io(() => copyFile(source, destination));
    } else {
      await io(() => writeAt(policy, destination, landing, FsCopy.method, (target) => copyRegularFile(source, target, canRead), raceWindow));
    }
  } else {
    throw RpcError.invalidRequest('fs/copy only supports regular files, directories, and symlinks');
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
 * The target of the symlink `source`. Under a sandbox (`canRead`), read inside its parent
 * directory held open and judged by where that really is, so that a symlink swapped in among
 * the parents after the check cannot make it read a link the sandbox hides.
 */
async function readLinkJudged(source: string, canRead: ((path: string) => boolean) | undefined): Promise<string> {
  if (canRead === undefined) return readlink(source);
  const parent = openDirectory(dirname(source), false);
  try {
    if (!canRead(join(parent.real, basename(source)))) throw readRefused(source);
    return await readlink(parent.at(basename(source)));
  } finally {
    parent.close();
  }
}

/** Makes `destination` a symlink with the target of the symlink `source`. */
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
        await copySymlink(from.at(name), to.at(name));
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
