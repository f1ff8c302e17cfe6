// A thread left idle is let go (multienv.idle_thread_unload_sec): its MCP servers stop, and its next
// turn reads it back with its history and its session approvals. Our built server over stdio, the
// SDK client, the fake model, and @modelcontextprotocol/server-everything as the thread's MCP server.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { inputItems, toolNames, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, writeMcpConfig, type McpHarness } from '../helpers/mcp.js';
import { REPO_ROOT, waitFor } from '../helpers/process.js';
import { exec, isRecord, say } from '../helpers/steps.js';

const EVERYTHING = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const APPROVE_FOR_SESSION = { action: 'accept', content: { decision: 'approve_for_session' } };

/** Pids of the processes whose parent is `parent` and whose command line mentions `needle`. */
function childrenRunning(parent: number, needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z' || Number(fields[1]) !== parent) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) found.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

/** The MCP servers `environment/list` reports for `local`. */
async function localMcpServers(mcp: McpHarness): Promise<unknown[]> {
  const list = await mcp.call('environment/list', {});
  const structured = list.structuredContent;
  const environments = isRecord(structured) && Array.isArray(structured.environments) ? structured.environments : [];
  const local = environments.find((environment) => isRecord(environment) && environment.id === 'local');
  const servers: unknown = isRecord(local) ? local.mcpServers : undefined;
  return Array.isArray(servers) ? servers.map((server: unknown) => server) : [];
}

describe('idle threads are let go', () => {
  let world: Awaited<ReturnType<typeof setUpMcpWorld>>;
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-idle', () => steps.shift() ?? say('script exhausted'));
    model = world.model;
    await writeMcpConfig(world.home.path, model.url, ['[mcp_servers.everything]', `command = ${JSON.stringify(process.execPath)}`, `args = [${JSON.stringify(EVERYTHING)}, "stdio"]`].join('\n'));
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('stops an idle thread’s MCP servers, then continues it with its history, its MCP servers started again and its session approvals kept', async () => {
    const asked: unknown[] = [];
    mcp = await startMcp(world.home.path, {
      args: ['-c', 'multienv.idle_thread_unload_sec=2'],
      answer: (params) => {
        asked.push(params);
        return APPROVE_FOR_SESSION;
      },
    });
    const worker = await mcp.workerPid();

    steps.push(exec('touch one.txt'), say('first answer'));
    const first = await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path, 'approval-policy': 'untrusted' });
    expect(first.structuredContent).toMatchObject({ content: 'first answer' });
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    expect(asked).toHaveLength(1);
    expect(toolNames(model.requests[0]!)).toContain('mcp__everything__echo');
    const started = childrenRunning(worker, 'server-everything');
    expect(started).toHaveLength(1);

    // Idle for the configured time: the thread is let go and its MCP server stops.
    await waitFor(async () => childrenRunning(worker, 'server-everything').length === 0 && (await localMcpServers(mcp!)).length === 0, 'the idle thread’s MCP server to stop');

    steps.push(exec('touch one.txt'), say('second answer'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'second prompt' });
    expect(second.structuredContent).toEqual({ threadId, content: 'second answer' });
    // "Approve for this session" still covers the command: no second question.
    expect(asked).toHaveLength(1);
    // The history came back from the store, and the MCP server was started again.
    const history = JSON.stringify(inputItems(model.requests[2]!));
    expect(history).toContain('first prompt');
    expect(history).toContain('first answer');
    expect(toolNames(model.requests[2]!)).toContain('mcp__everything__echo');
    const restarted = childrenRunning(worker, 'server-everything');
    expect(restarted).toHaveLength(1);
    expect(restarted[0]).not.toBe(started[0]);
    expect(model.errors).toEqual([]);
  });

  it('keeps a thread whose command still runs, so its output stays readable', async () => {
    mcp = await startMcp(world.home.path, { args: ['-c', 'multienv.idle_thread_unload_sec=0.2', '-c', 'mcp_servers.everything.enabled=false'] });
    steps.push(exec('sleep 30', { yield_time_ms: 250 }), say('left it running'));
    const busy = (await mcp.call('codex', { prompt: 'start something long', cwd: world.work.path })).structuredContent as { threadId: string };
    steps.push(say('nothing running'));
    const idle = (await mcp.call('codex', { prompt: 'just talk', cwd: world.work.path })).structuredContent as { threadId: string };
    // A sweep after the idle time has let the quiet thread go, and not the one with a command.
    await mcp.waitForStderr(new RegExp(`thread let go after being idle.*${idle.threadId}`), 'the quiet thread let go');
    steps.push({ kind: 'output', items: [{ type: 'function_call', name: 'write_stdin', arguments: { session_id: 1 } }] }, say('still there'));
    await mcp.call('codex-reply', { threadId: busy.threadId, prompt: 'check on it' });
    const outputs = JSON.stringify(inputItems(model.requests[4]!));
    expect(outputs).toContain('Process running with session ID 1');
    expect(outputs).not.toContain('unknown session_id');
  });
});
