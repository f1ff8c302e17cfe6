import { z } from 'zod';
import { classifyMessage, RpcErrorCode, type ErrorObject, type IncomingMessage, type RequestId } from '../protocol/jsonrpc.js';
import type { MessageTransport } from '../transport/transport.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
// The constant from config, not client-connect.ts: that module brings in the exec-server
// protocol's schemas, which a server start does not need until an environment connects.
import { DEFAULT_INITIALIZE_TIMEOUT_MS } from '../config/environment-spec.js';
import type { ExecConnector } from './client-connect.js';
import { RemoteError, SharedUser, type SharedSession } from './shared-user.js';

/** Requests one user of a shared connection may have unanswered at once; more are refused locally. */
const MAX_IN_FLIGHT_PER_USER = 1024;
/** File handles and watches one user may hold at once (the server's own ids are mapped to these). */
const MAX_MAPPED_IDS_PER_USER = 4096;
/** The server's limit on client-chosen ids, which a user's prefix must still fit in. */
const MAX_CLIENT_ID_LENGTH = 256;
/** Id fields the client chooses as strings, scoped to the session: each user gets its own prefix on them. */
const PREFIXED_FIELDS = ['processId', 'writeId', 'requestId'] as const;
/** Server messages from this size on take the in-place path when their shape allows (see `#forwardLarge`). */
const LARGE_MESSAGE_BYTES = 64 * 1024;
/** How far into a large message its head is looked for. */
const HEAD_BYTES = 256;
/** The start of a response as both servers write it: the id, then the result. */
const RESPONSE_HEAD = /^\{"id":(\d{1,15}),"result":/;
/** The start of a process output notification as both servers write it, up to the user's prefix of the process id. */
const OUTPUT_HEAD = /^\{"method":"process\/output","params":\{"processId":"([0-9a-z]{1,12}~)/;
/** Methods whose result carries ids to map back or whose answer updates the maps: never forwarded in place. */
const MAPPED_RESULTS = new Set(['process/start', 'fs/open', 'fs/close']);

const ParamsSchema = z.record(z.string(), z.unknown());
const InitializeResultSchema = z.looseObject({ sessionId: z.string() });

type Params = Record<string, unknown>;

/** What an upstream request id stands for: a user's request, or the connector's own cleanup. */
interface Pending {
  user?: SharedUser;
  id: RequestId;
  method: string;
  /** The upstream file handle a `fs/open` or `fs/close` is about. */
  handle?: string;
}

/**
 * One exec-server connection (a stdio child: it serves one connection and one session) shared
 * by every caller of the connector: each gets a transport of its own that behaves as a separate
 * connection with the same session. `initialize` is sent once, with the first caller's client
 * name, and each caller's is answered with its result. Request ids are remapped, and the ids a
 * client chooses in the session (process, write and HTTP request ids) carry a per-caller prefix,
 * file handles and watches are mapped to ids of the connector's own, so two callers never meet:
 * a response, a notification and a server request reach only the caller they belong to. When a
 * caller's transport closes, the processes it started are terminated and its file handles
 * closed; the child ends when the last caller is gone (the next caller starts a new one).
 */
export function sharedConnector(inner: ExecConnector, logger: Logger = silentLogger): ExecConnector {
  let shared: Promise<SharedConnection> | undefined;
  return {
    label: inner.label,
    resumable: inner.resumable,
    connect: async () => {
      for (;;) {
        const current = (shared ??= SharedConnection.open(inner, logger, () => (shared = undefined)));
        try {
          const connection = await current;
          const user = connection.attach();
          if (user !== undefined) return user;
        } catch (error) {
          if (shared === current) shared = undefined;
          throw error;
        }
        // The connection was closing: the next round opens a new one.
        if (shared === current) shared = undefined;
      }
    },
  };
}

class SharedConnection implements SharedSession {
  readonly #upstream: MessageTransport;
  readonly #logger: Logger;
  readonly #label: string;
  readonly #onGone: () => void;
  readonly #users = new Set<SharedUser>();
  readonly #byPrefix = new Map<string, SharedUser>();
  readonly #pending = new Map<number, Pending>();
  /** Server → client requests (network policy) by their id, with the user asked. */
  readonly #serverRequests = new Map<RequestId, SharedUser>();
  readonly #handles = new Map<string, { user: SharedUser; id: string }>();
  readonly #watches = new Map<number, { user: SharedUser; id: number }>();
  #nextRequestId = 0;
  #nextUser = 0;
  #nextHandle = 0;
  #nextWatch = 0;
  #initialized?: Promise<unknown>;
  #closed = false;

  private constructor(upstream: MessageTransport, label: string, logger: Logger, onGone: () => void) {
    this.#upstream = upstream;
    this.#label = label;
    this.#logger = logger;
    this.#onGone = onGone;
    const receive = (message: string | Buffer): void => {
      if (message.length < LARGE_MESSAGE_BYTES || !this.#forwardLarge(message)) this.#fromUpstream(message.toString());
    };
    upstream.onmessage = receive;
    upstream.onbytes = receive;
    upstream.onclose = (reason) => this.#ended(reason);
    upstream.start();
  }

  static async open(inner: ExecConnector, logger: Logger, onGone: () => void): Promise<SharedConnection> {
    return new SharedConnection(await inner.connect(), inner.label, logger, onGone);
  }

  /** A new user's transport; undefined once this connection is closing. */
  attach(): SharedUser | undefined {
    if (this.#closed) return undefined;
    const user = new SharedUser(this, (++this.#nextUser).toString(36) + '~', this.#label);
    this.#users.add(user);
    this.#byPrefix.set(user.prefix, user);
    return user;
  }

  diagnostics(): string | undefined {
    return this.#upstream.diagnostics?.();
  }

  /** The session's `initialize` result, asked once: a stdio exec-server has one session and no resume. */
  initialize(clientName: string): Promise<unknown> {
    this.#initialized ??= new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new LocalError(LocalErrorCode.InitializeTimeout, `exec-server ${this.#label} did not answer initialize within ${DEFAULT_INITIALIZE_TIMEOUT_MS} ms`));
        void this.#upstream.close();
      }, DEFAULT_INITIALIZE_TIMEOUT_MS);
      const id = this.#send('initialize', { clientName, resumeSessionId: null }, { id: 'initialize', method: 'initialize' });
      this.#settleInitialize = (outcome) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        if ('error' in outcome) {
          reject(new RemoteError(outcome.error));
          return;
        }
        const parsed = InitializeResultSchema.safeParse(outcome.result);
        if (!parsed.success) {
          reject(new LocalError(LocalErrorCode.ProcessFailed, `exec-server ${this.#label} answered initialize without a sessionId`));
          return;
        }
        this.#upstream.send(JSON.stringify({ method: 'initialized', params: {} }));
        resolve(parsed.data);
      };
    });
    return this.#initialized;
  }

  #settleInitialize?: (outcome: { result: unknown } | { error: ErrorObject }) => void;

  /** Forwards one request of `user`, its ids mapped; answers locally what must not reach the server. */
  request(user: SharedUser, id: RequestId, method: string, rawParams: unknown): void {
    if (user.inFlight >= MAX_IN_FLIGHT_PER_USER) {
      user.answerError(id, RpcErrorCode.InvalidRequest, `too many requests in flight on a shared connection (at most ${MAX_IN_FLIGHT_PER_USER})`);
      return;
    }
    const parsed = rawParams === undefined || rawParams === null ? { success: true as const, data: {} } : ParamsSchema.safeParse(rawParams);
    if (!parsed.success) {
      user.answerError(id, RpcErrorCode.InvalidParams, `${method}: params must be an object`);
      return;
    }
    const params: Params = { ...parsed.data };
    for (const field of PREFIXED_FIELDS) {
      const value = params[field];
      if (typeof value !== 'string') continue;
      if (value.length + user.prefix.length > MAX_CLIENT_ID_LENGTH) {
        user.answerError(id, RpcErrorCode.InvalidParams, `${method}: ${field} must be at most ${MAX_CLIENT_ID_LENGTH - user.prefix.length} characters on a shared connection`);
        return;
      }
      params[field] = user.prefix + value;
    }
    const pending: Pending = { user, id, method };
    if (typeof params.handleId === 'string') {
      const mapped = this.#mapHandle(user, method, params.handleId);
      if (typeof mapped !== 'string') {
        user.answerError(id, mapped.code, mapped.message);
        return;
      }
      params.handleId = mapped;
      pending.handle = mapped;
    }
    if (method === 'fs/watchMissing' && typeof params.watchId === 'number') {
      if (user.watches.has(params.watchId) || user.watches.size >= MAX_MAPPED_IDS_PER_USER) {
        // As the server answers a watch id in use: no error, not watching.
        user.answer(id, { watching: false });
        return;
      }
      const upstreamWatch = ++this.#nextWatch;
      user.watches.set(params.watchId, upstreamWatch);
      this.#watches.set(upstreamWatch, { user, id: params.watchId });
      params.watchId = upstreamWatch;
    }
    user.inFlight++;
    this.#send(method, params, pending);
  }

  /** A user's answer to a server request sent to it; anyone else's is refused by the caller. */
  answerServerRequest(user: SharedUser, message: IncomingMessage & { kind: 'result' | 'error' }): boolean {
    if (message.id === null || this.#serverRequests.get(message.id) !== user) return false;
    this.#serverRequests.delete(message.id);
    this.#upstream.send(JSON.stringify(message.kind === 'result' ? { id: message.id, result: message.result } : { id: message.id, error: message.error }));
    return true;
  }

  /**
   * A user went away: what it started is stopped, the rest of the session is untouched. Resolves
   * once the child is gone when this was the last user.
   */
  async detach(user: SharedUser): Promise<void> {
    if (!this.#users.delete(user)) return;
    this.#byPrefix.delete(user.prefix);
    for (const [upstreamId, pending] of this.#pending) if (pending.user === user) this.#pending.set(upstreamId, { ...pending, user: undefined });
    for (const [id, asked] of this.#serverRequests) {
      if (asked !== user) continue;
      this.#serverRequests.delete(id);
      this.#upstream.send(JSON.stringify({ id, error: { code: RpcErrorCode.InternalError, message: 'the client that was asked went away' } }));
    }
    for (const upstreamWatch of user.watches.values()) this.#watches.delete(upstreamWatch);
    if (this.#users.size === 0) {
      // The last user: closing the child ends its session and every process in it.
      await this.#close();
      return;
    }
    for (const processId of user.liveProcesses) this.#send('process/terminate', { processId }, { id: 'cleanup', method: 'process/terminate' });
    for (const [handle, owner] of this.#handles) if (owner.user === user) this.#send('fs/close', { handleId: handle }, { id: 'cleanup', method: 'fs/close', handle });
  }

  #mapHandle(user: SharedUser, method: string, handleId: string): string | { code: number; message: string } {
    const known = user.handles.get(handleId);
    if (method === 'fs/open') {
      if (known !== undefined) return { code: RpcErrorCode.InvalidRequest, message: `file handle \`${handleId}\` already exists` };
      if (user.handles.size >= MAX_MAPPED_IDS_PER_USER)
        return { code: RpcErrorCode.InvalidRequest, message: `too many open file handles on a shared connection (at most ${MAX_MAPPED_IDS_PER_USER})` };
      const mapped = `h${(++this.#nextHandle).toString(36)}`;
      user.handles.set(handleId, mapped);
      this.#handles.set(mapped, { user, id: handleId });
      return mapped;
    }
    return known ?? { code: RpcErrorCode.NotFound, message: `unknown file handle \`${handleId}\`` };
  }

  #send(method: string, params: Params, pending: Pending): number {
    const upstreamId = ++this.#nextRequestId;
    this.#pending.set(upstreamId, pending);
    this.#upstream.send(JSON.stringify({ id: upstreamId, method, params }));
    return upstreamId;
  }

  /**
   * Forwards a large response or output notification with only its id edited, when it starts in
   * the exact shape both servers write: parsing and re-serializing a file's or an output's bytes
   * would cost more than the rest of their trip. False: the message takes the parsed path.
   */
  #forwardLarge(message: string | Buffer): boolean {
    const head = typeof message === 'string' ? message.slice(0, HEAD_BYTES) : message.subarray(0, HEAD_BYTES).toString('latin1');
    const rest = (from: number): string | Buffer => (typeof message === 'string' ? message.slice(from) : message.subarray(from));
    const response = RESPONSE_HEAD.exec(head);
    if (response?.[1] !== undefined) {
      const upstreamId = Number(response[1]);
      const pending = this.#pending.get(upstreamId);
      const user = pending?.user;
      if (pending === undefined || user === undefined || MAPPED_RESULTS.has(pending.method)) return false;
      this.#pending.delete(upstreamId);
      user.inFlight--;
      // `{"id":` is 6 characters; what follows the id (`,"result":…`) is kept as it came.
      user.deliverRaw(`{"id":${JSON.stringify(pending.id)}`, rest(6 + response[1].length));
      return true;
    }
    const output = OUTPUT_HEAD.exec(head);
    const user = output?.[1] === undefined ? undefined : this.#byPrefix.get(output[1]);
    if (output === null || user === undefined) return false;
    user.deliverRaw(head.slice(0, output[0].length - user.prefix.length), rest(output[0].length));
    return true;
  }

  #fromUpstream(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      this.#logger.warn('shared exec-server connection: unreadable message from the server', { server: this.#label, error: errorMessage(error) });
      return;
    }
    const message = classifyMessage(value);
    switch (message.kind) {
      case 'result':
      case 'error':
        this.#response(message);
        return;
      case 'notification':
        this.#notification(message.method, message.params);
        return;
      case 'request':
        this.#serverRequest(message.id, message.method, message.params);
        return;
      case 'invalid':
        this.#logger.warn('shared exec-server connection: invalid message from the server', { server: this.#label, reason: message.reason });
    }
  }

  #response(message: IncomingMessage & { kind: 'result' | 'error' }): void {
    const upstreamId = message.id;
    const pending = typeof upstreamId === 'number' ? this.#pending.get(upstreamId) : undefined;
    if (pending === undefined || typeof upstreamId !== 'number') return;
    if (pending.method === 'initialize' && pending.user === undefined && pending.id === 'initialize') {
      this.#settleInitialize?.(message.kind === 'result' ? { result: message.result } : { error: message.error });
      return;
    }
    this.#pending.delete(upstreamId);
    if (pending.handle !== undefined && (pending.method === 'fs/close' || (pending.method === 'fs/open' && message.kind === 'error'))) {
      const owner = this.#handles.get(pending.handle);
      this.#handles.delete(pending.handle);
      if (owner !== undefined) owner.user.handles.delete(owner.id);
    }
    const user = pending.user;
    if (user === undefined) {
      if (pending.id !== 'cleanup' && message.kind === 'result') this.#stopOrphan(pending, message.result);
      return;
    }
    user.inFlight--;
    if (message.kind === 'error') {
      user.deliver({ id: pending.id, error: { ...message.error, message: withoutPrefix(message.error.message, user.prefix) } });
      return;
    }
    const parsed = ParamsSchema.safeParse(message.result);
    if (!parsed.success) {
      user.deliver({ id: pending.id, result: message.result });
      return;
    }
    const result: Params = { ...parsed.data };
    if (pending.method === 'process/start' && typeof result.processId === 'string') {
      user.liveProcesses.add(result.processId);
      result.processId = result.processId.slice(user.prefix.length);
    }
    if (typeof result.handleId === 'string') result.handleId = this.#handles.get(result.handleId)?.id ?? result.handleId;
    user.deliver({ id: pending.id, result });
  }

  /** A process started or a file opened for a user that went away while it was asked: nobody will stop it otherwise. */
  #stopOrphan(pending: Pending, result: unknown): void {
    const parsed = ParamsSchema.safeParse(result);
    if (!parsed.success) return;
    if (pending.method === 'process/start' && typeof parsed.data.processId === 'string') {
      this.#send('process/terminate', { processId: parsed.data.processId }, { id: 'cleanup', method: 'process/terminate' });
    } else if (pending.method === 'fs/open' && pending.handle !== undefined) {
      this.#send('fs/close', { handleId: pending.handle }, { id: 'cleanup', method: 'fs/close', handle: pending.handle });
    }
  }

  #notification(method: string, rawParams: unknown): void {
    const parsed = ParamsSchema.safeParse(rawParams);
    if (!parsed.success) return;
    const params: Params = { ...parsed.data };
    let user: SharedUser | undefined;
    if (method === 'fs/missingChanged' && typeof params.watchId === 'number') {
      const watch = this.#watches.get(params.watchId);
      user = watch?.user;
      params.watchId = watch?.id;
    } else {
      user = this.#owner(params);
    }
    if (user === undefined) return;
    if (method === 'process/closed' && typeof params.processId === 'string') user.liveProcesses.delete(user.prefix + params.processId);
    user.deliver({ method, params });
  }

  #serverRequest(id: RequestId, method: string, rawParams: unknown): void {
    const parsed = ParamsSchema.safeParse(rawParams);
    const params: Params = parsed.success ? { ...parsed.data } : {};
    const user = this.#owner(params);
    if (user === undefined) {
      this.#upstream.send(JSON.stringify({ id, error: { code: RpcErrorCode.MethodNotFound, message: `no client of this connection handles \`${method}\`` } }));
      return;
    }
    this.#serverRequests.set(id, user);
    user.deliver({ id, method, params });
  }

  /** The user whose prefixed ids `params` carries, with the prefix taken off them. */
  #owner(params: Params): SharedUser | undefined {
    let owner: SharedUser | undefined;
    for (const field of PREFIXED_FIELDS) {
      const value = params[field];
      if (typeof value !== 'string') continue;
      const cut = value.indexOf('~');
      const user = cut < 0 ? undefined : this.#byPrefix.get(value.slice(0, cut + 1));
      if (user === undefined || (owner !== undefined && owner !== user)) return undefined;
      owner = user;
      params[field] = value.slice(cut + 1);
    }
    return owner;
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#onGone();
    await this.#upstream.close();
  }

  #ended(reason?: Error): void {
    this.#closed = true;
    this.#onGone();
    this.#settleInitialize?.({
      error: { code: RpcErrorCode.InternalError, message: `exec-server ${this.#label} closed the connection${reason === undefined ? '' : `: ${reason.message}`}` },
    });
    for (const user of [...this.#users]) user.ended(reason);
    this.#users.clear();
  }
}

/**
 * A server's error message as the user would have had it on a connection of its own: the ids it
 * echoes (`unknown process id 1~p1`) lose the user's prefix. A prefix is a base-36 number and `~`
 * (no pattern characters), so only one that starts a word is taken off.
 */
function withoutPrefix(message: string, prefix: string): string {
  return message.replace(new RegExp(`(^|[^0-9a-z~])${prefix}`, 'g'), '$1');
}
