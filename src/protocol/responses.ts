import { z } from 'zod';

/**
 * The subset of the OpenAI Responses API we send and receive (the request envelope Codex sends,
 * see `shared/protocol/model-tools.md`). Schemas only, no I/O.
 *
 * Lenient in, exact out: what we send is built by parsing through plain `z.object`s (unknown keys
 * are dropped); what we receive is parsed with `z.looseObject`s (unknown fields are kept) and item
 * or part types we do not know are kept, tagged `{ type: 'unknown' }`, instead of being rejected.
 */

// ---------------------------------------------------------------------------------------------
// Content parts

/** Text we send in a user or developer message, or in a tool output. */
export const InputTextPartSchema = z.object({ type: z.literal('input_text'), text: z.string() });
/** A text part we send. */
export type InputTextPart = z.infer<typeof InputTextPartSchema>;

/** An image we send, as a URL or a `data:` URL. */
export const InputImagePartSchema = z.object({
  type: z.literal('input_image'),
  image_url: z.string(),
  /** @default the API's choice ('auto') */
  detail: z.enum(['low', 'high', 'auto']).optional(),
});
/** An image part we send. */
export type InputImagePart = z.infer<typeof InputImagePartSchema>;

/** Assistant text we send back as history. */
export const OutputTextInputPartSchema = z.object({ type: z.literal('output_text'), text: z.string() });
/** An assistant text part we send back. */
export type OutputTextInputPart = z.infer<typeof OutputTextInputPartSchema>;

/** A reasoning summary part, as received and as sent back. */
export const SummaryTextPartSchema = z.object({ type: z.literal('summary_text'), text: z.string() });
/** A reasoning summary part. */
export type SummaryTextPart = z.infer<typeof SummaryTextPartSchema>;

/** A raw reasoning text part (some models return them), as received and as sent back. */
export const ReasoningTextPartSchema = z.object({ type: z.literal('reasoning_text'), text: z.string() });
/** A raw reasoning text part. */
export type ReasoningTextPart = z.infer<typeof ReasoningTextPartSchema>;

// ---------------------------------------------------------------------------------------------
// Input items (what we send)

/** A user or developer message; the base instructions are the first developer message. */
export const UserMessageInputItemSchema = z.object({
  type: z.literal('message'),
  role: z.enum(['user', 'developer']),
  content: z.array(z.discriminatedUnion('type', [InputTextPartSchema, InputImagePartSchema])),
});
/** A user or developer message we send. */
export type UserMessageInputItem = z.infer<typeof UserMessageInputItemSchema>;

/** An earlier assistant message, sent back as history. */
export const AssistantMessageInputItemSchema = z.object({
  type: z.literal('message'),
  role: z.literal('assistant'),
  content: z.array(OutputTextInputPartSchema),
});
/** An assistant message we send back. */
export type AssistantMessageInputItem = z.infer<typeof AssistantMessageInputItemSchema>;

/** A function tool call the model made, sent back as history. */
export const FunctionCallInputItemSchema = z.object({
  type: z.literal('function_call'),
  /** The item id the API gave it (`fc_…`), when known. */
  id: z.string().optional(),
  call_id: z.string(),
  name: z.string(),
  /** JSON text of the arguments, exactly as the model produced it. */
  arguments: z.string(),
});
/** A function call we send back. */
export type FunctionCallInputItem = z.infer<typeof FunctionCallInputItemSchema>;

/** The result of a function tool call: text, or content parts (text and images). */
export const FunctionCallOutputInputItemSchema = z.object({
  type: z.literal('function_call_output'),
  call_id: z.string(),
  output: z.union([z.string(), z.array(z.discriminatedUnion('type', [InputTextPartSchema, InputImagePartSchema]))]),
});
/** A function tool result we send. */
export type FunctionCallOutputInputItem = z.infer<typeof FunctionCallOutputInputItemSchema>;

/** A custom (freeform) tool call the model made, sent back as history. */
export const CustomToolCallInputItemSchema = z.object({
  type: z.literal('custom_tool_call'),
  /** The item id the API gave it (`ctc_…`), when known. */
  id: z.string().optional(),
  call_id: z.string(),
  name: z.string(),
  /** The raw tool input, e.g. a patch. */
  input: z.string(),
});
/** A custom tool call we send back. */
export type CustomToolCallInputItem = z.infer<typeof CustomToolCallInputItemSchema>;

/** The result of a custom tool call. */
export const CustomToolCallOutputInputItemSchema = z.object({
  type: z.literal('custom_tool_call_output'),
  call_id: z.string(),
  output: z.string(),
});
/** A custom tool result we send. */
export type CustomToolCallOutputInputItem = z.infer<typeof CustomToolCallOutputInputItemSchema>;

/** A reasoning item, passed back as received (with its encrypted content when `store` is false). */
export const ReasoningInputItemSchema = z.object({
  type: z.literal('reasoning'),
  id: z.string(),
  summary: z.array(SummaryTextPartSchema),
  content: z.array(ReasoningTextPartSchema).nullish(),
  encrypted_content: z.string().nullish(),
});
/** A reasoning item we send back. */
export type ReasoningInputItem = z.infer<typeof ReasoningInputItemSchema>;

/**
 * What a hosted web search did (`search` with its query, `open_page`, `find_in_page`): kept as the
 * provider sent it, since it is only ever passed back.
 */
export const WebSearchActionSchema = z.looseObject({ type: z.string() });

/** A hosted web search the model ran, passed back as received so the model knows it searched. */
export const WebSearchCallInputItemSchema = z.object({
  type: z.literal('web_search_call'),
  id: z.string(),
  status: z.string(),
  action: WebSearchActionSchema.optional(),
});
/** A web search call we send back. */
export type WebSearchCallInputItem = z.infer<typeof WebSearchCallInputItemSchema>;

/** Any item of a request's `input`. */
export const ResponseInputItemSchema = z.union([
  UserMessageInputItemSchema,
  AssistantMessageInputItemSchema,
  FunctionCallInputItemSchema,
  FunctionCallOutputInputItemSchema,
  CustomToolCallInputItemSchema,
  CustomToolCallOutputInputItemSchema,
  ReasoningInputItemSchema,
  WebSearchCallInputItemSchema,
]);
/** Any input item we send. */
export type ResponseInputItem = z.infer<typeof ResponseInputItemSchema>;

// ---------------------------------------------------------------------------------------------
// Tool specs (what we offer)

/** A JSON-schema function tool. `strict` is false, as Codex sends it. */
export const FunctionToolSpecSchema = z.object({
  type: z.literal('function'),
  name: z.string(),
  description: z.string(),
  strict: z.literal(false),
  /** The JSON Schema of the arguments object. */
  parameters: z.record(z.string(), z.unknown()),
});
/** A function tool we offer. */
export type FunctionToolSpec = z.infer<typeof FunctionToolSpecSchema>;

/** A custom (freeform) tool whose input is constrained by a Lark grammar, e.g. `apply_patch`. */
export const CustomToolSpecSchema = z.object({
  type: z.literal('custom'),
  name: z.string(),
  description: z.string(),
  format: z.object({ type: z.literal('grammar'), syntax: z.literal('lark'), definition: z.string() }),
});
/** A custom tool we offer. */
export type CustomToolSpec = z.infer<typeof CustomToolSpecSchema>;

/**
 * The provider's hosted web search. `external_web_access` false asks for cached results only
 * (no live fetches), as Codex's `web_search = "cached"` does.
 */
export const WebSearchToolSpecSchema = z.object({
  type: z.literal('web_search'),
  external_web_access: z.boolean(),
  search_content_types: z.array(z.enum(['text', 'image'])).optional(),
});
/** The hosted web search tool we offer. */
export type WebSearchToolSpec = z.infer<typeof WebSearchToolSpecSchema>;

/** Any tool we offer. */
export const ToolSpecSchema = z.discriminatedUnion('type', [FunctionToolSpecSchema, CustomToolSpecSchema, WebSearchToolSpecSchema]);
/** Any tool we offer. */
export type ToolSpec = z.infer<typeof ToolSpecSchema>;

// ---------------------------------------------------------------------------------------------
// Request body

/** The body of `POST /responses` as we send it (streaming, stateless). */
export const ResponsesRequestBodySchema = z.object({
  model: z.string(),
  input: z.array(ResponseInputItemSchema),
  tools: z.array(ToolSpecSchema),
  /** Sent with the tools; a request without tools (the summarizing one of a compaction) has none. */
  tool_choice: z.literal('auto').optional(),
  parallel_tool_calls: z.boolean(),
  reasoning: z.object({ effort: z.string().optional(), summary: z.string().optional() }).optional(),
  store: z.literal(false),
  stream: z.literal(true),
  /** `['reasoning.encrypted_content']` when reasoning is requested, so it can be passed back. */
  include: z.array(z.string()).optional(),
  prompt_cache_key: z.string().optional(),
});
/** The request body we send. */
export type ResponsesRequestBody = z.infer<typeof ResponsesRequestBodySchema>;

// ---------------------------------------------------------------------------------------------
// Output items (what we receive)

/** Item types {@link ResponseOutputItemSchema} knows; any other is kept as an unknown item. */
export const KNOWN_OUTPUT_ITEM_TYPES: readonly string[] = ['message', 'function_call', 'custom_tool_call', 'reasoning', 'web_search_call'];

/** A content part type we do not know, kept as received. */
export const UnknownContentPartSchema = z
  .looseObject({ type: z.string().refine((type) => type !== 'output_text' && type !== 'refusal') })
  .transform((part) => ({ type: 'unknown' as const, part }));

/** A content part of an assistant message: text, a refusal, or kept as unknown. */
export const OutputContentPartSchema = z.union([
  z.looseObject({ type: z.literal('output_text'), text: z.string() }),
  z.looseObject({ type: z.literal('refusal'), refusal: z.string() }),
  UnknownContentPartSchema,
]);
/** A content part of an assistant message. */
export type OutputContentPart = z.infer<typeof OutputContentPartSchema>;

/** An assistant message. */
export const MessageOutputItemSchema = z.looseObject({
  type: z.literal('message'),
  id: z.string().optional(),
  role: z.string(),
  content: z.array(OutputContentPartSchema),
});
/** An assistant message we received. */
export type MessageOutputItem = z.infer<typeof MessageOutputItemSchema>;

/** A function tool call. */
export const FunctionCallOutputItemSchema = z.looseObject({
  type: z.literal('function_call'),
  id: z.string().optional(),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string(),
});
/** A function tool call we received. */
export type FunctionCallOutputItem = z.infer<typeof FunctionCallOutputItemSchema>;

/** A custom (freeform) tool call. */
export const CustomToolCallOutputItemSchema = z.looseObject({
  type: z.literal('custom_tool_call'),
  id: z.string().optional(),
  call_id: z.string(),
  name: z.string(),
  input: z.string(),
});
/** A custom tool call we received. */
export type CustomToolCallOutputItem = z.infer<typeof CustomToolCallOutputItemSchema>;

/** A reasoning item; assignable to {@link ReasoningInputItem} so it can be passed back. */
export const ReasoningOutputItemSchema = z.looseObject({
  type: z.literal('reasoning'),
  id: z.string(),
  summary: z.array(z.looseObject({ type: z.literal('summary_text'), text: z.string() })),
  content: z.array(z.looseObject({ type: z.literal('reasoning_text'), text: z.string() })).nullish(),
  encrypted_content: z.string().nullish(),
});
/** A reasoning item we received. */
export type ReasoningOutputItem = z.infer<typeof ReasoningOutputItemSchema>;

/**
 * An output item of a type we do not know (web search calls, …), kept as received. It is tagged
 * so that a `switch` on `type` narrows the known items.
 */
export const UnknownOutputItemSchema = z
  .looseObject({ type: z.string().refine((type) => !KNOWN_OUTPUT_ITEM_TYPES.includes(type)) })
  .transform((item) => ({ type: 'unknown' as const, item }));
/** A hosted web search the provider ran for the model. */
export const WebSearchCallOutputItemSchema = z.looseObject({
  type: z.literal('web_search_call'),
  id: z.string(),
  status: z.string(),
  action: WebSearchActionSchema.optional(),
});
/** A web search call we received. */
export type WebSearchCallOutputItem = z.infer<typeof WebSearchCallOutputItemSchema>;

/** An output item of a type we do not know. */
export type UnknownOutputItem = z.infer<typeof UnknownOutputItemSchema>;

/** Any output item: a known one (unknown fields kept) or an unknown one. */
export const ResponseOutputItemSchema = z.union([
  z.discriminatedUnion('type', [MessageOutputItemSchema, FunctionCallOutputItemSchema, CustomToolCallOutputItemSchema, ReasoningOutputItemSchema, WebSearchCallOutputItemSchema]),
  UnknownOutputItemSchema,
]);
/** Any output item we received. */
export type ResponseOutputItem = z.infer<typeof ResponseOutputItemSchema>;

/** The concatenated `output_text` parts of an assistant message. */
export function messageText(item: MessageOutputItem): string {
  let text = '';
  for (const part of item.content) if (part.type === 'output_text') text += part.text;
  return text;
}

// ---------------------------------------------------------------------------------------------
// Stream events (the ones we act on; every other event type is ignored)

/** Token usage of a completed response. */
export const ResponseUsageSchema = z.looseObject({
  input_tokens: z.number(),
  output_tokens: z.number(),
  total_tokens: z.number(),
});
/** Token usage as received. */
export type ResponseUsage = z.infer<typeof ResponseUsageSchema>;

/** The error of a failed response or an `error` event. */
export const ResponseErrorSchema = z.looseObject({
  code: z.string().nullish(),
  message: z.string().nullish(),
});

/** `response.created`: carries the response id. */
export const ResponseCreatedEventSchema = z.looseObject({
  type: z.literal('response.created'),
  response: z.looseObject({ id: z.string() }),
});

/** `response.output_text.delta`: a piece of assistant text. */
export const OutputTextDeltaEventSchema = z.looseObject({
  type: z.literal('response.output_text.delta'),
  delta: z.string(),
});

/** `response.output_item.done`: one complete output item. */
export const OutputItemDoneEventSchema = z.looseObject({
  type: z.literal('response.output_item.done'),
  output_index: z.number().int().nonnegative().optional(),
  item: ResponseOutputItemSchema,
});

/** `response.completed`: the end of a successful response. */
export const ResponseCompletedEventSchema = z.looseObject({
  type: z.literal('response.completed'),
  response: z.looseObject({
    id: z.string(),
    output: z.array(ResponseOutputItemSchema).nullish(),
    usage: ResponseUsageSchema.nullish(),
  }),
});

/** `response.failed`: the model gave up; `response.error` says why. */
export const ResponseFailedEventSchema = z.looseObject({
  type: z.literal('response.failed'),
  response: z.looseObject({ id: z.string().optional(), error: ResponseErrorSchema.nullish() }),
});

/** `response.incomplete`: the response stopped early (e.g. `max_output_tokens`). */
export const ResponseIncompleteEventSchema = z.looseObject({
  type: z.literal('response.incomplete'),
  response: z.looseObject({
    id: z.string().optional(),
    incomplete_details: z.looseObject({ reason: z.string().nullish() }).nullish(),
  }),
});

/** `error`: the stream failed. */
export const ErrorEventSchema = z.looseObject({
  type: z.literal('error'),
  code: z.string().nullish(),
  message: z.string().nullish(),
});

/** The stream events we act on. */
export const ResponseStreamEventSchema = z.discriminatedUnion('type', [
  ResponseCreatedEventSchema,
  OutputTextDeltaEventSchema,
  OutputItemDoneEventSchema,
  ResponseCompletedEventSchema,
  ResponseFailedEventSchema,
  ResponseIncompleteEventSchema,
  ErrorEventSchema,
]);
/** A stream event we act on. */
export type ResponseStreamEvent = z.infer<typeof ResponseStreamEventSchema>;

/** Event types {@link ResponseStreamEventSchema} parses; others are ignored by the client. */
export const HANDLED_STREAM_EVENT_TYPES: readonly string[] = [
  'response.created',
  'response.output_text.delta',
  'response.output_item.done',
  'response.completed',
  'response.failed',
  'response.incomplete',
  'error',
];
