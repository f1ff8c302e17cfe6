import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { ThreadBodyRecord, ThreadEnvironment, ThreadHeaderRecord, TurnStatus } from '../protocol/thread.js';

/**
 * The thread store: where a thread's records live (`protocol/thread.ts`), so a thread survives
 * restarts and can be listed. The thread manager talks only to this interface; the JSON Lines
 * folder (`jsonl-thread-store.ts`) is the embedded default. An implementation keeps every
 * record it acknowledged, returns them in append order, and never drops what does not read back
 * silently.
 */
export interface ThreadStore {
  /**
   * Creates a thread holding its header. Rejects with `INVALID_ARGUMENT` when the thread id is
   * invalid, the header does not validate, or the thread already exists.
   */
  create(header: NewThreadHeader): Promise<void>;
  /**
   * Appends one record to an existing thread; resolves once it is durable. Appends to one thread
   * are kept in call order. A record larger than {@link MAX_THREAD_RECORD_BYTES} rejects with
   * `LIMIT_EXCEEDED`; a thread that does not exist with `NOT_FOUND`.
   */
  append(threadId: string, record: NewThreadRecord): Promise<void>;
  /** Reads a thread back after its pending appends, or `undefined` when it does not exist. */
  load(threadId: string): Promise<LoadedThread | undefined>;
  /**
   * Archives the thread: lists and loads no longer see it, nothing is deleted. Resolves with
   * where it went; rejects with `NOT_FOUND` when the thread does not exist.
   */
  archive(threadId: string): Promise<string>;
  /** How to get an archived thread back, for the error of a call that names it; undefined when it is not archived. */
  archivedHint(threadId: string): string | undefined;
  /**
   * A token that changes whenever anything, in any process, writes the thread (after this
   * process's pending appends); undefined when it does not exist.
   */
  stamp(threadId: string): Promise<string | undefined>;
  /** Every thread's summary, most recently updated first; one that does not read back is listed with `error`. */
  list(): Promise<ThreadSummary[]>;
  /** One thread's summary, as {@link list} gives it; undefined when it does not exist. */
  summary(threadId: string): Promise<ThreadSummary | undefined>;
  /** Waits for pending writes and lets go of resources. Idempotent; later creates and appends reject. */
  close(): Promise<void>;
}

/** Characters of a thread's first prompt kept as its preview. */
export const PREVIEW_CHARS = 100;

/** A thread's first prompt as lists show it: whitespace folded, at most {@link PREVIEW_CHARS} characters. */
export function promptPreview(prompt: string): string {
  const flat = prompt.replace(/\s+/g, ' ').trim();
  const chars = [...flat];
  return chars.length <= PREVIEW_CHARS ? flat : `${chars.slice(0, PREVIEW_CHARS - 1).join('')}…`;
}

/** The largest serialized record (without its newline) a store writes or reads: 16 MiB. */
export const MAX_THREAD_RECORD_BYTES = 16 * 1024 * 1024;

/** What `create` needs: the header without the fields the store fills in. */
export type NewThreadHeader = Omit<ThreadHeaderRecord, 'type' | 'version' | 'at'>;

type WithOptionalAt<R> = R extends unknown ? Omit<R, 'at'> & { at?: string } : never;

/** A record to append: any body record; `at` defaults to the store's clock. */
export type NewThreadRecord = WithOptionalAt<ThreadBodyRecord>;

/** A thread read back from its file. */
export interface LoadedThread {
  header: ThreadHeaderRecord;
  /** Every record after the header, in file order; unknown record types are left out. */
  records: ThreadBodyRecord[];
  /** What was skipped and why (a torn last line, records of a newer version); also logged. */
  warnings: string[];
}

/**
 * How the last turn of a listed thread ended; `incomplete` when it started but has no completion
 * record (it is running now, or the process stopped during it).
 */
export type ThreadSummaryStatus = TurnStatus | 'incomplete';

/** A thread that reads back. */
export interface ThreadSummaryOk {
  threadId: string;
  createdAt: string;
  /** The file's modification time (ISO). */
  updatedAt: string;
  /** The sticky environment selection later turns use. */
  environments: ThreadEnvironment[];
  /** Absent when the thread has no turn yet. */
  lastStatus?: ThreadSummaryStatus;
  /** The last turn's id (the one `lastStatus` is about). */
  lastTurnId?: string;
  /** The thread's first prompt, shortened (see {@link promptPreview}). */
  preview?: string;
  error?: undefined;
}

/** A thread that does not read back; `load` would throw `error`. */
export interface ThreadSummaryError {
  threadId: string;
  /** The file's modification time (ISO). */
  updatedAt: string;
  error: string;
}

/** One thread in {@link ThreadStore.list}. */
export type ThreadSummary = ThreadSummaryOk | ThreadSummaryError;


/** An error about a thread id that does not exist; the MCP layer reports it with the id. */
export class ThreadNotFoundError extends LocalError {
  /** @param detail said after the old server's message, e.g. where an archived thread went */
  constructor(
    readonly threadId: string,
    detail?: string,
  ) {
    super(LocalErrorCode.NotFound, `Session not found for thread_id: ${threadId}${detail === undefined ? '' : ` (${detail})`}`);
  }
}
