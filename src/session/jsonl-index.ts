import { z } from 'zod';
import { THREAD_ID_PATTERN, ThreadEnvironmentSchema } from '../protocol/thread.js';
import { parseJsonAs } from '../util/json.js';
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
 *   TAB size TAB mtimeMs TAB body-JSON` (state: 0; 1 when the last turn failed or the file does
 *   not read back; 2 when the last turn has no completion record); loading it takes each line's
 *   thread id, time and state and leaves the rest unparsed until a page shows it or its file is
 *   checked;
 * - `summaries.log`: what changed since, appended by every server process sharing the folder
 *   (`+ TAB entry`, `? TAB threadId TAB ino TAB size TAB mtimeMs` for a change the writer could not
 *   fold, `o TAB threadId TAB ino TAB size TAB mtimeMs` for a turn starting in a file still of
 *   that stamp, `- TAB threadId` for an archived thread). The snapshot's header names the log (its inode)
 *   and how much of it the snapshot holds; compaction writes a new snapshot and starts a new log.
 *
 * Nothing here needs a lock: a log record lost to a race (written to a log another process just
 * replaced, or torn by a crash) only leaves an entry stale, which its stamp gives away. This
 * module has the entries and the index in memory; `jsonl-index-files.ts` the files.
 */

/** An ISO timestamp as `Date.toISOString` writes it (the list order compares them as strings). */
export const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

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

/** A file stamp from its three fields; undefined when they are not numbers. */
export function stampOf(ino: string | undefined, size: string | undefined, mtimeMs: string | undefined): FileStamp | undefined {
  const stamp = { ino: Number(ino), size: Number(size), mtimeMs: Number(mtimeMs) };
  return Number.isFinite(stamp.ino) && Number.isSafeInteger(stamp.size) && stamp.size >= 0 && Number.isFinite(stamp.mtimeMs) ? stamp : undefined;
}
