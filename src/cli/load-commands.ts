import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { codeCacheDir, runCommonJs } from './code-cache.js';
import type * as CommandsModule from './commands.js';

/** What commands.ts exports. */
export type Commands = typeof CommandsModule;

const COMMAND_NAMES = ['runMcpServer', 'runMcpWorker', 'runExecServer', 'runServe', 'runEnvironments', 'runDoctor'] as const satisfies readonly (keyof Commands)[];

function isCommands(value: unknown): value is Commands {
  return typeof value === 'object' && value !== null && COMMAND_NAMES.every((name) => typeof Reflect.get(value, name) === 'function');
}

/**
 * The server's commands: in the package, the script `commands.cjs` beside main.js, compiled with
 * V8's code cache; run from the sources (tsx), the module itself.
 */
export async function loadCommands(env: NodeJS.ProcessEnv): Promise<Commands> {
  const script = fileURLToPath(new URL('./commands.cjs', import.meta.url));
  if (!existsSync(script)) return import('./commands.js');
  const commands = runCommonJs(script, { dir: codeCacheDir(env), nodeOptions: env.NODE_OPTIONS });
  if (!isCommands(commands)) throw new LocalError(LocalErrorCode.InvalidConfig, `${script} does not export this package's commands; reinstall codex-multienv-mcp`);
  return commands;
}
