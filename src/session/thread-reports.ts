import type { LeaseHolder, ThreadListEntry, ThreadState, ThreadStatus } from '../protocol/status.js';
import { findTurn, latest, storedTurns, unfinishedTurn } from './live-turn.js';
import type { Thread } from './thread-table.js';
import type { LoadedThread, ThreadSummary } from './thread-store.js';

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
  const finished = turns.open === undefined || runningElsewhere !== undefined ? turns.finished : [...turns.finished, unfinishedTurn(turns.open.turnId, turns.lastActivity ?? loaded.header.createdAt)];
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
 * Every thread, most recent activity first: the loaded ones from memory (unless another owner
 * runs them now, and memory is behind), the others from their stored summaries, and those another
 * owner holds whose records could not be read just now.
 */
export function listEntries(loaded: Iterable<Thread>, stored: readonly ThreadSummary[], elsewhere: ReadonlyMap<string, LeaseHolder>): ThreadListEntry[] {
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
  for (const summary of stored) {
    if (entries.has(summary.threadId)) continue;
    const holder = elsewhere.get(summary.threadId);
    const ok = summary.error === undefined ? summary : undefined;
    entries.set(summary.threadId, {
      threadId: summary.threadId,
      createdAt: ok?.createdAt ?? null,
      lastActivity: summary.updatedAt,
      status: holder !== undefined ? 'running' : ok === undefined || ok.lastStatus === 'failed' ? 'failed' : 'idle',
      environments: ok?.environments ?? [],
      currentTurnId: holder !== undefined && ok?.lastStatus === 'incomplete' ? (ok.lastTurnId ?? null) : null,
      preview: ok?.preview ?? null,
      ...(holder === undefined ? (ok === undefined ? { error: summary.error } : {}) : { runningElsewhere: holder }),
    });
  }
  for (const [threadId, holder] of elsewhere) {
    if (!entries.has(threadId)) entries.set(threadId, { threadId, createdAt: null, lastActivity: holder.since, status: 'running', environments: [], currentTurnId: null, preview: null, runningElsewhere: holder });
  }
  return [...entries.values()].sort((a, b) => b.lastActivity.localeCompare(a.lastActivity) || a.threadId.localeCompare(b.threadId));
}
