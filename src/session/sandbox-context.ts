import type { PermissionProfile, PermissionRule } from '../config/permissions.js';
import { pathToUri } from '../exec/path-uri.js';
import type { SandboxContext } from '../protocol/exec.js';

/** The wire name of each special root (Codex 0.169 still says `project_roots`). */
const SPECIAL_KINDS = { root: 'root', minimal: 'minimal', workspace_roots: 'project_roots', tmpdir: 'tmpdir', slash_tmp: 'slash_tmp' } as const;

function entryOf(rule: PermissionRule): Record<string, unknown> {
  const target = rule.target;
  const path =
    'path' in target
      ? { type: 'path', path: pathToUri(target.path) }
      : { type: 'special', value: { kind: SPECIAL_KINDS[target.special], ...(target.subpath === undefined ? {} : { subpath: target.subpath }) } };
  return { path, access: rule.access, ...(rule.skipMissing === true ? { missing_path_behavior: 'skip' } : {}) };
}

/**
 * The exec-server `sandbox` object (Codex's `FileSystemSandboxContext`) for a command or a file
 * operation under `profile`; null when the profile is full access. The workspace roots are the
 * environment's working directory for the thread (never the command's own `workdir`, which the
 * model chooses) plus the profile's extra roots.
 */
export function sandboxContextFor(profile: PermissionProfile, workspaceCwd: string, operationCwd: string): SandboxContext | null {
  if (profile.fullAccess) return null;
  return {
    permissions: { type: 'managed', file_system: { type: 'restricted', entries: profile.rules.map(entryOf) }, network: profile.network ? 'enabled' : 'restricted' },
    cwd: pathToUri(operationCwd),
    workspaceRoots: [workspaceCwd, ...profile.workspaceRoots].map((root) => pathToUri(root)),
  };
}
