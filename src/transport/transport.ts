import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * A message built as a value whose bytes fields (a process's output, a file's contents) hold the
 * bytes themselves. A wire carries it as JSON text with those fields in base64, encoded at the
 * wire's framing edge; an in-process transport hands the value over as it is.
 */
export interface ValueMessage {
  /** The message's UTF-8 JSON text, every bytes field as standard padded base64. */
  encode(): Buffer;
  /**
   * The message as a value, every bytes field a Buffer: what an in-process peer receives instead
   * of text. Its Buffers may be shared with the sender, so neither side may change them.
   */
  toValue(): object;
}

/** True when `message` is a {@link ValueMessage}, not serialized text or bytes. */
export function isValueMessage(message: string | Buffer | ValueMessage): message is ValueMessage {
  return typeof message === 'object' && !Buffer.isBuffer(message);
}

/**
 * A message transport moves whole messages (one serialized JSON text each) between two peers.
 * It knows nothing about JSON-RPC; framing and the medium are its only concerns.
 */
export interface MessageTransport {
  /** Begins delivering messages to `onmessage`. Called once, after the callbacks are set. */
  start(): void;
  /**
   * Queues one message: serialized JSON text, its UTF-8 bytes (which lets a large payload go out
   * without another copy), or a {@link ValueMessage} (serialized here, unless the transport is
   * in process and hands it over as a value). Returns false when the transport's buffer is above
   * its high-water mark: the message is still queued, and `ondrain` fires once the buffer has
   * emptied. Sending on a closed transport is a no-op that returns true.
   */
  send(message: string | Buffer | ValueMessage): boolean;
  /** Closes the transport; idempotent. Resolves once `onclose` has fired. */
  close(): Promise<void>;
  /** A human label for logs and error messages (e.g. `ws://127.0.0.1:4000`, `stdio:ssh`). */
  readonly label: string;
  /** What the peer said about a failure (e.g. a child's stderr tail), when known. */
  diagnostics?(): string | undefined;
  onmessage?: (text: string) => void;
  /**
   * Set by a consumer that can take a message as its UTF-8 bytes (to parse a large message
   * without first making it one string). A transport that receives bytes then delivers them here
   * instead of to `onmessage`; others ignore it.
   */
  onbytes?: (bytes: Buffer) => void;
  /**
   * Set by a consumer that can take a message as a value (see {@link ValueMessage}). An in-process
   * transport then delivers value messages here, in order with the others; without it, and on
   * every other transport, they arrive as text.
   */
  onvalue?: (value: object) => void;
  /** A recoverable problem, such as an oversized frame that was dropped. */
  onerror?: (error: Error) => void;
  /** Fires exactly once; `reason` is set when the close was not requested locally. */
  onclose?: (reason?: Error) => void;
  ondrain?: () => void;
}

/** How many leading bytes of a dropped oversized message {@link MessageTooLargeError} keeps. */
export const OVERSIZED_MESSAGE_HEAD_BYTES = 256;

/**
 * An incoming message over the transport's size limit, dropped unread. Its first bytes are kept
 * so that the connection can tell whose message it was (a response's id, a request's id and
 * method) and fail or answer just that one, instead of leaving a caller waiting.
 */
export class MessageTooLargeError extends LocalError {
  constructor(
    message: string,
    /** The limit that was exceeded, in bytes. */
    readonly limitBytes: number,
    /** The message's first bytes (at most {@link OVERSIZED_MESSAGE_HEAD_BYTES}). */
    readonly head: Buffer,
  ) {
    super(LocalErrorCode.FrameTooLarge, message);
  }
}
