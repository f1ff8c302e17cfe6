import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LARGE_PIPE_BYTES } from '../../../src/exec/output-pipe.js';
import { nativeAddon, startPiped, type PipedChild, type StarterOptions } from '../../../src/exec/piped-start.js';
import { tempDir, waitFor } from '../../helpers/process.js';

/** A default pipe's capacity on Linux. */
const DEFAULT_PIPE_BYTES = 64 * 1024;
const OUTPUT_BYTES = 6 * 1024 * 1024;

let dir: Awaited<ReturnType<typeof tempDir>>;
let file: string;
beforeAll(async () => {
  dir = await tempDir('output-pipe-');
  file = join(dir.path, 'output.bin');
  // Random bytes: a read handed over twice, out of order or overwritten later would show.
  await writeFile(file, randomBytes(OUTPUT_BYTES));
});
afterAll(async () => {
  await dir.cleanup();
});

/** Starts `head -c OUTPUT_BYTES file` (it writes 8 KiB at a time, so /proc counts what is in the pipe); `closed` resolves once its output pipes have closed. */
async function startCat(options: StarterOptions): Promise<{ child: PipedChild; closed: Promise<void>; exited: () => boolean }> {
  let exited = false;
  let onClose: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (onClose = resolve));
  const child = await startPiped(
    { file: '/usr/bin/head', argv: ['head', '-c', String(OUTPUT_BYTES), file], cwd: dir.path, env: { PATH: '/usr/bin:/bin' }, pipeStdin: false },
    { onExit: () => (exited = true), onClose },
    options,
  );
  child.stderr.onData(() => undefined);
  return { child, closed, exited: () => exited };
}

/** Bytes the process has written so far (`wchar` of /proc/<pid>/io); undefined once it is gone. */
async function written(pid: number): Promise<number | undefined> {
  const io = await readFile(`/proc/${pid}/io`, 'utf8').catch(() => undefined);
  const match = io === undefined ? null : /^wchar: (\d+)$/m.exec(io);
  return match === null ? undefined : Number(match[1]);
}

describe.each([
  ['the native starter', { native: true }],
  ['child_process', { native: false }],
])('output read with %s', (_name, options: StarterOptions) => {
  it('hands every read over in order as a Buffer the listener may keep', async () => {
    const { child, closed } = await startCat(options);
    const reads: Buffer[] = [];
    child.stdout.onData((data) => reads.push(data));
    await closed;
    // Kept, not copied: a read buffer reused for a later read would have overwritten an earlier one.
    expect(Buffer.concat(reads).equals(await readFile(file))).toBe(true);
  });
});

(process.platform === 'linux' ? describe : describe.skip)('a pipe the command fills', () => {
  it('is enlarged and read in up to LARGE_PIPE_BYTES at a time, every read intact', async () => {
    expect(nativeAddon()?.setPipeSize).toBeDefined();
    const { child, closed, exited } = await startCat({ native: true });
    const reads: Buffer[] = [];
    let read = 0;
    // After each read, reading waits until the command has filled the pipe again (or ended): a
    // reader faster than the command would otherwise only ever find a little in the pipe.
    let failure: unknown;
    const refill = async (): Promise<void> => {
      const ahead = Math.max(...reads.map((data) => data.length)) >= DEFAULT_PIPE_BYTES ? LARGE_PIPE_BYTES : DEFAULT_PIPE_BYTES;
      await waitFor(async () => exited() || ((await written(child.pid)) ?? Infinity) >= Math.min(read + ahead, OUTPUT_BYTES), 'the command to fill its pipe', 5000);
    };
    child.stdout.onData((data) => {
      reads.push(data);
      read += data.length;
      // After a failed wait the rest is read as it comes: the test fails, fast.
      if (failure !== undefined) return;
      child.stdout.pause();
      refill().then(
        () => child.stdout.resume(),
        (error: unknown) => {
          failure = error;
          child.stdout.resume();
        },
      );
    });
    await closed;
    expect(failure).toBeUndefined();
    expect(Buffer.concat(reads).equals(await readFile(file))).toBe(true);
    const largest = Math.max(...reads.map((data) => data.length));
    expect(largest).toBeGreaterThan(DEFAULT_PIPE_BYTES);
    expect(largest).toBeLessThanOrEqual(LARGE_PIPE_BYTES);
  });
});
