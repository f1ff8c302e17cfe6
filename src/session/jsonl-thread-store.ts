import { constants, statSync } from 'node:fs';
import { link, mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ItemRecordSchema, THREAD_RECORD_VERSION, ThreadBodyRecordSchema, ThreadHeaderRecordSchema, type ThreadBodyRecord } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { KeyedSerialQueue } from '../util/keyed-queue.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { checkThreadId, errnoCode, serialize, serializedLine, validate, writeAll, writeAllSync } from './jsonl-lines.js';
import { ThreadSummaries } from './jsonl-summaries.js';
import { readThreadFile, repairTail, syncDir } from './jsonl-thread-files.js';
import { folderSecret } from './shared-secret.js';
import { WarnedThreads } from './unknown-records.js';
import {
  MAX_DEFER_MS,
  type AppendOptions,
  type LoadedThread,
  type NewThreadHeader,
  type NewThreadRecord,
  type ThreadListQuery,
  type ThreadStore,
  type ThreadSummary,
  type ThreadSummaryPage,
} from './thread-store.js';

/**
 * The embedded {@link ThreadStore}: one append-only JSON Lines file per thread
 * (`<dir>/<threadId>.jsonl`, see `protocol/thread.ts`). Every record is flushed to disk before
 * `append` resolves, so a crash loses at most the record being written; a line torn by a crash is
 * recognised on load and cut off before the next append. Anything else that does not read back
 * is reported with its file and line and left untouched: nothing the user gave us is dropped
 * silently. Listings are answered from a persistent summary index kept beside the files
 * (`jsonl-summaries.ts`, `jsonl-index.ts`).
 */

/** The folder, inside the threads folder, that archived threads are moved to. */
export const ARCHIVE_DIR_NAME = 'archived';

/** How many append handles stay open by default; the least recently used beyond are closed. */
export const DEFAULT_MAX_OPEN_THREAD_FILES = 64;

/**
 * Append handles to keep open for a server that runs up to `maxConcurrentTurns` turns at once: one
 * per running turn's thread, plus {@link DEFAULT_MAX_OPEN_THREAD_FILES} for threads between turns.
 * With fewer handles than running turns, nearly every append closes the least recently used handle
 * (another running thread's) and reopens its own file, re-reading its tail: four more file system
 * calls per record.
 */
export function openThreadFilesFor(maxConcurrentTurns: number): number {
  return DEFAULT_MAX_OPEN_THREAD_FILES + maxConcurrentTurns;
}

const FILE_SUFFIX = '.jsonl';

/**
 * The largest write of records with `durable: false` made synchronously: a turn's start, its
 * prompt, tool outputs. Such a write only copies into the page cache; through the thread pool it
 * would cost more in wake-ups than the copy (a Codex turn waits for its start's write before
 * Codex gets it). Larger ones (a long tool output) go through the pool, not to hold the loop.
 */
const SYNC_WRITE_MAX_BYTES = 64 * 1024;

/** Options of {@link JsonlThreadStore}. */
export interface ThreadStoreOptions {
  /** The directory holding the thread files; created (mode 0700) on the first `create`. */
  dir: string;
  /** Where warnings (torn lines repaired, unknown records skipped) are logged. @default silentLogger */
  logger?: Logger;
  /**
   * `fdatasync` after each durable write (and before a flush returns), so a crash of the machine
   * loses no acknowledged durable record. @default true
   */
  fsync?: boolean;
  /** Append handles kept open at once; the least recently used are closed beyond this. @default DEFAULT_MAX_OPEN_THREAD_FILES */
  maxOpenFiles?: number;
  /** Clock for the `at` stamp of records that come without one. @default Date.now */
  now?: () => number;
}

interface ThreadState {
  /** The append handle, opened by the first append, dropped after a write error or when evicted. */
  handle: FileHandle | undefined;
  /** Whether records were written since the file's last `fdatasync` (appends with `durable: false`). */
  unsynced: boolean;
}

/** An item record without its item, for items serialized by the caller (see {@link AppendOptions.itemJson}). */
const ItemEnvelopeSchema = ItemRecordSchema.pick({ at: true, turnId: true });

/** One record to append, serialized. */
interface PendingLine {
  line: Buffer;
  record: ThreadBodyRecord;
  /** Whether the append waits for the disk (see {@link AppendOptions.durable}). */
  durable: boolean;
}

/**
 * Append-only JSON Lines persistence of threads. Appends to one thread run in call order (one
 * open handle and one promise chain per thread); different threads append concurrently.
 * Unexpected I/O failures (a full disk) reject with the Node.js system error; everything the store
 * itself decides rejects with a {@link LocalError}.
 */
export class JsonlThreadStore implements ThreadStore {
  /** The directory holding the thread files. */
  readonly dir: string;
  readonly #logger: Logger;
  /** Threads whose records of unknown kinds were logged already. */
  readonly #warned: WarnedThreads;
  /**
   * Whether durable writes are followed by `fdatasync`. Files are not opened with `O_DSYNC`: a
   * write with `durable: false` must not wait for the disk, and an `O_DSYNC` write makes only its
   * own bytes durable, not earlier unsynced ones, where `fdatasync` covers the whole file.
   */
  readonly #fsync: boolean;
  readonly #maxOpenFiles: number;
  readonly #now: () => number;
  /**
   * Each thread's tasks in call order; appends queued while its previous write is queued or
   * running are written (and flushed) together. A thread is forgotten when idle without a handle.
   */
  readonly #queue: KeyedSerialQueue<ThreadState, PendingLine>;
  /** Threads with an open append handle, least recently used first. */
  readonly #open = new Map<string, ThreadState>();
  readonly #summaries: ThreadSummaries;
  #dirReady: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: ThreadStoreOptions) {
    this.dir = options.dir;
    this.#logger = options.logger ?? silentLogger;
    this.#warned = new WarnedThreads(this.#logger);
    this.#fsync = options.fsync ?? true;
    this.#maxOpenFiles = Math.max(1, options.maxOpenFiles ?? DEFAULT_MAX_OPEN_THREAD_FILES);
    this.#now = options.now ?? Date.now;
    this.#queue = new KeyedSerialQueue<ThreadState, PendingLine>({
      create: () => ({ handle: undefined, unsynced: false }),
      write: (threadId, state, lines) => this.#write(threadId, state, lines),
      forgettable: (state) => state.handle === undefined && !state.unsynced,
      maxDeferMs: MAX_DEFER_MS,
    });
    this.#summaries = new ThreadSummaries({
      dir: this.dir,
      logger: this.#logger,
      serialize: (threadId, task) => this.#queue.run(threadId, task),
      now: this.#now,
    });
  }

  /**
   * Creates the thread's file (mode 0600) holding its header. Rejects with `INVALID_ARGUMENT` when
   * the thread id is invalid, the header does not validate, or the thread already exists.
   */
  async create(header: NewThreadHeader): Promise<void> {
    this.#assertOpen();
    const threadId = checkThreadId(header.threadId);
    const path = this.#pathOf(threadId);
    const record = validate(ThreadHeaderRecordSchema, { ...header, type: 'thread', version: THREAD_RECORD_VERSION, at: this.#timestamp() }, threadId);
    const line = serialize(record, path);
    return this.#queue.run(threadId, async (state) => {
      await this.#ensureDir();
      let handle: FileHandle;
      try {
        handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND, 0o600);
      } catch (error) {
        if (errnoCode(error) === 'EEXIST') {
          throw new LocalError(LocalErrorCode.InvalidArgument, `thread ${threadId} already exists (${path})`, { cause: error });
        }
        throw error;
      }
      try {
        await writeAll(handle, line);
        if (this.#fsync) await handle.datasync();
      } catch (error) {
        // Nothing was acknowledged: remove the partial file so the create can be retried.
        await handle.close().catch(() => undefined);
        await unlink(path).catch(() => undefined);
        throw error;
      }
      if (this.#fsync) await syncDir(this.dir, this.#logger);
      this.#adopt(threadId, state, handle);
      this.#summaries.created(record, handle.fd, line.length);
    });
  }

  /**
   * Appends one record to an existing thread and syncs it (unless `durable: false`: then it is only
   * written, and synced with the thread's next durable write or flush). A record that does not validate is a
   * programming error (`INVALID_ARGUMENT`); one larger than {@link MAX_THREAD_RECORD_BYTES}
   * rejects with `LIMIT_EXCEEDED`; a thread without a file rejects with `NOT_FOUND`.
   */
  async append(threadId: string, record: NewThreadRecord, options: AppendOptions = {}): Promise<void> {
    this.#assertOpen();
    const id = checkThreadId(threadId);
    const path = this.#pathOf(id);
    if (record.type === 'item' && options.itemJson !== undefined) {
      // The item was validated and serialized for the model already; only its envelope is checked.
      const envelope = validate(ItemEnvelopeSchema, { at: record.at ?? this.#timestamp(), turnId: record.turnId }, id);
      const line = serializedLine(`{"type":"item","at":${JSON.stringify(envelope.at)},"turnId":${JSON.stringify(envelope.turnId)},"item":${options.itemJson}}`, 'item', path);
      return this.#queue.add(id, { line, record: { type: 'item', ...envelope, item: record.item }, durable: options.durable !== false }, options);
    }
    const parsed = validate(ThreadBodyRecordSchema, { ...record, at: record.at ?? this.#timestamp() }, id);
    const line = serialize(parsed, path);
    if (parsed.type === 'turn_started') {
      // Known to other processes' listings now, not once the record is written (see ThreadSummaries.starting).
      const file = statSync(path, { throwIfNoEntry: false });
      if (file !== undefined) this.#summaries.starting(id, file);
    }
    // Records appended while the thread's previous write is queued or running share the next
    // write and its sync (a group commit); each resolves once it is written, and synced if it asked to be.
    return this.#queue.add(id, { line, record: parsed, durable: options.durable !== false }, options);
  }

  /** Undefined: {@link stamp} costs a `stat`, no round trip, so it is not kept. */
  writtenStamp(): string | undefined {
    return undefined;
  }

  /** Waits for the thread's pending appends, then makes what they wrote durable (one `fdatasync` when any was written with `durable: false`). */
  async flush(threadId: string): Promise<void> {
    await this.#queue.run(checkThreadId(threadId), (state) => this.#sync(threadId, state));
  }

  /**
   * Waits for the thread's pending appends only: they are in the file, where every process sees
   * them and a crash of this process cannot lose them. Their `fdatasync` starts right after, in
   * the thread's queue (a later {@link flush} or durable write waits for it). A file fails with
   * this machine, which ends this process and its lease with it, so nothing of the lease needs
   * the disk (a database server can fail apart from this process: see `PgThreadStore`).
   */
  async flushBeforeActing(threadId: string): Promise<void> {
    const id = checkThreadId(threadId);
    await this.#queue.run(id, () => Promise.resolve());
    this.#queue
      .run(id, (state) => this.#sync(id, state))
      .catch((error: unknown) => {
        // The next flush or durable write of the thread tries again and reports its failure.
        this.#logger.warn('cannot sync a thread file', { thread: id, error: errorMessage(error) });
      });
  }

  /** Makes the thread's unsynced writes durable (its file's `fdatasync`), when there are any. */
  async #sync(threadId: string, state: ThreadState): Promise<void> {
    if (!state.unsynced) return;
    if (state.handle !== undefined) {
      await state.handle.datasync();
    } else {
      // The handle was closed since (evicted): any descriptor of the file syncs its data.
      const handle = await open(this.#pathOf(threadId), constants.O_RDONLY);
      try {
        await handle.datasync();
      } finally {
        await handle.close();
      }
    }
    state.unsynced = false;
  }

  /** Writes and flushes one batch of lines; a failure rejects every append of the batch. */
  async #write(threadId: string, state: ThreadState, pending: readonly PendingLine[]): Promise<void> {
    const handle = state.handle ?? (await this.#openForAppend(threadId, state));
    this.#touch(threadId, state);
    const data = pending.length === 1 && pending[0] !== undefined ? pending[0].line : Buffer.concat(pending.map((entry) => entry.line));
    try {
      const durable = pending.some((entry) => entry.durable);
      if (!durable && data.length <= SYNC_WRITE_MAX_BYTES) writeAllSync(handle, data);
      else await writeAll(handle, data);
      // One `fdatasync` for the batch when any of it waits for the disk; it covers what earlier
      // writes with `durable: false` left unsynced too.
      if (this.#fsync) {
        state.unsynced = true;
        if (durable) await this.#sync(threadId, state);
      }
    } catch (error) {
      // The lines may be partly written: reopen (and repair the tail) on the next append.
      await this.#dropHandle(threadId, state);
      throw error;
    }
    this.#summaries.appended(
      threadId,
      handle.fd,
      pending.map((entry) => entry.record),
      data.length,
    );
  }

  /**
   * Reads a thread back, or `undefined` when it has no file. Waits for the thread's pending
   * appends. A torn last line is skipped with a warning; any other line that does not read back
   * rejects with `PROTOCOL_VIOLATION` naming the file and line, and the file is left untouched.
   */
  async load(threadId: string): Promise<LoadedThread | undefined> {
    const id = checkThreadId(threadId);
    return this.#queue.run(id, () => this.#read(id));
  }

  /**
   * Moves the thread's file into the {@link ARCHIVE_DIR_NAME} folder (after its pending appends),
   * where listings and loads no longer see it; nothing is deleted. A name already taken there
   * gets the time appended. Resolves with the new path; rejects with `NOT_FOUND` when the thread
   * has no file.
   */
  async archive(threadId: string): Promise<string> {
    this.#assertOpen();
    const id = checkThreadId(threadId);
    return this.#queue.run(id, async (state) => {
      await this.#sync(id, state);
      await this.#dropHandle(id, state);
      const from = this.#pathOf(id);
      const dir = join(this.dir, ARCHIVE_DIR_NAME);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // A hard link then an unlink: the file is never absent from both places, and an archived
      // file of the same name is never overwritten.
      let to = join(dir, `${id}${FILE_SUFFIX}`);
      try {
        await link(from, to);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') throw new LocalError(LocalErrorCode.NotFound, `thread ${id} has no file (${from})`, { cause: error });
        if (errnoCode(error) !== 'EEXIST') throw error;
        to = join(dir, `${id}-${this.#timestamp().replace(/[:.]/g, '-')}${FILE_SUFFIX}`);
        await link(from, to);
      }
      await unlink(from);
      this.#summaries.archived(id);
      if (this.#fsync) await syncDir(this.dir, this.#logger);
      return to;
    });
  }

  /** Where the thread's archived file is, when {@link archive} moved it there under its own name. */
  archivedPath(threadId: string): string | undefined {
    const path = join(this.dir, ARCHIVE_DIR_NAME, `${checkThreadId(threadId)}${FILE_SUFFIX}`);
    return statSync(path, { throwIfNoEntry: false }) === undefined ? undefined : path;
  }

  /** Where the archived file is and how to continue the thread. */
  archivedHint(threadId: string): string | undefined {
    const path = this.archivedPath(threadId);
    return path === undefined ? undefined : `it was archived with thread/close: ${path}; move the file back into ${this.dir} to continue it`;
  }

  /**
   * A fingerprint of the thread file as it is once the thread's pending appends are written (its
   * inode, size and modification time), or undefined when it has no file: it changes whenever
   * anything, in any process, writes the file.
   */
  async stamp(threadId: string): Promise<string | undefined> {
    const id = checkThreadId(threadId);
    // A synchronous stat: it runs at every turn's start and end, and costs microseconds where an
    // asynchronous one would cost a round trip through libuv's thread pool.
    return this.#queue.run(id, () => {
      const info = statSync(this.#pathOf(id), { bigint: true, throwIfNoEntry: false });
      return Promise.resolve(info === undefined ? undefined : `${info.ino}:${info.size}:${info.mtimeNs}`);
    });
  }

  /**
   * One page of thread summaries, from the summary index (opened, or built from the thread files,
   * at the first call). A file that does not read back is listed with `error` instead of failing
   * the listing. Every summary on the page is checked against its file first.
   */
  list(query: ThreadListQuery): Promise<ThreadSummaryPage> {
    return this.#summaries.list(query);
  }

  /** The threads whose last turn has no completion record, from the summary index. */
  openTurns(): Promise<string[]> {
    return this.#summaries.openTurns();
  }

  /** One thread's summary, as {@link list} gives it (reading only what was appended since); undefined without a file. */
  summary(threadId: string): Promise<ThreadSummary | undefined> {
    return this.#summaries.summary(checkThreadId(threadId));
  }

  /**
   * Checks every thread file against the summary index now, as happens in the background after
   * the index is opened: changes made while no server ran (a crash between a thread write and
   * its index record, a file moved into the folder) then show in the list order at once.
   */
  reconcile(): Promise<void> {
    return this.#summaries.reconcile();
  }

  /** The secret `name` of the threads folder (see {@link folderSecret}). */
  sharedSecret(name: string): Promise<Buffer> {
    return folderSecret(this.dir, name);
  }

  /** Waits for pending writes, makes them durable, then closes every open handle. Idempotent; later creates and appends reject. */
  close(): Promise<void> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  async #closeAll(): Promise<void> {
    await this.#summaries.close();
    await this.#queue.drain();
    await Promise.all(
      this.#queue.states().map(async ([id, state]) => {
        await this.#sync(id, state).catch((error: unknown) => {
          this.#logger.warn('cannot sync a thread file', { thread: id, error: errorMessage(error) });
        });
        await this.#dropHandle(id, state);
      }),
    );
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) throw new LocalError(LocalErrorCode.ConnectionClosed, 'the thread store is closed');
  }

  #pathOf(threadId: string): string {
    return join(this.dir, `${threadId}${FILE_SUFFIX}`);
  }

  #timestamp(): string {
    return new Date(this.#now()).toISOString();
  }

  #ensureDir(): Promise<void> {
    this.#dirReady ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(
      () => undefined,
      (error: unknown) => {
        this.#dirReady = undefined;
        throw error;
      },
    );
    return this.#dirReady;
  }

  /** Opens an existing thread file for appending, cutting off a torn last line first. */
  async #openForAppend(threadId: string, state: ThreadState): Promise<FileHandle> {
    const path = this.#pathOf(threadId);
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_APPEND);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') {
        throw new LocalError(LocalErrorCode.NotFound, `thread ${threadId} does not exist (no ${path})`, { cause: error });
      }
      throw error;
    }
    try {
      await repairTail(handle, path, { fsync: this.#fsync, logger: this.#logger });
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    this.#adopt(threadId, state, handle);
    return handle;
  }

  /** Records `handle` as the thread's append handle and closes the least recently used beyond the bound. */
  #adopt(threadId: string, state: ThreadState, handle: FileHandle): void {
    state.handle = handle;
    this.#touch(threadId, state);
    for (const [id] of this.#open) {
      if (this.#open.size <= this.#maxOpenFiles) break;
      if (id === threadId) continue;
      this.#open.delete(id);
      // Queued behind the thread's own appends, so it never closes a handle in use.
      void this.#queue
        .run(id, (victim) => this.#dropHandle(id, victim))
        .catch((error: unknown) => {
          this.#logger.warn('cannot close an idle thread file', { thread: id, error: errorMessage(error) });
        });
    }
  }

  #touch(threadId: string, state: ThreadState): void {
    this.#open.delete(threadId);
    this.#open.set(threadId, state);
  }

  async #dropHandle(threadId: string, state: ThreadState): Promise<void> {
    const handle = state.handle;
    state.handle = undefined;
    if (this.#open.get(threadId) === state) this.#open.delete(threadId);
    if (handle === undefined) return;
    try {
      await handle.close();
    } catch (error) {
      this.#logger.warn('cannot close a thread file', { thread: threadId, error: errorMessage(error) });
    }
  }

  async #read(threadId: string): Promise<LoadedThread | undefined> {
    const path = this.#pathOf(threadId);
    const read = await readThreadFile(path, threadId);
    if (read === undefined) return undefined;
    for (const warning of read.warnings) this.#logger.warn(warning, { thread: threadId });
    const skipped = this.#warned.warn(threadId, read.unknown, path);
    return { header: read.header, records: read.records, warnings: skipped === undefined ? read.warnings : [...read.warnings, skipped] };
  }
}
