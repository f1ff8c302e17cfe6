import { PassThrough, pipeline, type Readable, type Writable } from 'node:stream';
import { JSONRPCRequestSchema, type JSONRPCMessage, type JSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';

/**
 * How much of the client's input is held while the server starts. Past it reading stops (the
 * client waits, as on a full pipe) until the server takes over: a start-up never holds more.
 */
const MAX_HELD_BYTES = 1024 * 1024;

const NEWLINE = 0x0a;

/** The stdio input while the server starts; see {@link answerDiscoverWhileStarting}. */
export interface StartingInput {
  /**
   * The server is ready: the input for its transport, with every line held so far (all but the
   * answered `server/discover` requests) first, then whatever the client sends next.
   */
  handOver(): Readable;
  /** The server did not start: stops reading, so the input no longer keeps the process alive. */
  abandon(): void;
}

/**
 * Answers `server/discover` on stdio while the rest of the server starts (configuration, thread
 * store, environments): a modern client probes it before anything else and may wait only briefly
 * (Claude Code: 3 s), while nothing in the answer depends on what is still starting. Every other
 * line is held, in order, for the server's transport ({@link StartingInput.handOver}); only whole
 * lines that parse as a `server/discover` request are answered here (`answer` builds the
 * answer), the rest (partial, oversized, unreadable) is left to the transport to handle as it
 * always does.
 */
export function answerDiscoverWhileStarting(input: Readable, output: Writable, answer: (request: JSONRPCRequest) => JSONRPCMessage): StartingInput {
  /** Whole lines kept for the transport, each with its newline. */
  const held: Buffer[] = [];
  let heldBytes = 0;
  /** The line not ended yet. */
  let partial = Buffer.alloc(0);
  let ended = false;
  let full = false;

  const take = (line: Buffer): boolean => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line.toString('utf8'));
    } catch {
      return false;
    }
    const request = JSONRPCRequestSchema.safeParse(parsed);
    if (!request.success || request.data.method !== 'server/discover') return false;
    output.write(`${JSON.stringify(answer(request.data))}\n`);
    return true;
  };

  const onData = (chunk: Buffer): void => {
    partial = Buffer.concat([partial, chunk]);
    for (let end = partial.indexOf(NEWLINE); end !== -1; end = partial.indexOf(NEWLINE)) {
      const line = partial.subarray(0, end + 1);
      if (!take(line.subarray(0, end))) {
        held.push(line);
        heldBytes += line.length;
      }
      partial = partial.subarray(end + 1);
    }
    if (heldBytes + partial.length > MAX_HELD_BYTES) {
      full = true;
      stopReading();
    }
  };
  const onEnd = (): void => {
    ended = true;
  };
  const stopReading = (): void => {
    input.off('data', onData);
    input.pause();
  };
  input.on('data', onData);
  input.once('end', onEnd);

  return {
    handOver: () => {
      if (!full) stopReading();
      input.off('end', onEnd);
      const rest = new PassThrough();
      for (const part of [...held, partial]) rest.write(part);
      if (ended) rest.end();
      else pipeline(input, rest, () => undefined);
      return rest;
    },
    abandon: () => {
      stopReading();
      input.off('end', onEnd);
    },
  };
}
