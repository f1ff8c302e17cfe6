import { randomUUID } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { THREAD_ID_PATTERN } from '../protocol/thread.js';
import { errorMessage } from '../util/errors.js';
import { parseJsonAs } from '../util/json.js';
import type { Logger } from '../util/logger.js';
import { ISO_TIME, detailOf, stampOf, type FileStamp, type IndexEntry } from './jsonl-index.js';
import { comesBefore } from './thread-store.js';

/**
 * The files of the summary index (`jsonl-index.ts` has the format and the index in memory):
 * reading the snapshot, following and appending to the log, compacting.
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
const ISO_TIME_LENGTH = '2025-01-02T03:04:05.000Z'.length;

const HeaderSchema = z.object({
  format: z.literal(INDEX_FORMAT),
  version: z.literal(INDEX_VERSION),
  count: z.number().int().min(0),
  log: z.object({ ino: z.number(), offset: z.number().int().min(0) }),
});

/** One record of the log. */
export type LogRecord =
  | { op: 'put'; entry: IndexEntry }
  | { op: 'changed'; threadId: string; file: FileStamp }
  /** A turn is starting: its `turn_started` record is on its way into the file, which is still `file`. */
  | { op: 'starting'; threadId: string; file: FileStamp }
  | { op: 'removed'; threadId: string };

/**
 * JSON with every character beyond ASCII escaped: index files are pure ASCII, so a snapshot is
 * read as one byte per character (one emoji in one preview would otherwise double the memory
 * and the time of reading all of it).
 */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** An entry as one line of the snapshot (and, after `+ TAB`, of the log); undefined for one whose detail does not read back. */
function entryLine(entry: IndexEntry): string | undefined {
  const key = `${entry.updatedAt}\t${entry.threadId}\t${entry.failed ? 1 : entry.open ? 2 : 0}\t`;
  if (typeof entry.detail === 'string') return `${key}${entry.detail}\n`;
  if (entry.detail === null) return undefined;
  const { file, body } = entry.detail;
  return `${key}${file.ino}\t${file.size}\t${file.mtimeMs}\t${asciiJson(body)}\n`;
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
  if (op === '?' || op === 'o') {
    const fields = line.slice(2).split('\t');
    const [threadId = '', ino, size, mtimeMs] = fields;
    const file = stampOf(ino, size, mtimeMs);
    if (fields.length !== 4 || !THREAD_ID_PATTERN.test(threadId) || file === undefined) return undefined;
    return { op: op === '?' ? 'changed' : 'starting', threadId, file };
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
      // One read into one buffer: several times faster than reading it a chunk at a time through
      // the thread pool, and it blocks for a few milliseconds once per start.
      buffer = readFileSync(this.#snapshotPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        this.#logger.warn('cannot read the thread summary index; rebuilding it', { path: this.#snapshotPath, error: errorMessage(error) });
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
    // One string split into lines (slices of it) costs far less than a conversion per field; the
    // file is ASCII (see asciiJson), so Latin-1 reads it exactly, and fastest.
    const lines = buffer.toString('latin1').split('\n');
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
        if (record.op === 'changed' || record.op === 'starting')
          return `${record.op === 'changed' ? '?' : 'o'}\t${record.threadId}\t${record.file.ino}\t${record.file.size}\t${record.file.mtimeMs}\n`;
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
