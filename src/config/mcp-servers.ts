/**
 * `[mcp_servers.NAME]` of config.toml, as Codex has it: a stdio server (`command`, `args`, `env`,
 * `env_vars`, `cwd`) or a Streamable HTTP server (`url`, `bearer_token_env_var`, `http_headers`,
 * `env_http_headers`), with `enabled`, `required`, timeouts, tool filters, and `environment_id`
 * binding the server to an environment.
 *
 * config.ts keeps the table raw; this module validates it. A bad value is an error naming the key
 * (`mcp_servers.docs.url: expected an http or https URL, got "ftp://x"`); an unknown key is a
 * warning, so a Codex config with newer keys still works. Pure: no environment, no file reads.
 */
import { z } from 'zod';
import { checkValue, formatKeyPath, refuseProtoKey, stringTable, tomlTable, unknownKeys } from './validation.js';

/** How long a server may take to start and list its tools when the config says nothing (Codex: 10 s). */
export const DEFAULT_MCP_STARTUP_TIMEOUT_MS = 10_000;
/** How long one tool call may take when the config says nothing (Codex: 60 s). */
export const DEFAULT_MCP_TOOL_TIMEOUT_MS = 60_000;

/** The largest timeout a timer can hold, in seconds. */
const MAX_TIMEOUT_SEC = 2 ** 31 / 1000;
/** Server names become part of tool names (`mcp__<server>__<tool>`), so Codex restricts them. */
const SERVER_NAME = /^[A-Za-z0-9_-]+$/;

/** A stdio server: a command started in the server's environment, spoken to over its stdin/stdout. */
export interface McpStdioTransportConfig {
  type: 'stdio';
  /** `command`: the program; resolved with the `PATH` of the environment it runs in. */
  command: string;
  /** `args`. @default [] */
  args: string[];
  /** `env`: variables set for the server, on top of the inherited ones. @default {} */
  env: Record<string, string>;
  /**
   * `env_vars`: names of variables the server inherits from the environment it runs in (the
   * executor's own environment on a remote host), beyond the default minimal set. @default []
   */
  envVars: string[];
  /** `cwd`: absolute, or relative to the thread's working directory on that environment. */
  cwd: string | undefined;
}

/** A Streamable HTTP server. */
export interface McpHttpTransportConfig {
  type: 'streamable_http';
  /** `url`: http or https; resolved where the environment is (DNS, routing, loopback). */
  url: string;
  /** `bearer_token_env_var`: variable of this server's own environment holding a bearer token. */
  bearerTokenEnvVar: string | undefined;
  /** `http_headers`: sent with every request. @default {} */
  httpHeaders: Record<string, string>;
  /** `env_http_headers`: header name → variable whose value is sent, when set. @default {} */
  envHttpHeaders: Record<string, string>;
}

/** One `[mcp_servers.NAME]`, validated. */
export interface McpServerConfig {
  /** The table's name; the `<server>` of `mcp__<server>__<tool>`. */
  name: string;
  transport: McpStdioTransportConfig | McpHttpTransportConfig;
  /** `enabled = false` keeps the entry but never starts it. @default true */
  enabled: boolean;
  /** `required`: a turn fails when this server cannot start. @default false */
  required: boolean;
  /** `startup_timeout_sec` (or Codex's older `startup_timeout_ms`). @default DEFAULT_MCP_STARTUP_TIMEOUT_MS */
  startupTimeoutMs: number;
  /** `tool_timeout_sec`. @default DEFAULT_MCP_TOOL_TIMEOUT_MS */
  toolTimeoutMs: number;
  /** `enabled_tools`: when set, only these tools are offered. */
  enabledTools: string[] | undefined;
  /** `disabled_tools`: never offered (applied after `enabled_tools`). @default [] */
  disabledTools: string[];
  /** `environment_id`: where the server runs; none means the thread's primary environment when it starts. */
  environmentId: string | undefined;
}

/** The result of {@link parseMcpServers}. */
export interface ParsedMcpServers {
  /** Every server, in the order of the table. */
  servers: McpServerConfig[];
  /** One line per unknown key: `mcp_servers.docs.foo: unknown key ignored`. */
  warnings: string[];
}

const stringMap = stringTable();
const timeoutSec = z.number().positive().max(MAX_TIMEOUT_SEC);

const httpUrl = z.string().refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), {
  error: (issue) => `expected an http or https URL, got ${JSON.stringify(issue.input)}`,
});

const STDIO_KEYS = ['args', 'env', 'env_vars', 'cwd'] as const;
const HTTP_KEYS = ['bearer_token_env_var', 'http_headers', 'env_http_headers'] as const;

const McpServerTomlSchema = tomlTable(
  z.object({
    command: z.string().min(1).optional(),
    args: z.array(z.string()).optional(),
    env: stringMap.optional(),
    env_vars: z.array(z.string().min(1)).optional(),
    cwd: z.string().min(1).optional(),
    url: httpUrl.optional(),
    bearer_token_env_var: z.string().min(1).optional(),
    http_headers: stringMap.optional(),
    env_http_headers: stringMap.optional(),
    enabled: z.boolean().default(true),
    required: z.boolean().default(false),
    startup_timeout_sec: timeoutSec.optional(),
    startup_timeout_ms: z
      .int()
      .positive()
      .max(2 ** 31)
      .optional(),
    tool_timeout_sec: timeoutSec.optional(),
    enabled_tools: z.array(z.string()).optional(),
    disabled_tools: z.array(z.string()).default([]),
    environment_id: z.string().min(1).optional(),
    // Codex refuses a token written into the file; say so instead of ignoring it.
    bearer_token: z.unknown().optional(),
  }),
).transform((raw, ctx) => {
  const fail = (path: string[], message: string): typeof z.NEVER => {
    ctx.issues.push({ code: 'custom', input: raw, path, message });
    return z.NEVER;
  };
  if (raw.bearer_token !== undefined) {
    return fail(['bearer_token'], 'a bearer token cannot be written in the config; put it in a variable and name it with `bearer_token_env_var`');
  }
  if (raw.command !== undefined && raw.url !== undefined) return fail([], 'set either `command` (stdio) or `url` (streamable HTTP), not both');
  if (raw.command === undefined && raw.url === undefined) return fail([], 'missing `command` (a stdio server) or `url` (a streamable HTTP server)');
  let transport: McpStdioTransportConfig | McpHttpTransportConfig;
  if (raw.command !== undefined) {
    const misplaced = HTTP_KEYS.find((key) => raw[key] !== undefined);
    if (misplaced !== undefined) return fail([misplaced], `\`${misplaced}\` applies only to a streamable HTTP server (\`url\`), not to a stdio one`);
    transport = { type: 'stdio', command: raw.command, args: raw.args ?? [], env: raw.env ?? {}, envVars: raw.env_vars ?? [], cwd: raw.cwd };
  } else {
    const misplaced = STDIO_KEYS.find((key) => raw[key] !== undefined);
    if (misplaced !== undefined) return fail([misplaced], `\`${misplaced}\` applies only to a stdio server (\`command\`), not to a streamable HTTP one`);
    transport = {
      type: 'streamable_http',
      url: raw.url ?? '',
      bearerTokenEnvVar: raw.bearer_token_env_var,
      httpHeaders: raw.http_headers ?? {},
      envHttpHeaders: raw.env_http_headers ?? {},
    };
  }
  const startupTimeoutMs = raw.startup_timeout_sec !== undefined ? Math.round(raw.startup_timeout_sec * 1000) : (raw.startup_timeout_ms ?? DEFAULT_MCP_STARTUP_TIMEOUT_MS);
  return {
    transport,
    enabled: raw.enabled,
    required: raw.required,
    startupTimeoutMs,
    toolTimeoutMs: raw.tool_timeout_sec === undefined ? DEFAULT_MCP_TOOL_TIMEOUT_MS : Math.round(raw.tool_timeout_sec * 1000),
    enabledTools: raw.enabled_tools,
    disabledTools: raw.disabled_tools,
    environmentId: raw.environment_id,
  };
});

/** `[mcp_servers]`: server name → server. */
const McpServersTomlSchema = refuseProtoKey(z.record(z.string().regex(SERVER_NAME, { error: 'invalid server name; use only letters, digits, `_` and `-`' }), McpServerTomlSchema));

/**
 * Validates the raw `[mcp_servers]` table (EffectiveConfig.mcpServers).
 * @throws LocalError `INVALID_CONFIG`: `mcp_servers.<name>.<key>: <problem>` for every bad key,
 * joined with `; `.
 */
export function parseMcpServers(raw: unknown): ParsedMcpServers {
  if (raw === undefined) return { servers: [], warnings: [] };
  const tables = checkValue(McpServersTomlSchema, raw, { at: ['mcp_servers'] });
  const warnings = unknownKeys(McpServersTomlSchema, raw).map((path) => `${formatKeyPath(['mcp_servers', ...path])}: unknown key ignored`);
  return { servers: Object.entries(tables).map(([name, server]) => ({ name, ...server })), warnings };
}
