import { z } from 'zod';
import { classifyMessage, RpcErrorCode, type ErrorObject, type IncomingMessage, type RequestId } from '../protocol/jsonrpc.js';
import { isValueMessage, type MessageTransport, type ValueMessage } from '../transport/transport.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

const InitializeParamsSchema = z.looseObject({ clientName: z.string(), resumeSessionId: z.string().nullish() });

/** What a {@link SharedUser} asks of the connection it shares. */
export interface SharedSession {
  diagnostics(): string | undefined;
  /** The session's `initialize` result; rejects with {@link RemoteError} when the server refused it. */
  initialize(clientName: string): Promise<unknown>;
  /** Forwards a request of an initialized user. */
  request(user: SharedUser, id: RequestId, method: string, params: unknown): void;
  /** A user's answer to a server request; false when it was not asked. */
  answerServerRequest(user: SharedUser, message: IncomingMessage & { kind: 'result' | 'error' }): boolean;
  detach(user: SharedUser): Promise<void>;
}

/** An error response of the server, handed to each user that waited on the shared `initialize`. */
export class RemoteError extends Error {
  constructor(readonly error: ErrorObject) {
    super(error.message);
  }
}

/** One user's view of the shared connection: a transport that behaves as a connection of its own. */
export class SharedUser implements MessageTransport {
  readonly prefix: string;
  readonly label: string;
  readonly handles = new Map<string, string>();
  readonly watches = new Map<number, number>();
  /** Upstream (prefixed) ids of the processes this user started that have not closed yet. */
  readonly liveProcesses = new Set<string>();
  inFlight = 0;
  onmessage?: (text: string) => void;
  onbytes?: (bytes: Buffer) => void;
  onclose?: (reason?: Error) => void;
  readonly #connection: SharedSession;
  #state: 'new' | 'initializing' | 'ready' | 'closed' = 'new';
  #started = false;
  readonly #early: (string | Buffer)[] = [];

  constructor(connection: SharedSession, prefix: string, label: string) {
    this.#connection = connection;
    this.prefix = prefix;
    this.label = label;
  }

  start(): void {
    this.#started = true;
    for (const message of this.#early.splice(0)) this.#hand(message);
  }

  diagnostics(): string | undefined {
    return this.#connection.diagnostics();
  }

  send(message: string | Buffer | ValueMessage): boolean {
    if (this.#state === 'closed') return true;
    const text = isValueMessage(message) ? message.encode().toString() : message.toString();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      this.answerError(-1, RpcErrorCode.InvalidRequest, `failed to parse JSON-RPC message from ${this.label}: ${errorMessage(error)}`);
      return true;
    }
    const parsed = classifyMessage(value);
    switch (parsed.kind) {
      case 'invalid':
        this.answerError(-1, RpcErrorCode.InvalidRequest, `failed to parse JSON-RPC message from ${this.label}: ${parsed.reason}`);
        break;
      case 'request':
        this.#request(parsed.id, parsed.method, parsed.params);
        break;
      case 'notification':
        // `initialized` was sent once for the session; anything else closes the connection, as the server does.
        if (parsed.method !== 'initialized' || this.#state !== 'ready') void this.close();
        break;
      default:
        if (!this.#connection.answerServerRequest(this, parsed)) void this.close();
    }
    return true;
  }

  #request(id: RequestId, method: string, params: unknown): void {
    if (method === 'initialize') {
      this.#initialize(id, params);
      return;
    }
    if (this.#state !== 'ready') {
      this.answerError(id, RpcErrorCode.InvalidRequest, `client must call initialize before using ${method}`);
      return;
    }
    this.#connection.request(this, id, method, params);
  }

  #initialize(id: RequestId, rawParams: unknown): void {
    if (this.#state !== 'new') {
      this.answerError(id, RpcErrorCode.InvalidRequest, 'initialize may only be sent once per connection');
      return;
    }
    const params = InitializeParamsSchema.safeParse(rawParams);
    if (!params.success) {
      this.answerError(id, RpcErrorCode.InvalidParams, `initialize: ${params.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
      return;
    }
    const resume = params.data.resumeSessionId;
    if (resume !== undefined && resume !== null) {
      // A stdio exec-server has no detached sessions to resume.
      this.answerError(id, RpcErrorCode.InvalidRequest, `unknown session id ${resume}`);
      return;
    }
    this.#state = 'initializing';
    this.#connection.initialize(params.data.clientName).then(
      (result) => {
        if (this.#state === 'closed') return;
        this.#state = 'ready';
        this.answer(id, result);
      },
      (error: unknown) => {
        if (error instanceof RemoteError) this.deliver({ id, error: error.error });
        else this.answerError(id, RpcErrorCode.InternalError, errorMessage(error));
      },
    );
  }

  answer(id: RequestId, result: unknown): void {
    this.deliver({ id, result });
  }

  answerError(id: RequestId, code: number, message: string): void {
    this.deliver({ id, error: { code, message } });
  }

  deliver(message: object): void {
    this.#queue(JSON.stringify(message));
  }

  /** A message made of an edited head (ASCII) and the rest of a server message as it came. */
  deliverRaw(head: string, rest: string | Buffer): void {
    this.#queue(typeof rest === 'string' ? head + rest : Buffer.concat([Buffer.from(head, 'latin1'), rest]));
  }

  #queue(message: string | Buffer): void {
    if (this.#state === 'closed') return;
    if (this.#started) this.#hand(message);
    else this.#early.push(message);
  }

  #hand(message: string | Buffer): void {
    if (typeof message === 'string') this.onmessage?.(message);
    else if (this.onbytes !== undefined) this.onbytes(message);
    else this.onmessage?.(message.toString());
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    const detached = this.#connection.detach(this);
    this.onclose?.();
    await detached;
  }

  /** The shared connection ended under this user. */
  ended(reason?: Error): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.onclose?.(reason ?? new LocalError(LocalErrorCode.ConnectionClosed, `exec-server ${this.label} closed the connection`));
  }
}
