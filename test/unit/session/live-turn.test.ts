import type { ApprovalDecision } from '../../../src/agent/approvals.js';
import { FINISHED_TURNS_KEPT, LiveTurn, RECENT_TURN_EVENTS, storedTurns } from '../../../src/session/live-turn.js';
import { settlesWithin } from '../../../src/util/abort.js';
import type { ThreadBodyRecord } from '../../../src/protocol/thread.js';

const at = (n: number): string => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();

describe('LiveTurn', () => {
  it('is queued until it begins, counts model requests and tool calls, and keeps the latest events', () => {
    const turn = new LiveTurn('t1', at(0));
    expect(turn.snapshot()).toMatchObject({ turnId: 't1', state: 'queued', acceptedAt: at(0), startedAt: null, modelRequests: 0, recent: [] });
    turn.begin(at(1));
    turn.record({ type: 'model_request', step: 1 }, at(2));
    turn.record({ type: 'tool_started', callId: 'c1', tool: 'exec_command' }, at(3));
    turn.record({ type: 'progress', message: 'command started on local: make' }, at(3));
    turn.record({ type: 'tool_finished', callId: 'c1', tool: 'exec_command', ok: false }, at(4));
    turn.record({ type: 'agent_message', text: 'done   with\nit' }, at(5));
    expect(turn.snapshot()).toEqual({
      turnId: 't1',
      state: 'running',
      acceptedAt: at(0),
      startedAt: at(1),
      modelRequests: 1,
      toolCalls: { started: 1, finished: 1, failed: 1 },
      pendingApprovals: 0,
      lastAgentMessage: 'done   with\nit',
      recent: [
        { at: at(2), text: 'thinking' },
        { at: at(3), text: 'command started on local: make' },
        { at: at(4), text: 'exec_command failed' },
        { at: at(5), text: 'agent: done with it' },
      ],
    });
    expect(turn.lastEventAt).toBe(at(5));
    for (let i = 0; i < RECENT_TURN_EVENTS + 5; i++) turn.record({ type: 'progress', message: `m${i}` }, at(6));
    const recent = turn.snapshot().recent;
    expect(recent).toHaveLength(RECENT_TURN_EVENTS);
    expect(recent[recent.length - 1]?.text).toBe(`m${RECENT_TURN_EVENTS + 4}`);
  });

  it('waits for approval while an approval request is open, and runs again once it is answered', async () => {
    const turn = new LiveTurn('t1');
    turn.begin();
    let answer!: (decision: ApprovalDecision) => void;
    const approver = turn.countApprovals({ request: () => new Promise<ApprovalDecision>((resolve) => (answer = resolve)) });
    const pending = approver.request({ kind: 'exec', threadId: 'th', callId: 'c', environmentId: 'local', cwd: '/', command: ['ls'] }, new AbortController().signal);
    expect(turn.snapshot()).toMatchObject({ state: 'waiting-for-approval', pendingApprovals: 1 });
    answer({ decision: 'approved' });
    expect(await pending).toEqual({ decision: 'approved' });
    expect(turn.snapshot()).toMatchObject({ state: 'running', pendingApprovals: 0 });
  });

  it('resolves done once, with the first outcome', async () => {
    const turn = new LiveTurn('t1');
    turn.finish('interrupted', null, 'stopped', at(9));
    turn.finish('completed', 'late', undefined, at(10));
    expect(await turn.done).toEqual({ turnId: 't1', state: 'finished', status: 'interrupted', lastAgentMessage: null, error: 'stopped', finishedAt: at(9) });
  });
});

describe('storedTurns', () => {
  const started = (turnId: string, n: number): ThreadBodyRecord => ({ type: 'turn_started', at: at(n), turnId, prompt: 'p', environments: [] });
  const completed = (turnId: string, n: number, lastAgentMessage: string | null, status: 'completed' | 'failed' = 'completed'): ThreadBodyRecord => ({
    type: 'turn_completed',
    at: at(n),
    turnId,
    status,
    lastAgentMessage,
    ...(status === 'failed' ? { error: 'boom' } : {}),
  });

  it('folds finished turns, the open one, the last agent message and the last activity', () => {
    const turns = storedTurns([started('a', 1), completed('a', 2, 'hello'), started('b', 3), completed('b', 4, null, 'failed'), started('c', 5)]);
    expect(turns).toEqual({
      finished: [
        { turnId: 'a', state: 'finished', status: 'completed', lastAgentMessage: 'hello', finishedAt: at(2) },
        { turnId: 'b', state: 'finished', status: 'failed', lastAgentMessage: null, error: 'boom', finishedAt: at(4) },
      ],
      open: { turnId: 'c', startedAt: at(5) },
      lastAgentMessage: 'hello',
      lastActivity: at(5),
      plan: null,
      instructions: null,
    });
    expect(storedTurns([])).toEqual({ finished: [], lastAgentMessage: null, lastActivity: undefined, plan: null, instructions: null });
  });

  it('keeps only the latest finished turns', () => {
    const records = Array.from({ length: FINISHED_TURNS_KEPT + 3 }, (_, i) => [started(`t${i}`, i), completed(`t${i}`, i, `m${i}`)]).flat();
    const { finished } = storedTurns(records);
    expect(finished).toHaveLength(FINISHED_TURNS_KEPT);
    expect(finished[0]?.turnId).toBe('t3');
  });
});

describe('settlesWithin', () => {
  it('is true when the promise settles (even rejected), false on timeout or abort', async () => {
    expect(await settlesWithin(Promise.resolve(), 60_000)).toBe(true);
    expect(await settlesWithin(Promise.reject(new Error('x')), 60_000)).toBe(true);
    expect(await settlesWithin(new Promise(() => undefined), 0)).toBe(false);
    const controller = new AbortController();
    const waiting = settlesWithin(new Promise(() => undefined), 60_000, controller.signal);
    controller.abort();
    expect(await waiting).toBe(false);
  });
});
