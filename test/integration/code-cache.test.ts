// The code cache of the built CLI (src/cli/code-cache.ts): the first start writes V8's cache of
// dist/cli/commands.cjs into the cache folder, later starts read it; a file anyone else could have
// written is never read, and a broken cache or folder never stops the server.

import { spawn, spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { networkEnv } from '../helpers/network.js';
import { MAX_CODE_CACHE_FILES } from '../../src/cli/code-cache.js';
import { CLI, tempDir } from '../helpers/process.js';

const INITIALIZE = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'test', version: '1' } } };
/** A uid that is not ours (nobody). */
const OTHER_UID = 65534;

/**
 * Starts the server as a client does (relay and worker), waits for its answer to `initialize`,
 * then closes its stdin and waits until every process holding the client's pipes is gone (the
 * worker writes the cache as it exits). Fails on a start that does not answer in time.
 */
async function startAndStop(home: string, env: Record<string, string>): Promise<void> {
  const child = spawn(process.execPath, [CLI], { env: { ...networkEnv(process.env), CODEX_HOME: home, HOME: home, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
  let timer: NodeJS.Timeout | undefined;
  try {
    const answer = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`the server exited (${String(code)}) before answering: ${stderr}`)));
      timer = setTimeout(() => reject(new Error(`no answer to initialize within 30 s: ${stderr}`)), 30_000);
      child.stdin.write(`${JSON.stringify(INITIALIZE)}\n`);
    });
    expect(JSON.parse(answer)).toMatchObject({ id: 1, result: { serverInfo: { name: expect.any(String) } } });
    child.stdin.end();
    expect(await closed).toBe(0);
  } finally {
    clearTimeout(timer);
    child.stdin.destroy();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** The cache files in `dir`, with what identifies each one. */
async function cacheFiles(dir: string): Promise<{ name: string; ino: number; mtimeMs: number; mode: number; uid: number }[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.v8cache'));
  return Promise.all(
    names.map(async (name) => {
      const stats = await stat(join(dir, name));
      return { name, ino: stats.ino, mtimeMs: stats.mtimeMs, mode: stats.mode & 0o777, uid: stats.uid };
    }),
  );
}

describe('code cache of the built CLI', () => {
  let home: { path: string; cleanup: () => Promise<void> };

  beforeEach(async () => {
    home = await tempDir('code-cache-');
  });

  afterEach(async () => {
    await home.cleanup();
  });

  it('is written by the first start, in a folder only this user can read, and read by the next', async () => {
    const dir = join(home.path, 'cache');
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    const written = await cacheFiles(dir);
    expect(written).toEqual([expect.objectContaining({ mode: 0o600 })]);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);

    // Read and accepted, the cache is left as it is; a rejected or unread one would be written anew.
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    expect(await cacheFiles(dir)).toEqual(written);
  });

  it('keeps the newest files of other builds and Node.js versions, up to a bound', async () => {
    const dir = join(home.path, 'cache');
    await mkdir(dir, { mode: 0o700 });
    const old = Array.from({ length: MAX_CODE_CACHE_FILES + 2 }, (_, i) => `${i.toString(16).padStart(64, '0')}.v8cache`);
    for (const [i, name] of old.entries()) {
      await writeFile(join(dir, name), 'another build', { mode: 0o600 });
      await utimes(join(dir, name), 1_000_000 + i, 1_000_000 + i);
    }
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    const kept = (await readdir(dir)).sort();
    expect(kept).toHaveLength(MAX_CODE_CACHE_FILES);
    // The oldest went; this build's file is among the kept.
    expect(kept).not.toContain(old[0]);
    expect(kept).not.toContain(old[1]);
    expect(kept).not.toContain(old[2]);
    expect(kept.filter((name) => !old.includes(name))).toHaveLength(1);
  });

  it('goes to $XDG_CACHE_HOME/codex-multienv, else ~/.cache/codex-multienv, and is off with CODEX_MULTIENV_CODE_CACHE=0', async () => {
    await startAndStop(home.path, { XDG_CACHE_HOME: join(home.path, 'xdg') });
    expect(await cacheFiles(join(home.path, 'xdg', 'codex-multienv'))).toHaveLength(1);

    await startAndStop(home.path, {});
    expect(await cacheFiles(join(home.path, '.cache', 'codex-multienv'))).toHaveLength(1);

    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: join(home.path, 'off'), CODEX_MULTIENV_CODE_CACHE: '0' });
    await expect(stat(join(home.path, 'off'))).rejects.toThrow(/ENOENT/);
  });

  it('never reads a cache file that another user owns or that others may write: it compiles from source and replaces the file', async () => {
    const dir = join(home.path, 'cache');
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    const [first] = await cacheFiles(dir);
    if (first === undefined) throw new Error('the first start wrote no cache');
    const file = join(dir, first.name);

    // The real cache, which V8 would accept: only the loader's check keeps it from being read.
    await chmod(file, 0o666);
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    const afterWritable = await cacheFiles(dir);
    expect(afterWritable).toEqual([expect.objectContaining({ name: first.name, mode: 0o600 })]);
    expect(afterWritable[0]?.ino).not.toBe(first.ino);

    await chown(file, OTHER_UID, OTHER_UID);
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    const afterOwner = await cacheFiles(dir);
    expect(afterOwner).toEqual([expect.objectContaining({ name: first.name, mode: 0o600, uid: process.getuid?.() })]);
    expect(afterOwner[0]?.ino).not.toBe(afterWritable[0]?.ino);
  });

  it('starts all the same with a corrupt cache file, a FIFO in its place or a folder it cannot create', async () => {
    const dir = join(home.path, 'cache');
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    const [first] = await cacheFiles(dir);
    if (first === undefined) throw new Error('the first start wrote no cache');
    const file = join(dir, first.name);

    await writeFile(file, Buffer.alloc(4096, 0x5a));
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    expect((await stat(file)).size).not.toBe(4096);

    // Opening a FIFO for reading would wait for a writer forever.
    await rm(file);
    expect(spawnSync('mkfifo', ['-m', '600', file]).status).toBe(0);
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: dir });
    expect((await stat(file)).isFile()).toBe(true);

    // Below a regular file no folder can be made.
    await mkdir(join(home.path, 'plain'));
    await writeFile(join(home.path, 'plain', 'file'), 'x');
    await startAndStop(home.path, { CODEX_MULTIENV_CACHE_DIR: join(home.path, 'plain', 'file', 'cache') });
  });
});
