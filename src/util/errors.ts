/**
 * Codes of errors that never cross a wire. Callers branch on these, never on message text.
 */
export const LocalErrorCode = {
  ConnectionClosed: 'CONNECTION_CLOSED',
  /** Nothing listens at the address (ECONNREFUSED). */
  ConnectRefused: 'CONNECT_REFUSED',
  /** A connection attempt failed some other way (reset, unreachable, a failed upgrade). */
  ConnectFailed: 'CONNECT_FAILED',
  ConnectTimeout: 'CONNECT_TIMEOUT',
  InitializeTimeout: 'INITIALIZE_TIMEOUT',
  RequestTimeout: 'REQUEST_TIMEOUT',
  AuthFailed: 'AUTH_FAILED',
  /** A credential would go where it could be read on the way (a bearer token over `ws://` to another host). */
  InsecureDestination: 'INSECURE_DESTINATION',
  ProtocolViolation: 'PROTOCOL_VIOLATION',
  ProcessFailed: 'PROCESS_FAILED',
  FrameTooLarge: 'FRAME_TOO_LARGE',
  InvalidConfig: 'INVALID_CONFIG',
  InvalidArgument: 'INVALID_ARGUMENT',
  NotFound: 'NOT_FOUND',
  LimitExceeded: 'LIMIT_EXCEEDED',
  Aborted: 'ABORTED',
  Busy: 'BUSY',
  /** A service this process depends on (the database) cannot be reached now; retrying later may work. */
  Unavailable: 'UNAVAILABLE',
  /** The state found does not allow the operation (e.g. a database schema newer than this version). */
  FailedPrecondition: 'FAILED_PRECONDITION',
  /** A write refused because this process no longer owns what it writes: another process took it over (its lease ran out). */
  Fenced: 'FENCED',
} as const;

/** One of {@link LocalErrorCode}. */
export type LocalErrorCode = (typeof LocalErrorCode)[keyof typeof LocalErrorCode];

/** An error raised and handled on this side of every wire. */
export class LocalError extends Error {
  override readonly name = 'LocalError';

  constructor(
    readonly code: LocalErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Formats any thrown value as a one-line message. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error);
  } catch {
    return String(error);
  }
}
