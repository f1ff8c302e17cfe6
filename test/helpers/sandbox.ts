import { pathToFileURL } from 'node:url';
import type { SandboxContext } from '../../src/protocol/exec.js';

/** One entry of Codex's `FileSystemSandboxContext` on a special root. */
export function specialEntry(kind: string, access: 'read' | 'write' | 'deny', extra: { subpath?: string; skipMissing?: boolean } = {}): Record<string, unknown> {
  return {
    path: { type: 'special', value: extra.subpath === undefined ? { kind } : { kind, subpath: extra.subpath } },
    access,
    ...(extra.skipMissing === true ? { missing_path_behavior: 'skip' } : {}),
  };
}

/**
 * The sandbox request Codex 0.169 sends for `workspace-write` with `root` as the workspace
 * (readable root, writable workspace), plus `extra` entries; network restricted unless enabled.
 */
export function workspaceWriteSandbox(root: string, options: { extra?: Record<string, unknown>[]; network?: 'restricted' | 'enabled' } = {}): SandboxContext {
  const uri = pathToFileURL(root).href;
  return {
    permissions: {
      type: 'managed',
      file_system: { type: 'restricted', entries: [specialEntry('root', 'read'), specialEntry('project_roots', 'write'), ...(options.extra ?? [])] },
      network: options.network ?? 'restricted',
    },
    cwd: uri,
    workspaceRoots: [uri],
  };
}
