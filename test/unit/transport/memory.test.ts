import { withBytes } from '../../../src/rpc/base64-field.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import type { MessageTransport } from '../../../src/transport/transport.js';
import { deferred } from '../../../src/util/deferred.js';

/** What `transport` received, in order: text as it came, values as `{ value }`. */
function record(transport: MessageTransport, count: number, values: boolean): Promise<(string | { value: object })[]> {
  const received: (string | { value: object })[] = [];
  const done = deferred<(string | { value: object })[]>();
  const take = (item: string | { value: object }): void => {
    received.push(item);
    if (received.length === count) done.resolve(received);
  };
  transport.onmessage = (text) => take(text);
  if (values) transport.onvalue = (value) => take({ value });
  transport.start();
  return done.promise;
}

/** An output notification with its bytes, as the exec-server sends it. */
function output(seq: number, chunk: Buffer): ReturnType<ReturnType<typeof withBytes>['framed']> {
  return withBytes({ processId: 'p', seq, stream: 'stdout', chunk }).framed('{"method":"process/output","params":', '}');
}

describe('memory transport', () => {
  it('with values, hands a message with bytes over as it is: the same Buffer, no base64, in order with text', async () => {
    const [a, b] = createMemoryPair('values', { values: true });
    const chunk = Buffer.from('raw bytes \u00ff\n');
    const arrived = record(b, 3, true);
    a.start();
    a.send('{"method":"first"}');
    a.send(output(1, chunk));
    a.send(Buffer.from('{"method":"last"}'));
    const [first, second, last] = await arrived;
    expect(first).toBe('{"method":"first"}');
    expect(second).toEqual({ value: { method: 'process/output', params: { processId: 'p', seq: 1, stream: 'stdout', chunk } } });
    expect((second as { value: { params: { chunk: Buffer } } }).value.params.chunk).toBe(chunk);
    expect(last).toBe('{"method":"last"}');
  });

  it('without values (a wire stand-in), or to a peer that takes no values, sends the JSON a wire carries', async () => {
    const chunk = Buffer.from([0, 1, 2, 250, 255]);
    const wire = `{"method":"process/output","params":{"processId":"p","seq":2,"stream":"stdout","chunk":"${chunk.toString('base64')}"}}`;
    for (const [options, takesValues] of [
      [{}, true],
      [{ values: true }, false],
    ] as const) {
      const [a, b] = createMemoryPair('text', options);
      const arrived = record(b, 1, takesValues);
      a.start();
      a.send(output(2, chunk));
      expect(await arrived).toEqual([wire]);
    }
  });

  it('delivers what was sent before the peer started, then closes after it', async () => {
    const [a, b] = createMemoryPair('early', { values: true });
    a.start();
    a.send(output(1, Buffer.from('x')));
    const closed = deferred<Error | undefined>();
    b.onclose = (reason) => closed.resolve(reason);
    const arrived = record(b, 1, true);
    await a.close();
    expect(await arrived).toHaveLength(1);
    expect((await closed.promise)?.message).toMatch(/peer closed/);
  });
});
