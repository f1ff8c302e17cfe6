import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A throwaway PostgreSQL cluster for one test file: `initdb` in the test's temp folder, listening
 * on a unix socket in that folder only (no TCP port at all), trust authentication for the
 * `postgres` superuser. As root (CI) the server runs as `nobody`, since PostgreSQL refuses to run
 * as root. `.ci/run` installs Debian's `postgresql`; its binaries are not on PATH there, so they
 * are looked up under /usr/lib/postgresql too.
 */
export interface PostgresCluster {
  /** A connection URL for the cluster's `postgres` database over its unix socket. */
  url: string;
  /** The folder holding the socket (the `host` of a libpq-style connection). */
  socketDir: string;
  /** Stops the server (fast shutdown: open connections are cut, as in a database restart). */
  stop(): Promise<void>;
  /** Starts the server again on the same data folder and socket. */
  start(): Promise<void>;
  /**
   * Stops the server as a crash does (`immediate` mode: no checkpoint, and the log still in its
   * buffers is not written); the next start recovers from the log on disk.
   */
  crash(): Promise<void>;
}

/** Where `initdb` and `pg_ctl` are: PATH first, else the newest /usr/lib/postgresql/N/bin. */
export function postgresBinDir(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'pg_ctl')) && existsSync(join(dir, 'initdb'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const dir = join(root, version, 'bin');
    if (existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

/** Whether a cluster can be started here (the binaries exist). Tests that need one fail, not skip, without: `.ci/run` installs them. */
export function requirePostgresBinDir(): string {
  const dir = postgresBinDir();
  if (dir === undefined) throw new Error('PostgreSQL is not installed (initdb/pg_ctl not found on PATH or under /usr/lib/postgresql): run .ci/run or apt-get install postgresql');
  return dir;
}

const NOBODY = 65534;

function run(program: string, args: string[], asNobody: boolean): Promise<void> {
  const [command, commandArgs] = asNobody ? ['setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', program, ...args]] : [program, args];
  return new Promise((resolve, reject) => {
    const child = spawn(command, commandArgs, { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' } });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${program} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`))));
  });
}

/** Options of {@link startPostgres}. */
export interface PostgresSettings {
  /**
   * Flush commits to disk as a production server does (benchmarks comparing with the flushed file
   * store, tests of what survives a crash of the database); other tests leave it off.
   * @default false
   */
  durable?: boolean;
  /**
   * More server settings, `name=value` each (e.g. `shared_preload_libraries=pg_stat_statements`
   * for a benchmark that counts statements).
   * @default []
   */
  parameters?: readonly string[];
}

/**
 * Creates and starts a cluster under `folder` (which must exist and is the test's own temp
 * folder). Stop it in the test's `afterAll`.
 */
export async function startPostgres(folder: string, settings: PostgresSettings = {}): Promise<PostgresCluster> {
  const bin = requirePostgresBinDir();
  const asNobody = process.getuid?.() === 0;
  const data = join(folder, 'pgdata');
  const socketDir = join(folder, 'pgsock');
  await mkdir(socketDir, { recursive: true });
  if (asNobody) {
    // The server's user must be able to reach its folders: the temp folder is root's 0700 one.
    await chown(folder, NOBODY, NOBODY);
    await chown(socketDir, NOBODY, NOBODY);
  }
  await run(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync'], asNobody);
  const options = [
    `-c listen_addresses=''`,
    `-c unix_socket_directories='${socketDir}'`,
    `-c fsync=${settings.durable === true ? 'on' : 'off'}`,
    '-c max_connections=200',
    ...(settings.parameters ?? []).map((parameter) => `-c ${parameter}`),
  ].join(' ');
  const logFile = join(folder, 'postgres.log');
  const start = (): Promise<void> => run(join(bin, 'pg_ctl'), ['-D', data, '-o', options, '-l', logFile, '-w', '-t', '60', 'start'], asNobody);
  const stopIn = (mode: 'fast' | 'immediate') => (): Promise<void> => run(join(bin, 'pg_ctl'), ['-D', data, '-m', mode, '-w', '-t', '60', 'stop'], asNobody);
  await start();
  return { url: `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(socketDir)}`, socketDir, stop: stopIn('fast'), start, crash: stopIn('immediate') };
}
