import { deferred, type Deferred } from './deferred.js';

/**
 * A single-consumer async stream fed by a producer that must not wait: `push` queues a value (or
 * hands it to the waiting consumer), `end` and `fail` finish the stream. Values the consumer will
 * never read (it stopped early) go to `drop`, so a value that needs an answer (an approval) can
 * still be answered.
 */
export class Channel<T> implements AsyncIterable<T> {
  readonly #queue: T[] = [];
  readonly #drop: ((value: T) => void) | undefined;
  #waiting: Deferred<IteratorResult<T, undefined>> | undefined;
  #ended = false;
  #failure: { error: Error } | undefined;
  #abandoned = false;
  #iterated = false;

  /** @param drop receives every value pushed after the consumer stopped reading, and those it left unread. @default none */
  constructor(drop?: (value: T) => void) {
    this.#drop = drop;
  }

  /** Queues `value` for the consumer; after {@link end} or {@link fail} it is ignored, and after the consumer left it is dropped. */
  push(value: T): void {
    if (this.#abandoned) {
      this.#drop?.(value);
      return;
    }
    if (this.#ended) return;
    const waiting = this.#waiting;
    if (waiting === undefined) {
      this.#queue.push(value);
      return;
    }
    this.#waiting = undefined;
    waiting.resolve({ value, done: false });
  }

  /** Ends the stream after the values already pushed. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#settleWaiting();
  }

  /** Ends the stream with `error`, thrown to the consumer after the values already pushed (a non-Error is wrapped). */
  fail(error: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#failure = { error: error instanceof Error ? error : new Error(String(error)) };
    this.#settleWaiting();
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    if (this.#iterated) throw new Error('a channel has one consumer');
    this.#iterated = true;
    return {
      next: () => {
        if (this.#queue.length > 0) return Promise.resolve({ value: this.#queue.shift() as T, done: false });
        if (this.#ended || this.#abandoned) return this.#finished();
        this.#waiting = deferred();
        return this.#waiting.promise;
      },
      return: () => {
        this.#abandoned = true;
        for (const value of this.#queue.splice(0)) this.#drop?.(value);
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  #settleWaiting(): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting === undefined) return;
    this.#finished().then(
      (result) => waiting.resolve(result),
      (error: unknown) => waiting.reject(error),
    );
  }

  #finished(): Promise<IteratorResult<T, undefined>> {
    const failure = this.#failure;
    if (failure !== undefined && !this.#abandoned) {
      this.#failure = undefined;
      return Promise.reject(failure.error);
    }
    return Promise.resolve({ value: undefined, done: true });
  }
}
