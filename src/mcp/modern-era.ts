import { randomUUID } from 'node:crypto';
import {
  isJSONRPCNotification,
  isJSONRPCRequest,
  type CallToolResult,
  type JSONRPCMessage,
  type JSONRPCRequest,
  type LoggingLevel,
  type ProgressToken,
  type RequestId,
  type ServerNotification,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type LogEntry, type Logger } from '../util/logger.js';
import { RequestLogs, type RequestLogTarget } from './logging.js';
import { ApprovalGate, RequestStateCodec, RequestStateError, type OpenedRequestState } from './input-required.js';
import { LIST_TTL_MS, META_LOG_LEVEL, TASKS_EXTENSION, discoverResult, hasModernVersion, resultReply, type ServerInfo } from './handshake.js';
import { errorReply, problemsOf, readEnvelope } from './modern-envelope.js';
import { ModernError, ModernErrorCode } from './modern-error.js';
import { continueStoredCall, type StoredCalls } from './stored-rounds.js';
import { missingTasksCapability, type ModernTasks } from './modern-tasks.js';
import { TaskListens } from './task-listens.js';
import type { ToolExtra, ToolTable } from './tools.js';
import { clientCancellation, clientStoppedWaiting } from './turn-call.js';

/**
 * The modern MCP era (2026-07-28) beside the SDK's legacy server on one connection. A modern
 * request carries its protocol version and capabilities in `_meta` (no `initialize`); every result
 * says its `resultType`; the server sends no requests (approvals come back as `input_required`,
 * see input-required.ts). The SDK in use (v1) knows none of this, so the requests of this era are
 * taken off the connection before the SDK sees them ({@link EraSplitTransport}) and served here
 * with the same tool table.
 */

const { InvalidParams: INVALID_PARAMS, MethodNotFound: METHOD_NOT_FOUND, InternalError: INTERNAL_ERROR } = ModernErrorCode;

/** Stands for the progress token of whichever round has a call open (see `sendNotification` in `#start`). */
const ROUND_PROGRESS_TOKEN = 'round';

/**
 * Calls kept between rounds, waiting for the client's retry with its answers: a client that never
 * retries cannot grow this without bound. Calls open on a request do not count (each has its
 * connection; a hub has hundreds at once).
 */
const MAX_PENDING_CALLS = 256;

/** Approval gates of turns whose calls were answered while they went on, kept for later calls on their threads; the oldest go first (their later approvals are denied). */
const MAX_ANSWERED_TURN_GATES = 256;

/** `tools/call` params of this era: a retry of an `input_required` call adds `inputResponses` and `requestState`. */
const CallParamsSchema = z.looseObject({
  name: z.string(),
  arguments: z.record(z.string(), z.unknown()).optional(),
  inputResponses: z.record(z.string(), z.unknown()).optional(),
  requestState: z.string().optional(),
});

const CancelledParamsSchema = z.looseObject({ requestId: z.union([z.string(), z.number()]), reason: z.string().optional() });

/** A `tools/call` whose turn may ask approvals over several requests (MRTR rounds). */
interface PendingCall {
  id: string;
  tool: string;
  args: Record<string, unknown>;
  /** The thread the call names (`threadId`, or `conversationId` for old clients): approvals of its earlier turns come back on this call. */
  threadId: string | undefined;
  gate: ApprovalGate;
  answer: Promise<CallToolResult>;
  /** Aborts when the client cancels any round of the call. */
  cancel: AbortController;
  /**
   * The request that has the call open now, its progress token, and where that request's messages
   * go (over HTTP each round is its own POST with its own response stream); undefined between rounds.
   */
  open: { requestId: RequestId; progressToken: ProgressToken | undefined; send: (message: JSONRPCMessage) => Promise<void>; logs: RequestLogTarget } | undefined;
  expiry: NodeJS.Timeout | undefined;
  /** The client the call belongs to, as the transport named it (see {@link ModernEra.handle}). */
  principal: string | undefined;
  /** How many `input_required` answers the call has had: only the latest one's state continues it. */
  round: number;
}

/** Options of {@link ModernEra}. */
export interface ModernEraOptions {
  tools: ToolTable;
  serverInfo: ServerInfo;
  /** How long an approval waits for the client's answer (and a `requestState` stays valid). */
  approvalTimeoutMs: number;
  logger?: Logger;
  /** Seals `requestState`. @default a codec with a random key made for this process */
  stateCodec?: RequestStateCodec;
  /** Serves the tasks extension; undefined: not offered. */
  tasks?: ModernTasks;
  /**
   * Records calls' approvals with their threads, so a retry continues the call on any instance
   * sharing the store (pass `stateCodec` with the store's shared key too); undefined: a call is
   * continued only by the process that started it.
   */
  stored?: StoredCalls;
}

/** Serves the modern era's requests: `server/discover`, `tools/list`, `tools/call` (with MRTR approvals), and the tasks extension's (modern-tasks.ts). */
export class ModernEra {
  readonly #options: ModernEraOptions;
  readonly #logger: Logger;
  readonly #codec: RequestStateCodec;
  readonly #calls = new Map<string, PendingCall>();
  /** The pending call each open request belongs to, for cancellation. */
  readonly #openRequests = new Map<RequestId, PendingCall>();
  /** Requests the client cancelled: they are answered with nothing. */
  readonly #cancelled = new Set<RequestId>();
  /** Retries continued from the store (stored-rounds.ts) while they follow their turn: a cancellation ends the wait, never the turn. */
  readonly #following = new Map<RequestId, AbortController>();
  /**
   * The approvers of turns that went on after their call was answered (the wait budget ran out),
   * oldest first, with their thread: an approval such a turn asks comes back on a call of the same
   * client that names the thread, the one open then or the next (see {@link #gatesOf}); unanswered,
   * it is denied when the approval timeout ends.
   */
  readonly #answeredTurns = new Map<ApprovalGate, string>();
  /** Where the log events of each request's work go (the per-request log level). */
  readonly #logs = new RequestLogs();
  /** Open `subscriptions/listen` requests (task status notifications). */
  readonly #listens: TaskListens;

  constructor(options: ModernEraOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#codec = options.stateCodec ?? new RequestStateCodec();
    this.#listens = new TaskListens(options.tasks, this.#logger);
  }

  /**
   * Whether `message` is this era's: a request naming a protocol version in `_meta` (or
   * `server/discover`, which only this era has), or the cancellation of such a request. Everything
   * else (`initialize`, a request without the claim, a response) stays with the legacy server.
   */
  claims(message: JSONRPCMessage): boolean {
    if (isJSONRPCRequest(message)) {
      return message.method === 'server/discover' || hasModernVersion(message.params);
    }
    if (isJSONRPCNotification(message) && message.method === 'notifications/cancelled') {
      const params = CancelledParamsSchema.safeParse(message.params);
      return params.success && (this.#openRequests.has(params.data.requestId) || this.#following.has(params.data.requestId) || this.#listens.has(params.data.requestId));
    }
    return false;
  }

  /**
   * Serves one message {@link claims} took; what it answers goes to `send`. `principal` names the
   * client that sent it where one connection serves several (an authenticated client id over
   * HTTP): a call's `requestState` is bound to it, so another client cannot continue the call.
   */
  handle(message: JSONRPCMessage, send: (message: JSONRPCMessage) => Promise<void>, principal?: string): void {
    if (isJSONRPCNotification(message)) {
      const params = CancelledParamsSchema.safeParse(message.params);
      if (params.success) this.cancel(params.data.requestId, params.data.reason);
      return;
    }
    if (!isJSONRPCRequest(message)) return;
    const { id } = message;
    // Set once `_meta` is read; its events stop at the answer (nothing of a request follows its answer).
    const logs: { target: RequestLogTarget } = { target: undefined };
    const reply = (answer: JSONRPCMessage): void => {
      logs.target = undefined;
      if (this.#cancelled.delete(id)) return;
      send(answer).catch((error: unknown) => this.#logger.debug('could not answer a modern request', { id, error: errorMessage(error) }));
    };
    const served = this.#logs.run(
      () => logs.target,
      () => this.#serve(message, send, principal, (level) => (logs.target = { level, send })),
    );
    served.then(
      (result) => reply(resultReply(id, result, this.#options.serverInfo)),
      (error: unknown) => {
        if (error instanceof ModernError) {
          reply(errorReply(id, error));
          return;
        }
        this.#logger.warn('a modern request failed', { id, method: message.method, error: errorMessage(error) });
        reply({ jsonrpc: '2.0', id, error: { code: INTERNAL_ERROR, message: errorMessage(error) } });
      },
    );
  }

  /** The connection closed: approvals still waiting are denied (their turns go on, as in the legacy era); listens end. */
  close(): void {
    this.#listens.close();
    for (const call of this.#calls.values()) {
      call.gate.close('the MCP client went away before answering the approval request');
      clearTimeout(call.expiry);
    }
    for (const gate of this.#answeredTurns.keys()) gate.close('the MCP client went away before answering the approval request');
    this.#answeredTurns.clear();
    for (const following of this.#following.values()) following.abort();
    this.#calls.clear();
    this.#openRequests.clear();
  }

  /** Forwards the log events of this era's work (see {@link RequestLogs}): the composition root tees its logger into it. */
  forwardLog(entry: LogEntry): void {
    this.#logs.forward(entry);
  }

  async #serve(
    request: JSONRPCRequest,
    send: (message: JSONRPCMessage) => Promise<void>,
    principal: string | undefined,
    logAt: (level: LoggingLevel) => void,
  ): Promise<Record<string, unknown>> {
    const { meta, version, capabilities } = readEnvelope(request);
    const logLevel = meta[META_LOG_LEVEL];
    const withTasks = capabilities.extensions?.[TASKS_EXTENSION] !== undefined;
    if (logLevel !== undefined) logAt(logLevel);
    switch (request.method) {
      case 'server/discover':
        return discoverResult(this.#options.tasks !== undefined);
      case 'tools/list':
        // `execution.taskSupport` is the 2025 Tasks form, which this era does not use.
        return { resultType: 'complete', tools: this.#options.tools.listings.map(({ execution: _execution, ...tool }) => tool), ttlMs: LIST_TTL_MS, cacheScope: 'public' };
      case 'tools/call': {
        const call = CallParamsSchema.safeParse(request.params);
        if (!call.success) throw new ModernError(INVALID_PARAMS, `invalid tools/call params: ${problemsOf(call.error)}`);
        const elicitation = capabilities.elicitation;
        // A bare `elicitation: {}` means form; url-only clients cannot show forms.
        const canElicit = elicitation !== undefined && (elicitation.form !== undefined || elicitation.url === undefined);
        // A client that takes tasks gets one for each call of a tool that runs as a task (the server decides, as the extension says).
        const tool = this.#options.tools.get(call.data.name);
        const tasks = this.#options.tasks;
        if (tasks !== undefined && withTasks && call.data.requestState === undefined && tool?.startTask !== undefined) {
          return tasks.call(tool.startTask, call.data.arguments ?? {}, request.id, canElicit);
        }
        return this.#call(request.id, call.data, { progressToken: meta.progressToken, logLevel }, canElicit, send, principal);
      }
      case 'tasks/get':
      case 'tasks/update':
      case 'tasks/cancel': {
        const tasks = this.#options.tasks;
        if (tasks === undefined) break;
        if (!withTasks) throw missingTasksCapability(request.method);
        if (request.method === 'tasks/get') return tasks.get(request.params);
        if (request.method === 'tasks/update') return tasks.update(request.params);
        return tasks.cancel(request.params);
      }
      case 'subscriptions/listen':
        return this.#listens.listen(request.id, request.params, withTasks, send);
    }
    const served =
      this.#options.tasks === undefined
        ? 'server/discover, tools/list, tools/call and subscriptions/listen'
        : 'server/discover, tools/list, tools/call, subscriptions/listen, tasks/get, tasks/update and tasks/cancel';
    throw new ModernError(METHOD_NOT_FOUND, `method not found: ${request.method} (this server serves ${served} in protocol ${version})`);
  }

  async #call(
    requestId: RequestId,
    params: z.infer<typeof CallParamsSchema>,
    { progressToken, logLevel }: { progressToken: ProgressToken | undefined; logLevel: LoggingLevel | undefined },
    canElicit: boolean,
    send: (message: JSONRPCMessage) => Promise<void>,
    principal: string | undefined,
  ): Promise<Record<string, unknown>> {
    const args = params.arguments ?? {};
    let call: PendingCall;
    if (params.requestState === undefined) {
      if (params.inputResponses !== undefined) throw new ModernError(INVALID_PARAMS, 'tools/call: inputResponses without the requestState they answer');
      call = this.#start(requestId, params.name, args, canElicit, principal);
    } else {
      let state: OpenedRequestState;
      try {
        state = this.#codec.open(params.requestState, { tool: params.name, args, principal });
      } catch (error) {
        if (error instanceof RequestStateError) throw new ModernError(INVALID_PARAMS, `tools/call: ${error.message}`);
        throw error;
      }
      const found = this.#calls.get(state.call);
      // Continued from the store where the call is not here, where another instance issued a later
      // round of it, or where its approvals were answered elsewhere (none waits here any more).
      const task = state.task;
      const waitsHere = found !== undefined && Object.keys(state.approvals).some((key) => this.#gatesOf(found).some((gate) => gate.waits(key)));
      if (task !== undefined && this.#options.stored !== undefined && (found === undefined || state.round > found.round || (state.round === found.round && !waitsHere))) {
        if (found?.open !== undefined) throw new ModernError(INVALID_PARAMS, 'tools/call: this call is already open on another request');
        return this.#continueStored(requestId, { ...state, task }, params, principal);
      }
      if (found === undefined)
        throw new ModernError(
          INVALID_PARAMS,
          'tools/call: the call this requestState continues is no longer here (answered, or the client went away): call the tool again without it',
        );
      call = found;
      if (call.open !== undefined) throw new ModernError(INVALID_PARAMS, 'tools/call: this call is already open on another request');
      if (state.round !== call.round) {
        throw new ModernError(
          INVALID_PARAMS,
          `tools/call: this requestState is from round ${state.round} of the call, which has had ${call.round} input_required answers: retry with the latest requestState`,
        );
      }
      const { approvals } = state;
      const responses = params.inputResponses;
      if (responses !== undefined) await Promise.all(this.#gatesOf(call).map(async (gate) => gate.answer(responses, approvals)));
    }
    call.open = { requestId, progressToken, send, logs: logLevel === undefined ? undefined : { level: logLevel, send } };
    this.#openRequests.set(requestId, call);
    const round = new AbortController();
    try {
      const gates = this.#gatesOf(call);
      const next = await Promise.race([call.answer.then((result) => ({ result })), ...gates.map(async (gate) => gate.whenParked(round.signal))]);
      if (next !== undefined) {
        this.#answered(call, next.result);
        return { resultType: 'complete', ...next.result };
      }
      // Kept until its approvals are denied for want of an answer, and its state refused.
      clearTimeout(call.expiry);
      call.expiry = setTimeout(() => this.#expired(call), this.#options.approvalTimeoutMs);
      call.expiry.unref();
      call.round += 1;
      // Keys are unique across gates: the approvals of this call's turn and of the thread's earlier turns go in one state.
      const approvals = Object.assign({}, ...gates.map((gate) => gate.bindings())) as Record<string, string>;
      const task = call.gate.taskId;
      const binding = { call: call.id, round: call.round, tool: call.tool, args: call.args, principal: call.principal, approvals, ...(task === undefined ? {} : { task }) };
      return {
        resultType: 'input_required',
        inputRequests: Object.assign({}, ...gates.map((gate) => gate.inputRequests())) as Record<string, unknown>,
        requestState: this.#codec.seal(binding, this.#options.approvalTimeoutMs),
      };
    } finally {
      round.abort();
      call.open = undefined;
      this.#openRequests.delete(requestId);
    }
  }

  /** Continues a call from the store (see stored-rounds.ts): the retry reached an instance that does not run its turn, or a round issued elsewhere. */
  async #continueStored(
    requestId: RequestId,
    state: OpenedRequestState & { task: string },
    params: z.infer<typeof CallParamsSchema>,
    principal: string | undefined,
  ): Promise<Record<string, unknown>> {
    const stored = this.#options.stored;
    if (stored === undefined) throw new ModernError(INTERNAL_ERROR, 'tools/call: no store to continue the call from');
    const following = new AbortController();
    this.#following.set(requestId, following);
    const retry = { state, tool: params.name, args: params.arguments ?? {}, principal, inputResponses: params.inputResponses, ttlMs: this.#options.approvalTimeoutMs };
    try {
      return await continueStoredCall(stored, this.#codec, retry, following.signal);
    } catch (error) {
      if (error instanceof RequestStateError) throw new ModernError(INVALID_PARAMS, `tools/call: ${error.message}`);
      throw error;
    } finally {
      this.#following.delete(requestId);
    }
  }

  /** The gates whose approvals this call carries: its own, and those of answered turns of the thread it names. */
  #gatesOf(call: PendingCall): ApprovalGate[] {
    const gates = [call.gate];
    if (call.threadId === undefined) return gates;
    for (const [gate, threadId] of this.#answeredTurns) if (threadId === call.threadId) gates.push(gate);
    return gates;
  }

  /**
   * The call was answered. When its turn goes on (a "running" answer), its approver is kept with
   * the thread for later calls (see {@link #answeredTurns}); otherwise nothing can ask on it any more.
   */
  #answered(call: PendingCall, result: CallToolResult): void {
    const structured = result.structuredContent;
    // Only a turn's call lends its approver to the turn (the tools that run turns are those that can be tasks); a status call reads "running" too.
    const runsTurn = this.#options.tools.get(call.tool)?.startTask !== undefined;
    const threadId = runsTurn && structured?.status === 'running' && typeof structured.threadId === 'string' ? structured.threadId : undefined;
    if (threadId === undefined) {
      this.#forget(call, 'no request of the MCP client had the call open to ask it on (the call was answered)');
      return;
    }
    this.#keepAsking(call, threadId);
  }

  /**
   * No retry reached this process in time. A call whose approvals are recorded may have been
   * continued on another instance (its turn goes on): its gate goes on asking through the store,
   * as that of an answered call does; otherwise the call is dropped.
   */
  #expired(call: PendingCall): void {
    const threadId = call.gate.threadId;
    if (call.gate.taskId !== undefined && threadId !== undefined) this.#keepAsking(call, threadId);
    else this.#forget(call, 'the MCP client did not retry the call in time to answer the approval request');
  }

  /** Keeps the gate of `call`, whose turn goes on, for later calls on `threadId` (see {@link #answeredTurns}); the oldest beyond the bound stop asking. */
  #keepAsking(call: PendingCall, threadId: string): void {
    clearTimeout(call.expiry);
    if (this.#calls.get(call.id) === call) this.#calls.delete(call.id);
    this.#answeredTurns.set(call.gate, threadId);
    if (this.#answeredTurns.size > MAX_ANSWERED_TURN_GATES) {
      const [oldest] = this.#answeredTurns.keys();
      if (oldest !== undefined) {
        this.#answeredTurns.delete(oldest);
        oldest.close(`more than ${MAX_ANSWERED_TURN_GATES} turns went on after their calls were answered: the oldest no longer asks approvals`);
      }
    }
  }

  #start(requestId: RequestId, tool: string, args: Record<string, unknown>, canElicit: boolean, principal: string | undefined): PendingCall {
    let waiting = 0;
    for (const pending of this.#calls.values()) if (pending.open === undefined) waiting += 1;
    if (waiting >= MAX_PENDING_CALLS) throw new ModernError(INTERNAL_ERROR, `too many calls waiting for input (${MAX_PENDING_CALLS}): answer or abandon some first`);
    const gate = new ApprovalGate({ timeoutMs: this.#options.approvalTimeoutMs, canElicit, logger: this.#logger, tasks: this.#options.stored?.tasks });
    const cancel = new AbortController();
    const named = args.threadId ?? args.conversationId;
    const threadId = typeof named === 'string' && named !== '' ? named : undefined;
    const call: PendingCall = {
      id: randomUUID(),
      tool,
      args,
      threadId,
      gate,
      answer: Promise.resolve({ content: [] }),
      cancel,
      open: undefined,
      expiry: undefined,
      principal,
      round: 0,
    };
    const extra: ToolExtra = {
      requestId,
      signal: cancel.signal,
      // Any token turns progress reports on; the open round's own token is put in as they are sent.
      _meta: { progressToken: ROUND_PROGRESS_TOKEN },
      cancelled: cancel.signal,
      approver: gate,
      onTurnStarted: (threadId, turnId) => gate.turnStarted(threadId, turnId),
      // Progress goes to whichever request has the call open, under its token; between rounds
      // (and for a round without a token) there is no request to report to.
      sendNotification: (notification: ServerNotification) => {
        const open = call.open;
        if (open === undefined || open.progressToken === undefined || notification.method !== 'notifications/progress') return Promise.resolve();
        return open.send({ jsonrpc: '2.0', method: notification.method, params: { ...notification.params, progressToken: open.progressToken } });
      },
    };
    // The turn's events go to whichever request has the call open, at that request's level.
    call.answer = this.#logs.run(
      () => call.open?.logs,
      () => this.#options.tools.call(tool, args, extra),
    );
    this.#calls.set(call.id, call);
    return call;
  }

  /** Drops `call`: its approvals still waiting, and any its turn asks later, are denied with `reason`. */
  #forget(call: PendingCall, reason: string): void {
    clearTimeout(call.expiry);
    if (this.#calls.get(call.id) === call) this.#calls.delete(call.id);
    call.gate.close(reason);
  }

  /**
   * Cancels the call `requestId` has open: nothing more is sent for the request. A
   * `notifications/cancelled` (`how: 'cancelled'`) also interrupts the call's turn, unless its
   * reason says the client timed out. Over HTTP the client closing the request's stream is how this
   * era cancels, but a time-out, a crash or a dropped proxy connection look the same, so there
   * (`how: 'stopped-waiting'`) only the call ends and the turn goes on, as after a wait budget:
   * `turn/interrupt` stops it. A listen (`subscriptions/listen`) ends either way. Does nothing when no call or listen is open on it.
   */
  cancel(requestId: RequestId, reason: string | undefined, how: 'cancelled' | 'stopped-waiting' = 'cancelled'): void {
    if (this.#listens.has(requestId)) {
      this.#logger.debug('a subscription ended by the client', { requestId, reason });
      this.#cancelled.add(requestId);
      this.#listens.end(requestId);
      return;
    }
    const following = this.#following.get(requestId);
    if (following !== undefined) {
      this.#cancelled.add(requestId);
      following.abort();
      return;
    }
    const call = this.#openRequests.get(requestId);
    if (call === undefined) return;
    this.#logger.info(how === 'cancelled' ? 'modern tool call cancelled by the client' : 'the client stopped waiting for a modern tool call', { requestId, reason });
    // The spec's modern era: nothing more is sent for a cancelled request.
    this.#cancelled.add(requestId);
    call.cancel.abort(how === 'cancelled' ? clientCancellation(reason) : clientStoppedWaiting(reason ?? 'the connection closed'));
  }
}
