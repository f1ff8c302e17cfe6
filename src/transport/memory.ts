import { decodeUtf8 } from './text.js';
import type { MessageTransport } from './transport.js';

class MemoryTransport implements MessageTransport {
  onmessage?: (text: string) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;
  ondrain?: () => void;
  peer?: MemoryTransport;
  #started = false;
  #pending: string[] = [];
  #closed = false;

  constructor(readonly label: string) {}

  start(): void {
    this.#started = true;
    const pending = this.#pending;
    this.#pending = [];
    for (const text of pending) this.#deliver(text);
  }

  send(message: string | Buffer): boolean {
    if (this.#closed) return true;
    if (this.peer !== undefined) this.peer.#receive(typeof message === 'string' ? message : decodeUtf8(message));
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

  #receive(text: string): void {
    if (this.#closed) return;
    if (!this.#started) {
      this.#pending.push(text);
      return;
    }
    this.#deliver(text);
  }

  #deliver(text: string): void {
    // Asynchronous delivery keeps the two sides from re-entering each other.
    queueMicrotask(() => {
      if (!this.#closed) this.onmessage?.(text);
    });
  }

  #peerClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onclose?.(new Error(`${this.label}: peer closed`));
  }
}

/** Two in-process transports connected to each other; used by the `local` environment and tests. */
export function createMemoryPair(label = 'memory'): [MessageTransport, MessageTransport] {
  const a = new MemoryTransport(`${label}:a`);
  const b = new MemoryTransport(`${label}:b`);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
