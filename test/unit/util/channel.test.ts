import { Channel } from '../../../src/util/channel.js';

async function drain<T>(channel: Channel<T>): Promise<T[]> {
  const seen: T[] = [];
  for await (const value of channel) seen.push(value);
  return seen;
}

describe('Channel', () => {
  it('delivers what was pushed before and after the consumer started, in order, then ends', async () => {
    const channel = new Channel<number>();
    channel.push(1);
    const seen = drain(channel);
    channel.push(2);
    await Promise.resolve();
    channel.push(3);
    channel.end();
    channel.push(4);
    expect(await seen).toEqual([1, 2, 3]);
  });

  it('throws the failure after the values pushed before it, wrapping a non-Error', async () => {
    const failed = new Channel<string>();
    failed.push('a');
    failed.fail(new Error('boom'));
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const value of failed) seen.push(value);
      })(),
    ).rejects.toThrow('boom');
    expect(seen).toEqual(['a']);

    const waiting = new Channel<string>();
    const pending = drain(waiting);
    waiting.fail('not an error');
    await expect(pending).rejects.toThrow('not an error');
  });

  it('hands values the consumer left unread, and later ones, to drop', async () => {
    const dropped: number[] = [];
    const channel = new Channel<number>((value) => dropped.push(value));
    channel.push(1);
    channel.push(2);
    channel.push(3);
    for await (const value of channel) {
      expect(value).toBe(1);
      break;
    }
    channel.push(4);
    expect(dropped).toEqual([2, 3, 4]);
  });

  it('has one consumer', () => {
    const channel = new Channel<number>();
    channel[Symbol.asyncIterator]();
    expect(() => channel[Symbol.asyncIterator]()).toThrow('a channel has one consumer');
  });
});
