import { basename } from 'node:path';
import type { EnvironmentInfo } from '../protocol/exec.js';
import { pathToUri } from './path-uri.js';

/** The facts about the executor host that `environment/info` reports. */
export interface HostFacts {
  /** The server's environment (SHELL, HOME, TMPDIR are read from it). */
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  homeDir: string;
  tempDir: string;
  platform: NodeJS.Platform;
  version: string;
}

/** Capabilities this exec-server implements; flags it does not implement are reported false. */
export const EXEC_SERVER_CAPABILITIES: Readonly<Record<string, boolean>> = {
  fileWriteStreaming: true,
  httpHeaderEnvVars: true,
  fsWatchMissing: false,
  environmentConfigRead: false,
  capabilityDiscoveryV2: false,
  capabilityDiscoverySandbox: false,
  sandboxedFileStreaming: false,
  networkProxyLaunch: false,
  networkProxyReviewDomains: false,
  credentialMasking: false,
  credentialMaskingCustomProviders: false,
  shellSnapshotV2: false,
  windowsMxc: false,
  linuxRootWritePreservesDevices: false,
  linuxApprovedRootWritePreservesRestrictions: false,
};

/** Builds the `environment/info` result for this host. */
export function describeHost(facts: HostFacts): EnvironmentInfo {
  const shellPath = facts.env.SHELL !== undefined && facts.env.SHELL.length > 0 ? facts.env.SHELL : '/bin/sh';
  const tmp = facts.env.TMPDIR;
  return {
    shell: { name: basename(shellPath), path: shellPath },
    executorVersion: facts.version,
    cwd: pathToUri(facts.cwd),
    userHomeDir: pathToUri(facts.homeDir),
    platformOs: facts.platform === 'darwin' ? 'macos' : facts.platform === 'win32' ? 'windows' : facts.platform,
    prependPathDirs: [],
    temporaryDirectories: tmp !== undefined && tmp.length > 0 ? [pathToUri(tmp)] : [],
    tempDir: pathToUri(facts.tempDir),
    capabilities: { ...EXEC_SERVER_CAPABILITIES },
  };
}
