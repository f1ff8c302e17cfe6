// The size bound on one MCP message, end to end through the built CLI (relay and detached worker):
// an oversized message is answered with a clear error (or dropped with a log line) and the server
// goes on serving every other call; large messages under the bound work.
import { spawn } from 'node:child_process';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { inputItems, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, textOf, type McpHarness } from '../helpers/mcp.js';
import { CLI, waitFor } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say } from '../helpers/steps.js';

const MIB = 1024 * 1024;

/** Every input text the model received in request `index` (user and developer messages). */
function inputTexts(model: FakeResponsesServer, index: number): string[] {
  const request = model.requests[index];
  if (request === undefined) throw new Error(`the model received no request #${index}`);
  const texts: string[] = [];
  for (const item of inputItems(request)) {
    if (!isRecord(item) || !Array.isArray(item.content)) continue;
    for (const part of item.content) if (isRecord(part) && typeof part.text === 'string') texts.push(part.text);
  }
  return texts;
}

/** What a rejected call rejected with. */
async function rejection(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (error) {
    return error;
  }
  throw new Error('the call was answered; it should have been rejected');
}

describe('the size bound on one MCP message', () => {
  let world: Awaited<ReturnType<typeof setUpMcpWorld>>;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-size', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('answers a 16 MB call with an error naming the limit, keeps serving, and another thread’s open call survives; 1 MB and 8 MB prompts work', async () => {
    mcp = await startMcp(world.home.path);
    const release = gate();
    steps.push(hold(release.promise, say('the other thread is fine')));
    // Another thread's call, open (its model answer held) while the oversized message arrives.
    const other = mcp.call('codex', { prompt: 'a long job', cwd: world.work.path });
    await world.model.waitForRequests(1);

    const error = await rejection(mcp.call('codex', { prompt: 'x'.repeat(16 * MIB), cwd: world.work.path }));
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(-32600);
    expect((error as McpError).message).toMatch(/bytes, over the limit of 10485760 bytes \(10 MiB, multienv\.max_message_mb\)/);
    await mcp.waitForStderr(/message of \d+ bytes over the limit/, 'the log line about the oversized message');
    // Nothing of it reached a thread or the model.
    expect(world.model.requests).toHaveLength(1);

    release.open();
    const survived = await other;
    expect(survived.isError).toBeFalsy();
    expect(textOf(survived)).toBe('the other thread is fine');

    for (const size of [1 * MIB, 8 * MIB]) {
      const prompt = `${size}:`.padEnd(size, 'y');
      steps.push(say(`read ${size}`));
      const before = world.model.requests.length;
      const result = await mcp.call('codex', { prompt, cwd: world.work.path });
      expect(result.isError).toBeFalsy();
      expect(textOf(result)).toBe(`read ${size}`);
      expect(inputTexts(world.model, before)).toContain(prompt);
    }
  });

  it('follows multienv.max_message_mb: an answer to an approval over it is a denial at once, a notification over it is dropped with a log line', async () => {
    let asked = 0;
    mcp = await startMcp(world.home.path, {
      args: ['-c', 'multienv.max_message_mb=1', '-c', 'multienv.approval_timeout_sec=60'],
      // The old server's denial with a long text: over the limit, it is not read at all.
      answer: () => {
        asked += 1;
        return { decision: { denied: { rejection: 'z'.repeat(2 * MIB) } } };
      },
    });
    const error = await rejection(mcp.call('codex', { prompt: 'x'.repeat(2 * MIB), cwd: world.work.path }));
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).message).toMatch(/over the limit of 1048576 bytes \(1 MiB, multienv\.max_message_mb\)/);

    await mcp.client.notification({ method: 'notifications/progress', params: { progressToken: 'p', progress: 1, message: 'n'.repeat(2 * MIB) } });
    await mcp.waitForStderr(/dropped an MCP notification of \d+ bytes over the limit/, 'the log line about the dropped notification');

    steps.push(exec('touch answered-too-long.txt'), say('it was refused'));
    const result = await mcp.call('codex', { prompt: 'make the file', cwd: world.work.path, 'approval-policy': 'untrusted' });
    expect(asked).toBe(1);
    expect(textOf(result)).toBe('it was refused');
    const outputs = JSON.stringify(world.model.requests[1]?.body);
    expect(outputs).toMatch(/exec_command was rejected[^"]*over the limit of 1048576 bytes/);
    expect(outputs).not.toMatch(/timed out/i);
  });

  it('in one process (--foreground) too: raw oversized lines get their error, unreadable ones a log line, and the server answers the next request', async () => {
    const child = spawn(process.execPath, [CLI, '--foreground', '-c', 'multienv.max_message_mb=1'], {
      env: { ...process.env, CODEX_HOME: world.home.path, FAKE_MODEL_API_KEY: 'test-key' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const lines = (): unknown[] =>
      stdout
        .split('\n')
        .filter((line) => line.length > 0)
        .map((line) => JSON.parse(line) as unknown);
    const answerTo = (id: number): Promise<void> => waitFor(() => lines().some((m) => isRecord(m) && m.id === id), `the answer to request ${id}`);
    try {
      const write = (text: string): void => void child.stdin.write(text);
      write(
        `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } })}\n`,
      );
      write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
      await answerTo(1);
      // The id comes last, as the SDK's client writes it, after a string full of braces and `"id"`.
      const decoy = '{"id":99},\\"id\\":98}'.repeat(MIB / 8);
      write(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"codex","arguments":{"prompt":${JSON.stringify(decoy)}}},"id":"big-2"}\n`);
      // Not JSON at all: no id to answer.
      write(`{"id":3,${'x'.repeat(2 * MIB)}\n`);
      write(`${JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/list' })}\n`);
      await answerTo(4);
      const big = lines().find((m) => isRecord(m) && m.id === 'big-2');
      expect(big).toMatchObject({ jsonrpc: '2.0', id: 'big-2', error: { code: -32600, message: expect.stringMatching(/over the limit of 1048576 bytes/) } });
      expect(lines().some((m) => isRecord(m) && (m.id === 3 || m.id === 99 || m.id === 98))).toBe(false);
      await waitFor(() => /dropped an MCP message of \d+ bytes over the limit[^\n]*no readable id/.test(stderr), 'the log line about the unreadable oversized line');
      const list = lines().find((m) => isRecord(m) && m.id === 4);
      expect(JSON.stringify(list)).toContain('"codex"');
    } finally {
      child.stdin.end();
    }
    expect(await exited).toBe(0);
  });
});
