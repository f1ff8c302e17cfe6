import { ReadBudget, readMemoryCost } from '../../../src/exec/read-budget.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';

/** The error a promise rejects with (it must reject). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('ReadBudget', () => {
  it('costs a read its bytes plus their base64 message', () => {
    expect(readMemoryCost(0)).toBe(0);
    expect(readMemoryCost(3)).toBe(3 + 4);
    expect(readMemoryCost(4)).toBe(4 + 8);
  });

  it('grants at once what fits, and makes later reads wait in order until room is given back', async () => {
    const budget = new ReadBudget(100, 60_000);
    const first = await budget.reserve(60);
    const order: string[] = [];
    const big = budget.reserve(70).then((r) => {
      order.push('big');
      return r;
    });
    // 30 would fit beside the first, but it arrived after the waiting 70: it must not overtake it.
    const small = budget.reserve(30).then((r) => {
      order.push('small');
      return r;
    });
    expect(budget.waiting).toBe(2);
    expect(budget.usedBytes).toBe(60);
    first.release();
    first.release(); // idempotent: gives back nothing more
    const bigHeld = await big;
    const smallHeld = await small;
    expect(order).toEqual(['big', 'small']);
    expect(budget.usedBytes).toBe(100);
    bigHeld.release();
    smallHeld.release();
    expect(budget.usedBytes).toBe(0);
  });

  it('refuses at once a read larger than the whole budget', async () => {
    const budget = new ReadBudget(100, 60_000);
    const error = await rejectionOf(budget.reserve(101));
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.LimitExceeded);
    expect((error as LocalError).message).toContain('needs 101 bytes of memory, more than the whole 100-byte read budget');
    expect(budget.waiting).toBe(0);
  });

  it('refuses a read as busy once its wait runs out, and lets the next one through', async () => {
    const budget = new ReadBudget(100, 10);
    const held = await budget.reserve(90);
    const error = await rejectionOf(budget.reserve(50));
    expect((error as LocalError).code).toBe(LocalErrorCode.Busy);
    expect((error as LocalError).message).toContain('the exec-server is busy');
    expect(budget.waiting).toBe(0);
    held.release();
    (await budget.reserve(50)).release();
    expect(budget.usedBytes).toBe(0);
  });

  it('takes a waiting read out of the queue when its signal aborts, unblocking those behind it', async () => {
    const budget = new ReadBudget(100, 60_000);
    const held = await budget.reserve(50);
    const controller = new AbortController();
    const blocked = budget.reserve(80, controller.signal);
    const behind = budget.reserve(40);
    controller.abort(new LocalError(LocalErrorCode.ConnectionClosed, 'connection closed'));
    expect(((await rejectionOf(blocked)) as LocalError).code).toBe(LocalErrorCode.ConnectionClosed);
    const granted = await behind;
    expect(budget.usedBytes).toBe(90);
    granted.release();
    held.release();
  });

  it('extends a reservation when room allows and gives all of it back at once', async () => {
    const budget = new ReadBudget(100, 60_000);
    const held = await budget.reserve(10);
    await held.extend(50);
    expect(held.bytes).toBe(60);
    expect(budget.usedBytes).toBe(60);
    held.release();
    expect(budget.usedBytes).toBe(0);
  });
});
