import { RemoteProcess } from '../../../src/exec/remote-process.js';

const control = {
  write: () => Promise.resolve('accepted' as const),
  interrupt: () => Promise.resolve(),
  terminate: () => Promise.resolve(true),
  reconnecting: () => undefined,
};

describe('RemoteProcess', () => {
  it('wakes every concurrent waiter when an event arrives, not only the last one', async () => {
    const process = new RemoteProcess('p1', control);
    const woken: string[] = [];
    const first = process.waitForEvents(60_000).then(() => woken.push('first'));
    const second = process.waitForEvents(60_000).then(() => woken.push('second'));
    process.accept({ seq: 1, kind: 'output', stream: 'stdout', data: Buffer.from('x') });
    await Promise.all([first, second]);
    expect(woken.sort()).toEqual(['first', 'second']);
  });

  it('tells its client once when it is finished (closed or failed), so the client can forget it', () => {
    const closed = new RemoteProcess('p2', control);
    let finished = 0;
    closed.onFinished = () => (finished += 1);
    closed.accept({ seq: 1, kind: 'exited', exitCode: 0 });
    expect(finished).toBe(0);
    closed.accept({ seq: 2, kind: 'closed' });
    closed.fail(new Error('late'));
    expect(finished).toBe(1);

    const failed = new RemoteProcess('p3', control);
    failed.onFinished = () => (finished += 1);
    failed.fail(new Error('connection lost'));
    expect(finished).toBe(2);
  });
});
