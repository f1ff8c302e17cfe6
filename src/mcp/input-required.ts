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
 * (its turn went on) comes back the same way on the client's call naming the thread (modern-era.ts). The state is only a reference to the call
 * kept here (the turn lives in this process), sealed with an HMAC under a key made per process, so
 * a client cannot forge, alter or move it to another call, and it expires.
 */

/** What a sealed `requestState` says. */
const StatePayloadSchema = z.strictObject({
  /** The format; anything else is refused. */
  v: z.literal(1),
  /** The continued call (see {@link PendingCall}). */
  call: z.string(),
  /** The tool and a digest of its arguments: the state continues only the same request. */
  tool: z.string(),
  args: z.string(),
  /** Epoch milliseconds after which the state is refused. */
  expires: z.number(),
});
type StatePayload = z.infer<typeof StatePayloadSchema>;

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

/** A digest of a call's arguments, bound into its state. */
export function argumentsDigest(args: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalJson(args)).digest('base64url');
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

  seal(payload: Omit<StatePayload, 'v' | 'expires'>, ttlMs: number): string {
    const body = Buffer.from(JSON.stringify({ v: 1, ...payload, expires: this.#now() + ttlMs } satisfies StatePayload)).toString('base64url');
    return `${body}.${this.#mac(body)}`;
  }

  /** The payload of a state this codec sealed for `tool` with `args`; throws a {@link RequestStateError} saying why not. */
  open(state: string, tool: string, args: Record<string, unknown>): StatePayload {
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
    if (payload.data.expires <= this.#now()) throw new RequestStateError('requestState has expired: call the tool again without it');
    if (payload.data.tool !== tool || payload.data.args !== argumentsDigest(args)) {
      throw new RequestStateError(`requestState belongs to another request: retry the same tools/call (${payload.data.tool}, same arguments) it was given for`);
    }
    return payload.data;
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}

/** One approval waiting for the client's answer. */
interface Parked {
  key: string;
  request: ApprovalRequest;
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
  /** Makes this gate's keys unlike any other gate's, so one `inputRequests` can hold the approvals of several gates. */
  readonly #keyPrefix = `approval-${randomBytes(4).toString('hex')}-`;
  #count = 0;
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
    this.#count += 1;
    const key = `${this.#keyPrefix}${this.#count}`;
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
      this.#parked.set(key, { key, request, respond: settle });
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

  /** Answers the waiting approvals the client answered (other keys are ignored, as MRTR asks). */
  answer(responses: Record<string, unknown>): void {
    for (const [key, response] of Object.entries(responses)) this.#parked.get(key)?.respond(parseApprovalAnswer(response));
  }

  /** Denies every waiting approval, and any asked later, with `reason` (nobody can answer them any more). */
  close(reason: string): void {
    this.#closedReason ??= reason;
    for (const parked of [...this.#parked.values()]) parked.respond({ decision: 'denied', reason });
  }
}
