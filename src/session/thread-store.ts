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
   * are kept in call order; those made while the thread's previous write is in flight go together
   * in the next write (one flush, one commit), and a failed write rejects every append in it. A
   * record larger than {@link MAX_THREAD_RECORD_BYTES} rejects with `LIMIT_EXCEEDED`; a thread
   * that does not exist with `NOT_FOUND`.
   */
  append(threadId: string, record: NewThreadRecord, options?: AppendOptions): Promise<void>;
  /**
   * Makes every record appended to the thread so far durable, after its pending appends: what
   * {@link AppendOptions.durable} `false` left to a later flush. Called before an answer about the
   * thread leaves for a client. Resolves at once (no I/O) when nothing of it waits for a flush.
   */
  flush(threadId: string): Promise<void>;
  /**
   * Makes the thread's records so far safe to act on outside the store (an engine that runs
   * commands on the turn's behalf by itself): written where every process sees them and a crash of
   * this process cannot lose them, and durable with the lease they run under wherever the store can
   * fail apart from this process (a database server). They are durable by the answer either way
   * ({@link flush}).
   */
  flushBeforeActing(threadId: string): Promise<void>;
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
  /**
   * The thread's {@link stamp} as this process's last write of it left it, when the store knows it
   * without asking (a database's answer to the write); undefined otherwise. A write by anyone
   * since makes it differ from {@link stamp}, as a stamp taken then would.
   */
  writtenStamp(threadId: string): string | undefined;
  /**
   * One page of thread summaries in list order (see {@link ThreadListPosition}); a thread that
   * does not read back is listed with `error`. Keyset paging: a page starts after the position of
   * the previous page's last summary, so paging costs the same at any depth and maps onto an
   * ordered index of a database (`ORDER BY updated_at DESC, thread_id` with a `WHERE` on the
   * position).
   */
  list(query: ThreadListQuery): Promise<ThreadSummaryPage>;
  /**
   * The threads whose last turn has no completion record (`lastStatus: 'incomplete'`): running
   * now, here or in another process, or stopped by a crash during the turn. Only these can be
   * running elsewhere, so the list asks the ownership about these alone.
   */
  openTurns(): Promise<string[]>;
  /** One thread's summary, as {@link list} gives it; undefined when it does not exist. */
  summary(threadId: string): Promise<ThreadSummary | undefined>;
  /**
   * The secret `name` shared by every process of this store (made once, 32 random bytes; the
   * folder keeps it in a 0600 file, the database in a table), e.g. the key that seals MCP
   * `requestState` values so any instance verifies them. Never sent to clients.
   */
  sharedSecret(name: string): Promise<Buffer>;
  /** Waits for pending writes and lets go of resources. Idempotent; later creates and appends reject. */
  close(): Promise<void>;
}

/** Options of {@link ThreadStore.append}. */
export interface AppendOptions {
  /**
   * The record starts no write of its own: it goes in the thread's next write (the next append or
   * read of the thread), or within {@link MAX_DEFER_MS} when nothing comes. For records followed
   * at once by one that must be durable (a turn's last items, then its completion): one flush for
   * both. The promise still resolves only once the record is durable.
   * @default false
   */
  defer?: boolean;
  /**
   * For an `item` record: its item's JSON, already validated and serialized for the model
   * (`requestItemJson`). A store may write it as is rather than validate and serialize the item
   * again; the rest of the record is still validated. @default none (the item is serialized)
   */
  itemJson?: string;
  /**
   * `false`: the write may be committed without waiting for the disk; the promise resolves once
   * it is written (in order, and seen by every process), and the record becomes durable with the
   * store's next durable write or {@link ThreadStore.flush}. For records nothing is done on the
   * strength of before such a write: no answer to a client, no command run. A write of several
   * appends waits for the disk when any of them asks to. A store may flush them anyway.
   * @default true
   */
  durable?: boolean;
}

/** The longest a deferred append (see {@link AppendOptions.defer}) waits for the thread's next write. */
export const MAX_DEFER_MS = 20;

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
  /** What was skipped and why (a torn last line; records of kinds a newer version added, in one warning); the store logs them. */
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

/**
 * A place in the list order: most recently updated first (`updatedAt` descending), ties by
 * `threadId` ascending. ISO timestamps of one format compare as strings.
 */
export interface ThreadListPosition {
  updatedAt: string;
  threadId: string;
}

/** What {@link ThreadStore.list} is asked for. */
export interface ThreadListQuery {
  /** At most this many summaries (0: none, only `total`). */
  limit: number;
  /** Only summaries after this position (the last one of the previous page); omitted: from the start. */
  after?: ThreadListPosition;
  /**
   * true: only threads whose last turn failed or that do not read back; false: only the others;
   * omitted: all.
   */
  failed?: boolean;
  /** Threads to leave out of the page and of `total` (the caller lists them from somewhere else). */
  exclude?: ReadonlySet<string>;
}

/** One page of {@link ThreadStore.list}. */
export interface ThreadSummaryPage {
  summaries: ThreadSummary[];
  /** Where the next page starts (the last summary's position); undefined when nothing follows. */
  next: ThreadListPosition | undefined;
  /** Summaries the query matches on every page (`failed` and `exclude` applied, not `after` or `limit`). */
  total: number;
}

/** Whether `summary` comes before `position` in the list order (see {@link ThreadListPosition}). */
export function comesBefore(summary: ThreadListPosition, position: ThreadListPosition): boolean {
  return summary.updatedAt > position.updatedAt || (summary.updatedAt === position.updatedAt && summary.threadId < position.threadId);
}

/** Compares two positions in the list order, for sorting. */
export function compareListPositions(a: ThreadListPosition, b: ThreadListPosition): number {
  return comesBefore(a, b) ? -1 : comesBefore(b, a) ? 1 : 0;
}

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
