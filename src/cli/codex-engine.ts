/**
 * The Codex engine's outside world: which Codex binary runs the app-server, how it is started,
 * and which engine `multienv.engine = "auto"` gives a new thread.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ChildCommand } from '../transport/child.js';
import type { ThreadEngine } from '../protocol/thread.js';
import { parseOverride } from '../config/overrides.js';
import { resolveCommand } from './self-reference.js';

/** The Codex binary found, and where it came from (for messages and `doctor`). */
export interface CodexBinary {
  path: string;
  source: 'multienv.codex_path' | 'PATH' | '@openai/codex package';
}

/**
 * The Codex binary: `multienv.codex_path`, else `codex` on `PATH`, else the CLI of the
 * `@openai/codex` package when it is installed next to this server (it is optional). Undefined
 * when there is none.
 */
export function findCodexBinary(codexPath: string | undefined, env: NodeJS.ProcessEnv, cwd: string): CodexBinary | undefined {
  if (codexPath !== undefined) return existsSync(codexPath) ? { path: codexPath, source: 'multienv.codex_path' } : undefined;
  const onPath = resolveCommand('codex', cwd, env.PATH);
  if (onPath !== undefined) return { path: onPath, source: 'PATH' };
  try {
    const manifest = createRequire(import.meta.url).resolve('@openai/codex/package.json');
    const script = join(dirname(manifest), 'bin', 'codex.js');
    return existsSync(script) ? { path: script, source: '@openai/codex package' } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The server's own configuration choices that mean something to Codex, as `-c` arguments of its
 * app-server: every `-c` override given to this server but the `multienv.*` ones (ours alone), in
 * their order and as written (Codex parses them as it parses its own `-c`, relative paths against
 * the same working directory). config.toml needs no passing: Codex reads the same file. The
 * profile (`--profile`, the `profile` key or argument) goes with each thread instead (see the
 * Codex engine), for Codex 0.169 refuses our kind of profile on its command line.
 * @throws LocalError `INVALID_CONFIG` for an override that does not parse (as at start-up).
 */
export function codexOverrideArgs(overrides: readonly string[]): string[] {
  const args: string[] = [];
  for (const override of overrides) if (parseOverride(override).path[0] !== MULTIENV_TABLE) args.push('-c', override);
  return args;
}

/** The config table only this server reads. */
const MULTIENV_TABLE = 'multienv';

/**
 * How to start `codex app-server` with `binary` (the package's CLI is a Node script, run with this
 * Node); `overrides` are its `-c` arguments (see {@link codexOverrideArgs}).
 */
export function appServerCommand(binary: CodexBinary, env: NodeJS.ProcessEnv, overrides: readonly string[] = []): ChildCommand {
  const args = ['app-server', '--listen', 'stdio://', ...overrides];
  return binary.path.endsWith('.js') ? { program: process.execPath, args: [binary.path, ...args], env } : { program: binary.path, args, env };
}

/** Bound on `codex --version` (the package's launcher starts Node first). */
export const CODEX_VERSION_TIMEOUT_MS = 15_000;

/**
 * The version `binary` reports (`codex --version` prints `codex-cli 0.169.0`), or why it could
 * not be read. Bounded by {@link CODEX_VERSION_TIMEOUT_MS}; at most the first line is kept.
 */
export function codexVersion(binary: CodexBinary, env: NodeJS.ProcessEnv): Promise<{ version: string } | { error: string }> {
  const command = binary.path.endsWith('.js') ? { program: process.execPath, args: [binary.path, '--version'] } : { program: binary.path, args: ['--version'] };
  return new Promise((resolve) => {
    execFile(command.program, command.args, { env, timeout: CODEX_VERSION_TIMEOUT_MS, maxBuffer: 64 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      const line = stdout.trim().split('\n')[0] ?? '';
      if (error !== null || line.length === 0)
        resolve({
          error: `\`${binary.path} --version\` failed: ${error?.message ?? 'it printed nothing'}${stderr.trim().length === 0 ? '' : ` (${stderr.trim().slice(0, 200)})`}`,
        });
      else resolve({ version: line.replace(/^codex-cli\s+/, '') });
    });
  });
}

/** What decides `auto`. */
export interface EngineFacts {
  /** The thread's model provider has the API key it needs, or needs none. */
  providerUsable: boolean;
  /** `$CODEX_HOME/auth.json` holds a ChatGPT sign-in. */
  chatgptSignIn: boolean;
  codexBinary: CodexBinary | undefined;
}

/**
 * The engine of a new thread, and why. `auto` keeps the built-in engine whenever it can work (the
 * provider's key is there, or it needs none) and takes the real Codex only when a ChatGPT
 * sign-in, which only Codex can use, is the sole credential and a Codex binary is found.
 */
export function chooseEngine(setting: ThreadEngine | 'auto', facts: EngineFacts): { engine: ThreadEngine; why: string } {
  if (setting !== 'auto') return { engine: setting, why: `multienv.engine = "${setting}"` };
  if (facts.providerUsable) return { engine: 'builtin', why: 'auto: the model provider has its API key (or needs none)' };
  if (!facts.chatgptSignIn) return { engine: 'builtin', why: 'auto: no API key and no ChatGPT sign-in; the builtin engine reports the missing key' };
  if (facts.codexBinary === undefined)
    return { engine: 'builtin', why: 'auto: only a ChatGPT sign-in, but no Codex binary was found (set multienv.codex_path or put `codex` on PATH)' };
  return { engine: 'codex', why: `auto: only a ChatGPT sign-in, which the real Codex uses (${facts.codexBinary.path}, from ${facts.codexBinary.source})` };
}
