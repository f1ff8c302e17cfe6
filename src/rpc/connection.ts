import type { z } from 'zod';
import { classifyMessage, RpcErrorCode, type RequestId } from '../protocol/jsonrpc.js';
import type { MethodSpec, NotificationSpec } from '../protocol/jsonrpc.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from '../protocol/limits.js';
import { decodeUtf8 } from '../transport/text.js';
import { MessageTooLargeError, type MessageTransport } from '../transport/transport.js';
import { abortReason } from '../util/abort.js';
import { decodeBase64Bytes } from '../util/base64.js';
import { deferred } from '../util/deferred.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { WithBase64Field } from './base64-field.js';
import { classifyFast } from './classify-fast.js';
import { describeParamsError, RpcError } from './errors.js';
import { LARGE_FIELD_PLACEHOLDER, splitLargeString } from './large-base64.js';
import { readMessageHead } from './message-head.js';
import { Outbox } from './outbox.js';
import { PendingRequests } from './pending-requests.js';

/** Default bound on an outgoing request that names no timeout of its own. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

/** Context handed to a request handler. */
export interface RequestContext {
  readonly id: RequestId;
  /** Aborts when the connection closes. */
  readonly signal: AbortSignal;
}

/**
 * Handles one request; throw an {@link RpcError} for a specific wire error. A result carrying a
 * large base64 field may be returned as made by `withBase64Bytes`.
 */
export type RequestHandler<P, R> = (params: P, context: RequestContext) => Promise<R | WithBase64Field<R>> | R | WithBase64Field<R>;

/** Options of {@link RpcConnection}. */
export interface RpcConnectionOptions {
  logger?: Logger;
  /** Answer for requests with no handler. @default "method not found: <method>" */
  methodNotFoundMessage?: (method: string) => string;
  /**
   * Runs before dispatch of every request; a returned error is sent instead. The exec server uses
   * it for handshake ordering.
   */
  guard?: (method: string) => RpcError | undefined;
  /** A notification with no handler arrived. @default ignored */
  onUnknownNotification?: (method: string) => void;
  /** A response arrived for no pending request. @default ignored */
  onUnsolicitedResponse?: () => void;
  /**
   * Largest message sent, in bytes: what the peer accepts. A larger request fails before it is
   * sent, a larger result is answered with an error instead, a larger notification is dropped.
   * @default DEFAULT_MAX_MESSAGE_BYTES
   */
  maxMessageBytes?: number;
}

/** Per-call options of {@link RpcConnection.request}. */
export interface RequestOptions {
  signal?: AbortSignal;
  /** @default DEFAULT_REQUEST_TIMEOUT_MS */
  timeoutMs?: number;
}

/**
 * Params whose base64 field `K` is either its text or, when the connection already decoded it
 * (strictly) from a large message, the bytes.
 */
export type WithBytesField<T, K extends keyof T> = { [F in keyof T]: F extends K ? string | Buffer : T[F] };

type AnyRequestHandler = {
  schema: z.ZodType;
  handler: (params: unknown, context: RequestContext) => unknown;
  /** The params field a large message may deliver decoded. */
  bytesField?: string;
};
type AnyNotificationHandler = { schema: z.ZodType; handler: (params: unknown) => void; bytesField?: string };

/**
 * One JSON-RPC connection in the Codex "lite" dialect, for either side: correlates responses,
 * validates params and results against method specs, dispatches handlers concurrently (a slow
 * handler never blocks the others), and tears everything down on close.
 */
export class RpcConnection {
  readonly #transport: MessageTransport;
  readonly #options: RpcConnectionOptions;
  readonly #logger: Logger;
  readonly #outbox: Outbox;
  readonly #pending = new PendingRequests();
  readonly #requestHandlers = new Map<string, AnyRequestHandler>();
  readonly #notificationHandlers = new Map<string, AnyNotificationHandler>();
  readonly #lifetime = new AbortController();
  readonly #closed = deferred<Error | undefined>();
  /** Whether any handler was registered `…WithBytes` (else no message takes that path). */
  #takesBytes = false;
  #isClosed = false;
  #started = false;

  constructor(transport: MessageTransport, options: RpcConnectionOptions = {}) {
    this.#transport = transport;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#outbox = new Outbox(transport, options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  }

  /** The transport's label, for messages. */
  get label(): string {
    return this.#transport.label;
  }

  /** True once the connection has closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Resolves when the connection closes, with the reason when the peer or the medium closed it. */
  get closed(): Promise<Error | undefined> {
    return this.#closed.promise;
  }

  /** Aborts when the connection closes. */
  get signal(): AbortSignal {
    return this.#lifetime.signal;
  }

  /** True while the transport's buffer is above its high-water mark. */
  get congested(): boolean {
    return this.#outbox.congested;
  }

  /** Resolves once the transport has drained (at once when not congested or closed). */
  waitForDrain(): Promise<void> {
    return this.#outbox.waitForDrain();
  }

  /** Starts reading. Register handlers first. */
  start(): void {
    if (this.#started) throw new LocalError(LocalErrorCode.ProtocolViolation, 'connection already started');
    this.#started = true;
    this.#transport.onmessage = (text) => this.#onMessage(text);
    this.#transport.onbytes = (bytes) => this.#onBytes(bytes);
    this.#transport.onvalue = (value) => this.#onValue(value);
    this.#transport.onerror = (error) => this.#onTransportError(error);
    this.#transport.onclose = (reason) => this.#onClose(reason);
    this.#transport.ondrain = () => this.#outbox.drained();
    this.#transport.start();
  }

  /** Registers the handler of `spec.method`; params are validated against `spec.params`. */
  onRequest<P extends z.ZodType, R extends z.ZodType>(spec: MethodSpec<P, R>, handler: RequestHandler<z.output<P>, z.input<R>>): void {
    this.#requestHandlers.set(spec.method, { schema: spec.params, handler: handler as AnyRequestHandler['handler'] });
  }

  /** Registers the handler of a notification; invalid params are logged and dropped. */
  onNotification<P extends z.ZodType>(spec: NotificationSpec<P>, handler: (params: z.output<P>) => void): void {
    this.#notificationHandlers.set(spec.method, { schema: spec.params, handler: handler as (params: unknown) => void });
  }

  /**
   * Registers the handler of `spec.method`, whose params carry the base64 field `key` (a file's
   * contents, say). From a large message the connection decodes that field while parsing, never
   * making its megabytes of text into a string, and the handler gets a Buffer; otherwise it gets
   * the text as usual, valid or not (reporting invalid base64 stays the handler's job). The
   * field's schema must accept any string.
   */
  onRequestWithBytes<P extends z.ZodType, R extends z.ZodType, K extends keyof z.output<P> & string>(
    spec: MethodSpec<P, R>,
    key: K,
    handler: RequestHandler<WithBytesField<z.output<P>, K>, z.input<R>>,
  ): void {
    this.#requestHandlers.set(spec.method, { schema: spec.params, handler: handler as AnyRequestHandler['handler'], bytesField: key });
    this.#takesBytes = true;
  }

  /** {@link onNotification} for params with the base64 field `key`, as {@link onRequestWithBytes} (command output). */
  onNotificationWithBytes<P extends z.ZodType, K extends keyof z.output<P> & string>(
    spec: NotificationSpec<P>,
    key: K,
    handler: (params: WithBytesField<z.output<P>, K>) => void,
  ): void {
    this.#notificationHandlers.set(spec.method, { schema: spec.params, handler: handler as (params: unknown) => void, bytesField: key });
    this.#takesBytes = true;
  }

  /**
   * Sends a request and resolves with its result, validated against `spec.result`. A request
   * larger than the message limit fails with FRAME_TOO_LARGE, unsent.
   */
  request<P extends z.ZodType, R extends z.ZodType>(spec: MethodSpec<P, R>, params: z.input<P>, options: RequestOptions = {}): Promise<z.output<R>> {
    if (this.#isClosed) {
      return Promise.reject(new LocalError(LocalErrorCode.ConnectionClosed, `cannot send ${spec.method}: connection ${this.label} is closed`));
    }
    if (options.signal?.aborted === true) return Promise.reject(abortReason(options.signal));
    const id = this.#pending.nextId();
    const text = JSON.stringify({ id, method: spec.method, params });
    const bytes = this.#outbox.bytesOverLimit(text);
    if (bytes !== undefined) {
      return Promise.reject(
        new LocalError(
          LocalErrorCode.FrameTooLarge,
          `the ${spec.method} request is ${bytes} bytes, over the ${this.#outbox.maxMessageBytes}-byte message limit of ${this.label}; it was not sent`,
        ),
      );
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const response = this.#pending.wait(id, spec.method, {
      timeoutMs,
      signal: options.signal,
      onTimeout: () => new LocalError(LocalErrorCode.RequestTimeout, `${spec.method} timed out after ${timeoutMs} ms on ${this.label}`),
      parse: (result): z.output<R> => {
        const parsed = spec.result.safeParse(result);
        if (parsed.success) return parsed.data;
        throw new LocalError(LocalErrorCode.ProtocolViolation, `invalid ${spec.method} result from ${this.label}: ${describeParamsError(parsed.error)}`);
      },
    });
    this.#outbox.sendText(text);
    return response;
  }

  /**
   * Sends a notification; params carrying a large base64 field may be wrapped by
   * `withBase64Bytes`. Returns false when the transport is congested (the message is queued).
   */
  notify<P extends z.ZodType>(spec: NotificationSpec<P>, params: z.input<P> | WithBase64Field<z.input<P>>): boolean {
    if (params instanceof WithBase64Field) {
      const prefix = `{"method":${JSON.stringify(spec.method)},"params":`;
      const bytes = params.byteLength(prefix, '}');
      if (bytes <= this.#outbox.maxMessageBytes) return this.#outbox.sendBase64Message(params, prefix);
      params.settle();
      this.#notificationTooLarge(spec.method, bytes);
      return true;
    }
    const text = JSON.stringify({ method: spec.method, params });
    const bytes = this.#outbox.bytesOverLimit(text);
    if (bytes === undefined) return this.#outbox.sendText(text);
    this.#notificationTooLarge(spec.method, bytes);
    return true;
  }

  #notificationTooLarge(method: string, bytes: number): void {
    // Nothing we notify comes near the limit (output chunks, body deltas): a bug to see in the log.
    this.#logger.error(`dropped a ${method} notification over the message limit`, { bytes, limit: this.#outbox.maxMessageBytes, to: this.label });
  }

  /** Closes the connection; idempotent. Pending requests reject with CONNECTION_CLOSED. */
  async close(): Promise<void> {
    await this.#transport.close();
    // A transport that was never started never calls back.
    this.#onClose(undefined);
  }

  /** Sends a small message of our own making (an error, a parse error): never near the limit. */
  #send(message: object): boolean {
    return this.#outbox.sendText(JSON.stringify(message));
  }

  /** Sends a handler's result; one over the message limit is answered with -32603 instead. */
  #sendResult(id: RequestId, method: string, result: unknown): void {
    if (result instanceof WithBase64Field) {
      const prefix = `{"id":${JSON.stringify(id)},"result":`;
      const bytes = result.byteLength(prefix, '}');
      if (bytes <= this.#outbox.maxMessageBytes) {
        this.#outbox.sendBase64Message(result, prefix);
        return;
      }
      result.settle();
      this.#resultTooLarge(id, method, bytes);
      return;
    }
    const text = JSON.stringify({ id, result: result ?? {} });
    const bytes = this.#outbox.bytesOverLimit(text);
    if (bytes === undefined) this.#outbox.sendText(text);
    else this.#resultTooLarge(id, method, bytes);
  }

  #resultTooLarge(id: RequestId, method: string, bytes: number): void {
    this.#logger.warn(`${method} result over the message limit`, { bytes, limit: this.#outbox.maxMessageBytes, to: this.label });
    const message = `the ${method} result is ${bytes} bytes, over the ${this.#outbox.maxMessageBytes}-byte message limit; it was not sent`;
    this.#send({ error: { code: RpcErrorCode.InternalError, message }, id });
  }

  #onBytes(bytes: Buffer): void {
    if (!this.#onLargeMessage(bytes)) this.#onMessage(decodeUtf8(bytes));
  }

  /**
   * The fast path for a large request or notification to a handler registered `…WithBytes`: the
   * large field is cut out, decoded from the bytes, and handed over as a Buffer. Returns false
   * (nothing done) whenever the message is anything else, and it is then parsed whole.
   */
  #onLargeMessage(bytes: Buffer): boolean {
    if (!this.#takesBytes) return false;
    const split = splitLargeString(bytes);
    if (split === undefined) return false;
    let value: unknown;
    try {
      value = JSON.parse(split.text);
    } catch {
      return false;
    }
    const message = classifyFast(value);
    if (message?.kind !== 'request' && message?.kind !== 'notification') return false;
    const bytesField = (message.kind === 'request' ? this.#requestHandlers : this.#notificationHandlers).get(message.method)?.bytesField;
    const params = message.params;
    if (bytesField === undefined || typeof params !== 'object' || params === null || (params as Record<string, unknown>)[bytesField] !== LARGE_FIELD_PLACEHOLDER) {
      return false;
    }
    // Strict base64 is what makes the substitution exact (see splitLargeString).
    const decoded = decodeBase64Bytes(split.field);
    if (decoded === undefined) return false;
    if (message.kind === 'request') this.#dispatchRequest(message.id, message.method, params, decoded);
    else this.#dispatchNotification(message.method, params, decoded);
    return true;
  }

  #onMessage(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      this.#sendParseError(errorMessage(error));
      return;
    }
    this.#onValue(value);
  }

  /** A message parsed, or handed over as a value by an in-process peer. */
  #onValue(value: unknown): void {
    const message = classifyFast(value) ?? classifyMessage(value);
    switch (message.kind) {
      case 'invalid':
        this.#sendParseError(message.reason);
        return;
      case 'request':
        this.#dispatchRequest(message.id, message.method, message.params);
        return;
      case 'notification':
        this.#dispatchNotification(message.method, message.params);
        return;
      case 'result':
        if (!this.#pending.resolve(message.id, message.result) && !this.#isLate(message.id)) this.#unsolicited();
        return;
      case 'error': {
        const error = RpcError.fromWire(message.error.code, message.error.message, message.error.data);
        if (message.id === null || (!this.#pending.reject(message.id, error) && !this.#isLate(message.id))) {
          this.#logger.warn('error response for no pending request', { from: this.label, error: message.error });
          this.#unsolicited();
        }
        return;
      }
    }
  }

  /** True (and noted at debug level) when `id` answers a request given up on by its deadline or signal: late, not unsolicited. */
  #isLate(id: RequestId): boolean {
    const method = this.#pending.takeAbandoned(id);
    if (method === undefined) return false;
    this.#logger.debug('dropped the late response to a request given up on', { from: this.label, id, method });
    return true;
  }

  #sendParseError(reason: string): void {
    this.#send({ error: { code: RpcErrorCode.InvalidRequest, message: `failed to parse JSON-RPC message from ${this.label}: ${reason}` }, id: -1 });
  }

  #unsolicited(): void {
    this.#options.onUnsolicitedResponse?.();
  }

  /** `decoded`: the bytes of the handler's bytes field, whose text in `params` is the placeholder. */
  #dispatchRequest(id: RequestId, method: string, params: unknown, decoded?: Buffer): void {
    this.#logger.trace('request', { method, id, from: this.label });
    // The guard runs first: handlers may be registered only once the handshake is done.
    const refusal = this.#options.guard?.(method);
    if (refusal !== undefined) {
      this.#send({ error: refusal.toJSON(), id });
      return;
    }
    const entry = this.#requestHandlers.get(method);
    if (entry === undefined) {
      const message = this.#options.methodNotFoundMessage?.(method) ?? `method not found: ${method}`;
      this.#send({ error: { code: RpcErrorCode.MethodNotFound, message }, id });
      return;
    }
    const parsed = entry.schema.safeParse(params ?? {});
    if (!parsed.success) {
      this.#send({ error: { code: RpcErrorCode.InvalidParams, message: describeParamsError(parsed.error) }, id });
      return;
    }
    if (decoded !== undefined && entry.bytesField !== undefined) (parsed.data as Record<string, unknown>)[entry.bytesField] = decoded;
    const context: RequestContext = { id, signal: this.#lifetime.signal };
    // Handlers start synchronously, in arrival order, so state a handler sets before its first
    // await (the handshake, a reserved process id) is seen by the next message of the same write.
    // A synchronous throw takes the same path as a rejection.
    let started: unknown;
    try {
      started = entry.handler(parsed.data, context);
    } catch (error) {
      started = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    Promise.resolve(started)
      .then(
        (result) => this.#sendResult(id, method, result),
        (error: unknown) => {
          if (error instanceof RpcError) {
            this.#send({ error: error.toJSON(), id });
          } else {
            this.#logger.error(`${method} failed`, { error: errorMessage(error) });
            this.#send({ error: { code: RpcErrorCode.InternalError, message: errorMessage(error) }, id });
          }
        },
      )
      .catch((error: unknown) => this.#logger.error('failed to send a response', { error: errorMessage(error) }));
  }

  /** `decoded`: as for {@link #dispatchRequest}. */
  #dispatchNotification(method: string, params: unknown, decoded?: Buffer): void {
    const entry = this.#notificationHandlers.get(method);
    if (entry === undefined) {
      this.#options.onUnknownNotification?.(method);
      return;
    }
    const parsed = entry.schema.safeParse(params ?? {});
    if (!parsed.success) {
      this.#logger.warn(`dropped ${method} with invalid params`, { from: this.label, error: describeParamsError(parsed.error) });
      return;
    }
    if (decoded !== undefined && entry.bytesField !== undefined) (parsed.data as Record<string, unknown>)[entry.bytesField] = decoded;
    try {
      entry.handler(parsed.data);
    } catch (error) {
      this.#logger.error(`${method} handler failed`, { error: errorMessage(error) });
    }
  }

  #onTransportError(error: Error): void {
    if (error instanceof MessageTooLargeError) {
      this.#onOversizedMessage(error);
      return;
    }
    this.#logger.debug('transport error', { from: this.label, error: error.message });
  }

  /**
   * An incoming message over the transport's limit was dropped. Its head says whose it was: a
   * response fails just the request it answers, a request is answered with an error under its
   * own id; either way nobody waits for it and the connection stays. Anything else gets the
   * parse error of a malformed message (id -1).
   */
  #onOversizedMessage(error: MessageTooLargeError): void {
    const head = readMessageHead(decodeUtf8(error.head));
    const isResponse = head.keys.includes('result') || head.keys.includes('error');
    if (head.id !== undefined && isResponse && head.method === undefined) {
      const method = this.#pending.methodOf(head.id);
      if (method === undefined) {
        if (!this.#isLate(head.id)) this.#logger.warn('dropped an oversized response for no pending request', { from: this.label, id: head.id });
        return;
      }
      this.#pending.reject(
        head.id,
        new LocalError(LocalErrorCode.FrameTooLarge, `the response to ${method} from ${this.label} is larger than the ${error.limitBytes}-byte message limit; it was dropped`),
      );
      return;
    }
    const id = head.id !== undefined && head.method !== undefined && !isResponse ? head.id : -1;
    this.#send({ error: { code: RpcErrorCode.InvalidRequest, message: `failed to parse JSON-RPC message from ${this.label}: ${error.message}` }, id });
  }

  #onClose(reason: Error | undefined): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#outbox.close();
    const error = new LocalError(LocalErrorCode.ConnectionClosed, reason === undefined ? `connection ${this.label} closed` : `connection ${this.label} closed: ${reason.message}`, {
      cause: reason,
    });
    try {
      this.#lifetime.abort(error);
    } finally {
      this.#pending.rejectAll(error);
      this.#closed.resolve(reason);
    }
  }
}
