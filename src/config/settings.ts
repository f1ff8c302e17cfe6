/**
 * What each key of config.toml means: one zod schema per table, and {@link ConfigTomlSchema} for
 * the whole file, validating the merged layers (see config.ts) and filling defaults into one typed
 * {@link EffectiveConfig}. Keys Codex users commonly have that do not change what this server does
 * are known and accepted (`z.unknown()`), so they are not warned about.
 *
 * The schemas are built once, at module load: a configuration is resolved on every `codex` call.
 */
import { isAbsolute, normalize } from 'node:path';
import { z } from 'zod';
import { DEFAULT_MODEL_PROVIDER_ID, ModelProviderTomlSchema } from './model-providers.js';
import { PermissionsTomlSchema } from './permissions.js';
import { refuseProtoKey, stringTable, tomlTable } from './validation.js';
import { ApprovalPolicySchema, SandboxModeSchema } from '../protocol/thread.js';
import { errorMessage } from '../util/errors.js';

/** Model used when no layer sets `model`. */
export const DEFAULT_MODEL = 'gpt-5.5';

/**
 * Keys whose values are paths (a string, or an array of strings). A relative one resolves against
 * the directory of the layer that set it, before validation; where that layer has none, it is an error.
 */
export const PATH_KEYS: readonly (readonly string[])[] = [
  ['model_instructions_file'],
  ['experimental_instructions_file'],
  ['sandbox_workspace_write', 'writable_roots'],
  ['multienv', 'threads_dir'],
  ['multienv', 'codex_path'],
];

/** An absolute path, normalised. */
const AbsolutePathSchema = z
  .string()
  .refine(isAbsolute, { error: (issue) => `expected an absolute path, got ${JSON.stringify(issue.input)} (a relative path is allowed only in a config file)` })
  .transform(normalize);

/** A PostgreSQL connection URL, the one kind of `multienv.store` besides the default files. */
export const DatabaseUrlSchema = z.string().refine((value) => /^postgres(ql)?:\/\/./.test(value) && URL.canParse(value), {
  error: (issue) =>
    `expected a postgres:// or postgresql:// URL, got ${typeof issue.input === 'string' ? JSON.stringify(issue.input.replace(/:[^:@/]*@/, ':***@')) : 'something else'} (leave it out to keep threads in the files of threads_dir)`,
});

/** `profile` and `[profiles.NAME]`, read before the rest to apply the profile. */
export const ProfileSelectionSchema = z.object({
  profile: z.string().optional(),
  profiles: refuseProtoKey(z.record(z.string(), z.record(z.string(), z.unknown()))).optional(),
});

/** `model_reasoning_effort` values. */
export const ReasoningEffortSchema = z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh']);
/** Reasoning effort sent to the model. */
export type ReasoningEffort = z.infer<typeof ReasoningEffortSchema>;

/** `web_search` values: live fetches, the provider's cached index only, or no web search. */
export const WebSearchModeSchema = z.enum(['live', 'cached', 'disabled']);
/** How the hosted web search may be used. */
export type WebSearchMode = z.infer<typeof WebSearchModeSchema>;

/** Codex's default for `project_doc_max_bytes`: 32 KiB. */
export const DEFAULT_PROJECT_DOC_MAX_BYTES = 32 * 1024;

/** `model_reasoning_summary` values. */
export const ReasoningSummarySchema = z.enum(['auto', 'concise', 'detailed', 'none']);
/** Reasoning summary requested from the model. */
export type ReasoningSummary = z.infer<typeof ReasoningSummarySchema>;

const stringMap = stringTable();
const positiveInt = z.int().min(1);
const nonNegativeInt = z.int().min(0);
/** A key that is known, kept raw and never walked for unknown keys. */
const passthrough = z.unknown().optional();

const SandboxWorkspaceWriteTomlSchema = tomlTable(
  z.object({
    writable_roots: z.array(AbsolutePathSchema).default([]),
    network_access: z.boolean().default(false),
    exclude_tmpdir_env_var: z.boolean().default(false),
    exclude_slash_tmp: z.boolean().default(false),
  }),
)
  .transform((raw) => ({
    /** `writable_roots`: absolute; relative ones resolved against the layer's directory. @default [] */
    writableRoots: raw.writable_roots,
    /** `network_access`. @default false */
    networkAccess: raw.network_access,
    /** `exclude_tmpdir_env_var`: do not make `$TMPDIR` writable. @default false */
    excludeTmpdirEnvVar: raw.exclude_tmpdir_env_var,
    /** `exclude_slash_tmp`: do not make `/tmp` writable. @default false */
    excludeSlashTmp: raw.exclude_slash_tmp,
  }))
  .prefault({});

const ShellEnvironmentPolicyTomlSchema = tomlTable(
  z.object({
    inherit: z.enum(['all', 'core', 'none']).default('all'),
    ignore_default_excludes: z.boolean().default(false),
    exclude: z.array(z.string()).default([]),
    set: stringMap.default({}),
    include_only: z.array(z.string()).default([]),
    experimental_use_profile: z.boolean().default(false),
  }),
)
  .transform((raw) => ({
    /** `inherit`: which of the server's variables a command starts from. @default 'all' */
    inherit: raw.inherit,
    /**
     * `ignore_default_excludes`: keep credential-looking variables (Codex's `*KEY*`, `*SECRET*`,
     * `*TOKEN*`, our further name patterns such as `*PASSWORD*` and `*CREDENTIAL*`, and values
     * holding a URL with a password; the list is the exec layer's `DEFAULT_EXCLUDES`). Codex 0.169
     * defaults to true; we deliberately do not pass secrets to commands unless asked.
     * @default false
     */
    ignoreDefaultExcludes: raw.ignore_default_excludes,
    /** `exclude`: case-insensitive wildcard patterns dropped. @default [] */
    exclude: raw.exclude,
    /** `set`: variables set after the excludes. @default {} */
    set: raw.set,
    /** `include_only`: when non-empty, only matching variables are kept (after `set`). @default [] */
    includeOnly: raw.include_only,
    /** `experimental_use_profile`: run commands through the user's shell profile. @default false */
    experimentalUseProfile: raw.experimental_use_profile,
  }))
  .prefault({});

/** `[shell_environment_policy]`, raw values; applied by the exec layer. */
export type ShellEnvironmentPolicyConfig = z.output<typeof ShellEnvironmentPolicyTomlSchema>;

const MultienvTomlSchema = tomlTable(
  z.object({
    max_concurrent_turns: positiveInt.default(8),
    max_queued_turns_per_thread: nonNegativeInt.default(4),
    max_turn_steps: positiveInt.default(100),
    max_parallel_tool_calls: positiveInt.default(4),
    tool_output_max_tokens: positiveInt.default(10_000),
    approval_timeout_sec: z
      .number()
      .positive()
      .max(2 ** 31 / 1000)
      .default(300),
    codex_events: z.boolean().default(false),
    allow_runtime_program_environments: z.boolean().default(false),
    // The built-in defaults layer sets it under CODEX_HOME.
    threads_dir: AbsolutePathSchema,
    store: DatabaseUrlSchema.optional(),
    default_wait_sec: z
      .number()
      .min(0)
      .max(2 ** 31 / 1000)
      .default(50),
    drain_timeout_sec: z
      .number()
      .min(0)
      .max(2 ** 31 / 1000)
      .default(600),
    portable_tool_names: z.boolean().default(false),
    idle_thread_unload_sec: z
      .number()
      .min(0)
      .max(2 ** 31 / 1000)
      .default(900),
    // Above 256 MiB one message could no longer be made one string in Node.js.
    max_message_mb: z.number().min(1).max(256).default(10),
    engine: z.enum(['builtin', 'codex', 'auto']).default('auto'),
    codex_path: AbsolutePathSchema.optional(),
    // At least a second (heartbeats go every third of it); at most an hour, beyond which a dead instance's threads wait too long.
    lease_sec: z.number().min(1).max(3600).default(15),
  }),
).transform((raw) => ({
  /** `max_concurrent_turns`: turns running at once across all threads. @default 8 */
  maxConcurrentTurns: raw.max_concurrent_turns,
  /**
   * `idle_thread_unload_sec` (float seconds), in ms: a thread with no turn and no running
   * command for this long is let go from memory and its MCP servers stopped; its next turn
   * reads it again. 0 keeps threads loaded. @default 900000
   */
  idleThreadUnloadMs: Math.round(raw.idle_thread_unload_sec * 1000),
  /** `max_queued_turns_per_thread`: turns waiting behind a thread's running turn; more is an error. @default 4 */
  maxQueuedTurnsPerThread: raw.max_queued_turns_per_thread,
  /** `max_turn_steps`: model requests in one turn before it is stopped. @default 100 */
  maxTurnSteps: raw.max_turn_steps,
  /** `max_parallel_tool_calls`: tool calls of one model response run at once. @default 4 */
  maxParallelToolCalls: raw.max_parallel_tool_calls,
  /** `tool_output_max_tokens`: a tool result sent to the model is truncated to this. @default 10000 */
  toolOutputMaxTokens: raw.tool_output_max_tokens,
  /** `approval_timeout_sec` (float seconds), in ms: an unanswered approval is denied after it. @default 300000 */
  approvalTimeoutMs: Math.round(raw.approval_timeout_sec * 1000),
  /** `codex_events`: also emit old-style `codex/event` notifications. @default false */
  codexEvents: raw.codex_events,
  /**
   * `allow_runtime_program_environments`: `environment/add` with a `program` runs without an
   * approval. @default false
   */
  allowRuntimeProgramEnvironments: raw.allow_runtime_program_environments,
  /** `threads_dir`: where threads are persisted (unless `store` names a database). @default `<codexHome>/multienv/threads` */
  threadsDir: raw.threads_dir,
  /**
   * `store`: a `postgres://` or `postgresql://` URL keeps threads in that PostgreSQL database
   * instead of the files of `threads_dir` (`CODEX_MULTIENV_DATABASE_URL` overrides it).
   * @default undefined (the files of `threads_dir`)
   */
  databaseUrl: raw.store,
  /**
   * `default_wait_sec` (float seconds), in ms: how long `codex`/`codex-reply` wait for the turn
   * when the call gives no `waitMs`; then they answer with `status: "running"` and the turn
   * goes on. Below the ~60 s many clients allow a tool call. @default 50000
   */
  defaultWaitMs: Math.round(raw.default_wait_sec * 1000),
  /**
   * `drain_timeout_sec` (float seconds), in ms: how long the server keeps running accepted
   * turns after its client disconnected, before it interrupts them and exits. @default 600000
   */
  drainTimeoutMs: Math.round(raw.drain_timeout_sec * 1000),
  /** `portable_tool_names`: publish `environment_add`, … instead of `environment/add`, … @default false */
  portableToolNames: raw.portable_tool_names,
  /**
   * `max_message_mb` (MiB), in bytes: the largest MCP message read from the client; a larger
   * one is answered with an error. The SDK's own stdio bound, which MCP clients also apply to
   * what they read. @default 10485760
   */
  maxMessageBytes: Math.floor(raw.max_message_mb * 1024 * 1024),
  /**
   * `engine`: what runs a new thread's turns: `builtin` (our agent), `codex` (the real Codex's
   * app-server), or `auto` (codex only when a ChatGPT sign-in is the sole credential and a Codex
   * binary is found). A thread keeps its engine for life. @default 'auto'
   */
  engine: raw.engine,
  /** `codex_path`: the Codex binary the codex engine runs. @default `codex` on PATH, else the installed `@openai/codex` */
  codexPath: raw.codex_path,
  /**
   * `lease_sec` (float seconds), in ms: how long a thread's lease in the database lasts without a
   * heartbeat, i.e. how soon another instance may continue the threads of an instance that died
   * (instances sharing a PostgreSQL database). @default 15000
   */
  leaseMs: Math.round(raw.lease_sec * 1000),
}));

/** The whole config.toml, after layering and profile. Keys are the file's; the output is {@link EffectiveConfig}. */
export const ConfigTomlSchema = z
  .object({
    model: z.string().default(DEFAULT_MODEL),
    model_provider: z.string().default(DEFAULT_MODEL_PROVIDER_ID),
    model_providers: refuseProtoKey(z.record(z.string(), ModelProviderTomlSchema)).default({}),
    model_reasoning_effort: ReasoningEffortSchema.optional(),
    model_reasoning_summary: ReasoningSummarySchema.optional(),
    approval_policy: ApprovalPolicySchema.default('on-request'),
    sandbox_mode: SandboxModeSchema.default('read-only'),
    sandbox_workspace_write: SandboxWorkspaceWriteTomlSchema,
    shell_environment_policy: ShellEnvironmentPolicyTomlSchema,
    base_instructions: z.string().optional(),
    model_instructions_file: AbsolutePathSchema.optional(),
    experimental_instructions_file: AbsolutePathSchema.optional(),
    developer_instructions: z.string().optional(),
    compact_prompt: z.string().optional(),
    model_context_window: z.number().int().positive().optional(),
    model_auto_compact_token_limit: z.number().int().positive().optional(),
    features: refuseProtoKey(z.record(z.string(), z.boolean())).default({}),
    multienv: MultienvTomlSchema,
    // Passed through raw for the MCP client module (parseMcpServers).
    mcp_servers: passthrough,
    permissions: PermissionsTomlSchema.prefault({}),
    default_permissions: z.string().optional(),
    allow_login_shell: z.boolean().default(false),
    // Read before validation too, to apply the profile; `profile` is then the one applied.
    ...ProfileSelectionSchema.shape,
    // Codex keys users commonly have that do not change what this server does.
    history: passthrough,
    tui: passthrough,
    notify: passthrough,
    notice: passthrough,
    projects: passthrough,
    hide_agent_reasoning: passthrough,
    show_raw_agent_reasoning: passthrough,
    model_verbosity: passthrough,
    model_supports_reasoning_summaries: passthrough,
    file_opener: passthrough,
    otel: passthrough,
    analytics: passthrough,
    feedback: passthrough,
    // `tools.web_search` is the older spelling of `web_search = "live"`; other keys are Codex's own.
    tools: tomlTable(z.object({ web_search: z.boolean().optional() })).optional(),
    web_search: WebSearchModeSchema.optional(),
    trust_level: passthrough,
    windows_wsl_setup_acknowledged: passthrough,
    preferred_auth_method: passthrough,
    cli_auth_credentials_store: passthrough,
    forced_login_method: passthrough,
    forced_chatgpt_workspace_id: passthrough,
    chatgpt_base_url: passthrough,
    check_for_update_on_startup: passthrough,
    disable_response_storage: passthrough,
    project_doc_max_bytes: nonNegativeInt.default(DEFAULT_PROJECT_DOC_MAX_BYTES),
    project_doc_fallback_filenames: z
      .array(
        z
          .string()
          .min(1)
          .refine((name) => !name.includes('/'), 'a file name, not a path'),
      )
      .default([]),
    project_root_markers: z.array(z.string().min(1)).default(['.git']),
  })
  .transform((raw, ctx) => {
    const permissions = raw.permissions;
    if (raw.default_permissions !== undefined) {
      try {
        permissions.profiles.get(raw.default_permissions);
      } catch (error) {
        ctx.issues.push({ code: 'custom', input: raw.default_permissions, path: ['default_permissions'], message: errorMessage(error) });
        return z.NEVER;
      }
    }
    if (!Object.hasOwn(raw.model_providers, raw.model_provider)) {
      const known = Object.keys(raw.model_providers).sort().join(', ');
      ctx.issues.push({
        code: 'custom',
        input: raw.model_provider,
        path: ['model_provider'],
        message: `model provider \`${raw.model_provider}\` not found; known providers: ${known}`,
      });
      return z.NEVER;
    }
    return {
      /** `model`. @default DEFAULT_MODEL */
      model: raw.model,
      /** `model_provider`: a key of {@link modelProviders}. @default DEFAULT_MODEL_PROVIDER_ID */
      modelProvider: raw.model_provider,
      /** `[model_providers.ID]`, always including the built-in `openai` (which a file may override). */
      modelProviders: raw.model_providers,
      /** `model_reasoning_effort`; none means the model's default. */
      modelReasoningEffort: raw.model_reasoning_effort,
      /** `model_reasoning_summary`; none means the model's default. */
      modelReasoningSummary: raw.model_reasoning_summary,
      /** `approval_policy`. @default 'on-request' */
      approvalPolicy: raw.approval_policy,
      /** `sandbox_mode`. @default 'read-only' */
      sandboxMode: raw.sandbox_mode,
      /** `[sandbox_workspace_write]`, used when {@link sandboxMode} is `workspace-write`. */
      sandboxWorkspaceWrite: raw.sandbox_workspace_write,
      /** `[shell_environment_policy]`, raw; applied where commands are spawned. */
      shellEnvironmentPolicy: raw.shell_environment_policy,
      /** `base_instructions`: replaces the built-in instructions. Wins over {@link modelInstructionsFile}. */
      baseInstructions: raw.base_instructions,
      /**
       * `model_instructions_file`, or the older `experimental_instructions_file`: absolute path of
       * a file whose text replaces the built-in instructions; read by the caller.
       */
      modelInstructionsFile: raw.model_instructions_file ?? raw.experimental_instructions_file,
      /** `developer_instructions`: sent as a developer message. */
      developerInstructions: raw.developer_instructions,
      /** `compact_prompt`: prompt used when compacting the conversation. */
      compactPrompt: raw.compact_prompt,
      /** `model_context_window`: tokens the model accepts; none means the built-in value for known models. */
      modelContextWindow: raw.model_context_window,
      /**
       * `model_auto_compact_token_limit`: compact the history once a request used this many
       * tokens; none means 90% of the context window, when it is known.
       */
      modelAutoCompactTokenLimit: raw.model_auto_compact_token_limit,
      /** `[features]`: feature name → enabled; unknown names are kept. @default {} */
      features: raw.features,
      /**
       * `web_search` (`live`, `cached`, `disabled`); the older `tools.web_search = true` and
       * `features.web_search_request` mean `live`. None: the default for the provider.
       */
      webSearch:
        raw.web_search ??
        (raw.tools?.web_search === true || raw.features['web_search_request'] === true
          ? 'live'
          : raw.tools?.web_search === false || raw.features['web_search_request'] === false
            ? 'disabled'
            : undefined),
      /** `project_doc_max_bytes`: bytes of AGENTS.md text sent per environment; 0 sends none. @default 32768 */
      projectDocMaxBytes: raw.project_doc_max_bytes,
      /** `project_doc_fallback_filenames`: names tried after AGENTS.md in each folder. @default [] */
      projectDocFallbackFilenames: raw.project_doc_fallback_filenames,
      /** `project_root_markers`: a folder holding one of these is the project root. @default ['.git'] */
      projectRootMarkers: raw.project_root_markers,
      /** `[mcp_servers]`, raw, for the MCP client module. */
      mcpServers: raw.mcp_servers,
      /** `[permissions.NAME]` profiles, resolved (built-ins included). */
      permissionProfiles: permissions.profiles,
      /** What `[permissions]` has that is accepted but not enforced. */
      permissionWarnings: permissions.warnings,
      /**
       * `default_permissions`: the profile threads run under, unless a call sets `sandbox`.
       * None: `sandbox_mode` applies.
       */
      defaultPermissions: raw.default_permissions,
      /** `allow_login_shell`: the model may ask for a login shell. Codex defaults to true; we do not. @default false */
      allowLoginShell: raw.allow_login_shell,
      /** The profile applied, if any. */
      profile: raw.profile,
      /** `[multienv]`: this server's own settings. */
      multienv: raw.multienv,
    };
  });

/** The configuration after layering, profile, validation and defaults. */
export type EffectiveConfig = z.output<typeof ConfigTomlSchema>;

/** `[multienv]`, resolved. */
export type MultienvConfig = EffectiveConfig['multienv'];

/** `[sandbox_workspace_write]`, resolved. */
export type SandboxWorkspaceWriteConfig = EffectiveConfig['sandboxWorkspaceWrite'];
