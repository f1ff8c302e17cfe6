/** `fs/walk`: a bounded breadth-first listing of a directory tree, as the Codex exec-server does it. */
import type { Dirent } from 'node:fs';
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RpcError } from '../rpc/errors.js';
import { io, ioError } from './io-errors.js';
import { pathToUri } from './path-uri.js';
import { openDirectory } from './pinned-directory.js';

/** Largest `fs/walk` limits accepted (the Codex 0.169.0 maximums). */
export const MAX_WALK_LIMITS = { depth: 64, directories: 10_000, entries: 50_000 } as const;

/** Bound on the paths and messages of one `fs/walk` result; reaching it sets `truncated`. */
const MAX_WALK_RESPONSE_BYTES = 4 * 1024 * 1024;
const WALK_ITEM_OVERHEAD_BYTES = 64;

/** The limits and symlink choice of one `fs/walk` (its `options`). */
export interface WalkOptions {
  maxDepth: number;
  maxDirectories: number;
  maxEntries: number;
  followDirectorySymlinks: boolean;
}

// A type alias, not an interface, so it fits the result schema's loose (index-signature) shape.
/** The result of `fs/walk`. */
export type WalkResult = {
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
export async function walk(root: string, options: WalkOptions, canRead?: (path: string) => boolean): Promise<WalkResult> {
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
