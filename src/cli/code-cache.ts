import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { Script } from 'node:vm';

/**
 * V8's code cache for the CommonJS script that holds the server's commands (dist/cli/commands.cjs,
 * see tools/bundle.js). Compiling its 1.6 MB of JavaScript is a large part of a cold start, and Node.js
 * 20 caches no compiled code of its own (`module.enableCompileCache` came in 22.1). So the script
 * is compiled with `vm.Script` and the bytecode V8 made for it (also of the functions that ran
 * during the first start) is kept in a file, read back by the next start.
 *
 * A cache file holds code this process will run, so only one that this user wrote and no one else
 * can change is read. Its name is a hash of the script's bytes, the Node.js version, the
 * architecture and the V8 flags, so a rebuilt script or another Node.js never meets an old file
 * (V8 checks only the source's length, and rejects other versions and flags itself). Nothing about
 * the cache is ever fatal: without a usable file or folder the script compiles from source.
 */

/** Cache files kept in the folder (other builds, other Node.js versions); the oldest go first. */
export const MAX_CODE_CACHE_FILES = 8;
/** The largest cache file read; the server's is ~1 MB. */
const MAX_CODE_CACHE_BYTES = 64 * 1024 * 1024;
/** The name of a cache file, and of one being written. */
const CACHE_FILE = /^[0-9a-f]{64}\.v8cache(\.\d+\.tmp)?$/;

/**
 * The cache folder: `CODEX_MULTIENV_CACHE_DIR`, else `$XDG_CACHE_HOME/codex-multienv`, else
 * `~/.cache/codex-multienv`; undefined (no cache) with `CODEX_MULTIENV_CODE_CACHE=0`.
 */
export function codeCacheDir(env: NodeJS.ProcessEnv): string | undefined {
  if (env.CODEX_MULTIENV_CODE_CACHE === '0') return undefined;
  const configured = env.CODEX_MULTIENV_CACHE_DIR;
  if (configured !== undefined && configured.length > 0) return configured;
  // The XDG rule: a relative value is invalid and ignored.
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg !== undefined && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'codex-multienv');
}

/** What {@link runCommonJs} needs besides the script. */
export interface CodeCacheOptions {
  /** The cache folder (created when missing); undefined compiles without a cache. */
  dir: string | undefined;
  /** `NODE_OPTIONS`, which can carry V8 flags, part of the cache key. */
  nodeOptions: string | undefined;
}

/**
 * Runs the CommonJS script at `path` as Node.js would (`module.exports`, `require` relative to it,
 * `__filename`, `__dirname`) with its code cache, and returns its `module.exports`. When there was
 * no usable cache, the cache is written as the process exits, with everything compiled by then.
 */
export function runCommonJs(path: string, options: CodeCacheOptions): unknown {
  const bytes = readFileSync(path);
  const source = bytes.toString('utf8');
  const file = options.dir === undefined ? undefined : join(options.dir, `${cacheKey(bytes, options.nodeOptions)}.v8cache`);
  const cachedData = file === undefined ? undefined : readOwnFile(file);
  // Node.js's own wrapper, on the script's first line so that line numbers stay as they are.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: path, ...(cachedData === undefined ? {} : { cachedData }) });
  if (file !== undefined && (cachedData === undefined || script.cachedDataRejected === true)) {
    process.once('exit', () => writeCache(file, script));
  }
  const wrapper: unknown = script.runInThisContext();
  if (typeof wrapper !== 'function') throw new Error(`${path} did not compile to a function`);
  const loaded = { exports: {} };
  Reflect.apply(wrapper, loaded.exports, [loaded.exports, createRequire(path), loaded, path, dirname(path)]);
  return loaded.exports;
}

function cacheKey(script: Buffer, nodeOptions: string | undefined): string {
  return createHash('sha256')
    .update(script)
    .update(['', process.version, process.arch, ...process.execArgv, nodeOptions ?? ''].join('\0'))
    .digest('hex');
}

/**
 * The file's bytes when it is a regular file owned by this user that neither group nor others may
 * write (anyone else's would be code injected into this process); else undefined.
 */
function readOwnFile(file: string): Buffer | undefined {
  let fd: number;
  try {
    // Non-blocking: a FIFO in its place must not hang the start.
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const stats = fstatSync(fd);
    const ownUid = process.getuid?.();
    if (!stats.isFile() || stats.size > MAX_CODE_CACHE_BYTES || (ownUid !== undefined && stats.uid !== ownUid) || (stats.mode & 0o022) !== 0) return undefined;
    return readFileSync(fd);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Writes the script's cache beside the others (atomically: a reader sees all of it or none), then prunes the folder. */
function writeCache(file: string, script: Script): void {
  const dir = dirname(file);
  const temp = `${file}.${process.pid}.tmp`;
  try {
    const data = script.createCachedData();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(temp, data, { mode: 0o600, flag: 'wx' });
    renameSync(temp, file);
  } catch {
    // An unwritable folder only means compiling again next time.
    try {
      unlinkSync(temp);
    } catch {
      // It was never created.
    }
    return;
  }
  prune(dir);
}

/** Removes all but the {@link MAX_CODE_CACHE_FILES} newest cache files in `dir`. */
function prune(dir: string): void {
  try {
    const files = readdirSync(dir)
      .filter((name) => CACHE_FILE.test(name))
      .map((name) => ({ name, mtimeMs: statSync(join(dir, name)).mtimeMs }))
      .sort((a, b) => b.mtimeMs - a.mtimeMs);
    for (const { name } of files.slice(MAX_CODE_CACHE_FILES)) unlinkSync(join(dir, name));
  } catch {
    // Another process pruned at the same time; the next write prunes again.
  }
}
