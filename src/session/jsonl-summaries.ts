import { fstatSync, statSync, watch, type FSWatcher } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { THREAD_ID_PATTERN, type ThreadBodyRecord, type ThreadHeaderRecord } from '../protocol/thread.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { IndexFiles, type LogRecord } from './jsonl-index-files.js';
import { SummaryIndex, detailOf, entryOf, sameFile, summaryOf, type FileStamp, type IndexEntry, type SummaryBody } from './jsonl-index.js';
import { changesSummary, errnoCode, foldRecord, foldSummary, mapBounded, openIfExists } from './jsonl-lines.js';
import { compareListPositions, type ThreadListQuery, type ThreadSummary, type ThreadSummaryPage } from './thread-store.js';

/**
 * The summaries side of the JSON Lines store: answers `list()` and `summary()` from the
 * persistent index (`jsonl-index.ts`), keeps it up to date with this process's writes, and finds
 * what others changed:
 * - other server processes sharing the folder append what they change to the index log, read at
 *   every listing;
 * - every summary a page shows is checked against its file (one `stat`), so a page never shows a
 *   stale summary, whoever wrote the file;
 * - a folder watch (inotify) names the files written meanwhile, so a thread written behind the
 *   index's back moves to its place in the order at the next listing;
 * - at start-up, and every {@link RESCAN_INTERVAL_MS} where the folder cannot be watched, every
 *   file is checked in the background (a `readdir` and a `stat` each): that finds what changed
 *   while no process ran (a crash between a thread write and its index record, a file moved in).
 *
 * Kept as one unit, a little over 500 lines: the index in memory, its files, the folder watch and
 * the background scans all move the same entries under one promise chain (`#open`, `#refreshed`),
 * and splitting them would hand that state across modules.
 */

const FILE_SUFFIX = '.jsonl';
/** Files folded at once when the index is rebuilt. */
const REBUILD_CONCURRENCY = 16;
/** Files a background check looks at between two turns of the event loop. */
const SCAN_SLICE = 500;
/** How long after the index is opened the background check of every file starts: not during the first listings. */
const STARTUP_SCAN_DELAY_MS = 2_000;
/** Where the folder cannot be watched, every file is checked again at a listing this long after the last check. */
const RESCAN_INTERVAL_MS = 60_000;
/** Changed files remembered between listings; beyond that, every file is checked instead. */
const MAX_SUSPECTS = 10_000;
/** Times a page is taken again after folding entries found stale on it. */
const PAGE_ROUNDS = 3;

/** What a listing shows of an entry, but its time: equal when a refold found only items appended. */
function summaryText(entry: IndexEntry): string {
  const summary = summaryOf(entry);
  return summary === undefined ? '' : JSON.stringify({ ...summary, updatedAt: undefined });
}

/** Options of {@link ThreadSummaries}. */
export interface ThreadSummariesOptions {
  /** The threads folder. */
  dir: string;
  logger: Logger;
  /** Runs `task` in the thread's queue of writes, so a fold never races the thread's own appends. */
  serialize: <T>(threadId: string, task: () => Promise<T>) => Promise<T>;
  /** The clock deciding when a background check is due. */
  now: () => number;
}

/** The index of a threads folder, opened at the first listing. */
export class ThreadSummaries {
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #serialize: ThreadSummariesOptions['serialize'];
  readonly #now: () => number;
  readonly #files: IndexFiles;
  #opening: Promise<SummaryIndex> | undefined;
  /** Set once opened: this process's writes then update it directly. */
  #index: SummaryIndex | undefined;
  /**
   * Threads a process said it starts a turn of, with the stamp of their file then: open until
   * their entry shows a later state of the file (which then says whether the turn is open).
   */
  readonly #starting = new Map<string, FileStamp>();
  /** Threads whose file changed in a way the index does not know yet: checked at the next listing. */
  readonly #suspects = new Set<string>();
  #watcher: FSWatcher | undefined;
  #watchTriedAt: number | undefined;
  #scan: Promise<void> | undefined;
  #scanTimer: NodeJS.Timeout | undefined;
  #scannedAt: number | undefined;
  #compaction: Promise<void> | undefined;
  #closed = false;

  constructor(options: ThreadSummariesOptions) {
    this.#dir = options.dir;
    this.#logger = options.logger;
    this.#serialize = options.serialize;
    this.#now = options.now;
    this.#files = new IndexFiles(options.dir, options.logger);
  }

  /** See `ThreadStore.list`. */
  async list(query: ThreadListQuery): Promise<ThreadSummaryPage> {
    const index = await this.#refreshed();
    for (let round = 1; ; round += 1) {
      const page = index.page(query);
      const summaries: ThreadSummary[] = [];
      const stale: string[] = [];
      for (const entry of page.entries) {
        const now = this.#statOf(entry.threadId);
        const summary = now !== undefined && (sameFile(entry, now) || round === PAGE_ROUNDS) ? summaryOf(entry) : undefined;
        if (summary === undefined) stale.push(entry.threadId);
        else summaries.push(summary);
      }
      if (stale.length === 0 || round === PAGE_ROUNDS) {
        const last = page.entries[page.entries.length - 1];
        return { summaries, total: page.total, next: page.more && last !== undefined ? { updatedAt: last.updatedAt, threadId: last.threadId } : undefined };
      }
      // Written behind the index's back since it last looked: fold them and take the page again,
      // as they may have moved.
      await mapBounded(stale, REBUILD_CONCURRENCY, (threadId) => this.#check(index, threadId));
    }
  }

  /** See `ThreadStore.openTurns`. */
  async openTurns(): Promise<string[]> {
    const index = await this.#refreshed();
    const open = new Set(index.openThreads());
    for (const [threadId, file] of this.#starting) {
      const entry = index.get(threadId);
      if (entry !== undefined && !sameFile(entry, file)) this.#starting.delete(threadId);
      else open.add(threadId);
    }
    return [...open];
  }

  /**
   * Records that this process starts a turn of the thread, before its `turn_started` record is
   * written (the turn may be reported running to a client first): listings elsewhere then know
   * at once that the thread may be running here. `file` is the thread file's stamp now.
   */
  starting(threadId: string, file: FileStamp): void {
    this.#recordWrite(() => {
      const record: LogRecord = { op: 'starting', threadId, file: { ino: file.ino, size: file.size, mtimeMs: file.mtimeMs } };
      this.#starting.set(threadId, record.file);
      return [record];
    });
  }

  /** See `ThreadStore.summary`. */
  async summary(threadId: string): Promise<ThreadSummary | undefined> {
    const index = await this.#open();
    const entry = index.get(threadId);
    const now = this.#statOf(threadId);
    if (now === undefined) {
      index.delete(threadId);
      return undefined;
    }
    const current = entry !== undefined && sameFile(entry, now) ? summaryOf(entry) : undefined;
    if (current !== undefined) return current;
    const fresh = await this.#refold(index, threadId);
    return fresh === undefined ? undefined : summaryOf(fresh);
  }

  /**
   * Records a thread this process created: `fd` is its file, just written with the header record
   * of `bytes` bytes.
   */
  created(header: ThreadHeaderRecord, fd: number, bytes: number): void {
    this.#recordWrite(() => {
      const body: SummaryBody = {
        offset: bytes,
        nextLine: 2,
        createdAt: header.createdAt,
        environments: header.environments,
        lastStatus: undefined,
        lastTurnId: undefined,
        preview: undefined,
      };
      const entry = entryOf(header.threadId, fstatSync(fd), body);
      this.#index?.set(entry);
      return [{ op: 'put', entry }];
    });
  }

  /**
   * Records what this process appended to a thread: `records`, `bytes` in all, ending the file
   * `fd`. The log gets what changes a summary; items only move the entry in memory.
   */
  appended(threadId: string, fd: number, records: readonly ThreadBodyRecord[], bytes: number): void {
    this.#recordWrite(() => {
      const now = fstatSync(fd);
      const changes = records.some(changesSummary);
      const entry = this.#index?.get(threadId);
      const detail = entry === undefined ? undefined : detailOf(entry);
      const body = detail?.body;
      // Folded on from the entry only when it was the file just before these records.
      if (
        detail !== undefined &&
        body !== undefined &&
        !('error' in body) &&
        detail.file.ino === now.ino &&
        detail.file.size === now.size - bytes &&
        body.offset === detail.file.size
      ) {
        const next = { ...body, offset: now.size, nextLine: body.nextLine + records.length };
        for (const record of records) foldRecord(next, record);
        const updated = entryOf(threadId, now, next);
        this.#index?.set(updated);
        return changes ? [{ op: 'put', entry: updated }] : [];
      }
      if (this.#index !== undefined) this.#suspects.add(threadId);
      return changes ? [{ op: 'changed', threadId, file: { ino: now.ino, size: now.size, mtimeMs: now.mtimeMs } }] : [];
    });
  }

  /** Records that this process archived the thread (its file left the folder). */
  archived(threadId: string): void {
    this.#recordWrite(() => {
      this.#index?.delete(threadId);
      this.#starting.delete(threadId);
      return [{ op: 'removed', threadId }];
    });
  }

  /** A failure to keep the index is logged, never the failure of the thread write it follows. */
  #recordWrite(update: () => LogRecord[]): void {
    try {
      this.#files.append(update());
    } catch (error) {
      this.#logger.warn('cannot update the thread summary index; listings find the change from the thread file', { dir: this.#dir, error: errorMessage(error) });
    }
  }

  /**
   * Checks every file against the index now (what happens in the background after the index is
   * opened): for tests, and for whoever wants a listing to reflect changes made while no server
   * ran before the background check got to them.
   */
  async reconcile(): Promise<void> {
    const index = await this.#open();
    await this.#scan;
    await this.#startScan(index);
  }

  /** Stops watching, waits for a background check or compaction under way, closes the index files. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#scanTimer);
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#opening?.catch(() => undefined);
    await this.#scan;
    await this.#compaction;
    this.#files.close();
  }

  #pathOf(threadId: string): string {
    return join(this.#dir, `${threadId}${FILE_SUFFIX}`);
  }

  /**
   * The thread file's stats; undefined when there is none, or when the id is not a thread id
   * (an index entry damaged on disk must never name a file outside the folder).
   */
  #statOf(threadId: string): FileStamp | undefined {
    return THREAD_ID_PATTERN.test(threadId) ? statSync(this.#pathOf(threadId), { throwIfNoEntry: false }) : undefined;
  }

  #open(): Promise<SummaryIndex> {
    this.#opening ??= this.#load().then(
      (index) => {
        this.#index = index;
        return index;
      },
      (error: unknown) => {
        this.#opening = undefined;
        throw error;
      },
    );
    return this.#opening;
  }

  async #load(): Promise<SummaryIndex> {
    const { snapshot, logFollows } = await this.#files.load();
    // Watching starts before anything is read, so no change falls between reading and watching.
    this.#watch();
    if (snapshot === undefined) return this.#rebuild();
    const index = new SummaryIndex(snapshot.sorted ? snapshot.entries : [...snapshot.entries].sort(compareListPositions));
    if (!logFollows)
      this.#logger.info('the thread summary index log is not the one its snapshot continues in (a compaction was interrupted); checking every thread file', { dir: this.#dir });
    // Files may have changed while no server ran: checked in the background once the first
    // listings are answered (their pages are checked file by file meanwhile).
    this.#scanTimer = setTimeout(() => void this.#startScan(index), STARTUP_SCAN_DELAY_MS);
    this.#scanTimer.unref();
    return index;
  }

  /** Builds the index from the thread files (none yet, or it did not read back) and writes it. */
  async #rebuild(): Promise<SummaryIndex> {
    const started = this.#now();
    const ids = await this.#threadIds();
    if (ids === undefined) return new SummaryIndex();
    // A store closed meanwhile (the server stopping) stops reading files; what it has is not written.
    const entries = (await mapBounded(ids, REBUILD_CONCURRENCY, (threadId) => (this.#closed ? Promise.resolve(undefined) : this.#fold(threadId, undefined)))).filter(
      (entry): entry is IndexEntry => entry !== undefined,
    );
    const index = new SummaryIndex(entries.sort(compareListPositions));
    if (this.#closed) return index;
    this.#scannedAt = started;
    await this.#compact(index);
    this.#logger.info('built the thread summary index from the thread files', { dir: this.#dir, threads: index.size, ms: this.#now() - started });
    return index;
  }

  /** The thread ids of the files in the folder; undefined when there is no folder. */
  async #threadIds(): Promise<string[] | undefined> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    return names.flatMap((name) => {
      if (!name.endsWith(FILE_SUFFIX)) return [];
      const threadId = name.slice(0, -FILE_SUFFIX.length);
      return THREAD_ID_PATTERN.test(threadId) ? [threadId] : [];
    });
  }

  /** The index with what changed since the last listing applied. */
  async #refreshed(): Promise<SummaryIndex> {
    const index = await this.#open();
    const { records, damaged } = this.#files.readLog();
    for (const record of records) this.#apply(index, record);
    if (damaged > 0) {
      this.#logger.warn('skipped damaged records of the thread summary index log (a write torn by a crash?); checking every thread file', { dir: this.#dir, records: damaged });
      void this.#startScan(index);
    }
    if (this.#watcher === undefined) {
      const now = this.#now();
      if (this.#watchTriedAt === undefined || now - this.#watchTriedAt >= RESCAN_INTERVAL_MS) this.#watch();
      if (this.#watcher === undefined && (this.#scannedAt === undefined || now - this.#scannedAt >= RESCAN_INTERVAL_MS)) void this.#startScan(index);
    }
    if (this.#suspects.size > 0) {
      const suspects = [...this.#suspects];
      this.#suspects.clear();
      await mapBounded(suspects, REBUILD_CONCURRENCY, (threadId) => this.#check(index, threadId));
    }
    if (this.#files.wantsCompaction && this.#compaction === undefined) {
      this.#compaction = this.#compact(index).finally(() => {
        this.#compaction = undefined;
      });
    }
    return index;
  }

  /** Applies a record another process (or this one) appended to the log. */
  #apply(index: SummaryIndex, record: LogRecord): void {
    if (record.op === 'put') {
      const current = index.get(record.entry.threadId);
      const known = current === undefined ? undefined : detailOf(current)?.file;
      // Records arrive in the order they were written, but this process may have folded the
      // file further already: the later state of the file wins.
      const file = detailOf(record.entry)?.file;
      if (file === undefined) return;
      if (known === undefined || file.mtimeMs > known.mtimeMs || (file.mtimeMs === known.mtimeMs && file.size > known.size)) index.set(record.entry);
      return;
    }
    if (record.op === 'starting') {
      this.#starting.set(record.threadId, record.file);
      return;
    }
    if (record.op === 'removed') this.#starting.delete(record.threadId);
    // A change the writer could not fold, or a thread that left: its file says what is true.
    const current = index.get(record.threadId);
    if (record.op === 'removed' || current === undefined || !sameFile(current, record.file)) this.#suspects.add(record.threadId);
  }

  /** Brings the thread's entry in line with its file: folded again when it changed, removed when it is gone. */
  async #check(index: SummaryIndex, threadId: string): Promise<IndexEntry | undefined> {
    const now = this.#statOf(threadId);
    const entry = index.get(threadId);
    if (now === undefined) {
      index.delete(threadId);
      return undefined;
    }
    if (entry !== undefined && sameFile(entry, now)) return entry;
    const fresh = await this.#refold(index, threadId);
    // Written behind the index's back (a crash before its record, another program): recorded for
    // the next start. Only items appended (by a turn another process runs) change no summary.
    if (fresh !== undefined && (entry === undefined || summaryText(entry) !== summaryText(fresh))) this.#recordWrite(() => [{ op: 'put', entry: fresh }]);
    return fresh;
  }

  /** Folds the thread's file again (from where its entry stopped, when it only grew) in the thread's queue. */
  #refold(index: SummaryIndex, threadId: string): Promise<IndexEntry | undefined> {
    return this.#serialize(threadId, async () => {
      const entry = await this.#fold(threadId, index.get(threadId));
      if (entry === undefined) index.delete(threadId);
      else index.set(entry);
      return entry;
    });
  }

  /**
   * The entry of the thread's file: folded on from `from` when the file is the same one and only
   * grew, else from its start; one that does not read back holds the error. Undefined without a file.
   */
  async #fold(threadId: string, from: IndexEntry | undefined): Promise<IndexEntry | undefined> {
    const path = this.#pathOf(threadId);
    let stamp: FileStamp = { ino: 0, size: 0, mtimeMs: 0 };
    try {
      const handle = await openIfExists(path);
      if (handle === undefined) return undefined;
      try {
        const info = await handle.stat();
        stamp = info;
        const detail = from === undefined ? undefined : detailOf(from);
        const body = detail?.body;
        const resume =
          detail !== undefined && body !== undefined && !('error' in body) && detail.file.ino === info.ino && body.offset <= info.size ? { ino: info.ino, ...body } : undefined;
        const { state } = await foldSummary(handle, path, threadId, info.ino, resume);
        const { ino: _ino, ...folded } = state;
        return entryOf(threadId, info, folded);
      } finally {
        await handle.close();
      }
    } catch (error) {
      return entryOf(threadId, stamp, { error: errorMessage(error) });
    }
  }

  /** Watches the folder for writes to thread files (by anyone); where it cannot, listings fall back to periodic checks. */
  #watch(): void {
    this.#watchTriedAt = this.#now();
    if (this.#closed || this.#watcher !== undefined) return;
    try {
      const watcher = watch(this.#dir, (_event, name) => {
        if (name === null || !name.endsWith(FILE_SUFFIX)) return;
        const threadId = name.slice(0, -FILE_SUFFIX.length);
        if (!THREAD_ID_PATTERN.test(threadId)) return;
        if (this.#suspects.size < MAX_SUSPECTS) this.#suspects.add(threadId);
        else {
          // Too much changed to check one by one: check everything instead.
          this.#suspects.clear();
          this.#scannedAt = undefined;
          if (this.#index !== undefined) void this.#startScan(this.#index);
        }
      });
      // Watching must not keep the process alive, and a watcher error only ends watching.
      watcher.unref();
      watcher.on('error', (error) => {
        this.#logger.warn('stopped watching the threads folder; listings check every file now and then instead', { dir: this.#dir, error: errorMessage(error) });
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = undefined;
      });
      this.#watcher = watcher;
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT')
        this.#logger.debug('cannot watch the threads folder; listings check every file now and then instead', { dir: this.#dir, error: errorMessage(error) });
    }
  }

  /** Starts checking every file against the index in the background, unless a check is under way. */
  #startScan(index: SummaryIndex): Promise<void> {
    clearTimeout(this.#scanTimer);
    this.#scan ??= this.#scanAll(index)
      .catch((error: unknown) => {
        this.#logger.warn('cannot check the thread files against the summary index', { dir: this.#dir, error: errorMessage(error) });
      })
      .finally(() => {
        this.#scan = undefined;
      });
    return this.#scan;
  }

  /** Checks every file against the index; what it repairs is also written to the index log, for the next start. */
  async #scanAll(index: SummaryIndex): Promise<void> {
    const started = this.#now();
    const ids = (await this.#threadIds()) ?? [];
    let repaired = 0;
    // Synchronous stats in slices: a fraction of the CPU of one asynchronous stat per file.
    for (let start = 0; start < ids.length && !this.#closed; start += SCAN_SLICE) {
      const changed = ids.slice(start, start + SCAN_SLICE).filter((threadId) => {
        const now = this.#statOf(threadId);
        const entry = index.get(threadId);
        return now !== undefined && (entry === undefined || !sameFile(entry, now));
      });
      for (const threadId of changed) {
        const fresh = await this.#refold(index, threadId);
        if (fresh === undefined) continue;
        repaired += 1;
        this.#recordWrite(() => [{ op: 'put', entry: fresh }]);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const present = new Set(ids);
    for (const entry of [...index.entries()]) {
      if (this.#closed || present.has(entry.threadId)) continue;
      // Created after the folder was read, or gone.
      if (this.#statOf(entry.threadId) !== undefined) continue;
      index.delete(entry.threadId);
      repaired += 1;
      this.#recordWrite(() => [{ op: 'removed', threadId: entry.threadId }]);
    }
    if (!this.#closed) this.#scannedAt = started;
    if (repaired > 0) this.#logger.info('repaired the thread summary index from the thread files', { dir: this.#dir, threads: repaired });
  }

  /** Writes the index as a new snapshot (after applying the log); a failure is logged, the index in memory stays right. */
  async #compact(index: SummaryIndex): Promise<void> {
    try {
      const { records } = this.#files.readLog();
      for (const record of records) this.#apply(index, record);
      await this.#files.compact(index.entries());
    } catch (error) {
      this.#logger.warn('cannot write the thread summary index; the next start checks the thread files instead', { dir: this.#dir, error: errorMessage(error) });
    }
  }
}
