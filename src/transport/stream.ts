import type { Readable, Writable } from 'node:stream';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../protocol/limits.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { NdjsonReader, type OversizedLineObserver } from './ndjson.js';
import { decodeUtf8 } from './text.js';
import { isValueMessage, type MessageTransport, type ValueMessage } from './transport.js';

const NEWLINE = Buffer.from('\n');

/** Options of {@link StreamTransport}. */
export interface StreamTransportOptions {
  /** Longest line accepted; a longer one is dropped and reported to `onerror`. @default DEFAULT_MAX_MESSAGE_BYTES */
  maxMessageBytes?: number;
  /** Runs on close after the streams are released (e.g. to stop a child process). */
  onDispose?: () => Promise<void>;
  /** End the writable when closing. @default true */
  endOutput?: boolean;
  /** Follows each line over `maxMessageBytes` (see {@link OversizedLineObserver}). @default none */
  observeOversized?: () => OversizedLineObserver;
}

/**
 * NDJSON over a readable/writable pair: this process's stdin/stdout, or a child's stdout/stdin.
 * The transport closes when the readable ends.
 */
export class StreamTransport implements MessageTransport {
  onmessage?: (text: string) => void;
  onbytes?: (bytes: Buffer) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;
  ondrain?: () => void;
  #closed = false;
  #corked = false;
  #closing?: Promise<void>;
  readonly #reader: NdjsonReader;

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
    readonly label: string,
    private readonly options: StreamTransportOptions = {},
  ) {
    this.#reader = new NdjsonReader(
      (line) => this.#onLine(line),
      (error) => this.onerror?.(error),
      options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      options.observeOversized,
    );
  }

  start(): void {
    this.input.on('data', this.#onData);
    this.input.once('end', this.#onEnd);
    this.input.once('error', this.#onInputError);
    this.output.on('drain', this.#onDrain);
    this.output.on('error', this.#onOutputError);
    // A readable that ended (or was destroyed) before this transport started never emits 'end'
    // again: e.g. a client that closed its pipe while the server was still starting.
    if (this.input.readableEnded || this.input.destroyed) process.nextTick(this.#onEnd);
  }

  send(message: string | Buffer | ValueMessage): boolean {
    if (this.#closed || this.output.writableEnded || this.output.destroyed) return true;
    // Messages sent in one tick go out in one write (one syscall for many small responses).
    if (!this.#corked) {
      this.#corked = true;
      this.output.cork();
      process.nextTick(this.#uncork);
    }
    if (typeof message === 'string') return this.output.write(`${message}\n`);
    // Two writes rather than a concatenation: a large payload is not copied again.
    this.output.write(isValueMessage(message) ? message.encode() : message);
    return this.output.write(NEWLINE);
  }

  readonly #uncork = (): void => {
    this.#corked = false;
    this.output.uncork();
  };

  close(): Promise<void> {
    this.#closing ??= this.#shutdown(undefined);
    return this.#closing;
  }

  #onLine(line: Buffer): void {
    // A line opening with `{` is not blank; anything else is decoded and checked.
    if (this.onbytes !== undefined && line[0] === 0x7b) {
      this.onbytes(line);
      return;
    }
    const text = decodeUtf8(line);
    // Blank lines are ignored, as the Codex exec-server does.
    if (text.trim().length > 0) this.onmessage?.(text);
  }

  readonly #onData = (data: Buffer | string): void => {
    this.#reader.push(typeof data === 'string' ? Buffer.from(data) : data);
  };

  readonly #onEnd = (): void => {
    this.#closing ??= this.#shutdown(new LocalError(LocalErrorCode.ConnectionClosed, `${this.label} closed its output`));
  };

  readonly #onInputError = (error: Error): void => {
    this.#closing ??= this.#shutdown(new LocalError(LocalErrorCode.ConnectionClosed, `${this.label}: ${error.message}`, { cause: error }));
  };

  readonly #onOutputError = (error: Error): void => {
    // EPIPE after the peer went away: the input side reports the close.
    this.onerror?.(error);
  };

  readonly #onDrain = (): void => this.ondrain?.();

  async #shutdown(reason: Error | undefined): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.input.off('data', this.#onData);
    this.input.off('end', this.#onEnd);
    this.output.off('drain', this.#onDrain);
    if (this.options.endOutput !== false && !this.output.writableEnded) this.output.end();
    try {
      await this.options.onDispose?.();
    } finally {
      this.onclose?.(reason);
    }
  }
}
