// Interrupts and crashes on the codex engine: the real Codex 0.169.0 (`codex app-server` from the
// pinned @openai/codex) runs the turns of our built server (stdio, real SDK client), the scripted
// fake model holds its answer so the turn is caught mid-way. `turn/interrupt` stops Codex's turn;
// a server killed with SIGKILL mid-turn leaves the turn recorded interrupted and the thread
// continuing in a new server; an app-server that dies mid-turn fails that turn only.
import { readdirSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FakeStep, RecordedRequest } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, storedRecords, tearDownMcpWorld, textOf, threadIdOf, writeMcpConfig, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { isAlive, waitFor } from '../helpers/process.js';
import { gate, hold, isRecord, say } from '../helpers/steps.js';

/** Keeps Codex off the network and makes codex the engine of new threads. */
const CODEX_EXTRA = ['[features]', 'plugins = false', '[analytics]', 'enabled = false', '[multienv]', 'engine = "codex"'].join('\n');

/** The request came from the real Codex 0.169.0 (its user agent and turn metadata), not from our agent. */
function fromCodex(request: RecordedRequest): boolean {
  return /^codex-multienv\/0\.169\.0 /.test(request.headers['user-agent'] ?? '') && request.headers['x-codex-turn-metadata'] !== undefined;
}

/** The pids under `pid` (children, theirs, …), read from /proc. */
function descendants(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // The process ended while the list was read.
    }
  }
  const found: number[] = [];
  const walk = (parent: number): void => {
    for (const [child, of] of parents) {
      if (of === parent) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return found;
}

/** The command line of `pid`, '' once it is gone. */
function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Every user message text the model was sent in `request`. */
function userTexts(request: RecordedRequest): string[] {
  const input = isRecord(request.body) && Array.isArray(request.body.input) ? request.body.input : [];
  return input.flatMap((item: unknown) => {
    if (!isRecord(item) || item.role !== 'user' || !Array.isArray(item.content)) return [];
    return item.content.flatMap((part: unknown) => (isRecord(part) && typeof part.text === 'string' ? [part.text] : []));
  });
}

describe('interrupts and crashes on the codex engine (real codex app-server 0.169.0)', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  /** Holds the first turn's model answer; opened in afterEach, so a failed test never leaves it held. */
  let release: { promise: Promise<void>; open: () => void };

  beforeEach(async () => {
    steps = [];
    release = gate();
    world = await setUpMcpWorld('codex-lifecycle', () => steps.shift() ?? say('script exhausted'));
    await writeMcpConfig(world.home.path, world.model.url, '');
    const config = await readFile(join(world.home.path, 'config.toml'), 'utf8');
    await writeFile(
      join(world.home.path, 'config.toml'),
      `${config.replace('[model_providers.fake]', '[model_providers.fake]\nname = "fake"\nwire_api = "responses"')}\n${CODEX_EXTRA}\n`,
    );
  });
  afterEach(async () => {
    release.open();
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  /** Starts a thread whose first turn waits on the held model answer; resolves once Codex asked the model. */
  async function heldTurn(harness: McpHarness): Promise<string> {
    steps.push(hold(release.promise, say('never seen')));
    const threadId = threadIdOf(await harness.call('codex', { prompt: 'first prompt', cwd: world.work.path, waitMs: 0 }));
    await world.model.waitForRequests(1);
    expect(fromCodex(world.model.requests[0]!)).toBe(true);
    return threadId;
  }

  /** The thread's next turn runs in Codex and carries the first turn's prompt: the same Codex thread. */
  async function continues(harness: McpHarness, threadId: string): Promise<void> {
    steps.push(say('continued'));
    const reply = await harness.call('codex-reply', { threadId, prompt: 'second prompt' });
    expect(reply.isError).toBeFalsy();
    expect(textOf(reply)).toBe('continued');
    const request = world.model.requests.at(-1)!;
    expect(fromCodex(request)).toBe(true);
    expect(userTexts(request)).toEqual(expect.arrayContaining(['first prompt', 'second prompt']));
  }

  const completions = async (threadId: string): Promise<unknown[]> =>
    (await storedRecords(world.home.path, threadId)).filter((record) => record.type === 'turn_completed').map((record) => record.status);

  it("turn/interrupt interrupts Codex's turn, and the thread continues", async () => {
    mcp = await startMcp(world.home.path);
    const threadId = await heldTurn(mcp);
    const interrupted = await mcp.call('turn/interrupt', { threadId });
    expect(interrupted.isError).toBeFalsy();
    expect(interrupted.structuredContent).toMatchObject({ threadId, interrupted: true, stopped: true, status: 'idle' });
    expect(await completions(threadId)).toEqual(['interrupted']);
    await continues(mcp, threadId);
    expect(await completions(threadId)).toEqual(['interrupted', 'completed']);
  });

  it('a server killed mid-turn (SIGKILL): its app-server goes too, the turn is recorded interrupted, and the Codex thread resumes in the next server', async () => {
    const first = await startMcp(world.home.path);
    mcp = first;
    const threadId = await heldTurn(first);
    const serverPid = await first.workerPid();
    const appServers = descendants(serverPid).filter((pid) => commandLine(pid).includes('app-server'));
    expect(appServers.length).toBeGreaterThan(0);
    process.kill(serverPid, 'SIGKILL');
    await waitFor(() => appServers.every((pid) => !isAlive(pid)), 'the killed server’s app-server to exit (stdin closed)');
    await first.close();

    mcp = await startMcp(world.home.path);
    const status = await mcp.call('codex-status', { threadId });
    expect(status.structuredContent).toMatchObject({ status: 'idle', lastTurn: { status: 'interrupted' } });
    await continues(mcp, threadId);
    expect(await completions(threadId)).toEqual(['interrupted', 'completed']);
  });

  it("a turn answered before its end was recorded (the server stopped in between): the next server records the end Codex's rollout has", async () => {
    mcp = await startMcp(world.home.path);
    steps.push(say('the first answer'));
    const answered = await mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path });
    expect(textOf(answered)).toBe('the first answer');
    const threadId = threadIdOf(answered);
    await mcp.close();
    mcp = undefined;
    // What a server killed between its answer and the turn's completion record leaves behind.
    const file = join(world.home.path, 'multienv', 'threads', `${threadId}.jsonl`);
    const lines = (await readFile(file, 'utf8')).split('\n').filter((line) => line.trim().length > 0);
    await writeFile(
      file,
      lines
        .filter((line) => !line.includes('"type":"turn_completed"'))
        .map((line) => `${line}\n`)
        .join(''),
    );
    expect(await completions(threadId)).toEqual([]);

    mcp = await startMcp(world.home.path);
    const status = await mcp.call('codex-status', { threadId });
    expect(status.structuredContent).toMatchObject({
      status: 'idle',
      lastAgentMessage: 'the first answer',
      lastTurn: { status: 'completed', lastAgentMessage: 'the first answer' },
    });
    expect(await completions(threadId)).toEqual(['completed']);
    await continues(mcp, threadId);
    expect(await completions(threadId)).toEqual(['completed', 'completed']);
  });

  it('an app-server that dies mid-turn fails that turn; the thread continues in a new app-server', async () => {
    mcp = await startMcp(world.home.path);
    steps.push(hold(release.promise, say('never seen')));
    const call = mcp.call('codex', { prompt: 'first prompt', cwd: world.work.path });
    await world.model.waitForRequests(1);
    const serverPid = await mcp.workerPid();
    const appServers = descendants(serverPid).filter((pid) => commandLine(pid).includes('app-server'));
    expect(appServers.length).toBeGreaterThan(0);
    for (const pid of appServers) process.kill(pid, 'SIGKILL');
    const result = await call;
    expect(result.isError).toBe(true);
    const threadId = threadIdOf(result);
    expect(textOf(result)).toMatch(/app-server stopped/);
    expect(await completions(threadId)).toEqual(['failed']);
    await continues(mcp, threadId);
    expect(await completions(threadId)).toEqual(['failed', 'completed']);
  });
});
