import { randomUUID } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { THREAD_ID_PATTERN, ThreadEnvironmentSchema } from '../protocol/thread.js';
import { errorMessage } from '../util/errors.js';
import { parseJsonAs } from '../util/json.js';
import type { Logger } from '../util/logger.js';
import type { SummaryState } from './jsonl-lines.js';
import { comesBefore, type ThreadListPosition, type ThreadListQuery, type ThreadSummary, type ThreadSummaryOk } from './thread-store.js';

/**
 * The persistent summary index of a JSON Lines thread folder: what `list()` needs of every thread
 * (its place in the list order and the summary folded from its file), so a listing reads neither
 * the folder nor the thread files. It is a cache of the thread files, never the truth: every
 * entry carries the stamp (inode, size, modification time) of the file it was folded from, and
 * an entry whose stamp no longer matches its file is folded again from where it stopped.
 *
 * On disk, in `<threads>/index/`:
 * - `summaries`: a snapshot, written whole and renamed into place (never torn): a JSON header
 *   line, then one line per thread in list order, `updatedAt TAB threadId TAB state TAB ino
 *   TAB size TAB mtimeMs TAB body-JSON`; loading it takes each line's thread id, time and flag and
 *   leaves the rest unparsed until a page shows it or its file is checked;
 *   (state: 0, 1 when the last turn failed or the file does not read back, 2 when the last turn
 *   has no completion record);
 * - `summaries.log`: what changed since, appended by every server process sharing the folder
 *   (`+ TAB entry`, `? TAB threadId TAB ino TAB size TAB mtimeMs` for a change the writer could not
 *   fold, `- TAB threadId` for an archived thread). The snapshot's header names the log (its inode)
 *   and how much of it the snapshot holds; compaction writes a new snapshot and starts a new log.
 *
 * Nothing here needs a lock: a log record lost to a race (written to a log another process just
 * replaced, or torn by a crash) only leaves an entry stale, which its stamp gives away.
 */

/** The folder, inside the threads folder, holding the index. */
export const INDEX_DIR_NAME = 'index';
const SNAPSHOT_NAME = 'summaries';
const LOG_NAME = 'summaries.log';
const TEMP_SUFFIX = '.tmp';
/** Temporary files older than this are left from a crash during a compaction, and removed. */
const STALE_TEMP_MS = 10 * 60_000;
const INDEX_FORMAT = 'codex-multienv thread summaries';
const INDEX_VERSION = 1;
/** The log is folded into a new snapshot once it holds this many bytes plus a quarter of the snapshot's. */
const COMPACT_MIN_LOG_BYTES = 1024 * 1024;
/** The largest log record read; a longer "line" is damage, skipped. */
const MAX_LOG_RECORD_BYTES = 1024 * 1024;
const READ_CHUNK_BYTES = 256 * 1024;
/** Snapshot lines parsed between two turns of the event loop. */
const PARSE_SLICE_LINES = 10_000;
const TAB = 0x09;
const NEWLINE = 0x0a;
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const ISO_TIME_LENGTH = '2025-01-02T03:04:05.000Z'.length;

/** What identifies one state of a thread file: any write, by anyone, changes it. */
export interface FileStamp {
  ino: number;
  size: number;
  mtimeMs: number;
}

/** A summary folded from a thread file, or why the file does not read back. */
export type SummaryBody = Omit<SummaryState, 'ino'> | { error: string };

/** What an entry holds besides its place in the order. */
export interface EntryDetail {
  /** The file the body was folded from. */
  file: FileStamp;
  body: SummaryBody;
}

/** One thread of the index. Entries are replaced, never changed, while in a {@link SummaryIndex}. */
export interface IndexEntry {
  readonly threadId: string;
  /** The file's modification time (ISO): the list order. */
  readonly updatedAt: string;
  /** Its last turn failed, or it does not read back (see `ThreadListQuery.failed`). */
  readonly failed: boolean;
  /** Its last turn has no completion record (see `ThreadStore.openTurns`). */
  readonly open: boolean;
  /**
   * The detail; one read from disk stays the unparsed rest of its line (`ino TAB size TAB mtimeMs
   * TAB body-JSON`) until it is needed, and is null once that turned out not to read back.
   */
  detail: EntryDetail | string | null;
}

/** The entry's detail, parsing it when it is still raw; undefined when it does not read back (a damaged index). */
export function detailOf(entry: IndexEntry): EntryDetail | undefined {
  if (entry.detail === null) return undefined;
  if (typeof entry.detail !== 'string') return entry.detail;
  const detail = parseDetail(entry.detail);
  entry.detail = detail ?? null;
  return detail;
}

/** Whether `stats` (of the thread file now) is the file the entry was folded from. */
export function sameFile(entry: IndexEntry, stats: FileStamp): boolean {
  const file = detailOf(entry)?.file;
  return file !== undefined && file.ino === stats.ino && file.size === stats.size && file.mtimeMs === stats.mtimeMs;
}

const StateBodySchema = z.object({
  offset: z.number().int().min(0),
  nextLine: z.number().int().min(1),
  createdAt: z.string(),
  environments: z.array(ThreadEnvironmentSchema),
  lastStatus: z.enum(['completed', 'failed', 'interrupted', 'incomplete']).optional(),
  lastTurnId: z.string().optional(),
  preview: z.string().optional(),
});
const ErrorBodySchema = z.object({ error: z.string() });
const BodySchema = z.union([ErrorBodySchema, StateBodySchema]);

const HeaderSchema = z.object({
  format: z.literal(INDEX_FORMAT),
  version: z.literal(INDEX_VERSION),
  count: z.number().int().min(0),
  log: z.object({ ino: z.number(), offset: z.number().int().min(0) }),
});

/** An entry for the summary `body` of a file with `stats`. */
export function entryOf(threadId: string, stats: FileStamp, body: SummaryBody): IndexEntry {
  const failed = 'error' in body || body.lastStatus === 'failed';
  const open = !('error' in body) && body.lastStatus === 'incomplete';
  return { threadId, updatedAt: new Date(stats.mtimeMs).toISOString(), failed, open, detail: { file: { ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs }, body } };
}

/** The entry's body; undefined when it does not read back (a damaged index). */
export function bodyOf(entry: IndexEntry): SummaryBody | undefined {
  return detailOf(entry)?.body;
}

/** Parses `ino TAB size TAB mtimeMs TAB body-JSON`. */
function parseDetail(text: string): EntryDetail | undefined {
  const fields = text.split('\t', 3);
  const file = stampOf(fields[0], fields[1], fields[2]);
  if (file === undefined || fields.length < 3) return undefined;
  const skip = (fields[0]?.length ?? 0) + (fields[1]?.length ?? 0) + (fields[2]?.length ?? 0) + 3;
  const parsed = parseJsonAs(BodySchema, text.slice(skip)).value;
  if (parsed === undefined) return undefined;
  const body: SummaryBody =
    'error' in parsed
      ? { error: parsed.error }
      : {
          offset: parsed.offset,
          nextLine: parsed.nextLine,
          createdAt: parsed.createdAt,
          environments: parsed.environments,
          lastStatus: parsed.lastStatus,
          lastTurnId: parsed.lastTurnId,
          preview: parsed.preview,
        };
  return { file, body };
}

/** The summary `list()` returns for an entry; undefined when its body does not parse. */
export function summaryOf(entry: IndexEntry): ThreadSummary | undefined {
  const body = bodyOf(entry);
  if (body === undefined) return undefined;
  const { threadId, updatedAt } = entry;
  // Entries loaded from disk are checked here, where they are shown, rather than all at load.
  if (!THREAD_ID_PATTERN.test(threadId) || !ISO_TIME.test(updatedAt)) return undefined;
  if ('error' in body) return { threadId, updatedAt, error: body.error };
  const summary: ThreadSummaryOk = { threadId, createdAt: body.createdAt, updatedAt, environments: body.environments };
  if (body.lastStatus !== undefined) summary.lastStatus = body.lastStatus;
  if (body.lastTurnId !== undefined) summary.lastTurnId = body.lastTurnId;
  if (body.preview !== undefined) summary.preview = body.preview;
  return summary;
}

/**
 * The index in memory: entries by thread id and in list order. Moving an entry shifts only the
 * entries between its old and new place, and an updated thread moves towards the front, where
 * the threads being worked on already are.
 */
export class SummaryIndex {
  readonly #byId = new Map<string, IndexEntry>();
  /** Every entry in list order. */
  readonly #order: IndexEntry[] = [];
  #failed = 0;
  /** Threads whose last turn is open. */
  readonly #open = new Set<string>();

  /** @param sorted entries in list order, each thread once */
  constructor(sorted: readonly IndexEntry[] = []) {
    for (const entry of sorted) {
      this.#byId.set(entry.threadId, entry);
      this.#order.push(entry);
      if (entry.failed) this.#failed += 1;
      if (entry.open) this.#open.add(entry.threadId);
    }
  }

  /** The threads whose last turn is open. */
  openThreads(): string[] {
    return [...this.#open];
  }

  get size(): number {
    return this.#order.length;
  }

  get(threadId: string): IndexEntry | undefined {
    return this.#byId.get(threadId);
  }

  /** Every entry in list order (not to be changed). */
  entries(): readonly IndexEntry[] {
    return this.#order;
  }

  /** Adds the entry, or replaces the thread's entry and moves it to its new place. */
  set(entry: IndexEntry): void {
    const old = this.#byId.get(entry.threadId);
    this.#byId.set(entry.threadId, entry);
    if (entry.failed) this.#failed += 1;
    if (entry.open) this.#open.add(entry.threadId);
    else this.#open.delete(entry.threadId);
    if (old === undefined) {
      this.#order.splice(this.#firstNotBefore(entry), 0, entry);
      return;
    }
    if (old.failed) this.#failed -= 1;
    const from = this.#indexOf(old);
    // The new place among the others: entries before it, not counting the old entry itself.
    const to = this.#firstNotBefore(entry) - (comesBefore(old, entry) ? 1 : 0);
    const order = this.#order;
    if (to <= from) for (let i = from; i > to; i -= 1) order[i] = order[i - 1] as IndexEntry;
    else for (let i = from; i < to; i += 1) order[i] = order[i + 1] as IndexEntry;
    order[to] = entry;
  }

  /** Removes the thread's entry; false when there is none. */
  delete(threadId: string): boolean {
    const old = this.#byId.get(threadId);
    if (old === undefined) return false;
    this.#byId.delete(threadId);
    if (old.failed) this.#failed -= 1;
    this.#open.delete(threadId);
    this.#order.splice(this.#indexOf(old), 1);
    return true;
  }

  /** The entries of one page of `query` (see `ThreadStore.list`), and whether more follow. */
  page(query: ThreadListQuery): { entries: IndexEntry[]; more: boolean; total: number } {
    const { failed, exclude } = query;
    const matches = (entry: IndexEntry): boolean => (failed === undefined || entry.failed === failed) && exclude?.has(entry.threadId) !== true;
    const entries: IndexEntry[] = [];
    let more = false;
    for (let i = query.after === undefined ? 0 : this.#firstAfter(query.after); i < this.#order.length; i += 1) {
      const entry = this.#order[i] as IndexEntry;
      if (!matches(entry)) continue;
      if (entries.length >= query.limit) {
        more = true;
        break;
      }
      entries.push(entry);
    }
    let total = failed === undefined ? this.#order.length : failed ? this.#failed : this.#order.length - this.#failed;
    for (const threadId of exclude ?? []) {
      const entry = this.#byId.get(threadId);
      if (entry !== undefined && (failed === undefined || entry.failed === failed)) total -= 1;
    }
    return { entries, more, total };
  }

  /** The index of the first entry that does not come before `position` (binary search). */
  #firstNotBefore(position: ThreadListPosition): number {
    let low = 0;
    let high = this.#order.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (comesBefore(this.#order[middle] as IndexEntry, position)) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** The index of the first entry after `position`. */
  #firstAfter(position: ThreadListPosition): number {
    const index = this.#firstNotBefore(position);
    const at = this.#order[index];
    return at !== undefined && at.threadId === position.threadId && at.updatedAt === position.updatedAt ? index + 1 : index;
  }

  #indexOf(entry: IndexEntry): number {
    const index = this.#firstNotBefore(entry);
    if (this.#order[index] !== entry) throw new Error(`the summary index lost its order at thread ${entry.threadId}`);
    return index;
  }
}

/** One record of the log. */
export type LogRecord = { op: 'put'; entry: IndexEntry } | { op: 'changed'; threadId: string; file: FileStamp } | { op: 'removed'; threadId: string };

/** An entry as one line of the snapshot (and, after `+ TAB`, of the log); undefined for one whose detail does not read back. */
function entryLine(entry: IndexEntry): string | undefined {
  const key = `${entry.updatedAt}\t${entry.threadId}\t${entry.failed ? 1 : entry.open ? 2 : 0}\t`;
  if (typeof entry.detail === 'string') return `${key}${entry.detail}\n`;
  if (entry.detail === null) return undefined;
  const { file, body } = entry.detail;
  return `${key}${file.ino}\t${file.size}\t${file.mtimeMs}\t${JSON.stringify(body)}\n`;
}

function stampOf(ino: string | undefined, size: string | undefined, mtimeMs: string | undefined): FileStamp | undefined {
  const stamp = { ino: Number(ino), size: Number(size), mtimeMs: Number(mtimeMs) };
  return Number.isFinite(stamp.ino) && Number.isSafeInteger(stamp.size) && stamp.size >= 0 && Number.isFinite(stamp.mtimeMs) ? stamp : undefined;
}

/**
 * Parses the entry line `line` from `start`, leaving its detail raw; undefined when the key fields
 * are damaged. The thread id is checked where it names a file (see `ThreadSummaries`), not here:
 * loading 100,000 entries must cost little more than splitting the lines.
 */
function parseEntry(line: string, start: number): IndexEntry | undefined {
  const time = start + ISO_TIME_LENGTH;
  if (line.charCodeAt(time) !== TAB) return undefined;
  const idEnd = line.indexOf('\t', time + 1);
  if (idEnd === -1 || line.charCodeAt(idEnd + 2) !== TAB) return undefined;
  const flag = line[idEnd + 1];
  if (flag !== '0' && flag !== '1' && flag !== '2') return undefined;
  return { threadId: line.slice(time + 1, idEnd), updatedAt: line.slice(start, time), failed: flag === '1', open: flag === '2', detail: line.slice(idEnd + 3) };
}

function parseLogRecord(line: string): LogRecord | undefined {
  if (line.length < 3 || line.charCodeAt(1) !== TAB) return undefined;
  const op = line[0];
  if (op === '+') {
    const entry = parseEntry(line, 2);
    return entry === undefined || !ISO_TIME.test(entry.updatedAt) || detailOf(entry) === undefined ? undefined : { op: 'put', entry };
  }
  if (op === '-') {
    const threadId = line.slice(2);
    return THREAD_ID_PATTERN.test(threadId) ? { op: 'removed', threadId } : undefined;
  }
  if (op === '?') {
    const fields = line.slice(2).split('\t');
    const [threadId = '', ino, size, mtimeMs] = fields;
    const file = stampOf(ino, size, mtimeMs);
    return fields.length === 4 && THREAD_ID_PATTERN.test(threadId) && file !== undefined ? { op: 'changed', threadId, file } : undefined;
  }
  return undefined;
}

/** A snapshot read back: its entries, in list order unless `sorted` is false. */
export interface Snapshot {
  entries: IndexEntry[];
  sorted: boolean;
}

/**
 * The index files of one threads folder, for one process: reading the snapshot, following the
 * log (what any process appends), appending to it and compacting. Log reads and appends are
 * synchronous: a few small reads and writes of the page cache at a listing or at a turn's start
 * and end, where a round trip through libuv's thread pool would cost more than the call.
 */
export class IndexFiles {
  readonly #dir: string;
  readonly #logger: Logger;
  /** The log being followed: its descriptor, inode and how far it was read. */
  #reader: { fd: number; ino: number; offset: number } | undefined;
  /** A record not yet complete at the end of the log (a write in progress). */
  #partial: Buffer = Buffer.alloc(0);
  #writer: { fd: number; ino: number } | undefined;
  #snapshotBytes = 0;
  /** Bytes of the current log read since the last snapshot. */
  #logBytes = 0;

  /** @param threadsDir the threads folder (the index is in its {@link INDEX_DIR_NAME} folder) */
  constructor(threadsDir: string, logger: Logger) {
    this.#dir = join(threadsDir, INDEX_DIR_NAME);
    this.#logger = logger;
  }

  get #snapshotPath(): string {
    return join(this.#dir, SNAPSHOT_NAME);
  }

  get #logPath(): string {
    return join(this.#dir, LOG_NAME);
  }

  /**
   * Reads the snapshot and starts following the log where the snapshot ends. Undefined when there
   * is no snapshot or it does not read back (logged): the caller rebuilds the index from the
   * thread files. `logFollows` is false when the log is not the one the snapshot continues in
   * (a compaction was interrupted): what it holds is not applied, and the caller re-checks every
   * file instead.
   */
  async load(): Promise<{ snapshot: Snapshot | undefined; logFollows: boolean }> {
    let buffer: Buffer;
    try {
      buffer = await readFile(this.#snapshotPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.#logger.warn('cannot read the thread summary index; rebuilding it', { path: this.#snapshotPath, error: errorMessage(error) });
      this.#followFromEnd();
      return { snapshot: undefined, logFollows: false };
    }
    const parsed = await this.#parseSnapshot(buffer);
    if (typeof parsed === 'string') {
      this.#logger.warn('the thread summary index does not read back; rebuilding it from the thread files', { path: this.#snapshotPath, reason: parsed });
      this.#followFromEnd();
      return { snapshot: undefined, logFollows: false };
    }
    this.#snapshotBytes = buffer.length;
    const logFollows = this.#follow(parsed.log);
    return { snapshot: { entries: parsed.entries, sorted: parsed.sorted }, logFollows };
  }

  async #parseSnapshot(buffer: Buffer): Promise<{ entries: IndexEntry[]; sorted: boolean; log: { ino: number; offset: number } } | string> {
    // One string split into lines (slices of it) costs far less than a conversion per field.
    const lines = buffer.toString('utf8').split('\n');
    if (lines.pop() !== '') return 'the last line has no newline';
    const header = parseJsonAs(HeaderSchema, lines[0] ?? '');
    if (header.value === undefined) return `invalid header: ${header.error}`;
    if (lines.length - 1 !== header.value.count) return `${lines.length - 1} entries where the header says ${header.value.count}`;
    const entries: IndexEntry[] = [];
    let sorted = true;
    let previous: IndexEntry | undefined;
    for (let i = 1; i < lines.length; i += 1) {
      // A large index is read in slices, so calls that arrive meanwhile are not held up.
      if (i % PARSE_SLICE_LINES === 0) await new Promise((resolve) => setImmediate(resolve));
      const entry = parseEntry(lines[i] as string, 0);
      if (entry === undefined) return `line ${i + 1} is not an entry`;
      if (previous !== undefined && !comesBefore(previous, entry)) sorted = false;
      entries.push(entry);
      previous = entry;
    }
    return { entries, sorted, log: header.value.log };
  }

  /** Starts following the log at `from` when it is that log; else at its end. False in the second case. */
  #follow(from: { ino: number; offset: number }): boolean {
    const fd = this.#openLogForReading();
    if (fd === undefined) return false;
    const { ino, size } = fstatSync(fd);
    const follows = ino === from.ino && from.offset <= size;
    this.#reader = { fd, ino, offset: follows ? from.offset : size };
    return follows;
  }

  #followFromEnd(): void {
    const fd = this.#openLogForReading();
    if (fd !== undefined) {
      const { ino, size } = fstatSync(fd);
      this.#reader = { fd, ino, offset: size };
    }
  }

  /** The log opened for reading; undefined when there is none or it cannot be read (then nothing is followed: stamps find the changes). */
  #openLogForReading(): number | undefined {
    try {
      return openSync(this.#logPath, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.#logger.debug('cannot read the thread summary index log', { path: this.#logPath, error: errorMessage(error) });
      return undefined;
    }
  }

  /**
   * What was appended to the log since the last call, by any process; `damaged` counts records
   * that do not read back (torn by a crash), whose threads are then unknown to be stale.
   */
  readLog(): { records: LogRecord[]; damaged: number } {
    const out = { records: [] as LogRecord[], damaged: 0 };
    this.#drain(out);
    // Another process compacted: what it wrote to the old log was read just above; the new log
    // holds only what came after its snapshot.
    const current = this.#logStats();
    if (current !== undefined && current.ino !== this.#reader?.ino) {
      const fd = this.#openLogForReading();
      if (fd !== undefined) {
        if (this.#reader !== undefined) closeSync(this.#reader.fd);
        this.#reader = { fd, ino: fstatSync(fd).ino, offset: 0 };
        this.#partial = Buffer.alloc(0);
        this.#logBytes = 0;
        this.#drain(out);
      }
    }
    return out;
  }

  /** The log's stats; undefined when there is none, or no folder where the index should be. */
  #logStats(): { ino: number } | undefined {
    try {
      return statSync(this.#logPath, { throwIfNoEntry: false });
    } catch {
      return undefined;
    }
  }

  #drain(out: { records: LogRecord[]; damaged: number }): void {
    const reader = this.#reader;
    if (reader === undefined) return;
    for (;;) {
      const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
      const read = readSync(reader.fd, chunk, 0, chunk.length, reader.offset);
      if (read === 0) return;
      reader.offset += read;
      this.#logBytes += read;
      const data = this.#partial.length === 0 ? chunk.subarray(0, read) : Buffer.concat([this.#partial, chunk.subarray(0, read)]);
      let start = 0;
      for (let end = data.indexOf(NEWLINE); end !== -1; end = data.indexOf(NEWLINE, start)) {
        const record = parseLogRecord(data.toString('utf8', start, end));
        if (record === undefined) out.damaged += 1;
        else out.records.push(record);
        start = end + 1;
      }
      // A record without its newline yet: a write in progress, or torn by a crash (then the next
      // record completes a line that does not read back, counted as damage).
      this.#partial = Buffer.from(data.subarray(start));
      if (this.#partial.length > MAX_LOG_RECORD_BYTES) {
        out.damaged += 1;
        this.#partial = Buffer.alloc(0);
      }
    }
  }

  /** Appends records to the log (not flushed: a record lost to a power cut leaves a stale entry, which its stamp gives away). */
  append(records: readonly LogRecord[]): void {
    if (records.length === 0) return;
    const text = records
      .map((record) => {
        if (record.op === 'removed') return `-\t${record.threadId}\n`;
        if (record.op === 'changed') return `?\t${record.threadId}\t${record.file.ino}\t${record.file.size}\t${record.file.mtimeMs}\n`;
        const line = entryLine(record.entry);
        return line === undefined ? '' : `+\t${line}`;
      })
      .join('');
    if (text === '') return;
    const data = Buffer.from(text);
    const fd = this.#writerFd();
    // One write, so records of processes appending at once do not interleave.
    let done = 0;
    while (done < data.length) done += writeSync(fd, data, done, data.length - done);
  }

  /** The log's append descriptor, reopened when another process replaced the log. */
  #writerFd(): number {
    const current = this.#logStats();
    if (this.#writer !== undefined && current?.ino === this.#writer.ino) return this.#writer.fd;
    if (this.#writer !== undefined) closeSync(this.#writer.fd);
    this.#writer = undefined;
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    const fd = openSync(this.#logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    this.#writer = { fd, ino: fstatSync(fd).ino };
    return fd;
  }

  /** Whether the log has grown enough to be folded into a new snapshot. */
  get wantsCompaction(): boolean {
    return this.#logBytes > COMPACT_MIN_LOG_BYTES + this.#snapshotBytes / 4;
  }

  /**
   * Writes `entries` (in list order) as the new snapshot and starts a new, empty log. The caller
   * has applied the log (`readLog`) just before; records appended meanwhile by other processes
   * are read from the old log by the next `readLog`.
   */
  async compact(entries: readonly IndexEntry[]): Promise<void> {
    await this.#removeStaleTemps();
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    const nonce = randomUUID();
    const logDraft = join(this.#dir, `${LOG_NAME}.${nonce}${TEMP_SUFFIX}`);
    const snapshotDraft = join(this.#dir, `${SNAPSHOT_NAME}.${nonce}${TEMP_SUFFIX}`);
    const logFd = openSync(logDraft, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      const logIno = fstatSync(logFd).ino;
      const kept = entries.filter((entry) => entry.detail !== null);
      const header = JSON.stringify({ format: INDEX_FORMAT, version: INDEX_VERSION, count: kept.length, log: { ino: logIno, offset: 0 } } satisfies z.input<typeof HeaderSchema>);
      // Entries whose detail does not read back are left out: the next start finds their files unindexed.
      const data = Buffer.from(`${header}\n${kept.map((entry) => entryLine(entry) ?? '').join('')}`);
      const handle = await open(snapshotDraft, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await handle.writeFile(data);
        // Renamed into place only once durable, so a crash never leaves a torn snapshot.
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await rename(snapshotDraft, this.#snapshotPath);
      renameSync(logDraft, this.#logPath);
      if (this.#writer !== undefined) closeSync(this.#writer.fd);
      this.#writer = { fd: logFd, ino: logIno };
      this.#snapshotBytes = data.length;
      this.#logBytes = 0;
    } catch (error) {
      closeSync(logFd);
      await unlink(snapshotDraft).catch(() => undefined);
      await unlink(logDraft).catch(() => undefined);
      throw error;
    }
  }

  /** Removes drafts a process left when it died during a compaction (old enough not to be in progress). */
  async #removeStaleTemps(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!name.endsWith(TEMP_SUFFIX)) continue;
      const path = join(this.#dir, name);
      const info = await stat(path).catch(() => undefined);
      // File ages are wall-clock times, so this compares with the wall clock.
      if (info !== undefined && Date.now() - info.mtimeMs > STALE_TEMP_MS) await unlink(path).catch(() => undefined);
    }
  }

  /** Closes the log descriptors. Idempotent. */
  close(): void {
    if (this.#reader !== undefined) closeSync(this.#reader.fd);
    if (this.#writer !== undefined) closeSync(this.#writer.fd);
    this.#reader = undefined;
    this.#writer = undefined;
  }
}
