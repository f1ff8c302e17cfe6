import { DEFAULT_INITIALIZE_TIMEOUT_MS } from '../config/environment-spec.js';
import { Initialize, Initialized, ProcessClosed, ProcessExited, ProcessOutput, type EnvironmentInfo } from '../protocol/exec.js';
import { RpcConnection } from '../rpc/connection.js';
import type { MessageTransport } from '../transport/transport.js';
import { withDeadline } from '../util/abort.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { fetchThrough, HttpBodyStreams } from './http-client.js';
import { bytesOf, type RemoteProcess } from './remote-process.js';

/** Default bound on the `initialize` round trip: an environment's own default (environment-spec.ts). */
export { DEFAULT_INITIALIZE_TIMEOUT_MS };

/** Produces fresh transports to one exec-server. */
export interface ExecConnector {
  /** For messages, e.g. the URL or `stdio:ssh`. */
  readonly label: string;
  /** True when a dropped connection can be resumed (websocket); false for stdio children. */
  readonly resumable: boolean;
  connect(signal?: AbortSignal): Promise<MessageTransport>;
}

/** Options of `ExecClient.connect`. */
export interface ExecClientOptions {
  /** Sent as `clientName`. @default 'codex-multienv' */
  clientName?: string;
  /** @default DEFAULT_INITIALIZE_TIMEOUT_MS */
  initializeTimeoutMs?: number;
  /** @default DEFAULT_RECONNECT_WINDOW_MS */
  reconnectWindowMs?: number;
  logger?: Logger;
  signal?: AbortSignal;
  /**
   * Largest message sent to the server; the connector's transport holds incoming messages to its
   * own limit, by default the same. A file read or written whole with `readFile` and `writeFile`
   * must fit in one as base64; a larger one fails before anything is sent.
   * @default DEFAULT_MAX_MESSAGE_BYTES
   */
  maxMessageBytes?: number;
}

/** A connection of a client to its exec-server session, with HTTP through it. */
export interface Attached {
  connection: RpcConnection;
  fetch: typeof fetch;
}

/**
 * Connects one transport, initializes (or resumes) a session and acknowledges it. Process events
 * go to the process `route` names.
 */
export async function handshake(
  connector: ExecConnector,
  options: ExecClientOptions,
  resumeSessionId: string | undefined,
  route: (processId: string) => RemoteProcess | undefined,
): Promise<{ attached: Attached; sessionId: string; info: EnvironmentInfo }> {
  const transport = await connector.connect(options.signal);
  const connection = new RpcConnection(transport, { logger: options.logger, maxMessageBytes: options.maxMessageBytes });
  // Output decoded from the message's bytes, not parsed into a string first (see onNotificationWithBytes).
  connection.onNotificationWithBytes(ProcessOutput, 'chunk', (p) => route(p.processId)?.accept({ seq: p.seq, kind: 'output', stream: p.stream, data: bytesOf(p.chunk) }));
  connection.onNotification(ProcessExited, (p) => route(p.processId)?.accept({ seq: p.seq, kind: 'exited', exitCode: p.exitCode, sandboxDenied: p.sandboxDenied === true }));
  connection.onNotification(ProcessClosed, (p) => route(p.processId)?.accept({ seq: p.seq, kind: 'closed' }));
  const fetchFn = fetchThrough(new HttpBodyStreams(connection));
  connection.start();
  const timeoutMs = options.initializeTimeoutMs ?? DEFAULT_INITIALIZE_TIMEOUT_MS;
  try {
    const result = await withDeadline(
      connection.request(Initialize, { clientName: options.clientName ?? 'codex-multienv', resumeSessionId: resumeSessionId ?? null }, { timeoutMs: timeoutMs + 1000 }),
      timeoutMs,
      () => new LocalError(LocalErrorCode.InitializeTimeout, `exec-server ${connector.label} did not answer initialize within ${timeoutMs} ms`),
      options.signal,
    );
    connection.notify(Initialized, {});
    return { attached: { connection, fetch: fetchFn }, sessionId: result.sessionId, info: result.environmentInfo ?? {} };
  } catch (error) {
    await connection.close();
    const diagnostics = transport.diagnostics?.();
    if (error instanceof LocalError && error.code === LocalErrorCode.ConnectionClosed) {
      throw new LocalError(
        LocalErrorCode.ProcessFailed,
        `exec-server ${connector.label} closed the connection before initialize completed${diagnostics === undefined ? '' : `; it said: ${diagnostics}`}`,
        { cause: error },
      );
    }
    throw error;
  }
}
