/**
 * A message transport moves whole messages (one serialized JSON text each) between two peers.
 * It knows nothing about JSON-RPC; framing and the medium are its only concerns.
 */
export interface MessageTransport {
  /** Begins delivering messages to `onmessage`. Called once, after the callbacks are set. */
  start(): void;
  /**
   * Queues one message: serialized JSON text, or its UTF-8 bytes (which lets a large payload go
   * out without another copy). Returns false when the transport's buffer is above its high-water
   * mark: the message is still queued, and `ondrain` fires once the buffer has emptied.
   * Sending on a closed transport is a no-op that returns true.
   */
  send(message: string | Buffer): boolean;
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
  /** A recoverable problem, such as an oversized frame that was dropped. */
  onerror?: (error: Error) => void;
  /** Fires exactly once; `reason` is set when the close was not requested locally. */
  onclose?: (reason?: Error) => void;
  ondrain?: () => void;
}

/** Default upper bound for one message, in bytes. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
