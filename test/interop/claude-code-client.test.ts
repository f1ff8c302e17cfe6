import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { startFakeAnthropicServer, toolResults, type FakeAnthropicServer, type FakeAnthropicStep, type RecordedRequest } from '../../tools/fake-anthropic-server.js';
import { functionCallOutputs, inputItems, type FakeStep } from '../../tools/fake-responses-server.js';
import { readStdioTee, runClaudeCode, runClaudeCodeInteractive, teedServer, type ClaudeCodeRun, type TeedMessage } from '../helpers/claude-code.js';
import { serverEnv, setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { CLI, tempDir } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say } from '../helpers/steps.js';

// The real Claude Code 2.1.332 (`claude -p`) as an MCP client of OUR server: its model is the fake
// Messages API (tools/fake-anthropic-server.ts), ours the fake Responses API. Claude Code starts
// our built server over stdio from an `--mcp-config` entry, behind a recorder of the stdio lines
// (tools/stdio-tee.js), so the tests see the protocol era it chose and the approvals it answered.
//
// Claude Code 2.1.332 probes every stdio server with `server/discover` first and, as ours answers
// it within 3 s, speaks the 2026-07-28 era without `initialize` (else it sends `initialize` and
// goes on in the 2025 era); `MCP_PROTOCOL_NEGOTIATION=legacy` makes it open with `initialize`.
// Approvals reach it as an `elicitation/create` form either way (2026: inside an `input_required`
// result; 2025: a request of the server), and its `Elicitation` hook answers them, as a headless
// run has no one to ask.

const SERVER = 'multienv';
const CODEX_TOOL = `mcp__${SERVER}__codex`;
const REPLY_TOOL = `mcp__${SERVER}__codex-reply`;
const MODERN = '2026-07-28';
/** Each test runs Claude Code once (bounded by its own deadline), plus two servers and a turn. */
const TEST_TIMEOUT_MS = 180_000;

const CodexResultSchema = z.object({ threadId: z.string(), content: z.string() });

/** The `{threadId, content}` our tool returned, from the n-th tool_result Claude Code sent its model. */
function codexResult(request: RecordedRequest, n: number): z.infer<typeof CodexResultSchema> {
  const result = toolResults(request)[n];
  if (result === undefined) throw new Error(`request has no tool_result #${n}: ${JSON.stringify(toolResults(request))}`);
  return CodexResultSchema.parse(JSON.parse(result.text));
}

/** Where the `Elicitation` hook writes its input, in the run's folder. */
const HOOK_INPUT = 'hook-input.json';

/** Claude Code settings with an `Elicitation` hook for our server: it records its input and answers with `answer` (`action`, `content`). */
function elicitationHook(answer: Record<string, unknown>): (dir: string) => Record<string, unknown> {
  const output = JSON.stringify({ hookSpecificOutput: { hookEventName: 'Elicitation', ...answer } });
  // The command runs in a shell; the answer has no single quotes, the temp path no special characters.
  return (dir) => ({ hooks: { Elicitation: [{ matcher: SERVER, hooks: [{ type: 'command', command: `cat > '${join(dir, HOOK_INPUT)}'; printf '%s' '${output}'` }] }] } });
}

/** The outer model: calls `codex` with `policy` first, then ends. */
const codexOnce =
  (policy: string) =>
  (request: RecordedRequest, world: McpTestWorld): FakeAnthropicStep =>
    toolResults(request).length === 0
      ? { kind: 'tool_use', name: CODEX_TOOL, input: { prompt: 'touch the file', cwd: world.work.path, sandbox: 'danger-full-access', 'approval-policy': policy } }
      : { kind: 'text', text: 'outer done' };

/** The `_meta` of a recorded client message (empty when it has none). */
function metaOf(message: Record<string, unknown>): Record<string, unknown> {
  const params = message['params'];
  const meta = isRecord(params) ? params['_meta'] : undefined;
  return isRecord(meta) ? meta : {};
}

/** The `_meta` protocol version a recorded client message carries, if any. */
const metaVersion = (message: Record<string, unknown>): unknown => metaOf(message)['io.modelcontextprotocol/protocolVersion'];

const methodsFrom = (messages: TeedMessage[], dir: 'in' | 'out'): unknown[] => messages.filter((m) => m.dir === dir && 'method' in m.message).map((m) => m.message['method']);

/** How a test wants Claude Code to talk to us. */
type Era = 'modern' | 'legacy';

/** Runs for one era before the test gives up on it (see `run`). */
const MODERN_ATTEMPTS = 3;

/** What a test sets up for one run: the inner model's steps, the outer model, optional Claude Code settings. */
interface RunSpec {
  inner: FakeStep[];
  outer: (request: RecordedRequest, world: McpTestWorld) => FakeAnthropicStep;
  /** Claude Code's settings.json, given the run's own folder. */
  settings?: (dir: string) => Record<string, unknown>;
  /** An interactive run ends when the outer model says this. @default any text ends it */
  finalText?: string;
}

/** One finished run: Claude Code's output (`-p` runs), both fakes, the stdio lines, the folders. */
interface Ran {
  result: ClaudeCodeRun | undefined;
  model: FakeAnthropicServer;
  world: McpTestWorld;
  dir: string;
  messages: TeedMessage[];
}

/** `print`: `claude -p`; `interactive`: a session in a terminal, the prompt typed in. */
type Mode = 'print' | 'interactive';

describe('real Claude Code as an MCP client of our server', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** One Claude Code run with our server (teed) and fresh fakes and folders. */
  async function runOnce(spec: RunSpec, era: Era, mode: Mode): Promise<Ran> {
    const world = await setUpMcpWorld('claude-code', (_request, index) => spec.inner[index] ?? say('inner script exhausted'));
    cleanups.push(() => tearDownMcpWorld(world, undefined));
    const scratch = await tempDir('claude-code-run-');
    cleanups.push(scratch.cleanup);
    let ended = false;
    const model = await startFakeAnthropicServer({
      respond: (request) => {
        const step = spec.outer(request, world);
        if (step.kind === 'text' && (spec.finalText === undefined || step.text === spec.finalText)) ended = true;
        return step;
      },
    });
    cleanups.push(() => model.close());
    const tee = join(scratch.path, 'stdio.ndjson');
    const server = { command: process.execPath, args: [CLI], env: serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' }) };
    const options = {
      prompt: 'Delegate the work to the multienv server.',
      dir: scratch.path,
      cwd: world.work.path,
      modelUrl: model.url,
      mcpServers: { [SERVER]: teedServer(tee, server) },
      allowedTools: [CODEX_TOOL, REPLY_TOOL],
      ...(spec.settings === undefined ? {} : { settings: spec.settings(scratch.path) }),
      ...(era === 'legacy' ? { env: { MCP_PROTOCOL_NEGOTIATION: 'legacy' } } : {}),
    };
    let result: ClaudeCodeRun | undefined;
    if (mode === 'print') {
      result = await runClaudeCode(options);
      // Whichever era it ended up in, the run must have worked.
      const context = `exit ${result.code}${result.timedOut ? ' (killed at the deadline)' : ''}; stderr: ${result.stderr}\ndebug log tail:\n${result.debugLog.slice(-3000)}`;
      expect({ code: result.code, subtype: result.result?.subtype, context }).toEqual({ code: 0, subtype: 'success', context });
    } else {
      await runClaudeCodeInteractive({
        ...options,
        // Our tools are listed: the prompt can use them.
        ready: async () => (await readStdioTee(tee)).some((m) => m.dir === 'out' && isRecord(m.message['result']) && Array.isArray(m.message['result']['tools'])),
        done: () => ended,
      });
    }
    expect(model.errors).toEqual([]);
    expect(world.model.errors).toEqual([]);
    return { result, model, world, dir: scratch.path, messages: await readStdioTee(tee) };
  }

  /**
   * A run in `era`. Claude Code waits 3 s (its own bound, not configurable) for the answer to its
   * `server/discover` probe, then opens with `initialize` instead; a cold start of our server on a
   * loaded machine can take longer. Such a run is checked like any other, and a modern test runs
   * again (fresh fakes and folders), up to {@link MODERN_ATTEMPTS} times.
   */
  async function run(spec: RunSpec, era: Era = 'modern', mode: Mode = 'print'): Promise<Ran> {
    for (let attempt = 1; ; attempt++) {
      const ran = await runOnce(spec, era, mode);
      const fellBack = methodsFrom(ran.messages, 'in').includes('initialize');
      if (era === 'legacy' || !fellBack) return ran;
      if (attempt === MODERN_ATTEMPTS)
        throw new Error(`Claude Code fell back to initialize in all ${MODERN_ATTEMPTS} runs (our server never answered server/discover within its 3 s)`);
    }
  }

  it(
    'calls `codex`, then `codex-reply` on the returned thread, speaking the 2026-07-28 era',
    async () => {
      const { result, model, messages, world } = await run({
        inner: [exec('printf from-claude-code > marker.txt'), say('inner turn one done'), say('inner turn two done')],
        outer: (request, world) => {
          const results = toolResults(request);
          if (results.length === 0)
            return { kind: 'tool_use', name: CODEX_TOOL, input: { prompt: 'write the marker', cwd: world.work.path, sandbox: 'danger-full-access', 'approval-policy': 'never' } };
          if (results.length === 1) return { kind: 'tool_use', name: REPLY_TOOL, input: { threadId: codexResult(request, 0).threadId, prompt: 'and now say goodbye' } };
          return { kind: 'text', text: 'outer done' };
        },
      });
      expect(result?.result?.result).toBe('outer done');

      // The requests came from Claude Code itself.
      const first = model.messages[0]!;
      expect(first.headers['user-agent']).toMatch(/^claude-cli\/2\.1\.332 /);
      expect(first.headers['anthropic-version']).toBe('2023-06-01');
      expect(first.headers['x-api-key']).toBe('sk-ant-test-key');

      // `codex` ran a turn that ran a command here; its {threadId, content} came back to the model.
      expect(model.messages).toHaveLength(3);
      expect(await readFile(join(world.work.path, 'marker.txt'), 'utf8')).toBe('from-claude-code');
      const one = codexResult(model.messages[1]!, 0);
      expect(one.content).toBe('inner turn one done');
      // `codex-reply` continued the same thread, with the first turn's history.
      expect(codexResult(model.messages[2]!, 1)).toEqual({ threadId: one.threadId, content: 'inner turn two done' });
      expect(world.model.requests).toHaveLength(3);
      expect(JSON.stringify(inputItems(world.model.requests[2]!))).toContain('inner turn one done');

      // The era: `server/discover` first, no `initialize`, every request stamped 2026-07-28.
      const sent = messages.filter((m) => m.dir === 'in' && 'method' in m.message);
      expect(sent[0]?.message['method']).toBe('server/discover');
      expect(methodsFrom(messages, 'in')).not.toContain('initialize');
      expect(methodsFrom(messages, 'in').filter((m) => m === 'tools/call')).toHaveLength(2);
      for (const { message } of sent) expect({ method: message['method'], version: metaVersion(message) }).toEqual({ method: message['method'], version: MODERN });
      // A `-p` run declares form elicitation (so approvals reach it) and no tasks extension (an
      // interactive session adds `extensions: {"io.modelcontextprotocol/tasks": {}}`).
      expect(metaOf(sent[0]!.message)['io.modelcontextprotocol/clientCapabilities']).toEqual({ roots: { listChanged: true }, elicitation: { form: {}, url: {} } });
    },
    TEST_TIMEOUT_MS,
  );

  it.each([
    { answer: { action: 'accept', content: { decision: 'approve' } }, ran: true },
    { answer: { action: 'decline' }, ran: false },
  ])(
    'an approval is answered by its Elicitation hook: $answer.action',
    async ({ answer, ran }) => {
      const { model, messages, world, dir } = await run({
        inner: [exec('touch approved.txt'), say(ran ? 'inner ran it' : 'inner was denied')],
        outer: codexOnce('untrusted'),
        settings: elicitationHook(answer),
      });

      // The hook saw our approval form, for our server.
      const seen = z.looseObject({}).parse(JSON.parse(await readFile(join(dir, HOOK_INPUT), 'utf8')));
      expect(seen).toMatchObject({ hook_event_name: 'Elicitation', mcp_server_name: SERVER, mode: 'form', message: expect.stringContaining('touch approved.txt') });
      expect(JSON.stringify(seen['requested_schema'])).toContain('approve_for_session');

      // In this era the form came inside an `input_required` result, and the call was retried with the answer.
      const required = messages.find((m) => m.dir === 'out' && isRecord(m.message['result']) && m.message['result']['resultType'] === 'input_required');
      expect(JSON.stringify(required?.message)).toContain('"method":"elicitation/create"');
      const retry = messages.find((m) => m.dir === 'in' && m.message['method'] === 'tools/call' && JSON.stringify(m.message).includes('inputResponses'));
      expect(JSON.stringify(retry?.message)).toContain(JSON.stringify(answer.action));

      expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(ran);
      expect(codexResult(model.messages[1]!, 0).content).toBe(ran ? 'inner ran it' : 'inner was denied');
      const commandOutput = JSON.stringify(functionCallOutputs(world.model.requests[1]!));
      if (!ran) expect(commandOutput).toMatch(/declin|denied|rejected/i);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'in the 2025 era (MCP_PROTOCOL_NEGOTIATION=legacy) an approval is an elicitation/create request its hook accepts',
    async () => {
      const { model, messages, world, dir } = await run(
        {
          inner: [exec('touch approved.txt'), say('inner ran it')],
          outer: codexOnce('untrusted'),
          settings: elicitationHook({ action: 'accept', content: { decision: 'approve' } }),
        },
        'legacy',
      );
      expect(existsSync(join(dir, HOOK_INPUT))).toBe(true);

      expect(methodsFrom(messages, 'in')[0]).toBe('initialize');
      expect(methodsFrom(messages, 'in')).not.toContain('server/discover');
      const request = messages.find((m) => m.dir === 'out' && m.message['method'] === 'elicitation/create');
      expect(request).toBeDefined();
      const reply = messages.find((m) => m.dir === 'in' && m.message['id'] === request?.message['id'] && 'result' in m.message);
      expect(reply?.message['result']).toEqual({ action: 'accept', content: { decision: 'approve' } });

      expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(true);
      expect(codexResult(model.messages[1]!, 0).content).toBe('inner ran it');
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'in a native background task an approval is task input: the task goes input_required, the Elicitation hook answers, tasks/update carries it',
    async () => {
      const sentText = (request: RecordedRequest): string => JSON.stringify(isRecord(request.body) ? request.body['messages'] : []);
      const { messages, world, dir } = await run(
        {
          inner: [exec('touch approved.txt'), say('inner ran it')],
          outer: (request, world) => {
            if (toolResults(request).length === 0) {
              return {
                kind: 'tool_use',
                name: CODEX_TOOL,
                input: { prompt: 'touch the file', cwd: world.work.path, sandbox: 'danger-full-access', 'approval-policy': 'untrusted' },
              };
            }
            if (sentText(request).includes('inner ran it')) return { kind: 'text', text: 'outer done' };
            return { kind: 'text', text: 'waiting for the background task' };
          },
          settings: elicitationHook({ action: 'accept', content: { decision: 'approve' } }),
          finalText: 'outer done',
        },
        'modern',
        'interactive',
      );
      const seen = z.looseObject({}).parse(JSON.parse(await readFile(join(dir, HOOK_INPUT), 'utf8')));
      expect(seen).toMatchObject({ hook_event_name: 'Elicitation', mcp_server_name: SERVER, message: expect.stringContaining('touch approved.txt') });
      const waiting = messages.find((m) => m.dir === 'out' && isRecord(m.message['result']) && m.message['result']['status'] === 'input_required');
      expect(JSON.stringify(waiting?.message)).toContain('"method":"elicitation/create"');
      const update = messages.find((m) => m.dir === 'in' && m.message['method'] === 'tasks/update');
      expect(JSON.stringify(update?.message)).toContain('"action":"accept"');
      expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(true);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'an interactive session declares the MCP tasks extension: `codex` runs as a native background task that Claude Code polls to completion',
    async () => {
      const release = gate();
      /** The text of every message the outer model was sent, joined (tool results and task notifications alike). */
      const sentText = (request: RecordedRequest): string => JSON.stringify(isRecord(request.body) ? request.body['messages'] : []);
      const { model, messages } = await run(
        {
          // The inner turn waits until Claude Code has moved the call to the background.
          inner: [hold(release.promise, say('inner turn done'))],
          outer: (request, world) => {
            if (toolResults(request).length === 0) return { kind: 'tool_use', name: CODEX_TOOL, input: { prompt: 'work in the background', cwd: world.work.path } };
            if (sentText(request).includes('inner turn done')) return { kind: 'text', text: 'outer done' };
            release.open();
            return { kind: 'text', text: 'waiting for the background task' };
          },
          finalText: 'outer done',
        },
        'modern',
        'interactive',
      );

      const sent = messages.filter((m) => m.dir === 'in' && 'method' in m.message);
      expect(sent[0]?.message['method']).toBe('server/discover');
      expect(metaOf(sent[0]!.message)['io.modelcontextprotocol/clientCapabilities']).toEqual({
        roots: { listChanged: true },
        elicitation: { form: {}, url: {} },
        extensions: { 'io.modelcontextprotocol/tasks': {} },
      });
      // The call itself asks for nothing task-like: with the extension declared, the server decides.
      const call = sent.find((m) => m.message['method'] === 'tools/call');
      expect(Object.keys(isRecord(call?.message['params']) ? call.message['params'] : {}).sort()).toEqual(['_meta', 'arguments', 'name']);
      // Our answer was a task of the extension, and Claude Code moved the call to the background.
      const answer = messages.find((m) => m.dir === 'out' && m.message['id'] === call?.message['id']);
      const task = isRecord(answer?.message['result']) ? answer.message['result'] : {};
      expect(task).toMatchObject({ resultType: 'task', taskId: expect.stringMatching(/^task\./), status: 'working' });
      expect(toolResults(model.messages[1]!)[0]?.text).toContain(`started server-side task ${String(task['taskId'])}`);
      // It polled tasks/get until the task completed, and gave the result to its model.
      const polls = sent.filter((m) => m.message['method'] === 'tasks/get');
      expect(polls.length).toBeGreaterThan(0);
      for (const poll of polls) expect(isRecord(poll.message['params']) ? poll.message['params']['taskId'] : undefined).toBe(task['taskId']);
      const lastPoll = messages.find((m) => m.dir === 'out' && m.message['id'] === polls.at(-1)?.message['id']);
      expect(lastPoll?.message['result']).toMatchObject({ status: 'completed' });
      expect(sentText(model.messages.at(-1)!)).toContain('inner turn done');
    },
    TEST_TIMEOUT_MS,
  );
});
