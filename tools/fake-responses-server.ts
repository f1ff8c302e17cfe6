// A scripted stand-in for the OpenAI Responses API: the one peer every test fakes (DESIGN.md,
// principle 9). It speaks the real streaming wire format (Server-Sent Events, one JSON object per
// event with `type` and `sequence_number`) so that both the `openai` SDK and the real Codex CLI
// (custom provider, `wire_api = "responses"`) accept it unchanged.
//
// Run directly it is a small CLI: `npx tsx tools/fake-responses-server.ts --script s.json
// [--port N] [--host H] [--tls-key k.pem --tls-cert c.pem] [--url-host NAME]` prints the base URL
// as the first stdout line and logs requests to stderr.

import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { createIdSource, errorMessage, isRecord, isRunDirectly, sendJson, splitText, startRecordingServer, writeChunk, type IdSource, type RecordedRequest } from './fake-http.js';

export { DEFAULT_WAIT_FOR_REQUESTS_TIMEOUT_MS, MAX_REQUEST_BODY_BYTES, type RecordedRequest } from './fake-http.js';

// ---------------------------------------------------------------------------------------------
// Script schema. Steps that can be written as JSON are zod schemas (the CLI parses files with
// them); `hold` carries a Promise, so it is a plain interface on top.

const fakeMessageItemSchema = z.strictObject({
  type: z.literal('message'),
  /** The assistant text, streamed as `response.output_text.delta` events. */
  text: z.string(),
});

const fakeFunctionCallItemSchema = z.strictObject({
  type: z.literal('function_call'),
  /** The function tool's name. */
  name: z.string(),
  /** The namespace of a tool offered inside a `namespace` tool (Codex puts MCP tools in `mcp__<server>`). */
  namespace: z.string().optional(),
  /** JSON text of the arguments; an object is JSON-stringified. */
  arguments: z.union([z.string(), z.record(z.string(), z.unknown())]),
  /** @default a generated `call_<n>`, unique per server */
  callId: z.string().optional(),
});

const fakeCustomToolCallItemSchema = z.strictObject({
  type: z.literal('custom_tool_call'),
  /** The custom (freeform) tool's name, e.g. `apply_patch`. */
  name: z.string(),
  /** The raw tool input, e.g. a patch. */
  input: z.string(),
  /** @default a generated `call_<n>`, unique per server */
  callId: z.string().optional(),
});

const fakeReasoningItemSchema = z.strictObject({
  type: z.literal('reasoning'),
  /** One summary text; no summary part when absent. */
  summary: z.string().optional(),
});

const fakeWebSearchCallItemSchema = z.strictObject({
  type: z.literal('web_search_call'),
  /** The query of the `search` action the provider ran. */
  query: z.string(),
});

const fakeOutputItemSchema = z.discriminatedUnion('type', [
  fakeMessageItemSchema,
  fakeFunctionCallItemSchema,
  fakeCustomToolCallItemSchema,
  fakeReasoningItemSchema,
  fakeWebSearchCallItemSchema,
]);

/** One output item of a scripted model response. */
export type FakeOutputItem = z.infer<typeof fakeOutputItemSchema>;

const fakeScriptStepSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('output'),
    /** The items of the response, streamed in order, then `response.completed`. */
    items: z.array(fakeOutputItemSchema),
  }),
  z.strictObject({
    kind: z.literal('http-error'),
    /** HTTP status, e.g. 429 or 500. */
    status: z.number().int().min(400).max(599),
    /** Response body: a string is sent as is, anything else as JSON. @default an API-style `{error}` */
    body: z.unknown().optional(),
    /** Extra response headers, e.g. `{"retry-after-ms": "10"}`. */
    headers: z.record(z.string(), z.string()).optional(),
  }),
  z.strictObject({
    kind: z.literal('drop'),
    /** Items whose events are sent before the drop; missing ones are filler messages. */
    items: z.array(fakeOutputItemSchema).optional(),
    /** How many items are streamed completely before the socket is destroyed. @default 0 */
    afterItems: z.number().int().nonnegative().optional(),
  }),
  z.strictObject({
    kind: z.literal('failed'),
    /** `response.error.message` of the `response.failed` event. */
    message: z.string(),
  }),
]);

/** A step that can be written as JSON (every step but `hold`). */
export type FakeScriptStep = z.infer<typeof fakeScriptStepSchema>;

/** Waits for `release` before answering with `then`, so tests control timing without sleeps. */
export interface FakeHoldStep {
  kind: 'hold';
  /** The answer is held until this settles; a rejection becomes a 500 and an entry in `errors`. */
  release: Promise<void>;
  /** The step answered once released. */
  then: FakeStep;
}

/**
 * What the fake model does for one `POST /v1/responses`:
 * - `output`: a 200 SSE stream of the items, ending with `response.completed`;
 * - `http-error`: a non-stream JSON error like the real API's `{"error":{message,type,code}}`;
 * - `drop`: starts the stream, sends the first `afterItems` items, destroys the socket;
 * - `failed`: a stream ending with `response.failed`;
 * - `hold`: waits for a promise, then answers with another step.
 */
export type FakeStep = FakeScriptStep | FakeHoldStep;

const fakeScriptSchema = z.array(fakeScriptStepSchema);

/** Parses a JSON script (an array of steps without `hold`); throws a readable error if invalid. */
export function parseFakeScript(json: unknown): FakeScriptStep[] {
  const result = fakeScriptSchema.safeParse(json);
  if (!result.success) throw new Error(`invalid fake responses script:\n${z.prettifyError(result.error)}`);
  return result.data;
}

// ---------------------------------------------------------------------------------------------
// Public types.

/** Options of {@link startFakeResponsesServer}: a `script` or a `respond` function. */
export type FakeResponsesOptions = FakeResponsesCommonOptions &
  (
    | {
        /** Each `POST /v1/responses` takes the next step; once exhausted, "script exhausted" is answered and an error recorded. */
        script: FakeStep[];
        respond?: undefined;
      }
    | {
        /** Chooses the step for each `POST /v1/responses`; `index` counts those requests from 0. */
        respond: (request: RecordedRequest, index: number) => FakeStep;
        script?: undefined;
      }
  );

/** Options shared by both modes of {@link FakeResponsesOptions}. */
export interface FakeResponsesCommonOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (any free port) */
  port?: number;
  /** Serves HTTPS with this key and certificate (PEM) instead of plain HTTP. @default plain HTTP */
  tls?: { key: string; cert: string };
  /** The host named in `url` (e.g. `localhost`, the name a certificate was issued to). @default the bound address */
  urlHost?: string;
  /** Receives one summary line per request and each recorded error. @default no logging */
  log?: (line: string) => void;
  /** Keeps every request in `requests` (see `RecordingServerOptions.keepRequests`). @default true */
  keepRequests?: boolean;
}

/** A running fake Responses API. */
export interface FakeResponsesServer {
  /** Base URL ending in `/v1`, e.g. `http://127.0.0.1:4321/v1`. */
  readonly url: string;
  /** Every request received (any path), in order of arrival of its complete body. */
  readonly requests: RecordedRequest[];
  /** Problems the script hit (exhausted script, bad request bodies…); tests assert it is empty. */
  readonly errors: string[];
  /** Resolves once `n` requests were recorded; rejects after `timeoutMs` or when the server closes. */
  waitForRequests(n: number, timeoutMs?: number): Promise<void>;
  /** Stops listening and destroys open sockets. Idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Server.

/** Starts a fake Responses API server on `host:port` (default 127.0.0.1, any free port). */
export async function startFakeResponsesServer(options: FakeResponsesOptions): Promise<FakeResponsesServer> {
  const log = options.log;
  const ids = createIdSource();
  let responsesCount = 0;

  const chooseStep = (request: RecordedRequest, index: number): FakeStep => {
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
    return { kind: 'output', items: [{ type: 'message', text: 'script exhausted' }] };
  };

  const route = async (recorded: RecordedRequest, res: ServerResponse): Promise<void> => {
    const { method, url, path } = recorded;
    if (method === 'POST' && path === '/v1/responses') {
      const index = responsesCount++;
      const parsed = responsesRequestSchema.safeParse(recorded.body);
      if (!parsed.success) {
        const message = `request #${index} is not a JSON Responses request: ${z.prettifyError(parsed.error)}`;
        core.recordError(message);
        sendJson(res, 400, errorBody(400, message));
        return;
      }
      const step = chooseStep(recorded, index);
      log?.(`${method} ${url} #${index} -> ${describeStep(step)}`);
      await answer(res, step, parsed.data, recorded.rawBody.length, ids, core.recordError);
      return;
    }

    if (method === 'GET' && path === '/v1/models') {
      log?.(`${method} ${url} -> 200 (empty model list)`);
      // `data` is the OpenAI list shape; `models` is the shape Codex's models endpoint expects.
      sendJson(res, 200, { object: 'list', data: [], models: [] });
      return;
    }

    log?.(`${method} ${url} -> 404`);
    sendJson(res, 404, errorBody(404, `No route for ${method} ${path}`));
  };

  const core = await startRecordingServer({
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.port === undefined ? {} : { port: options.port }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.urlHost === undefined ? {} : { urlHost: options.urlHost }),
    ...(log === undefined ? {} : { log }),
    ...(options.keepRequests === undefined ? {} : { keepRequests: options.keepRequests }),
    errorBody,
    route,
  });
  return {
    url: `${core.origin}/v1`,
    requests: core.requests,
    errors: core.errors,
    waitForRequests: (n, timeoutMs) => core.waitForRequests(n, timeoutMs),
    close: () => core.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Answers.

/** The few request fields the answer depends on; everything else is accepted and ignored. */
const responsesRequestSchema = z.looseObject({
  model: z.string().optional(),
  stream: z.boolean().nullish(),
  instructions: z.unknown().optional(),
  tools: z.array(z.unknown()).optional(),
  tool_choice: z.unknown().optional(),
  parallel_tool_calls: z.boolean().nullish(),
  previous_response_id: z.string().nullish(),
  metadata: z.unknown().optional(),
});
type ResponsesRequest = z.infer<typeof responsesRequestSchema>;

type RecordError = (message: string) => void;

/** Answers with `step`; `requestChars` (the body's length) stands in for the request's size in the usage reported. */
async function answer(res: ServerResponse, step: FakeStep, request: ResponsesRequest, requestChars: number, ids: IdSource, recordError: RecordError): Promise<void> {
  switch (step.kind) {
    case 'hold': {
      try {
        await step.release;
      } catch (error) {
        recordError(`hold released with a rejection: ${errorMessage(error)}`);
        sendJson(res, 500, errorBody(500, 'held step was rejected'));
        return;
      }
      await answer(res, step.then, request, requestChars, ids, recordError);
      return;
    }
    case 'http-error': {
      const headers = { ...step.headers };
      const payload = step.body === undefined ? errorBody(step.status) : step.body;
      if (typeof payload === 'string') {
        res.writeHead(step.status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
        res.end(payload);
      } else {
        sendJson(res, step.status, payload, headers);
      }
      return;
    }
    case 'output':
      await stream(res, request, requestChars, ids, step.items, 'completed');
      return;
    case 'failed':
      await stream(res, request, requestChars, ids, [], { failed: step.message });
      return;
    case 'drop': {
      const items = [...(step.items ?? [])];
      const afterItems = step.afterItems ?? 0;
      while (items.length < afterItems) items.push({ type: 'message', text: 'partial output' });
      await stream(res, request, requestChars, ids, items.slice(0, afterItems), 'drop');
      return;
    }
  }
}

/** How a stream ends. */
type StreamEnd = 'completed' | 'drop' | { failed: string };

/** Writes one response as SSE: created, in_progress, each item's events, then `end`. */
async function stream(res: ServerResponse, request: ResponsesRequest, requestChars: number, ids: IdSource, items: FakeOutputItem[], end: StreamEnd): Promise<void> {
  const response = baseResponse(ids('resp'), request);
  const events: Record<string, unknown>[] = [
    { type: 'response.created', response: { ...response } },
    { type: 'response.in_progress', response: { ...response } },
  ];
  const output: Record<string, unknown>[] = [];
  items.forEach((item, outputIndex) => {
    const built = itemEvents(item, outputIndex, ids);
    events.push(...built.events);
    output.push(built.done);
  });

  if (end === 'completed') {
    const outputTokens = Math.max(1, Math.ceil(JSON.stringify(output).length / 16));
    // The body as received: serializing the parsed request again cost the fake a growing share of a benchmark's CPU.
    const inputTokens = Math.max(1, Math.ceil(requestChars / 16));
    events.push({
      type: 'response.completed',
      response: {
        ...response,
        status: 'completed',
        completed_at: Math.floor(Date.now() / 1000),
        output,
        usage: {
          input_tokens: inputTokens,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: outputTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: inputTokens + outputTokens,
        },
      },
    });
  } else if (end !== 'drop') {
    events.push({
      type: 'response.failed',
      response: { ...response, status: 'failed', output, error: { code: 'server_error', message: end.failed } },
    });
  }

  if (request.stream !== true) {
    // Not asked for a stream: answer like the non-streaming API, with the final response object.
    const last = events[events.length - 1];
    if (end === 'drop' || last === undefined) {
      res.destroy();
      return;
    }
    if (end === 'completed') sendJson(res, 200, last['response']);
    else sendJson(res, 500, errorBody(500, end.failed));
    return;
  }

  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': ids('req'),
    'openai-processing-ms': '1',
  });
  // Write events one by one, as the real API does; the SDK and Codex must reassemble them.
  for (const [sequence, event] of events.entries()) {
    const { type, ...rest } = event;
    if (typeof type !== 'string') throw new Error('event without a type');
    const chunk = `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence, ...rest })}\n\n`;
    if (!(await writeChunk(res, chunk))) return;
  }
  if (end === 'drop') {
    // No `response.completed`, no terminating chunk: the client sees a truncated stream.
    res.socket?.destroy();
    res.destroy();
    return;
  }
  res.end();
}

function baseResponse(id: string, request: ResponsesRequest): Record<string, unknown> {
  return {
    id,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status: 'in_progress',
    background: false,
    error: null,
    incomplete_details: null,
    instructions: request.instructions ?? null,
    max_output_tokens: null,
    metadata: request.metadata ?? {},
    model: request.model ?? 'fake-model',
    output: [],
    parallel_tool_calls: request.parallel_tool_calls ?? true,
    previous_response_id: request.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: 1,
    text: { format: { type: 'text' } },
    tool_choice: request.tool_choice ?? 'auto',
    tools: request.tools ?? [],
    top_p: 1,
    truncation: 'disabled',
    usage: null,
  };
}

/** The events that stream one output item, and the completed item for `response.completed`. */
function itemEvents(item: FakeOutputItem, outputIndex: number, ids: IdSource): { events: Record<string, unknown>[]; done: Record<string, unknown> } {
  const at = { output_index: outputIndex };
  switch (item.type) {
    case 'message': {
      const id = ids('msg');
      const part = { type: 'output_text', text: item.text, annotations: [], logprobs: [] };
      const done = { id, type: 'message', status: 'completed', role: 'assistant', content: [part] };
      const ref = { item_id: id, ...at, content_index: 0 };
      return {
        done,
        events: [
          { type: 'response.output_item.added', ...at, item: { ...done, status: 'in_progress', content: [] } },
          { type: 'response.content_part.added', ...ref, part: { ...part, text: '' } },
          ...splitText(item.text).map((delta) => ({ type: 'response.output_text.delta', ...ref, delta, logprobs: [] })),
          { type: 'response.output_text.done', ...ref, text: item.text, logprobs: [] },
          { type: 'response.content_part.done', ...ref, part },
          { type: 'response.output_item.done', ...at, item: done },
        ],
      };
    }
    case 'function_call': {
      const id = ids('fc');
      const args = typeof item.arguments === 'string' ? item.arguments : JSON.stringify(item.arguments);
      const callId = item.callId ?? ids('call');
      const done = {
        id,
        type: 'function_call',
        status: 'completed',
        arguments: args,
        call_id: callId,
        name: item.name,
        ...(item.namespace === undefined ? {} : { namespace: item.namespace }),
      };
      const ref = { item_id: id, ...at };
      return {
        done,
        events: [
          { type: 'response.output_item.added', ...at, item: { ...done, status: 'in_progress', arguments: '' } },
          ...splitText(args).map((delta) => ({ type: 'response.function_call_arguments.delta', ...ref, delta })),
          { type: 'response.function_call_arguments.done', ...ref, name: item.name, arguments: args },
          { type: 'response.output_item.done', ...at, item: done },
        ],
      };
    }
    case 'custom_tool_call': {
      const id = ids('ctc');
      const callId = item.callId ?? ids('call');
      const done = { id, type: 'custom_tool_call', status: 'completed', call_id: callId, name: item.name, input: item.input };
      const ref = { item_id: id, ...at };
      return {
        done,
        events: [
          { type: 'response.output_item.added', ...at, item: { ...done, status: 'in_progress', input: '' } },
          ...splitText(item.input).map((delta) => ({ type: 'response.custom_tool_call_input.delta', ...ref, delta })),
          { type: 'response.custom_tool_call_input.done', ...ref, input: item.input },
          { type: 'response.output_item.done', ...at, item: done },
        ],
      };
    }
    case 'reasoning': {
      const id = ids('rs');
      const summary = item.summary === undefined ? [] : [{ type: 'summary_text', text: item.summary }];
      const done = { id, type: 'reasoning', summary };
      const ref = { item_id: id, ...at, summary_index: 0 };
      const summaryEvents =
        item.summary === undefined
          ? []
          : [
              { type: 'response.reasoning_summary_part.added', ...ref, part: { type: 'summary_text', text: '' } },
              ...splitText(item.summary).map((delta) => ({ type: 'response.reasoning_summary_text.delta', ...ref, delta })),
              { type: 'response.reasoning_summary_text.done', ...ref, text: item.summary },
              { type: 'response.reasoning_summary_part.done', ...ref, part: { type: 'summary_text', text: item.summary } },
            ];
      return {
        done,
        events: [{ type: 'response.output_item.added', ...at, item: { ...done, summary: [] } }, ...summaryEvents, { type: 'response.output_item.done', ...at, item: done }],
      };
    }
    case 'web_search_call': {
      // A hosted search: the provider runs it and streams its progress events.
      const id = ids('ws');
      const done = { id, type: 'web_search_call', status: 'completed', action: { type: 'search', query: item.query } };
      const ref = { item_id: id, output_index: at.output_index };
      return {
        done,
        events: [
          { type: 'response.output_item.added', ...at, item: { id, type: 'web_search_call', status: 'in_progress' } },
          { type: 'response.web_search_call.in_progress', ...ref },
          { type: 'response.web_search_call.searching', ...ref },
          { type: 'response.web_search_call.completed', ...ref },
          { type: 'response.output_item.done', ...at, item: done },
        ],
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers.

/** An error body shaped like the real API's. */
function errorBody(status: number, message?: string): { error: Record<string, unknown> } {
  const [type, code, fallback] =
    status === 401
      ? ['invalid_request_error', 'invalid_api_key', 'Incorrect API key provided.']
      : status === 404
        ? ['invalid_request_error', null, 'Not found.']
        : status === 429
          ? ['requests', 'rate_limit_exceeded', 'Rate limit reached. Please try again later.']
          : status >= 500
            ? ['server_error', null, 'The server had an error while processing your request. Sorry about that!']
            : ['invalid_request_error', null, 'Invalid request.'];
  return { error: { message: message ?? fallback, type, param: null, code } };
}

function describeStep(step: FakeStep): string {
  switch (step.kind) {
    case 'output':
      return `output [${step.items.map((item) => item.type).join(', ')}]`;
    case 'http-error':
      return `http-error ${step.status}`;
    case 'drop':
      return `drop after ${step.afterItems ?? 0} item(s)`;
    case 'failed':
      return `failed "${step.message}"`;
    case 'hold':
      return `hold, then ${describeStep(step.then)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers for tests: what the model was sent.

/**
 * The `input` items of a recorded Responses request. A string `input` is returned as the one
 * user message it stands for; a request without `input` gives `[]`.
 */
export function inputItems(request: RecordedRequest): unknown[] {
  const input = isRecord(request.body) ? request.body['input'] : undefined;
  if (Array.isArray(input)) return input;
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: input }];
  return [];
}

/** A tool result the model was sent (`function_call_output` or `custom_tool_call_output`). */
export interface FakeToolOutput {
  /** The `call_id` the output answers. */
  callId: string;
  /** The `output` as sent: a string or an array of content items. */
  output: unknown;
}

/** The `function_call_output` and `custom_tool_call_output` items of a request, in order. */
export function functionCallOutputs(request: RecordedRequest): FakeToolOutput[] {
  const outputs: FakeToolOutput[] = [];
  for (const item of inputItems(request)) {
    if (!isRecord(item)) continue;
    if (item['type'] !== 'function_call_output' && item['type'] !== 'custom_tool_call_output') continue;
    const callId = item['call_id'];
    outputs.push({ callId: typeof callId === 'string' ? callId : '', output: item['output'] });
  }
  return outputs;
}

/** Names of the `tools` offered in a request; a tool without a `name` is listed by its `type`. */
export function toolNames(request: RecordedRequest): string[] {
  const tools = isRecord(request.body) ? request.body['tools'] : undefined;
  if (!Array.isArray(tools)) return [];
  const names: string[] = [];
  for (const tool of tools) {
    if (!isRecord(tool)) continue;
    const name = tool['name'] ?? tool['type'];
    if (typeof name === 'string') names.push(name);
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// CLI.

const cliArgsSchema = z.object({
  script: z.string().min(1),
  port: z.coerce.number().int().min(0).max(65535).default(0),
  host: z.string().min(1).default('127.0.0.1'),
  /** PEM files: serve HTTPS with this key and certificate. */
  'tls-key': z.string().min(1).optional(),
  'tls-cert': z.string().min(1).optional(),
  'url-host': z.string().min(1).optional(),
});

function parseCliArgs(argv: string[]): z.infer<typeof cliArgsSchema> {
  const values: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === undefined || !flag.startsWith('--') || value === undefined) {
      throw new Error(`usage: fake-responses-server --script path.json [--port N] [--host H] [--tls-key key.pem --tls-cert cert.pem] [--url-host NAME] (at ${flag ?? 'end'})`);
    }
    values[flag.slice(2)] = value;
    i++;
  }
  const parsed = cliArgsSchema.safeParse(values);
  if (!parsed.success) throw new Error(`bad arguments:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

async function main(argv: string[]): Promise<void> {
  const args = parseCliArgs(argv);
  const script = parseFakeScript(JSON.parse(await readFile(args.script, 'utf8')) as unknown);
  const key = args['tls-key'];
  const cert = args['tls-cert'];
  if ((key === undefined) !== (cert === undefined)) throw new Error('--tls-key and --tls-cert go together');
  const server = await startFakeResponsesServer({
    script,
    host: args.host,
    port: args.port,
    ...(key === undefined || cert === undefined ? {} : { tls: { key: await readFile(key, 'utf8'), cert: await readFile(cert, 'utf8') } }),
    ...(args['url-host'] === undefined ? {} : { urlHost: args['url-host'] }),
    log: (line) => process.stderr.write(`[fake-responses] ${line}\n`),
  });
  process.stdout.write(`${server.url}\n`);
  const stop = (): void => {
    server.close().then(
      () => process.exit(server.errors.length === 0 ? 0 : 1),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (isRunDirectly(import.meta.url)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`[fake-responses] ${errorMessage(error)}\n`);
    process.exit(2);
  });
}
