import { deferred, type Deferred } from './deferred.js';

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
  /** The longest a deferred item (see {@link KeyedSerialQueue.add}) waits for a write to join. @default 20 */
  maxDeferMs?: number;
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
  /** Set while the batch is parked: only deferred items are in it and no write is queued for it yet. */
  parked: { done: Deferred<void>; timer: NodeJS.Timeout } | undefined;
}

/**
 * Tasks run one after another per key (a thread), different keys concurrently. Items added with
 * {@link add} while the key's previous task is queued or running wait together and go in one call
 * of `write` when their turn comes: a group commit, one write and one flush for all of them, each
 * item's promise settling with that write. Call order is kept across both kinds of work: a task
 * queued with {@link run} closes the open batch, so items added after it never join a write
 * queued before it. A deferred item queues no write of its own: it is parked until the next item
 * or task of its key (and goes in the same write), or at most `maxDeferMs`.
 */
export class KeyedSerialQueue<S, I> {
  readonly #entries = new Map<string, Entry<S, I>>();
  readonly #create: () => S;
  readonly #write: (key: string, state: S, items: readonly I[]) => Promise<void>;
  readonly #forgettable: (state: S) => boolean;
  readonly #maxDeferMs: number;

  constructor(options: KeyedSerialQueueOptions<S, I>) {
    this.#create = options.create;
    this.#write = options.write;
    this.#forgettable = options.forgettable ?? (() => true);
    this.#maxDeferMs = options.maxDeferMs ?? 20;
  }

  /** Runs `task` after every task and write queued before it for the same key. */
  run<T>(key: string, task: (state: S) => Promise<T>): Promise<T> {
    const entry = this.#entryOf(key);
    this.#unpark(key, entry);
    // Items added after this task must not join a write queued before it (call order).
    entry.batch = undefined;
    return this.#queue(key, entry, () => task(entry.state));
  }

  /**
   * Adds `item` to the key's open batch, or opens a batch written once everything queued before
   * it has settled. Resolves when the batch is written; a failed write rejects every item in it.
   * `defer`: the item starts no write by itself; it joins the next write of the key (the next
   * item or task added), or is written after `maxDeferMs` when nothing else comes.
   */
  add(key: string, item: I, options: { defer?: boolean } = {}): Promise<void> {
    const entry = this.#entryOf(key);
    const open = entry.batch;
    if (open !== undefined) {
      open.items.push(item);
      if (options.defer !== true) this.#unpark(key, entry);
      return open.written;
    }
    if (options.defer !== true) return this.#openBatch(key, entry, [item]).written;
    const done = deferred<void>();
    const batch: Batch<I> = { items: [item], written: done.promise, parked: undefined };
    const timer = setTimeout(() => this.#unpark(key, entry), this.#maxDeferMs);
    // A pending deferred item does not keep the process alive; closing the owner drains it.
    timer.unref();
    batch.parked = { done, timer };
    entry.batch = batch;
    return batch.written;
  }

  /** The key's state, when it has one now. */
  peek(key: string): S | undefined {
    return this.#entries.get(key)?.state;
  }

  /** The keys with a state now, and their states. */
  states(): [string, S][] {
    return [...this.#entries].map(([key, entry]) => [key, entry.state]);
  }

  /** Writes the parked items now, then settles once every task and write queued now has settled. */
  async drain(): Promise<void> {
    for (const [key, entry] of this.#entries) this.#unpark(key, entry);
    await Promise.all([...this.#entries.values()].map((entry) => entry.tail));
  }

  /** Queues the write of a batch; later items join it until it starts. */
  #openBatch(key: string, entry: Entry<S, I>, items: I[]): Batch<I> {
    const written = this.#queue(key, entry, () => {
      // From here on the batch is being written: later items go in the next one.
      if (entry.batch?.items === items) entry.batch = undefined;
      return this.#write(key, entry.state, items);
    });
    const batch: Batch<I> = { items, written, parked: undefined };
    entry.batch = batch;
    return batch;
  }

  /** Queues the write of the key's parked batch, if it has one; it stays open to later items until the write starts. */
  #unpark(key: string, entry: Entry<S, I>): void {
    const parked = entry.batch?.parked;
    if (entry.batch === undefined || parked === undefined) return;
    clearTimeout(parked.timer);
    const queued = this.#openBatch(key, entry, entry.batch.items);
    queued.written.then(
      () => parked.done.resolve(),
      (error: unknown) => parked.done.reject(error),
    );
    // Its items' promises stay the parked batch's, which settle with this write.
    queued.written = parked.done.promise;
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
      // Kept while an item is parked in it (it is queued later, in this entry's order).
      if (entry.tail === settled && entry.batch === undefined && this.#entries.get(key) === entry && this.#forgettable(entry.state)) this.#entries.delete(key);
    });
    return run;
  }
}
