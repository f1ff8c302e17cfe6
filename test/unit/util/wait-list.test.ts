import { WaitList } from '../../../src/util/wait-list.js';

describe('WaitList', () => {
  it('wakes every waiter at once', async () => {
    const list = new WaitList();
    const waits = [list.wait(60_000), list.wait(60_000)];
    expect(list.size).toBe(2);
    list.wakeAll();
    await Promise.all(waits);
    expect(list.size).toBe(0);
  });

  it('ends a wait at its deadline, also when a later waiter was woken early and the timer was armed for it', async () => {
    const list = new WaitList();
    const long = list.wait(60_000);
    list.wakeAll();
    await long;
    // The timer armed for the first wait is still set for a minute from now; this one is shorter.
    await list.wait(5);
    const short = list.wait(5);
    const longer = list.wait(60_000);
    await short;
    expect(list.size).toBe(1);
    list.wakeAll();
    await longer;
  });

  it('rejects with the signal reason when aborted, and leaves the others waiting', async () => {
    const list = new WaitList();
    const controller = new AbortController();
    const aborted = list.wait(60_000, controller.signal);
    const other = list.wait(60_000);
    controller.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(list.size).toBe(1);
    list.wakeAll();
    await other;
    await expect(list.wait(60_000, controller.signal)).rejects.toThrow('stop');
  });
});
