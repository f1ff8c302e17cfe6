import { MessageTooLargeError, OVERSIZED_MESSAGE_HEAD_BYTES } from './transport.js';

/**
 * Follows a line over the bound, whose bytes the reader does not keep: a consumer can still learn
 * something from it (such as the id of the request it carried) in bounded memory.
 */
export interface OversizedLineObserver {
  /** The line's bytes in order, from its first byte (those read before the bound was hit too). */
  write(bytes: Buffer): void;
  /** The line ended; `bytes` is its whole length without the newline. */
  end(bytes: number): void;
}

/**
 * Splits a byte stream into newline-delimited messages with a bound on line length.
 * An oversized line is dropped up to its newline and reported once, with its first bytes; the
 * stream stays usable.
 */
export class NdjsonReader {
  #chunks: Buffer[] = [];
  #length = 0;
  #discarding = false;
  #oversized: OversizedLineObserver | undefined;

  constructor(
    /** Receives each line's bytes, without the newline (and without a `\r` before it). */
    private readonly onLine: (line: Buffer) => void,
    private readonly onOversize: (error: MessageTooLargeError) => void,
    private readonly maxLineBytes: number,
    /** Called when a line goes over the bound; the observer it returns sees that line's bytes. */
    private readonly observeOversized?: () => OversizedLineObserver,
  ) {}

  /** Feeds bytes read from the stream. */
  push(data: Buffer): void {
    let start = 0;
    while (start < data.length) {
      const newline = data.indexOf(0x0a, start);
      if (newline === -1) {
        this.#append(data.subarray(start));
        return;
      }
      this.#append(data.subarray(start, newline));
      this.#finishLine();
      start = newline + 1;
    }
  }

  #append(part: Buffer): void {
    if (part.length === 0) return;
    if (this.#discarding) {
      this.#length += part.length;
      this.#oversized?.write(part);
      return;
    }
    if (this.#length + part.length > this.maxLineBytes) {
      const head = headOf([...this.#chunks, part]);
      this.#oversized = this.observeOversized?.();
      for (const chunk of this.#chunks) this.#oversized?.write(chunk);
      this.#oversized?.write(part);
      this.#chunks = [];
      this.#length += part.length;
      this.#discarding = true;
      this.onOversize(new MessageTooLargeError(`message exceeds the limit of ${this.maxLineBytes} bytes and was dropped`, this.maxLineBytes, head));
      return;
    }
    this.#chunks.push(part);
    this.#length += part.length;
  }

  #finishLine(): void {
    if (this.#discarding) {
      this.#discarding = false;
      this.#oversized?.end(this.#length);
      this.#oversized = undefined;
      this.#length = 0;
      return;
    }
    let line = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length);
    this.#chunks = [];
    this.#length = 0;
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, -1);
    if (line.length > 0) this.onLine(line);
  }
}

/** A copy of the first {@link OVERSIZED_MESSAGE_HEAD_BYTES} of `parts` (a copy: the parts are let go). */
function headOf(parts: readonly Buffer[]): Buffer {
  const head: Buffer[] = [];
  let length = 0;
  for (const part of parts) {
    if (length >= OVERSIZED_MESSAGE_HEAD_BYTES) break;
    const piece = part.subarray(0, OVERSIZED_MESSAGE_HEAD_BYTES - length);
    head.push(piece);
    length += piece.length;
  }
  return Buffer.concat(head, length);
}
