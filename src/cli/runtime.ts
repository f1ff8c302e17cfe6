import { appendFileSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelProviderConfig } from '../config/config.js';
import type { HostFacts } from '../exec/environment-info.js';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../util/logger.js';

/** This package's version, read once from package.json. */
export const PACKAGE_VERSION: string = (() => {
  try {
    const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && 'version' in parsed && typeof parsed.version === 'string') return parsed.version;
  } catch {
    // Fall through.
  }
  return '0.0.0';
})();

/** `$CODEX_HOME`, or `~/.codex`. */
export function codexHome(env: NodeJS.ProcessEnv): string {
  const value = env.CODEX_HOME?.trim();
  return value !== undefined && value.length > 0 ? value : join(homedir(), '.codex');
}

/**
 * The logger of a command: level from `--log-level` or `CODEX_MULTIENV_LOG` (default info), JSON
 * lines with `CODEX_MULTIENV_LOG_FORMAT=json`, written to stderr or appended to
 * `CODEX_MULTIENV_LOG_FILE` (useful for stdio exec-servers whose stderr nobody reads). Never stdout.
 */
export function stderrLogger(level: string | undefined, env: NodeJS.ProcessEnv): Logger {
  const wanted = level ?? env.CODEX_MULTIENV_LOG ?? 'info';
  const valid = (LOG_LEVELS as readonly string[]).includes(wanted) ? (wanted as LogLevel) : 'info';
  const file = env.CODEX_MULTIENV_LOG_FILE;
  const write = file !== undefined && file.length > 0 ? (line: string) => appendFileSync(file, line) : (line: string) => void process.stderr.write(line);
  return createLogger({ write, level: valid, json: env.CODEX_MULTIENV_LOG_FORMAT === 'json' });
}

/** Facts about this host for `environment/info`. */
export function hostFacts(env: NodeJS.ProcessEnv): HostFacts {
  return { env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: PACKAGE_VERSION };
}

/** Reads a text file, or undefined when it does not exist. */
export async function readOptionalFile(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * A model provider's credentials from the environment: the key from its `env_key` variable, and
 * its `http_headers` with each `env_http_headers` entry whose variable is set on top.
 */
export function providerCredentials(provider: ModelProviderConfig, env: NodeJS.ProcessEnv): { apiKey: string | undefined; headers: Record<string, string> } {
  const headers: Record<string, string> = { ...provider.httpHeaders };
  for (const [name, variable] of Object.entries(provider.envHttpHeaders)) {
    const value = env[variable];
    if (value !== undefined && value.length > 0) headers[name] = value;
  }
  return { apiKey: provider.envKey === undefined ? undefined : env[provider.envKey], headers };
}
