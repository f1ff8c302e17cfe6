import type { JSONRPCMessage, RequestId, ServerCapabilities } from '@modelcontextprotocol/sdk/types.js';

/**
 * What a client learns from its first request, in both eras: the answer to `initialize` (2025:
 * protocol version, capabilities, who the server is) and to `server/discover` (2026-07-28). The
 * full server configures the SDK's `Server` and the modern era from here, and {@link earlyAnswer}
 * builds the same answers before the server exists: the relay a client starts (cli/mcp-relay.ts)
 * answers from this module while the worker loads, and the server itself while it composes.
 *
 * This module imports nothing at run time (types only): it is part of the relay's small bundle
 * (dist/cli/main.js), where every module loaded delays the client's start. So the checks below are
 * plain code, not the SDK's zod schemas: they accept only requests that those schemas plainly
 * accept too (stricter where checking would need the schemas); anything else is left to the
 * server, which answers it as it always has.
 */

/** Who this server is, as both eras' answers name it. */
export interface ServerInfo {
  name: string;
  title?: string;
  version: string;
}

/** Who this server is, in both eras. */
export function serverInfo(version: string): ServerInfo {
  return { name: 'codex-multienv-mcp', title: 'Codex (multi-environment)', version };
}

/** MCP Tasks (2025) for `tools/call`, with cancellation. No `tasks/list`: the tasks live in their threads, and no index of them says whose they are. */
export const TASK_CAPABILITIES = { cancel: {}, requests: { tools: { call: {} } } };

/** The 2025 server's capabilities: a fixed list of tools, logging notifications, MCP Tasks for `tools/call`. */
export const LEGACY_CAPABILITIES: ServerCapabilities = { tools: { listChanged: false }, logging: {}, tasks: TASK_CAPABILITIES };

/**
 * The 2025 protocol versions the SDK's server negotiates, newest first: its
 * `SUPPORTED_PROTOCOL_VERSIONS` (test/unit/mcp/handshake.test.ts checks them against the installed SDK).
 */
export const LEGACY_PROTOCOL_VERSIONS: readonly string[] = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05', '2024-10-07'];

/** The `initialize` result: the version asked for when served here, else the newest (as the SDK negotiates). */
export function initializeResult(requestedVersion: string, version: string): Record<string, unknown> {
  const protocolVersion = LEGACY_PROTOCOL_VERSIONS.includes(requestedVersion) ? requestedVersion : LEGACY_PROTOCOL_VERSIONS[0];
  return { protocolVersion, capabilities: LEGACY_CAPABILITIES, serverInfo: serverInfo(version) };
}

/** The modern protocol versions served here, newest first. */
export const MODERN_PROTOCOL_VERSIONS: readonly string[] = ['2026-07-28'];

export const META_VERSION = 'io.modelcontextprotocol/protocolVersion';
export const META_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
export const META_SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
export const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel';

/** The MCP Tasks extension's identifier (2026-07-28), in capabilities. */
export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';

/** How long `tools/list` and `server/discover` may be cached: the tools are fixed for the process. */
export const LIST_TTL_MS = 3_600_000;

/** The `server/discover` result: fixed for the process (the tools never change), so it needs nothing but whether tasks are offered. */
export function discoverResult(offersTasks: boolean): Record<string, unknown> {
  return {
    resultType: 'complete',
    supportedVersions: [...MODERN_PROTOCOL_VERSIONS],
    capabilities: { tools: { listChanged: false }, logging: {}, ...(offersTasks ? { extensions: { [TASKS_EXTENSION]: {} } } : {}) },
    ttlMs: LIST_TTL_MS,
    cacheScope: 'public',
  };
}

/** The answer carrying `result`, with the server's identity in `_meta` as every answer of the modern era has (beside the result's own `_meta`, if any). */
export function resultReply(id: RequestId, result: Record<string, unknown>, info: ServerInfo): JSONRPCMessage {
  const { _meta: own, ...rest } = result;
  const meta = typeof own === 'object' && own !== null ? own : {};
  return { jsonrpc: '2.0', id, result: { ...rest, _meta: { ...meta, [META_SERVER_INFO]: info } } };
}

/** Whether a request's params carry a modern protocol version: such a request belongs to the modern era, whatever its method. */
export function hasModernVersion(params: unknown): boolean {
  if (!isPlainObject(params)) return false;
  const meta = params._meta;
  return isPlainObject(meta) && META_VERSION in meta;
}

/** An answer given before the server could, and whether the server must still see the request (an `initialize` sets up its session). */
export interface EarlyAnswer {
  answer: JSONRPCMessage;
  /** The request, when it must reach the server too, its own answer dropped (`initialize`, `tools/list`); absent when it is done with. */
  replay?: Record<string, unknown>;
}

/**
 * The answer the server would give `message` (one parsed line) when it is an `initialize` of a
 * 2025 client or a `server/discover` of a 2026-07-28 one that is plainly valid; undefined for
 * everything else, which only the server answers.
 */
export function earlyAnswer(message: unknown, version: string): EarlyAnswer | undefined {
  if (!isPlainRequest(message)) return undefined;
  const { id, method, params } = message;
  if (method === 'initialize') {
    if (!isPlainObject(params) || params._meta !== undefined) return undefined;
    const { protocolVersion, capabilities, clientInfo } = params;
    if (typeof protocolVersion !== 'string' || !isClientInfo(clientInfo) || !isClientCapabilities(capabilities)) return undefined;
    return { answer: { jsonrpc: '2.0', id, result: initializeResult(protocolVersion, version) }, replay: message };
  }
  if (method === 'server/discover') {
    const meta = isPlainObject(params) ? params._meta : undefined;
    if (!isPlainObject(meta) || typeof meta[META_VERSION] !== 'string' || !MODERN_PROTOCOL_VERSIONS.includes(meta[META_VERSION])) return undefined;
    // A log level is checked against the level names, which only the server's schema holds.
    if (meta[META_LOG_LEVEL] !== undefined || !isModernCapabilities(meta[META_CAPABILITIES])) return undefined;
    return { answer: resultReply(id, discoverResult(true), serverInfo(version)) };
  }
  return undefined;
}

/** The era a `tools/list` request belongs to: the 2025 one (after `initialize`) or 2026-07-28's. */
export type ToolsListEra = 'legacy' | 'modern';

/**
 * The id and era of `message` (one parsed line, returned as `request`) when it is a `tools/list` request asking for nothing but
 * the whole listing (no cursor, no other params, `_meta` plain) that the server plainly accepts:
 * a modern one names a protocol version served here and the client's capabilities, and no log
 * level (see {@link earlyAnswer}); a legacy one names no protocol version. Undefined for
 * everything else, which only the server answers.
 */
export function plainToolsList(message: unknown): { id: RequestId; era: ToolsListEra; request: Record<string, unknown> } | undefined {
  if (!isPlainRequest(message) || message.method !== 'tools/list') return undefined;
  const { id, params } = message;
  if (params !== undefined && !(isPlainObject(params) && Object.keys(params).every((key) => key === '_meta'))) return undefined;
  const meta = isPlainObject(params) && isPlainObject(params._meta) ? params._meta : {};
  if (!(META_VERSION in meta)) return { id, era: 'legacy', request: message };
  if (typeof meta[META_VERSION] !== 'string' || !MODERN_PROTOCOL_VERSIONS.includes(meta[META_VERSION])) return undefined;
  return meta[META_LOG_LEVEL] === undefined && isModernCapabilities(meta[META_CAPABILITIES]) ? { id, era: 'modern', request: message } : undefined;
}

type PlainObject = Record<string, unknown>;

function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Absent, or an object (arrays too are objects to the SDK's schema; refusing them is only stricter). */
function optionalObject(value: unknown): boolean {
  return value === undefined || isPlainObject(value);
}

/** Absent, or an object whose members are all objects (a record of capabilities). */
function optionalObjectRecord(value: unknown): boolean {
  return value === undefined || (isPlainObject(value) && Object.values(value).every(isPlainObject));
}

const REQUEST_MEMBERS = new Set(['jsonrpc', 'id', 'method', 'params']);

/** A JSON-RPC request as the SDK's (strict) schema takes it, with params (if any) that carry nothing but plain `_meta` members. */
function isPlainRequest(value: unknown): value is PlainObject & { id: RequestId; method: string; params?: unknown } {
  if (!isPlainObject(value) || value.jsonrpc !== '2.0' || typeof value.method !== 'string') return false;
  if (!Object.keys(value).every((key) => REQUEST_MEMBERS.has(key))) return false;
  const { id, params } = value;
  if (typeof id !== 'string' && !Number.isSafeInteger(id)) return false;
  if (params === undefined) return true;
  if (!isPlainObject(params) || !optionalObject(params._meta)) return false;
  const meta = isPlainObject(params._meta) ? params._meta : {};
  const token = meta.progressToken;
  return (token === undefined || typeof token === 'string' || Number.isSafeInteger(token)) && meta['io.modelcontextprotocol/related-task'] === undefined;
}

const OPTIONAL_STRINGS = ['title', 'websiteUrl', 'description'] as const;

/** The SDK's `Implementation`: a name and a version (icons are left to the server). */
function isClientInfo(value: unknown): boolean {
  if (!isPlainObject(value) || typeof value.name !== 'string' || typeof value.version !== 'string' || value.icons !== undefined) return false;
  return OPTIONAL_STRINGS.every((key) => value[key] === undefined || typeof value[key] === 'string');
}

/** The SDK's `ClientCapabilities`, member by member (unknown members are the client's own). */
function isClientCapabilities(value: unknown): boolean {
  if (!isPlainObject(value)) return false;
  const { experimental, sampling, elicitation, roots, tasks, extensions } = value;
  if (!optionalObjectRecord(experimental) || !optionalObjectRecord(extensions)) return false;
  if (sampling !== undefined && !(isPlainObject(sampling) && optionalObject(sampling.context) && optionalObject(sampling.tools))) return false;
  if (elicitation !== undefined) {
    if (!isPlainObject(elicitation) || !optionalObject(elicitation.url)) return false;
    const { form } = elicitation;
    if (form !== undefined && !(isPlainObject(form) && (form.applyDefaults === undefined || typeof form.applyDefaults === 'boolean'))) return false;
  }
  if (roots !== undefined && !(isPlainObject(roots) && (roots.listChanged === undefined || typeof roots.listChanged === 'boolean'))) return false;
  if (tasks !== undefined) {
    if (!isPlainObject(tasks) || !optionalObject(tasks.list) || !optionalObject(tasks.cancel)) return false;
    const { requests } = tasks;
    if (requests !== undefined) {
      if (!isPlainObject(requests)) return false;
      const { sampling: taskSampling, elicitation: taskElicitation } = requests;
      if (taskSampling !== undefined && !(isPlainObject(taskSampling) && optionalObject(taskSampling.createMessage))) return false;
      if (taskElicitation !== undefined && !(isPlainObject(taskElicitation) && optionalObject(taskElicitation.create))) return false;
    }
  }
  return true;
}

/** The client capabilities a modern request carries: an object, with elicitation and extensions objects when present. */
function isModernCapabilities(value: unknown): boolean {
  return isPlainObject(value) && optionalObject(value.elicitation) && optionalObject(value.extensions);
}
