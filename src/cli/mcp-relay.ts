import { spawn } from 'node:child_process';
import { fstatSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { answerWhileStarting, type StartingInput } from '../mcp/early-answers.js';
import { MCP_SERVER_ARGS } from './mcp-args.js';
import { builtToolsList, TOOL_LISTINGS_FILE } from './tool-listings.js';

/**
 * The MCP server's turns must outlive the process the client started: clients stop their server
 * with SIGTERM then SIGKILL (the MCP SDK's stdio client 2 s after closing stdin), and a restarted
 * editor kills it outright. So the process the client starts is a small relay: it starts the real
 * server (`mcp-worker`) in its own session, hands it the client's stdin and stdout as extra file
 * descriptors (no copying: the worker reads and writes the client's pipes itself), and exits when
 * the worker exits, when the worker says it detached, or on a signal. A signal to the relay is the
 * client leaving, not an order to stop turns; SIGTERM to the worker's own pid interrupts them.
 *
 * The worker takes a while to load; the relay, which loads next to nothing, answers the client's
 * first requests meanwhile (`initialize`, `server/discover`, and `tools/list` from the listing the
 * build wrote: see mcp/early-answers.ts and tool-listings.ts) and holds
 * what else comes. Once loaded, the worker asks for the input ({@link TAKE_INPUT_MESSAGE}): the
 * relay stops reading for good and sends what it held ({@link RELAYED_INPUT_TYPE}); the worker
 * reads that first, then the client's stdin itself. Until then only the relay reads the pipe.
 */

/** The worker's file descriptors: the IPC channel, then the client's stdin and stdout. */
export const WORKER_FDS = { ipc: 3, input: 4, output: 5 } as const;

/** The worker's message when the client left while turns run, so the relay can go. */
export const DETACHED_MESSAGE = { type: 'detached' } as const;

/** The worker's message when it is ready to read the client's input: the relay answers with what it held. */
export const TAKE_INPUT_MESSAGE = { type: 'take-input' } as const;

/**
 * The type of the relay's one message to the worker: `{ type, bytes, answeredIds }`, the input it
 * held (`bytes` in base64) and the ids of the requests in it that it answered (see `HeldInput`).
 */
export const RELAYED_INPUT_TYPE = 'relayed-input';

/**
 * The type of a message from the worker. A plain check, not a zod schema: the relay loads nothing
 * it does not need, so the client's cold start pays only for the worker's modules.
 */
function messageType(message: unknown): unknown {
  return typeof message === 'object' && message !== null && 'type' in message ? message.type : undefined;
}

/**
 * V8 flags of the worker, before the relay's own (which win where they differ): the young
 * generation at the size it may grow to anyway (16 MiB per semi-space on 64-bit), from the start.
 * Loading the server makes ~15 MB of short-lived objects (mostly zod's schemas); with the default
 * start size (1 MiB) that takes half a dozen scavenges, a tenth of a start's CPU. The idle
 * worker's memory grows by ~3 MiB.
 */
const WORKER_V8_FLAGS = ['--min-semi-space-size=16'];

/** Exit status the relay reports for a worker that could not be started. */
const START_FAILED = 2;

/** True for a pipe or socket: what an MCP client gives its server. A terminal or a file is not. */
function isPipeLike(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    return stat.isFIFO() || stat.isSocket();
  } catch {
    return false;
  }
}

/**
 * Whether the server runs detached: on unless `--foreground` is given, and only when stdin and
 * stdout are pipes or sockets (a terminal session or redirected files stay in one process).
 */
export function shouldDetach(argv: readonly string[]): boolean {
  return !argv.includes('--foreground') && isPipeLike(0) && isPipeLike(1);
}

/**
 * Starts the worker (`script mcp-worker ...argv`) detached with the client's pipes and relays its
 * stderr; answers the client's first request while the worker loads (unless the command line is
 * one the worker will refuse: its error is what the client must see); resolves with the exit
 * status to report to the client.
 */
export function runMcpRelay(script: string, argv: readonly string[], env: NodeJS.ProcessEnv, version: string): Promise<number> {
  // First: the worker loads on the other core while this process reads and answers.
  const worker = spawn(process.execPath, [...WORKER_V8_FLAGS, ...process.execArgv, script, 'mcp-worker', ...argv], {
    detached: true,
    env,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc', 0, 1],
  });
  const values = validArgs(argv);
  const toolsList = builtToolsList(fileURLToPath(new URL(`./${TOOL_LISTINGS_FILE}`, import.meta.url)), {
    portableFlag: values?.['portable-tool-names'] === true,
    overrides: values?.config ?? [],
    env,
  });
  const starting = values === undefined ? undefined : answerWhileStarting(process.stdin, process.stdout, { version, toolsList });
  // A client gone before its answer is the worker's to notice; the relay must not die of it.
  if (starting !== undefined) process.stdout.on('error', () => undefined);
  /** Ends this process's reading of the client's input: from now on only the worker reads it. */
  const stopReading = (): void => {
    if (starting === undefined) return;
    starting.abandon();
    process.stdin.destroy();
  };
  // The client may stop reading stderr before the worker stops writing it.
  process.stderr.on('error', () => undefined);
  worker.stderr?.pipe(process.stderr);
  return new Promise<number>((resolve) => {
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      stopReading();
      for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.removeListener(signal, onSignal);
      // Neither the worker's channel nor its stderr may keep this process alive.
      if (worker.connected) worker.disconnect();
      worker.stderr?.unpipe(process.stderr);
      worker.stderr?.destroy();
      worker.unref();
      resolve(code);
    };
    const onSignal = (): void => finish(0);
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(signal, onSignal);
    worker.once('error', (error) => {
      process.stderr.write(`error: cannot start the MCP server worker: ${error.message}\n`);
      finish(START_FAILED);
    });
    worker.on('message', (message: unknown) => {
      const type = messageType(message);
      if (type === DETACHED_MESSAGE.type) finish(0);
      else if (type === TAKE_INPUT_MESSAGE.type) handOver(worker, starting, stopReading);
    });
    worker.once('exit', (code, signal) => {
      // Let the worker's last stderr lines through before reporting its status.
      // Killed by a signal: reported as a shell does, 128 + the signal's number.
      const status = code ?? (signal === null ? START_FAILED : 128 + constants.signals[signal]);
      if (worker.stderr === null || worker.stderr.readableEnded) finish(status);
      else worker.stderr.once('close', () => finish(status));
    });
  });
}

/** The options in `argv` when the worker will accept it (the same check as its own, without the server's modules); else undefined. */
function validArgs(argv: readonly string[]): ReturnType<typeof parseArgs<{ options: typeof MCP_SERVER_ARGS; strict: true }>>['values'] | undefined {
  try {
    return parseArgs({ args: [...argv], options: MCP_SERVER_ARGS, strict: true }).values;
  } catch {
    return undefined;
  }
}

/** Sends the worker what the relay held (nothing when it did not read) and stops reading. */
function handOver(worker: ReturnType<typeof spawn>, starting: StartingInput | undefined, stopReading: () => void): void {
  const held = starting?.stop() ?? { bytes: Buffer.alloc(0), answeredIds: [] };
  stopReading();
  // A failed send is the worker gone; its exit ends the relay.
  worker.send({ type: RELAYED_INPUT_TYPE, bytes: held.bytes.toString('base64'), answeredIds: held.answeredIds }, undefined, {}, () => undefined);
}
