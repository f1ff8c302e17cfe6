// Letting go of threads: left idle (multienv.idle_thread_unload_sec) or closed with thread/close,
// a thread's MCP servers and commands stop, and its next turn reads it back with its history (and,
// when idle, its session approvals); archived, it is no longer listed or continued. Our server
// composed in-process (its commands and MCP servers are children of this process), the SDK client, the fake model, and @modelcontextprotocol/server-everything
// as the thread's MCP server.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { inputItems, toolNames, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, textOf, writeMcpConfig, type McpHarness } from '../helpers/mcp.js';
import { REPO_ROOT, waitFor } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say } from '../helpers/steps.js';

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
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').includes(needle)) found.push(Number(entry));
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

describe('threads let go: idle, or closed with thread/close', () => {
  let world: Awaited<ReturnType<typeof setUpMcpWorld>>;
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-idle', () => steps.shift() ?? say('script exhausted'));
    model = world.model;
    await writeMcpConfig(
      world.home.path,
      model.url,
      ['[mcp_servers.everything]', `command = ${JSON.stringify(process.execPath)}`, `args = [${JSON.stringify(EVERYTHING)}, "stdio"]`].join('\n'),
    );
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('stops an idle thread’s MCP servers, then continues it with its history, its MCP servers started again and its session approvals kept', async () => {
    const asked: unknown[] = [];
    mcp = await startInProcessMcp(world.home.path, {
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
    mcp = await startInProcessMcp(world.home.path, { args: ['-c', 'multienv.idle_thread_unload_sec=0.2', '-c', 'mcp_servers.everything.enabled=false'] });
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

  describe('thread/close', () => {
    const threadIdOf = (result: { structuredContent?: unknown }): string => (result.structuredContent as { threadId: string }).threadId;
    const listedIds = async (): Promise<string[]> => {
      const structured = (await mcp!.call('thread/list', {})).structuredContent as { threads: { threadId: string }[] };
      return structured.threads.map((thread) => thread.threadId);
    };

    it('stops the thread’s commands and MCP servers, lets go of it, and codex-reply continues it', async () => {
      mcp = await startInProcessMcp(world.home.path);
      const worker = await mcp.workerPid();
      steps.push(exec('sleep 31', { yield_time_ms: 250 }), say('started it'));
      const threadId = threadIdOf(await mcp.call('codex', { prompt: 'start a long command', cwd: world.work.path }));
      expect(childrenRunning(worker, 'server-everything')).toHaveLength(1);
      expect(childrenRunning(worker, 'sleep 31')).toHaveLength(1);

      const closed = await mcp.call('thread/close', { threadId });
      expect(closed.isError).toBeFalsy();
      expect(closed.structuredContent).toEqual({ threadId, archivedTo: null, stoppedCommands: 1, stoppedMcpServers: 1 });
      await waitFor(() => childrenRunning(worker, 'server-everything').length === 0 && childrenRunning(worker, 'sleep 31').length === 0, 'the closed thread’s processes to end');
      expect(await listedIds()).toContain(threadId);

      steps.push(say('continued'));
      expect((await mcp.call('codex-reply', { threadId, prompt: 'go on' })).structuredContent).toEqual({ threadId, content: 'continued' });
      expect(JSON.stringify(inputItems(model.requests.at(-1)!))).toContain('start a long command');
    });

    it('archives: the file moves to archived/, the thread is no longer listed, and codex-reply says where it went', async () => {
      mcp = await startInProcessMcp(world.home.path, { args: ['-c', 'mcp_servers.everything.enabled=false'] });
      steps.push(say('done'));
      const threadId = threadIdOf(await mcp.call('codex', { prompt: 'short', cwd: world.work.path }));
      const archivedTo = join(world.home.path, 'multienv', 'threads', 'archived', `${threadId}.jsonl`);
      const closed = await mcp.call('thread/close', { threadId, archive: true });
      expect(closed.structuredContent).toEqual({ threadId, archivedTo, stoppedCommands: 0, stoppedMcpServers: 0 });
      expect(existsSync(archivedTo)).toBe(true);
      expect(readFileSync(archivedTo, 'utf8')).toContain('short');
      expect(existsSync(join(world.home.path, 'multienv', 'threads', `${threadId}.jsonl`))).toBe(false);
      expect(await listedIds()).not.toContain(threadId);
      const reply = await mcp.call('codex-reply', { threadId, prompt: 'again' });
      expect(reply.isError).toBe(true);
      expect(textOf(reply)).toContain(`Session not found for thread_id: ${threadId} (it was archived with thread/close: ${archivedTo}`);
    });

    it('refuses while a turn runs, and for an unknown thread', async () => {
      mcp = await startInProcessMcp(world.home.path, { args: ['-c', 'mcp_servers.everything.enabled=false'] });
      const release = gate();
      steps.push(hold(release.promise, say('slow done')));
      const threadId = threadIdOf(await mcp.call('codex', { prompt: 'slow', cwd: world.work.path, waitMs: 0 }));
      const refused = await mcp.call('thread/close', { threadId });
      expect(refused.isError).toBe(true);
      expect(textOf(refused)).toMatch(/^thread\/close: thread \S+ has a turn running \(\S+\); stop it with turn\/interrupt first/);
      release.open();
      const unknown = await mcp.call('thread/close', { threadId: 'no-such-thread' });
      expect(unknown.isError).toBe(true);
      expect(textOf(unknown)).toContain('Session not found for thread_id: no-such-thread');
    });
  });
});
