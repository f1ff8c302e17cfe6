import { abortReason } from './abort.js';

interface Waiter {
  /** `performance.now()` at which the wait ends without a wake. */
  deadline: number;
  resolve: () => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * Callers waiting for something to happen, each until its own deadline. One timer serves them all,
 * armed for the earliest deadline and left running when they are woken early: a reader woken for
 * every chunk of a command's output would otherwise make and clear a timer per chunk, which costs
 * more than the wake. The timer does not keep the process alive.
 */
export class WaitList {
  readonly #waiters = new Set<Waiter>();
  #timer: NodeJS.Timeout | undefined;
  /** When the timer fires; Infinity while none is armed. */
  #timerAt = Number.POSITIVE_INFINITY;

  /** How many callers are waiting. */
  get size(): number {
    return this.#waiters.size;
  }

  /**
   * Resolves at the next {@link wakeAll}, or after `timeoutMs`; rejects with the signal's reason
   * when it aborts first.
   */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.reject(abortReason(signal));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { deadline: performance.now() + timeoutMs, resolve, reject, signal, onAbort: undefined };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          this.#waiters.delete(waiter);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.add(waiter);
      this.#arm(waiter.deadline);
    });
  }

  /** Resolves every caller waiting now. */
  wakeAll(): void {
    if (this.#waiters.size === 0) return;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const waiter of waiters) this.#settle(waiter);
  }

  #settle(waiter: Waiter): void {
    if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.resolve();
  }

  #arm(deadline: number): void {
    if (this.#timerAt <= deadline) return;
    clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, Math.ceil(deadline - performance.now())));
    this.#timer.unref();
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    for (const waiter of [...this.#waiters]) {
      if (waiter.deadline <= now) {
        this.#waiters.delete(waiter);
        this.#settle(waiter);
      } else {
        next = Math.min(next, waiter.deadline);
      }
    }
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
  };
}
