import type { ApprovalPolicy } from '../agent/approvals.js';
import type { ModelPort } from '../agent/model-port.js';
import type { ProjectDocOptions } from '../agent/project-docs.js';
import type { McpServerConfig } from '../config/mcp-servers.js';
import type { PermissionProfile } from '../config/permissions.js';
import type { EnvPolicy } from '../protocol/exec.js';
import type { ThreadConfig, ThreadEngine } from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** What the thread manager and its turn engine need from the configuration for one thread. */
export interface ResolvedThreadSettings {
  model: string;
  modelProvider: string;
  approvalPolicy: ApprovalPolicy;
  sandbox: ThreadConfig['sandbox'];
  reasoning?: { effort?: string; summary?: string };
  baseInstructions?: string;
  developerInstructions?: string;
  compactPrompt?: string;
  /** The provider's hosted web search: live fetches or cached results only; none: not offered. */
  webSearch?: 'live' | 'cached';
  /** How AGENTS.md files are found in each environment. */
  projectDocs: ProjectDocOptions;
  /** Compact the history once a request used this many tokens; none: only when the context window is exceeded. */
  autoCompactTokenLimit?: number | undefined;
  shellEnvironmentPolicy: EnvPolicy;
  /** The thread's default permissions: `default_permissions`, or the sandbox mode as a profile. */
  permissions: PermissionProfile;
  /**
   * A named profile (configured or built-in), for environments that carry their own.
   * @throws LocalError naming the known profiles when there is none by that name.
   */
  permissionProfile(name: string): PermissionProfile;
  /** Commands may run in a login shell (`allow_login_shell`). */
  allowLoginShell: boolean;
  /** `[mcp_servers]`, validated. @default [] */
  mcpServers?: readonly McpServerConfig[];
  /**
   * The `[mcp_servers]` entries left out because they launch this server itself; an engine that
   * hands the configuration to another agent (Codex) disables them there. @default []
   */
  selfReferencingMcpServers?: readonly string[];
  /**
   * The keys the applied config profile (`[profiles.NAME]`) sets; an engine that hands the
   * configuration to another agent (Codex, whose own profiles are separate files) passes them on.
   * @default {}
   */
  profileValues?: Readonly<Record<string, unknown>>;
  /** What runs the thread's turns (`multienv.engine`, with `auto` resolved). @default 'builtin' */
  engine?: ThreadEngine;
  /** Creates the model client for this thread's provider (its modules load on the first call). */
  createModel(): Promise<ModelPort>;
}

/** What a call (or a stored thread) pins; everything else comes from the config files. */
export interface CallSettings {
  model?: string;
  profile?: string;
  approvalPolicy?: ApprovalPolicy;
  sandbox?: ThreadConfig['sandbox'];
  /** A default permission profile pinned by a stored thread; wins over {@link sandbox}. */
  permissions?: string;
  /** The `config` argument: dotted keys to values. */
  configOverrides: Record<string, unknown>;
  baseInstructions?: string;
  developerInstructions?: string;
  compactPrompt?: string;
  /** The engine a stored thread runs on (it keeps it for life); none: `multienv.engine` decides. */
  engine?: ThreadEngine;
}

/** Resolves a thread's settings from the config files and what the call pinned. */
export type ResolveThreadSettings = (call: CallSettings) => ResolvedThreadSettings;

/** What a stored thread pinned when it started, to resolve its settings again after a restart. */
export function storedCallSettings(stored: ThreadConfig): CallSettings {
  return {
    model: stored.model,
    profile: stored.profile,
    approvalPolicy: stored.approvalPolicy,
    sandbox: stored.sandbox,
    permissions: stored.permissions,
    configOverrides: stored.configOverrides,
    baseInstructions: stored.baseInstructions,
    developerInstructions: stored.developerInstructions,
    compactPrompt: stored.compactPrompt,
    engine: stored.engine ?? 'builtin',
  };
}

/**
 * The resolved values a new thread stores, so it keeps its model and policies across restarts.
 * @param call what the call pinned (only pinned instructions and profile are stored as given)
 */
export function threadConfigOf(settings: ResolvedThreadSettings, call: CallSettings, cwd: string): ThreadConfig {
  return {
    model: settings.model,
    modelProvider: settings.modelProvider,
    approvalPolicy: settings.approvalPolicy,
    sandbox: settings.sandbox,
    ...(settings.permissions.legacyMode === undefined ? { permissions: settings.permissions.name } : {}),
    cwd,
    configOverrides: call.configOverrides,
    ...(call.profile === undefined ? {} : { profile: call.profile }),
    ...(call.baseInstructions === undefined ? {} : { baseInstructions: call.baseInstructions }),
    ...(call.developerInstructions === undefined ? {} : { developerInstructions: call.developerInstructions }),
    ...(call.compactPrompt === undefined ? {} : { compactPrompt: call.compactPrompt }),
    // Written only for the non-default engine, so builtin threads' headers stay as before.
    ...(settings.engine === 'codex' ? { engine: 'codex' as const } : {}),
  };
}

/** A permission profile name must resolve; the error says where it was named. */
export function checkProfile(settings: ResolvedThreadSettings, name: string, where: string): PermissionProfile {
  try {
    return settings.permissionProfile(name);
  } catch (error) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `${where}: ${errorMessage(error)}`);
  }
}
