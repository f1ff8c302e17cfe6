import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema, JSONRPCRequestSchema, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { OversizedLineObserver } from '../transport/ndjson.js';
import { StreamTransport } from '../transport/stream.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { nonObjectResultAsError } from './sdk-workarounds.js';

/**
 * The MCP server's stdio transport, in place of the SDK's `StdioServerTransport`, which does not
 * handle well what a client may send:
 * - the SDK's transport closes the connection when a line passes its 10 MiB read buffer, and the
 *   server then exits as if the client had left (exit code 0, no log line, every open call cut).
 *   Here a line over the bound is dropped without being kept, its id read on the fly, and the
 *   request answered with an error naming the bound;
 * - a response whose `result` is not an object (an approval answered with a bare `"approved"`)
 *   would leave the request waiting until its timeout: it becomes an error (see
 *   `nonObjectResultAsError` in sdk-workarounds.ts);
 * - the SDK drops a line that is not a JSON-RPC message without a word: it is logged, and a
 *   request with a readable id gets an error.
 */

/** JSON-RPC "Invalid Request": what an unusable request (or an oversized one) is answered with. */
const INVALID_REQUEST = -32600;

const MIB = 1024 * 1024;

/** The JSON-RPC members an oversized line is answered by: bounded, for they are kept in memory. */
const CAPTURED_MEMBER_BYTES = 1024;

const RequestIdSchema = z.union([z.string(), z.number()]);

/** What a line that is not a valid message must have to be answered: a request's id and method. */
const RequestLikeSchema = z.looseObject({ id: RequestIdSchema, method: z.string() });

/** The top-level members of an oversized line that decide what becomes of it. */
interface Envelope {
  /** The raw JSON text of each top-level `id` and `method` member (undefined: longer than the bound). */
  captured: Map<string, string | undefined>;
  /** Whether it has a top-level `result` or `error` member (a response). */
  isResponse: boolean;
}

const CAPTURED_KEYS = new Set(['id', 'method']);

const isJsonSpace = (byte: number): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;

/**
 * Reads the top-level members of one JSON object from its bytes as they pass, keeping only the
 * few it needs: the message itself is never held. A byte-level scan is exact for JSON: structural
 * characters are ASCII and never occur inside a multi-byte UTF-8 sequence, and a `"` inside a
 * string is always escaped, so nested objects and strings that look like `"id":…` are told apart.
 */
class EnvelopeScanner implements OversizedLineObserver {
  #depth = 0;
  #inString = false;
  #escaped = false;
  /** Where the scan is in the top-level object; `broken` once the line cannot be a JSON object. */
  #phase: 'start' | 'key' | 'colon' | 'value' | 'done' | 'broken' = 'start';
  #key: number[] = [];
  #keyName: string | undefined;
  #value: number[] | undefined;
  #valueTooLong = false;
  readonly #captured = new Map<string, string | undefined>();
  #isResponse = false;

  constructor(private readonly onEnd: (bytes: number, envelope: Envelope | undefined) => void) {}

  write(bytes: Buffer): void {
    for (let i = 0; i < bytes.length && this.#phase !== 'broken'; i += 1) this.#step(bytes[i]!);
  }

  end(bytes: number): void {
    this.onEnd(bytes, this.#phase === 'done' ? { captured: this.#captured, isResponse: this.#isResponse } : undefined);
  }

  #step(byte: number): void {
    if (this.#phase === 'done') {
      if (!isJsonSpace(byte)) this.#phase = 'broken';
      return;
    }
    if (this.#phase === 'start') {
      if (byte === 0x7b) {
        this.#depth = 1;
        this.#phase = 'key';
      } else if (!isJsonSpace(byte)) this.#phase = 'broken';
      return;
    }
    const topLevel = this.#depth === 1;
    if (this.#inString) {
      if (topLevel && this.#phase === 'key') this.#captureKey(byte);
      else this.#captureValue(byte);
      if (this.#escaped) this.#escaped = false;
      else if (byte === 0x5c) this.#escaped = true;
      else if (byte === 0x22) {
        this.#inString = false;
        if (topLevel && this.#phase === 'key') this.#endKey();
      }
      return;
    }
    if (topLevel && this.#phase !== 'value') {
      // Between members only a key, its colon, a comma after a value or the closing brace may come.
      if (byte === 0x22 && this.#phase === 'key') {
        this.#inString = true;
        this.#key = [byte];
      } else if (byte === 0x3a && this.#phase === 'colon') {
        this.#phase = 'value';
        this.#value = this.#keyName !== undefined && CAPTURED_KEYS.has(this.#keyName) ? [] : undefined;
        this.#valueTooLong = false;
      } else if (byte === 0x7d && this.#phase === 'key' && this.#keyName === undefined) {
        this.#phase = 'done';
      } else if (!isJsonSpace(byte)) this.#phase = 'broken';
      return;
    }
    if (topLevel && (byte === 0x2c || byte === 0x7d)) {
      this.#endValue();
      if (byte === 0x7d) this.#phase = 'done';
      return;
    }
    if (byte === 0x22) this.#inString = true;
    else if (byte === 0x7b || byte === 0x5b) this.#depth += 1;
    else if (byte === 0x7d || byte === 0x5d) this.#depth -= 1;
    // A closing bracket with nothing open inside the value: not JSON.
    if (this.#depth < 1) this.#phase = 'broken';
    else this.#captureValue(byte);
  }

  #captureKey(byte: number): void {
    if (this.#key.length <= CAPTURED_MEMBER_BYTES) this.#key.push(byte);
  }

  #endKey(): void {
    this.#phase = 'colon';
    this.#keyName = undefined;
    if (this.#key.length > CAPTURED_MEMBER_BYTES) {
      this.#keyName = '';
      return;
    }
    this.#keyName = parseCaptured(z.string(), Buffer.from(this.#key).toString('utf8')) ?? '';
  }

  #captureValue(byte: number): void {
    if (this.#value === undefined || this.#valueTooLong) return;
    if (this.#value.length >= CAPTURED_MEMBER_BYTES) {
      this.#valueTooLong = true;
      return;
    }
    this.#value.push(byte);
  }

  #endValue(): void {
    const key = this.#keyName ?? '';
    if (key === 'result' || key === 'error') this.#isResponse = true;
    if (this.#value !== undefined) this.#captured.set(key, this.#valueTooLong ? undefined : Buffer.from(this.#value).toString('utf8'));
    this.#value = undefined;
    // A value ended: what may follow is a comma (then a key) or the closing brace.
    this.#phase = 'key';
    this.#keyName = '';
  }
}

/** `text` (a captured member) as JSON checked by `schema`; undefined if it is neither. */
function parseCaptured<T>(schema: z.ZodType<T>, text: string | undefined): T | undefined {
  if (text === undefined) return undefined;
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** A validation error on one line, for a log field or an error message. */
function oneLine(error: z.ZodError | undefined): string {
  return error === undefined ? 'unknown problem' : z.prettifyError(error).replace(/\n\s*/g, ' ');
}

/** `bytes` as MiB for messages: `10 MiB`, `0.5 MiB`. */
function mebibytes(bytes: number): string {
  return `${Number((bytes / MIB).toFixed(3))} MiB`;
}

/** The message bound as errors name it: `1048576 bytes (1 MiB, multienv.max_message_mb)`. */
export function messageLimitText(maxMessageBytes: number, setting = 'multienv.max_message_mb'): string {
  return `${maxMessageBytes} bytes (${mebibytes(maxMessageBytes)}, ${setting})`;
}

/** Options of {@link McpStdioTransport}. */
export interface McpStdioTransportOptions {
  /** The largest message read from the client, in bytes (without its newline); larger ones are refused. */
  maxMessageBytes: number;
  /** Where the setting is made, named in the error a client gets. @default 'multienv.max_message_mb' */
  limitSetting?: string;
  /**
   * Requests answered before the server started (see early-answers.ts), whose answers are not
   * sent again: the first answer to each id is dropped. @default none
   */
  answeredIds?: Set<RequestId>;
  logger?: Logger;
}

/**
 * MCP over newline-delimited JSON on a readable/writable pair (the client's pipes), with a bound
 * on each message read: see the notes at the top of this module.
 */
export class McpStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;
  readonly #stream: StreamTransport;
  readonly #logger: Logger;
  readonly #maxMessageBytes: number;
  readonly #limitText: string;
  readonly #answeredIds: Set<RequestId>;
  #drainWaiters: (() => void)[] = [];

  constructor(input: Readable, output: Writable, options: McpStdioTransportOptions) {
    this.#logger = options.logger ?? silentLogger;
    this.#maxMessageBytes = options.maxMessageBytes;
    this.#limitText = messageLimitText(options.maxMessageBytes, options.limitSetting);
    this.#answeredIds = new Set(options.answeredIds);
    this.#stream = new StreamTransport(input, output, 'MCP client', {
      maxMessageBytes: options.maxMessageBytes,
      // The client's stdout is not ours to end (the worker hands it back, the foreground server
      // leaves process.stdout open): closing only stops reading.
      endOutput: false,
      observeOversized: () => new EnvelopeScanner((bytes, envelope) => this.#onOversized(bytes, envelope)),
    });
  }

  start(): Promise<void> {
    this.#stream.onmessage = (text) => this.#onText(text);
    this.#stream.onerror = (error) => {
      // An oversized line is reported once it has ended (#onOversized), with what it was.
      if (error instanceof LocalError && error.code === LocalErrorCode.FrameTooLarge) return;
      this.onerror?.(error);
    };
    this.#stream.ondrain = () => {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const resolve of waiters) resolve();
    };
    this.#stream.onclose = () => {
      this.#stream.ondrain?.();
      this.onclose?.();
    };
    this.#stream.start();
    return Promise.resolve();
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.#answeredIds.size > 0 && !('method' in message) && 'id' in message && message.id !== undefined && this.#answeredIds.delete(message.id)) {
      // The early answer was built to equal this one; an error here means they parted.
      if ('error' in message) this.#logger.warn('the server refused a request that was answered before it started', { error: message.error.message });
      return Promise.resolve();
    }
    if (this.#stream.send(JSON.stringify(message))) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  close(): Promise<void> {
    return this.#stream.close();
  }

  #onText(text: string): void {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      this.#logger.warn('ignored a line from the MCP client that is not JSON', { error: errorMessage(error), bytes: Buffer.byteLength(text) });
      return;
    }
    const message = JSONRPCMessageSchema.safeParse(nonObjectResultAsError(json));
    if (message.success) {
      this.onmessage?.(message.data);
      return;
    }
    const request = RequestLikeSchema.safeParse(json);
    if (request.success) {
      // Checked again as a request alone, so the error says what is wrong with it as one.
      const problem = oneLine(JSONRPCRequestSchema.safeParse(json).error);
      this.#logger.warn('answered an invalid JSON-RPC request from the MCP client with an error', { id: request.data.id, method: request.data.method, problem });
      this.#answerError(request.data.id, `invalid JSON-RPC request: ${problem}`);
      return;
    }
    this.#logger.warn('ignored a message from the MCP client that is not JSON-RPC', { problem: oneLine(message.error) });
  }

  #onOversized(bytes: number, envelope: Envelope | undefined): void {
    const fields = { bytes, limit: this.#maxMessageBytes };
    const id = parseCaptured(RequestIdSchema, envelope?.captured.get('id'));
    const method = parseCaptured(z.string(), envelope?.captured.get('method'));
    if (id !== undefined && method !== undefined) {
      this.#logger.warn(`refused an MCP request: a message of ${bytes} bytes over the limit of ${this.#limitText}`, { ...fields, id, method });
      this.#answerError(id, `the message is ${bytes} bytes, over the limit of ${this.#limitText}; it was not processed`);
      return;
    }
    if (id !== undefined && method === undefined && envelope?.isResponse === true) {
      // The client's answer to one of our requests (an approval): that request fails at once.
      this.#logger.warn(`failed our request: the client's answer is a message of ${bytes} bytes over the limit of ${this.#limitText}`, { ...fields, id });
      this.onmessage?.({ jsonrpc: '2.0', id, error: { code: INVALID_REQUEST, message: `the client's answer is ${bytes} bytes, over the limit of ${this.#limitText}` } });
      return;
    }
    if (method !== undefined && envelope?.captured.has('id') === false) {
      this.#logger.warn(`dropped an MCP notification of ${bytes} bytes over the limit of ${this.#limitText}`, { ...fields, method });
      return;
    }
    this.#logger.warn(`dropped an MCP message of ${bytes} bytes over the limit of ${this.#limitText}: no readable id to answer`, fields);
  }

  #answerError(id: RequestId, message: string): void {
    void this.send({ jsonrpc: '2.0', id, error: { code: INVALID_REQUEST, message } });
  }
}
