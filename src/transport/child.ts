import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { sleep } from '../util/abort.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { StreamTransport } from './stream.js';

/** How to launch a stdio peer. */
export interface ChildCommand {
  program: string;
  args?: readonly string[];
  /** The complete environment of the child. */
  env: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Options of {@link spawnChildTransport}. */
export interface ChildTransportOptions {
  logger?: Logger;
  /** Longest line accepted from the child. @default DEFAULT_MAX_MESSAGE_BYTES */
  maxMessageBytes?: number;
  /** Time between stdin EOF and SIGTERM, and between SIGTERM and SIGKILL. @default 2000 */
  killGraceMs?: number;
}

/** How many bytes of the child's stderr are kept for error messages. */
const STDERR_TAIL_BYTES = 4096;

/** NDJSON over a child's stdin/stdout; keeps the tail of its stderr for error messages. */
export class ChildTransport extends StreamTransport {
  #stderrTail = '';

  /** The last few KiB the child wrote on stderr, if any. */
  diagnostics(): string | undefined {
    const tail = this.#stderrTail.trim();
    return tail.length > 0 ? tail : undefined;
  }

  /** @internal */
  appendStderr(text: string): void {
    this.#stderrTail = (this.#stderrTail + text).slice(-STDERR_TAIL_BYTES);
  }
}

/**
 * Spawns `command` in its own process group and speaks NDJSON over its stdin/stdout. Closing the
 * transport ends stdin, then sends SIGTERM and finally SIGKILL to the whole group, so nothing the
 * child started outlives the connection. Resolves once the child has spawned.
 */
export async function spawnChildTransport(command: ChildCommand, options: ChildTransportOptions = {}): Promise<ChildTransport> {
  const label = `stdio:${command.program}`;
  const child: ChildProcessWithoutNullStreams = spawn(command.program, command.args ?? [], {
    env: command.env,
    cwd: command.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (error) => reject(new LocalError(LocalErrorCode.ProcessFailed, `failed to start \`${command.program}\`: ${error.message}`, { cause: error })));
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const grace = options.killGraceMs ?? 2000;
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // The group is already gone.
    }
  };
  const waitExit = (ms: number): Promise<boolean> => Promise.race([exited.then(() => true), sleep(ms).then(() => false)]);
  const transport = new ChildTransport(child.stdout, child.stdin, label, {
    maxMessageBytes: options.maxMessageBytes,
    onDispose: async () => {
      if (!(await waitExit(grace))) {
        killGroup('SIGTERM');
        if (!(await waitExit(grace))) killGroup('SIGKILL');
      }
      // Stragglers of the group (a daemonized grandchild) are stopped too.
      killGroup('SIGKILL');
    },
  });
  child.stdin.on('error', () => undefined);
  child.stderr.on('data', (data: Buffer) => {
    const text = data.toString('utf8');
    options.logger?.debug(`${label} stderr`, { text: text.trimEnd() });
    transport.appendStderr(text);
  });
  child.once('exit', (code, signal) => options.logger?.debug(`${label} exited`, { code, signal }));
  return transport;
}
