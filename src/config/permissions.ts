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
import { checkValue, formatKeyPath, refuseProtoKey, tomlTable } from './validation.js';
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

/** Network keys Codex has that need its proxy; accepted and reported as not enforced here. */
const UNENFORCED_NETWORK_KEYS = [
  'mode',
  'domains',
  'unix_sockets',
  'proxy_url',
  'socks_url',
  'enable_socks5',
  'enable_socks5_udp',
  'allow_local_binding',
  'allow_upstream_proxy',
  'mitm',
];

/** The profiles of `[permissions]` and the built-in ones, by name. */
export interface PermissionProfiles {
  /**
   * A profile by name (built-in or configured), `extends` applied.
   * @throws LocalError `INVALID_CONFIG` for an unknown name, listing the known ones.
   */
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

/** What a filesystem key resolves to, or what is wrong with it and where (under the `filesystem` table). */
type TargetResult = { target: PermissionTarget } | { at: string[]; problem: string };

/** A filesystem key's target: a special root (`:workspace_roots`) or an absolute path. */
function targetOf(key: string, subpath?: string): TargetResult {
  let cleaned: string | undefined;
  if (subpath !== undefined) {
    const result = cleanSubpath(subpath);
    if (typeof result !== 'string') return { at: [key], problem: result.problem };
    cleaned = result;
  }
  const special = SPECIAL_KEYS[key];
  if (special !== undefined) return { target: cleaned === undefined || cleaned === '' ? { special } : { special, subpath: cleaned } };
  if (key.startsWith(':')) return { at: [], problem: `unknown special path \`${key}\`; known: ${Object.keys(SPECIAL_KEYS).join(', ')}` };
  const path = cleanSubpath(key);
  if (typeof path !== 'string') return { at: [], problem: path.problem };
  if (!isAbsolute(path)) return { at: [], problem: `path \`${key}\` must be absolute (or a special key such as :workspace_roots)` };
  if (cleaned !== undefined) return { at: [key], problem: 'only special roots take a table of sub-paths' };
  return { target: { path: normalize(path) } };
}

/** A trailing `/**` means the folder and everything below it, which is what a rule means anyway. */
function cleanSubpath(value: string): string | { problem: string } {
  const stripped = value.replace(/\/\*\*$/, '');
  if (/[*?[\]]/.test(stripped)) return { problem: `glob \`${value}\` is not supported; name a folder (a trailing /** is allowed)` };
  if (stripped.split('/').includes('..')) return { problem: `\`${value}\` must not contain ..` };
  return stripped === '.' ? '' : stripped.replace(/^\.\//, '');
}

const AccessSchema = z
  .string()
  .pipe(z.enum(['read', 'write', 'deny', 'none']))
  .transform((access): PermissionAccess => (access === 'none' ? 'deny' : access));

/** `[permissions.NAME.filesystem]`: target → access, or special root → table of sub-path → access. */
const FilesystemTomlSchema = refuseProtoKey(
  tomlTable(z.object({ glob_scan_max_depth: z.int().min(0).optional() }).catchall(z.union([AccessSchema, refuseProtoKey(z.record(z.string(), AccessSchema))]))),
).transform((table, ctx): PermissionRule[] => {
  const rules: PermissionRule[] = [];
  for (const [key, value] of Object.entries(table)) {
    // `glob_scan_max_depth` bounds Codex's glob expansion; globs are refused here.
    if (key === 'glob_scan_max_depth' || typeof value === 'number' || value === undefined) continue;
    const entries: [string | undefined, PermissionAccess][] = typeof value === 'string' ? [[undefined, value]] : Object.entries(value);
    for (const [subpath, access] of entries) {
      const result = targetOf(key, subpath);
      if ('target' in result) rules.push({ target: result.target, access });
      else ctx.issues.push({ code: 'custom', input: value, path: result.at, message: result.problem });
    }
  }
  return rules;
});

/** One `[permissions.NAME]`, its own rules (before `extends`). */
const ProfileTomlSchema = tomlTable(
  z.looseObject({
    description: z.string().optional(),
    extends: z.string().optional(),
    workspace_roots: refuseProtoKey(z.record(z.string(), z.boolean())).optional(),
    filesystem: FilesystemTomlSchema.optional(),
    network: tomlTable(z.looseObject({ enabled: z.boolean().optional() })).optional(),
  }),
).transform((raw, ctx) => {
  const workspaceRoots: string[] = [];
  for (const [path, on] of Object.entries(raw.workspace_roots ?? {})) {
    if (!on) continue;
    if (isAbsolute(path)) workspaceRoots.push(normalize(path));
    else ctx.issues.push({ code: 'custom', input: path, path: ['workspace_roots'], message: `\`${path}\` must be an absolute path` });
  }
  return {
    description: raw.description,
    extends: raw.extends,
    rules: raw.filesystem ?? [],
    workspaceRoots,
    network: raw.network?.enabled,
    unenforcedNetworkKeys: Object.keys(raw.network ?? {}).filter((key) => UNENFORCED_NETWORK_KEYS.includes(key)),
  };
});

type ProfileToml = z.output<typeof ProfileTomlSchema>;

/** A resolved profile, or what is wrong and where (under `[permissions]`). */
type ResolveResult = { profile: PermissionProfile } | { at: string[]; problem: string };

function isBuiltIn(name: string): name is (typeof BUILT_IN_PROFILES)[number] {
  return (BUILT_IN_PROFILES as readonly string[]).includes(name);
}

/** Resolves profiles by name, following `extends`; each configured profile is resolved once. */
class ProfileResolver {
  readonly #resolved = new Map<string, PermissionProfile>();

  constructor(private readonly tables: Readonly<Record<string, ProfileToml>>) {}

  resolve(name: string, chain: readonly string[] = []): ResolveResult {
    if (isBuiltIn(name)) return { profile: builtIn(name) };
    const done = this.#resolved.get(name);
    if (done !== undefined) return { profile: done };
    const table = Object.hasOwn(this.tables, name) ? this.tables[name] : undefined;
    const referrer = chain.at(-1);
    if (table === undefined) {
      const known = [...BUILT_IN_PROFILES, ...Object.keys(this.tables)].join(', ');
      if (referrer === undefined) return { at: [], problem: `unknown permission profile \`${name}\`; known profiles: ${known}` };
      return { at: [referrer, 'extends'], problem: `unknown profile \`${name}\`; known profiles: ${known}` };
    }
    if (chain.includes(name)) return { at: [referrer ?? name, 'extends'], problem: `profiles extend each other in a cycle (${[...chain, name].join(' → ')})` };
    let parent: PermissionProfile | undefined;
    if (table.extends !== undefined) {
      const result = this.resolve(table.extends, [...chain, name]);
      if (!('profile' in result)) return result;
      parent = result.profile;
    }
    const rules = [...(parent?.rules ?? []), ...table.rules];
    const profile: PermissionProfile = {
      name,
      ...(table.description === undefined ? {} : { description: table.description }),
      // Extending full access and adding rules makes a restricted profile.
      fullAccess: (parent?.fullAccess ?? false) && rules.length === 0,
      rules,
      network: table.network ?? parent?.network ?? false,
      workspaceRoots: [...(parent?.workspaceRoots ?? []), ...table.workspaceRoots],
    };
    this.#resolved.set(name, profile);
    return { profile };
  }
}

/** `[permissions]` of config.toml: every profile resolved, so a broken one is reported at start-up, not mid-turn. */
export const PermissionsTomlSchema = refuseProtoKey(z.record(z.string(), ProfileTomlSchema)).transform((tables, ctx) => {
  const warnings: string[] = [];
  for (const [name, table] of Object.entries(tables)) {
    if (isBuiltIn(name)) {
      ctx.issues.push({ code: 'custom', input: name, path: [name], message: `\`${name}\` is a built-in profile and cannot be redefined` });
      return z.NEVER;
    }
    for (const key of table.unenforcedNetworkKeys)
      warnings.push(`${formatKeyPath(['permissions', name, 'network', key])} is not enforced by codex-multienv (only network.enabled is); ignored`);
  }
  const resolver = new ProfileResolver(tables);
  for (const name of Object.keys(tables)) {
    const result = resolver.resolve(name);
    if (!('profile' in result)) {
      ctx.issues.push({ code: 'custom', input: name, path: result.at, message: result.problem });
      return z.NEVER;
    }
  }
  const profiles: PermissionProfiles = {
    get(name) {
      const result = resolver.resolve(name);
      if ('profile' in result) return result.profile;
      const where = result.at.length === 0 ? '' : `${formatKeyPath(['permissions', ...result.at])}: `;
      throw new LocalError(LocalErrorCode.InvalidConfig, `${where}${result.problem}`);
    },
    names: () => Object.keys(tables),
  };
  return { profiles, warnings };
});

/** Parsed `[permissions]`: the profiles, and what is accepted but not enforced. */
export interface ParsedPermissions {
  profiles: PermissionProfiles;
  /** One line per key only Codex's network proxy understands. */
  warnings: string[];
}

/**
 * Parses `[permissions]` (raw TOML values). Errors name the profile and key; keys that only
 * Codex's network proxy understands are accepted with a warning that they are not enforced.
 * @throws LocalError `INVALID_CONFIG`: `permissions.<name>.<key>: <problem>`.
 */
export function parsePermissionProfiles(raw: unknown): ParsedPermissions {
  return checkValue(PermissionsTomlSchema, raw ?? {}, { at: ['permissions'] });
}

/** A one-line summary of a profile for people and the model: what is writable, denied, network. */
export function describeProfile(profile: PermissionProfile): string {
  if (profile.fullAccess) return `${profile.name}: no sandbox (full access)`;
  const show = (rule: PermissionRule): string => {
    const target = rule.target;
    if ('path' in target) return target.path;
    const root =
      target.special === 'workspace_roots'
        ? 'the working directory'
        : target.special === 'slash_tmp'
          ? '/tmp'
          : target.special === 'tmpdir'
            ? 'the temp dir'
            : target.special === 'root'
              ? 'everything'
              : 'system folders';
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
