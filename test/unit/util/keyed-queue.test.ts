import { describe, expect, it } from '@jest/globals';
import { deferred } from '../../../src/util/deferred.js';
import { KeyedSerialQueue } from '../../../src/util/keyed-queue.js';

/** A queue whose writes are recorded and held until the test lets them finish (or fail). */
function heldQueue(options: { maxDeferMs?: number; forgettable?: () => boolean } = {}) {
  const writes: { key: string; items: string[]; done: ReturnType<typeof deferred<void>> }[] = [];
  let started = deferred<void>();
  const queue = new KeyedSerialQueue<{ uses: number }, string>({
    create: () => ({ uses: 0 }),
    write: (key, state, items) => {
      state.uses += 1;
      const done = deferred<void>();
      writes.push({ key, items: [...items], done });
      started.resolve();
      return done.promise;
    },
    ...options,
  });
  /** Waits until the `n`th write (1-based) has started. */
  const writeStarted = async (n: number): Promise<void> => {
    while (writes.length < n) {
      started = deferred<void>();
      await started.promise;
    }
  };
  return { queue, writes, writeStarted };
}

describe('KeyedSerialQueue', () => {
  it('writes the items added while a write is in flight together in the next write (a group commit), in order', async () => {
    const { queue, writes, writeStarted } = heldQueue();
    const first = queue.add('t', 'a');
    await writeStarted(1);
    const next = [queue.add('t', 'b'), queue.add('t', 'c'), queue.add('t', 'd')];
    writes[0]?.done.resolve();
    await first;
    await writeStarted(2);
    expect(writes.map((write) => write.items)).toEqual([['a'], ['b', 'c', 'd']]);
    writes[1]?.done.resolve();
    await Promise.all(next);
  });

  it('rejects every item of a failed write, and goes on with the next', async () => {
    const { queue, writes, writeStarted } = heldQueue();
    const failing = [queue.add('t', 'a'), queue.add('t', 'b')];
    await writeStarted(1);
    const after = queue.add('t', 'c');
    writes[0]?.done.reject(new Error('disk full'));
    expect((await Promise.allSettled(failing)).map((result) => result.status)).toEqual(['rejected', 'rejected']);
    await writeStarted(2);
    writes[1]?.done.resolve();
    await after;
    expect(writes.map((write) => write.items)).toEqual([['a', 'b'], ['c']]);
  });

  it('never lets an item join a write queued before a task added between them', async () => {
    const { queue, writes, writeStarted } = heldQueue();
    const order: string[] = [];
    const first = queue.add('t', 'a');
    const task = queue.run('t', () => {
      order.push(`task after ${writes.length} write(s)`);
      return Promise.resolve();
    });
    const later = queue.add('t', 'b');
    await writeStarted(1);
    writes[0]?.done.resolve();
    await writeStarted(2);
    writes[1]?.done.resolve();
    await Promise.all([first, task, later]);
    expect(writes.map((write) => write.items)).toEqual([['a'], ['b']]);
    expect(order).toEqual(['task after 1 write(s)']);
  });

  it('parks a deferred item until the next item or task of its key, which it is written with (or before)', async () => {
    const { queue, writes, writeStarted } = heldQueue({ maxDeferMs: 600_000 });
    const parked = queue.add('t', 'last item', { defer: true });
    const alsoParked = queue.add('t', 'another', { defer: true });
    // Other keys are not held up by it.
    const other = queue.add('u', 'x');
    await writeStarted(1);
    expect(writes.map((write) => write.key)).toEqual(['u']);
    const carrier = queue.add('t', 'completion');
    await writeStarted(2);
    expect(writes[1]?.items).toEqual(['last item', 'another', 'completion']);
    for (const write of writes) write.done.resolve();
    await Promise.all([parked, alsoParked, other, carrier]);

    const beforeTask = queue.add('t', 'before a task', { defer: true });
    const task = queue.run('t', () => Promise.resolve(writes.length));
    await writeStarted(3);
    writes[2]?.done.resolve();
    expect(await task).toBe(3);
    await beforeTask;
  });

  it('writes a deferred item alone once its deadline passes, and at drain', async () => {
    const { queue, writes, writeStarted } = heldQueue({ maxDeferMs: 1 });
    const alone = queue.add('t', 'alone', { defer: true });
    await writeStarted(1);
    writes[0]?.done.resolve();
    await alone;
    const slow = heldQueue({ maxDeferMs: 600_000 });
    const drained = slow.queue.add('t', 'at drain', { defer: true });
    const draining = slow.queue.drain();
    await slow.writeStarted(1);
    slow.writes[0]?.done.resolve();
    await Promise.all([drained, draining]);
    expect(slow.writes.map((write) => write.items)).toEqual([['at drain']]);
  });

  it('forgets an idle key, but not while an item of it is parked (its order is kept)', async () => {
    const { queue, writes, writeStarted } = heldQueue({ maxDeferMs: 600_000 });
    const first = queue.add('t', 'a');
    await writeStarted(1);
    const parked = queue.add('t', 'b', { defer: true });
    writes[0]?.done.resolve();
    await first;
    // The write before it settled: the key is idle apart from the parked item, and kept for it.
    expect(queue.peek('t')).toEqual({ uses: 1 });
    const carrier = queue.add('t', 'c');
    await writeStarted(2);
    expect(writes[1]?.items).toEqual(['b', 'c']);
    writes[1]?.done.resolve();
    await Promise.all([parked, carrier]);
    await queue.drain();
    await new Promise((resolve) => setImmediate(resolve));
    expect(queue.peek('t')).toBeUndefined();
  });
});
