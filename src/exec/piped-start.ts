import { spawn as spawnChild } from 'node:child_process';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { NATIVE_SPAWN_ENV } from './native-spawn-env.js';
import { nativeOutput, readableOutput, type OutputPipe, type SetPipeSize } from './output-pipe.js';

/** What to start with pipes; paths are native and already validated. */
export interface PipedSpec {
  /** The resolved executable. */
  file: string;
  /** The arguments, `argv[0]` included (replaced by `arg0` when given). */
  argv: readonly string[];
  arg0?: string;
  cwd: string;
  env: Record<string, string>;
  /** A pipe for stdin; without it stdin is `/dev/null`. */
  pipeStdin: boolean;
}

/** A started child: its pipes, in its own session and process group (pgid = pid). */
export interface PipedChild {
  readonly pid: number;
  readonly stdin: Writable | null;
  readonly stdout: OutputPipe;
  readonly stderr: OutputPipe;
}

/** What a started child reports, each once. */
export interface PipedEvents {
  /** The exit status: the code, or 128 + the signal's number. */
  onExit: (exitCode: number) => void;
  /** After the exit and after both output pipes reached end-of-file. */
  onClose: () => void;
}

/** How commands are started: `posix_spawn` through the native starter, or Node.js's `child_process` and why. */
export type ProcessStarter = { kind: 'posix_spawn'; path: string } | { kind: 'child_process'; reason: string };

/** Options of {@link startPiped} and {@link processStarter}. */
export interface StarterOptions {
  /** Use the native starter when it loads. @default true */
  native?: boolean;
}

const ADDON_URL = new URL('../../build/Release/codex_multienv_spawn.node', import.meta.url);

type OnAddonEvent = (...event: unknown[]) => void;
const AddonSchema = z.object({
  spawn: z.custom<(file: string, argv: string[], env: string[], cwd: string, pipeStdin: boolean, onEvent: OnAddonEvent) => unknown>((value) => typeof value === 'function'),
  /** Missing from a starter built before terminals were added: terminals then start through node-pty. */
  spawnPty: z
    .custom<(file: string, argv: string[], env: string[], cwd: string, cols: number, rows: number, onEvent: OnAddonEvent) => unknown>((value) => typeof value === 'function')
    .optional(),
  /** Missing from a starter built before pipes could be enlarged: output pipes then keep the kernel's default size. */
  setPipeSize: z.custom<SetPipeSize>((value) => typeof value === 'function').optional(),
});
/** The native starter's functions. */
export type Addon = z.infer<typeof AddonSchema>;
/** `spawn` answers undefined once its thread runs, or a negative errno when that thread could not be created. */
const SpawnResultSchema = z.union([z.undefined(), z.number().int().negative()]);
/**
 * What the addon's thread reports, in this order: started `[0, pid, stdinFd (-1 without a pipe),
 * stdoutFd, stderrFd]` (a terminal's: `[0, pid, masterFd, -1, -1]`) or could not start `[1,
 * errno]`; after a start, exited `[2, exitCode (-1 when a signal ended it), signal]`.
 */
const AddonEventSchema = z.union([
  z.tuple([z.literal(0), z.number().int().positive(), z.number().int(), z.number().int(), z.number().int()]),
  z.tuple([z.literal(1), z.number().int().positive()]),
  z.tuple([z.literal(2), z.number().int(), z.number().int()]),
]);
type AddonEvent = z.infer<typeof AddonEventSchema>;

/**
 * An event as {@link AddonEventSchema} reads it, checked by hand: the addon is this build's, and
 * each command reports two events, whose parse through the union of tuples (an exit tried two
 * tuples first), with that of `spawn`'s answer, was ~1% of the main thread at 128 concurrent
 * turns. One the hand check refuses goes through the schema, which throws what is wrong.
 */
function readAddonEvent(args: unknown[]): AddonEvent {
  const [tag, a, b, c, d] = args;
  if (tag === 0 && args.length === 5 && isInt(a) && a > 0 && isInt(b) && isInt(c) && isInt(d)) return [tag, a, b, c, d];
  if (tag === 2 && args.length === 3 && isInt(a) && isInt(b)) return [tag, a, b];
  return AddonEventSchema.parse(args);
}

const isInt = (value: unknown): value is number => Number.isSafeInteger(value);

let loaded: { starter: ProcessStarter; addon?: Addon } | undefined;

function load(): { starter: ProcessStarter; addon?: Addon } {
  if (loaded !== undefined) return loaded;
  const path = fileURLToPath(ADDON_URL);
  if (process.platform !== 'linux') {
    loaded = { starter: { kind: 'child_process', reason: `the native starter is built for Linux only (this is ${process.platform})` } };
  } else {
    try {
      const addon = AddonSchema.parse(createRequire(import.meta.url)(path));
      loaded = { starter: { kind: 'posix_spawn', path }, addon };
    } catch (error) {
      const detail = (error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? 'not built' : error instanceof Error ? error.message : String(error);
      loaded = { starter: { kind: 'child_process', reason: `native starter ${path}: ${detail} (npm install builds it: native/install.js)` } };
    }
  }
  return loaded;
}

const TURNED_OFF: ProcessStarter = { kind: 'child_process', reason: `turned off (${NATIVE_SPAWN_ENV}=0)` };

/** The native starter, when it is built and loads (Linux only). */
export function nativeAddon(): Addon | undefined {
  return load().addon;
}

/** How this process starts piped commands with these options (for `doctor`). */
export function processStarter(options: StarterOptions = {}): ProcessStarter {
  return options.native === false ? TURNED_OFF : load().starter;
}

/**
 * Starts a piped command in its own session. Throws a Node.js system error (`code` ENOENT,
 * EACCES, …) when it cannot start, as `child_process.spawn` reports it.
 */
export async function startPiped(spec: PipedSpec, events: PipedEvents, options: StarterOptions = {}): Promise<PipedChild> {
  const addon = options.native === false ? undefined : load().addon;
  return addon === undefined ? startWithChildProcess(spec, events) : startWithAddon(addon, spec, events);
}

/**
 * Starts the command on the addon's own thread (posix_spawn waits there until the child has called
 * exec, not on the event loop) and resolves once it has started.
 */
function startWithAddon(addon: Addon, spec: PipedSpec, events: PipedEvents): Promise<PipedChild> {
  const { argv, env } = nativeCommand(spec);
  let exited = false;
  let openPipes = 2;
  const closeIfDone = (): void => {
    if (exited && openPipes === 0) events.onClose();
  };
  const output = (fd: number): OutputPipe =>
    nativeOutput(fd, {
      setPipeSize: addon.setPipeSize,
      onClose: () => {
        openPipes -= 1;
        closeIfDone();
      },
    });
  return startOnAddon(
    (onEvent) => addon.spawn(spec.file, argv, env, spec.cwd, spec.pipeStdin, onEvent),
    spec.file,
    (pid, [stdinFd, stdoutFd, stderrFd]) => ({
      pid,
      stdin: stdinFd >= 0 ? new Socket({ fd: stdinFd, readable: false, writable: true }) : null,
      stdout: output(stdoutFd),
      stderr: output(stderrFd),
    }),
    (exitCode) => {
      exited = true;
      events.onExit(exitCode);
      closeIfDone();
    },
  );
}

/** A command's argv (`arg0` first) and environment as the addon takes them; refuses NUL bytes. */
export function nativeCommand(spec: Pick<PipedSpec, 'file' | 'argv' | 'arg0' | 'cwd' | 'env'>): { argv: string[]; env: string[] } {
  const argv = [spec.arg0 ?? spec.argv[0] ?? spec.file, ...spec.argv.slice(1)];
  const env = Object.entries(spec.env).map(([key, value]) => `${key}=${value}`);
  for (const [what, values] of [
    ['file', [spec.file]],
    ['argv', argv],
    ['env', env],
    ['cwd', [spec.cwd]],
  ] as const) {
    // C strings end at the first NUL: refuse rather than run something shorter than asked.
    if (values.some((value) => value.includes('\0'))) throw new TypeError(`the command's ${what} must not contain NUL bytes`);
  }
  return { argv, env };
}

/**
 * Runs one of the addon's starters and follows its events: resolves with what `started` builds
 * from the new child's pid and fds (called as the start is reported, before any later event),
 * rejects with the system error when it could not start, and reports the exit to `onExit`.
 */
export function startOnAddon<T>(
  invoke: (onEvent: OnAddonEvent) => unknown,
  file: string,
  started: (pid: number, fds: [number, number, number]) => T,
  onExit: (exitCode: number) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const onEvent = (...args: unknown[]): void => {
      const event = readAddonEvent(args);
      switch (event[0]) {
        case 0: {
          const [, pid, ...fds] = event;
          // Thrown here it would be an uncaught exception (this runs from the addon's callback).
          try {
            resolve(started(pid, fds));
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
          return;
        }
        case 1:
          reject(systemError(event[1], file));
          return;
        case 2:
          onExit(event[1] >= 0 ? event[1] : 128 + event[2]);
      }
    };
    const answer = invoke(onEvent);
    // Checked by hand as the events are; anything else gets the schema's error.
    const result = answer === undefined || (isInt(answer) && answer < 0) ? answer : SpawnResultSchema.parse(answer);
    if (result !== undefined) reject(systemError(-result, file));
  });
}

/**
 * Node.js makes a child's stdin pipe a socket pair. A top-level bash (`SHLVL` unset or 0) whose
 * stdin is a socket believes sshd or rshd started it and sources `/etc/bash.bashrc` and
 * `~/.bashrc`: slow (pyenv, nvm, conda hooks) and able to change PATH behind the command's back.
 * Codex's executor (and the native starter) give real pipes; to match it, such an environment says
 * the shell is nested, which is all bash looks at. Any other `SHLVL` is left as it is.
 */
function asNestedShell(env: Record<string, string>): Record<string, string> {
  const level = Number.parseInt(env.SHLVL ?? '', 10);
  return Number.isNaN(level) || level < 1 ? { ...env, SHLVL: '1' } : env;
}

async function startWithChildProcess(spec: PipedSpec, events: PipedEvents): Promise<PipedChild> {
  const child = spawnChild(spec.file, spec.argv.slice(1), {
    argv0: spec.arg0 ?? spec.argv[0],
    cwd: spec.cwd,
    env: spec.pipeStdin ? asNestedShell(spec.env) : spec.env,
    stdio: [spec.pipeStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    detached: true,
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  child.once('exit', (code, signal) => events.onExit(exitCodeOf(code, signal)));
  // 'close' fires after exit and after both pipes reached EOF.
  child.once('close', () => events.onClose());
  if (child.pid === undefined || child.stdout === null || child.stderr === null) throw new Error(`spawn ${spec.file}: no pid or pipes`);
  return { pid: child.pid, stdin: child.stdin, stdout: readableOutput(child.stdout), stderr: readableOutput(child.stderr) };
}

/** Exit status as the Codex exec-server reports it: the code, or 128 + signal number. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const number = signal === null ? undefined : (osConstants.signals as Record<string, number | undefined>)[signal];
  return 128 + (number ?? 0);
}

/** A Node.js-style system error for an errno number. */
function systemError(errno: number, file: string): NodeJS.ErrnoException {
  const code = Object.entries(osConstants.errno).find(([, number]) => number === errno)?.[0] ?? `E${errno}`;
  return Object.assign(new Error(`spawn ${file} ${code}`), { code, errno: -errno, syscall: `spawn ${file}`, path: file });
}
