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
 * The outgoing requests of one connection that await their response, by id. Each wait settles
 * once: by its response, its deadline, its signal, or the connection's close; then it is gone.
 */
export class PendingRequests {
  readonly #pending = new Map<RequestId, Pending>();
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
      const timer = setTimeout(() => {
        cleanup();
        reject(options.onTimeout());
      }, options.timeoutMs);
      timer.unref?.();
      const onAbort = (): void => {
        cleanup();
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
  }
}
