import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { appServerEnvironment, codexHomeOverlayPath, prepareCodexHomeOverlay } from '../../../src/cli/codex-home-overlay.js';
import { silentLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/process.js';

describe("the Codex engine's CODEX_HOME overlay", () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => {
    dir = await tempDir('codex-overlay-');
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('links every entry of the real home but environments.toml, our folder and SQLite journals', async () => {
    const home = dir.path;
    await writeFile(join(home, 'config.toml'), 'model = "m"\n');
    await writeFile(join(home, 'environments.toml'), '[[environments]]\nid = "x"\nurl = "ws://127.0.0.1:1"\n');
    await writeFile(join(home, 'state_5.sqlite'), 'db');
    await writeFile(join(home, 'state_5.sqlite-wal'), 'wal');
    await mkdir(join(home, 'skills'));
    const overlay = await prepareCodexHomeOverlay(home, silentLogger);
    expect(overlay).toBe(codexHomeOverlayPath(home));
    expect((await readdir(overlay)).sort()).toEqual(['config.toml', 'sessions', 'skills', 'state_5.sqlite']);
    expect(await readlink(join(overlay, 'config.toml'))).toBe(join(home, 'config.toml'));
    expect((await lstat(join(home, 'sessions'))).isDirectory()).toBe(true);
    // Again: nothing changes, and a link to environments.toml from elsewhere is taken away.
    await symlink(join(home, 'environments.toml'), join(overlay, 'environments.toml'));
    await prepareCodexHomeOverlay(home, silentLogger);
    expect((await readdir(overlay)).sort()).toEqual(['config.toml', 'sessions', 'skills', 'state_5.sqlite']);
  });

  it("moves what Codex created in the overlay to the real home, a database with its journals, and keeps the overlay's on a clash", async () => {
    const home = dir.path;
    const overlay = await prepareCodexHomeOverlay(home, silentLogger);
    await writeFile(join(overlay, 'goals_1.sqlite'), 'goals');
    await writeFile(join(overlay, 'goals_1.sqlite-wal'), 'goals wal');
    await writeFile(join(overlay, 'logs_2.sqlite'), 'overlay logs');
    await writeFile(join(overlay, 'logs_2.sqlite-wal'), 'overlay logs wal');
    await writeFile(join(home, 'logs_2.sqlite'), 'home logs');
    await prepareCodexHomeOverlay(home, silentLogger);
    expect(await readFile(join(home, 'goals_1.sqlite'), 'utf8')).toBe('goals');
    expect(await readFile(join(home, 'goals_1.sqlite-wal'), 'utf8')).toBe('goals wal');
    expect(await readlink(join(overlay, 'goals_1.sqlite'))).toBe(join(home, 'goals_1.sqlite'));
    expect((await readdir(overlay)).includes('goals_1.sqlite-wal')).toBe(false);
    // The clash: both stay where they are, the overlay's journal with the overlay's database.
    expect(await readFile(join(overlay, 'logs_2.sqlite'), 'utf8')).toBe('overlay logs');
    expect(await readFile(join(overlay, 'logs_2.sqlite-wal'), 'utf8')).toBe('overlay logs wal');
    expect(await readFile(join(home, 'logs_2.sqlite'), 'utf8')).toBe('home logs');
  });

  it("gives the app-server the overlay as CODEX_HOME and not this server's CODEX_EXEC_SERVER_URL", () => {
    const env = appServerEnvironment({ PATH: '/bin', CODEX_HOME: '/h', CODEX_EXEC_SERVER_URL: 'ws://127.0.0.1:9' }, '/h');
    expect(env).toEqual({ PATH: '/bin', CODEX_HOME: codexHomeOverlayPath('/h') });
  });
});
