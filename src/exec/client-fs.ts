import type { z } from 'zod';
import {
  FsCanonicalize,
  FsCopy,
  FsCreateDirectory,
  FsGetMetadata,
  FsReadDirectory,
  FsReadFile,
  FsRemove,
  FsWriteFile,
  type DirectoryEntry,
  type FileMetadata,
  type SandboxContext,
} from '../protocol/exec.js';
import type { MethodSpec } from '../protocol/jsonrpc.js';
import { maxBase64PayloadBytes } from '../protocol/limits.js';
import type { RequestOptions } from '../rpc/connection.js';
import { encodeBase64 } from '../util/base64.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { pathToUri } from './path-uri.js';
import { bytesOf } from './remote-process.js';

/** Options of the filesystem methods: the sandbox the executor must apply to the operation. */
export interface FsRequestOptions extends RequestOptions {
  /** Codex's `FileSystemSandboxContext`; absent or null: none. */
  sandbox?: SandboxContext | null;
}

/** The `sandbox` field, sent only when there is one (older executors never see it otherwise). */
function sandboxParam(options: FsRequestOptions | undefined): { sandbox?: SandboxContext } {
  return options?.sandbox === undefined || options.sandbox === null ? {} : { sandbox: options.sandbox };
}

/**
 * The filesystem methods of an exec client (`fs/*`), made of its requests; paths are native
 * absolute paths on the executor.
 */
export abstract class ExecFileSystem {
  /** Label of the exec-server, for messages. */
  abstract get label(): string;

  /** Largest message sent to the server: a file moved whole must fit in one as base64. */
  protected abstract get maxMessageBytes(): number;

  /** Sends any exec-server request. */
  abstract request<P extends z.ZodType, R extends z.ZodType>(spec: MethodSpec<P, R>, params: z.input<P>, options?: RequestOptions): Promise<z.output<R>>;

  /**
   * Reads a whole file. One whose base64 does not fit in one message fails with LIMIT_EXCEEDED,
   * found by asking its size first: a server that does not bound its reads (the Codex
   * exec-server does not) would answer with a message over the limit, and on a websocket such a
   * message costs the connection, and every other request on it.
   */
  async readFile(path: string, options?: FsRequestOptions): Promise<Buffer> {
    const metadata = await this.getMetadata(path, options);
    if (metadata.isFile && metadata.size > this.#maxWholeFileBytes()) throw this.#fileTooLarge('read', path, metadata.size);
    const result = await this.request(FsReadFile, { path: pathToUri(path), ...sandboxParam(options) }, options);
    return bytesOf(result.dataBase64);
  }

  /**
   * Creates or truncates a file; the parent directory must exist. Data whose base64 does not fit
   * in one message fails with LIMIT_EXCEEDED before anything is sent.
   */
  async writeFile(path: string, data: Uint8Array | string, options?: FsRequestOptions): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (bytes.byteLength > this.#maxWholeFileBytes()) throw this.#fileTooLarge('write', path, bytes.byteLength);
    await this.request(FsWriteFile, { path: pathToUri(path), dataBase64: encodeBase64(bytes), ...sandboxParam(options) }, options);
  }

  /** The largest file moved whole: its base64 fills one message. */
  #maxWholeFileBytes(): number {
    return maxBase64PayloadBytes(this.maxMessageBytes);
  }

  #fileTooLarge(operation: 'read' | 'write', path: string, size: number): LocalError {
    const inBlocks = operation === 'read' ? 'fs/open and fs/readBlock' : 'fs/open (mode replace) and fs/writeBlock';
    return new LocalError(
      LocalErrorCode.LimitExceeded,
      `file too large to ${operation} whole on ${this.label}: \`${path}\` is ${size} bytes, over the ${this.#maxWholeFileBytes()}-byte limit (its base64 must fit in one ${this.maxMessageBytes}-byte message); ${operation} it in blocks with ${inBlocks}`,
    );
  }

  /** Creates a directory and its parents. */
  async createDirectory(path: string, options?: FsRequestOptions): Promise<void> {
    await this.request(FsCreateDirectory, { path: pathToUri(path), recursive: true, ...sandboxParam(options) }, options);
  }

  /** Stats a path (following symlinks). */
  getMetadata(path: string, options?: FsRequestOptions): Promise<FileMetadata> {
    return this.request(FsGetMetadata, { path: pathToUri(path), ...sandboxParam(options) }, options);
  }

  /** Lists one directory. */
  async readDirectory(path: string, options?: FsRequestOptions): Promise<DirectoryEntry[]> {
    return (await this.request(FsReadDirectory, { path: pathToUri(path), ...sandboxParam(options) }, options)).entries;
  }

  /** Removes a file or a tree. */
  async remove(path: string, options?: FsRequestOptions): Promise<void> {
    await this.request(FsRemove, { path: pathToUri(path), recursive: true, force: true, ...sandboxParam(options) }, options);
  }

  /** Copies a file or (recursively) a tree. */
  async copy(source: string, destination: string, recursive: boolean, options?: FsRequestOptions): Promise<void> {
    await this.request(FsCopy, { sourcePath: pathToUri(source), destinationPath: pathToUri(destination), recursive, ...sandboxParam(options) }, options);
  }

  /** Resolves symlinks and `..`; returns the canonical `file://` URI. */
  async canonicalize(path: string, options?: FsRequestOptions): Promise<string> {
    return (await this.request(FsCanonicalize, { path: pathToUri(path), ...sandboxParam(options) }, options)).path;
  }
}
