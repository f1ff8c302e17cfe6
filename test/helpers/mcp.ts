import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Protocol } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { startFakeResponsesServer, type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { CLI, tempDir, waitFor } from './process.js';
import { networkEnv } from './network.js';

/** A running MCP server with a connected SDK client: our built CLI (`startMcp`) or composed in this process (`startInProcessMcp`). */
export interface McpHarness {
  client: Client;
  /** Every JSON-RPC message the server sent, in order. */
  received: unknown[];
  /** Every JSON-RPC message the client sent, in order (e.g. to learn a `tools/call` request id). */
  sent: unknown[];
  /** Resolves with the first message in `received` (already there or still to come) that matches; rejects after `timeoutMs` (default 20 s). */
  waitForReceived(predicate: (message: unknown) => boolean, what: string, timeoutMs?: number): Promise<unknown>;
  /** What the server wrote on stderr so far (in-process: its log lines). */
  stderr: () => string;
  /**
   * Waits until stderr matches `pattern`. The worker's stderr reaches the client through the
   * relay, so a line can arrive after an answer the worker sent later on stdout.
   */
  waitForStderr(pattern: RegExp, what: string): Promise<void>;
  /** The pid of the process the client started (the relay in front of the detached worker); in-process, this one. */
  pid: number;
  /** The pid of the worker serving this client, from its ready log line (waited for); in-process, this one. */
  workerPid: () => Promise<number>;
  call(name: string, args: Record<string, unknown>, options?: { signal?: AbortSignal; progressToken?: string; onprogress?: (p: unknown) => void }): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** Writes `config.toml` for the fake model into `codexHome`. */
export async function writeMcpConfig(codexHome: string, modelUrl: string, extra = ''): Promise<void> {
  await mkdir(codexHome, { recursive: true });
  await writeFile(
    join(codexHome, 'config.toml'),
    [
      'model = "gpt-5.5"',
      'model_provider = "fake"',
      'approval_policy = "never"',
      'sandbox_mode = "danger-full-access"',
      '[model_providers.fake]',
      `base_url = "${modelUrl}"`,
      'env_key = "FAKE_MODEL_API_KEY"',
      'request_max_retries = 0',
      'stream_max_retries = 0',
      extra,
    ].join('\n'),
  );
}

/** `elicitation/create` with every field kept (the SDK's schema strips unknown ones). */
const RawElicitRequestSchema = z.looseObject({ method: z.literal('elicitation/create'), params: z.looseObject({}) });

/** Answers elicitation requests; return the raw result the client sends. */
export type ElicitationAnswer = (params: Record<string, unknown>) => unknown;

/** The part of {@link McpHarness} that is the same however the server runs: the client and its message logs. */
export type McpTestClient = Pick<McpHarness, 'client' | 'received' | 'sent' | 'waitForReceived' | 'call'>;

/**
 * Connects an SDK client (with elicitation when `answer` is given) over `transport`, logging every
 * message each way.
 */
export async function connectTestClient(transport: Transport, answer?: ElicitationAnswer): Promise<McpTestClient> {
  const client = new Client({ name: 'test-client', version: '1.0.0' }, { capabilities: answer === undefined ? {} : { elicitation: { form: {} } } });
  if (answer !== undefined) {
    // `Client.setRequestHandler` strips the request's unknown (vendor) fields and turns any answer
    // that is not an MCP ElicitResult into a JSON-RPC error. Tests need the raw request and must be
    // able to send any answer shape, including invalid ones, so the handler goes on Protocol.
    const setRaw = Protocol.prototype.setRequestHandler as (
      this: Client,
      schema: typeof RawElicitRequestSchema,
      handler: (request: z.infer<typeof RawElicitRequestSchema>) => unknown,
    ) => void;
    setRaw.call(client, RawElicitRequestSchema, (request) => answer(request.params));
  }
  const sent: unknown[] = [];
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    sent.push(message);
    return send(message, options);
  };
  await client.connect(transport);
  const received: unknown[] = [];
  const watchers = new Set<(message: unknown) => void>();
  const original = transport.onmessage;
  transport.onmessage = (message, extra) => {
    received.push(message);
    for (const watcher of [...watchers]) watcher(message);
    original?.(message, extra);
  };
  return {
    client,
    received,
    sent,
    waitForReceived: (predicate, what, timeoutMs = 20_000) => {
      const found = received.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(watcher);
          reject(new Error(`timed out waiting for ${what}`));
        }, timeoutMs);
        const watcher = (message: unknown): void => {
          if (!predicate(message)) return;
          clearTimeout(timer);
          watchers.delete(watcher);
          resolve(message);
        };
        watchers.add(watcher);
      });
    },
    call: async (name, args, callOptions = {}) => {
      const result = await client.callTool(
        { name, arguments: args, ...(callOptions.progressToken === undefined ? {} : { _meta: { progressToken: callOptions.progressToken } }) },
        undefined,
        { signal: callOptions.signal, timeout: 120_000, onprogress: callOptions.onprogress as never },
      );
      return result as CallToolResult;
    },
  };
}

/** The environment the server gets in tests: the machine's without its proxy and CA variables, the fake model's key, debug logs, then `extra`. */
export function serverEnv(codexHome: string, extra: NodeJS.ProcessEnv = {}): Record<string, string> {
  const env: Record<string, string> = {};
  // An `undefined` in `extra` removes the variable, as it does for a spawned process.
  for (const [name, value] of Object.entries({ ...networkEnv(process.env), CODEX_HOME: codexHome, FAKE_MODEL_API_KEY: 'test-key', CODEX_MULTIENV_LOG: 'debug', ...extra })) {
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Spawns `node dist/cli/main.js` (under `launcher` when given) with `codexHome` and connects a client (with elicitation when `answer` is given). */
export async function startMcp(
  codexHome: string,
  options: {
    answer?: ElicitationAnswer;
    env?: NodeJS.ProcessEnv;
    args?: string[];
    cwd?: string;
    /** A program (and its arguments) that runs the server's command line given after them; `pid` is then the launcher's. */
    launcher?: string[];
    /** The CLI script to run (e.g. another build's, for a bench's baseline). @default {@link CLI} */
    cli?: string;
  } = {},
): Promise<McpHarness> {
  const launcher = options.launcher ?? [];
  const transport = new StdioClientTransport({
    command: launcher[0] ?? process.execPath,
    args: [...launcher.slice(1), ...(launcher.length > 0 ? [process.execPath] : []), options.cli ?? CLI, ...(options.args ?? [])],
    env: serverEnv(codexHome, options.env),
    stderr: 'pipe',
    cwd: options.cwd,
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const connected = await connectTestClient(transport, options.answer);
  return {
    ...connected,
    stderr: () => stderr,
    waitForStderr: (pattern, what) => waitFor(() => pattern.test(stderr), `${what} on the server's stderr`),
    pid: transport.pid ?? -1,
    workerPid: async () => {
      const ready = /MCP server ready[^\n]*"pid":(\d+)/;
      await waitFor(() => ready.test(stderr), "the worker's ready line (with its pid) on the server's stderr");
      return Number(ready.exec(stderr)?.[1]);
    },
    close: () => connected.client.close(),
  };
}

/** The `threadId` of a `codex` / `codex-reply` result; throws naming the result when it has none. */
export function threadIdOf(result: { structuredContent?: unknown }): string {
  const structured = result.structuredContent;
  const threadId = typeof structured === 'object' && structured !== null && 'threadId' in structured ? structured.threadId : undefined;
  if (typeof threadId !== 'string') throw new Error(`no threadId in ${JSON.stringify(structured)}`);
  return threadId;
}

/** The text of a tool result's first content item. */
export function textOf(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === 'text' ? first.text : '';
}

/** The per-test world of an MCP end-to-end test: a CODEX_HOME, a work folder and the fake model. */
export interface McpTestWorld {
  home: { path: string; cleanup: () => Promise<void> };
  work: { path: string; cleanup: () => Promise<void> };
  model: FakeResponsesServer;
}

/** Creates the temporary folders, starts the fake model with `respond` and writes config.toml for it. */
export async function setUpMcpWorld(prefix: string, respond: (request: RecordedRequest, index: number) => FakeStep): Promise<McpTestWorld> {
  const home = await tempDir(`${prefix}-home-`);
  const work = await tempDir(`${prefix}-work-`);
  const model = await startFakeResponsesServer({ respond });
  await writeMcpConfig(home.path, model.url);
  return { home, work, model };
}

/** Closes the client (and so the server), the fake model, and removes the folders. */
export async function tearDownMcpWorld(world: McpTestWorld, mcp: McpHarness | undefined): Promise<void> {
  await mcp?.close();
  await world.model.close();
  await world.home.cleanup();
  await world.work.cleanup();
}

/** The records of a thread's file under `home` (the default threads folder), in order. */
export async function storedRecords(home: string, threadId: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(home, 'multienv', 'threads', `${threadId}.jsonl`), 'utf8');
  return text
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
