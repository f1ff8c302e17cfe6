import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { StreamTransport } from '../../../src/transport/stream.js';
import { LocalErrorCode } from '../../../src/util/errors.js';
import { deferred } from '../../../src/util/deferred.js';

/** Starts a transport over `input` and resolves with the reason it closed. */
function closeReason(input: PassThrough): Promise<Error | undefined> {
  const transport = new StreamTransport(input, new PassThrough(), 'peer');
  const closed = deferred<Error | undefined>();
  transport.onclose = (reason) => closed.resolve(reason);
  transport.start();
  return closed.promise;
}

describe('StreamTransport', () => {
  it('closes when its input ends after it started', async () => {
    const input = new PassThrough();
    const reason = closeReason(input);
    input.end();
    expect(await reason).toMatchObject({ code: LocalErrorCode.ConnectionClosed, message: 'peer closed its output' });
  });

  it('closes when its input had already ended before it started (a client that closed its pipe while the server was starting)', async () => {
    const input = new PassThrough();
    input.resume();
    input.end();
    await once(input, 'end');
    expect(await closeReason(input)).toMatchObject({ code: LocalErrorCode.ConnectionClosed, message: 'peer closed its output' });
  });

  it('closes when its input was destroyed before it started', async () => {
    const input = new PassThrough();
    input.destroy();
    await once(input, 'close');
    expect(await closeReason(input)).toMatchObject({ code: LocalErrorCode.ConnectionClosed });
  });
});
