import { jest } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HELD_OUTPUT_BYTES, OUTPUT_EVENT_BYTES } from '../../../src/exec/output-gather.js';
import { LARGE_PIPE_BYTES } from '../../../src/exec/output-pipe.js';
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

  test('is read ahead while paused and emitted whole and in order, before the exit and close', async () => {
    const bytes = 200 * 1024;
    const { events, closed } = await startPaused(bytes);
    await closed;
    expectWhole(events, bytes);
  });

  test('holds at most HELD_OUTPUT_BYTES (then stops reading) and emits it all on resume, joined into events of at most OUTPUT_EVENT_BYTES', async () => {
    const bytes = 4 * HELD_OUTPUT_BYTES;
    const { managed, events, closed } = await startPaused(bytes);
    await waitFor(() => managed.heldBytes >= HELD_OUTPUT_BYTES, 'the hold to fill');
    // Reading stopped: the child is blocked on its full pipe, nothing was emitted and the hold is bounded by one read past it.
    expect(events).toEqual([]);
    expect(managed.heldBytes).toBeLessThanOrEqual(HELD_OUTPUT_BYTES + LARGE_PIPE_BYTES);
    managed.resume();
    await closed;
    expectWhole(events, bytes);
    expect(managed.heldBytes).toBe(0);
    // Joined reads make events of at most OUTPUT_EVENT_BYTES; a larger one is a single read of an enlarged pipe.
    for (const event of events) if (event.kind === 'output') expect(event.data.length).toBeLessThanOrEqual(Math.max(OUTPUT_EVENT_BYTES, LARGE_PIPE_BYTES));
  });
});

describe('output window', () => {
  /** Starts `script` with stdin piped and the given window, recording every event. */
  async function start(script: string, outputWindowMs: number) {
    const events: ProcessEvent[] = [];
    const listeners = new Set<() => void>();
    const managed = await ManagedProcess.spawn(
      { file: '/bin/sh', argv: ['sh', '-c', script], cwd: work, env: { PATH: '/usr/bin:/bin' }, tty: false, pipeStdin: true },
      {
        outputWindowMs,
        onEvent: (event) => {
          events.push(event);
          for (const listener of listeners) listener();
        },
      },
    );
    const stdout = (): string => Buffer.concat(events.flatMap((event) => (event.kind === 'output' ? [event.data] : []))).toString();
    /** Resolves once `predicate` holds of the events. */
    const until = (predicate: () => boolean): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (!predicate()) return;
          listeners.delete(check);
          resolve();
        };
        listeners.add(check);
        check();
      });
    return { managed, events, stdout, until };
  }

  test('holds output read within the window after an event, and the exit lets it out first', async () => {
    // A window far longer than the test: only the exit can let `b` out.
    const { managed, events, stdout, until } = await start('printf a; read l; printf b; read l; exit 3', 600_000);
    await until(() => stdout() === 'a');
    managed.write(Buffer.from('x\n'), 'w1');
    await waitFor(() => managed.heldBytes === 1, 'b to be held in the window');
    expect(stdout()).toBe('a');
    managed.write(Buffer.from('y\n'), 'w2');
    await until(() => events.at(-1)?.kind === 'closed');
    expect(stdout()).toBe('ab');
    expect(events.map((event) => event.kind)).toEqual(['output', 'output', 'exited', 'closed']);
    expect(events.map((event) => event.seq)).toEqual([1, 2, 3, 4]);
  });

  test('output held in the window goes out when the window ends, while the command still runs', async () => {
    const { managed, stdout, until } = await start('printf a; read l; printf b; read l', 50);
    await until(() => stdout() === 'a');
    managed.write(Buffer.from('x\n'), 'w1');
    // The command now waits on stdin: no exit lets `b` out, only the window's end (or no window).
    await until(() => stdout() === 'ab');
    expect(managed.running).toBe(true);
    managed.write(Buffer.from('y\n'), 'w2');
  });
});
