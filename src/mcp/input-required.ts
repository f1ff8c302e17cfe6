import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { ApprovalDecision, ApprovalRequest, Approver } from '../agent/approvals.js';
import type { TaskInputOutcome, TaskInputRequest, ThreadTasks } from '../session/thread-tasks.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { approvalElicitationParams, parseApprovalAnswer } from './elicitation-approver.js';

/**
 * Approvals for modern (2026-07-28) clients without tasks, as Multi Round-Trip Requests: the
 * server cannot send `elicitation/create`, so an approval raised while a client has the call open
 * answers that call with `resultType: "input_required"`; the client retries the call with
 * `inputResponses` and the `requestState` it was given. One raised after the call was answered
 * (its turn went on) comes back the same way on the client's call naming the thread (modern-era.ts).
 * The state is only a reference to the call
 * kept here (the turn lives in this process), sealed with an HMAC under a key made per process. It
 * is bound to what it was issued for: the call and its round (only the latest `input_required` of
 * a call can be answered), the tool and its arguments, the client (a principal the transport
 * names), and each approval it asks (its id, and a digest of the request: the thread, the model's
 * tool call and the action). So a client cannot forge or alter it, move it to another call, reuse
 * it for a later round, answer with it an approval it was not shown, or hand it to another
 * client; and it expires.
 */

/** What a sealed `requestState` says. */
const StatePayloadSchema = z.strictObject({
  /** The format; anything else is refused. */
  v: z.literal(2),
  /** The continued call (see {@link PendingCall}). */
  call: z.string(),
  /** Which `input_required` answer of the call issued it (1, 2, …): only the latest continues it. */
  round: z.number().int().positive(),
  /** The tool and a digest of its arguments: the state continues only the same request. */
  tool: z.string(),
  args: z.string(),
  /** A digest of the principal it was issued to (that of no principal on stdio). */
  client: z.string(),
  /** The approvals it asked, by key: a digest of each request. Answers to others are ignored. */
  approvals: z.record(z.string(), z.string()),
  /** Epoch milliseconds after which the state is refused. */
  expires: z.number(),
  /** The stored record (a task of form `call`) its approvals are asked through, so any instance sharing the store continues it. */
  task: z.string().optional(),
});
type StatePayload = z.infer<typeof StatePayloadSchema>;

/** What a `requestState` is issued for (see {@link RequestStateCodec.seal}). */
export interface RequestStateBinding {
  /** The pending call it continues. */
  call: string;
  /** The call's `input_required` round that issues it, counted from 1. */
  round: number;
  tool: string;
  args: Record<string, unknown>;
  /**
   * Who the call belongs to, as the transport names the client (e.g. an authenticated client id
   * over HTTP); undefined where the connection is the client (stdio).
   */
  principal: string | undefined;
  /** The approvals asked, by key, each as {@link approvalDigest} of its request (or {@link inputRequestDigest} of a stored one). */
  approvals: Record<string, string>;
  /** The stored record the approvals are asked through (see {@link ApprovalGateOptions.tasks}); undefined: only in this process. */
  task?: string;
}

/** What an opened `requestState` continues. */
export interface OpenedRequestState {
  call: string;
  round: number;
  approvals: Record<string, string>;
  task?: string;
}

/** Why a `requestState` was refused (the client is told). */
export class RequestStateError extends Error {
  override readonly name = 'RequestStateError';
}

/** `value` as JSON with object keys sorted, so a digest does not depend on the order a client sends them in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

/** A digest of a call's arguments, bound into its state. */
export function argumentsDigest(args: Record<string, unknown>): string {
  return digest(canonicalJson(args));
}

/** A digest of an approval request (thread, tool call, environment, action), bound into the state that asks it. */
export function approvalDigest(request: ApprovalRequest): string {
  return digest(canonicalJson(request));
}

/** A digest of a stored input request (what a client is shown), which any instance reading the record can compute. */
export function inputRequestDigest(input: TaskInputRequest): string {
  return digest(canonicalJson(input));
}

/** The digest of a principal; a fixed tag for none, which no principal's digest equals. */
function principalDigest(principal: string | undefined): string {
  return principal === undefined ? 'none' : digest(`principal:${principal}`);
}

/** Seals and opens `requestState` values with one HMAC-SHA256 key. */
export class RequestStateCodec {
  readonly #key: Buffer;
  readonly #now: () => number;

  /**
   * `key` defaults to 32 random bytes, so no state outlives the process that made it; servers
   * sharing a store pass the store's shared secret, so a state verifies on every one of them.
   */
  constructor(options: { key?: Buffer; now?: () => number } = {}) {
    this.#key = options.key ?? randomBytes(32);
    this.#now = options.now ?? Date.now;
  }

  /** A state for `binding`, valid for `ttlMs`. */
  seal(binding: RequestStateBinding, ttlMs: number): string {
    const payload: StatePayload = {
      v: 2,
      call: binding.call,
      round: binding.round,
      tool: binding.tool,
      args: argumentsDigest(binding.args),
      client: principalDigest(binding.principal),
      approvals: binding.approvals,
      expires: this.#now() + ttlMs,
      ...(binding.task === undefined ? {} : { task: binding.task }),
    };
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return `${body}.${this.#mac(body)}`;
  }

  /**
   * What a state this codec sealed continues, if `retry` (the retried call: its tool, arguments
   * and the transport's principal) is the request it was issued for; throws a
   * {@link RequestStateError} saying why not.
   */
  open(state: string, retry: { tool: string; args: Record<string, unknown>; principal: string | undefined }): OpenedRequestState {
    const [body, mac, ...rest] = state.split('.');
    if (body === undefined || mac === undefined || rest.length > 0) throw new RequestStateError('requestState is not one this server issued');
    const expected = Buffer.from(this.#mac(body));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new RequestStateError('requestState failed verification (altered, or issued by another server process)');
    }
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      throw new RequestStateError('requestState is not one this server issued');
    }
    const payload = StatePayloadSchema.safeParse(json);
    if (!payload.success) throw new RequestStateError('requestState is not one this server issued');
    const { data } = payload;
    if (data.expires <= this.#now()) throw new RequestStateError('requestState has expired: call the tool again without it');
    if (data.client !== principalDigest(retry.principal)) throw new RequestStateError('requestState was issued to another client');
    if (data.tool !== retry.tool || data.args !== argumentsDigest(retry.args)) {
      throw new RequestStateError(`requestState belongs to another request: retry the same tools/call (${data.tool}, same arguments) it was given for`);
    }
    return { call: data.call, round: data.round, approvals: data.approvals, ...(data.task === undefined ? {} : { task: data.task }) };
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}

/** One approval waiting for the client's answer. */
interface Parked {
  key: string;
  request: ApprovalRequest;
  /** {@link approvalDigest} of the request (or {@link inputRequestDigest} once stored), which a state asking it binds. */
  digest: string;
  /** What the client is shown. */
  input: TaskInputRequest;
  /** Set once the approval is recorded (then it is answered through the store, once, from any instance). */
  stored: boolean;
  respond: (decision: ApprovalDecision) => void;
}

/** Options of {@link ApprovalGate}. */
export interface ApprovalGateOptions {
  /** How long an approval waits for the client's answer before it is denied. */
  timeoutMs: number;
  /** Whether the client can show a form elicitation (else every approval is denied at once). */
  canElicit: boolean;
  logger?: Logger;
  /**
   * Where approvals are recorded once the call's turn exists (see {@link ApprovalGate.turnStarted}):
   * a task record of form `call`, whose inputs any instance sharing the store shows and answers.
   * @default undefined (approvals are kept in this process only)
   */
  tasks?: ThreadTasks;
}

/**
 * The approver of one modern call: approvals wait here (each with its own deadline) until the
 * client answers them through `inputResponses`; {@link whenParked} tells the call to answer
 * `input_required`. Only a clear approval approves; no answer in time is a denial.
 */
export class ApprovalGate implements Approver {
  readonly #options: ApprovalGateOptions;
  readonly #logger: Logger;
  readonly #parked = new Map<string, Parked>();
  readonly #onParked = new Set<() => void>();
  /** Set once closed: why every approval is denied from then on. */
  #closedReason: string | undefined;
  /** The call's turn, once it exists (its approvals are recorded from then on). */
  #turn: { threadId: string; turnId: string } | undefined;
  /** The record the approvals are asked through, made at the first one. */
  #task: Promise<string> | undefined;
  #taskId: string | undefined;

  constructor(options: ApprovalGateOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** The call's turn exists: its approvals are recorded with it from now on (with {@link ApprovalGateOptions.tasks}). */
  turnStarted(threadId: string, turnId: string): void {
    this.#turn ??= { threadId, turnId };
  }

  /** The thread of the call's turn, once it exists. */
  get threadId(): string | undefined {
    return this.#turn?.threadId;
  }

  /** The id of the record the approvals are asked through, once made. */
  get taskId(): string | undefined {
    return this.#taskId;
  }

  request(request: ApprovalRequest, signal: AbortSignal): Promise<ApprovalDecision> {
    if (!this.#options.canElicit) {
      return Promise.resolve({
        decision: 'denied',
        reason: 'the MCP client cannot show approval requests (no form elicitation in its capabilities); use approval-policy "never" or a client with elicitation',
      });
    }
    if (this.#closedReason !== undefined) return Promise.resolve({ decision: 'denied', reason: this.#closedReason });
    // Random, not counted: unique across gates (one `inputRequests` holds the approvals of several),
    // and an answer names exactly the approval its client was shown, never one raised since.
    const key = randomBytes(16).toString('base64url');
    const input: TaskInputRequest = { method: 'elicitation/create', params: approvalElicitationParams(request) };
    return new Promise<ApprovalDecision>((resolve) => {
      const asking = new AbortController();
      const timer = setTimeout(() => settle({ decision: 'denied', reason: `no answer to the approval request within ${this.#options.timeoutMs} ms` }), this.#options.timeoutMs);
      const onAbort = (): void => settle({ decision: 'abort', reason: 'the turn was interrupted while waiting for approval' });
      const settle = (decision: ApprovalDecision): void => {
        if (!this.#parked.delete(key)) return;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        asking.abort();
        this.#logger.info('approval answered', { kind: request.kind, environment: request.environmentId, decision: decision.decision });
        resolve(decision);
      };
      const parked: Parked = { key, request, input, digest: approvalDigest(request), stored: false, respond: settle };
      this.#parked.set(key, parked);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      const wake = (): void => {
        for (const woken of [...this.#onParked]) woken();
      };
      const tasks = this.#options.tasks;
      if (tasks === undefined || this.#turn === undefined || !this.#parked.has(key)) {
        wake();
        return;
      }
      // Shown to the client only once recorded: a retry on another instance must find it.
      this.#record(tasks, this.#turn, key, input, asking.signal, () => {
        parked.digest = inputRequestDigest(input);
        parked.stored = true;
        wake();
      }).then(
        (outcome) => {
          if (outcome === undefined) return;
          if (outcome.kind === 'answered') settle(parseApprovalAnswer(outcome.response));
          else if (outcome.kind === 'expired') settle({ decision: 'denied', reason: `no answer to the approval request within ${this.#options.timeoutMs} ms` });
        },
        (error: unknown) => {
          // Kept in this process: answered by a retry that reaches it, as without a store.
          this.#logger.warn('an approval could not be recorded; only this instance can take its answer', { error: errorMessage(error) });
          wake();
        },
      );
    });
  }

  /** Records `input` with the turn (making the gate's record at the first approval), then waits for its answer from any instance. */
  async #record(
    tasks: ThreadTasks,
    turn: { threadId: string; turnId: string },
    key: string,
    input: TaskInputRequest,
    signal: AbortSignal,
    onRecorded: () => void,
  ): Promise<TaskInputOutcome | undefined> {
    this.#task ??= tasks.create({ threadId: turn.threadId, turnId: turn.turnId, form: 'call' }).then((view) => {
      this.#taskId = view.taskId;
      return view.taskId;
    });
    const taskId = await this.#task;
    if (signal.aborted) return undefined;
    return tasks.ask(taskId, input, { timeoutMs: this.#options.timeoutMs, signal, key, onRecorded });
  }

  /** Whether the approval `key` waits here for an answer now. */
  waits(key: string): boolean {
    return this.#parked.has(key);
  }

  /** Whether an approval waits for an answer now. */
  get parked(): boolean {
    return this.#parked.size > 0;
  }

  /** Resolves once an approval waits for an answer (at once when one does already); `signal` stops the wait (it never resolves then). */
  whenParked(signal?: AbortSignal): Promise<void> {
    if (this.#parked.size > 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        this.#onParked.delete(wake);
        signal?.removeEventListener('abort', stop);
        resolve();
      };
      const stop = (): void => {
        this.#onParked.delete(wake);
      };
      if (signal?.aborted === true) return;
      this.#onParked.add(wake);
      signal?.addEventListener('abort', stop, { once: true });
    });
  }

  /** The input requests for every approval that waits: `elicitation/create` forms, by key. */
  inputRequests(): Record<string, { method: 'elicitation/create'; params: Record<string, unknown> }> {
    const requests: Record<string, { method: 'elicitation/create'; params: Record<string, unknown> }> = {};
    for (const parked of this.#parked.values()) requests[parked.key] = { method: 'elicitation/create', params: parked.input.params };
    return requests;
  }

  /** The approvals that wait, by key: {@link approvalDigest} of each, for the state that asks them. */
  bindings(): Record<string, string> {
    const bindings: Record<string, string> = {};
    for (const parked of this.#parked.values()) bindings[parked.key] = parked.digest;
    return bindings;
  }

  /**
   * Answers the waiting approvals the client answered among those `asked` (the bindings of the
   * state it retried with): an answer to any other key, also to an approval that came after the
   * state was issued and that the client was not shown, is ignored (as MRTR asks of unknown keys).
   */
  async answer(responses: Record<string, unknown>, asked: Record<string, string>): Promise<void> {
    const stored: Record<string, unknown> = {};
    for (const [key, response] of Object.entries(responses)) {
      const parked = this.#parked.get(key);
      if (parked === undefined || !Object.hasOwn(asked, key) || asked[key] !== parked.digest) continue;
      // A recorded approval is answered through its record: once, whichever instance takes the answer first.
      if (parked.stored) stored[key] = response;
      else parked.respond(parseApprovalAnswer(response));
    }
    const tasks = this.#options.tasks;
    if (tasks === undefined || this.#taskId === undefined || Object.keys(stored).length === 0) return;
    await tasks.answer(this.#taskId, stored);
  }

  /** Denies every waiting approval, and any asked later, with `reason` (nobody can answer them any more). */
  close(reason: string): void {
    this.#closedReason ??= reason;
    for (const parked of [...this.#parked.values()]) parked.respond({ decision: 'denied', reason });
  }
}
