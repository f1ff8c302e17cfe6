/**
 * Codex's `config.toml`, its `-c key=value` overrides, `[profiles.NAME]`, and the `codex` MCP
 * tool's per-call `config` object, resolved into one typed {@link EffectiveConfig}.
 *
 * Every source becomes a {@link ConfigLayer} (a raw nested table plus its name). Layers merge
 * lowest first (tables merge, arrays and scalars replace), the selected profile overlays the
 * result, explicit per-call arguments overlay that (Codex's `ConfigOverrides`), and one zod schema
 * validates and fills defaults. The merge remembers which layer set each key, so an error names
 * the source and the key the user wrote (`/h/.codex/config.toml: approval_policy: …`,
 * `-c: model_providers.fake.wire_api: …`).
 *
 * Unknown keys never fail: a user's existing Codex config must work here, so each unknown key is
 * a warning. Keys Codex users commonly have that do not change what this server does are accepted
 * silently (they are `z.unknown()` in the schema). Pure: no environment, no file reads.
 */
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { z } from 'zod';
import { ApprovalPolicySchema, SandboxModeSchema } from '../protocol/thread.js';
import { parsePermissionProfiles } from './permissions.js';
import { parseToml } from './toml.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** Name of Codex's configuration file inside `CODEX_HOME`. */
export const CONFIG_FILE_NAME = 'config.toml';

/** Model used when no layer sets `model`. */
export const DEFAULT_MODEL = 'gpt-5.5';

/** Id of the built-in provider, and the provider used when no layer sets `model_provider`. */
export const DEFAULT_MODEL_PROVIDER_ID = 'openai';

/** `base_url` of the built-in `openai` provider. */
export const OPENAI_BASE_URL = 'https://api.openai.com/v1';

/** Source name of the built-in provider table in errors (only reachable if a user layer breaks it). */
const BUILT_IN_SOURCE = 'built-in defaults';

/** Codex caps both retry counts at 100. */
const MAX_RETRIES = 100;

/** Top-level key prefixes accepted without a warning (Codex's experimental knobs). */
const ACCEPTED_KEY_PREFIXES = ['experimental_'] as const;

// ---------------------------------------------------------------------------------------------
// Layers

/** One source of configuration: a raw nested table and where it came from. */
export interface ConfigLayer {
  /** Names the layer in warnings and errors: a file path, `-c`, `config argument`. */
  source: string;
  /** The raw nested table, as TOML or JSON gives it (keys in snake_case, as in config.toml). */
  values: Record<string, unknown>;
  /**
   * Directory that relative paths in this layer (`writable_roots`, `threads_dir`,
   * `model_instructions_file`) resolve against. Without it a relative path is an error.
   */
  baseDir?: string;
}

/** One `-c key=value`: the dotted key split into segments, and the parsed value. */
export interface ConfigOverride {
  path: string[];
  value: unknown;
}

/** Options of {@link parseConfigToml}. */
export interface ParseConfigTomlOptions {
  /**
   * Directory relative paths in the file resolve against, as Codex resolves them against the
   * directory of the config file (`CODEX_HOME`).
   * @default the directory of `source` when `source` is an absolute path, otherwise none
   */
  baseDir?: string;
}

/** Options of {@link overridesLayer} and {@link dottedObjectLayer}. */
export interface LayerOptions {
  /**
   * Directory relative paths resolve against. Codex resolves `-c` paths against the process's
   * working directory, which only `cli/` may read, so it must pass it here.
   * @default none: relative paths are an error
   */
  baseDir?: string;
}

type Table = Record<string, unknown>;

function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function invalidConfig(message: string, cause?: unknown): LocalError {
  return new LocalError(LocalErrorCode.InvalidConfig, message, cause === undefined ? undefined : { cause });
}

/** A table's own value at `key`: never an inherited one such as `__proto__`. */
function ownValue(table: Table, key: string): unknown {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** Sets an own property, so a key named `__proto__` is data and never a prototype. */
function setOwn(table: Table, key: string, value: unknown): void {
  Object.defineProperty(table, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A deep copy with plain objects (TOML gives null-prototype ones); dates and bigints kept. */
function toPlain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toPlain);
  return isTable(value) ? plainTable(value) : value;
}

function plainTable(table: Table): Table {
  const copy: Table = {};
  for (const [key, item] of Object.entries(table)) setOwn(copy, key, toPlain(item));
  return copy;
}

/**
 * Parses a config.toml. Only the syntax is checked here; {@link resolveConfig} validates keys.
 * @param source the file path, named in errors and warnings.
 * @throws LocalError `INVALID_CONFIG`: `<source>: TOML syntax error at line L, column C: <reason>`.
 */
export function parseConfigToml(text: string, source: string, options: ParseConfigTomlOptions = {}): ConfigLayer {
  const parsed = parseToml(text, source);
  const baseDir = options.baseDir ?? (isAbsolute(source) ? dirname(source) : undefined);
  const values = plainTable(parsed);
  return baseDir === undefined ? { source, values } : { source, values, baseDir };
}

/** Index of the first `=` outside a quoted key segment, or -1. */
function keyValueSplit(arg: string): number {
  let quote: string | undefined;
  for (let index = 0; index < arg.length; index++) {
    const char = arg[index];
    if (quote !== undefined) {
      if (char === '\\' && quote === '"') index++;
      else if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if (char === '=') {
      return index;
    }
  }
  return -1;
}

/**
 * Splits a dotted key. TOML key syntax when it parses (`mcp_servers."my.server".command`),
 * otherwise a plain split on `.` as Codex does.
 */
function parseKeyPath(key: string): string[] {
  try {
    let node: unknown = parseToml(`${key} = true`, '-c');
    const path: string[] = [];
    while (isTable(node)) {
      const keys = Object.keys(node);
      const only = keys[0];
      if (keys.length !== 1 || only === undefined) break;
      path.push(only);
      node = ownValue(node, only);
    }
    if (node === true && path.length > 0) return path;
  } catch {
    // Not TOML key syntax: fall through to Codex's plain split.
  }
  return key.split('.');
}

/** Codex's `-c` value rule: a TOML value when it parses, else the trimmed text without quotes. */
function parseOverrideValue(raw: string): unknown {
  try {
    const table = parseToml(`_x_ = ${raw}`, '-c');
    // A value with a newline could smuggle in other keys; that is not one value.
    if (Object.keys(table).length === 1 && '_x_' in table) return toPlain(table._x_);
  } catch {
    // Not a TOML value: use the raw text.
  }
  return raw.trim().replace(/^["']+|["']+$/g, '');
}

/**
 * Parses one `-c key=value` as Codex does: the key is dotted (quoted segments allowed), the value
 * is a TOML value (`"o3"`, `false`, `["/a"]`, `{a=1}`) or, when it is not valid TOML, the raw
 * string (`model=o3` → `"o3"`).
 * @throws LocalError `INVALID_CONFIG` on a missing `=` or an empty key (Codex's messages).
 */
export function parseOverride(arg: string): ConfigOverride {
  const split = keyValueSplit(arg);
  if (split < 0) throw invalidConfig(`-c: Invalid override (missing '='): ${arg}`);
  const key = arg.slice(0, split).trim();
  if (key === '') throw invalidConfig(`-c: Empty key in override: ${arg}`);
  return { path: parseKeyPath(key), value: parseOverrideValue(arg.slice(split + 1)) };
}

/** Merges `value` into `table` at `path`: tables merge, anything else replaces. */
function setPath(table: Table, path: readonly string[], value: unknown): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  if (rest.length === 0) {
    const existing = ownValue(table, head);
    if (isTable(existing) && isTable(value)) mergeTables(existing, value);
    else setOwn(table, head, toPlain(value));
    return;
  }
  const existing = ownValue(table, head);
  const child = isTable(existing) ? existing : {};
  if (child !== existing) setOwn(table, head, child);
  setPath(child, rest, value);
}

function mergeTables(target: Table, source: Table): void {
  for (const [key, value] of Object.entries(source)) setPath(target, [key], value);
}

function layer(source: string, values: Table, options: LayerOptions): ConfigLayer {
  return options.baseDir === undefined ? { source, values } : { source, values, baseDir: options.baseDir };
}

/**
 * Builds the layer of `-c` overrides, in command-line order (a later one wins).
 * @param source named in errors and warnings, normally `-c`.
 */
export function overridesLayer(source: string, entries: readonly ConfigOverride[], options: LayerOptions = {}): ConfigLayer {
  const values: Table = {};
  for (const entry of entries) setPath(values, entry.path, entry.value);
  return layer(source, values, options);
}

/**
 * Builds a layer from an object whose keys may be dotted (`{"model_providers.fake.base_url":
 * "http://…", "sandbox_mode": "danger-full-access"}`), as the `codex` tool's `config` argument.
 * @param source named in errors and warnings, normally `config argument`.
 */
export function dottedObjectLayer(
  source: string,
  object: Readonly<Record<string, unknown>>,
  options: LayerOptions = {},
): ConfigLayer {
  const values: Table = {};
  for (const [key, value] of Object.entries(object)) setPath(values, parseKeyPath(key), value);
  return layer(source, values, options);
}

/** The `codex` tool arguments that are config settings under another name. */
export interface CodexToolConfigArguments {
  model?: string;
  'approval-policy'?: string;
  sandbox?: string;
  'base-instructions'?: string;
  'developer-instructions'?: string;
  'compact-prompt'?: string;
}

const TOOL_ARGUMENT_KEYS = {
  model: 'model',
  'approval-policy': 'approval_policy',
  sandbox: 'sandbox_mode',
  'base-instructions': 'base_instructions',
  'developer-instructions': 'developer_instructions',
  'compact-prompt': 'compact_prompt',
} as const satisfies Record<keyof CodexToolConfigArguments, string>;

/**
 * Builds the layer of the `codex` tool's explicit arguments (`model`, `approval-policy`,
 * `sandbox`, …) under their config.toml names. Pass it in {@link ResolveConfigOptions.overrides}:
 * like Codex's `ConfigOverrides` these win over the selected profile. `cwd` and `profile` are not
 * config settings and are not taken.
 */
export function toolArgumentsLayer(source: string, args: Readonly<CodexToolConfigArguments>): ConfigLayer {
  const values: Table = {};
  for (const [argument, key] of Object.entries(TOOL_ARGUMENT_KEYS)) {
    const value = args[argument as keyof CodexToolConfigArguments];
    if (value !== undefined) setOwn(values, key, value);
  }
  return { source, values };
}

// ---------------------------------------------------------------------------------------------
// Merging with provenance

/** Which layer set a key, and the key as that layer wrote it (a profile key keeps its prefix). */
interface Origin {
  source: string;
  baseDir: string | undefined;
  key: readonly string[];
}

function isKeyPath(path: readonly PropertyKey[]): path is readonly string[] {
  return path.every((segment) => typeof segment === 'string');
}

class Provenance {
  private readonly origins = new Map<string, Origin>();

  set(path: readonly string[], origin: Origin): void {
    this.origins.set(JSON.stringify(path), origin);
  }

  get(path: readonly string[]): Origin | undefined {
    return this.origins.get(JSON.stringify(path));
  }

  /** The origin of the longest recorded prefix of `path`, and how much of `path` it covers. */
  find(path: readonly PropertyKey[]): { origin: Origin; length: number } | undefined {
    for (let length = path.length; length > 0; length--) {
      const prefix = path.slice(0, length);
      if (!isKeyPath(prefix)) continue;
      const origin = this.get(prefix);
      if (origin !== undefined) return { origin, length };
    }
    return undefined;
  }
}

/**
 * Deep-merges `source` into `target` and records where every key came from. `originOf` gives the
 * origin of a path inside `source`.
 */
function mergeWithOrigins(
  target: Table,
  source: Table,
  path: readonly string[],
  provenance: Provenance,
  originOf: (relative: readonly string[]) => Origin,
  relative: readonly string[] = [],
): void {
  for (const [key, value] of Object.entries(source)) {
    const keyPath = [...path, key];
    const keyRelative = [...relative, key];
    provenance.set(keyPath, originOf(keyRelative));
    const existing = ownValue(target, key);
    if (isTable(value)) {
      const child = isTable(existing) ? existing : {};
      if (child !== existing) setOwn(target, key, child);
      mergeWithOrigins(child, value, keyPath, provenance, originOf, keyRelative);
    } else {
      setOwn(target, key, toPlain(value));
    }
  }
}

function mergeLayer(target: Table, configLayer: ConfigLayer, provenance: Provenance): void {
  const { source, baseDir } = configLayer;
  mergeWithOrigins(target, configLayer.values, [], provenance, (key) => ({ source, baseDir, key }));
}

// ---------------------------------------------------------------------------------------------
// Schema

// The policy and sandbox enums are part of the persisted thread format; defined once there.
export { ApprovalPolicySchema, SandboxModeSchema, type ApprovalPolicy, type SandboxMode } from '../protocol/thread.js';

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

/** What the schema needs from the merge: where a key came from, and the home directory. */
interface SchemaContext {
  codexHome: string;
  profile: string | undefined;
  originOf: (path: readonly string[]) => Origin | undefined;
}

const stringMap = z.record(z.string(), z.string());
const positiveInt = z.int().min(1);
const nonNegativeInt = z.int().min(0);
/** A key that is known, kept raw and never walked for unknown keys. */
const passthrough = z.unknown().optional();

/** An absolute path, or a relative one joined to `baseDir`; `undefined` when neither applies. */
function resolvePath(value: string, baseDir: string | undefined): string | undefined {
  if (isAbsolute(value)) return normalize(value);
  return baseDir === undefined ? undefined : join(baseDir, value);
}

function relativePathMessage(value: string): string {
  return `expected an absolute path, got ${JSON.stringify(value)} (a relative path is allowed only in a config file)`;
}

/** A path-valued key: absolute, or relative to the directory of the layer that set it. */
function absolutePath(key: readonly string[], context: SchemaContext) {
  return z.string().transform((value, ctx) => {
    const resolved = resolvePath(value, context.originOf(key)?.baseDir);
    if (resolved !== undefined) return resolved;
    ctx.issues.push({ code: 'custom', input: value, message: relativePathMessage(value) });
    return z.NEVER;
  });
}

/** A list of paths, each as {@link absolutePath}. */
function absolutePaths(key: readonly string[], context: SchemaContext) {
  return z.array(z.string()).transform((values, ctx) => {
    const baseDir = context.originOf(key)?.baseDir;
    return values.map((value, index) => {
      const resolved = resolvePath(value, baseDir);
      if (resolved !== undefined) return resolved;
      ctx.issues.push({ code: 'custom', input: value, path: [index], message: relativePathMessage(value) });
      return value;
    });
  });
}

const ProviderTomlSchema = z
  .object({
    name: z.string().optional(),
    base_url: z.string().transform((value, ctx) => {
      if (URL.canParse(value) && /^https?:$/.test(new URL(value).protocol)) return value;
      ctx.issues.push({ code: 'custom', input: value, message: `expected an http or https URL, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }),
    env_key: z.string().optional(),
    wire_api: z
      .string()
      .default('responses')
      .transform((value, ctx) => {
        if (value === 'responses') return 'responses' as const;
        const message =
          value === 'chat'
            ? '`wire_api = "chat"` is no longer supported; only the Responses API is supported (set `wire_api = "responses"`)'
            : `expected responses (only the Responses API is supported), got ${JSON.stringify(value)}`;
        ctx.issues.push({ code: 'custom', input: value, message });
        return z.NEVER;
      }),
    http_headers: stringMap.default({}),
    env_http_headers: stringMap.default({}),
    query_params: stringMap.default({}),
    request_max_retries: nonNegativeInt.max(MAX_RETRIES).default(4),
    stream_max_retries: nonNegativeInt.max(MAX_RETRIES).default(5),
    stream_idle_timeout_ms: positiveInt.default(300_000),
    requires_openai_auth: z.boolean().default(false),
    supports_websockets: passthrough,
  })
  .transform((raw) => ({
    /** Display name. */
    name: raw.name,
    /** `base_url`: the Responses API is at `<baseUrl>/responses`. */
    baseUrl: raw.base_url,
    /** `env_key`: the variable holding the API key; none means no `Authorization` header. */
    envKey: raw.env_key,
    /** `wire_api`: only the Responses API is supported. @default 'responses' */
    wireApi: raw.wire_api,
    /** `http_headers`: sent with every request. @default {} */
    httpHeaders: raw.http_headers,
    /** `env_http_headers`: header name → variable whose value is sent, when set. @default {} */
    envHttpHeaders: raw.env_http_headers,
    /** `query_params`: appended to every request URL. @default {} */
    queryParams: raw.query_params,
    /** `request_max_retries`: retries of a failed request, at most 100. @default 4 */
    requestMaxRetries: raw.request_max_retries,
    /** `stream_max_retries`: reconnections of a dropped stream, at most 100. @default 5 */
    streamMaxRetries: raw.stream_max_retries,
    /** `stream_idle_timeout_ms`: a stream silent this long is dropped. @default 300000 */
    streamIdleTimeoutMs: raw.stream_idle_timeout_ms,
    /**
     * `requires_openai_auth`: without the `env_key` variable, the API key Codex stored with
     * `codex login --with-api-key` (`$CODEX_HOME/auth.json`) is used. True for the built-in
     * `openai` provider. @default false
     */
    requiresOpenaiAuth: raw.requires_openai_auth,
  }));

/** One `[model_providers.ID]`, resolved. */
export type ModelProviderConfig = z.output<typeof ProviderTomlSchema>;

const SandboxWorkspaceWriteTomlSchema = (context: SchemaContext) =>
  z
    .object({
      writable_roots: absolutePaths(['sandbox_workspace_write', 'writable_roots'], context).default([]),
      network_access: z.boolean().default(false),
      exclude_tmpdir_env_var: z.boolean().default(false),
      exclude_slash_tmp: z.boolean().default(false),
    })
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

const ShellEnvironmentPolicyTomlSchema = z
  .object({
    inherit: z.enum(['all', 'core', 'none']).default('all'),
    ignore_default_excludes: z.boolean().default(false),
    exclude: z.array(z.string()).default([]),
    set: stringMap.default({}),
    include_only: z.array(z.string()).default([]),
    experimental_use_profile: z.boolean().default(false),
  })
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

const MultienvTomlSchema = (context: SchemaContext) =>
  z
    .object({
      max_concurrent_turns: positiveInt.default(8),
      max_queued_turns_per_thread: nonNegativeInt.default(4),
      max_turn_steps: positiveInt.default(100),
      max_parallel_tool_calls: positiveInt.default(4),
      tool_output_max_tokens: positiveInt.default(10_000),
      approval_timeout_sec: z.number().positive().max(2 ** 31 / 1000).default(300),
      codex_events: z.boolean().default(false),
      allow_runtime_program_environments: z.boolean().default(false),
      threads_dir: absolutePath(['multienv', 'threads_dir'], context).optional(),
      default_wait_sec: z.number().min(0).max(2 ** 31 / 1000).default(50),
      drain_timeout_sec: z.number().min(0).max(2 ** 31 / 1000).default(600),
      portable_tool_names: z.boolean().default(false),
      idle_thread_unload_sec: z.number().min(0).max(2 ** 31 / 1000).default(900),
      // Above 256 MiB one message could no longer be made one string in Node.js.
      max_message_mb: z.number().min(1).max(256).default(10),
      engine: z.enum(['builtin', 'codex', 'auto']).default('auto'),
      codex_path: absolutePath(['multienv', 'codex_path'], context).optional(),
    })
    .transform((raw) => ({
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
      /** `threads_dir`: where threads are persisted. @default `<codexHome>/multienv/threads` */
      threadsDir: raw.threads_dir ?? join(context.codexHome, 'multienv', 'threads'),
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
       * app-server), or `auto` (codex only when a ChatGPT sign-in is the sole credential and a
       * Codex binary is found). A thread keeps its engine for life. @default 'auto'
       */
      engine: raw.engine,
      /** `codex_path`: the Codex binary the codex engine runs. @default `codex` on PATH, else the installed `@openai/codex` */
      codexPath: raw.codex_path,
    }))
    .prefault({});

/** The whole config.toml. Keys are the file's; the output is {@link EffectiveConfig}. */
function configSchema(context: SchemaContext) {
  return z
    .object({
      model: z.string().default(DEFAULT_MODEL),
      model_provider: z.string().default(DEFAULT_MODEL_PROVIDER_ID),
      model_providers: z.record(z.string(), ProviderTomlSchema).default({}),
      model_reasoning_effort: ReasoningEffortSchema.optional(),
      model_reasoning_summary: ReasoningSummarySchema.optional(),
      approval_policy: ApprovalPolicySchema.default('on-request'),
      sandbox_mode: SandboxModeSchema.default('read-only'),
      sandbox_workspace_write: SandboxWorkspaceWriteTomlSchema(context),
      shell_environment_policy: ShellEnvironmentPolicyTomlSchema,
      base_instructions: z.string().optional(),
      model_instructions_file: absolutePath(['model_instructions_file'], context).optional(),
      experimental_instructions_file: absolutePath(['experimental_instructions_file'], context).optional(),
      developer_instructions: z.string().optional(),
      compact_prompt: z.string().optional(),
      model_context_window: z.number().int().positive().optional(),
      model_auto_compact_token_limit: z.number().int().positive().optional(),
      features: z.record(z.string(), z.boolean()).default({}),
      multienv: MultienvTomlSchema(context),
      // Passed through raw for later modules.
      mcp_servers: passthrough,
      permissions: passthrough,
      default_permissions: z.string().optional(),
      allow_login_shell: z.boolean().default(false),
      // Read before validation (profile selection); listed so they are known keys.
      profile: z.string().optional(),
      profiles: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
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
      tools: z.looseObject({ web_search: z.boolean().optional() }).optional(),
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
      project_doc_fallback_filenames: z.array(z.string().min(1).refine((name) => !name.includes('/'), 'a file name, not a path')).default([]),
      project_root_markers: z.array(z.string().min(1)).default(['.git']),
    })
    .transform((raw, ctx) => {
      let permissions: ReturnType<typeof parsePermissionProfiles>;
      try {
        permissions = parsePermissionProfiles(raw.permissions);
        if (raw.default_permissions !== undefined) permissions.profiles.get(raw.default_permissions);
      } catch (error) {
        ctx.issues.push({ code: 'custom', input: raw.permissions, path: ['permissions'], message: errorMessage(error) });
        return z.NEVER;
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
        webSearch: raw.web_search ?? (raw.tools?.web_search === true || raw.features['web_search_request'] === true ? 'live' : raw.tools?.web_search === false || raw.features['web_search_request'] === false ? 'disabled' : undefined),
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
        profile: context.profile,
        /** `[multienv]`: this server's own settings. */
        multienv: raw.multienv,
      };
    });
}

/** The configuration after layering, profile, validation and defaults. */
export type EffectiveConfig = z.output<ReturnType<typeof configSchema>>;

/** `[multienv]`, resolved. */
export type MultienvConfig = EffectiveConfig['multienv'];

/** `[sandbox_workspace_write]`, resolved. */
export type SandboxWorkspaceWriteConfig = EffectiveConfig['sandboxWorkspaceWrite'];

// ---------------------------------------------------------------------------------------------
// Unknown keys

type SchemaNode = z.core.$ZodType;

/** Strips optional, default, prefault and transform wrappers down to the shape they read. */
function baseSchema(schema: SchemaNode): SchemaNode {
  let node = schema;
  for (;;) {
    if (node instanceof z.ZodOptional || node instanceof z.ZodDefault || node instanceof z.ZodPrefault) {
      node = node.unwrap();
    } else if (node instanceof z.ZodPipe) {
      node = node.in;
    } else {
      return node;
    }
  }
}

function formatKey(path: readonly PropertyKey[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else if (typeof segment === 'string' && /^[A-Za-z0-9_-]+$/.test(segment)) text += text === '' ? segment : `.${segment}`;
    else text += `${text === '' ? '' : '.'}${JSON.stringify(String(segment))}`;
  }
  return text;
}

/** Warns about every key of `table` the schema does not know, recursing into known tables. */
function collectUnknownKeys(
  table: Table,
  schema: SchemaNode,
  path: readonly string[],
  source: string,
  warnings: string[],
): void {
  const node = baseSchema(schema);
  if (node instanceof z.ZodRecord) {
    for (const [key, value] of Object.entries(table)) {
      if (isTable(value)) collectUnknownKeys(value, node.valueType, [...path, key], source, warnings);
    }
    return;
  }
  if (!(node instanceof z.ZodObject)) return;
  const shape = node.shape as Record<string, SchemaNode>;
  const topLevel = path.length === 0 || (path.length === 2 && path[0] === 'profiles');
  for (const [key, value] of Object.entries(table)) {
    const field = Object.hasOwn(shape, key) ? shape[key] : undefined;
    if (field === undefined) {
      if (topLevel && ACCEPTED_KEY_PREFIXES.some((prefix) => key.startsWith(prefix))) continue;
      warnings.push(`${source}: unknown config key \`${formatKey([...path, key])}\` ignored`);
    } else if (path.length === 0 && key === 'profiles') {
      // A profile holds top-level keys.
      if (!isTable(value)) continue;
      for (const [name, profile] of Object.entries(value)) {
        if (isTable(profile)) collectUnknownKeys(profile, schema, ['profiles', name], source, warnings);
      }
    } else if (isTable(value)) {
      collectUnknownKeys(value, field, [...path, key], source, warnings);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Resolution

/** Options of {@link resolveConfig}. */
export interface ResolveConfigOptions {
  /** Layers, lowest precedence first: config.toml, then `-c`, then the per-call `config`. */
  layers: readonly ConfigLayer[];
  /** Profile to apply; wins over the `profile` key. */
  profile?: string;
  /** Absolute `CODEX_HOME`; `threads_dir` defaults under it. */
  codexHome: string;
  /**
   * Layers applied after the profile, lowest first, as Codex applies its `ConfigOverrides` (the
   * `codex` tool's `model`, `approval-policy`, `sandbox`, … arguments; see {@link toolArgumentsLayer}).
   * @default []
   */
  overrides?: readonly ConfigLayer[];
}

/** What {@link resolveConfig} returns. */
export interface ResolvedConfig {
  config: EffectiveConfig;
  /** One line per unknown key: `<source>: unknown config key \`a.b\` ignored`. */
  warnings: string[];
}

function builtInLayer(): ConfigLayer {
  return {
    source: BUILT_IN_SOURCE,
    values: { model_providers: { [DEFAULT_MODEL_PROVIDER_ID]: { name: 'OpenAI', base_url: OPENAI_BASE_URL, env_key: 'OPENAI_API_KEY', requires_openai_auth: true } } },
  };
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return `datetime ${value.toISOString()}`;
  if (Array.isArray(value)) return 'an array';
  return 'a table';
}

const EXPECTED_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  array: 'an array',
  object: 'a table',
  record: 'a table',
};

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node = root;
  for (const segment of path) {
    if (Array.isArray(node) && typeof segment === 'number') node = node[segment];
    else if (isTable(node) && typeof segment === 'string') node = ownValue(node, segment);
    else return undefined;
  }
  return node;
}

function issueMessage(issue: z.core.$ZodIssue, value: unknown): string {
  const got = describeValue(value);
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return 'missing required key';
      return `expected ${EXPECTED_NAMES[issue.expected] ?? issue.expected}, got ${got}`;
    case 'invalid_value':
      if (issue.values.length === 1) return `expected ${String(issue.values[0])}, got ${got}`;
      return `expected one of ${issue.values.map(String).join(', ')}, got ${got}`;
    case 'too_small':
      return `expected ${issue.inclusive === false ? 'more than' : 'at least'} ${String(issue.minimum)}, got ${got}`;
    case 'too_big':
      return `expected ${issue.inclusive === false ? 'less than' : 'at most'} ${String(issue.maximum)}, got ${got}`;
    default:
      return issue.message;
  }
}

/**
 * Merges the layers, applies the selected profile and the overrides, validates known keys and
 * fills defaults.
 *
 * The profile is `options.profile`, else the merged `profile` key; its `[profiles.NAME]` table
 * overlays the top-level keys (so, as in Codex, a profile's `model` wins over `-c model=…`, and
 * `-c profiles.NAME.model=…` changes the profile). Path-valued keys resolve a relative path
 * against the directory of the layer that set it ({@link ConfigLayer.baseDir}).
 * @throws LocalError `INVALID_CONFIG`: `<source>: <key>: <problem>` for every invalid known key
 * (joined with `; `), or an unknown profile listing the known ones.
 */
export function resolveConfig(options: ResolveConfigOptions): ResolvedConfig {
  const provenance = new Provenance();
  const merged: Table = {};
  for (const configLayer of [builtInLayer(), ...options.layers]) mergeLayer(merged, configLayer, provenance);

  const describeOrigin = (path: readonly PropertyKey[]): { source: string; key: string } => {
    const found = provenance.find(path);
    if (found === undefined) return { source: 'config', key: formatKey(path) };
    return { source: found.origin.source, key: formatKey([...found.origin.key, ...path.slice(found.length)]) };
  };
  const fail = (path: readonly PropertyKey[], message: string): LocalError => {
    const { source, key } = describeOrigin(path);
    return invalidConfig(`${source}: ${key}: ${message}`);
  };

  const profileKey = ownValue(merged, 'profile');
  if (profileKey !== undefined && typeof profileKey !== 'string') {
    throw fail(['profile'], `expected a string, got ${describeValue(profileKey)}`);
  }
  const profiles = ownValue(merged, 'profiles');
  if (profiles !== undefined && !isTable(profiles)) throw fail(['profiles'], `expected a table, got ${describeValue(profiles)}`);
  const profile = options.profile ?? profileKey;
  if (profile !== undefined) {
    const table = profiles === undefined ? undefined : ownValue(profiles, profile);
    if (table === undefined) {
      const names = Object.keys(profiles ?? {}).sort();
      const known = names.length === 0 ? 'no profiles are defined' : `known profiles: ${names.join(', ')}`;
      const message = `config profile \`${profile}\` not found; ${known}`;
      throw options.profile === undefined ? fail(['profile'], message) : invalidConfig(message);
    }
    if (!isTable(table)) throw fail(['profiles', profile], `expected a table, got ${describeValue(table)}`);
    const overlay: Table = {};
    for (const [key, value] of Object.entries(table)) if (key !== 'profile' && key !== 'profiles') setOwn(overlay, key, value);
    mergeWithOrigins(merged, overlay, [], provenance, (key) => {
      const full = ['profiles', profile, ...key];
      const found = provenance.find(full);
      return { source: found?.origin.source ?? 'config', baseDir: found?.origin.baseDir, key: full };
    });
  }
  for (const configLayer of options.overrides ?? []) mergeLayer(merged, configLayer, provenance);

  const context: SchemaContext = { codexHome: options.codexHome, profile, originOf: (path) => provenance.find(path)?.origin };
  const schema = configSchema(context);
  const warnings: string[] = [];
  for (const configLayer of [...options.layers, ...(options.overrides ?? [])]) {
    collectUnknownKeys(configLayer.values, schema, [], configLayer.source, warnings);
  }

  const result = schema.safeParse(merged);
  if (!result.success) {
    const messages = result.error.issues.map((issue) => {
      const { source, key } = describeOrigin(issue.path);
      return `${source}: ${key}: ${issueMessage(issue, valueAt(merged, issue.path))}`;
    });
    throw invalidConfig(messages.join('; '));
  }
  return { config: result.data, warnings };
}
