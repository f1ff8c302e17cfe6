import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { GlobalInstructions } from '../agent/instructions.js';
import { AGENTS_FILENAME, OVERRIDE_FILENAME } from '../agent/project-docs.js';
import type { ModelProviderConfig } from '../config/model-providers.js';
import type { HostFacts } from '../exec/environment-info.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { parseJsonAs } from '../util/json.js';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from '../util/logger.js';
import { PACKAGE_VERSION } from './version.js';

/**
 * The logger of a command: level from `--log-level` or `CODEX_MULTIENV_LOG` (default info), JSON
 * lines with `CODEX_MULTIENV_LOG_FORMAT=json`, written to stderr or appended to
 * `CODEX_MULTIENV_LOG_FILE` (useful for stdio exec-servers whose stderr nobody reads). Never stdout.
 * `write`, when given, receives the lines instead (an in-process test harness keeps them).
 */
export function stderrLogger(level: string | undefined, env: NodeJS.ProcessEnv, write?: (line: string) => void): Logger {
  const wanted = level ?? env.CODEX_MULTIENV_LOG ?? 'info';
  const valid = (LOG_LEVELS as readonly string[]).includes(wanted) ? (wanted as LogLevel) : 'info';
  const file = env.CODEX_MULTIENV_LOG_FILE;
  const sink = write ?? (file !== undefined && file.length > 0 ? (line: string) => appendFileSync(file, line) : (line: string) => void process.stderr.write(line));
  return createLogger({ write: sink, level: valid, json: env.CODEX_MULTIENV_LOG_FORMAT === 'json' });
}

/** Facts about this host for `environment/info`; `cwd` is the server's working directory. */
export function hostFacts(env: NodeJS.ProcessEnv, cwd: string = process.cwd()): HostFacts {
  return { env, cwd, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: PACKAGE_VERSION };
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
 * The user's global instructions, read as Codex reads them: `$CODEX_HOME/AGENTS.override.md`,
 * else `$CODEX_HOME/AGENTS.md`; the first that exists and is not blank. Read at every turn, so an
 * edit applies to the next one.
 */
export async function readGlobalInstructions(home: string): Promise<GlobalInstructions | undefined> {
  for (const name of [OVERRIDE_FILENAME, AGENTS_FILENAME]) {
    const path = join(home, name);
    const text = await readOptionalFile(path);
    if (text !== undefined && text.trim().length > 0) return { path, text };
  }
  return undefined;
}

/** What Codex's sign-in left in `$CODEX_HOME/auth.json` that concerns us. */
export interface CodexAuth {
  /** The path read, for messages. */
  path: string;
  /** The key `codex login --with-api-key` stored. */
  apiKey: string | undefined;
  /** True when it holds a ChatGPT sign-in (tokens), which only ChatGPT's own backend accepts. */
  chatgpt: boolean;
}

/** The fields of Codex's auth.json we read; the rest (token details, refresh times) is Codex's. */
const AuthJsonSchema = z.looseObject({
  OPENAI_API_KEY: z.string().nullish(),
  tokens: z.unknown().optional(),
});

/**
 * Reads Codex's `auth.json` in `home`; undefined when there is none.
 * @throws LocalError naming the file when it is not the JSON object Codex writes.
 */
export async function readCodexAuth(home: string): Promise<CodexAuth | undefined> {
  const path = join(home, 'auth.json');
  const text = await readOptionalFile(path);
  if (text === undefined) return undefined;
  const parsed = parseJsonAs(AuthJsonSchema, text);
  if (parsed.error !== undefined) throw new LocalError(LocalErrorCode.InvalidConfig, `${path}: ${parsed.error}; fix it or sign in again with \`codex login\``);
  const apiKey = parsed.value.OPENAI_API_KEY ?? undefined;
  return { path, apiKey: apiKey === undefined || apiKey.length === 0 ? undefined : apiKey, chatgpt: parsed.value.tokens !== undefined && parsed.value.tokens !== null };
}

/**
 * A model provider's credentials: the key from its `env_key` variable, else, for a provider that
 * `requires_openai_auth`, the key Codex stored in auth.json; and its `http_headers` with each
 * `env_http_headers` entry whose variable is set on top.
 */
export function providerCredentials(
  provider: ModelProviderConfig,
  env: NodeJS.ProcessEnv,
  auth: CodexAuth | undefined,
): { apiKey: string | undefined; headers: Record<string, string>; keySource: string | undefined } {
  const headers: Record<string, string> = { ...provider.httpHeaders };
  for (const [name, variable] of Object.entries(provider.envHttpHeaders)) {
    const value = env[variable];
    if (value !== undefined && value.length > 0) headers[name] = value;
  }
  const fromEnv = provider.envKey === undefined ? undefined : env[provider.envKey];
  if (fromEnv !== undefined && fromEnv.length > 0) return { apiKey: fromEnv, headers, keySource: provider.envKey };
  if (provider.requiresOpenaiAuth && auth?.apiKey !== undefined) return { apiKey: auth.apiKey, headers, keySource: auth.path };
  return { apiKey: undefined, headers, keySource: undefined };
}

/**
 * What Codex's sign-in offers instead of a missing key variable, said after it: for a provider
 * that `requires_openai_auth`, that auth.json holds only an unusable ChatGPT sign-in, or no key.
 */
export function storedKeyNote(provider: ModelProviderConfig, auth: CodexAuth | undefined): string {
  if (!provider.requiresOpenaiAuth) return '';
  if (auth?.chatgpt === true) return `, and ${auth.path} holds a ChatGPT sign-in, which this server cannot use (it calls the Responses API with an API key)`;
  return ', nor stored by `codex login --with-api-key`';
}

/**
 * Why a provider that needs a key has none, and what to do; undefined when it has one or needs none.
 */
export function missingKeyMessage(providerId: string, provider: ModelProviderConfig, credentials: { apiKey: string | undefined }, auth: CodexAuth | undefined): string | undefined {
  if (provider.envKey === undefined || credentials.apiKey !== undefined) return undefined;
  const where = `model provider \`${providerId}\` takes its API key from the environment variable ${provider.envKey}, which is not set for this MCP server${storedKeyNote(provider, auth)}`;
  if (!provider.requiresOpenaiAuth) {
    return `${where}; set it in the server's entry of your MCP client (e.g. "env": { "${provider.envKey}": "…" }), or remove \`env_key\` from [model_providers.${providerId}] for a provider without keys`;
  }
  return `${where}; set it in the server's entry of your MCP client (e.g. "env": { "${provider.envKey}": "sk-…" }), or sign Codex in with an API key (\`codex login --with-api-key\`)`;
}
