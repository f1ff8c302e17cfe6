import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { ThreadBusyError } from '../../../src/session/ownership.js';
import { ThreadLeases } from '../../../src/session/thread-lease.js';
import { LocalErrorCode } from '../../../src/util/errors.js';
import { waitFor } from '../../helpers/process.js';

let dir: string;

beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), 'thread-lease-')), 'threads');
});

afterEach(async () => {
  await rm(join(dir, '..'), { recursive: true, force: true });
});

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  if (child.pid === undefined) throw new Error('no pid');
  return child.pid;
}

/** Fields 3 (state) and 22 (start time in clock ticks) of /proc/PID/stat. */
function procStat(pid: number): { state: string; startTicks: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', startTicks: Number(fields[19]) };
}

/**
 * A real zombie: a process that has exited under a parent that never reaps it (sh exec's into
 * `sleep`, which never waits), as a worker is under a container's pid 1 without an init. Killing
 * `parent` hands the zombie to init, which reaps it.
 */
async function zombie(): Promise<{ pid: number; parent: ChildProcess }> {
  // The child exits only once its parent has become `sleep` (`$$` in a subshell is the parent
  // shell's pid): had it exited earlier, the shell might have reaped it before the exec.
  const parent = spawn('/bin/sh', ['-c', '(while [ "$(cat /proc/$$/comm)" != sleep ]; do sleep 0.01; done) & echo $!; exec sleep 600'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: parent.stdout }).once('line', resolve);
    parent.once('exit', () => reject(new Error("the zombie's parent exited early")));
  });
  const pid = Number(line);
  await waitFor(() => procStat(pid).state === 'Z', `pid ${pid} to be a zombie`);
  return { pid, parent };
}

async function writeLease(threadId: string, content: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${threadId}.lease`), content);
}

describe('ThreadLeases', () => {
  it('gives a thread to one holder at a time: a second holder gets ThreadBusyError naming the first, until it releases', async () => {
    const first = new ThreadLeases({ dir });
    const second = new ThreadLeases({ dir });
    await first.acquire('t1');
    await first.acquire('t1');
    const refused = await second.acquire('t1').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(ThreadBusyError);
    expect(refused).toMatchObject({ code: LocalErrorCode.Busy, threadId: 't1', holder: { pid: process.pid, host: hostname() } });
    expect(String((refused as Error).message)).toContain(`another codex-multienv process (pid ${process.pid}`);
    expect(await second.holderElsewhere('t1')).toMatchObject({ pid: process.pid });
    expect([...(await second.heldElsewhere()).keys()]).toEqual(['t1']);
    expect(await first.holderElsewhere('t1')).toBeUndefined();

    first.release('t1');
    expect(await second.holderElsewhere('t1')).toBeUndefined();
    await second.acquire('t1');
    second.releaseAll();
    expect((await readdir(dir)).filter((name) => !name.startsWith('.'))).toEqual([]);
  });

  it('wakes a watcher of a lease when it is given back, not when another thread’s changes, and ends a wait at its time or on abort', async () => {
    const holder = new ThreadLeases({ dir });
    const waiter = new ThreadLeases({ dir });
    await holder.acquire('t1');
    const lease = waiter.watchLease('t1');
    try {
      let woken = false;
      // A wait far longer than the test's timeout: only the file event can end it in time.
      const woke = lease.next(2 ** 31 - 1).then(() => (woken = true));
      await holder.acquire('other');
      holder.release('other');
      await new Promise((resolve) => setImmediate(resolve));
      expect(woken).toBe(false);
      holder.release('t1');
      await woke;
      expect(await waiter.holderElsewhere('t1')).toBeUndefined();
      await lease.next(1);
      const controller = new AbortController();
      const aborted = lease.next(2 ** 31 - 1, controller.signal);
      controller.abort();
      await aborted;
    } finally {
      lease.close();
      holder.releaseAll();
    }
  });

  it('takes over the lease of a process that is gone', async () => {
    const pid = await deadPid();
    await writeLease('t2', JSON.stringify({ pid, host: hostname(), since: '2026-01-01T00:00:00.000Z' }));
    const leases = new ThreadLeases({ dir });
    expect(await leases.holderElsewhere('t2')).toBeUndefined();
    await leases.acquire('t2');
    expect(JSON.parse(await readFile(join(dir, 't2.lease'), 'utf8'))).toMatchObject({ pid: process.pid });
  });

  it('takes over the lease of a zombie: a holder that exited but was never reaped still answers signal 0', async () => {
    const { pid, parent } = await zombie();
    try {
      // As the holder wrote it, start time included: the zombie keeps its pid and its start time.
      await writeLease('t9', JSON.stringify({ pid, host: hostname(), startTicks: procStat(pid).startTicks, since: '2026-01-01T00:00:00.000Z' }));
      expect(() => process.kill(pid, 0)).not.toThrow();
      const leases = new ThreadLeases({ dir });
      expect(await leases.holderElsewhere('t9')).toBeUndefined();
      expect([...(await leases.heldElsewhere()).keys()]).toEqual([]);
      await leases.acquire('t9');
      expect(JSON.parse(await readFile(join(dir, 't9.lease'), 'utf8'))).toMatchObject({ pid: process.pid });
      leases.releaseAll();
    } finally {
      const reaped = new Promise((resolve) => parent.once('exit', resolve));
      parent.kill('SIGKILL');
      await reaped;
    }
  });

  it('does not mistake a reused pid for the holder: a different start time makes the lease stale', async () => {
    await writeLease('t3', JSON.stringify({ pid: process.pid, host: hostname(), startTicks: 1, since: '2026-01-01T00:00:00.000Z' }));
    const leases = new ThreadLeases({ dir });
    await leases.acquire('t3');
    const taken: unknown = JSON.parse(await readFile(join(dir, 't3.lease'), 'utf8'));
    expect(taken).toMatchObject({ pid: process.pid });
    expect(taken).not.toMatchObject({ startTicks: 1 });
  });

  it('never judges a lease of another host stale, and takes over a damaged lease file', async () => {
    const pid = await deadPid();
    await writeLease('t4', JSON.stringify({ pid, host: 'elsewhere.example', since: '2026-01-01T00:00:00.000Z' }));
    await writeLease('t5', '{"pid": tor');
    const leases = new ThreadLeases({ dir });
    await expect(leases.acquire('t4')).rejects.toThrow(new RegExp(`pid \\d+ on elsewhere\\.example.*if that host is gone for good, remove ${join(dir, 't4.lease')}`));
    await leases.acquire('t5');
    expect(JSON.parse(await readFile(join(dir, 't5.lease'), 'utf8'))).toMatchObject({ pid: process.pid });
  });

  it('refuses a thread id that is not a plain name', async () => {
    const leases = new ThreadLeases({ dir });
    await expect(leases.acquire('../escape')).rejects.toMatchObject({ code: LocalErrorCode.InvalidArgument });
  });

  it('delivers an interrupt request to the holder of the thread only, once, and drops a stale one when a lease is taken', async () => {
    const seen: [string, unknown][] = [];
    const holder = new ThreadLeases({ dir, onInterrupt: (threadId, request) => seen.push([threadId, request]) });
    const other = new ThreadLeases({ dir });
    await holder.acquire('t7');
    other.requestInterrupt('t7', { turnId: 'turn-1', reason: 'stop it' });
    await waitFor(() => seen.length > 0, 'the interrupt request to reach its holder');
    expect(seen).toEqual([['t7', { turnId: 'turn-1', reason: 'stop it' }]]);
    expect((await readdir(dir)).filter((name) => name.endsWith('.interrupt'))).toEqual([]);

    // Not held here: left for its holder. Taking the lease later drops it, so it cannot stop a new turn.
    other.requestInterrupt('t8', { turnId: 'turn-2', reason: 'late' });
    expect((await readdir(dir)).filter((name) => name.endsWith('.interrupt'))).toEqual(['t8.interrupt']);
    await holder.acquire('t8');
    expect((await readdir(dir)).filter((name) => name.endsWith('.interrupt'))).toEqual([]);
    expect(seen).toHaveLength(1);
    holder.releaseAll();
  });

  it('lets exactly one of many concurrent takers of a stale lease win', async () => {
    const pid = await deadPid();
    await writeLease('t6', JSON.stringify({ pid, host: hostname(), since: '2026-01-01T00:00:00.000Z' }));
    const takers = Array.from({ length: 8 }, () => new ThreadLeases({ dir }));
    const results = await Promise.allSettled(takers.map((leases) => leases.acquire('t6')));
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    const reasons = results.flatMap((result): unknown[] => (result.status === 'rejected' ? [result.reason] : []));
    expect(reasons).toHaveLength(7);
    for (const reason of reasons) expect(reason).toBeInstanceOf(ThreadBusyError);
  });
});
