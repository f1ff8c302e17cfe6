import type { RequestId } from '../protocol/jsonrpc.js';
import { abortReason } from '../util/abort.js';

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** How {@link PendingRequests.wait} ends besides a response. */
export interface WaitOptions<T> {
  /** Turns the response's result into the value the wait resolves with; a throw rejects it. */
  parse: (result: unknown) => T;
  timeoutMs: number;
  /** The rejection when `timeoutMs` passes first. */
  onTimeout: () => Error;
  /** Aborting rejects the wait with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * How many requests given up on (deadline or signal) are remembered, so that their late
 * responses are told from responses to nothing; beyond it, the oldest are forgotten.
 */
const ABANDONED_REMEMBERED = 4096;

/**
 * The outgoing requests of one connection that await their response, by id. Each wait settles
 * once: by its response, its deadline, its signal, or the connection's close; then it is gone.
 * A request given up on by its deadline or signal is still answered by the peer (the protocol
 * has no cancellation): its id is remembered, so that answer is known as late, not unsolicited.
 */
export class PendingRequests {
  readonly #pending = new Map<RequestId, Pending>();
  /** Ids of requests whose wait ended before their response, oldest first: their method. */
  readonly #abandoned = new Map<RequestId, string>();
  #nextId = 1;

  /** The id of the next outgoing request. */
  nextId(): number {
    return this.#nextId++;
  }

  /** Waits for the response to request `id`, sent (after this call) as a `method` request. */
  wait<T>(id: RequestId, method: string, options: WaitOptions<T>): Promise<T> {
    const { signal } = options;
    return new Promise<T>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(id);
      };
      const abandon = (): void => {
        cleanup();
        this.#abandoned.set(id, method);
        const oldest = this.#abandoned.keys().next();
        if (this.#abandoned.size > ABANDONED_REMEMBERED && oldest.done !== true) this.#abandoned.delete(oldest.value);
      };
      const timer = setTimeout(() => {
        abandon();
        reject(options.onTimeout());
      }, options.timeoutMs);
      timer.unref?.();
      const onAbort = (): void => {
        abandon();
        reject(abortReason(signal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        method,
        resolve: (value) => {
          cleanup();
          try {
            resolve(options.parse(value));
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        },
        reject: (error) => {
          cleanup();
          reject(error);
        },
      });
    });
  }

  /**
   * For a response that matched no wait: the method of the request `id` when it was given up on
   * (its response came late; forgotten once asked), undefined when no request of this id was.
   */
  takeAbandoned(id: RequestId): string | undefined {
    const method = this.#abandoned.get(id);
    this.#abandoned.delete(id);
    return method;
  }

  /** The method of the request `id` awaits, or undefined when none does. */
  methodOf(id: RequestId): string | undefined {
    return this.#pending.get(id)?.method;
  }

  /** Settles the wait of request `id` with its result; false when nothing awaits it. */
  resolve(id: RequestId, result: unknown): boolean {
    const pending = this.#pending.get(id);
    pending?.resolve(result);
    return pending !== undefined;
  }

  /** Rejects the wait of request `id`; false when nothing awaits it. */
  reject(id: RequestId, error: Error): boolean {
    const pending = this.#pending.get(id);
    pending?.reject(error);
    return pending !== undefined;
  }

  /** Rejects every wait with `error` (the connection closed). */
  rejectAll(error: Error): void {
    for (const pending of [...this.#pending.values()]) pending.reject(error);
    this.#pending.clear();
    this.#abandoned.clear();
  }
}
