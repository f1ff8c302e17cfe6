// A server process that was killed but never reaped (a zombie: Docker without --init, or any
// parent that does not wait) still answers signal 0. Its lease must not keep the threads it held
// locked: end to end with our built server over stdio, the SDK client and the fake model.
import { readFileSync } from 'node:fs';
import type { FakeStep } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, storedRecords, tearDownMcpWorld, textOf, type McpHarness, type McpTestWorld, threadIdOf } from '../helpers/mcp.js';
import { isAlive, waitFor } from '../helpers/process.js';
import { gate, hold, say } from '../helpers/steps.js';

/**
 * Runs the server (`"$@"`) as a child of a process that never reaps it: sh exec's into `sleep`,
 * which never waits. The server keeps the client's stdin (through fd 3: an asynchronous command's
 * stdin would otherwise be /dev/null) and stdout; `sleep` closes its copies, so the client sees
 * the server's end.
 */
const NEVER_REAPS = ['/bin/sh', '-c', 'exec 3<&0; "$@" <&3 3<&- & exec sleep 600 <&- >&- 3<&-', 'sh'];

/** Field 3 of /proc/PID/stat: the process state (`Z` for a zombie); '' once the pid is gone. */
function processState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '';
  } catch {
    return '';
  }
}

describe('a lease holder that died but was never reaped', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  let holder: McpHarness | undefined;
  /** Holds the first turn open; opened in afterEach, so a failed test never leaves it held. */
  let release: { promise: Promise<void>; open: () => void };

  beforeEach(async () => {
    steps = [];
    release = gate();
    world = await setUpMcpWorld('mcp-dead-holder', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    release.open();
    if (holder !== undefined) {
      // Ending the parent that never waits hands the zombie to init, which reaps it.
      if (isAlive(holder.pid)) process.kill(holder.pid, 'SIGKILL');
      await holder.close();
      holder = undefined;
    }
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('does not keep its thread locked: the zombie still answers signal 0, yet codex-reply from another server continues the thread', async () => {
    holder = await startMcp(world.home.path, { launcher: NEVER_REAPS, args: ['--foreground'] });
    steps.push(hold(release.promise, say('never seen')));
    const threadId = threadIdOf(await holder.call('codex', { prompt: 'start and die', cwd: world.work.path, waitMs: 0 }));
    await world.model.waitForRequests(1);
    const serverPid = await holder.workerPid();
    expect(serverPid).not.toBe(holder.pid);

    process.kill(serverPid, 'SIGKILL');
    await waitFor(() => processState(serverPid) === 'Z', `the killed server (pid ${serverPid}) to be a zombie`);
    expect(isAlive(serverPid)).toBe(true);

    mcp = await startMcp(world.home.path);
    const status = await mcp.call('codex-status', { threadId });
    expect(status.isError).toBeFalsy();
    expect(status.structuredContent).not.toHaveProperty('runningElsewhere');
    steps.push(say('continued past the zombie'));
    const reply = await mcp.call('codex-reply', { threadId, prompt: 'go on' });
    expect(reply.isError).toBeFalsy();
    expect(textOf(reply)).toBe('continued past the zombie');
    const completions = (await storedRecords(world.home.path, threadId)).filter((record) => record.type === 'turn_completed').map((record) => record.status);
    expect(completions).toEqual(['interrupted', 'completed']);
  });
});
