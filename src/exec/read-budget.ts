import { base64Length } from '../protocol/limits.js';
import { abortReason } from '../util/abort.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * Default bound on the memory that the file reads of one exec-server hold at once, across all its
 * sessions and connections: 256 MiB, room for two reads of the largest whole file
 * ({@link readMemoryCost} of `DEFAULT_MAX_WHOLE_FILE_BYTES`: about 112 MiB each) or many smaller.
 */
export const DEFAULT_READ_MEMORY_BUDGET_BYTES = 256 * 1024 * 1024;
/** How long a read waits for room in the budget before it is refused as busy. */
export const DEFAULT_READ_BUDGET_WAIT_MS = 30_000;

/**
 * The memory a read of `bytes` bytes holds at its peak: the bytes, and the message carrying them
 * as base64 until the transport has sent it.
 */
export function readMemoryCost(bytes: number): number {
  return bytes + base64Length(bytes);
}

/** A share of a {@link ReadBudget}, held until released. */
export interface ReadReservation {
  /** Bytes held. */
  readonly bytes: number;
  /** Takes `bytes` more, waiting like {@link ReadBudget.reserve}; on failure what was held stays held. */
  readonly extend: (bytes: number, signal?: AbortSignal) => Promise<void>;
  /** Gives everything back; idempotent (a plain function: it is handed on as a callback). */
  readonly release: () => void;
}

interface Waiter {
  bytes: number;
  grant: () => void;
}

/**
 * A byte budget shared by concurrent reads: each takes its {@link readMemoryCost} before it
 * allocates anything and gives it back once its answer is sent, so the memory reads hold at once
 * stays under the budget however many arrive. Reads that do not fit wait in arrival order (a
 * large read is not starved by a stream of small ones), each for at most `waitMs`.
 */
export class ReadBudget {
  #used = 0;
  readonly #queue: Waiter[] = [];

  /**
   * @param capacityBytes The budget. @default DEFAULT_READ_MEMORY_BUDGET_BYTES
   * @param waitMs Longest wait for room. @default DEFAULT_READ_BUDGET_WAIT_MS
   */
  constructor(
    readonly capacityBytes: number = DEFAULT_READ_MEMORY_BUDGET_BYTES,
    readonly waitMs: number = DEFAULT_READ_BUDGET_WAIT_MS,
  ) {}

  /** Bytes held by reads now. */
  get usedBytes(): number {
    return this.#used;
  }

  /** Reads waiting for room. */
  get waiting(): number {
    return this.#queue.length;
  }

  /**
   * Takes `bytes` of the budget, at once when they fit and nobody waits before, else after the
   * reads ahead give theirs back. Fails with LIMIT_EXCEEDED when `bytes` exceed the whole budget,
   * with BUSY after `waitMs`, and with the signal's reason when it aborts.
   */
  async reserve(bytes: number, signal?: AbortSignal): Promise<ReadReservation> {
    await this.#take(bytes, signal);
    let held = bytes;
    return {
      get bytes() {
        return held;
      },
      extend: async (more, extendSignal) => {
        await this.#take(more, extendSignal);
        held += more;
      },
      release: () => {
        const given = held;
        held = 0;
        this.#give(given);
      },
    };
  }

  #take(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    if (bytes === 0) return Promise.resolve();
    if (bytes > this.capacityBytes) {
      return Promise.reject(new LocalError(LocalErrorCode.LimitExceeded, `it needs ${bytes} bytes of memory, more than the whole ${this.capacityBytes}-byte read budget`));
    }
    if (this.#queue.length === 0 && this.#used + bytes <= this.capacityBytes) {
      this.#used += bytes;
      return Promise.resolve();
    }
    if (signal?.aborted === true) return Promise.reject(abortReason(signal));
    return new Promise<void>((resolve, reject) => {
      const leave = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const index = this.#queue.indexOf(waiter);
        if (index !== -1) this.#queue.splice(index, 1);
        // The head may have been what held the others back.
        this.#pump();
      };
      const waiter: Waiter = {
        bytes,
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        leave();
        reject(
          new LocalError(
            LocalErrorCode.Busy,
            `the exec-server is busy: reads holding ${this.#used} bytes of its ${this.capacityBytes}-byte read budget left no room for ${bytes} more within ${this.waitMs} ms; try again later`,
          ),
        );
      }, this.waitMs);
      timer.unref?.();
      const onAbort = (): void => {
        leave();
        reject(abortReason(signal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  #give(bytes: number): void {
    if (bytes === 0) return;
    this.#used -= bytes;
    this.#pump();
  }

  /** Grants waiters in order while the first one fits. */
  #pump(): void {
    for (let next = this.#queue[0]; next !== undefined && this.#used + next.bytes <= this.capacityBytes; next = this.#queue[0]) {
      this.#queue.shift();
      this.#used += next.bytes;
      next.grant();
    }
  }
}
