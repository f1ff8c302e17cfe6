import { isAbsolute, posix } from 'node:path';
import { ToolError } from './tool.js';

/**
 * Resolves a path the model gave against an environment's working directory, with POSIX rules
 * (the executor's host decides what the path means).
 */
export function resolveOnEnvironment(cwd: string, path: string, field: string): string {
  if (path.includes('\0')) throw new ToolError(`${field} must not contain NUL characters`);
  return isAbsolute(path) ? posix.normalize(path) : posix.resolve(cwd, path);
}
