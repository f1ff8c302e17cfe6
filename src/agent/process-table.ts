import type { EvictedProcess, ProcessRegistration, ProcessTable, RunningProcessEntry } from './tools/tool.js';

/** Default bound on processes one thread keeps for `write_stdin`. */
export const DEFAULT_MAX_THREAD_PROCESSES = 64;

/** Options of {@link ThreadProcessTable}. */
export interface ThreadProcessTableOptions {
  /** Entries kept at once; adding beyond it evicts one. @default DEFAULT_MAX_THREAD_PROCESSES */
  maxEntries?: number;
}

/**
 * The processes of one thread that outlived their `exec_command` call. Session ids are numeric,
 * start at 1 and are never reused. The table is bounded: when full, adding terminates and evicts
 * the oldest finished entry, or the oldest entry when none has finished.
 */
export class ThreadProcessTable implements ProcessTable {
  readonly #maxEntries: number;
  /** Insertion-ordered, so the first entries are the oldest. */
  readonly #entries = new Map<number, RunningProcessEntry>();
  #nextId = 1;

  constructor(options: ThreadProcessTableOptions = {}) {
    this.#maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_THREAD_PROCESSES);
  }

  /** Registers a process; says which entry, if any, was evicted to make room. */
  register(entry: RunningProcessEntry): ProcessRegistration {
    const evicted = this.#entries.size >= this.#maxEntries ? this.#evictOne() : undefined;
    const sessionId = this.#nextId++;
    this.#entries.set(sessionId, entry);
    return evicted === undefined ? { sessionId } : { sessionId, evicted };
  }

  get(sessionId: number): RunningProcessEntry | undefined {
    return this.#entries.get(sessionId);
  }

  remove(sessionId: number): void {
    this.#entries.delete(sessionId);
  }

  /** The session ids held, oldest first. */
  sessionIds(): number[] {
    return [...this.#entries.keys()];
  }

  /** Number of entries held. */
  get size(): number {
    return this.#entries.size;
  }

  /** Terminates every process and empties the table (when the thread is closed). */
  async terminateAll(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.allSettled(entries.filter((entry) => !entry.process.finished).map((entry) => entry.process.terminate()));
  }

  #evictOne(): EvictedProcess | undefined {
    let victim: [number, RunningProcessEntry] | undefined;
    for (const pair of this.#entries) {
      if (pair[1].process.finished) {
        victim = pair;
        break;
      }
      victim ??= pair;
    }
    if (victim === undefined) return undefined;
    const [sessionId, entry] = victim;
    this.#entries.delete(sessionId);
    const wasRunning = !entry.process.finished;
    // Nobody awaits this; a lost connection already ended the process.
    if (wasRunning) void entry.process.terminate().catch(() => undefined);
    return { sessionId, environmentId: entry.environmentId, wasRunning };
  }
}
