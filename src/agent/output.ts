/**
 * Tool output as the model sees it: bounded by a token budget (≈ 4 bytes a token, as Codex
 * counts) and, for commands, in the exact `Chunk ID / Wall time / … / Output:` shape a
 * Codex-trained model expects.
 */

/** Bytes per approximated token. */
const BYTES_PER_TOKEN = 4;

/** The result of {@link truncateForModel}. */
export interface TruncatedText {
  text: string;
  /** Tokens of the whole text before truncation (ceil(bytes / 4)). */
  originalTokens: number;
  truncated: boolean;
}

/**
 * Bounds `text` to about `maxTokens` tokens (tokens ≈ ceil(UTF-8 bytes / 4)). When it is longer,
 * the head and the tail (half the budget each) are kept around a marker line
 * `…<N> tokens truncated…`; no UTF-8 character is ever split.
 */
export function truncateForModel(text: string, maxTokens: number): TruncatedText {
  const bytes = Buffer.from(text, 'utf8');
  const originalTokens = tokensOf(bytes.length);
  const budget = budgetBytes(maxTokens);
  if (bytes.length <= budget) return { text, originalTokens, truncated: false };
  const headEnd = charStartAtOrBefore(bytes, Math.floor(budget / 2));
  const tailStart = charStartAtOrAfter(bytes, bytes.length - (budget - Math.floor(budget / 2)));
  return {
    text: joinAroundMarker(bytes.subarray(0, headEnd).toString('utf8'), bytes.subarray(tailStart).toString('utf8'), tailStart - headEnd),
    originalTokens,
    truncated: true,
  };
}

/**
 * Collects a command's output (all streams, in arrival order) with bounded memory: past its
 * retention it keeps only the first and the last `retainBytes` bytes and counts the rest, which
 * is all {@link truncateForModel} would keep anyway when rendered with at most `maxTokens`.
 */
export class OutputCapture {
  readonly #retainBytes: number;
  readonly #head: Buffer[] = [];
  #headBytes = 0;
  #tail: Buffer[] = [];
  #tailBytes = 0;
  #totalBytes = 0;

  /** @param maxTokens the largest budget {@link render} will be called with. */
  constructor(maxTokens: number) {
    // Slack beyond half the budget so a character boundary can always be found inside it.
    this.#retainBytes = budgetBytes(maxTokens) + 8;
  }

  /** Bytes received so far. */
  get totalBytes(): number {
    return this.#totalBytes;
  }

  /** Appends a chunk. */
  push(chunk: Buffer): void {
    this.#totalBytes += chunk.length;
    let rest = chunk;
    if (this.#headBytes < this.#retainBytes) {
      const take = Math.min(rest.length, this.#retainBytes - this.#headBytes);
      this.#head.push(rest.subarray(0, take));
      this.#headBytes += take;
      rest = rest.subarray(take);
    }
    if (rest.length === 0) return;
    this.#tail.push(rest);
    this.#tailBytes += rest.length;
    if (this.#tailBytes > 2 * this.#retainBytes) {
      // Compact now and then, not on every chunk.
      const joined = Buffer.concat(this.#tail);
      this.#tail = [joined.subarray(joined.length - this.#retainBytes)];
      this.#tailBytes = this.#retainBytes;
    }
  }

  /**
   * The output decoded as UTF-8 (invalid bytes replaced) and bounded to `maxTokens`, with the
   * token count of everything received.
   */
  render(maxTokens: number): TruncatedText {
    const head = Buffer.concat(this.#head);
    const tail = Buffer.concat(this.#tail);
    const dropped = this.#totalBytes - head.length - tail.length;
    if (dropped === 0) {
      return truncateForModel(Buffer.concat([head, tail]).toString('utf8'), maxTokens);
    }
    const budget = budgetBytes(maxTokens);
    const headEnd = charStartAtOrBefore(head, Math.min(head.length, Math.floor(budget / 2)));
    const tailStart = charStartAtOrAfter(tail, Math.max(0, tail.length - (budget - Math.floor(budget / 2))));
    const removed = this.#totalBytes - headEnd - (tail.length - tailStart);
    return {
      text: joinAroundMarker(head.subarray(0, headEnd).toString('utf8'), tail.subarray(tailStart).toString('utf8'), removed),
      originalTokens: tokensOf(this.#totalBytes),
      truncated: true,
    };
  }
}

/** What {@link formatExecOutput} renders. */
export interface ExecOutputParams {
  /** Six hex characters identifying this chunk of output. */
  chunkId: string;
  /** Time this call spent, rendered in seconds with four decimals. */
  wallTimeMs: number;
  /** Set once the process exited. */
  exitCode?: number;
  /** Set while the process is still running (the id for `write_stdin`). */
  sessionId?: number;
  /**
   * Replaces the `Process …` line when the process's state is not known: its environment is
   * reconnecting, or was lost with it.
   */
  processState?: string;
  /** Decoded output, or a capture to render. */
  output: string | OutputCapture;
  /** Token budget of the output section. */
  maxTokens: number;
}

/**
 * Renders a command result the way Codex does:
 * ```
 * Chunk ID: 89d8cb
 * Wall time: 0.1509 seconds
 * Process exited with code 0        (or: Process running with session ID 3, or the process state)
 * Original token count: 46
 * Output:
 * <output>
 * ```
 */
export function formatExecOutput(params: ExecOutputParams): string {
  const output = typeof params.output === 'string' ? truncateForModel(params.output, params.maxTokens) : params.output.render(params.maxTokens);
  const lines = [`Chunk ID: ${params.chunkId}`, `Wall time: ${(Math.max(0, params.wallTimeMs) / 1000).toFixed(4)} seconds`];
  if (params.processState !== undefined) lines.push(params.processState);
  else if (params.exitCode !== undefined) lines.push(`Process exited with code ${params.exitCode}`);
  else if (params.sessionId !== undefined) lines.push(`Process running with session ID ${params.sessionId}`);
  lines.push(`Original token count: ${output.originalTokens}`, 'Output:', output.text);
  return lines.join('\n');
}

function tokensOf(bytes: number): number {
  return Math.ceil(bytes / BYTES_PER_TOKEN);
}

function budgetBytes(maxTokens: number): number {
  return Number.isFinite(maxTokens) ? Math.max(0, Math.floor(maxTokens)) * BYTES_PER_TOKEN : Number.MAX_SAFE_INTEGER;
}

function joinAroundMarker(head: string, tail: string, removedBytes: number): string {
  const separator = head.length === 0 || head.endsWith('\n') ? '' : '\n';
  return `${head}${separator}…${tokensOf(removedBytes)} tokens truncated…\n${tail}`;
}

/** True for a UTF-8 continuation byte (10xxxxxx). */
function isContinuation(byte: number | undefined): boolean {
  return byte !== undefined && (byte & 0xc0) === 0x80;
}

/**
 * The largest index ≤ `index` where a character starts (or the end of the buffer). A character
 * has at most three continuation bytes; past that the bytes are invalid anyway and are cut.
 */
function charStartAtOrBefore(bytes: Buffer, index: number): number {
  let i = index;
  while (i > 0 && i < bytes.length && index - i < 3 && isContinuation(bytes[i])) i--;
  return isContinuation(bytes[i]) ? index : i;
}

/** The smallest index ≥ `index` where a character starts (or the end of the buffer). */
function charStartAtOrAfter(bytes: Buffer, index: number): number {
  let i = index;
  while (i < bytes.length && i - index < 3 && isContinuation(bytes[i])) i++;
  return isContinuation(bytes[i]) ? index : i;
}
