import { resolveConfig } from '../config/config.js';
import { toolArgumentsLayer, type ConfigLayer } from '../config/layers.js';
import { parseMcpServers } from '../config/mcp-servers.js';
import { DEFAULT_MODEL_PROVIDER_ID } from '../config/model-providers.js';
import { dottedObjectLayer } from '../config/overrides.js';
import { profileForSandboxMode, type PermissionProfile } from '../config/permissions.js';
import type { EffectiveConfig, WebSearchMode } from '../config/settings.js';
import type { ModelPort } from '../agent/model-port.js';
import { autoCompactTokenLimit, requestReasoning } from '../model/context-window.js';
import type { ModelClientSettings } from '../model/worker-protocol.js';
import type { CallSettings, ResolvedThreadSettings } from '../session/settings.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { chooseEngine, type CodexBinary } from './codex-engine.js';
import { configuredPermissions } from './local-sandbox.js';
import { missingKeyMessage, providerCredentials, type CodexAuth } from './runtime.js';
import type { McpServersFilter } from './self-reference.js';

// How one call's settings resolve to a thread's: the configuration layers merged with what the
// call pinned, then the model, engine, permissions and instructions the thread runs with.

/** Distinct call settings whose resolved configuration is kept (see `settingsResolver`). */
const MAX_RESOLVED_CALLS = 64;

/** The configuration that one set of call settings resolves to. */
interface ResolvedCall {
  config: EffectiveConfig;
  profileValues: Record<string, unknown> | undefined;
  mcp: ReturnType<typeof parseMcpServers>;
  /** The configuration's warnings, then the MCP servers'. */
  warnings: string[];
}

/** Resolves one thread's settings from the base layers and what the call pinned. */
export function settingsResolver(options: {
  baseLayers: ConfigLayer[];
  home: string;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  instructionsFiles: Map<string, string>;
  /** Leaves out the entries that would start this server inside the session. */
  skipSelf: McpServersFilter;
  /** Codex's auth.json, read at start-up (its API key serves providers that `requires_openai_auth`). */
  auth: CodexAuth | undefined;
  /** Makes a thread's model client (on the model worker thread when there is one). */
  newModel: (settings: ModelClientSettings) => Promise<ModelPort>;
  /** The Codex binary the codex engine runs, when one was found. */
  codexBinary: CodexBinary | undefined;
}) {
  // The base layers are fixed at start-up and resolving is pure, so calls that pin the same values
  // resolve alike: merging and validating the whole configuration again cost a few percent of the
  // server's CPU when every call starts a thread. Bounded; the least recently used goes first.
  const resolved = new Map<string, ResolvedCall>();
  const resolve = (call: CallSettings): ResolvedCall => {
    const key = JSON.stringify([
      call.configOverrides,
      call.profile,
      call.model,
      call.approvalPolicy,
      call.sandbox,
      call.baseInstructions,
      call.developerInstructions,
      call.compactPrompt,
    ]);
    const cached = resolved.get(key);
    if (cached !== undefined) {
      resolved.delete(key);
      resolved.set(key, cached);
      return cached;
    }
    const { config, warnings, profileValues } = resolveConfig({
      layers: [...options.baseLayers, dottedObjectLayer('config argument', call.configOverrides)],
      profile: call.profile,
      codexHome: options.home,
      overrides: [
        toolArgumentsLayer('codex arguments', {
          model: call.model,
          'approval-policy': call.approvalPolicy,
          sandbox: call.sandbox,
          'base-instructions': call.baseInstructions,
          'developer-instructions': call.developerInstructions,
          'compact-prompt': call.compactPrompt,
        }),
      ],
    });
    const mcp = parseMcpServers(config.mcpServers);
    const entry: ResolvedCall = { config, profileValues, mcp, warnings: [...warnings, ...mcp.warnings] };
    if (resolved.size >= MAX_RESOLVED_CALLS) {
      const oldest = resolved.keys().next();
      if (oldest.done !== true) resolved.delete(oldest.value);
    }
    resolved.set(key, entry);
    return entry;
  };
  return (call: CallSettings): ResolvedThreadSettings => {
    const { config, profileValues, mcp, warnings } = resolve(call);
    // Said for every thread they concern, as when each call resolved afresh.
    for (const warning of warnings) options.logger.warn(warning);
    const mcpServers = options.skipSelf(mcp.servers);
    const selfReferencingMcpServers = mcp.servers.filter((server) => !mcpServers.includes(server)).map((server) => server.name);
    return {
      ...toSettings(config, call, options.env, options.instructionsFiles, options.auth, options.newModel, options.codexBinary),
      mcpServers,
      selfReferencingMcpServers,
      ...(profileValues === undefined ? {} : { profileValues }),
    };
  };
}

/**
 * A thread's default permissions: a profile a stored thread pinned, else the call's `sandbox`,
 * else `default_permissions`, else `sandbox_mode` (the legacy setting, as a profile).
 */
function defaultPermissions(config: EffectiveConfig, call: CallSettings): PermissionProfile {
  if (call.permissions !== undefined) return config.permissionProfiles.get(call.permissions);
  if (call.sandbox !== undefined) return profileForSandboxMode(config.sandboxMode, config.sandboxWorkspaceWrite);
  return configuredPermissions(config);
}

/**
 * The web search a thread's model may use. Unset, it is `cached` on OpenAI's API (and providers
 * that use its sign-in) and off elsewhere: a Responses-compatible server of another vendor may
 * refuse the hosted tool, failing every request. As in Codex, `cached` becomes `live` when
 * commands run without a sandbox anyway.
 */
function webSearchMode(config: EffectiveConfig, openaiProvider: boolean): WebSearchMode {
  const mode = config.webSearch ?? (openaiProvider ? 'cached' : 'disabled');
  return mode === 'cached' && config.sandboxMode === 'danger-full-access' ? 'live' : mode;
}

function toSettings(
  config: EffectiveConfig,
  call: CallSettings,
  env: NodeJS.ProcessEnv,
  instructionsFiles: Map<string, string>,
  auth: CodexAuth | undefined,
  newModel: (settings: ModelClientSettings) => Promise<ModelPort>,
  codexBinary: CodexBinary | undefined,
): ResolvedThreadSettings {
  const provider = config.modelProviders[config.modelProvider];
  if (provider === undefined) throw new LocalError(LocalErrorCode.InvalidConfig, `model provider \`${config.modelProvider}\` is not configured`);
  const credentials = providerCredentials(provider, env, auth);
  const { apiKey, headers } = credentials;
  // As Codex does: a provider that names its key's variable needs it; a request without the key
  // would only come back as an authentication error from the provider.
  const missing = missingKeyMessage(config.modelProvider, provider, credentials, auth);
  // A stored thread keeps the engine it started with; a new one gets `multienv.engine`'s.
  const engine = call.engine ?? chooseEngine(config.multienv.engine, { providerUsable: missing === undefined, chatgptSignIn: auth?.chatgpt === true, codexBinary }).engine;
  if (engine === 'codex' && codexBinary === undefined) {
    throw new LocalError(
      LocalErrorCode.InvalidConfig,
      'the codex engine needs the Codex CLI, and none was found: set multienv.codex_path, put `codex` on PATH, or install @openai/codex',
    );
  }
  // The real Codex brings its own credentials (a ChatGPT sign-in too); only our agent needs the key.
  if (engine === 'builtin' && missing !== undefined) throw new LocalError(LocalErrorCode.InvalidConfig, missing);
  const fileInstructions = config.modelInstructionsFile === undefined ? undefined : instructionsFiles.get(config.modelInstructionsFile);
  const reasoning = requestReasoning(config.model, { effort: config.modelReasoningEffort, summary: config.modelReasoningSummary });
  const webSearch = webSearchMode(config, provider.requiresOpenaiAuth || config.modelProvider === DEFAULT_MODEL_PROVIDER_ID);
  const policy = config.shellEnvironmentPolicy;
  return {
    model: config.model,
    modelProvider: config.modelProvider,
    approvalPolicy: config.approvalPolicy,
    sandbox: config.sandboxMode,
    ...(reasoning === undefined ? {} : { reasoning }),
    ...((config.baseInstructions ?? fileInstructions) === undefined ? {} : { baseInstructions: config.baseInstructions ?? fileInstructions }),
    ...(config.developerInstructions === undefined ? {} : { developerInstructions: config.developerInstructions }),
    ...(config.compactPrompt === undefined ? {} : { compactPrompt: config.compactPrompt }),
    ...(webSearch === 'disabled' ? {} : { webSearch }),
    projectDocs: { maxBytes: config.projectDocMaxBytes, fallbackFilenames: config.projectDocFallbackFilenames, rootMarkers: config.projectRootMarkers },
    autoCompactTokenLimit: autoCompactTokenLimit(config.model, { contextWindow: config.modelContextWindow, limit: config.modelAutoCompactTokenLimit }),
    shellEnvironmentPolicy: {
      inherit: policy.inherit,
      ignoreDefaultExcludes: policy.ignoreDefaultExcludes,
      exclude: policy.exclude,
      set: policy.set,
      includeOnly: policy.includeOnly,
    },
    permissions: defaultPermissions(config, call),
    permissionProfile: (name) => config.permissionProfiles.get(name),
    allowLoginShell: config.allowLoginShell,
    engine,
    createModel: () =>
      newModel({
        baseUrl: provider.baseUrl,
        apiKey,
        headers,
        queryParams: provider.queryParams,
        maxRetries: provider.requestMaxRetries,
        streamMaxRetries: provider.streamMaxRetries,
        idleTimeoutMs: provider.streamIdleTimeoutMs,
      }),
  };
}
