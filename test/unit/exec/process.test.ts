import { jest } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HELD_OUTPUT_BYTES, ManagedProcess, type ProcessEvent } from '../../../src/exec/process.js';
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

describe('paused piped output', () => {
  /** Starts `head -c bytes /dev/zero`, paused before its first output, recording every event. */
  async function startPaused(bytes: number): Promise<{ managed: ManagedProcess; events: ProcessEvent[]; closed: Promise<void> }> {
    const events: ProcessEvent[] = [];
    let close: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => (close = resolve));
    const managed = await ManagedProcess.spawn(
      { file: '/usr/bin/head', argv: ['head', '-c', String(bytes), '/dev/zero'], cwd: work, env: { PATH: '/usr/bin:/bin' }, tty: false, pipeStdin: false },
      {
        onEvent: (event) => {
          events.push(event);
          if (event.kind === 'closed') close();
        },
      },
    );
    // The child's output arrives in later turns of the event loop: nothing is emitted before this.
    managed.pause();
    return { managed, events, closed };
  }

  /** The events' seqs are 1..n in order, `closed` last, and the output adds up to `bytes` zeros. */
  function expectWhole(events: readonly ProcessEvent[], bytes: number): void {
    expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index + 1));
    expect(events.at(-1)?.kind).toBe('closed');
    const output = Buffer.concat(events.flatMap((event) => (event.kind === 'output' ? [event.data] : [])));
    expect(output.length).toBe(bytes);
    expect(output.every((byte) => byte === 0)).toBe(true);
  }

  test('is read ahead while paused and emitted as few large events, in order, before the exit and close', async () => {
    // At least four pipe reads (64 KiB at most each), emitted held: when the exit comes, and any
    // rest when the pipe closes.
    const bytes = 200 * 1024;
    const { events, closed } = await startPaused(bytes);
    await closed;
    expectWhole(events, bytes);
    expect(events.filter((event) => event.kind === 'output').length).toBeLessThanOrEqual(2);
  });

  test('holds at most HELD_OUTPUT_BYTES (then stops reading) and emits it all on resume, in events of at most that size', async () => {
    const bytes = 4 * HELD_OUTPUT_BYTES;
    const { managed, events, closed } = await startPaused(bytes);
    await waitFor(() => managed.heldBytes >= HELD_OUTPUT_BYTES, 'the hold to fill');
    // Reading stopped: the child is blocked on its full pipe, nothing was emitted and the hold is bounded by one read past it.
    expect(events).toEqual([]);
    expect(managed.heldBytes).toBeLessThanOrEqual(HELD_OUTPUT_BYTES + 64 * 1024);
    managed.resume();
    await closed;
    expectWhole(events, bytes);
    expect(managed.heldBytes).toBe(0);
    for (const event of events) if (event.kind === 'output') expect(event.data.length).toBeLessThanOrEqual(HELD_OUTPUT_BYTES);
  });
});
