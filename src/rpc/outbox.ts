import type { MessageTransport } from '../transport/transport.js';
import type { WithBase64Field } from './base64-field.js';

/**
 * The sending side of a connection: the limit on the size of a message, back-pressure (a
 * transport above its high-water mark is congested until it drains), and messages carrying a
 * large base64 field. Once closed, sending is a no-op.
 */
export class Outbox {
  readonly #transport: MessageTransport;
  readonly #drainWaiters: (() => void)[] = [];
  #congested = false;
  #closed = false;

  constructor(
    transport: MessageTransport,
    /** Largest message sent, in bytes: what the peer accepts. */
    readonly maxMessageBytes: number,
  ) {
    this.#transport = transport;
  }

  /** True while the transport's buffer is above its high-water mark. */
  get congested(): boolean {
    return this.#congested;
  }

  /** Resolves once the transport has drained (at once when not congested or closed). */
  waitForDrain(): Promise<void> {
    if (!this.#congested || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** The transport drained. */
  drained(): void {
    this.#congested = false;
    for (const waiter of this.#drainWaiters.splice(0)) waiter();
  }

  /** Stops sending and lets every drain waiter go; idempotent. */
  close(): void {
    this.#closed = true;
    for (const waiter of this.#drainWaiters.splice(0)) waiter();
  }

  /** Sends `text` (already checked against the limit); false when the transport is congested. */
  sendText(text: string): boolean {
    if (this.#closed) return true;
    const ok = this.#transport.send(text);
    if (!ok) this.#congested = true;
    return ok;
  }

  /**
   * Sends a message with bytes fields (the transport encodes them, or hands them over in process),
   * then settles it once it has left the transport's buffer (at once when the send reported no
   * back-pressure, else on drain).
   */
  sendBase64Message(message: WithBase64Field<unknown>, prefix: string): boolean {
    if (this.#closed) {
      message.settle();
      return true;
    }
    const ok = this.#transport.send(message.framed(prefix, '}'));
    if (ok) {
      message.settle();
      return true;
    }
    this.#congested = true;
    void this.waitForDrain().then(() => message.settle());
    return false;
  }

  /** The UTF-8 length of `text` when it is over the message limit; undefined when it fits. */
  bytesOverLimit(text: string): number | undefined {
    // At most 3 UTF-8 bytes per UTF-16 unit: most messages need no count.
    if (text.length * 3 <= this.maxMessageBytes) return undefined;
    const bytes = Buffer.byteLength(text, 'utf8');
    return bytes > this.maxMessageBytes ? bytes : undefined;
  }
}
