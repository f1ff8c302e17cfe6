import { MAX_WEBSOCKET_FRAME_BYTES } from '../../../src/protocol/limits.js';
import { connectWebSocket, listenWebSocket } from '../../../src/transport/websocket.js';
import type { MessageTransport } from '../../../src/transport/transport.js';
import { deferred } from '../../../src/util/deferred.js';

/** The next message `transport` receives. */
function nextMessage(transport: MessageTransport): Promise<string> {
  const received = deferred<string>();
  transport.onmessage = (text) => received.resolve(text);
  return received.promise;
}

describe('websocket transport', () => {
  it('sends a message longer than one frame in fragments and it arrives whole, both ways', async () => {
    const serverSide = deferred<MessageTransport>();
    const listener = await listenWebSocket({ host: '127.0.0.1', port: 0, onConnection: (transport) => serverSide.resolve(transport) });
    const client = await connectWebSocket(listener.url, { timeoutMs: 5000 });
    try {
      const server = await serverSide.promise;
      const fromClient = nextMessage(server);
      server.start();
      const fromServer = nextMessage(client);
      client.start();
      // 3- and 4-byte characters after a 1-byte one: fragments end inside characters.
      const text = `x${'€'.repeat(MAX_WEBSOCKET_FRAME_BYTES / 2)}${'😀'.repeat(MAX_WEBSOCKET_FRAME_BYTES / 4)}`;
      expect(Buffer.byteLength(text)).toBeGreaterThan(2 * MAX_WEBSOCKET_FRAME_BYTES);
      client.send(text);
      expect(await fromClient).toBe(text);
      // The server's large answers are UTF-8 bytes, not strings.
      server.send(Buffer.from(text));
      expect(await fromServer).toBe(text);
    } finally {
      await client.close();
      await listener.close();
    }
  });

  it('says why it closed when the peer sent a message over the limit (a websocket cannot skip one)', async () => {
    const serverSide = deferred<MessageTransport>();
    const listener = await listenWebSocket({ host: '127.0.0.1', port: 0, onConnection: (transport) => serverSide.resolve(transport) });
    const client = await connectWebSocket(listener.url, { timeoutMs: 5000, maxMessageBytes: 1024 });
    try {
      const closed = deferred<Error | undefined>();
      client.onclose = (reason) => closed.resolve(reason);
      client.start();
      const server = await serverSide.promise;
      server.start();
      server.send('x'.repeat(2048));
      expect((await closed.promise)?.message).toMatch(/ closed \(code \d+\): the peer sent a message larger than the 1024-byte limit$/);
    } finally {
      await client.close();
      await listener.close();
    }
  });
});
