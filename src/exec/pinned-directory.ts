import { closeSync, constants, existsSync, lstatSync, openSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { chmod, copyFile, realpath, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A directory held open, so that a name inside it is created, opened or removed in that very
 * directory, even if a path leading to it is swapped for a symlink meanwhile.
 */
export interface PinnedDirectory {
  /** The directory's real path, read back from the open descriptor. */
  readonly real: string;
  /** A path naming the directory itself. */
  readonly path: string;
  /** A path naming `name` inside the directory. */
  at(name: string): string;
  /** The directory's own metadata. */
  stat(): Promise<Stats>;
  /** Sets the mode bits of the directory itself (not of whatever its path names by then). */
  chmod(mode: number): Promise<void>;
  /** Lets the directory go; idempotent. */
  close(): void;
}

/** Where this process's descriptors appear as paths, or undefined (probed once). */
let descriptorPaths: string | undefined | null = null;

/**
 * `/proc/self/fd` on Linux: the kernel resolves `/proc/self/fd/7/name` from descriptor 7 itself,
 * as `openat` does, whatever the path that opened it leads to now.
 */
function descriptorDirectory(): string | undefined {
  if (descriptorPaths === null) descriptorPaths = process.platform === 'linux' && existsSync('/proc/self/fd') ? '/proc/self/fd' : undefined;
  return descriptorPaths;
}

/**
 * Opens the directory at `path` and reads back where it really is. With `noFollow`, a final
 * symlink is refused (`ENOTDIR`, as the kernel answers `O_DIRECTORY | O_NOFOLLOW`) instead of
 * followed. Synchronous, like the sandbox's own path resolution it completes: opening a directory
 * reads no data, and a round trip through the thread pool for each of the open, the read-back and
 * the close would add more to a small write than the write itself. Without `/proc/self/fd` (not
 * Linux, or no /proc mounted) the directory is used by its real path, checked just before: a
 * symlink swapped in between the check and the use is then not caught.
 * @throws the system error of the open (`ENOENT`, `ENOTDIR`, …).
 */
export function openDirectory(path: string, noFollow: boolean): PinnedDirectory {
  const fds = descriptorDirectory();
  if (fds === undefined) {
    if (noFollow && lstatSync(path).isSymbolicLink()) throw Object.assign(new Error(`${path} is a symbolic link`), { code: 'ENOTDIR' });
    const real = realpathSync(path);
    if (!lstatSync(real).isDirectory()) throw Object.assign(new Error(`${path} is not a directory`), { code: 'ENOTDIR' });
    return { real, path: real, at: (name) => join(real, name), stat: () => stat(real), chmod: (mode) => chmod(real, mode), close: () => undefined };
  }
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | (noFollow ? constants.O_NOFOLLOW : 0));
  const self = `${fds}/${fd}`;
  let real: string;
  try {
    real = readlinkSync(self);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  let open = true;
  return {
    real,
    path: self,
    at: (name) => `${self}/${name}`,
    // Through the descriptor's path, which leads to the open directory itself.
    stat: () => stat(self),
    chmod: (mode) => chmod(self, mode),
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/**
 * The real path of a file just opened, read back from its descriptor: where the open really
 * landed, whatever symlinks its path went through. Without `/proc/self/fd`, the real path of
 * `path` now.
 */
export async function realPathOfOpened(handle: FileHandle, path: string): Promise<string> {
  const fds = descriptorDirectory();
  // Synchronous, as the read-back in openDirectory: /proc answers from memory, and a round trip
  // through the thread pool would cost more than the lookup (every sandboxed read makes one).
  return fds === undefined ? realpath(path) : readlinkSync(`${fds}/${handle.fd}`);
}

/**
 * Copies the contents and mode of the open file `from` to the open file `to` (a no-op when both
 * are the same file), as `copyFile` does, but between the files already opened: the paths they
 * were opened by are not looked up again. Without `/proc/self/fd`, copies by those paths.
 */
export async function copyOpenedFile(from: FileHandle, fromPath: string, to: FileHandle, toPath: string): Promise<void> {
  const fds = descriptorDirectory();
  await (fds === undefined ? copyFile(fromPath, toPath) : copyFile(`${fds}/${from.fd}`, `${fds}/${to.fd}`));
}
