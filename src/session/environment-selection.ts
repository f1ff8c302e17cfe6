import { isAbsolute } from 'node:path';
import type { PermissionProfile } from '../config/permissions.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import { DEFAULT_EXCLUDES } from '../exec/env-policy.js';
import type { EnvPolicy } from '../protocol/exec.js';
import type { ThreadEnvironment } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { checkProfile, type ResolvedThreadSettings } from './settings.js';

/** One environment a caller selects: an id and optionally an absolute cwd on that host. */
export interface EnvironmentSelection {
  id: string;
  cwd?: string;
  /** A permission profile name for this environment in this thread. */
  permissions?: string;
}

/** Variables every command gets on top of its environment: no pagers, no colours. */
export const COMMAND_ENV_OVERLAY: Readonly<Record<string, string>> = { NO_COLOR: '1', TERM: 'dumb', PAGER: 'cat', GIT_PAGER: 'cat', GH_PAGER: 'cat' };

/**
 * Turns what a caller selects into a thread's environments, against the registry of this server:
 * known ids, absolute cwds, no duplicates, permission profiles that exist.
 */
export class EnvironmentSelector {
  readonly #registry: EnvironmentRegistry;
  readonly #logger: Logger;

  constructor(registry: EnvironmentRegistry, logger: Logger) {
    this.#registry = registry;
    this.#logger = logger;
  }

  /**
   * Validates a selection (omitted: the registry's default). A missing cwd keeps the sticky one,
   * else the thread cwd for `local` (or when the caller set the thread cwd explicitly), else the
   * remote environment's own working directory. A permission profile named for an environment
   * must exist; a missing one keeps the sticky one.
   */
  async resolve(
    selection: readonly EnvironmentSelection[] | undefined,
    sticky: readonly ThreadEnvironment[] | undefined,
    threadCwd: string,
    threadCwdExplicit: boolean,
    settings: ResolvedThreadSettings,
  ): Promise<ThreadEnvironment[]> {
    const wanted: readonly EnvironmentSelection[] = selection ?? this.#registry.defaultSelection().map((id) => ({ id }));
    const seen = new Set<string>();
    for (const entry of wanted) {
      if (this.#registry.get(entry.id) === undefined) {
        throw new LocalError(LocalErrorCode.InvalidArgument, `unknown turn environment id \`${entry.id}\`; known environments: ${this.#known()}`);
      }
      if (seen.has(entry.id)) throw new LocalError(LocalErrorCode.InvalidArgument, `duplicate turn environment id \`${entry.id}\``);
      seen.add(entry.id);
      if (entry.cwd !== undefined && !isAbsolute(entry.cwd)) {
        throw new LocalError(LocalErrorCode.InvalidArgument, `invalid cwd for environment \`${entry.id}\`: path \`${entry.cwd}\` is not an absolute path`);
      }
      if (entry.permissions !== undefined) checkProfile(settings, entry.permissions, `environment \`${entry.id}\``);
    }
    return Promise.all(
      wanted.map(async (entry): Promise<ThreadEnvironment> => {
        const previous = sticky?.find((e) => e.id === entry.id);
        const permissions = entry.permissions ?? previous?.permissions;
        const withPermissions = (chosen: ThreadEnvironment): ThreadEnvironment => (permissions === undefined ? chosen : { ...chosen, permissions });
        if (entry.cwd !== undefined) return withPermissions({ id: entry.id, cwd: entry.cwd });
        if (previous !== undefined) return withPermissions({ id: previous.id, cwd: previous.cwd });
        const environment = this.#registry.get(entry.id);
        if (environment === undefined || environment.kind === 'local' || threadCwdExplicit) return withPermissions({ id: entry.id, cwd: threadCwd });
        try {
          const client = await environment.client();
          const reported = client.info.cwd;
          if (typeof reported === 'string') return withPermissions({ id: entry.id, cwd: new URL(reported).pathname });
        } catch (error) {
          this.#logger.warn('environment unreachable while choosing its cwd; using the thread cwd', { environment: entry.id, error: errorMessage(error) });
        }
        return withPermissions({ id: entry.id, cwd: threadCwd });
      }),
    );
  }

  /**
   * Fails before any model request when a selection names an environment this server does not
   * have (one added with environment/add before a restart, or removed since).
   */
  checkRegistered(selection: readonly ThreadEnvironment[]): void {
    const missing = selection.filter((entry) => this.#registry.get(entry.id) === undefined).map((entry) => `\`${entry.id}\``);
    if (missing.length === 0) return;
    throw new LocalError(
      LocalErrorCode.InvalidArgument,
      `the thread's environment${missing.length === 1 ? '' : 's'} ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not registered in this server (environments added with environment/add last as long as the server process, or until environment/remove); add ${missing.length === 1 ? 'it' : 'them'} again with environment/add, or choose environments for this turn (\`environments\`) or for the thread (\`stickyEnvironments\`); known environments: ${this.#known()}`,
    );
  }

  /** An environment's permissions in a thread: the thread's pick, the environment's own, or the thread default. */
  permissionsOf(settings: ResolvedThreadSettings, entry: ThreadEnvironment): PermissionProfile {
    if (entry.permissions !== undefined) return checkProfile(settings, entry.permissions, `environment \`${entry.id}\``);
    const own = this.#registry.get(entry.id)?.permissions;
    return own === undefined ? settings.permissions : checkProfile(settings, own, `environment \`${entry.id}\` (its configured permissions)`);
  }

  #known(): string {
    return (
      this.#registry
        .list()
        .map((e) => e.id)
        .join(', ') || '(none)'
    );
  }
}

/**
 * Where a command's variables come from on an environment, for the model and status tools: the
 * base (this server's own environment for `local`, the executor's own otherwise; never ours on a
 * remote host) and the policy applied on that host.
 */
export function commandEnvironmentProvenance(local: boolean, policy: EnvPolicy): string {
  const base = local ? "this server's own environment (launcher)" : "the remote executor's own environment (nothing from this server's machine)";
  // The URL rule is applied by our exec-server only (local is ours; a remote one may be Codex's).
  const urls = local ? 'values holding a URL with a password' : 'on our exec-server, values holding a URL with a password';
  const parts = [
    `inherit=${policy.inherit}`,
    policy.ignoreDefaultExcludes ? 'credential-looking variables kept' : `credentials removed (names ${DEFAULT_EXCLUDES.join(',')}; ${urls})`,
  ];
  if (policy.exclude.length > 0) parts.push(`exclude=${policy.exclude.join(',')}`);
  if (Object.keys(policy.set).length > 0) parts.push(`set=${Object.keys(policy.set).join(',')}`);
  if (policy.includeOnly.length > 0) parts.push(`include_only=${policy.includeOnly.join(',')}`);
  return `${base}, filtered by shell_environment_policy (${parts.join('; ')}), plus ${Object.keys(COMMAND_ENV_OVERLAY).join(', ')}, CODEX_THREAD_ID`;
}
