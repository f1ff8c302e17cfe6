/** Options of {@link KeyedSerialQueue}. */
export interface KeyedSerialQueueOptions<S, I> {
  /** The state of a key seen for the first time (or again after it was forgotten). */
  create: () => S;
  /** Writes one batch of items added with {@link KeyedSerialQueue.add}, in the order they were added. */
  write: (key: string, state: S, items: readonly I[]) => Promise<void>;
  /**
   * Whether the state of a key with nothing queued may be forgotten, so the map does not grow with
   * every key ever seen; a state holding something (an open file) is kept.
   * @default () => true
   */
  forgettable?: (state: S) => boolean;
}

interface Entry<S, I> {
  state: S;
  /** Settles when the last task queued for the key has settled; each task starts after the previous one. */
  tail: Promise<void>;
  /** Items added but not yet handed to `write`: the next write takes them all. */
  batch: Batch<I> | undefined;
}

interface Batch<I> {
  items: I[];
  /** Settles when the write of every item in the batch is done, or failed. */
  written: Promise<void>;
}

/**
 * Tasks run one after another per key (a thread), different keys concurrently. Items added with
 * {@link add} while the key's previous task is queued or running wait together and go in one call
 * of `write` when their turn comes: a group commit, one write and one flush for all of them, each
 * item's promise settling with that write. Call order is kept across both kinds of work: a task
 * queued with {@link run} closes the open batch, so items added after it never join a write
 * queued before it.
 */
export class KeyedSerialQueue<S, I> {
  readonly #entries = new Map<string, Entry<S, I>>();
  readonly #create: () => S;
  readonly #write: (key: string, state: S, items: readonly I[]) => Promise<void>;
  readonly #forgettable: (state: S) => boolean;

  constructor(options: KeyedSerialQueueOptions<S, I>) {
    this.#create = options.create;
    this.#write = options.write;
    this.#forgettable = options.forgettable ?? (() => true);
  }

  /** Runs `task` after every task and write queued before it for the same key. */
  run<T>(key: string, task: (state: S) => Promise<T>): Promise<T> {
    const entry = this.#entryOf(key);
    // Items added after this task must not join a write queued before it (call order).
    entry.batch = undefined;
    return this.#queue(key, entry, () => task(entry.state));
  }

  /**
   * Adds `item` to the key's open batch, or opens a batch written once everything queued before
   * it has settled. Resolves when the batch is written; a failed write rejects every item in it.
   */
  add(key: string, item: I): Promise<void> {
    const entry = this.#entryOf(key);
    if (entry.batch !== undefined) {
      entry.batch.items.push(item);
      return entry.batch.written;
    }
    const items = [item];
    const written = this.#queue(key, entry, () => {
      // From here on the batch is being written: later items go in the next one.
      if (entry.batch?.items === items) entry.batch = undefined;
      return this.#write(key, entry.state, items);
    });
    entry.batch = { items, written };
    return written;
  }

  /** The key's state, when it has one now. */
  peek(key: string): S | undefined {
    return this.#entries.get(key)?.state;
  }

  /** The keys with a state now, and their states. */
  states(): [string, S][] {
    return [...this.#entries].map(([key, entry]) => [key, entry.state]);
  }

  /** Settles once every task and write queued now has settled. */
  async drain(): Promise<void> {
    await Promise.all([...this.#entries.values()].map((entry) => entry.tail));
  }

  #entryOf(key: string): Entry<S, I> {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { state: this.#create(), tail: Promise.resolve(), batch: undefined };
      this.#entries.set(key, entry);
    }
    return entry;
  }

  #queue<T>(key: string, entry: Entry<S, I>, task: () => Promise<T>): Promise<T> {
    const run = entry.tail.then(task);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    entry.tail = settled;
    void settled.then(() => {
      if (entry.tail === settled && this.#entries.get(key) === entry && this.#forgettable(entry.state)) this.#entries.delete(key);
    });
    return run;
  }
}
