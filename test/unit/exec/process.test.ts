import { jest } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagedProcess, type ProcessEvent } from '../../../src/exec/process.js';
import { isAlive, waitFor } from '../../helpers/process.js';

// `killGroup` signals a process group by its number (the leader's pid), also after the leader
// exited; it must do so only while the group may still have members, never once it is known empty.

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'managed-process-'));
});
afterAll(() => rm(work, { recursive: true, force: true }));
afterEach(() => jest.restoreAllMocks());

/** Starts `script` under /bin/sh and resolves with the process once an event of `kind` arrived. */
async function runUntil(script: string, kind: ProcessEvent['kind']): Promise<{ managed: ManagedProcess; stdout: () => string }> {
  let stdout = '';
  let reached: () => void = () => undefined;
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  const managed = await ManagedProcess.spawn(
    { file: '/bin/sh', argv: ['sh', '-c', script], cwd: work, env: { PATH: '/usr/bin:/bin' }, tty: false, pipeStdin: false },
    {
      onEvent: (event) => {
        if (event.kind === 'output') stdout += event.data.toString();
        if (event.kind === kind) reached();
      },
    },
  );
  await arrived;
  return { managed, stdout: () => stdout };
}

test('a group that emptied with its leader is never signalled again', async () => {
  const { managed } = await runUntil('exit 0', 'closed');
  const kill = jest.spyOn(process, 'kill');
  managed.killGroup();
  managed.killGroup();
  expect(kill).not.toHaveBeenCalled();
});

test('after its leader exited, the group is killed once: its background job, and no signal after that', async () => {
  // The job's output goes elsewhere, so `closed` arrives while it still runs.
  const { managed, stdout } = await runUntil('sleep 300 >/dev/null 2>&1 & echo $!', 'closed');
  const pid = Number(stdout().trim());
  let gone = false;
  try {
    expect(isAlive(pid)).toBe(true);
    const kill = jest.spyOn(process, 'kill');
    managed.killGroup();
    expect(kill.mock.calls).toEqual([
      [-managed.pid, 0],
      [-managed.pid, 'SIGKILL'],
    ]);
    await waitFor(() => !isAlive(pid), `background job ${pid} to be killed`);
    gone = true;
    kill.mockClear();
    managed.killGroup();
    expect(kill).not.toHaveBeenCalled();
  } finally {
    if (!gone && isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
});

test('terminate leaves the group of an exited process alone, as Codex does', async () => {
  const { managed, stdout } = await runUntil('sleep 300 >/dev/null 2>&1 & echo $!', 'closed');
  const pid = Number(stdout().trim());
  try {
    expect(managed.terminate()).toBe(false);
    expect(isAlive(pid)).toBe(true);
  } finally {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
});
