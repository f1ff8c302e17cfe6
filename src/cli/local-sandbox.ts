import type { EffectiveConfig } from '../config/settings.js';
import { profileForSandboxMode, type PermissionProfile } from '../config/permissions.js';
import { LOCAL_ENVIRONMENT_ID, type EnvironmentRegistry } from '../environments/registry.js';
import type { LocalExecServer } from '../environments/local-server.js';
import type { Logger } from '../util/logger.js';

/** The profile a thread runs under when its call picks none: `default_permissions`, else `sandbox_mode`. */
export function configuredPermissions(config: EffectiveConfig): PermissionProfile {
  if (config.defaultPermissions === undefined) return profileForSandboxMode(config.sandboxMode, config.sandboxWorkspaceWrite);
  return config.permissionProfiles.get(config.defaultPermissions);
}

/**
 * The name of the configured profile when it confines the `local` environment's commands, which
 * bubblewrap then does on this host; undefined when there is no `local` or the profile is full
 * access. Remote environments confine their commands on their own host.
 */
export function localSandboxNeed(config: EffectiveConfig, hasLocal: boolean): string | undefined {
  if (!hasLocal) return undefined;
  const profile = configuredPermissions(config);
  return profile.fullAccess ? undefined : profile.name;
}

/**
 * Warns once when the configured sandbox confines `local` and this host cannot (no bubblewrap, or
 * no namespaces): every command there would be refused, and the first one should not be where
 * the user finds out. Asks the local exec-server's own probe, so its answer is cached for the
 * first command.
 */
export async function warnIfLocalSandboxUnavailable(config: EffectiveConfig, registry: EnvironmentRegistry, localServer: LocalExecServer, logger: Logger): Promise<void> {
  const need = localSandboxNeed(config, registry.get(LOCAL_ENVIRONMENT_ID) !== undefined);
  if (need === undefined) return;
  const probe = await localServer.sandboxAvailability();
  if (probe.ok) return;
  logger.warn(`the configured sandbox (${need}) confines every command on \`local\`, and this host cannot, so each one will be refused: ${probe.message}`);
}
