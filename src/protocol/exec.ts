import { z } from 'zod';
import { methodSpec as method, notificationSpec as notification } from './jsonrpc.js';

/**
 * The Codex exec-server protocol (codex-cli 0.169.0): every method and notification our client
 * and server use, with params and result schemas side by side. Inbound objects are loose
 * (unknown fields are ignored); optional fields accept `null` because Codex sends explicit nulls.
 */

const u64 = z.number().int().nonnegative();

/**
 * Longest id a client may choose for a process, a write, an HTTP request or a session to resume.
 * A server keeps these as keys (a process id for the session's lifetime) and echoes them in
 * errors, so they are bounded; Codex's own are about 40 characters.
 */
const MAX_CLIENT_ID_LENGTH = 256;
/** Longest `clientName` in `initialize` (free-form, logged). */
const MAX_CLIENT_NAME_LENGTH = 256;
/** Longest file handle id, in UTF-8 bytes: Codex 0.169 refuses longer ones. */
const MAX_FILE_HANDLE_ID_BYTES = 32;

/** The size of a refused string, for its error message. */
function sizeOf(input: unknown, unit: 'characters' | 'bytes'): number {
  if (typeof input !== 'string') return 0;
  return unit === 'bytes' ? Buffer.byteLength(input, 'utf8') : input.length;
}

/** A client-chosen id: not empty, at most {@link MAX_CLIENT_ID_LENGTH} characters. */
const ClientId = z
  .string()
  .min(1, 'must not be empty')
  .max(MAX_CLIENT_ID_LENGTH, { error: (issue) => `must be at most ${MAX_CLIENT_ID_LENGTH} characters, got ${sizeOf(issue.input, 'characters')}` });
/** A file handle id: not empty, at most {@link MAX_FILE_HANDLE_ID_BYTES} bytes of UTF-8. */
const FileHandleId = z
  .string()
  .min(1, 'must not be empty')
  .refine((id) => sizeOf(id, 'bytes') <= MAX_FILE_HANDLE_ID_BYTES, {
    error: (issue) => `must not exceed ${MAX_FILE_HANDLE_ID_BYTES} bytes, got ${sizeOf(issue.input, 'bytes')}`,
  });
/** A `file://` URI; validated by the receiver, which knows the host's path rules. */
const PathUri = z.string();
/** Standard padded base64. Validated by the receiver to report codex-compatible errors. */
const Base64 = z.string();
/**
 * Bytes a server sends (output, a file's contents): standard padded base64 on a wire. From an
 * in-process server, whose messages arrive as values, the bytes themselves (as a Buffer).
 */
const Bytes = z
  // One check rather than a union: a union's failed first branch costs an issue per message.
  .custom<string | Uint8Array>((value) => typeof value === 'string' || value instanceof Uint8Array, 'expected base64 text or bytes')
  .transform((value) => (typeof value === 'string' || Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)));
const optionalBool = z.boolean().nullish();
/** The sandbox context (`FileSystemSandboxContext`); interpreted by the policy layer. */
export const SandboxContextSchema = z.looseObject({ permissions: z.unknown() });
/** The sandbox context of a process or filesystem request. */
export type SandboxContext = z.infer<typeof SandboxContextSchema>;
const SandboxContext = SandboxContextSchema.nullish();
const EmptyResult = z.looseObject({});
const NoParams = z.looseObject({}).nullish();

// ---------------------------------------------------------------------------------------------
// Handshake and environment

/** The shell reported by an executor. */
export const ShellInfoSchema = z.looseObject({ name: z.string(), path: z.string() });

/** The executor's description of itself (`environment/info`, and inside `initialize`). */
export const EnvironmentInfoSchema = z.looseObject({
  shell: ShellInfoSchema.nullish(),
  executorVersion: z.string().nullish(),
  providerId: z.string().nullish(),
  cwd: PathUri.nullish(),
  userHomeDir: PathUri.nullish(),
  platformOs: z.string().nullish(),
  prependPathDirs: z.array(PathUri).nullish(),
  temporaryDirectories: z.array(PathUri).nullish(),
  tempDir: PathUri.nullish(),
  capabilities: z.record(z.string(), z.boolean()).nullish(),
});
/** The executor's description of itself. */
export type EnvironmentInfo = z.infer<typeof EnvironmentInfoSchema>;

/** `initialize`: creates a session, or resumes a detached one. */
export const Initialize = method(
  'initialize',
  z.looseObject({
    clientName: z.string().max(MAX_CLIENT_NAME_LENGTH, `must be at most ${MAX_CLIENT_NAME_LENGTH} characters`),
    resumeSessionId: ClientId.nullish(),
  }),
  z.looseObject({ sessionId: z.string(), environmentInfo: EnvironmentInfoSchema.nullish() }),
);

/** `initialized`: the client's acknowledgement of the handshake. */
export const Initialized = notification('initialized', NoParams);

/** `environment/info`. */
export const EnvironmentInfoMethod = method('environment/info', NoParams, EnvironmentInfoSchema);

/** `environment/status`: a liveness probe. */
export const EnvironmentStatus = method('environment/status', NoParams, z.looseObject({ status: z.string() }));

// ---------------------------------------------------------------------------------------------
// Processes

/** How the server builds a child's environment from its own (see `shell_environment_policy`). */
export const EnvPolicySchema = z.looseObject({
  inherit: z.enum(['all', 'core', 'none']),
  ignoreDefaultExcludes: z.boolean(),
  exclude: z.array(z.string()),
  set: z.record(z.string(), z.string()),
  includeOnly: z.array(z.string()),
});
/** How the server builds a child's environment. */
export type EnvPolicy = z.infer<typeof EnvPolicySchema>;

/** `process/start` params. */
export const ProcessStartParamsSchema = z.looseObject({
  processId: ClientId,
  argv: z.array(z.string()),
  cwd: PathUri,
  env: z.record(z.string(), z.string()),
  tty: z.boolean(),
  pipeStdin: optionalBool,
  arg0: z.string().nullish(),
  envPolicy: EnvPolicySchema.nullish(),
  sandbox: SandboxContext,
  enforceManagedNetwork: optionalBool,
  managedNetwork: z.unknown().optional(),
  metadata: z.unknown().optional(),
});
/** `process/start` params. */
export type ProcessStartParams = z.infer<typeof ProcessStartParamsSchema>;

/** `process/start`. */
export const ProcessStart = method('process/start', ProcessStartParamsSchema, z.looseObject({ processId: z.string(), sandboxType: z.string().nullish() }));

/** Which stream an output chunk came from. */
export const OutputStreamSchema = z.enum(['stdout', 'stderr', 'pty']);
/** Which stream an output chunk came from. */
export type OutputStream = z.infer<typeof OutputStreamSchema>;

/** A retained output chunk. */
export const OutputChunkSchema = z.looseObject({ seq: u64, stream: OutputStreamSchema, chunk: Bytes });
/** A retained output chunk. */
export type OutputChunk = z.infer<typeof OutputChunkSchema>;

/** `process/read` result. */
export const ProcessReadResultSchema = z.looseObject({
  chunks: z.array(OutputChunkSchema),
  nextSeq: u64,
  exited: z.boolean(),
  exitCode: z.number().int().nullable(),
  closed: z.boolean(),
  failure: z.string().nullish(),
  sandboxDenied: optionalBool,
});
/** `process/read` result. */
export type ProcessReadResult = z.infer<typeof ProcessReadResultSchema>;

/** `process/read`: retained output after a seq, optionally long-polling. */
export const ProcessRead = method(
  'process/read',
  z.looseObject({ processId: ClientId, afterSeq: u64.nullish(), maxBytes: u64.nullish(), waitMs: u64.nullish() }),
  ProcessReadResultSchema,
);

/** `process/write` status values. */
export const WriteStatusSchema = z.enum(['accepted', 'unknownProcess', 'stdinClosed', 'starting']);
/** `process/write` status. */
export type WriteStatus = z.infer<typeof WriteStatusSchema>;

/** `process/write`: `writeId` is an idempotency key. */
export const ProcessWrite = method('process/write', z.looseObject({ processId: ClientId, chunk: Base64, writeId: ClientId }), z.looseObject({ status: WriteStatusSchema }));

/** `process/signal`: only `interrupt` (SIGINT) exists. */
export const ProcessSignal = method('process/signal', z.looseObject({ processId: ClientId, signal: z.enum(['interrupt']) }), EmptyResult);

/** `process/terminate`: SIGKILL; `running` says whether it was still running. */
export const ProcessTerminate = method('process/terminate', z.looseObject({ processId: ClientId }), z.looseObject({ running: z.boolean() }));

/** `process/output` notification. */
export const ProcessOutput = notification('process/output', z.looseObject({ processId: z.string(), seq: u64, stream: OutputStreamSchema, chunk: Bytes }));

/** `process/exited` notification. */
export const ProcessExited = notification('process/exited', z.looseObject({ processId: z.string(), seq: u64, exitCode: z.number().int(), sandboxDenied: optionalBool }));

/** `process/closed` notification: the last event of a process. */
export const ProcessClosed = notification('process/closed', z.looseObject({ processId: z.string(), seq: u64 }));

// ---------------------------------------------------------------------------------------------
// Filesystem

/** `fs/readFile`. */
export const FsReadFile = method('fs/readFile', z.looseObject({ path: PathUri, followSymlinks: optionalBool, sandbox: SandboxContext }), z.looseObject({ dataBase64: Bytes }));

/** `fs/writeFile`: creates or truncates; the parent must exist. */
export const FsWriteFile = method('fs/writeFile', z.looseObject({ path: PathUri, dataBase64: Base64, followSymlinks: optionalBool, sandbox: SandboxContext }), EmptyResult);

/** `fs/createDirectory`: `recursive` defaults to true. */
export const FsCreateDirectory = method(
  'fs/createDirectory',
  z.looseObject({ path: PathUri, recursive: optionalBool, followSymlinks: optionalBool, sandbox: SandboxContext }),
  EmptyResult,
);

/** `fs/getMetadata` result. */
export const FileMetadataSchema = z.looseObject({
  isDirectory: z.boolean(),
  isFile: z.boolean(),
  isSymlink: z.boolean(),
  size: u64,
  createdAtMs: z.number(),
  modifiedAtMs: z.number(),
});
/** `fs/getMetadata` result. */
export type FileMetadata = z.infer<typeof FileMetadataSchema>;

/** `fs/getMetadata`: follows symlinks unless `followSymlinks` is false. */
export const FsGetMetadata = method('fs/getMetadata', z.looseObject({ path: PathUri, followSymlinks: optionalBool, sandbox: SandboxContext }), FileMetadataSchema);

/** One entry of `fs/readDirectory`. */
export const DirectoryEntrySchema = z.looseObject({ fileName: z.string(), isDirectory: z.boolean(), isFile: z.boolean() });
/** One entry of `fs/readDirectory`. */
export type DirectoryEntry = z.infer<typeof DirectoryEntrySchema>;

/** `fs/readDirectory`: one level, unsorted. */
export const FsReadDirectory = method('fs/readDirectory', z.looseObject({ path: PathUri, sandbox: SandboxContext }), z.looseObject({ entries: z.array(DirectoryEntrySchema) }));

/** `fs/walk`: bounded breadth-first listing. */
export const FsWalk = method(
  'fs/walk',
  z.looseObject({
    path: PathUri,
    options: z.looseObject({ maxDepth: u64, maxDirectories: u64, maxEntries: u64, followDirectorySymlinks: z.boolean() }),
    sandbox: SandboxContext,
  }),
  z.looseObject({
    entries: z.array(z.looseObject({ path: PathUri, kind: z.enum(['file', 'directory']) })),
    errors: z.array(z.unknown()),
    truncated: z.boolean(),
  }),
);

/** `fs/canonicalize`: realpath. */
export const FsCanonicalize = method('fs/canonicalize', z.looseObject({ path: PathUri, sandbox: SandboxContext }), z.looseObject({ path: PathUri }));

/** `fs/remove`: `recursive` and `force` default to true. */
export const FsRemove = method(
  'fs/remove',
  z.looseObject({ path: PathUri, recursive: optionalBool, force: optionalBool, followSymlinks: optionalBool, sandbox: SandboxContext }),
  EmptyResult,
);

/** `fs/copy`: `recursive` is required. */
export const FsCopy = method('fs/copy', z.looseObject({ sourcePath: PathUri, destinationPath: PathUri, recursive: z.boolean(), sandbox: SandboxContext }), EmptyResult);

/** `fs/open`: a handle for block I/O. */
export const FsOpen = method(
  'fs/open',
  z.looseObject({ handleId: FileHandleId, path: PathUri, mode: z.enum(['read', 'replace']).nullish(), sandbox: SandboxContext }),
  z.looseObject({ handleId: z.string() }),
);

/** `fs/readBlock`. */
export const FsReadBlock = method('fs/readBlock', z.looseObject({ handleId: FileHandleId, offset: u64, len: u64 }), z.looseObject({ chunk: Bytes, eof: z.boolean() }));

/** `fs/writeBlock`. */
export const FsWriteBlock = method('fs/writeBlock', z.looseObject({ handleId: FileHandleId, offset: u64, chunk: Base64 }), EmptyResult);

/** `fs/close`: idempotent. */
export const FsClose = method('fs/close', z.looseObject({ handleId: FileHandleId }), EmptyResult);

// ---------------------------------------------------------------------------------------------
// HTTP from the executor

/** A request header; `valueEnvVar` appends an executor-side variable's value. */
export const HttpRequestHeaderSchema = z.looseObject({
  name: z.string(),
  value: z.string(),
  valueEnvVar: z.string().nullish(),
});

/** A response header, lowercase name, in wire order. */
export const HttpHeaderSchema = z.looseObject({ name: z.string(), value: z.string() });
/** A response header. */
export type HttpHeader = z.infer<typeof HttpHeaderSchema>;

/** `http/request` params. */
export const HttpRequestParamsSchema = z.looseObject({
  method: z.string(),
  url: z.string(),
  requestId: ClientId,
  headers: z.array(HttpRequestHeaderSchema).nullish(),
  bodyBase64: Base64.nullish(),
  timeoutMs: u64.nullish(),
  redirectPolicy: z.enum(['follow', 'stop']).nullish(),
  streamResponse: optionalBool,
});
/** `http/request` params. */
export type HttpRequestParams = z.infer<typeof HttpRequestParamsSchema>;

/** `http/request`: performed by the executor; streamed bodies arrive as `bodyDelta`s. */
export const HttpRequest = method('http/request', HttpRequestParamsSchema, z.looseObject({ status: z.number().int(), headers: z.array(HttpHeaderSchema), bodyBase64: Base64 }));

/** `http/request/bodyDelta` notification. */
export const HttpRequestBodyDelta = notification(
  'http/request/bodyDelta',
  z.looseObject({ requestId: z.string(), seq: u64, deltaBase64: Base64, done: z.boolean(), error: z.string().nullish() }),
);
