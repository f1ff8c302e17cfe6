import { mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDirectory } from '../../../src/exec/pinned-directory.js';

let tmp: string;

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
    const sub = await openDirectory(join(tmp, 'ws', 'sub'), false);
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
      await sub.close();
    }
  });

  it('reads back where a path through symlinks really leads, and refuses a final symlink with noFollow', async () => {
    await symlink(join(tmp, 'ws'), join(tmp, 'link'));
    const through = await openDirectory(join(tmp, 'link', 'sub'), false);
    expect(through.real).toBe(join(tmp, 'ws', 'sub'));
    await through.close();
    await through.close(); // idempotent
    await expect(openDirectory(join(tmp, 'link'), true)).rejects.toMatchObject({ code: 'ENOTDIR' });
    await writeFile(join(tmp, 'file'), 'x');
    await expect(openDirectory(join(tmp, 'file'), false)).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(openDirectory(join(tmp, 'missing'), false)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
