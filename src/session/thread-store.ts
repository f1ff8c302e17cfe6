import { constants, statSync } from 'node:fs';
import { link, mkdir, open, readdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { z } from 'zod';
import {
  THREAD_BODY_RECORD_TYPES,
  THREAD_ID_PATTERN,
  THREAD_RECORD_VERSION,
  ThreadBodyRecordSchema,
  ThreadHeaderRecordSchema,
  ThreadRecordEnvelopeSchema,
  type ThreadBodyRecord,
  type ThreadEnvironment,
  type ThreadHeaderRecord,
  type TurnStatus,
} from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';

/**
 * The thread store: one append-only JSON Lines file per thread (`<dir>/<threadId>.jsonl`, see
 * `protocol/thread.ts`), so a thread survives restarts. Every record is flushed to disk before
 * `append` resolves, so a crash loses at most the record being written; a line torn by a crash is
 * recognised on load and cut off before the next append. Anything else that does not read back
 * is reported with its file and line and left untouched: nothing the user gave us is dropped
 * silently.
 */

/** The folder, inside the threads folder, that archived threads are moved to. */
export const ARCHIVE_DIR_NAME = 'archived';

/** Characters of a thread's first prompt kept as its preview. */
export const PREVIEW_CHARS = 100;

/** A thread's first prompt as lists show it: whitespace folded, at most {@link PREVIEW_CHARS} characters. */
export function promptPreview(prompt: string): string {
  const flat = prompt.replace(/\s+/g, ' ').trim();
  const chars = [...flat];
  return chars.length <= PREVIEW_CHARS ? flat : `${chars.slice(0, PREVIEW_CHARS - 1).join('')}…`;
}

/** The largest serialized record (without its newline) the store writes or reads: 16 MiB. */
export const MAX_THREAD_RECORD_BYTES = 16 * 1024 * 1024;

/** How many append handles stay open by default; the least recently used beyond are closed. */
export const DEFAULT_MAX_OPEN_THREAD_FILES = 64;

const FILE_SUFFIX = '.jsonl';
const READ_CHUNK_BYTES = 64 * 1024;
/** Files summarized at once by `list()`. */
const LIST_CONCURRENCY = 16;
/** The start of every `item` line we write (the schema puts `type` first); lets `list()` skip items unparsed. */
const ITEM_LINE_PREFIX = Buffer.from('{"type":"item",');
const NEWLINE = 0x0a;

/** Options of {@link ThreadStore}. */
export interface ThreadStoreOptions {
  /** The directory holding the thread files; created (mode 0700) on the first `create`. */
  dir: string;
  /** Where warnings (torn lines repaired, unknown records skipped) are logged. @default silentLogger */
  logger?: Logger;
  /** `fdatasync` after each write, so a crash loses at most the record in flight. @default true */
  fsync?: boolean;
  /** Append handles kept open at once; the least recently used are closed beyond this. @default DEFAULT_MAX_OPEN_THREAD_FILES */
  maxOpenFiles?: number;
  /** Clock for the `at` stamp of records that come without one. @default Date.now */
  now?: () => number;
}

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

/** A thread file that reads back. */
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

/** A thread file that does not read back; `load` would throw `error`. */
export interface ThreadSummaryError {
  threadId: string;
  /** The file's modification time (ISO). */
  updatedAt: string;
  error: string;
}

/** One thread in {@link ThreadStore.list}. */
export type ThreadSummary = ThreadSummaryOk | ThreadSummaryError;

interface ThreadState {
  /** The last task queued for the thread; each task starts after the previous one settles. */
  tail: Promise<void>;
  /** The append handle, opened by the first append, dropped after a write error or when evicted. */
  handle: FileHandle | undefined;
  /** Appends queued but not yet started: they are written (and flushed) together. */
  batch: AppendBatch | undefined;
}

/** Records appended while the thread's previous write was still queued or running. */
interface AppendBatch {
  lines: Buffer[];
  /** Settles when every line of the batch is written and flushed, or failed. */
  written: Promise<void>;
}

/** A summary folded up to `offset` (a line boundary), so the next `list()` reads only what was added. */
interface SummaryState {
  ino: number;
  offset: number;
  nextLine: number;
  createdAt: string;
  environments: ThreadEnvironment[];
  lastStatus: ThreadSummaryStatus | undefined;
  lastTurnId: string | undefined;
  preview: string | undefined;
}

interface Line {
  /** 1-based. */
  number: number;
  bytes: Buffer;
  /** False for a last line without a newline. */
  terminated: boolean;
  /** The file offset just past the line and its newline. */
  end: number;
}

type ParsedLine =
  | { kind: 'header'; record: ThreadHeaderRecord }
  | { kind: 'body'; record: ThreadBodyRecord }
  | { kind: 'skip'; warning: string };

/**
 * Append-only JSON Lines persistence of threads. Appends to one thread run in call order (one
 * open handle and one promise chain per thread); different threads append concurrently.
 * Unexpected I/O failures (a full disk) reject with the Node.js system error; everything the store
 * itself decides rejects with a {@link LocalError}.
 */
export class ThreadStore {
  /** The directory holding the thread files. */
  readonly dir: string;
  readonly #logger: Logger;
  readonly #fsync: boolean;
  /**
   * Extra open flags of thread files: `O_DSYNC` when flushing, so each write is durable when it
   * returns (one system call instead of a write and an `fdatasync`); 0 where the platform has no
   * such flag, and writes are then followed by `fdatasync`.
   */
  readonly #syncFlag: number;
  readonly #maxOpenFiles: number;
  readonly #now: () => number;
  readonly #threads = new Map<string, ThreadState>();
  /** Threads with an open append handle, least recently used first. */
  readonly #open = new Map<string, ThreadState>();
  readonly #summaries = new Map<string, SummaryState>();
  #dirReady: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: ThreadStoreOptions) {
    this.dir = options.dir;
    this.#logger = options.logger ?? silentLogger;
    this.#fsync = options.fsync ?? true;
    this.#syncFlag = this.#fsync ? (constants.O_DSYNC ?? 0) : 0;
    this.#maxOpenFiles = Math.max(1, options.maxOpenFiles ?? DEFAULT_MAX_OPEN_THREAD_FILES);
    this.#now = options.now ?? Date.now;
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
    return this.#enqueue(threadId, async (state) => {
      await this.#ensureDir();
      let handle: FileHandle;
      try {
        handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND | this.#syncFlag, 0o600);
      } catch (error) {
        if (errnoCode(error) === 'EEXIST') {
          throw new LocalError(LocalErrorCode.InvalidArgument, `thread ${threadId} already exists (${path})`, { cause: error });
        }
        throw error;
      }
      try {
        await writeAll(handle, line);
        await this.#flush(handle);
      } catch (error) {
        // Nothing was acknowledged: remove the partial file so the create can be retried.
        await handle.close().catch(() => undefined);
        await unlink(path).catch(() => undefined);
        throw error;
      }
      if (this.#fsync) await this.#syncDir();
      this.#adopt(threadId, state, handle);
    });
  }

  /**
   * Appends one record to an existing thread and flushes it. A record that does not validate is a
   * programming error (`INVALID_ARGUMENT`); one larger than {@link MAX_THREAD_RECORD_BYTES}
   * rejects with `LIMIT_EXCEEDED`; a thread without a file rejects with `NOT_FOUND`.
   */
  async append(threadId: string, record: NewThreadRecord): Promise<void> {
    this.#assertOpen();
    const id = checkThreadId(threadId);
    const path = this.#pathOf(id);
    const parsed = validate(ThreadBodyRecordSchema, { ...record, at: record.at ?? this.#timestamp() }, id);
    const line = serialize(parsed, path);
    const state = this.#stateOf(id);
    // Records appended before the thread's queued write starts share that write and its flush
    // (e.g. several items appended at once); each still resolves only once it is on disk.
    if (state.batch !== undefined) {
      state.batch.lines.push(line);
      return state.batch.written;
    }
    const lines = [line];
    const written = this.#enqueue(id, async (current) => {
      if (current.batch?.lines === lines) current.batch = undefined;
      const handle = current.handle ?? (await this.#openForAppend(id, current));
      this.#touch(id, current);
      try {
        await writeAll(handle, lines.length === 1 ? line : Buffer.concat(lines));
        await this.#flush(handle);
      } catch (error) {
        // The lines may be partly written: reopen (and repair the tail) on the next append.
        await this.#dropHandle(id, current);
        throw error;
      }
    });
    state.batch = { lines, written };
    return written;
  }

  /**
   * Reads a thread back, or `undefined` when it has no file. Waits for the thread's pending
   * appends. A torn last line is skipped with a warning; any other line that does not read back
   * rejects with `PROTOCOL_VIOLATION` naming the file and line, and the file is left untouched.
   */
  async load(threadId: string): Promise<LoadedThread | undefined> {
    const id = checkThreadId(threadId);
    return this.#enqueue(id, () => this.#read(id));
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
    return this.#enqueue(id, async (state) => {
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
      this.#summaries.delete(id);
      if (this.#fsync) await this.#syncDir();
      return to;
    });
  }

  /** Where the thread's archived file is, when {@link archive} moved it there under its own name. */
  archivedPath(threadId: string): string | undefined {
    const path = join(this.dir, ARCHIVE_DIR_NAME, `${checkThreadId(threadId)}${FILE_SUFFIX}`);
    return statSync(path, { throwIfNoEntry: false }) === undefined ? undefined : path;
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
    return this.#enqueue(id, () => {
      const info = statSync(this.#pathOf(id), { bigint: true, throwIfNoEntry: false });
      return Promise.resolve(info === undefined ? undefined : `${info.ino}:${info.size}:${info.mtimeNs}`);
    });
  }

  /**
   * Summarizes every thread file, most recently updated first. A file that does not read back is
   * listed with `error` instead of failing the listing. Only what was appended since the previous
   * listing is read again.
   */
  async list(): Promise<ThreadSummary[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
    const ids = names.flatMap((name) => {
      if (!name.endsWith(FILE_SUFFIX)) return [];
      const id = name.slice(0, -FILE_SUFFIX.length);
      return THREAD_ID_PATTERN.test(id) ? [id] : [];
    });
    const present = new Set(ids);
    const summaries = (await mapBounded(ids, LIST_CONCURRENCY, (id) => this.#summarize(id))).filter(
      (summary): summary is ThreadSummary => summary !== undefined,
    );
    for (const id of this.#summaries.keys()) if (!present.has(id)) this.#summaries.delete(id);
    return summaries.sort((a, b) => b.updatedAt.localeCompare(a.updatedAt) || a.threadId.localeCompare(b.threadId));
  }

  /** One thread's summary, as {@link list} gives it (reading only what was appended since); undefined without a file. */
  summary(threadId: string): Promise<ThreadSummary | undefined> {
    return this.#summarize(checkThreadId(threadId));
  }

  /** Waits for pending writes, then closes every open handle. Idempotent; later creates and appends reject. */
  close(): Promise<void> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  async #closeAll(): Promise<void> {
    await Promise.all([...this.#threads.values()].map((state) => state.tail));
    await Promise.all([...this.#threads].map(([id, state]) => this.#dropHandle(id, state)));
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

  /** Makes a new file's directory entry durable; not possible everywhere (Windows), so best effort. */
  async #syncDir(): Promise<void> {
    try {
      const handle = await open(this.dir, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      this.#logger.debug('cannot sync the thread directory', { dir: this.dir, error: errorMessage(error) });
    }
  }

  /** Makes a completed write durable, unless the file was opened with `O_DSYNC` (see {@link ThreadStore.#syncFlag}). */
  async #flush(handle: FileHandle): Promise<void> {
    if (this.#fsync && this.#syncFlag === 0) await handle.datasync();
  }

  #stateOf(threadId: string): ThreadState {
    let state = this.#threads.get(threadId);
    if (state === undefined) {
      state = { tail: Promise.resolve(), handle: undefined, batch: undefined };
      this.#threads.set(threadId, state);
    }
    return state;
  }

  /** Runs `task` after every task queued before it for the same thread. */
  #enqueue<T>(threadId: string, task: (state: ThreadState) => Promise<T>): Promise<T> {
    const current = this.#stateOf(threadId);
    // Appends made after this task must not join a write queued before it (call order).
    current.batch = undefined;
    const run = current.tail.then(() => task(current));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    current.tail = settled;
    // Forget idle threads without a handle, so the map does not grow with every thread ever seen.
    void settled.then(() => {
      if (current.tail === settled && current.handle === undefined && this.#threads.get(threadId) === current) {
        this.#threads.delete(threadId);
      }
    });
    return run;
  }

  /** Opens an existing thread file for appending, cutting off a torn last line first. */
  async #openForAppend(threadId: string, state: ThreadState): Promise<FileHandle> {
    const path = this.#pathOf(threadId);
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDWR | constants.O_APPEND | this.#syncFlag);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') {
        throw new LocalError(LocalErrorCode.NotFound, `thread ${threadId} does not exist (no ${path})`, { cause: error });
      }
      throw error;
    }
    try {
      await this.#repairTail(handle, path);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    this.#adopt(threadId, state, handle);
    return handle;
  }

  /**
   * Makes the file end with a newline before anything is appended: a last line that is complete
   * JSON only lost its newline and gets one; anything else there is a write torn by a crash (what
   * `load` skipped) and is truncated away.
   */
  async #repairTail(handle: FileHandle, path: string): Promise<void> {
    const { size } = await handle.stat();
    const lineStart = await findLastLineStart(handle, size, path);
    if (lineStart === size) return;
    const torn = Buffer.alloc(size - lineStart);
    await readFully(handle, torn, lineStart);
    if (parsesAsJson(torn)) {
      await writeAll(handle, Buffer.from('\n'));
      this.#logger.info('added the missing newline after the last record', { path });
    } else {
      await handle.truncate(lineStart);
      this.#logger.warn('removed a torn last line (an interrupted write) before appending', { path, offset: lineStart, bytes: torn.length });
    }
    // A truncate is not a write, so O_DSYNC does not cover it.
    if (this.#fsync) await handle.datasync();
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
      void this.#enqueue(id, (victim) => this.#dropHandle(id, victim)).catch((error: unknown) => {
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
    const handle = await openIfExists(path);
    if (handle === undefined) return undefined;
    let header: ThreadHeaderRecord | undefined;
    const records: ThreadBodyRecord[] = [];
    const warnings: string[] = [];
    try {
      for await (const line of readLines(handle, 0, 1, path)) {
        const parsed = parseLine(line, path);
        if (parsed.kind === 'header') header = checkHeader(parsed.record, threadId, path, warnings);
        else if (parsed.kind === 'body') records.push(parsed.record);
        else warnings.push(parsed.warning);
      }
    } finally {
      await handle.close();
    }
    if (header === undefined) throw corrupt(path, 1, 'the file is empty');
    for (const warning of warnings) this.#logger.warn(warning, { thread: threadId });
    return { header, records, warnings };
  }

  async #summarize(threadId: string): Promise<ThreadSummary | undefined> {
    const path = this.#pathOf(threadId);
    let updatedAt = new Date(0).toISOString();
    try {
      const handle = await openIfExists(path);
      if (handle === undefined) return undefined; // deleted since the directory was read
      try {
        const stat = await handle.stat();
        updatedAt = stat.mtime.toISOString();
        const cached = this.#summaries.get(threadId);
        const from = cached !== undefined && cached.ino === stat.ino && cached.offset <= stat.size ? cached : undefined;
        const { state, complete } = await fold(handle, path, threadId, stat.ino, from);
        if (complete) this.#summaries.set(threadId, state);
        else this.#summaries.delete(threadId);
        const summary: ThreadSummaryOk = { threadId, createdAt: state.createdAt, updatedAt, environments: state.environments };
        if (state.lastStatus !== undefined) summary.lastStatus = state.lastStatus;
        if (state.lastTurnId !== undefined) summary.lastTurnId = state.lastTurnId;
        if (state.preview !== undefined) summary.preview = state.preview;
        return summary;
      } finally {
        await handle.close();
      }
    } catch (error) {
      this.#summaries.delete(threadId);
      return { threadId, updatedAt, error: errorMessage(error) };
    }
  }
}

/**
 * Folds a thread file into its summary, starting from a cached state when there is one. `complete`
 * is false when the last line had no newline (its effect is in `state` but must not be cached).
 */
async function fold(
  handle: FileHandle,
  path: string,
  threadId: string,
  ino: number,
  from: SummaryState | undefined,
): Promise<{ state: SummaryState; complete: boolean }> {
  let state = from === undefined ? undefined : { ...from };
  let complete = true;
  for await (const line of readLines(handle, from?.offset ?? 0, from?.nextLine ?? 1, path)) {
    if (state !== undefined && line.terminated && line.bytes.subarray(0, ITEM_LINE_PREFIX.length).equals(ITEM_LINE_PREFIX)) {
      // Items are the bulk of a file and change nothing in a summary.
      state.offset = line.end;
      state.nextLine = line.number + 1;
      continue;
    }
    const parsed = parseLine(line, path);
    if (parsed.kind === 'header') {
      const header = checkHeader(parsed.record, threadId, path, []);
      state = { ino, offset: 0, nextLine: 1, createdAt: header.createdAt, environments: header.environments, lastStatus: undefined, lastTurnId: undefined, preview: undefined };
    } else if (state !== undefined && parsed.kind === 'body') {
      const record = parsed.record;
      if (record.type === 'environments_changed') state.environments = record.environments;
      else if (record.type === 'turn_started') {
        state.lastStatus = 'incomplete';
        state.lastTurnId = record.turnId;
        state.preview ??= promptPreview(record.prompt);
      } else if (record.type === 'turn_completed') {
        state.lastStatus = record.status;
        state.lastTurnId = record.turnId;
      }
    }
    if (state === undefined) continue;
    if (line.terminated) {
      state.offset = line.end;
      state.nextLine = line.number + 1;
    } else {
      complete = false;
    }
  }
  if (state === undefined) throw corrupt(path, 1, 'the file is empty');
  return { state, complete };
}

/** Parses one line; throws for anything but a valid record, a torn last line or an unknown record type. */
function parseLine(line: Line, path: string): ParsedLine {
  const text = line.bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    if (!line.terminated && line.number > 1) {
      return {
        kind: 'skip',
        warning:
          `skipped a torn last line (line ${line.number} of ${path}, ${line.bytes.length} bytes without a newline: ` +
          'a write interrupted by a crash); it is removed before the next append',
      };
    }
    if (text.trim() === '' && line.number > 1) return { kind: 'skip', warning: `skipped blank line ${line.number} of ${path}` };
    throw corrupt(path, line.number, `not JSON (${errorMessage(error)})`);
  }
  const envelope = ThreadRecordEnvelopeSchema.safeParse(value);
  if (!envelope.success) throw corrupt(path, line.number, 'not an object with a string "type"');
  const type = envelope.data.type;
  if (line.number === 1) {
    if (type !== 'thread') throw corrupt(path, 1, `the first record is "${type}", not the "thread" header`);
    const header = ThreadHeaderRecordSchema.safeParse(value);
    if (!header.success) throw corrupt(path, 1, formatIssues(header.error));
    return { kind: 'header', record: header.data };
  }
  if (type === 'thread') throw corrupt(path, line.number, 'a second "thread" header');
  if (!isKnownBodyType(type)) {
    return {
      kind: 'skip',
      warning: `skipped a record of unknown type "${type}" at line ${line.number} of ${path} (written by a newer version?)`,
    };
  }
  const record = ThreadBodyRecordSchema.safeParse(value);
  if (!record.success) throw corrupt(path, line.number, formatIssues(record.error));
  return { kind: 'body', record: record.data };
}

function checkHeader(header: ThreadHeaderRecord, threadId: string, path: string, warnings: string[]): ThreadHeaderRecord {
  if (header.threadId !== threadId) throw corrupt(path, 1, `the header names thread "${header.threadId}"`);
  if (header.version > THREAD_RECORD_VERSION) {
    warnings.push(
      `${path} was written by format version ${header.version} (this is ${THREAD_RECORD_VERSION}); records of unknown types are skipped`,
    );
  }
  return header;
}

function isKnownBodyType(type: string): type is ThreadBodyRecord['type'] {
  const known: readonly string[] = THREAD_BODY_RECORD_TYPES;
  return known.includes(type);
}

function corrupt(path: string, line: number, reason: string): LocalError {
  const what = line === 1 ? 'invalid thread header' : 'corrupt record';
  return new LocalError(LocalErrorCode.ProtocolViolation, `${what} at line ${line} of ${path}: ${reason}; the file was left untouched`);
}

function checkThreadId(threadId: string): string {
  if (!THREAD_ID_PATTERN.test(threadId)) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `invalid thread id ${JSON.stringify(threadId)}: expected 1-128 characters of A-Z a-z 0-9 _ -`);
  }
  return threadId;
}

/** Parses `value` with `schema`; a failure is the caller's bug, reported as `INVALID_ARGUMENT`. */
function validate<S extends z.ZodType>(schema: S, value: unknown, threadId: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `invalid record for thread ${threadId}: ${formatIssues(result.error)}`);
  }
  return result.data;
}

function formatIssues(error: z.ZodError): string {
  return error.issues.map((issue) => (issue.path.length === 0 ? issue.message : `${issue.path.map(String).join('.')}: ${issue.message}`)).join('; ');
}

/** One record as one line, refusing records beyond {@link MAX_THREAD_RECORD_BYTES}. */
function serialize(record: { type: string }, path: string): Buffer {
  const line = Buffer.from(`${JSON.stringify(record)}\n`);
  const bytes = line.length - 1;
  if (bytes > MAX_THREAD_RECORD_BYTES) {
    throw new LocalError(
      LocalErrorCode.LimitExceeded,
      `a "${record.type}" record of ${bytes} bytes exceeds the ${MAX_THREAD_RECORD_BYTES}-byte (16 MiB) bound of one thread record (${path})`,
    );
  }
  return line;
}

/** Yields the lines of a file from `start` (a line boundary), each bounded by {@link MAX_THREAD_RECORD_BYTES}. */
async function* readLines(handle: FileHandle, start: number, firstLine: number, path: string): AsyncGenerator<Line> {
  let position = start;
  let lineStart = start;
  let number = firstLine;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
    if (bytesRead === 0) break;
    position += bytesRead;
    const data = chunk.subarray(0, bytesRead);
    let from = 0;
    for (;;) {
      const newline = data.indexOf(NEWLINE, from);
      const piece = data.subarray(from, newline === -1 ? data.length : newline);
      pending.push(piece);
      pendingBytes += piece.length;
      if (pendingBytes > MAX_THREAD_RECORD_BYTES) throw corrupt(path, number, `the line is longer than ${MAX_THREAD_RECORD_BYTES} bytes`);
      if (newline === -1) break;
      const bytes = pending.length === 1 ? piece : Buffer.concat(pending, pendingBytes);
      const end = lineStart + pendingBytes + 1;
      pending = [];
      pendingBytes = 0;
      yield { number, bytes, terminated: true, end };
      number += 1;
      lineStart = end;
      from = newline + 1;
    }
  }
  if (pendingBytes > 0) yield { number, bytes: Buffer.concat(pending, pendingBytes), terminated: false, end: lineStart + pendingBytes };
}

/** The offset just past the last newline of a non-empty file, scanning backwards at most one record's length. */
async function findLastLineStart(handle: FileHandle, size: number, path: string): Promise<number> {
  let end = size;
  while (end > 0 && size - end <= MAX_THREAD_RECORD_BYTES) {
    const begin = Math.max(0, end - READ_CHUNK_BYTES);
    const chunk = Buffer.alloc(end - begin);
    await readFully(handle, chunk, begin);
    const newline = chunk.lastIndexOf(NEWLINE);
    if (newline !== -1) return begin + newline + 1;
    end = begin;
  }
  if (end === 0) {
    const reason = size === 0 ? 'the file is empty' : 'the header line is incomplete';
    throw new LocalError(LocalErrorCode.ProtocolViolation, `cannot append to ${path}: ${reason}; the file was left untouched`);
  }
  throw new LocalError(
    LocalErrorCode.ProtocolViolation,
    `cannot append to ${path}: its last line is longer than any record; the file was left untouched`,
  );
}

async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new LocalError(LocalErrorCode.ProtocolViolation, 'the file shrank while it was being read');
    done += bytesRead;
  }
}

async function writeAll(handle: FileHandle, buffer: Buffer): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, done, buffer.length - done);
    done += bytesWritten;
  }
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

function parsesAsJson(bytes: Buffer): boolean {
  try {
    JSON.parse(bytes.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

function errnoCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

/** `fn` over `items` with at most `limit` calls in flight, results in input order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let index = next++; index < items.length; index = next++) {
      const item = items[index];
      if (item !== undefined) results[index] = await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
