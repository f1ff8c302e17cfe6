import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize, relative, sep } from 'node:path';
import { z } from 'zod';
import { RpcError } from '../rpc/errors.js';
import { uriToPath } from './path-uri.js';

/** What a sandbox rule allows on a path and below it. On the same path, deny beats write beats read. */
export type Access = 'read' | 'write' | 'deny';

/** One filesystem rule, with an absolute native path. */
export interface SandboxRule {
  path: string;
  access: Access;
}

/** A sandbox request normalized for enforcement. */
export interface SandboxPolicy {
  /** False: the filesystem is not restricted (only the network rule applies). */
  restrictedFileSystem: boolean;
  /** Rules, most general first; a path's access is that of the deepest rule covering it. */
  rules: SandboxRule[];
  network: boolean;
  /** The command's working directory, when given. */
  cwd?: string;
}

/** System locations `:minimal` makes readable so that ordinary programs run. */
export const MINIMAL_READ_PATHS = ['/bin', '/sbin', '/usr', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt', '/nix', '/run/current-system'];

const PathRefSchema = z.union([
  z.looseObject({ type: z.literal('special'), value: z.looseObject({ kind: z.string(), subpath: z.string().nullish() }) }),
  z.looseObject({ type: z.literal('path'), path: z.string() }),
]);

const EntrySchema = z.looseObject({
  path: PathRefSchema,
  access: z.enum(['read', 'write', 'deny', 'none']),
  missing_path_behavior: z.string().nullish(),
});

/** Codex's `FileSystemSandboxContext` (snake_case inside `permissions`, camelCase outside). */
export const SandboxRequestSchema = z.looseObject({
  permissions: z.union([
    z.looseObject({ type: z.literal('disabled') }),
    z.looseObject({
      type: z.literal('managed'),
      file_system: z.union([
        z.looseObject({ type: z.literal('unrestricted') }),
        z.looseObject({ type: z.literal('restricted'), entries: z.array(EntrySchema) }),
      ]),
      network: z.union([z.enum(['restricted', 'enabled']), z.looseObject({ enabled: z.boolean() })]).nullish(),
    }),
  ]),
  cwd: z.string().nullish(),
  workspaceRoots: z.array(z.string()).nullish(),
});

/** Facts of the executor host that special paths resolve against. */
export interface SandboxHost {
  tempDir: string;
}

function specialPaths(kind: string, request: z.infer<typeof SandboxRequestSchema>, host: SandboxHost): string[] {
  switch (kind) {
    case 'root':
      return ['/'];
    case 'minimal':
      return MINIMAL_READ_PATHS;
    case 'project_roots':
    case 'workspace_roots':
      return (request.workspaceRoots ?? (request.cwd === undefined || request.cwd === null ? [] : [request.cwd])).map(uriToPath);
    case 'slash_tmp':
      return ['/tmp'];
    case 'tmpdir':
      return [host.tempDir];
    default:
      throw RpcError.invalidParams(`unsupported special sandbox path \`${kind}\``);
  }
}

/**
 * Parses a sandbox request. `null`/absent means no sandbox (undefined). Unknown shapes are a
 * -32602 error: a request we cannot understand is never run unconfined.
 */
export function parseSandboxRequest(sandbox: unknown, host: SandboxHost): SandboxPolicy | undefined {
  if (sandbox === null || sandbox === undefined) return undefined;
  const parsed = SandboxRequestSchema.safeParse(sandbox);
  if (!parsed.success) throw RpcError.invalidParams(`unsupported sandbox request: ${parsed.error.issues[0]?.message ?? 'invalid'} at ${parsed.error.issues[0]?.path.join('.') ?? ''}`);
  const request = parsed.data;
  const cwd = request.cwd === undefined || request.cwd === null ? undefined : uriToPath(request.cwd);
  const base = cwd === undefined ? {} : { cwd };
  if (request.permissions.type === 'disabled') return { restrictedFileSystem: false, rules: [], network: true, ...base };
  const permissions = request.permissions;
  const network = networkEnabled(permissions);
  if (permissions.file_system.type === 'unrestricted') return { restrictedFileSystem: false, rules: [], network, ...base };
  const rules: SandboxRule[] = [];
  for (const entry of permissions.file_system.entries) {
    const access: Access = entry.access === 'none' ? 'deny' : entry.access;
    const paths =
      entry.path.type === 'path'
        ? [uriToPath(entry.path.path)]
        : specialPaths(entry.path.value.kind, request, host).map((root) => {
            const subpath = entry.path.type === 'special' ? entry.path.value.subpath : undefined;
            return subpath === undefined || subpath === null || subpath === '' ? root : join(root, subpath);
          });
    for (const path of paths) {
      if (!isAbsolute(path)) throw RpcError.invalidParams(`sandbox path \`${path}\` is not absolute`);
      if (entry.missing_path_behavior === 'skip' && !existsSync(path)) continue;
      rules.push({ path: normalize(path), access });
    }
  }
  return { restrictedFileSystem: true, rules: normalizeRules(rules), network, ...base };
}

const STRENGTH: Record<Access, number> = { read: 0, write: 1, deny: 2 };

/** Merges rules on the same path (deny > write > read) and orders them most general first. */
export function normalizeRules(rules: readonly SandboxRule[]): SandboxRule[] {
  const byPath = new Map<string, Access>();
  for (const rule of rules) {
    const path = rule.path.length > 1 ? rule.path.replace(/\/+$/, '') : rule.path;
    const previous = byPath.get(path);
    if (previous === undefined || STRENGTH[rule.access] > STRENGTH[previous]) byPath.set(path, rule.access);
  }
  return [...byPath.entries()].map(([path, access]) => ({ path, access })).sort((a, b) => depth(a.path) - depth(b.path) || a.path.localeCompare(b.path));
}

function depth(path: string): number {
  return path === '/' ? 0 : path.split(sep).length - 1;
}

function covers(root: string, path: string): boolean {
  if (root === '/') return true;
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** The access the policy gives a (real) path: the deepest covering rule's, or none. */
export function accessOf(policy: SandboxPolicy, path: string): Access | undefined {
  if (!policy.restrictedFileSystem) return 'write';
  let found: SandboxRule | undefined;
  for (const rule of policy.rules) if (covers(rule.path, path) && (found === undefined || depth(rule.path) >= depth(found.path))) found = rule;
  return found?.access;
}

/**
 * Resolves symlinks and `..` the way the kernel will when the path is used: the nearest existing
 * ancestor is canonicalized and the rest appended. A write through a symlink is judged by where
 * it lands.
 */
export function realTarget(path: string): string {
  let existing = normalize(path);
  const rest: string[] = [];
  for (;;) {
    try {
      const real = realpathSync(existing);
      return rest.length === 0 ? real : join(real, ...rest.reverse());
    } catch {
      const parent = dirname(existing);
      if (parent === existing) return normalize(path);
      rest.push(existing.slice(parent.length).replace(/^\/+/, ''));
      existing = parent;
    }
  }
}

/**
 * Throws -32600 unless the policy lets `path` be written (created, replaced or removed). With
 * `followFinal: false` (removing an entry) a final symlink is judged itself, not its target.
 */
export function assertWritable(policy: SandboxPolicy | undefined, path: string, method: string, followFinal = true): void {
  if (policy === undefined || !policy.restrictedFileSystem) return;
  const target = followFinal ? realTarget(path) : join(realTarget(dirname(path)), basename(path));
  if (accessOf(policy, target) !== 'write') {
    throw RpcError.invalidRequest(`${method}: writing \`${path}\` is not allowed by the sandbox${target === path ? '' : ` (it resolves to \`${target}\`)`}`);
  }
}

/** Throws -32600 unless the policy lets `path` be read. */
export function assertReadable(policy: SandboxPolicy | undefined, path: string, method: string): void {
  if (policy === undefined || !policy.restrictedFileSystem) return;
  const target = realTarget(path);
  const access = accessOf(policy, target);
  if (access === undefined || access === 'deny') throw RpcError.invalidRequest(`${method}: reading \`${path}\` is not allowed by the sandbox`);
}

/**
 * A filter that hides entries the policy denies (for listings), or undefined when nothing is
 * denied. Entries are judged by their path as listed, as bubblewrap hides them by path.
 */
export function deniedEntryFilter(policy: SandboxPolicy | undefined): ((path: string) => boolean) | undefined {
  if (policy === undefined || !policy.restrictedFileSystem || !policy.rules.some((rule) => rule.access === 'deny')) return undefined;
  return (path) => {
    const access = accessOf(policy, normalize(path));
    return access !== undefined && access !== 'deny';
  };
}

type Permissions = z.infer<typeof SandboxRequestSchema>['permissions'];

function networkEnabled(permissions: Permissions): boolean {
  if (permissions.type === 'disabled') return true;
  return permissions.network === 'enabled' || (typeof permissions.network === 'object' && permissions.network !== null && permissions.network.enabled);
}

/** Whether a sandbox request leaves the network on (unparseable requests count as off). */
export function sandboxNetworkEnabled(sandbox: unknown): boolean {
  const parsed = SandboxRequestSchema.safeParse(sandbox);
  return parsed.success && networkEnabled(parsed.data.permissions);
}
