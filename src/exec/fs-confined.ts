/**
 * Keeping an `fs/*` call on the entries it was judged by: under a restricted sandbox, writes made
 * through held-open directories so that a symlink swapped in after the check cannot redirect them,
 * and reads judged again by what they really opened; for `followSymlinks: false`, the refusal of a
 * symlink among the parent directories.
 */
import type { Stats } from 'node:fs';
import { lstat, mkdir, readlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, parse, sep } from 'node:path';
import { FsCreateDirectory } from '../protocol/exec.js';
import { RpcError } from '../rpc/errors.js';
import { errnoError, ioError, isErrno } from './io-errors.js';
import { openDirectory, realPathOfOpened, type PinnedDirectory } from './pinned-directory.js';
import { assertLandsWritable, readCheck, type SandboxPolicy } from './sandbox-policy.js';

/**
 * Awaited where a path has been judged and is about to be used (a write made, a read opened, an
 * entry looked up, a directory a removal descends into), with the path as asked: the moment a racing process could
 * swap one of its components for a symlink. A seam for tests, which make that swap there to
 * show it changes nothing; nothing sets it in production.
 */
export type RaceWindow = (path: string) => Promise<void>;

/**
 * Runs a write of `path` (`write` gets the path to act on and whether it is pinned). Without a
 * restricted sandbox (`landing` undefined) it acts on `path` itself. Under one, `landing` is where
 * the write was judged to land, and the write goes exactly there: the parent directory is held
 * open and judged again by the real path of what was opened, and `write` gets a path to the final
 * name inside that open directory, which it must use without following a final symlink
 * (`O_NOFOLLOW`). A symlink swapped in after the check cannot lead the write anywhere else.
 * `raceWindow` (tests) is awaited between that check and the write.
 */
export async function writeAt<T>(
  policy: SandboxPolicy | undefined,
  path: string,
  landing: string | undefined,
  method: string,
  write: (target: string, pinned: boolean) => Promise<T>,
  raceWindow?: RaceWindow,
): Promise<T> {
  if (policy === undefined || landing === undefined) return write(path, false);
  const parent = openDirectory(dirname(landing), false);
  try {
    assertLandsWritable(policy, path, join(parent.real, basename(landing)), method);
    await raceWindow?.(path);
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
export async function makeDirectoryConfined(policy: SandboxPolicy, path: string, landing: string, recursive: boolean, raceWindow?: RaceWindow): Promise<void> {
  const method = FsCreateDirectory.method;
  if (!recursive) {
    await writeAt(policy, path, landing, method, (target) => mkdir(target), raceWindow);
    return;
  }
  const missing: string[] = [];
  let directory: PinnedDirectory | undefined;
  for (let at = landing; directory === undefined;) {
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
    await raceWindow?.(path);
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

/**
 * Under a restricted sandbox, throws -32600 unless the file just opened as `path` (already judged
 * by its path) may be read where the open really landed, read back from the descriptor: a symlink
 * swapped into the path between the check and the open cannot lead a read out of what the
 * sandbox lets be read.
 */
export async function assertOpenedReadable(policy: SandboxPolicy | undefined, handle: FileHandle, path: string, method: string): Promise<void> {
  const canRead = readCheck(policy);
  if (canRead === undefined) return;
  const real = await realPathOfOpened(handle, path);
  if (!canRead(real)) throw RpcError.invalidRequest(`${method}: reading \`${path}\` is not allowed by the sandbox (it was opened at \`${real}\`)`);
}

/**
 * Under a restricted sandbox, opens the directory `path` (already judged by its path) and returns
 * it if it may be read where it really is, or throws -32600; undefined without one. List it
 * through the returned directory (then close it), so that a symlink swapped in meanwhile cannot
 * lead the listing elsewhere.
 * @throws the system error of the open (`ENOENT`, `ENOTDIR`, …).
 */
export function openReadableDirectory(policy: SandboxPolicy | undefined, path: string, method: string): PinnedDirectory | undefined {
  const canRead = readCheck(policy);
  if (canRead === undefined) return undefined;
  const directory = openDirectory(path, false);
  if (canRead(directory.real)) return directory;
  directory.close();
  throw RpcError.invalidRequest(`${method}: reading \`${path}\` is not allowed by the sandbox (it was opened at \`${directory.real}\`)`);
}

/** Symlinks followed by {@link lookUpConfined} before giving up, as the kernel does (`ELOOP`). */
const MAX_SYMLINK_HOPS = 40;

/** An entry reached by {@link lookUpConfined}. */
export interface ConfinedEntry {
  /** Where the entry reached really is: the last symlink's target when followed. */
  readonly real: string;
  /** The `lstat` of the entry reached. */
  readonly info: Stats;
  /** Whether the name looked up was a symlink (followed or not). */
  readonly isSymlink: boolean;
}

/**
 * Looks up `name` inside the held-open `directory` (which stays open) without going through a path
 * again: the entry's `lstat` is taken in that open directory, and with `follow` a symlink is read
 * there and its target looked up the same way inside its own held-open parent (a relative one
 * from the open directory the link is in), hop by hop. The
 * entry reached is then judged by its real path; undefined when `canRead` refuses it. A component
 * swapped for a symlink meanwhile may change what is reached, never let it out of what may be read,
 * so neither its metadata nor its name leaves the sandbox.
 * @throws the system error of a lookup (`ENOENT`, `ENOTDIR`, `ELOOP` after 40 links, …).
 */
export async function lookUpConfined(canRead: (real: string) => boolean, directory: PinnedDirectory, name: string, follow: boolean): Promise<ConfinedEntry | undefined> {
  let current = directory;
  let entry = name;
  let isSymlink = false;
  try {
    for (let hops = 0; ; hops += 1) {
      const info = await lstat(current.at(entry));
      isSymlink ||= info.isSymbolicLink();
      if (!follow || !info.isSymbolicLink()) {
        const real = join(current.real, entry);
        return canRead(real) ? { real, info, isSymlink } : undefined;
      }
      if (hops === MAX_SYMLINK_HOPS) throw errnoError('ELOOP');
      // A relative target is resolved from the open directory itself (as the kernel does), not
      // from its path, which may lead elsewhere by now.
      const target = await readlink(current.at(entry));
      const next = openDirectory(isAbsolute(target) ? dirname(target) : current.at(dirname(target)), false);
      if (current !== directory) current.close();
      current = next;
      entry = basename(target);
    }
  } finally {
    if (current !== directory) current.close();
  }
}

/**
 * Under a restricted sandbox, the entry `path` names (already judged by its path), looked up by
 * {@link lookUpConfined} from its held-open parent directory; throws -32600 when what is reached
 * may not be read. The refusal does not say where that is: naming it would leak it.
 * @throws the system error of a lookup, as {@link lookUpConfined}.
 */
export async function lookUpPathConfined(canRead: (real: string) => boolean, path: string, follow: boolean, method: string): Promise<ConfinedEntry> {
  // `name/` names the directory a symlink `name` leads to, and a file there is `Not a directory`,
  // as the kernel has it.
  const directoryOnly = path.endsWith(sep) && path !== parse(path).root;
  const parent = openDirectory(dirname(path), false);
  try {
    const entry = await lookUpConfined(canRead, parent, basename(path), follow || directoryOnly);
    if (entry === undefined) throw RpcError.invalidRequest(`${method}: reading \`${path}\` is not allowed by the sandbox`);
    if (!directoryOnly) return entry;
    if (!entry.info.isDirectory()) throw errnoError('ENOTDIR');
    return { ...entry, isSymlink: false };
  } finally {
    parent.close();
  }
}

/**
 * For `followSymlinks: false`: a symlink among the parent directories of `path` fails like an
 * `O_NOFOLLOW` walk of the components does in Codex (`Not a directory (os error 20)`). Missing
 * components end the check: the operation itself reports them (or creates them).
 */
export async function refuseSymlinkAncestors(path: string): Promise<void> {
  const root = parse(path).root;
  const parts = path
    .slice(root.length)
    .split(sep)
    .filter((part) => part !== '');
  let current = root;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    const info = await lstatOrUndefined(current);
    if (info === undefined) return;
    if (info.isSymbolicLink()) throw ioError(errnoError('ENOTDIR'));
  }
}

/** The `lstat` of `path`, or undefined when there is none to be had (missing, unreachable). */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch {
    return undefined;
  }
}
