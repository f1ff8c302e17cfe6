import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { InterruptRequestSchema, LeaseHolderSchema, type InterruptRequest, type LeaseHolder } from '../protocol/status.js';
import { THREAD_ID_PATTERN } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { parseJsonAs } from '../util/json.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { ThreadBusyError, type ThreadOwnership } from './ownership.js';

/** How a thread's lease file is named: `<threadId>.lease` beside `<threadId>.jsonl`. */
const LEASE_SUFFIX = '.lease';

/** Tries to take a lease before giving up (each failed try found a stale lease or a takeover going on). */
const TAKEOVER_ATTEMPTS = 20;

/** Pause before trying again while another process takes over a stale lease. */
const TAKEOVER_RETRY_MS = 5;

/** How an interrupt request file is named: `<threadId>.interrupt`. */
const INTERRUPT_SUFFIX = '.interrupt';

/** How an answer notice is named: `<threadId>.answer` (a client answered a task input of the thread; the answer is in its records). */
const ANSWER_SUFFIX = '.answer';

/** How often a lease holder looks for interrupt requests and answer notices besides watching for them. */
const INTERRUPT_POLL_MS = 1_000;

/** How often a wait for another process's turn looks at the thread's lease besides watching it. */
const LEASE_POLL_MS = 100;

/** What /proc/PID/stat says about a process: its state (field 3) and start time in clock ticks since boot (field 22). */
interface ProcStat {
  state: string;
  startTicks: number | undefined;
}

/** Reads /proc/PID/stat; undefined where it cannot be read (no /proc, an entry hidden by `hidepid`, a pid gone). */
function procStatOf(pid: number | 'self'): ProcStat | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces; fields 3… follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[19]);
  return { state: fields[0] ?? '', startTicks: Number.isSafeInteger(ticks) ? ticks : undefined };
}

/**
 * States of a process that has ended: `Z` (a zombie: exited, waiting for its parent to reap it,
 * which a parent that never waits, such as a container's pid 1 without an init, never does) and
 * `X`/`x` (being reaped). Such a process still answers signal 0 but never writes again.
 */
const ENDED_STATES = new Set(['Z', 'X', 'x']);

/** Removes a file of our own (a draft, a takeover guard); one already gone is fine. */
function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already removed.
  }
}

/**
 * Whether `holder` (on this host) is still running: its pid answers signal 0, it has not ended
 * (a zombie holds no lease) and, where known, it started when the lease says. When /proc cannot
 * tell, the signal's answer stands: a live holder must never lose its lease to a guess.
 */
function isRunning(holder: LeaseHolder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStatOf(holder.pid);
  if (stat === undefined) return true;
  if (ENDED_STATES.has(stat.state)) return false;
  return holder.startTicks === undefined || stat.startTicks === undefined || stat.startTicks === holder.startTicks;
}

/** See {@link ThreadLeases.watchLease}. */
export interface LeaseWatch {
  /** Resolves at the lease file's next change, after `ms`, or when `signal` aborts. */
  next(ms: number, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/**
 * Cross-process ownership of thread files. A process writes a thread only while it holds the
 * thread's lease, a file created atomically (a hard link of a complete temporary file, which fails
 * when the lease exists). The lease names its holder; one whose process is gone (a crash, a kill)
 * is taken over. Leases on another host (a shared threads folder) are never judged stale.
 *
 * Taking and giving back a lease happens at every turn, so it uses synchronous calls: a handful
 * of metadata operations on a tiny file cost microseconds, while each asynchronous one would cost
 * a round trip through libuv's thread pool.
 *
 * The {@link ThreadOwnership} of server processes sharing one threads folder on one machine (or
 * a shared folder, where only this host's holders can be judged).
 */
export class ThreadLeases implements ThreadOwnership {
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #self: LeaseHolder;
  /** The threads whose lease this process holds. */
  readonly #held = new Set<string>();
  #dirReady = false;
  #onInterrupt: ((threadId: string, request: InterruptRequest) => void) | undefined;
  #onAnswer: ((threadId: string) => void) | undefined;
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;

  /**
   * @param options.dir the threads folder
   * @param options.onInterrupt called when another process asks to stop a turn of a thread this
   *   process holds (see {@link ThreadLeases.requestInterrupt}); without it, nobody watches
   */
  constructor(options: { dir: string; logger?: Logger; onInterrupt?: (threadId: string, request: InterruptRequest) => void }) {
    this.#dir = options.dir;
    this.#logger = options.logger ?? silentLogger;
    this.#onInterrupt = options.onInterrupt;
    const startTicks = procStatOf('self')?.startTicks;
    this.#self = { pid: process.pid, host: hostname(), ...(startTicks === undefined ? {} : { startTicks }), since: new Date().toISOString() };
  }

  /**
   * Takes the thread's lease for this process (a no-op when it holds it). Rejects with
   * {@link ThreadBusyError} when another live process holds it.
   */
  async acquire(threadId: string): Promise<undefined> {
    if (this.#held.has(threadId)) return;
    const path = this.#pathOf(threadId);
    if (!this.#dirReady) {
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
      this.#dirReady = true;
      this.#watch();
    }
    // A request left from an earlier turn must not stop the next one. Looked for first: there is
    // almost never one, and a failed unlink builds an ENOENT error (tens of microseconds a turn).
    const leftover = this.#pathOf(threadId, INTERRUPT_SUFFIX);
    if (existsSync(leftover)) removeQuietly(leftover);
    const draft = join(this.#dir, `.${threadId}.${randomUUID()}.tmp`);
    // The nonce makes every lease's text unique, which is how a stale one is recognized.
    writeFileSync(draft, JSON.stringify({ ...this.#self, since: new Date().toISOString(), nonce: randomUUID() }), { mode: 0o600 });
    try {
      for (let attempt = 0; attempt < TAKEOVER_ATTEMPTS; attempt += 1) {
        try {
          linkSync(draft, path);
          this.#held.add(threadId);
          return;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        }
        const current = await this.#read(path);
        if (current === undefined) continue;
        if (current.holder !== undefined && (current.holder.host !== this.#self.host || isRunning(current.holder))) {
          const remote = current.holder.host !== this.#self.host ? `if that host is gone for good, remove ${path}` : undefined;
          throw new ThreadBusyError(threadId, current.holder, remote);
        }
        await this.#removeStale(path, current.text, draft);
      }
      throw new LocalError(LocalErrorCode.Busy, `thread ${threadId}: its lease ${path} keeps changing hands; try again`);
    } finally {
      removeQuietly(draft);
    }
  }

  /** Gives the thread's lease back (a no-op when this process does not hold it). */
  release(threadId: string): void {
    if (!this.#held.delete(threadId)) return;
    try {
      unlinkSync(this.#pathOf(threadId));
    } catch (error) {
      this.#logger.warn('cannot remove a thread lease', { thread: threadId, error: errorMessage(error) });
    }
  }

  /**
   * Watches the thread's lease file for whoever waits on another process's turn: `next(ms)`
   * resolves at the next change of the file (taken or given back) or after `ms`, whichever comes
   * first, so a wait ends as soon as the turn does; without file events (some shared folders) it
   * is a plain poll. `close` when done.
   */
  watchLease(threadId: string): LeaseWatch {
    const name = `${threadId}${LEASE_SUFFIX}`;
    let changed = false;
    let wake: (() => void) | undefined;
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(this.#dir, (_event, file) => {
        if (file !== name) return;
        changed = true;
        wake?.();
      });
      watcher.unref();
      watcher.on('error', () => watcher?.close());
    } catch (error) {
      this.#logger.debug('cannot watch a thread lease; polling it', { thread: threadId, error: errorMessage(error) });
    }
    return {
      next: (ms, signal) => {
        if (changed || signal?.aborted === true) {
          changed = false;
          return Promise.resolve();
        }
        return new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', done);
            wake = undefined;
            changed = false;
            resolve();
          };
          const timer = setTimeout(done, ms);
          signal?.addEventListener('abort', done, { once: true });
          wake = done;
        });
      },
      close: () => watcher?.close(),
    };
  }

  /**
   * Resolves true once no other process holds the thread's lease (its turn there ended), false
   * after `timeoutMs` or when `signal` aborts. Another process's turn cannot be awaited directly,
   * so its lease file is watched (and looked at every LEASE_POLL_MS, for missed file events).
   */
  async waitReleased(threadId: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const lease = this.watchLease(threadId);
    try {
      for (;;) {
        if ((await this.holderElsewhere(threadId)) === undefined) return true;
        const left = deadline - Date.now();
        // An aborted wait just ends the wait (false), as settlesWithin does.
        if (left <= 0 || signal?.aborted === true) return false;
        await lease.next(Math.min(LEASE_POLL_MS, left), signal);
      }
    } finally {
      lease.close();
    }
  }

  /** Sets who stops a turn when another process asks; watching starts with the next lease taken. */
  onInterrupt(handler: (threadId: string, request: InterruptRequest) => void): void {
    this.#onInterrupt = handler;
    if (this.#dirReady) this.#watch();
  }

  /** Sets who reads the answers another process announced (see {@link ThreadLeases.announceAnswer}); watching starts with the next lease taken. */
  onAnswer(handler: (threadId: string) => void): void {
    this.#onAnswer = handler;
    if (this.#dirReady) this.#watch();
  }

  /**
   * Tells the process holding the thread's lease that a client answered a task input of the
   * thread: a notice file it watches (as for interrupt requests), removed once seen. Notices of
   * several answers may fold into one: the holder reads every answer in the records.
   */
  announceAnswer(threadId: string): void {
    this.#writeNotice(this.#pathOf(threadId, ANSWER_SUFFIX), threadId, new Date().toISOString());
  }

  /** Gives back every lease this process holds and stops watching for interrupt requests. */
  releaseAll(): void {
    for (const threadId of [...this.#held]) this.release(threadId);
    this.#watcher?.close();
    this.#watcher = undefined;
    clearInterval(this.#poll);
    this.#poll = undefined;
  }

  /**
   * Asks the process holding the thread's lease to stop the turn `turnId`: a request file it
   * watches (written whole, then renamed into place). Its holder removes it once seen.
   */
  requestInterrupt(threadId: string, request: InterruptRequest): void {
    this.#writeNotice(this.#pathOf(threadId, INTERRUPT_SUFFIX), threadId, JSON.stringify(request));
  }

  /** Writes a request or notice file whole, then renames it into place (its reader never sees half of it). */
  #writeNotice(path: string, threadId: string, text: string): void {
    const draft = join(this.#dir, `.${threadId}.${randomUUID()}.tmp`);
    writeFileSync(draft, text, { mode: 0o600 });
    try {
      renameSync(draft, path);
    } catch (error) {
      removeQuietly(draft);
      throw error;
    }
  }

  /**
   * Watches the folder for interrupt requests addressed to threads this process holds, and looks
   * for them every INTERRUPT_POLL_MS too: file events can be missed (an overflowing inotify queue)
   * or never come (a folder shared over NFS, where the requester may be another host).
   */
  #watch(): void {
    if ((this.#onInterrupt === undefined && this.#onAnswer === undefined) || this.#watcher !== undefined) return;
    this.#poll ??= setInterval(() => {
      for (const threadId of this.#held) {
        this.#takeInterrupt(threadId);
        this.#takeAnswer(threadId);
      }
    }, INTERRUPT_POLL_MS).unref();
    try {
      this.#watcher = watch(this.#dir, (_event, name) => {
        if (name === null) return;
        if (name.endsWith(INTERRUPT_SUFFIX)) {
          const threadId = name.slice(0, -INTERRUPT_SUFFIX.length);
          if (this.#held.has(threadId)) this.#takeInterrupt(threadId);
        } else if (name.endsWith(ANSWER_SUFFIX)) {
          const threadId = name.slice(0, -ANSWER_SUFFIX.length);
          if (this.#held.has(threadId)) this.#takeAnswer(threadId);
        }
      });
      // Watching must not keep the process alive, and a watcher error only ends watching.
      this.#watcher.unref();
      this.#watcher.on('error', (error) => {
        this.#logger.warn('stopped watching for interrupt requests', { dir: this.#dir, error: errorMessage(error) });
        this.#watcher = undefined;
      });
    } catch (error) {
      this.#logger.warn('cannot watch for interrupt requests from other server processes', { dir: this.#dir, error: errorMessage(error) });
    }
  }

  /** Takes the thread's answer notice, if any, and hands the thread to whoever reads answers. */
  #takeAnswer(threadId: string): void {
    const path = this.#pathOf(threadId, ANSWER_SUFFIX);
    // Looked for as often as interrupt requests, and as rarely there (see #takeInterrupt).
    if (!existsSync(path)) return;
    removeQuietly(path);
    this.#onAnswer?.(threadId);
  }

  #takeInterrupt(threadId: string): void {
    const onInterrupt = this.#onInterrupt;
    if (onInterrupt === undefined) return;
    const path = this.#pathOf(threadId, INTERRUPT_SUFFIX);
    // Asked for every held thread every INTERRUPT_POLL_MS, and almost always absent: existsSync
    // answers without building the ENOENT error a failed read throws (tens of microseconds each).
    if (!existsSync(path)) return;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return;
    }
    removeQuietly(path);
    const request = parseJsonAs(InterruptRequestSchema, text).value;
    if (request === undefined) {
      this.#logger.warn('ignoring a malformed interrupt request', { path, text: text.slice(0, 200) });
      return;
    }
    onInterrupt(threadId, request);
  }

  /** The live process other than this one that holds the thread's lease, if any. */
  async holderElsewhere(threadId: string): Promise<LeaseHolder | undefined> {
    if (this.#held.has(threadId)) return undefined;
    const current = await this.#read(this.#pathOf(threadId));
    const holder = current?.holder;
    if (holder === undefined) return undefined;
    return holder.host !== this.#self.host || isRunning(holder) ? holder : undefined;
  }

  /**
   * Every thread another live process holds the lease of; with `among`, only those of these
   * threads (their lease files are read, not the folder, which may hold 100,000 thread files).
   */
  async heldElsewhere(among?: Iterable<string>): Promise<Map<string, LeaseHolder>> {
    let threadIds: Iterable<string>;
    if (among !== undefined) threadIds = among;
    else {
      let names: string[];
      try {
        names = await readdir(this.#dir);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
        throw error;
      }
      threadIds = names.flatMap((name) => {
        const threadId = name.slice(0, -LEASE_SUFFIX.length);
        return name.endsWith(LEASE_SUFFIX) && THREAD_ID_PATTERN.test(threadId) ? [threadId] : [];
      });
    }
    const held = new Map<string, LeaseHolder>();
    for (const threadId of threadIds) {
      if (!THREAD_ID_PATTERN.test(threadId)) continue;
      const holder = await this.holderElsewhere(threadId);
      if (holder !== undefined) held.set(threadId, holder);
    }
    return held;
  }

  #pathOf(threadId: string, suffix = LEASE_SUFFIX): string {
    if (!THREAD_ID_PATTERN.test(threadId)) throw new LocalError(LocalErrorCode.InvalidArgument, `invalid thread id ${JSON.stringify(threadId)}`);
    return join(this.#dir, `${threadId}${suffix}`);
  }

  /** The lease file's text and holder (undefined holder: unreadable, e.g. damaged); undefined when there is none. */
  async #read(path: string): Promise<{ text: string; holder: LeaseHolder | undefined } | undefined> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    return { text, holder: parseJsonAs(LeaseHolderSchema, text).value };
  }

  /**
   * Removes a lease whose holder is gone, unless it changed meanwhile. Takers of a stale lease
   * go one at a time (through a `.takeover` file made like a lease): one that read the stale lease
   * before another replaced it must not remove the new one.
   */
  async #removeStale(path: string, staleText: string, draft: string): Promise<void> {
    const guard = `${path}.takeover`;
    try {
      linkSync(draft, guard);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const taker = await this.#read(guard);
      // A taker that died mid-takeover would block the thread for good.
      if (taker !== undefined && (taker.holder === undefined || !isRunning(taker.holder))) removeQuietly(guard);
      else await new Promise((resolve) => setTimeout(resolve, TAKEOVER_RETRY_MS));
      return;
    }
    try {
      const current = await this.#read(path);
      if (current?.text !== staleText) return;
      unlinkSync(path);
      this.#logger.info('took over the lease of a thread whose process is gone', { lease: path, previous: staleText });
    } finally {
      removeQuietly(guard);
    }
  }
}
