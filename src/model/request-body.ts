import { z } from 'zod';
import { ResponseInputItemSchema, ResponsesRequestBodySchema, ToolSpecSchema } from '../protocol/responses.js';
import type { ResponseInputItem, ToolSpec } from '../protocol/responses.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * The JSON text of a `POST /responses` body, built through its schemas (exactly what they allow
 * is sent) but without redoing that work for what was sent before. Every request of a thread
 * carries the whole history again, and the items of a history never change once created, so each
 * item object is validated and serialized once ({@link ResponseInputItemSchema}) and its text is
 * reused by every later request. The result is byte for byte
 * `JSON.stringify(ResponsesRequestBodySchema.parse(body))`.
 */

/** What the body is built from. */
export interface RequestBodyParts {
  model: string;
  /** The conversation; items must not be mutated once sent (their JSON is kept per object). */
  input: readonly ResponseInputItem[];
  tools: readonly ToolSpec[];
  parallelToolCalls: boolean;
  reasoning?: { effort?: string; summary?: string };
  promptCacheKey?: string;
}

/** Item JSON by item object; weak, so it goes away with the thread's history. */
const itemJson = new WeakMap<object, string>();
/** Tools JSON by tools array: a turn sends the same array with each of its requests. */
const toolsJson = new WeakMap<readonly ToolSpec[], string>();

const ToolSpecsSchema = z.array(ToolSpecSchema);

/**
 * {@link ResponseInputItemSchema}'s branches by their `type` tag (the two `message` branches
 * joined in their order). The union tries its branches in order, building the issues of each
 * that fails, to find the one that parses: a tool output, fourth, cost three failed parses first.
 * Every branch's tag is a literal, so a branch of another tag cannot parse the item, and the
 * branch of its tag gives exactly the union's result for half the cost or less.
 */
const INPUT_ITEM_SCHEMAS: ReadonlyMap<string, z.ZodType<ResponseInputItem>> = (() => {
  const byType = new Map<string, z.ZodType<ResponseInputItem>[]>();
  for (const option of ResponseInputItemSchema.options) {
    const type = option.shape.type.value;
    byType.set(type, [...(byType.get(type) ?? []), option]);
  }
  return new Map([...byType].map(([type, options]) => [type, options.length === 1 && options[0] !== undefined ? options[0] : z.union(options)]));
})();
const ReasoningSchema = ResponsesRequestBodySchema.shape.reasoning;

/**
 * Builds the body text; throws a `LocalError` (`INVALID_ARGUMENT`) naming what does not match the
 * schema, as `ResponsesRequestBodySchema` reports it.
 */
export function requestBodyJson(parts: RequestBodyParts): string {
  if (typeof parts.model !== 'string' || typeof parts.parallelToolCalls !== 'boolean' || !(parts.promptCacheKey === undefined || typeof parts.promptCacheKey === 'string')) {
    throw invalid(parts);
  }
  const input: string[] = [];
  for (const item of parts.input) {
    const json = itemJson.get(item) ?? serializeItem(item);
    if (json === undefined) throw invalid(parts);
    input.push(json);
  }
  let tools = toolsJson.get(parts.tools);
  if (tools === undefined) {
    const parsed = ToolSpecsSchema.safeParse(parts.tools);
    if (!parsed.success) throw invalid(parts);
    tools = JSON.stringify(parsed.data);
    toolsJson.set(parts.tools, tools);
  }
  // Keys in the schema's order, as parsing through it would emit them.
  // No tool choice without tools: some Responses-compatible servers refuse it.
  const toolChoice = parts.tools.length === 0 ? '' : ',"tool_choice":"auto"';
  let json = `{"model":${JSON.stringify(parts.model)},"input":[${input.join(',')}],"tools":${tools}${toolChoice},"parallel_tool_calls":${parts.parallelToolCalls ? 'true' : 'false'}`;
  if (parts.reasoning !== undefined) {
    const reasoning = ReasoningSchema.safeParse(definedOnly(parts.reasoning));
    if (!reasoning.success) throw invalid(parts);
    json += `,"reasoning":${JSON.stringify(reasoning.data)}`;
  }
  json += ',"store":false,"stream":true';
  if (parts.reasoning !== undefined) json += ',"include":["reasoning.encrypted_content"]';
  if (parts.promptCacheKey !== undefined) json += `,"prompt_cache_key":${JSON.stringify(parts.promptCacheKey)}`;
  return `${json}}`;
}

/**
 * The body as an object, exactly as {@link requestBodyJson} serializes it (for tests and for the
 * error message of an invalid request).
 */
export function requestBodyCandidate(parts: RequestBodyParts): Record<string, unknown> {
  return {
    model: parts.model,
    input: parts.input,
    tools: parts.tools,
    ...(parts.tools.length === 0 ? {} : { tool_choice: 'auto' }),
    parallel_tool_calls: parts.parallelToolCalls,
    store: false,
    stream: true,
    ...(parts.reasoning === undefined ? {} : { reasoning: definedOnly(parts.reasoning), include: ['reasoning.encrypted_content'] }),
    ...(parts.promptCacheKey === undefined ? {} : { prompt_cache_key: parts.promptCacheKey }),
  };
}

/**
 * The item's JSON as requests send it (validated by {@link ResponseInputItemSchema}, serialized
 * once per item object and kept for every later request); undefined when the schema refuses it.
 * Whoever persists the item can write this text rather than serialize the item again.
 */
export function requestItemJson(item: ResponseInputItem): string | undefined {
  return itemJson.get(item) ?? serializeItem(item);
}

function serializeItem(item: ResponseInputItem): string | undefined {
  // An item without a known tag gets the whole union, which refuses it.
  const tag: unknown = typeof item === 'object' && item !== null && 'type' in item ? item.type : undefined;
  const schema = (typeof tag === 'string' ? INPUT_ITEM_SCHEMAS.get(tag) : undefined) ?? ResponseInputItemSchema;
  const parsed = schema.safeParse(item);
  if (!parsed.success) return undefined;
  const json = JSON.stringify(parsed.data);
  itemJson.set(item, json);
  return json;
}

/** The error of an invalid request, worded by the whole body's schema so it names the path. */
function invalid(parts: RequestBodyParts): LocalError {
  const parsed = ResponsesRequestBodySchema.safeParse(requestBodyCandidate(parts));
  const detail = parsed.success ? 'the request does not match its schema' : z.prettifyError(parsed.error);
  return new LocalError(LocalErrorCode.InvalidArgument, `invalid model request: ${detail}`);
}

function definedOnly(reasoning: { effort?: string; summary?: string }): { effort?: string; summary?: string } {
  return {
    ...(reasoning.effort === undefined ? {} : { effort: reasoning.effort }),
    ...(reasoning.summary === undefined ? {} : { summary: reasoning.summary }),
  };
}
