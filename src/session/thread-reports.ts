import { z } from 'zod';
import type { LeaseHolder, ThreadListEntry, ThreadState, ThreadStatus } from '../protocol/status.js';
import { THREAD_ID_PATTERN } from '../protocol/thread.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { parseJsonAs } from '../util/json.js';
import { findTurn, latest, storedTurns, unfinishedTurn } from './live-turn.js';
import type { Thread } from './thread-table.js';
import { comesBefore, compareListPositions, type LoadedThread, type ThreadListPosition, type ThreadSummary, type ThreadSummaryPage } from './thread-store.js';

/**
 * The status tools' reports (`codex-status`, `thread/list`) of threads in memory and in the
 * store, without side effects.
 */

/** A loaded thread's state. */
export function stateOf(thread: Thread): ThreadState {
  const current = thread.live[0];
  if (current !== undefined) return current.state === 'waiting-for-approval' ? 'waiting-for-approval' : 'running';
  return thread.finished[thread.finished.length - 1]?.status === 'failed' ? 'failed' : 'idle';
}

/** A loaded thread's status; with `turnId`, also that turn's (a not-found error when it is unknown). */
export function loadedStatus(thread: Thread, turnId: string | undefined): ThreadStatus {
  const current = thread.live[0];
  const report: ThreadStatus = {
    threadId: thread.id,
    status: stateOf(thread),
    createdAt: thread.createdAt,
    lastActivity: latest(thread.lastActivity, current?.lastEventAt),
    environments: thread.sticky,
    lastAgentMessage: thread.lastAgentMessage,
    currentTurn: current?.snapshot() ?? null,
    queuedTurns: Math.max(0, thread.live.length - 1),
    lastTurn: thread.finished[thread.finished.length - 1] ?? null,
    context: thread.engine.context(),
    plan: thread.plan,
    instructions: thread.instructions,
  };
  if (turnId !== undefined) report.turn = thread.live.find((turn) => turn.turnId === turnId)?.snapshot() ?? findTurn(thread.id, turnId, thread.finished);
  return report;
}

/**
 * A stored thread's status, read from its records without loading it (no settings resolved, no
 * crash repair): `elsewhere` is the other owner that may be running its open turn.
 */
export function storedStatus(threadId: string, loaded: LoadedThread, elsewhere: LeaseHolder | undefined, turnId: string | undefined): ThreadStatus {
  const turns = storedTurns(loaded.records);
  let sticky = loaded.header.environments;
  for (const record of loaded.records) if (record.type === 'environments_changed') sticky = record.environments;
  const runningElsewhere = elsewhere !== undefined && turns.open !== undefined ? { ...elsewhere, turnId: turns.open.turnId } : undefined;
  const finished =
    turns.open === undefined || runningElsewhere !== undefined
      ? turns.finished
      : [...turns.finished, unfinishedTurn(turns.open.turnId, turns.lastActivity ?? loaded.header.createdAt)];
  const lastTurn = finished[finished.length - 1] ?? null;
  const report: ThreadStatus = {
    threadId,
    status: runningElsewhere !== undefined ? 'running' : lastTurn?.status === 'failed' ? 'failed' : 'idle',
    createdAt: loaded.header.createdAt,
    lastActivity: turns.lastActivity ?? loaded.header.createdAt,
    environments: sticky,
    lastAgentMessage: turns.lastAgentMessage,
    currentTurn: null,
    queuedTurns: 0,
    lastTurn,
    context: { tokens: null, autoCompactTokenLimit: null, compactions: loaded.records.filter((record) => record.type === 'compacted').length },
    plan: turns.plan,
    instructions: turns.instructions,
    ...(runningElsewhere === undefined ? {} : { runningElsewhere }),
  };
  if (turnId !== undefined && turnId !== runningElsewhere?.turnId) report.turn = findTurn(threadId, turnId, finished);
  return report;
}

/**
 * The threads not listed from the store's index, most recent activity first: the loaded ones from
 * memory (unless another owner runs them now, and memory is behind), those another owner holds
 * from their summaries read just now (`fresh`), and those another owner holds whose records could
 * not be read just now.
 */
export function listEntries(loaded: Iterable<Thread>, fresh: readonly ThreadSummary[], elsewhere: ReadonlyMap<string, LeaseHolder>): ThreadListEntry[] {
  const entries = new Map<string, ThreadListEntry>();
  for (const thread of loaded) {
    if (elsewhere.has(thread.id)) continue;
    const current = thread.live[0];
    entries.set(thread.id, {
      threadId: thread.id,
      createdAt: thread.createdAt,
      lastActivity: latest(thread.lastActivity, current?.lastEventAt),
      status: stateOf(thread),
      environments: thread.sticky,
      currentTurnId: current?.turnId ?? null,
      preview: thread.preview ?? null,
    });
  }
  for (const summary of fresh) if (!entries.has(summary.threadId)) entries.set(summary.threadId, storedEntry(summary, elsewhere.get(summary.threadId)));
  for (const [threadId, holder] of elsewhere) {
    if (!entries.has(threadId))
      entries.set(threadId, {
        threadId,
        createdAt: null,
        lastActivity: holder.since,
        status: 'running',
        environments: [],
        currentTurnId: null,
        preview: null,
        runningElsewhere: holder,
      });
  }
  return [...entries.values()].sort((a, b) => compareListPositions(positionOf(a), positionOf(b)));
}

/** A stored thread as listed; `holder` is the other owner running it, if any. */
export function storedEntry(summary: ThreadSummary, holder: LeaseHolder | undefined): ThreadListEntry {
  const ok = summary.error === undefined ? summary : undefined;
  return {
    threadId: summary.threadId,
    createdAt: ok?.createdAt ?? null,
    lastActivity: summary.updatedAt,
    status: holder !== undefined ? 'running' : ok === undefined || ok.lastStatus === 'failed' ? 'failed' : 'idle',
    environments: ok?.environments ?? [],
    currentTurnId: holder !== undefined && ok?.lastStatus === 'incomplete' ? (ok.lastTurnId ?? null) : null,
    preview: ok?.preview ?? null,
    ...(holder === undefined ? (ok === undefined ? { error: summary.error } : {}) : { runningElsewhere: holder }),
  };
}

/** An entry's place in the list order. */
function positionOf(entry: ThreadListEntry): ThreadListPosition {
  return { updatedAt: entry.lastActivity, threadId: entry.threadId };
}

/** One page of `thread/list`. */
export interface ThreadListPage {
  threads: ThreadListEntry[];
  /** Threads matching the filter on every page. */
  total: number;
  /** Where the next page starts (pass it as `cursor`); undefined on the last page. */
  nextCursor: string | undefined;
}

/**
 * Merges one page: `listed` (every matching thread listed from memory or its other owner, in list
 * order) with a page of the store's other threads taken after the same position. The page ends
 * where either source would need more than it gave.
 */
export function mergePage(listed: readonly ThreadListEntry[], stored: ThreadSummaryPage, after: ThreadListPosition | undefined, limit: number): ThreadListPage {
  const fromListed = after === undefined ? listed : listed.filter((entry) => comesBefore(after, positionOf(entry)));
  const merged = [...fromListed, ...stored.summaries.map((summary) => storedEntry(summary, undefined))].sort((a, b) => compareListPositions(positionOf(a), positionOf(b)));
  const threads = merged.slice(0, limit);
  const last = threads[threads.length - 1];
  const more = merged.length > limit || stored.next !== undefined;
  return { threads, total: listed.length + stored.total, nextCursor: more && last !== undefined ? encodeListCursor(positionOf(last)) : undefined };
}

const CursorSchema = z.object({ u: z.string().min(1), t: z.string().regex(THREAD_ID_PATTERN) });

/** A position as an opaque `thread/list` cursor. */
function encodeListCursor(position: ThreadListPosition): string {
  return Buffer.from(JSON.stringify({ u: position.updatedAt, t: position.threadId } satisfies z.input<typeof CursorSchema>)).toString('base64url');
}

/** The position a `thread/list` cursor stands for; a LocalError `INVALID_ARGUMENT` when it is not one this server gave. */
export function decodeListCursor(cursor: string): ThreadListPosition {
  const parsed = parseJsonAs(CursorSchema, Buffer.from(cursor, 'base64url').toString('utf8')).value;
  if (parsed === undefined)
    throw new LocalError(LocalErrorCode.InvalidArgument, `invalid cursor ${JSON.stringify(cursor.slice(0, 100))}: pass the nextCursor of a previous answer unchanged`);
  return { updatedAt: parsed.u, threadId: parsed.t };
}
