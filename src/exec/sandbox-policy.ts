import { existsSync, readlinkSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { RpcError } from '../rpc/errors.js';
import { ioError } from './io-errors.js';
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
      file_system: z.union([z.looseObject({ type: z.literal('unrestricted') }), z.looseObject({ type: z.literal('restricted'), entries: z.array(EntrySchema) })]),
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
  if (!parsed.success)
    throw RpcError.invalidParams(`unsupported sandbox request: ${parsed.error.issues[0]?.message ?? 'invalid'} at ${parsed.error.issues[0]?.path.join('.') ?? ''}`);
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

/** Symlinks followed past the existing part of a path before giving up, as the kernel does (ELOOP). */
const MAX_SYMLINK_HOPS = 40;

/**
 * Resolves symlinks and `..` the way the kernel will when the path is used: the nearest existing
 * ancestor is canonicalized and the rest appended. A write through a symlink is judged by where
 * it lands, also when the link dangles: its target is where the write would create the file, so
 * the resolution goes on from there.
 * @throws an `ELOOP` system error when the links go round (the write itself would fail so).
 */
export function realTarget(path: string): string {
  let pending = normalize(path);
  for (let hops = 0; ; hops += 1) {
    const { real, missing } = resolveExisting(pending);
    const [first, ...rest] = missing;
    if (first === undefined) return real;
    // The first missing part exists (realpath failed through it) only when it is a symlink whose
    // target is missing: then the path lands wherever that target leads.
    const link = readLinkOrUndefined(join(real, first));
    if (link === undefined) return join(real, ...missing);
    if (hops === MAX_SYMLINK_HOPS) throw Object.assign(new Error(`too many levels of symbolic links resolving ${path}`), { code: 'ELOOP' });
    pending = join(resolve(real, link), ...rest);
  }
}

/** Splits a path into the real path of its deepest ancestor that resolves and the parts below it. */
function resolveExisting(path: string): { real: string; missing: string[] } {
  let existing = path;
  const missing: string[] = [];
  for (;;) {
    try {
      // The native one (realpath(3)) costs half of Node's own, and this runs for every sandboxed call.
      return { real: realpathSync.native(existing), missing: missing.reverse() };
    } catch {
      const parent = dirname(existing);
      if (parent === existing) return { real: existing, missing: missing.reverse() };
      missing.push(existing.slice(parent.length).replace(/^\/+/, ''));
      existing = parent;
    }
  }
}

function readLinkOrUndefined(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Throws -32600 unless the policy lets `path` be written (created, replaced or removed), judged
 * by where it lands (see {@link realTarget}). With `followFinal: false` (removing an entry, or a
 * write that must not follow a final symlink) a final symlink is judged itself, not its target.
 * Returns where the write lands, or undefined when the filesystem is not restricted.
 */
export function assertWritable(policy: SandboxPolicy | undefined, path: string, method: string, followFinal = true): string | undefined {
  if (policy === undefined || !policy.restrictedFileSystem) return undefined;
  const target = resolveOrThrow(() => (followFinal ? realTarget(path) : join(realTarget(dirname(path)), basename(path))));
  assertLandsWritable(policy, path, target, method);
  return target;
}

/** Throws -32600 unless `landing`, where a write to `path` really lands, is writable under the policy. */
export function assertLandsWritable(policy: SandboxPolicy, path: string, landing: string, method: string): void {
  if (accessOf(policy, landing) !== 'write') {
    throw RpcError.invalidRequest(`${method}: writing \`${path}\` is not allowed by the sandbox${landing === path ? '' : ` (it resolves to \`${landing}\`)`}`);
  }
}

/**
 * Throws -32600 unless the policy lets `path` be read, judged by the real path it leads to. With
 * `followFinal: false` (reading a symlink itself, as a copy does) a final symlink is judged itself.
 */
export function assertReadable(policy: SandboxPolicy | undefined, path: string, method: string, followFinal = true): void {
  if (policy === undefined || !policy.restrictedFileSystem) return;
  const target = resolveOrThrow(() => (followFinal ? realTarget(path) : join(realTarget(dirname(path)), basename(path))));
  if (!readable(policy, target)) throw RpcError.invalidRequest(`${method}: reading \`${path}\` is not allowed by the sandbox`);
}

/**
 * The check a direct read makes, for the entries a walk reports or a copy reads: true when the
 * policy lets that (real) path be read. Undefined when the filesystem is not restricted.
 */
export function readCheck(policy: SandboxPolicy | undefined): ((path: string) => boolean) | undefined {
  if (policy === undefined || !policy.restrictedFileSystem) return undefined;
  return (path) => readable(policy, path);
}

/**
 * A filter that hides entries the policy denies (for listings), or undefined when nothing is
 * denied. Entries are judged by their path as listed, as bubblewrap hides them by path.
 */
export function deniedEntryFilter(policy: SandboxPolicy | undefined): ((path: string) => boolean) | undefined {
  if (policy === undefined || !policy.restrictedFileSystem || !policy.rules.some((rule) => rule.access === 'deny')) return undefined;
  return (path) => readable(policy, path);
}

function readable(policy: SandboxPolicy, path: string): boolean {
  const access = accessOf(policy, normalize(path));
  return access !== undefined && access !== 'deny';
}

/** Runs a path resolution, a looping symlink becoming the wire error the operation would give. */
function resolveOrThrow(resolution: () => string): string {
  try {
    return resolution();
  } catch (error) {
    throw ioError(error);
  }
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
