import { decodeUtf8 } from './text.js';
import { isValueMessage, type MessageTransport, type ValueMessage } from './transport.js';

/** Options of {@link createMemoryPair}. */
export interface MemoryPairOptions {
  /**
   * Hand {@link ValueMessage}s to a peer that takes values (`onvalue`) as they are, with no JSON
   * or base64 in between: command output crosses as the Buffers the pipe gave. False serializes
   * them as a wire would, for tests of what a wire carries. @default false
   */
  values?: boolean;
}

/** A message on its way: JSON text, or a value for `onvalue`. */
type Delivery = { text: string; value?: undefined } | { value: object; text?: undefined };

class MemoryTransport implements MessageTransport {
  onmessage?: (text: string) => void;
  onvalue?: (value: object) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;
  ondrain?: () => void;
  peer?: MemoryTransport;
  #started = false;
  #pending: Delivery[] = [];
  #closed = false;

  constructor(
    readonly label: string,
    private readonly values: boolean,
  ) {}

  start(): void {
    this.#started = true;
    const pending = this.#pending;
    this.#pending = [];
    for (const delivery of pending) this.#deliver(delivery);
  }

  send(message: string | Buffer | ValueMessage): boolean {
    const peer = this.peer;
    if (this.#closed || peer === undefined) return true;
    // Made now, not on delivery: the sender may reuse a value's buffers once this returns.
    if (!isValueMessage(message)) peer.#receive({ text: typeof message === 'string' ? message : decodeUtf8(message) });
    else if (this.values && peer.onvalue !== undefined) peer.#receive({ value: message.toValue() });
    else peer.#receive({ text: decodeUtf8(message.encode()) });
    return true;
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const peer = this.peer;
    queueMicrotask(() => {
      this.onclose?.();
      if (peer !== undefined) peer.#peerClosed();
    });
    return Promise.resolve();
  }

  #receive(delivery: Delivery): void {
    if (this.#closed) return;
    if (!this.#started) {
      this.#pending.push(delivery);
      return;
    }
    this.#deliver(delivery);
  }

  #deliver(delivery: Delivery): void {
    // Asynchronous delivery keeps the two sides from re-entering each other; text and values go
    // through the one queue, so they arrive in the order they were sent.
    queueMicrotask(() => {
      if (this.#closed) return;
      if (delivery.value !== undefined) this.onvalue?.(delivery.value);
      else this.onmessage?.(delivery.text);
    });
  }

  #peerClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onclose?.(new Error(`${this.label}: peer closed`));
  }
}

/**
 * Two in-process transports connected to each other; used by the `local` environment (with
 * `values`) and tests.
 */
export function createMemoryPair(label = 'memory', options: MemoryPairOptions = {}): [MessageTransport, MessageTransport] {
  const values = options.values === true;
  const a = new MemoryTransport(`${label}:a`, values);
  const b = new MemoryTransport(`${label}:b`, values);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
