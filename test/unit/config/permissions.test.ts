import { describeProfile, parsePermissionProfiles, profileForSandboxMode } from '../../../src/config/permissions.js';
import { LocalError } from '../../../src/util/errors.js';

const NO_WORKSPACE_EXTRAS = { writableRoots: [], networkAccess: false, excludeTmpdirEnvVar: false, excludeSlashTmp: false };

function parseError(raw: unknown): string {
  try {
    parsePermissionProfiles(raw);
  } catch (error) {
    expect(error).toBeInstanceOf(LocalError);
    return (error as LocalError).message;
  }
  throw new Error('expected a parse error');
}

describe('permission profiles', () => {
  it('reads Codex’s documented example: special roots, nested sub-paths, trailing /** and workspace roots', () => {
    const { profiles, warnings } = parsePermissionProfiles({
      'restricted-workspace': {
        workspace_roots: { '/srv/project': true, '/ignored': false },
        filesystem: { ':minimal': 'read', ':workspace_roots': { '.': 'write', private: 'deny', 'private/**': 'deny' }, '/opt/cache': 'none' },
      },
    });
    expect(warnings).toEqual([]);
    const profile = profiles.get('restricted-workspace');
    expect(profile).toMatchObject({ fullAccess: false, network: false, workspaceRoots: ['/srv/project'] });
    expect(profile.rules).toEqual([
      { target: { special: 'minimal' }, access: 'read' },
      { target: { special: 'workspace_roots' }, access: 'write' },
      { target: { special: 'workspace_roots', subpath: 'private' }, access: 'deny' },
      { target: { special: 'workspace_roots', subpath: 'private' }, access: 'deny' },
      { target: { path: '/opt/cache' }, access: 'deny' },
    ]);
    expect(describeProfile(profile)).toBe('restricted-workspace: writable: the working directory; denied: the working directory/private, /opt/cache; network: off');
  });

  it('follows extends through built-ins and other profiles, child rules after the parent’s', () => {
    const { profiles } = parsePermissionProfiles({
      base: { extends: ':workspace', network: { enabled: true } },
      child: { extends: 'base', filesystem: { '/data': 'read' } },
      open: { extends: ':danger-full-access' },
    });
    const child = profiles.get('child');
    expect(child.network).toBe(true);
    expect(child.rules[0]).toEqual({ target: { special: 'root' }, access: 'read' });
    expect(child.rules.at(-1)).toEqual({ target: { path: '/data' }, access: 'read' });
    expect(profiles.get('open').fullAccess).toBe(true);
    expect(profiles.get(':read-only').rules).toEqual([{ target: { special: 'root' }, access: 'read' }]);
    expect(profiles.names()).toEqual(['base', 'child', 'open']);
  });

  it('refuses what it cannot enforce or understand, naming the profile and key', () => {
    expect(parseError({ a: { filesystem: { 'relative/path': 'read' } } })).toBe(
      'permissions.a.filesystem: path `relative/path` must be absolute (or a special key such as :workspace_roots)',
    );
    expect(parseError({ a: { filesystem: { ':home': 'read' } } })).toMatch(/^permissions\.a\.filesystem: unknown special path `:home`; known: :root, :minimal/);
    expect(parseError({ a: { filesystem: { ':workspace_roots': { 'src/*.ts': 'deny' } } } })).toMatch(/glob `src\/\*\.ts` is not supported/);
    expect(parseError({ a: { filesystem: { ':workspace_roots': { '../up': 'write' } } } })).toMatch(/must not contain \.\./);
    expect(parseError({ a: { filesystem: { '/x': 'execute' } } })).toMatch(/^permissions\.a\.filesystem\.\/x/);
    expect(parseError({ a: { extends: 'b' }, b: { extends: 'a' } })).toBe('permissions.b.extends: profiles extend each other in a cycle (a → b → a)');
    expect(parseError({ a: { extends: 'missing' } })).toMatch(
      /^permissions\.a\.extends: unknown profile `missing`; known profiles: :read-only, :workspace, :danger-full-access, a$/,
    );
    expect(parseError({ ':workspace': {} })).toMatch(/built-in profile and cannot be redefined/);
    expect(() => parsePermissionProfiles({}).profiles.get('nope')).toThrow('unknown permission profile `nope`; known profiles: :read-only, :workspace, :danger-full-access');
  });

  it('accepts Codex’s proxy-only network keys with a warning that they are not enforced', () => {
    const { profiles, warnings } = parsePermissionProfiles({ web: { network: { enabled: true, domains: { 'example.com': 'allow' } } } });
    expect(profiles.get('web').network).toBe(true);
    expect(warnings).toEqual(['permissions.web.network.domains is not enforced by codex-multienv (only network.enabled is); ignored']);
  });

  it('expresses the legacy sandbox modes as profiles', () => {
    expect(profileForSandboxMode('danger-full-access', NO_WORKSPACE_EXTRAS)).toMatchObject({ fullAccess: true, legacyMode: 'danger-full-access' });
    const write = profileForSandboxMode('workspace-write', { writableRoots: ['/cache'], networkAccess: true, excludeTmpdirEnvVar: true, excludeSlashTmp: false });
    expect(write.network).toBe(true);
    const targets = write.rules.filter((rule) => rule.access === 'write').map((rule) => rule.target);
    expect(targets).toEqual([{ special: 'workspace_roots' }, { special: 'slash_tmp' }, { path: '/cache' }]);
    expect(write.rules.filter((rule) => rule.skipMissing === true).map((rule) => rule.target)).toContainEqual({ special: 'workspace_roots', subpath: '.git' });
    expect(describeProfile(profileForSandboxMode('read-only', NO_WORKSPACE_EXTRAS))).toBe('sandbox_mode=read-only: writable: nothing; network: off');
  });
});
