import { afterAll, beforeAll } from '@jest/globals';
import { serverEnv, type McpTestWorld } from './mcp.js';
import { startPostgres, type PostgresCluster, type PostgresSettings } from './postgres.js';
import { CLI, startListening, tempDir, type ListeningProcess } from './process.js';
import { createDatabase } from './thread-stores.js';

/** A throwaway cluster shared by one test file, and fresh databases in it. */
export interface SharedCluster {
  /** The running cluster (after the file's `beforeAll`). */
  cluster(): PostgresCluster;
  /** A new, empty database named `<label>_<n>`, its URL. */
  freshDatabase(label: string): Promise<string>;
}

/**
 * Starts a throwaway PostgreSQL cluster in a temp folder before the file's tests and stops it
 * after them (a cluster a test left stopped is fine), with `settings` as startPostgres takes them.
 * Call at the top level of a test file.
 */
export function useSharedCluster(prefix: string, settings: PostgresSettings = {}): SharedCluster {
  let running: PostgresCluster | undefined;
  let folder: Awaited<ReturnType<typeof tempDir>> | undefined;
  let count = 0;
  beforeAll(async () => {
    folder = await tempDir(prefix);
    running = await startPostgres(folder.path, settings);
  });
  afterAll(async () => {
    await running?.stop().catch(() => undefined);
    await folder?.cleanup();
  });
  const cluster = (): PostgresCluster => {
    if (running === undefined) throw new Error('the shared cluster is used before its beforeAll ran');
    return running;
  };
  return {
    cluster,
    freshDatabase: (label) => {
      count += 1;
      return createDatabase(cluster(), `${label}_${count}`);
    },
  };
}

/**
 * Starts a built `codex-multienv serve` on a free loopback port with its threads in the database
 * at `databaseUrl`, in the test world's home; `args` are added to the command line.
 */
export function startServeInstance(world: McpTestWorld, databaseUrl: string, args: string[] = []): Promise<ListeningProcess> {
  return startListening(
    process.execPath,
    [CLI, 'serve', '--listen', 'http://127.0.0.1:0', ...args],
    serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh', CODEX_MULTIENV_DATABASE_URL: databaseUrl }),
  );
}
