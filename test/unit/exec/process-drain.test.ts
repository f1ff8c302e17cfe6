import { ManagedProcess, type ProcessEvent } from '../../../src/exec/process.js';
import { tempDir } from '../../helpers/process.js';

// A command that writes a burst and exits at once leaves the end of the burst in the terminal (or
// pipe) when its exit is known. Every byte must still be read, and only then may `closed` come:
// callers (exec_command, process/read) stop at `closed`. A consumer that holds the event loop up
// (here: each of a few early chunks blocks it for STALL_MS, as a loaded machine or a long GC
// does) must not change that. Before the fix a terminal lost the burst's tail in most runs.

/** Bytes of the burst: more than a terminal holds at once (some 64 KiB), so reads are still due after the exit. */
const BURST_BYTES = 60_000;
const RUNS = 6;
/** How long each stalled chunk holds the event loop up. */
const STALL_MS = 250;
/** Which output chunks stall: the exit is reported while they are consumed. */
const STALLED_CHUNKS = new Set([2, 3, 4]);

let work: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await tempDir('process-drain-');
});
afterAll(() => work.cleanup());

/** Runs the burst once; resolves with the bytes seen before `closed` and the event kinds in order. */
async function burst(tty: boolean): Promise<{ bytes: number; kinds: ProcessEvent['kind'][] }> {
  const blocker = new Int32Array(new SharedArrayBuffer(4));
  let bytes = 0;
  let chunks = 0;
  const kinds: ProcessEvent['kind'][] = [];
  let closed: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (closed = resolve));
  await ManagedProcess.spawn(
    {
      file: '/bin/sh',
      // One write of the whole burst, then the exit: no newline, so the terminal does not grow it.
      argv: ['sh', '-c', `head -c ${BURST_BYTES} /dev/zero | tr '\\0' x`],
      cwd: work.path,
      env: { PATH: '/usr/bin:/bin' },
      tty,
      pipeStdin: false,
    },
    {
      onEvent: (event) => {
        kinds.push(event.kind);
        if (event.kind === 'output') {
          bytes += event.data.length;
          // Not a wait for anything: it keeps the event loop busy, as load would.
          if (STALLED_CHUNKS.has(++chunks)) Atomics.wait(blocker, 0, 0, STALL_MS);
        }
        if (event.kind === 'closed') closed();
      },
    },
  );
  await done;
  return { bytes, kinds };
}

describe.each([
  ['a terminal', true],
  ['pipes', false],
])('the output of a command on %s that exits right after a burst', (_name, tty) => {
  it(`is read in full before closed, ${RUNS} runs in a row`, async () => {
    const seen: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const { bytes, kinds } = await burst(tty);
      seen.push(bytes);
      // `closed` is the last event, exactly once; `exited` comes once, before it.
      expect(kinds.filter((kind) => kind === 'closed')).toHaveLength(1);
      expect(kinds.at(-1)).toBe('closed');
      expect(kinds.filter((kind) => kind === 'exited')).toHaveLength(1);
    }
    expect(seen).toEqual(Array.from({ length: RUNS }, () => BURST_BYTES));
  }, 60_000);
});

it('gives a terminal command the terminal as its controlling terminal, in a session of its own', async () => {
  let output = '';
  let closed: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (closed = resolve));
  const managed = await ManagedProcess.spawn(
    {
      file: '/bin/sh',
      // /dev/tty opens only for a process with a controlling terminal.
      argv: ['sh', '-c', 'echo via-dev-tty > /dev/tty && ps -o sid= -o pgid= -p $$'],
      cwd: work.path,
      env: { PATH: '/usr/bin:/bin' },
      tty: true,
      pipeStdin: false,
    },
    {
      onEvent: (event) => {
        if (event.kind === 'output') output += event.data.toString();
        if (event.kind === 'closed') closed();
      },
    },
  );
  await done;
  const [first, ids] = output.split('\r\n');
  expect(first).toBe('via-dev-tty');
  expect(ids?.trim().split(/\s+/).map(Number)).toEqual([managed.pid, managed.pid]);
});
