/** `fs/remove` of one entry or a whole tree, never following a symlink, even one swapped in mid-removal. */
import type { Dirent } from 'node:fs';
import { lstat, readdir, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { RpcError } from '../rpc/errors.js';
import type { RaceWindow } from './fs-confined.js';
import { isErrno } from './io-errors.js';
import { openDirectory, type PinnedDirectory } from './pinned-directory.js';

/**
 * Deepest folder below the removed one that a tree removal enters: it holds one descriptor per
 * level, so an adversarial tree cannot take all of the process's descriptors.
 */
export const MAX_REMOVE_DEPTH = 1024;

/** What {@link removeEntry} is asked to do (the `fs/remove` params, defaults applied). */
export interface RemoveOptions {
  recursive: boolean;
  /** False: a symlink at `entry` is refused instead of unlinked. */
  followSymlinks: boolean;
  /**
   * Under a restricted sandbox: throws unless the entry listed as `listed`, really at `real`, may
   * be written (removed); every entry of a tree is judged before it is removed or entered, so a
   * read-only or denied folder inside a writable one (`.git` in the workspace) stays.
   */
  assertRemovable?: (listed: string, real: string) => void;
  /** Tests: awaited before each directory of a tree is opened to be emptied. */
  raceWindow?: RaceWindow;
}

/**
 * Removes the entry at `entry` (whose path as asked is `listed`): a symlink is unlinked, never
 * followed; a directory is removed empty, or with `recursive` with everything below it. A tree is
 * walked through held-open directories: each subdirectory is opened without following a symlink
 * and emptied through its descriptor, then removed by name from the open parent. An entry swapped
 * for a symlink while the tree is being removed is unlinked as the link it now is, so the removal
 * stays inside the tree that was judged. Entries already gone below `entry` are fine (`rm -rf`).
 * With `assertRemovable`, the first entry it refuses fails the removal (what came before it in
 * the walk is gone, as with `rm -r` stopped by an error).
 * A tree more than {@link MAX_REMOVE_DEPTH} folders deep is refused when the walk gets there.
 * @throws the system error of the removal (`ENOENT` for `entry` itself missing, `ENOTEMPTY`, …).
 */
export async function removeEntry(entry: string, listed: string, options: RemoveOptions): Promise<void> {
  const target = await lstat(entry);
  if (target.isSymbolicLink() && !options.followSymlinks) throw RpcError.invalidRequest('path contains a symbolic link');
  if (!target.isDirectory()) await unlink(entry);
  else if (!options.recursive) await rmdir(entry);
  else await removeDirectory(entry, listed, options, 0);
}

/** Empties and removes the directory at `path` (as listed: `listed`); a symlink found there instead is unlinked. */
async function removeDirectory(path: string, listed: string, options: RemoveOptions, depth: number): Promise<void> {
  if (depth > MAX_REMOVE_DEPTH) throw RpcError.invalidRequest(`fs/remove: \`${listed}\` is more than ${MAX_REMOVE_DEPTH} folders deep in the tree being removed`);
  await options.raceWindow?.(listed);
  let directory: PinnedDirectory;
  try {
    directory = openDirectory(path, true);
  } catch (error) {
    // No longer a directory (a symlink or a file took its place): removed as what it is now.
    if (isErrno(error, 'ENOTDIR') || isErrno(error, 'ELOOP')) return unlinkIfThere(path);
    if (isErrno(error, 'ENOENT')) return;
    throw error;
  }
  try {
    let dirents: Dirent[];
    try {
      dirents = await readdir(directory.path, { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return; // removed meanwhile
      throw error;
    }
    for (const dirent of dirents) {
      options.assertRemovable?.(join(listed, dirent.name), join(directory.real, dirent.name));
      if (dirent.isDirectory()) await removeDirectory(directory.at(dirent.name), join(listed, dirent.name), options, depth + 1);
      else await unlinkIfThere(directory.at(dirent.name));
    }
  } finally {
    directory.close();
  }
  try {
    await rmdir(path);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
}

async function unlinkIfThere(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
}
