import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { startFakeAnthropicServer, toolResults, type FakeAnthropicServer, type FakeAnthropicStep, type RecordedRequest } from '../../tools/fake-anthropic-server.js';
import { functionCallOutputs, inputItems, type FakeStep } from '../../tools/fake-responses-server.js';
import { readStdioTee, runClaudeCode, teedServer, type ClaudeCodeRun, type TeedMessage } from '../helpers/claude-code.js';
import { serverEnv, setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { CLI, tempDir } from '../helpers/process.js';
import { exec, isRecord, say } from '../helpers/steps.js';

// The real Claude Code 2.1.332 (`claude -p`) as an MCP client of OUR server: its model is the fake
// Messages API (tools/fake-anthropic-server.ts), ours the fake Responses API. Claude Code starts
// our built server over stdio from an `--mcp-config` entry, behind a recorder of the stdio lines
// (tools/stdio-tee.js), so the tests see the protocol era it chose and the approvals it answered.
//
// Claude Code 2.1.332 probes every stdio server with `server/discover` first and, as ours answers
// it, speaks the 2026-07-28 era without `initialize`; `MCP_PROTOCOL_NEGOTIATION=legacy` makes it
// open with `initialize` (the 2025 era) instead. Approvals reach it as an `elicitation/create`
// form either way (2026: inside an `input_required` result; 2025: a request of the server), and its
// `Elicitation` hook answers them, as a headless run has no one to ask.

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

/** The `Elicitation` hook of Claude Code's settings: records its input in `inputFile`, answers with `action` (and `content`). */
function elicitationHook(inputFile: string, answer: Record<string, unknown>): Record<string, unknown> {
  const output = JSON.stringify({ hookSpecificOutput: { hookEventName: 'Elicitation', ...answer } });
  // The command runs in a shell; the answer has no single quotes, the temp path no special characters.
  return { hooks: { Elicitation: [{ matcher: SERVER, hooks: [{ type: 'command', command: `cat > '${inputFile}'; printf '%s' '${output}'` }] }] } };
}

/** The `_meta` protocol version a recorded client message carries, if any. */
function metaVersion(message: Record<string, unknown>): unknown {
  const params = message['params'];
  const meta = isRecord(params) ? params['_meta'] : undefined;
  return isRecord(meta) ? meta['io.modelcontextprotocol/protocolVersion'] : undefined;
}

const methodsFrom = (messages: TeedMessage[], dir: 'in' | 'out'): unknown[] => messages.filter((m) => m.dir === dir && 'method' in m.message).map((m) => m.message['method']);

describe('real Claude Code (claude -p) as an MCP client of our server', () => {
  let world: McpTestWorld;
  let scratch: { path: string; cleanup: () => Promise<void> };
  let claudeModel: FakeAnthropicServer | undefined;
  let inner: FakeStep[];

  beforeEach(async () => {
    inner = [];
    world = await setUpMcpWorld('claude-code', (_request, index) => inner[index] ?? say('inner script exhausted'));
    scratch = await tempDir('claude-code-run-');
  });
  afterEach(async () => {
    await claudeModel?.close();
    claudeModel = undefined;
    await tearDownMcpWorld(world, undefined);
    await scratch.cleanup();
  });

  /** Runs Claude Code with our server (teed) and `respond` as its model; returns the run and the stdio lines. */
  async function run(respond: (request: RecordedRequest) => FakeAnthropicStep, extra: { settings?: Record<string, unknown>; env?: Record<string, string> } = {}) {
    const model = await startFakeAnthropicServer({ respond: (request) => respond(request) });
    claudeModel = model;
    const tee = join(scratch.path, 'stdio.ndjson');
    const server = { command: process.execPath, args: [CLI], env: serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' }) };
    const result: ClaudeCodeRun = await runClaudeCode({
      prompt: 'Delegate the work to the multienv server.',
      dir: scratch.path,
      cwd: world.work.path,
      modelUrl: model.url,
      mcpServers: { [SERVER]: teedServer(tee, server) },
      allowedTools: [CODEX_TOOL, REPLY_TOOL],
      ...extra,
    });
    const context = `exit ${result.code}${result.timedOut ? ' (killed at the deadline)' : ''}; stderr: ${result.stderr}\ndebug log tail:\n${result.debugLog.slice(-3000)}`;
    expect({ code: result.code, subtype: result.result?.subtype, context }).toEqual({ code: 0, subtype: 'success', context });
    expect(model.errors).toEqual([]);
    expect(world.model.errors).toEqual([]);
    return { result, model, messages: await readStdioTee(tee) };
  }

  it(
    'calls `codex`, then `codex-reply` on the returned thread, speaking the 2026-07-28 era',
    async () => {
      inner = [exec('printf from-claude-code > marker.txt'), say('inner turn one done'), say('inner turn two done')];
      const { result, model, messages } = await run((request) => {
        const results = toolResults(request);
        if (results.length === 0)
          return { kind: 'tool_use', name: CODEX_TOOL, input: { prompt: 'write the marker', cwd: world.work.path, sandbox: 'danger-full-access', 'approval-policy': 'never' } };
        if (results.length === 1) return { kind: 'tool_use', name: REPLY_TOOL, input: { threadId: codexResult(request, 0).threadId, prompt: 'and now say goodbye' } };
        return { kind: 'text', text: 'outer done' };
      });
      expect(result.result?.result).toBe('outer done');

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
    },
    TEST_TIMEOUT_MS,
  );

  it.each([
    { answer: { action: 'accept', content: { decision: 'approve' } }, ran: true },
    { answer: { action: 'decline' }, ran: false },
  ])(
    'an approval is answered by its Elicitation hook: $answer.action',
    async ({ answer, ran }) => {
      const hookInput = join(scratch.path, 'hook-input.json');
      inner = [exec('touch approved.txt'), say(ran ? 'inner ran it' : 'inner was denied')];
      const { model, messages } = await run(
        (request) =>
          toolResults(request).length === 0
            ? { kind: 'tool_use', name: CODEX_TOOL, input: { prompt: 'touch the file', cwd: world.work.path, sandbox: 'danger-full-access', 'approval-policy': 'untrusted' } }
            : { kind: 'text', text: 'outer done' },
        { settings: elicitationHook(hookInput, answer) },
      );

      // The hook saw our approval form, for our server.
      const seen = z.looseObject({}).parse(JSON.parse(await readFile(hookInput, 'utf8')));
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
      const hookInput = join(scratch.path, 'hook-input.json');
      inner = [exec('touch approved.txt'), say('inner ran it')];
      const { model, messages } = await run(
        (request) =>
          toolResults(request).length === 0
            ? { kind: 'tool_use', name: CODEX_TOOL, input: { prompt: 'touch the file', cwd: world.work.path, sandbox: 'danger-full-access', 'approval-policy': 'untrusted' } }
            : { kind: 'text', text: 'outer done' },
        { settings: elicitationHook(hookInput, { action: 'accept', content: { decision: 'approve' } }), env: { MCP_PROTOCOL_NEGOTIATION: 'legacy' } },
      );

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
});
