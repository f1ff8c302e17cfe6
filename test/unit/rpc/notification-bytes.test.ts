import { PassThrough } from 'node:stream';
import { ProcessOutput } from '../../../src/protocol/exec.js';
import { withBytes } from '../../../src/rpc/base64-field.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { StreamTransport } from '../../../src/transport/stream.js';
import { deferred } from '../../../src/util/deferred.js';

const open: RpcConnection[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((connection) => connection.close()));
});

/** A server connection and a client whose `process/output` handler takes bytes, over two pipes (NDJSON). */
function pair(): { server: RpcConnection; received: (count: number) => Promise<{ seq: number; chunk: string | Buffer }[]> } {
  const up = new PassThrough();
  const down = new PassThrough();
  const client = new RpcConnection(new StreamTransport(down, up, 'client-side'));
  const server = new RpcConnection(new StreamTransport(up, down, 'server-side'));
  open.push(client, server);
  const chunks: { seq: number; chunk: string | Buffer }[] = [];
  let wanted = deferred<void>();
  let count = 0;
  client.onNotificationWithBytes(ProcessOutput, 'chunk', (params) => {
    chunks.push({ seq: params.seq, chunk: params.chunk });
    if (chunks.length === count) wanted.resolve();
  });
  client.start();
  server.start();
  return {
    server,
    received: async (n) => {
      count = n;
      wanted = deferred<void>();
      if (chunks.length < n) await wanted.promise;
      return chunks.slice(0, n);
    },
  };
}

describe('notifications with a bytes field (onNotificationWithBytes)', () => {
  it('decode a large field straight from the message bytes; small ones and invalid base64 arrive as their text', async () => {
    const { server, received } = pair();
    const large = Buffer.alloc(100_000);
    for (let i = 0; i < large.length; i++) large[i] = (i * 31) % 256;
    server.notify(ProcessOutput, withBytes({ processId: 'p', seq: 1, stream: 'stdout' as const, chunk: large }));
    server.notify(ProcessOutput, { processId: 'p', seq: 2, stream: 'stdout', chunk: Buffer.from('small').toString('base64') });
    // Not strict base64 (URL-safe characters): parsed whole, the handler sees the text as sent.
    const urlSafe = `${'-_'.repeat(20_000)}AA==`;
    server.notify(ProcessOutput, { processId: 'p', seq: 3, stream: 'stdout', chunk: urlSafe });
    const [first, second, third] = await received(3);
    expect(first?.seq).toBe(1);
    expect(Buffer.isBuffer(first?.chunk) && first.chunk.equals(large)).toBe(true);
    expect(second).toEqual({ seq: 2, chunk: Buffer.from('small').toString('base64') });
    expect(third).toEqual({ seq: 3, chunk: urlSafe });
  });
});
