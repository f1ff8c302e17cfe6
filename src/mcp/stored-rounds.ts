import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { TaskNotFoundError, type TaskInputRequest, type TaskView, type ThreadTasks } from '../session/thread-tasks.js';
import { inputRequestDigest, RequestStateError, type OpenedRequestState, type RequestStateCodec } from './input-required.js';
import { endedTurnResult } from './task-runs.js';
import { threadResult, type FollowUpNames } from './turn-call.js';

/**
 * MRTR rounds continued on any instance sharing the thread store (issue 17: the modern era needs
 * no affinity at the load balancer). A modern call's turn records its approvals with its thread
 * (a task record of form `call`, see ApprovalGate), and the `requestState` it answers with names
 * that record and is sealed with the store's shared secret. A retry that reaches an instance
 * other than the one running the turn is served here from the store: its answers are recorded
 * (waking the owner, as `tasks/update` does), then the turn is followed to its result or its next
 * approval within the call's wait budget.
 */

/** What continuing a call from the store needs from the server. */
export interface StoredCalls {
  tasks: ThreadTasks;
  /** Waits up to `timeoutMs` for the thread's turn `turnId` to end, wherever it runs (resolves either way). */
  waitForTurn(threadId: string, turnId: string, timeoutMs: number, signal: AbortSignal): Promise<unknown>;
  /** How long a retry follows the turn when the call gives no `waitMs`. */
  defaultWaitMs: number;
  /** Where a "still running" answer points the caller. */
  names: FollowUpNames;
}

/** A retry to continue from the store: its opened state (which names the record) and what it answers. */
export interface StoredRetry {
  state: OpenedRequestState & { task: string };
  tool: string;
  args: Record<string, unknown>;
  principal: string | undefined;
  inputResponses: Record<string, unknown> | undefined;
  /** How long a state issued here stays valid (the approval timeout). */
  ttlMs: number;
}

/** How often a follower looks for a new approval of the turn (the turn's end wakes it at once). */
const FOLLOW_POLL_MS = 250;

/**
 * Continues the call `retry` from the store: records the answers to the approvals its state asked
 * that still wait (the first answer to each counts, from any instance), then answers with the
 * turn's result, its next `input_required` round, or "still running" once the wait budget is spent.
 * @throws RequestStateError when the state's approvals no longer wait (answered already, replaced
 * by a later round, expired, or the turn ended): a replay continues nothing.
 */
export async function continueStoredCall(stored: StoredCalls, codec: RequestStateCodec, retry: StoredRetry, signal: AbortSignal): Promise<Record<string, unknown>> {
  const { state } = retry;
  let view = await read(stored.tasks, state.task);
  const pending = view.inputRequests ?? {};
  const asked = Object.keys(state.approvals).filter((key) => {
    const input = pending[key];
    return input !== undefined && inputRequestDigest(input) === state.approvals[key];
  });
  if (asked.length === 0) {
    throw new RequestStateError(
      'the approvals of this requestState no longer wait (answered already, a later round replaced it, or its turn went on): retry with the latest requestState, or call the tool again without it',
    );
  }
  const answers: Record<string, unknown> = {};
  for (const key of asked) if (retry.inputResponses !== undefined && Object.hasOwn(retry.inputResponses, key)) answers[key] = retry.inputResponses[key];
  if (Object.keys(answers).length > 0) await stored.tasks.answer(state.task, answers);
  const waitArg = retry.args.waitMs;
  const deadline = Date.now() + (typeof waitArg === 'number' && waitArg >= 0 ? waitArg : stored.defaultWaitMs);
  for (;;) {
    view = await read(stored.tasks, state.task);
    if (view.state !== 'working' || view.turn !== undefined) return { resultType: 'complete', ...endedResult(view) };
    const waiting = view.inputRequests;
    if (waiting !== undefined) return inputRequired(codec, retry, waiting);
    const left = deadline - Date.now();
    if (left <= 0 || signal.aborted) return { resultType: 'complete', ...runningResult(view, stored.names) };
    // The turn's end wakes this at once (through the ownership); a new approval is looked for at intervals.
    const step = new AbortController();
    const stop = (): void => step.abort();
    signal.addEventListener('abort', stop, { once: true });
    try {
      await Promise.race([
        stored.waitForTurn(view.threadId, view.turnId, Math.min(left, FOLLOW_POLL_MS), step.signal),
        new Promise((resolve) => setTimeout(resolve, Math.min(left, FOLLOW_POLL_MS)).unref()),
      ]);
    } finally {
      step.abort();
      signal.removeEventListener('abort', stop);
    }
  }
}

async function read(tasks: ThreadTasks, taskId: string): Promise<TaskView> {
  try {
    const view = await tasks.get(taskId);
    if (view.form === 'call') return view;
  } catch (error) {
    if (!(error instanceof TaskNotFoundError)) throw error;
  }
  throw new RequestStateError('the call this requestState continues is no longer recorded (it expired, or its thread is gone): call the tool again without it');
}

/** The next round: every approval that waits now, under a state for the next round. */
function inputRequired(codec: RequestStateCodec, retry: StoredRetry, waiting: Record<string, TaskInputRequest>): Record<string, unknown> {
  const approvals: Record<string, string> = {};
  for (const [key, input] of Object.entries(waiting)) approvals[key] = inputRequestDigest(input);
  const binding = { call: retry.state.call, round: retry.state.round + 1, tool: retry.tool, args: retry.args, principal: retry.principal, approvals, task: retry.state.task };
  return { resultType: 'input_required', inputRequests: waiting, requestState: codec.seal(binding, retry.ttlMs) };
}

/** The `{threadId, content}` of the ended turn, as its own call would have answered. */
function endedResult(view: TaskView): CallToolResult {
  return endedTurnResult(view) ?? threadResult(view.threadId, `The turn ${view.turnId} is being interrupted.`, true);
}

/** The wait budget is spent: the turn goes on (in the instance that runs it). */
function runningResult(view: TaskView, names: FollowUpNames): CallToolResult {
  const text = [
    `The turn is still running (thread ${view.threadId}, turn ${view.turnId}) in another server instance.`,
    `It goes on without this call: use ${names.status} with this threadId (and waitMs) to wait for it and read its result, or ${names.interrupt} to stop it.`,
  ].join('\n');
  return { content: [{ type: 'text', text }], structuredContent: { threadId: view.threadId, content: text, status: 'running', turnId: view.turnId } };
}
