import { createHash } from 'node:crypto';
import type { McpServerFailure, McpToolBinding, McpToolResult } from '../../environments/mcp-servers.js';
import { abortReason } from '../../util/abort.js';
import { errorMessage } from '../../util/errors.js';
import type { ApprovalPolicy, ApprovalRequest } from '../approvals.js';
import { TurnAbortedError } from '../errors.js';
import { truncateForModel } from '../output.js';
import type { FunctionTool, ToolContentItem, ToolContext, ToolOutput } from './tool.js';

/** The Responses API's limit on a function name. */
export const MAX_TOOL_NAME_LENGTH = 64;
/** Bound on a tool description sent to the model. */
const MAX_DESCRIPTION_CHARS = 4096;
/** Hex characters of the hash that keeps a shortened or clashing name unique. */
const NAME_HASH_CHARS = 8;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hashOf(text: string): string {
  return createHash('sha1').update(text).digest('hex').slice(0, NAME_HASH_CHARS);
}

/**
 * The model-facing name of an MCP tool: `mcp__<server>__<tool>`, with characters the Responses API
 * refuses replaced by `_`, and a hash suffix when it is longer than 64 characters or already taken.
 */
export function mcpToolName(server: string, tool: string, taken: ReadonlySet<string>): string {
  const raw = `mcp__${server}__${tool}`;
  const clean = raw.replace(/[^A-Za-z0-9_-]/g, '_');
  if (clean.length <= MAX_TOOL_NAME_LENGTH && !taken.has(clean)) return clean;
  for (let attempt = 0; ; attempt++) {
    const suffix = `_${hashOf(attempt === 0 ? raw : `${raw}#${attempt}`)}`;
    const name = `${clean.slice(0, MAX_TOOL_NAME_LENGTH - suffix.length)}${suffix}`;
    if (!taken.has(name)) return name;
  }
}

/** Keywords kept in a parameter schema; anything else (`$schema`, vendor `x-…` keys) is dropped. */
const KEPT_KEYWORDS = new Set([
  'type',
  'description',
  'title',
  'properties',
  'required',
  'items',
  'enum',
  'const',
  'anyOf',
  'allOf',
  'additionalProperties',
  'default',
  'format',
  'pattern',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'uniqueItems',
  '$ref',
  '$defs',
  'definitions',
]);

const JSON_TYPES = new Set(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']);

/** The JSON type a schema without `type` describes, guessed from its keywords as Codex does. */
function inferType(schema: JsonObject): string | undefined {
  if ('properties' in schema || 'additionalProperties' in schema || 'required' in schema) return 'object';
  if ('items' in schema) return 'array';
  if ('enum' in schema || 'const' in schema || 'format' in schema || 'pattern' in schema || 'minLength' in schema || 'maxLength' in schema) return 'string';
  if ('minimum' in schema || 'maximum' in schema || 'multipleOf' in schema) return 'number';
  return undefined;
}

/** Cleans one sub-schema (see {@link cleanToolSchema}). */
function cleanSchema(schema: unknown): JsonObject {
  // `true`, `{}` and other shapeless schemas accept anything; the API wants a type, so: a string.
  if (!isObject(schema)) return { type: 'string' };
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(schema)) {
    if (!KEPT_KEYWORDS.has(key)) continue;
    switch (key) {
      case 'properties':
      case '$defs':
      case 'definitions':
        if (isObject(value)) out[key] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, cleanSchema(sub)]));
        break;
      case 'items':
        // Tuple `items` (an array) is not accepted by the API; the first entry describes the rest best.
        out.items = cleanSchema(Array.isArray(value) ? value[0] : value);
        break;
      case 'anyOf':
      case 'allOf':
        if (Array.isArray(value) && value.length > 0) out[key] = value.map(cleanSchema);
        break;
      case 'additionalProperties':
        out.additionalProperties = typeof value === 'boolean' ? value : cleanSchema(value);
        break;
      case 'required':
        if (Array.isArray(value)) out.required = value.filter((name): name is string => typeof name === 'string');
        break;
      case 'type': {
        // A list of types: keep the first that is not null (the API wants one).
        const types = (Array.isArray(value) ? value : [value]).filter((t): t is string => typeof t === 'string' && JSON_TYPES.has(t));
        const chosen = types.find((t) => t !== 'null') ?? types[0];
        if (chosen !== undefined) out.type = chosen;
        break;
      }
      default:
        out[key] = value;
    }
  }
  // `oneOf` is not accepted; `anyOf` says nearly the same to the model.
  if (out.anyOf === undefined && Array.isArray(schema.oneOf) && schema.oneOf.length > 0) out.anyOf = schema.oneOf.map(cleanSchema);
  if (out.type === undefined && out.anyOf === undefined && out.allOf === undefined && out.$ref === undefined) out.type = inferType(out) ?? 'string';
  if (out.type === 'array' && out.items === undefined) out.items = { type: 'string' };
  if (out.type === 'object') {
    if (!isObject(out.properties)) out.properties = {};
    const properties = out.properties as JsonObject;
    if (Array.isArray(out.required)) out.required = (out.required as string[]).filter((name) => Object.hasOwn(properties, name));
  }
  return out;
}

/**
 * An MCP tool's `inputSchema` as the Responses API accepts it for a function tool: an object at
 * the top, one type per schema (inferred when missing), arrays with `items`, `oneOf` as `anyOf`,
 * `required` limited to existing properties, and unknown keywords dropped.
 */
export function cleanToolSchema(inputSchema: unknown): JsonObject {
  const cleaned = cleanSchema(isObject(inputSchema) ? inputSchema : {});
  if (cleaned.type !== 'object') return { type: 'object', properties: {} };
  return cleaned;
}

/**
 * Whether an MCP tool call must be approved first. The tool's annotations are the server's hints:
 * - `never`, `on-failure`: no questions (there is no sandbox to fail for an MCP call);
 * - `untrusted`: ask unless the tool says it is read-only;
 * - `on-request`: ask unless it says it is read-only or not destructive (the spec's defaults:
 *   a tool that says nothing may be destructive).
 */
export function mcpCallNeedsApproval(policy: ApprovalPolicy, annotations: McpToolBinding['tool']['annotations']): boolean {
  switch (policy) {
    case 'never':
    case 'on-failure':
      return false;
    case 'untrusted':
      return annotations?.readOnlyHint !== true;
    case 'on-request':
      return annotations?.readOnlyHint !== true && annotations?.destructiveHint !== false;
  }
}

function contentText(item: McpToolResult['content'][number]): string | ToolContentItem {
  switch (item.type) {
    case 'text':
      return item.text;
    case 'image':
      return { type: 'input_image', image_url: `data:${item.mimeType};base64,${item.data}` };
    case 'audio':
      return `[audio (${item.mimeType}, ${Math.floor((item.data.length * 3) / 4)} bytes) not shown]`;
    case 'resource_link':
      return `[resource link: ${item.name} ${item.uri}${item.mimeType === undefined ? '' : ` (${item.mimeType})`}${item.description === undefined ? '' : `: ${item.description}`}]`;
    case 'resource':
      if ('text' in item.resource) return item.resource.text;
      return `[embedded resource ${item.resource.uri}${item.resource.mimeType === undefined ? '' : ` (${item.resource.mimeType})`}: binary content not shown]`;
  }
}

/**
 * A tool result as the model reads it: structured content (when the tool gave some) as JSON, else
 * the text of every content item; images as images; `isError` said plainly. Text is bounded by
 * `maxTokens`.
 */
export function formatMcpResult(result: McpToolResult, maxTokens: number): ToolOutput {
  const texts: string[] = [];
  const images: ToolContentItem[] = [];
  for (const item of result.content) {
    const converted = contentText(item);
    if (typeof converted !== 'string') images.push(converted);
    // With structured content, the text items are its serialised copy (the spec's advice): skip them.
    else if (result.structuredContent === undefined || item.type !== 'text') texts.push(converted);
  }
  if (result.structuredContent !== undefined) texts.unshift(JSON.stringify(result.structuredContent));
  if (texts.length === 0 && images.length === 0) texts.push('(the tool returned no content)');
  if (result.isError === true) texts.unshift('The MCP tool reported an error:');
  const text = truncateForModel(texts.join('\n'), maxTokens).text;
  if (images.length === 0) return text;
  return [{ type: 'input_text', text }, ...images];
}

/** Options of {@link mcpTools}. */
export interface McpToolsOptions {
  /** Names already used by the turn's other tools. */
  reservedNames: readonly string[];
  /** Say in each description which environment the server runs in (the turn has several). */
  multiEnvironment: boolean;
}

/** The function tools offering the tools of a turn's running MCP servers to the model. */
export function mcpTools(bindings: readonly McpToolBinding[], options: McpToolsOptions): FunctionTool[] {
  const taken = new Set(options.reservedNames);
  return bindings.map((binding) => {
    const name = mcpToolName(binding.server, binding.tool.name, taken);
    taken.add(name);
    const base = binding.tool.description ?? binding.tool.title ?? binding.tool.annotations?.title ?? `The tool ${binding.tool.name}.`;
    const where = options.multiEnvironment ? ` (MCP server \`${binding.server}\`, runs in environment \`${binding.environmentId}\`)` : ` (MCP server \`${binding.server}\`)`;
    const description = base.length + where.length > MAX_DESCRIPTION_CHARS ? `${base.slice(0, MAX_DESCRIPTION_CHARS - where.length - 1)}…${where}` : `${base}${where}`;
    return {
      kind: 'function',
      name,
      description,
      parameters: cleanToolSchema(binding.tool.inputSchema),
      run: (args, ctx) => runMcpTool(binding, name, args, ctx),
    };
  });
}

async function runMcpTool(binding: McpToolBinding, name: string, rawArgs: unknown, ctx: ToolContext): Promise<ToolOutput> {
  // Models sometimes send `null` for a tool without parameters.
  const args = rawArgs ?? {};
  if (!isObject(args)) return `invalid ${name} arguments: expected a JSON object`;
  if (mcpCallNeedsApproval(ctx.approvalPolicy, binding.tool.annotations)) {
    const request: ApprovalRequest = {
      kind: 'mcp',
      threadId: ctx.threadId,
      callId: ctx.callId,
      environmentId: binding.environmentId,
      cwd: binding.cwd,
      server: binding.server,
      tool: binding.tool.name,
      arguments: args,
    };
    if (!ctx.sessionApprovals.covers(request)) {
      const decision = await ctx.approver.request(request, ctx.signal);
      if (ctx.signal.aborted) throw abortReason(ctx.signal);
      switch (decision.decision) {
        case 'approved':
          break;
        case 'approved_for_session':
          ctx.sessionApprovals.remember(request);
          break;
        case 'denied':
          return `${name} was rejected by the user: ${decision.reason}`;
        case 'abort':
          throw new TurnAbortedError(decision.reason);
      }
    }
  }
  ctx.progress(`MCP tool ${binding.server}/${binding.tool.name} called on ${binding.environmentId}`);
  let result: McpToolResult;
  try {
    result = await binding.call(args, ctx.signal);
  } catch (error) {
    if (ctx.signal.aborted) throw abortReason(ctx.signal);
    // The model can go on without this server; the turn goes on.
    return `${name} failed: ${errorMessage(error)}`;
  }
  return formatMcpResult(result, ctx.maxOutputTokens);
}

/**
 * What the model is told about servers it cannot use this turn (appended to the environment
 * context), or undefined when every server is fine.
 */
export function mcpFailureNotice(failures: readonly McpServerFailure[]): string | undefined {
  if (failures.length === 0) return undefined;
  const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  const lines = ['<mcp_servers_unavailable>'];
  for (const failure of failures) {
    lines.push(`  <server name="${escape(failure.server)}" environment="${escape(failure.environmentId)}">${escape(failure.error)}</server>`);
  }
  lines.push('</mcp_servers_unavailable>');
  return lines.join('\n');
}
