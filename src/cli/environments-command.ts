import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadEnvironmentsConfig } from '../config/environments.js';
import { EnvironmentRegistry, type RegistryEntryDescription } from '../environments/registry.js';
import { networkSettings } from './network.js';
import { NATIVE_SPAWN_ENV } from '../exec/native-spawn-env.js';
import { LocalExecServer } from '../environments/local-server.js';
import type { NetworkSettings } from '../transport/network.js';
import type { Logger } from '../util/logger.js';
import { hostFacts, readOptionalFile, stderrLogger } from './runtime.js';
import { codexHome } from './codex-home.js';

/**
 * Builds the registry from `$CODEX_HOME/environments.toml` or `CODEX_EXEC_SERVER_URL`; logs to
 * `logger` (default: stderr at `logLevel`); `cwd` is the working directory of `local` (default:
 * this process's); `network` is how `local` sends HTTP (default: read from `env`; the MCP server passes
 * the settings it read already, since reading the CA bundle again would only slow its start).
 */
export async function loadRegistry(
  env: NodeJS.ProcessEnv,
  logLevel?: string,
  logger: Logger = stderrLogger(logLevel, env),
  cwd: string = process.cwd(),
  network: NetworkSettings = networkSettings(env),
): Promise<{ registry: EnvironmentRegistry; localServer: LocalExecServer; source: string }> {
  const home = codexHome(env);
  const config = await loadEnvironmentsConfig({ codexHome: home, execServerUrl: env.CODEX_EXEC_SERVER_URL, readFile: readOptionalFile });
  const localServer = new LocalExecServer({
    env,
    network,
    host: hostFacts(env, cwd),
    logger: logger.child('local'),
    nativeStarter: env[NATIVE_SPAWN_ENV] !== '0',
  });
  const registry = new EnvironmentRegistry({ config, configSource: config.source, localServer, launcherEnv: env, logger: logger.child('environments') });
  return { registry, localServer, source: config.source };
}

function table(rows: RegistryEntryDescription[]): string {
  const header = ['ID', 'KIND', 'STATUS', 'DEFAULT', 'ENDPOINT', 'DETAILS'];
  const lines = rows.map((row) => [
    row.id,
    row.kind,
    row.status,
    row.isDefault ? 'yes' : '',
    row.endpoint,
    row.status === 'ready' ? [row.os, row.shell, row.cwd, row.executorVersion].filter((v) => v !== undefined).join(' ') : (row.error ?? ''),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => (line[i] ?? '').length)));
  return [header, ...lines].map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/**
 * `codex-multienv environments`: connects to every configured environment and prints its
 * status, so a configuration can be checked before use. Exits 1 when any is unreachable.
 */
export async function runEnvironments(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, 'log-level': { type: 'string' } }, strict: true });
  const { registry, localServer, source } = await loadRegistry(env, values['log-level'] ?? 'warn');
  try {
    await Promise.all(registry.list().map((environment) => environment.probe()));
    const rows = registry.describe();
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ source, environments: rows }, null, 2)}\n`);
    } else {
      process.stdout.write(`environments from ${source === 'default' ? `defaults (no ${join(codexHome(env), 'environments.toml')})` : source}\n`);
      process.stdout.write(`${rows.length === 0 ? 'no environments (CODEX_EXEC_SERVER_URL=none)' : table(rows)}\n`);
    }
    return rows.every((row) => row.status === 'ready') ? 0 : 1;
  } finally {
    await registry.close();
    await localServer.close();
  }
}
