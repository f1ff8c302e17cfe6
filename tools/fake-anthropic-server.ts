// A scripted stand-in for the Anthropic Messages API, for tests that drive the real Claude Code
// (its model is the one peer faked, DESIGN.md principle 9). It speaks the real wire format:
// `POST /v1/messages` answered as Server-Sent Events when `stream: true` (`message_start`,
// `content_block_start` / `content_block_delta` / `content_block_stop` per block, `message_delta`
// with the stop reason and usage, `message_stop`) and as one JSON message otherwise, plus
// `POST /v1/messages/count_tokens`. Anything else is a 404 and an entry in `errors`, so a client
// asking for something new fails the test loudly instead of being half-answered.

import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { createIdSource, errorMessage, isRecord, sendJson, splitText, startRecordingServer, writeChunk, type IdSource, type RecordedRequest } from './fake-http.js';

export { DEFAULT_WAIT_FOR_REQUESTS_TIMEOUT_MS, type RecordedRequest } from './fake-http.js';

// ---------------------------------------------------------------------------------------------
// Script.

const fakeAnthropicStepSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('text'),
    /** The assistant's text, streamed as `text_delta`s; the message ends with `end_turn`. */
    text: z.string(),
  }),
  z.strictObject({
    kind: z.literal('tool_use'),
    /** The tool's name as offered in the request's `tools` (Claude Code: `mcp__<server>__<tool>` for MCP tools). */
    name: z.string().min(1),
    /** The tool input, streamed as `input_json_delta`s; the message ends with `tool_use`. */
    input: z.record(z.string(), z.unknown()),
    /** @default a generated `toolu_<n>`, unique per server */
    id: z.string().min(1).optional(),
    /** A text block sent before the `tool_use` block. @default none */
    text: z.string().optional(),
  }),
  z.strictObject({
    kind: z.literal('http-error'),
    /** HTTP status, e.g. 429 or 529. */
    status: z.number().int().min(400).max(599),
    /** Response body: a string is sent as is, anything else as JSON. @default an API-style `{type: "error", error}` */
    body: z.unknown().optional(),
    /** Extra response headers, e.g. `{"retry-after": "0"}`. */
    headers: z.record(z.string(), z.string()).optional(),
  }),
]);

/**
 * What the fake model does for one `POST /v1/messages`:
 * - `text`: an assistant message with one text block, `stop_reason: "end_turn"`;
 * - `tool_use`: an assistant message calling one tool (optionally after a text block), `stop_reason: "tool_use"`;
 * - `http-error`: a JSON error like the real API's `{"type":"error","error":{type,message}}`.
 */
export type FakeAnthropicStep = z.infer<typeof fakeAnthropicStepSchema>;

/** Parses a JSON script (an array of steps); throws a readable error if invalid. */
export function parseFakeAnthropicScript(json: unknown): FakeAnthropicStep[] {
  const result = z.array(fakeAnthropicStepSchema).safeParse(json);
  if (!result.success) throw new Error(`invalid fake Anthropic script:\n${z.prettifyError(result.error)}`);
  return result.data;
}

// ---------------------------------------------------------------------------------------------
// Server.

/** Options of {@link startFakeAnthropicServer}: a `script` or a `respond` function. */
export type FakeAnthropicOptions = {
  /** Receives one summary line per request and each recorded error. @default no logging */
  log?: (line: string) => void;
} & (
  | {
      /** Each `POST /v1/messages` takes the next step; once exhausted, "script exhausted" is answered and an error recorded. */
      script: FakeAnthropicStep[];
      respond?: undefined;
    }
  | {
      /** Chooses the step for each `POST /v1/messages`; `index` counts those requests from 0. */
      respond: (request: RecordedRequest, index: number) => FakeAnthropicStep;
      script?: undefined;
    }
);

/** A running fake Messages API on 127.0.0.1. */
export interface FakeAnthropicServer {
  /** The base URL without `/v1` (what `ANTHROPIC_BASE_URL` takes), e.g. `http://127.0.0.1:4321`. */
  readonly url: string;
  /** Every request received (any path), in order of arrival of its complete body. */
  readonly requests: RecordedRequest[];
  /** The `POST /v1/messages` requests only, in order. */
  readonly messages: RecordedRequest[];
  /** Problems the server hit (exhausted script, unknown routes, bad bodies…); tests assert it is empty. */
  readonly errors: string[];
  /** Resolves once `n` requests (any path) were recorded; rejects after `timeoutMs` or when the server closes. */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  /** Stops listening and destroys open sockets. Idempotent. */
  close(): Promise<void>;
}

/** Starts a fake Messages API server on 127.0.0.1, any free port. */
export async function startFakeAnthropicServer(options: FakeAnthropicOptions): Promise<FakeAnthropicServer> {
  const log = options.log;
  const ids = createIdSource();
  const messages: RecordedRequest[] = [];

  const chooseStep = (request: RecordedRequest, index: number): FakeAnthropicStep => {
    if (options.respond !== undefined) {
      try {
        return options.respond(request, index);
      } catch (error) {
        core.recordError(`respond() threw for request #${index}: ${errorMessage(error)}`);
        return { kind: 'http-error', status: 500 };
      }
    }
    const step = options.script[index];
    if (step !== undefined) return step;
    core.recordError(`script exhausted: request #${index} has no step (script has ${options.script.length})`);
    return { kind: 'text', text: 'script exhausted' };
  };

  const route = async (recorded: RecordedRequest, res: ServerResponse): Promise<void> => {
    const { method, url, path } = recorded;
    if (method === 'POST' && path === '/v1/messages') {
      const index = messages.length;
      messages.push(recorded);
      const parsed = messagesRequestSchema.safeParse(recorded.body);
      if (!parsed.success) {
        const message = `request #${index} is not a Messages request: ${z.prettifyError(parsed.error)}`;
        core.recordError(message);
        sendJson(res, 400, errorBody(400, message));
        return;
      }
      const step = chooseStep(recorded, index);
      log?.(`${method} ${url} #${index} (${parsed.data.model}, stream ${parsed.data.stream === true}) -> ${describeStep(step)}`);
      await answer(res, step, parsed.data, ids);
      return;
    }
    if (method === 'POST' && path === '/v1/messages/count_tokens') {
      log?.(`${method} ${url} -> token estimate`);
      sendJson(res, 200, { input_tokens: estimateTokens(recorded.rawBody) });
      return;
    }
    core.recordError(`unexpected request ${method} ${url}`);
    log?.(`${method} ${url} -> 404`);
    sendJson(res, 404, errorBody(404, `No route for ${method} ${path}`));
  };

  const core = await startRecordingServer({ ...(log === undefined ? {} : { log }), errorBody, route });
  return {
    url: core.origin,
    requests: core.requests,
    messages,
    errors: core.errors,
    waitForRequests: (n, timeoutMs) => core.waitForRequests(n, timeoutMs),
    close: () => core.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Answers.

/** The request fields the answer depends on; everything else is accepted and ignored. */
const messagesRequestSchema = z.looseObject({
  model: z.string(),
  messages: z.array(z.unknown()),
  max_tokens: z.number().int().positive(),
  stream: z.boolean().optional(),
});
type MessagesRequest = z.infer<typeof messagesRequestSchema>;

/** A content block of an assistant message, as the API returns it. */
type ContentBlock = { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

async function answer(res: ServerResponse, step: FakeAnthropicStep, request: MessagesRequest, ids: IdSource): Promise<void> {
  if (step.kind === 'http-error') {
    const payload = step.body === undefined ? errorBody(step.status) : step.body;
    if (typeof payload === 'string') {
      res.writeHead(step.status, { 'content-type': 'text/plain; charset=utf-8', ...step.headers });
      res.end(payload);
    } else {
      sendJson(res, step.status, payload, { ...step.headers });
    }
    return;
  }
  const content: ContentBlock[] = [];
  if (step.kind === 'text') content.push({ type: 'text', text: step.text });
  else {
    if (step.text !== undefined) content.push({ type: 'text', text: step.text });
    content.push({ type: 'tool_use', id: step.id ?? ids('toolu'), name: step.name, input: step.input });
  }
  const stopReason = step.kind === 'tool_use' ? 'tool_use' : 'end_turn';
  const usage = { input_tokens: estimateTokens(JSON.stringify(request.messages)), output_tokens: estimateTokens(JSON.stringify(content)) };
  const message = { id: ids('msg'), type: 'message', role: 'assistant', model: request.model, content, stop_reason: stopReason, stop_sequence: null, usage };
  if (request.stream !== true) {
    sendJson(res, 200, message, { 'request-id': ids('req') });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'request-id': ids('req') });
  const events: Record<string, unknown>[] = [
    { type: 'message_start', message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } },
    { type: 'ping' },
  ];
  content.forEach((block, index) => events.push(...blockEvents(block, index)));
  events.push({ type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }, { type: 'message_stop' });
  for (const event of events) {
    if (!(await writeChunk(res, `event: ${String(event['type'])}\ndata: ${JSON.stringify(event)}\n\n`))) return;
  }
  res.end();
}

/** A block's start, its deltas (text in pieces, tool input as partial JSON in pieces), its stop. */
function blockEvents(block: ContentBlock, index: number): Record<string, unknown>[] {
  const deltas =
    block.type === 'text'
      ? splitText(block.text).map((text) => ({ type: 'text_delta', text }))
      : splitText(JSON.stringify(block.input)).map((partial_json) => ({ type: 'input_json_delta', partial_json }));
  return [
    { type: 'content_block_start', index, content_block: block.type === 'text' ? { type: 'text', text: '' } : { ...block, input: {} } },
    ...deltas.map((delta) => ({ type: 'content_block_delta', index, delta })),
    { type: 'content_block_stop', index },
  ];
}

/** A rough token count (4 characters a token), never 0. */
function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/** An error body shaped like the real API's. */
function errorBody(status: number, message?: string): { type: 'error'; error: { type: string; message: string } } {
  const type =
    status === 401
      ? 'authentication_error'
      : status === 404
        ? 'not_found_error'
        : status === 429
          ? 'rate_limit_error'
          : status === 529
            ? 'overloaded_error'
            : status >= 500
              ? 'api_error'
              : 'invalid_request_error';
  return { type: 'error', error: { type, message: message ?? `fake ${type}` } };
}

function describeStep(step: FakeAnthropicStep): string {
  switch (step.kind) {
    case 'text':
      return 'text';
    case 'tool_use':
      return `tool_use ${step.name}`;
    case 'http-error':
      return `http-error ${step.status}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers for tests: what the model was sent.

/** A `tool_result` block the model was sent. */
export interface FakeToolResult {
  /** The `tool_use_id` it answers. */
  toolUseId: string;
  /** The text of its content (text blocks joined by newlines; a string content as is). */
  text: string;
  /** Its `is_error` flag. @default false */
  isError: boolean;
}

/** The `tool_result` blocks of every user message of a recorded Messages request, in order. */
export function toolResults(request: RecordedRequest): FakeToolResult[] {
  const results: FakeToolResult[] = [];
  const messages = isRecord(request.body) ? request.body['messages'] : undefined;
  if (!Array.isArray(messages)) return results;
  for (const message of messages) {
    if (!isRecord(message) || message['role'] !== 'user' || !Array.isArray(message['content'])) continue;
    for (const block of message['content']) {
      if (!isRecord(block) || block['type'] !== 'tool_result') continue;
      results.push({ toolUseId: String(block['tool_use_id']), text: contentText(block['content']), isError: block['is_error'] === true });
    }
  }
  return results;
}

/** Names of the `tools` offered in a recorded Messages request. */
export function offeredTools(request: RecordedRequest): string[] {
  const tools = isRecord(request.body) ? request.body['tools'] : undefined;
  if (!Array.isArray(tools)) return [];
  return tools.flatMap((tool) => (isRecord(tool) && typeof tool['name'] === 'string' ? [tool['name']] : []));
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.flatMap((block) => (isRecord(block) && block['type'] === 'text' && typeof block['text'] === 'string' ? [block['text']] : [])).join('\n');
}
