import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { ApprovalDecision, ApprovalRequest, Approver } from '../agent/approvals.js';
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
  /** The approvals asked, by key, each as {@link approvalDigest} of its request. */
  approvals: Record<string, string>;
}

/** What an opened `requestState` continues. */
export interface OpenedRequestState {
  call: string;
  round: number;
  approvals: Record<string, string>;
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

/** The digest of a principal; a fixed tag for none, which no principal's digest equals. */
function principalDigest(principal: string | undefined): string {
  return principal === undefined ? 'none' : digest(`principal:${principal}`);
}

/** Seals and opens `requestState` values with one HMAC-SHA256 key. */
export class RequestStateCodec {
  readonly #key: Buffer;
  readonly #now: () => number;

  /** `key` defaults to 32 random bytes, so no state outlives the process that made it. */
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
    return { call: data.call, round: data.round, approvals: data.approvals };
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}

/** One approval waiting for the client's answer. */
interface Parked {
  key: string;
  request: ApprovalRequest;
  /** {@link approvalDigest} of the request, which a state asking it binds. */
  digest: string;
  respond: (decision: ApprovalDecision) => void;
}

/** Options of {@link ApprovalGate}. */
export interface ApprovalGateOptions {
  /** How long an approval waits for the client's answer before it is denied. */
  timeoutMs: number;
  /** Whether the client can show a form elicitation (else every approval is denied at once). */
  canElicit: boolean;
  logger?: Logger;
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

  constructor(options: ApprovalGateOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
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
    return new Promise<ApprovalDecision>((resolve) => {
      const timer = setTimeout(() => settle({ decision: 'denied', reason: `no answer to the approval request within ${this.#options.timeoutMs} ms` }), this.#options.timeoutMs);
      const onAbort = (): void => settle({ decision: 'abort', reason: 'the turn was interrupted while waiting for approval' });
      const settle = (decision: ApprovalDecision): void => {
        if (!this.#parked.delete(key)) return;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#logger.info('approval answered', { kind: request.kind, environment: request.environmentId, decision: decision.decision });
        resolve(decision);
      };
      this.#parked.set(key, { key, request, digest: approvalDigest(request), respond: settle });
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      for (const wake of [...this.#onParked]) wake();
    });
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
    for (const parked of this.#parked.values()) requests[parked.key] = { method: 'elicitation/create', params: approvalElicitationParams(parked.request) };
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
  answer(responses: Record<string, unknown>, asked: Record<string, string>): void {
    for (const [key, response] of Object.entries(responses)) {
      const parked = this.#parked.get(key);
      if (parked !== undefined && Object.hasOwn(asked, key) && asked[key] === parked.digest) parked.respond(parseApprovalAnswer(response));
    }
  }

  /** Denies every waiting approval, and any asked later, with `reason` (nobody can answer them any more). */
  close(reason: string): void {
    this.#closedReason ??= reason;
    for (const parked of [...this.#parked.values()]) parked.respond({ decision: 'denied', reason });
  }
}
