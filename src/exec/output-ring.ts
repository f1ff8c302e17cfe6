import type { OutputStream } from '../protocol/exec.js';

/** A chunk of output the ring holds: where its bytes are, not the bytes. */
export interface RetainedChunk {
  readonly seq: number;
  readonly stream: OutputStream;
  /** The chunk's length in bytes. */
  readonly length: number;
  /** Where its first byte is in the ring's buffer. */
  readonly start: number;
}

/** The ring's first buffer; it doubles as output comes, up to the limit. */
const INITIAL_BYTES = 16 * 1024;

/**
 * A process's most recent output for `process/read`: at most `limit` bytes, and always the newest
 * chunk, however large. The bytes are copied into one buffer rather than kept as the chunks the
 * pipe gave: a kept chunk outlives the young generation's collections, and every chunk promoted to
 * the old generation costs a full collection to free. An exec-server streaming a command's output
 * spent a third of its time in those.
 */
export class OutputRing {
  #buffer = Buffer.alloc(0);
  readonly #chunks: RetainedChunk[] = [];
  /** Where the oldest chunk starts. */
  #head = 0;
  #bytes = 0;

  constructor(
    /** Bytes retained at most, unless the newest chunk alone is larger. */
    readonly limit: number,
  ) {}

  /** Bytes retained now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The retained chunks, oldest first. */
  get chunks(): readonly RetainedChunk[] {
    return this.#chunks;
  }

  /** Retains a copy of `data`, dropping the oldest chunks that no longer fit. */
  push(seq: number, stream: OutputStream, data: Buffer): void {
    while (this.#chunks.length > 0 && this.#bytes + data.length > this.limit) {
      const oldest = this.#chunks.shift();
      if (oldest === undefined) break;
      this.#bytes -= oldest.length;
      this.#head = this.#chunks[0]?.start ?? 0;
    }
    if (this.#chunks.length === 0) this.#head = 0;
    this.#reserve(this.#bytes + data.length);
    const start = (this.#head + this.#bytes) % Math.max(1, this.#buffer.length);
    // The free space may wrap around the buffer's end: the chunk is then written in two pieces.
    const first = Math.min(data.length, this.#buffer.length - start);
    data.copy(this.#buffer, start, 0, first);
    data.copy(this.#buffer, 0, first);
    this.#chunks.push({ seq, stream, length: data.length, start });
    this.#bytes += data.length;
  }

  /** A copy of `chunk`'s bytes (the ring reuses its buffer). */
  read(chunk: RetainedChunk): Buffer {
    const end = chunk.start + chunk.length;
    if (end <= this.#buffer.length) return Buffer.from(this.#buffer.subarray(chunk.start, end));
    return Buffer.concat([this.#buffer.subarray(chunk.start), this.#buffer.subarray(0, end - this.#buffer.length)], chunk.length);
  }

  /** Drops everything retained and the buffer. */
  clear(): void {
    this.#chunks.length = 0;
    this.#buffer = Buffer.alloc(0);
    this.#head = 0;
    this.#bytes = 0;
  }

  /** Grows the buffer to hold `needed` bytes, moving the chunks to its start in order. */
  #reserve(needed: number): void {
    if (needed <= this.#buffer.length) return;
    const size = Math.max(needed, Math.min(Math.max(this.#buffer.length * 2, INITIAL_BYTES), Math.max(this.limit, needed)));
    const grown = Buffer.allocUnsafeSlow(size);
    let offset = 0;
    for (const [index, chunk] of this.#chunks.entries()) {
      this.read(chunk).copy(grown, offset);
      this.#chunks[index] = { ...chunk, start: offset };
      offset += chunk.length;
    }
    this.#buffer = grown;
    this.#head = 0;
  }
}
