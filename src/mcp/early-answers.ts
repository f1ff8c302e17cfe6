import { PassThrough, pipeline, type Readable, type Writable } from 'node:stream';
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js';
import { earlyAnswer, plainToolsList, type EarlyAnswer, type ToolsListEra } from './handshake.js';

/**
 * How much of the client's input is held while the server starts. Past it reading stops (the
 * client waits, as on a full pipe) until the server takes over: a start-up never holds more.
 */
const MAX_HELD_BYTES = 1024 * 1024;

/**
 * The longest line answered early. Every longer one is left to the server, which alone knows its
 * message bound (`multienv.max_message_mb`, at least 1 MiB).
 */
const MAX_EARLY_LINE_BYTES = 64 * 1024;

const NEWLINE = 0x0a;

/** What was read from the client and not done with, for whoever serves it next. */
export interface HeldInput {
  /**
   * The bytes held, in the order read: whole lines (an answered `initialize` with its id replaced
   * by one of {@link answeredIds}), then the line not ended yet.
   */
  bytes: Buffer;
  /** The ids of the requests in `bytes` answered already: the server's own answer to each is dropped. */
  answeredIds: string[];
}

/** The stdio input while the server starts; see {@link answerWhileStarting}. */
export interface StartingInput {
  /** Stops reading (for good) and returns what was held. */
  stop(): HeldInput;
  /**
   * The server is ready: stops this reader and returns the input for the server's transport, with
   * what was held first, then whatever the client sends next; and the ids whose answers to drop.
   */
  handOver(): { input: Readable; answeredIds: Set<RequestId> };
  /** The server did not start: stops reading, so the input no longer keeps the process alive. */
  abandon(): void;
}

/** Options of {@link answerWhileStarting}. */
export interface EarlyAnswerOptions {
  /** This server's version, as its answers name it. */
  version: string;
  /** Read before `input`, as if it had come first: what an earlier reader (the relay) held. */
  held?: HeldInput;
  /**
   * Answers a line (parsed) that {@link earlyAnswer} leaves, if it can be answered now and is
   * done with (the server then never sees it): the full server answers every `server/discover`,
   * its errors too.
   */
  fallback?: (message: unknown) => JSONRPCMessage | undefined;
  /**
   * The result the server gives a plain `tools/list` of `era` (see `plainToolsList`), where it is
   * known to be exactly the server's; undefined leaves the request to the server. A legacy one is
   * answered only after an `initialize` answered here: the era is then known to be 2025's. The
   * request still reaches the server, as an answered `initialize` does, its answer dropped.
   * @default none: the server answers every `tools/list`
   */
  toolsList?: (era: ToolsListEra) => Record<string, unknown> | undefined;
}

/**
 * Answers what a client asks first while the server starts: a 2025 client's `initialize`, a
 * 2026-07-28 client's `server/discover` (which Claude Code waits only 3 s for), and where
 * {@link EarlyAnswerOptions.toolsList} gives it, the `tools/list` that follows. Nothing in the
 * first two depends on what is still starting (configuration, thread store, environments; in the
 * relay, the whole server), see handshake.ts; the listing's one input from the configuration is
 * the caller's to settle (cli/tool-listings.ts). Every other line is held, in order, for the
 * server's transport; an answered `initialize` or `tools/list` is held too (an `initialize` sets
 * up the server's session; the server sees every request the client sent, as without this
 * reader), under an id of its own whose answer the transport drops. Only whole lines that parse
 * are answered here; the rest (partial, oversized, unreadable) is left to the transport to handle
 * as it always does.
 */
export function answerWhileStarting(input: Readable, output: Writable, options: EarlyAnswerOptions): StartingInput {
  /** Whole lines kept for the transport, each with its newline. */
  const held: Buffer[] = [];
  let heldBytes = 0;
  /** The line not ended yet. */
  let partial: Buffer = Buffer.alloc(0);
  let ended = false;
  let stopped = false;
  const answered = new Set<string>(options.held?.answeredIds);
  /** Whether an `initialize` was answered here (a legacy `tools/list` may then be). */
  let initialized = false;
  // Ours alone: a client cannot guess it, so no answer of its own is ever dropped.
  const idPrefix = `codex-multienv/answered-early/${Math.random().toString(36).slice(2)}/`;

  /** The answer to a plain `tools/list` that {@link EarlyAnswerOptions.toolsList} answers now. */
  const listAnswer = (message: unknown): EarlyAnswer | undefined => {
    const list = plainToolsList(message);
    if (list === undefined || (list.era === 'legacy' && !initialized)) return undefined;
    const result = options.toolsList?.(list.era);
    return result === undefined ? undefined : { answer: { jsonrpc: '2.0', id: list.id, result }, replay: list.request };
  };

  /** The line to hold for `line` (with its newline), or undefined when it was answered and is done with. */
  const take = (line: Buffer): Buffer | undefined => {
    if (line.length > MAX_EARLY_LINE_BYTES) return line;
    let message: unknown;
    try {
      message = JSON.parse(line.toString('utf8'));
    } catch {
      return line;
    }
    const id = typeof message === 'object' && message !== null && 'id' in message ? message.id : undefined;
    // Answered by the reader before this one.
    if (typeof id === 'string' && answered.has(id)) return line;
    const early = earlyAnswer(message, options.version) ?? listAnswer(message);
    if (early === undefined) {
      const answer = options.fallback?.(message);
      if (answer === undefined) return line;
      output.write(`${JSON.stringify(answer)}\n`);
      return undefined;
    }
    output.write(`${JSON.stringify(early.answer)}\n`);
    if (early.replay === undefined) return undefined;
    if (early.replay.method === 'initialize') initialized = true;
    const replayId = `${idPrefix}${answered.size}`;
    answered.add(replayId);
    return Buffer.from(`${JSON.stringify({ ...early.replay, id: replayId })}\n`);
  };

  const onData = (chunk: Buffer): void => {
    partial = partial.length === 0 ? chunk : Buffer.concat([partial, chunk]);
    for (let end = partial.indexOf(NEWLINE); end !== -1; end = partial.indexOf(NEWLINE)) {
      const line = take(partial.subarray(0, end + 1));
      if (line !== undefined) {
        held.push(line);
        heldBytes += line.length;
      }
      partial = partial.subarray(end + 1);
    }
    if (heldBytes + partial.length > MAX_HELD_BYTES) stopReading();
  };
  const onEnd = (): void => {
    ended = true;
  };
  const stopReading = (): void => {
    input.off('data', onData);
    input.pause();
  };
  if (options.held !== undefined && options.held.bytes.length > 0) onData(options.held.bytes);
  if (heldBytes + partial.length <= MAX_HELD_BYTES) input.on('data', onData);
  input.once('end', onEnd);

  const stop = (): HeldInput => {
    if (!stopped) {
      stopped = true;
      stopReading();
      input.off('end', onEnd);
    }
    return { bytes: Buffer.concat([...held, partial]), answeredIds: [...answered] };
  };
  return {
    stop,
    handOver: () => {
      const { bytes } = stop();
      const rest = new PassThrough();
      rest.write(bytes);
      if (ended) rest.end();
      else pipeline(input, rest, () => undefined);
      return { input: rest, answeredIds: new Set<RequestId>(answered) };
    },
    abandon: () => {
      stop();
    },
  };
}
