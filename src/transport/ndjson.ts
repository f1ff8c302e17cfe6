import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * Splits a byte stream into newline-delimited messages with a bound on line length.
 * An oversized line is dropped up to its newline and reported once; the stream stays usable.
 */
export class NdjsonReader {
  #chunks: Buffer[] = [];
  #length = 0;
  #discarding = false;

  constructor(
    /** Receives each line's bytes, without the newline (and without a `\r` before it). */
    private readonly onLine: (line: Buffer) => void,
    private readonly onOversize: (error: LocalError) => void,
    private readonly maxLineBytes: number,
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
    if (this.#discarding || part.length === 0) return;
    if (this.#length + part.length > this.maxLineBytes) {
      this.#chunks = [];
      this.#length = 0;
      this.#discarding = true;
      this.onOversize(
        new LocalError(LocalErrorCode.FrameTooLarge, `message exceeds the limit of ${this.maxLineBytes} bytes and was dropped`),
      );
      return;
    }
    this.#chunks.push(part);
    this.#length += part.length;
  }

  #finishLine(): void {
    if (this.#discarding) {
      this.#discarding = false;
      return;
    }
    let line = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length);
    this.#chunks = [];
    this.#length = 0;
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, -1);
    if (line.length > 0) this.onLine(line);
  }
}
