import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { ModernEra } from './modern-era.js';
import { unreadableParamsAnswer } from './sdk-workarounds.js';

/**
 * The connection the SDK server is given: messages the modern era claims are served by it and
 * never reach the SDK; a request whose params the SDK could not read is answered here with -32602
 * (see `unreadableParamsAnswer` in sdk-workarounds.ts); everything else passes through unchanged,
 * so legacy clients see exactly what they saw before.
 */
export class EraSplitTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;

  constructor(
    private readonly inner: Transport,
    private readonly modern: ModernEra,
  ) {}

  start(): Promise<void> {
    this.inner.onmessage = (message, extra) => {
      // A transport that authenticates its clients (HTTP) names each one; stdio names none.
      if (this.modern.claims(message)) {
        this.modern.handle(message, (answer) => this.inner.send(answer), extra?.authInfo?.clientId);
        return;
      }
      const refusal = unreadableParamsAnswer(message);
      if (refusal === undefined) this.onmessage?.(message);
      else this.inner.send(refusal).catch((error: unknown) => this.onerror?.(error instanceof Error ? error : new Error(String(error))));
    };
    this.inner.onerror = (error) => this.onerror?.(error);
    this.inner.onclose = () => {
      this.modern.close();
      this.onclose?.();
    };
    return this.inner.start();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return this.inner.send(message);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
