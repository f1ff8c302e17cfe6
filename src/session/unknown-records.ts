import { THREAD_RECORD_VERSION } from '../protocol/thread.js';
import type { Logger } from '../util/logger.js';

/**
 * Forward compatibility of stored threads. During a rolling upgrade a newer version may append
 * records of a kind this one does not know to a thread this one also reads. Such a record (a
 * well-formed record: an object with a string `type`) is left where it is and the thread is used
 * without it, with one warning for the thread; a record of a known kind that does not validate
 * still fails the thread, since leaving it out would change what the thread means.
 */

/** Positions named per kind in a warning; the rest are counted. */
const MAX_POSITIONS_NAMED = 3;
/** Threads whose warning a store remembers having logged; the least recently warned are forgotten beyond. */
export const MAX_WARNED_THREADS = 4096;

/** The records of unknown kinds met while reading one thread, and the format version of its header. */
export class UnknownRecords {
  readonly #positions = new Map<string, { count: number; named: string[] }>();
  #total = 0;
  #formatVersion = THREAD_RECORD_VERSION;

  /** A record of kind `type` this version does not know, at `position` (`line 7`, `record 7`). */
  add(type: string, position: string): void {
    const seen = this.#positions.get(type) ?? { count: 0, named: [] };
    seen.count += 1;
    if (seen.named.length < MAX_POSITIONS_NAMED) seen.named.push(position);
    this.#positions.set(type, seen);
    this.#total += 1;
  }

  /** The format version the thread's header names. */
  formatVersion(version: number): void {
    this.#formatVersion = version;
  }

  /**
   * The thread's one warning, naming `where` it is stored; undefined when nothing was skipped and
   * the header's format is not newer than this version's.
   */
  warning(where: string): string | undefined {
    const newer = this.#formatVersion > THREAD_RECORD_VERSION ? ` (format version ${this.#formatVersion}; this is ${THREAD_RECORD_VERSION})` : '';
    if (this.#total === 0) {
      return newer === '' ? undefined : `${where} was written by a newer version${newer}; records of kinds this version does not know are skipped`;
    }
    const kinds = [...this.#positions].map(([type, { count, named }]) => `"${type}" at ${named.join(', ')}${count > named.length ? ` and ${count - named.length} more` : ''}`);
    const records = this.#total === 1 ? '1 record' : `${this.#total} records`;
    return `skipped ${records} of kinds this version does not know in ${where}: ${kinds.join('; ')}. A newer version wrote them${newer}; they stay stored, and the thread is used without them`;
  }

  /** What {@link WarnedThreads} compares: a thread is warned about again only when this changes. */
  get key(): string {
    return `${this.#formatVersion}:${[...this.#positions.keys()].join('\0')}`;
  }
}

/**
 * Logs a thread's unknown-record warning once, however often the thread is loaded (every status
 * poll loads it): again only when the thread gains a kind not warned about yet.
 */
export class WarnedThreads {
  readonly #warned = new Map<string, string>();
  readonly #logger: Logger;
  readonly #max: number;

  /** @param max threads remembered. @default MAX_WARNED_THREADS */
  constructor(logger: Logger, max = MAX_WARNED_THREADS) {
    this.#logger = logger;
    this.#max = max;
  }

  /** Logs `unknown`'s warning for `threadId` unless it was logged already; returns the warning. */
  warn(threadId: string, unknown: UnknownRecords, where: string): string | undefined {
    const warning = unknown.warning(where);
    if (warning === undefined) return undefined;
    const key = unknown.key;
    if (this.#warned.get(threadId) !== key) {
      this.#logger.warn(warning, { thread: threadId });
      this.#warned.delete(threadId);
      this.#warned.set(threadId, key);
      for (const oldest of this.#warned.keys()) {
        if (this.#warned.size <= this.#max) break;
        this.#warned.delete(oldest);
      }
    }
    return warning;
  }
}
