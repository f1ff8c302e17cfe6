import { mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDirectory } from '../../../src/exec/pinned-directory.js';

let tmp: string;

/** The system error code `run` throws, or undefined when it does not throw. */
function errorCode(run: () => unknown): unknown {
  try {
    run();
    return undefined;
  } catch (error) {
    return typeof error === 'object' && error !== null && 'code' in error ? error.code : error;
  }
}

beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'pinned-')));
  await mkdir(join(tmp, 'ws', 'sub'), { recursive: true });
  await mkdir(join(tmp, 'outside'));
});

afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('openDirectory', () => {
  it('keeps using the directory it opened when its path is swapped for a symlink', async () => {
    const sub = openDirectory(join(tmp, 'ws', 'sub'), false);
    try {
      expect(sub.real).toBe(join(tmp, 'ws', 'sub'));
      // What a racing command could do between the check of a write and the write itself.
      await rename(join(tmp, 'ws', 'sub'), join(tmp, 'ws', 'moved'));
      await symlink(join(tmp, 'outside'), join(tmp, 'ws', 'sub'));
      await writeFile(sub.at('f'), 'x');
      await mkdir(sub.at('d'));
      expect(await readFile(join(tmp, 'ws', 'moved', 'f'), 'utf8')).toBe('x');
      expect((await readdir(join(tmp, 'ws', 'moved'))).sort()).toEqual(['d', 'f']);
      expect(await readdir(join(tmp, 'outside'))).toEqual([]);
      expect((await readdir(sub.path)).sort()).toEqual(['d', 'f']);
    } finally {
      sub.close();
    }
  });

  it('reads back where a path through symlinks really leads, and refuses a final symlink with noFollow', async () => {
    await symlink(join(tmp, 'ws'), join(tmp, 'link'));
    const through = openDirectory(join(tmp, 'link', 'sub'), false);
    expect(through.real).toBe(join(tmp, 'ws', 'sub'));
    through.close();
    through.close(); // idempotent
    expect(errorCode(() => openDirectory(join(tmp, 'link'), true))).toBe('ENOTDIR');
    await writeFile(join(tmp, 'file'), 'x');
    expect(errorCode(() => openDirectory(join(tmp, 'file'), false))).toBe('ENOTDIR');
    expect(errorCode(() => openDirectory(join(tmp, 'missing'), false))).toBe('ENOENT');
  });
});
