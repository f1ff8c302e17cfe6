/**
 * Permission profiles: Codex's `[permissions.NAME]` tables and `default_permissions`, and the
 * legacy `sandbox_mode` expressed as the same kind of profile, so one shape reaches the sandbox.
 *
 * A profile is a list of filesystem rules (a special root or an absolute path, with `read`,
 * `write` or `deny`; on the same target deny beats write beats read) and a network switch. The
 * rules are turned into the exec-server's `FileSystemSandboxContext` by the session layer and
 * enforced on the executor's host.
 */
import { isAbsolute, normalize } from 'node:path';
import { z } from 'zod';
import type { SandboxMode } from '../protocol/thread.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/** What a rule allows on its target and below it. */
export type PermissionAccess = 'read' | 'write' | 'deny';

/** Special roots, resolved on the executor: `workspace_roots` are the environment's cwd (and extra roots). */
export type SpecialRoot = 'root' | 'minimal' | 'workspace_roots' | 'tmpdir' | 'slash_tmp';

/** What a rule applies to. */
export type PermissionTarget = { special: SpecialRoot; subpath?: string } | { path: string };

/** One filesystem rule of a profile. */
export interface PermissionRule {
  target: PermissionTarget;
  access: PermissionAccess;
  /** Skip the rule when the path does not exist (protective read-only rules such as `.git`). */
  skipMissing?: boolean;
}

/** A resolved permission profile. */
export interface PermissionProfile {
  /** The profile's name (`:read-only`, `staging`), or `sandbox_mode=<mode>` for the legacy setting. */
  name: string;
  description?: string;
  /** No sandbox at all (`:danger-full-access` / `danger-full-access`). */
  fullAccess: boolean;
  /** Rules in the order written; parents' rules first. */
  rules: PermissionRule[];
  /** Outgoing network allowed. */
  network: boolean;
  /** Extra workspace roots (absolute), added to each environment's cwd. */
  workspaceRoots: string[];
  /** Set when the profile stands for the legacy `sandbox_mode`. */
  legacyMode?: SandboxMode;
}

/** The built-in profile names, as Codex lists them. */
export const BUILT_IN_PROFILES = [':read-only', ':workspace', ':danger-full-access'] as const;

const SPECIAL_KEYS: Readonly<Record<string, SpecialRoot>> = {
  ':root': 'root',
  ':minimal': 'minimal',
  ':workspace_roots': 'workspace_roots',
  ':project_roots': 'workspace_roots',
  ':tmpdir': 'tmpdir',
  ':slash_tmp': 'slash_tmp',
};

/** Folders of a workspace that stay read-only even when the workspace is writable (as Codex). */
const PROTECTED_WORKSPACE_FOLDERS = ['.git', '.codex', '.agents'];

const AccessSchema = z.enum(['read', 'write', 'deny', 'none']).transform((access): PermissionAccess => (access === 'none' ? 'deny' : access));

const ProfileTomlSchema = z.looseObject({
  description: z.string().optional(),
  extends: z.string().optional(),
  workspace_roots: z.record(z.string(), z.boolean()).optional(),
  filesystem: z.record(z.string(), z.union([AccessSchema, z.record(z.string(), AccessSchema), z.number()])).optional(),
  network: z.looseObject({ enabled: z.boolean().optional() }).optional(),
});

const ProfilesTomlSchema = z.record(z.string(), ProfileTomlSchema);

/** Network keys Codex has that need its proxy; accepted and reported as not enforced here. */
const UNENFORCED_NETWORK_KEYS = ['mode', 'domains', 'unix_sockets', 'proxy_url', 'socks_url', 'enable_socks5', 'enable_socks5_udp', 'allow_local_binding', 'allow_upstream_proxy', 'mitm'];

/** Parsed `[permissions]` tables, by name, before `extends` is applied. */
export interface PermissionProfiles {
  /** Resolves a profile by name (built-in or configured), following `extends`. */
  get(name: string): PermissionProfile;
  /** Names of the configured profiles. */
  names(): string[];
}

function builtIn(name: (typeof BUILT_IN_PROFILES)[number]): PermissionProfile {
  switch (name) {
    case ':read-only':
      return { name, fullAccess: false, rules: [{ target: { special: 'root' }, access: 'read' }], network: false, workspaceRoots: [] };
    case ':workspace':
      return { name, fullAccess: false, rules: workspaceRules({ slashTmp: true, tmpdir: true, writableRoots: [] }), network: false, workspaceRoots: [] };
    case ':danger-full-access':
      return { name, fullAccess: true, rules: [], network: true, workspaceRoots: [] };
  }
}

function workspaceRules(options: { slashTmp: boolean; tmpdir: boolean; writableRoots: readonly string[] }): PermissionRule[] {
  const rules: PermissionRule[] = [
    { target: { special: 'root' }, access: 'read' },
    { target: { special: 'workspace_roots' }, access: 'write' },
  ];
  if (options.slashTmp) rules.push({ target: { special: 'slash_tmp' }, access: 'write' });
  if (options.tmpdir) rules.push({ target: { special: 'tmpdir' }, access: 'write' });
  for (const path of options.writableRoots) rules.push({ target: { path }, access: 'write' });
  for (const folder of PROTECTED_WORKSPACE_FOLDERS) rules.push({ target: { special: 'workspace_roots', subpath: folder }, access: 'read', skipMissing: true });
  return rules;
}

/** `[sandbox_workspace_write]` as the legacy mode uses it. */
export interface WorkspaceWriteSettings {
  writableRoots: readonly string[];
  networkAccess: boolean;
  excludeTmpdirEnvVar: boolean;
  excludeSlashTmp: boolean;
}

/** The legacy `sandbox_mode` (with `[sandbox_workspace_write]`) as a profile. */
export function profileForSandboxMode(mode: SandboxMode, workspaceWrite: WorkspaceWriteSettings): PermissionProfile {
  const name = `sandbox_mode=${mode}`;
  switch (mode) {
    case 'read-only':
      return { ...builtIn(':read-only'), name, legacyMode: mode };
    case 'danger-full-access':
      return { ...builtIn(':danger-full-access'), name, legacyMode: mode };
    case 'workspace-write':
      return {
        name,
        legacyMode: mode,
        fullAccess: false,
        rules: workspaceRules({ slashTmp: !workspaceWrite.excludeSlashTmp, tmpdir: !workspaceWrite.excludeTmpdirEnvVar, writableRoots: workspaceWrite.writableRoots }),
        network: workspaceWrite.networkAccess,
        workspaceRoots: [],
      };
  }
}

function invalid(message: string): LocalError {
  return new LocalError(LocalErrorCode.InvalidConfig, message);
}

/** A filesystem key's target: a special root (`:workspace_roots`) or an absolute path. */
function targetOf(profile: string, key: string, subpath?: string): PermissionTarget {
  const where = `permissions.${profile}.filesystem`;
  const cleaned = subpath === undefined ? undefined : cleanSubpath(`${where}."${key}"`, subpath);
  const special = SPECIAL_KEYS[key];
  if (special !== undefined) return cleaned === undefined || cleaned === '' ? { special } : { special, subpath: cleaned };
  if (key.startsWith(':')) throw invalid(`${where}: unknown special path \`${key}\`; known: ${Object.keys(SPECIAL_KEYS).join(', ')}`);
  const path = cleanSubpath(where, key);
  if (!isAbsolute(path)) throw invalid(`${where}: path \`${key}\` must be absolute (or a special key such as :workspace_roots)`);
  if (cleaned !== undefined) throw invalid(`${where}."${key}": only special roots take a table of sub-paths`);
  return { path: normalize(path) };
}

/** A trailing `/**` means the folder and everything below it, which is what a rule means anyway. */
function cleanSubpath(where: string, value: string): string {
  const stripped = value.replace(/\/\*\*$/, '');
  if (/[*?[\]]/.test(stripped)) throw invalid(`${where}: glob \`${value}\` is not supported; name a folder (a trailing /** is allowed)`);
  if (stripped.split('/').includes('..')) throw invalid(`${where}: \`${value}\` must not contain ..`);
  return stripped === '.' ? '' : stripped.replace(/^\.\//, '');
}

/**
 * Parses `[permissions]` (raw TOML values). Errors name the profile and key; keys that only
 * Codex's network proxy understands are accepted with a warning that they are not enforced.
 */
export function parsePermissionProfiles(raw: unknown): { profiles: PermissionProfiles; warnings: string[] } {
  const parsed = ProfilesTomlSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`permissions.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  const tables = parsed.data;
  const warnings: string[] = [];
  for (const [name, table] of Object.entries(tables)) {
    if ((BUILT_IN_PROFILES as readonly string[]).includes(name)) throw invalid(`permissions.${name}: \`${name}\` is a built-in profile and cannot be redefined`);
    for (const key of Object.keys(table.network ?? {})) {
      if (key !== 'enabled' && UNENFORCED_NETWORK_KEYS.includes(key)) warnings.push(`permissions.${name}.network.${key} is not enforced by codex-multienv (only network.enabled is); ignored`);
    }
  }
  const resolved = new Map<string, PermissionProfile>();
  const resolve = (name: string, chain: readonly string[]): PermissionProfile => {
    if ((BUILT_IN_PROFILES as readonly string[]).includes(name)) return builtIn(name as (typeof BUILT_IN_PROFILES)[number]);
    const done = resolved.get(name);
    if (done !== undefined) return done;
    const table = tables[name];
    if (table === undefined) {
      const known = [...BUILT_IN_PROFILES, ...Object.keys(tables)].join(', ');
      throw invalid(chain.length === 0 ? `unknown permission profile \`${name}\`; known profiles: ${known}` : `permissions.${chain[chain.length - 1] ?? ''}.extends: unknown profile \`${name}\`; known profiles: ${known}`);
    }
    if (chain.includes(name)) throw invalid(`permissions.${chain[chain.length - 1] ?? name}.extends: profiles extend each other in a cycle (${[...chain, name].join(' → ')})`);
    const parent = table.extends === undefined ? undefined : resolve(table.extends, [...chain, name]);
    const rules: PermissionRule[] = [...(parent?.rules ?? [])];
    for (const [key, value] of Object.entries(table.filesystem ?? {})) {
      if (key === 'glob_scan_max_depth') continue;
      if (typeof value === 'number') throw invalid(`permissions.${name}.filesystem."${key}": expected "read", "write", "deny" or a table`);
      if (typeof value === 'string') rules.push({ target: targetOf(name, key), access: value });
      else for (const [subpath, access] of Object.entries(value)) rules.push({ target: targetOf(name, key, subpath), access });
    }
    const workspaceRoots = [...(parent?.workspaceRoots ?? [])];
    for (const [path, on] of Object.entries(table.workspace_roots ?? {})) {
      if (!on) continue;
      if (!isAbsolute(path)) throw invalid(`permissions.${name}.workspace_roots: \`${path}\` must be an absolute path`);
      workspaceRoots.push(normalize(path));
    }
    const profile: PermissionProfile = {
      name,
      ...(table.description === undefined ? {} : { description: table.description }),
      // Extending full access and adding rules makes a restricted profile.
      fullAccess: (parent?.fullAccess ?? false) && rules.length === 0,
      rules,
      network: table.network?.enabled ?? parent?.network ?? false,
      workspaceRoots,
    };
    resolved.set(name, profile);
    return profile;
  };
  // Every profile is resolved once here, so a broken one is reported at start-up, not mid-turn.
  for (const name of Object.keys(tables)) resolve(name, []);
  return { profiles: { get: (name) => resolve(name, []), names: () => Object.keys(tables) }, warnings };
}

/** A one-line summary of a profile for people and the model: what is writable, denied, network. */
export function describeProfile(profile: PermissionProfile): string {
  if (profile.fullAccess) return `${profile.name}: no sandbox (full access)`;
  const show = (rule: PermissionRule): string => {
    const target = rule.target;
    if ('path' in target) return target.path;
    const root = target.special === 'workspace_roots' ? 'the working directory' : target.special === 'slash_tmp' ? '/tmp' : target.special === 'tmpdir' ? 'the temp dir' : target.special === 'root' ? 'everything' : 'system folders';
    return target.subpath === undefined ? root : `${root}/${target.subpath}`;
  };
  const of = (access: PermissionAccess): string[] => [...new Set(profile.rules.filter((rule) => rule.access === access && rule.skipMissing !== true).map(show))];
  const writable = of('write');
  const denied = of('deny');
  const parts = [`writable: ${writable.length === 0 ? 'nothing' : writable.join(', ')}`];
  if (denied.length > 0) parts.push(`denied: ${denied.join(', ')}`);
  parts.push(`network: ${profile.network ? 'on' : 'off'}`);
  return `${profile.name}: ${parts.join('; ')}`;
}
