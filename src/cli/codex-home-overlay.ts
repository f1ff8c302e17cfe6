/**
 * The `CODEX_HOME` the Codex engine's app-server runs with: the user's Codex home as it is, but for
 * `environments.toml`. Codex reads that file from `$CODEX_HOME` (0.169 has no setting to point it
 * elsewhere) and connects to its websocket entries as soon as it starts, outside our relay, its
 * token and our lazy connection. The environments it may use are the ones this server hands it
 * (`environment/add`), so it gets a home without the file: a folder of links to every other entry
 * of the real home, where Codex's state (rollouts, its databases, sign-in) stays.
 */
import { lstat, mkdir, readdir, readlink, rename, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ENVIRONMENTS_FILE_NAME } from '../config/environments.js';
import type { Logger } from '../util/logger.js';

/** This server's own folder in the Codex home (threads, the overlay): Codex has no use for it. */
const OWN_FOLDER = 'multienv';

/** The overlay's folder inside {@link OWN_FOLDER}. */
const OVERLAY_FOLDER = 'codex-home';

/**
 * Where Codex keeps its rollouts: made in the real home before Codex first runs, so that the
 * overlay links it and threads are found by the user's own Codex too.
 */
const SESSIONS_FOLDER = 'sessions';

/** Names of the real home never linked into the overlay. */
const NOT_LINKED = new Set([ENVIRONMENTS_FILE_NAME, OWN_FOLDER]);

/**
 * The app-server's environment: this server's, with `CODEX_HOME` the overlay of `home`, and
 * without `CODEX_EXEC_SERVER_URL`, which Codex would take, in the absence of environments.toml,
 * as the one environment it connects to itself (this server reads it as an environment of its own).
 */
export function appServerEnvironment(env: NodeJS.ProcessEnv, home: string): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = { ...env, CODEX_HOME: codexHomeOverlayPath(home) };
  delete result[EXEC_SERVER_URL_VARIABLE];
  return result;
}

/** The variable Codex (and this server) read an exec-server address from when environments.toml is missing. */
const EXEC_SERVER_URL_VARIABLE = 'CODEX_EXEC_SERVER_URL';

/** The overlay's path for Codex home `home`. */
export function codexHomeOverlayPath(home: string): string {
  return join(home, OWN_FOLDER, OVERLAY_FOLDER);
}

/**
 * Brings the overlay of `home` up to date before an app-server starts, and returns its path. What
 * Codex created in the overlay itself on an earlier run (its databases on a first run, say) moves
 * to the real home first when the real home has nothing by that name, and is then linked like the
 * rest; when both have one, the overlay keeps its own and a warning says so. Links to entries
 * since removed from the real home stay: Codex then creates them through the link, in the real home.
 */
export async function prepareCodexHomeOverlay(home: string, logger: Logger): Promise<string> {
  const overlay = codexHomeOverlayPath(home);
  await mkdir(overlay, { recursive: true, mode: 0o700 });
  await mkdir(join(home, SESSIONS_FOLDER), { recursive: true });
  const inHome = new Set(await readdir(home));
  // Decided before anything moves: a database goes with its journal files or not at all.
  const groupsInHome = new Set([...inHome].map(fileGroup));
  for (const name of await readdir(overlay)) {
    const inOverlay = join(overlay, name);
    const info = await lstat(inOverlay);
    if (info.isSymbolicLink()) {
      // Links to what Codex must not read, and links to journal files from before (see fileGroup).
      if (NOT_LINKED.has(name) || fileGroup(name) !== name) await raced(unlink(inOverlay));
      continue;
    }
    if (NOT_LINKED.has(name)) continue;
    if (!groupsInHome.has(fileGroup(name))) await raced(rename(inOverlay, join(home, name)));
    else logger.warn("Codex's home overlay and the Codex home both have an entry by this name; Codex keeps using the overlay's", { overlay: inOverlay });
  }
  for (const name of await readdir(home)) {
    if (NOT_LINKED.has(name) || fileGroup(name) !== name) continue;
    const inOverlay = join(overlay, name);
    const target = join(home, name);
    const existing = await readlink(inOverlay).catch(() => undefined);
    if (existing === target) continue;
    if (existing !== undefined) await raced(unlink(inOverlay));
    else if ((await lstat(inOverlay).catch(() => undefined)) !== undefined) continue;
    await raced(symlink(target, inOverlay));
  }
  return overlay;
}

/**
 * The database a SQLite journal file belongs to (`state_5.sqlite-wal` → `state_5.sqlite`), else
 * the name itself. Journal files are never linked: SQLite keeps them beside the file a linked
 * database resolves to, and a link to one beside a database of the overlay's own would pair that
 * database with another's journal.
 */
function fileGroup(name: string): string {
  return name.replace(/-(?:wal|shm|journal)$/, '');
}

/**
 * A step another server process sharing this Codex home may have taken first (it prepares the
 * same overlay): a name already there, or already gone, is that process's doing, not an error.
 */
async function raced(step: Promise<void>): Promise<void> {
  try {
    await step;
  } catch (error) {
    if (!(error instanceof Error && 'code' in error && (error.code === 'EEXIST' || error.code === 'ENOENT'))) throw error;
  }
}
