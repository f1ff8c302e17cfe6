import { constants } from 'node:os';
import { RpcError } from '../rpc/errors.js';

const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EEXIST: 'File exists',
  ENOTEMPTY: 'Directory not empty',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  ELOOP: 'Too many levels of symbolic links',
  EROFS: 'Read-only file system',
  ENOSPC: 'No space left on device',
  EXDEV: 'Invalid cross-device link',
  EBUSY: 'Device or resource busy',
  ENAMETOOLONG: 'File name too long',
  EMFILE: 'Too many open files',
  EINVAL: 'Invalid argument',
  ENOEXEC: 'Exec format error',
};

/**
 * Maps a Node.js system error to the wire error the Codex exec-server gives for the same OS
 * error: `No such file or directory (os error 2)` is -32004, everything else -32603.
 */
export function ioError(error: unknown): RpcError {
  const errno = error as NodeJS.ErrnoException;
  const code = typeof errno?.code === 'string' ? errno.code : undefined;
  if (code === undefined) return RpcError.internal(error instanceof Error ? error.message : String(error));
  const number = (constants.errno as Record<string, number | undefined>)[code];
  const text = `${STRERROR[code] ?? code}${number === undefined ? '' : ` (os error ${number})`}`;
  return code === 'ENOENT' ? RpcError.notFound(text) : RpcError.internal(text);
}

/** Runs an fs operation, mapping system errors to wire errors (an RpcError passes through). */
export async function io<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof RpcError) throw error;
    throw ioError(error);
  }
}

/** True when `error` is a system error with the errno `code` (`ENOENT`, …). */
export function isErrno(error: unknown, code: string): boolean {
  // Not `instanceof Error`: errors from another realm (a vm context) fail that test.
  return typeof error === 'object' && error !== null && 'code' in error && error.code === code;
}

/** A system error with the errno `code`, as a failed call would have thrown it. */
export function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}
