import { homedir } from 'node:os';
import { join } from 'node:path';
import { ExecServer } from '../../../src/exec/server.js';
import { EnvironmentStatus, FsGetMetadata, Initialize, Initialized } from '../../../src/protocol/exec.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import { deferred } from '../../../src/util/deferred.js';
import { LocalErrorCode } from '../../../src/util/errors.js';
import { createLogger } from '../../../src/util/logger.js';
import { tempDir, waitFor } from '../../helpers/process.js';

// A request given up on (its signal aborted, as when a turn is stopped, or its deadline passed) is
// still answered by the peer: the exec-server protocol cannot cancel it. That answer is late, not
// unsolicited: no warning, and no `onUnsolicitedResponse` (which makes our exec-server hang up).

/** A connection logging into a string, and whether it ever called a response unsolicited. */
function loggingClient(transport: ReturnType<typeof createMemoryPair>[0]): { connection: RpcConnection; log: () => string; unsolicited: () => number } {
  let log = '';
  let unsolicited = 0;
  const logger = createLogger({ write: (line) => (log += line), level: 'debug' });
  const connection = new RpcConnection(transport, { logger, onUnsolicitedResponse: () => (unsolicited += 1) });
  return { connection, log: () => log, unsolicited: () => unsolicited };
}

describe('late responses to requests given up on', () => {
  let work: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    work = await tempDir('rpc-late-');
  });
  afterAll(() => work.cleanup());

  it('drops the in-process exec-server’s “No such file or directory” answer to an aborted fs/getMetadata quietly', async () => {
    const host = { env: { PATH: '/usr/bin:/bin' }, cwd: work.path, homeDir: homedir(), tempDir: work.path, platform: process.platform, version: 'test' };
    const server = new ExecServer({ env: host.env, host });
    // As the `local` environment connects: values handed over in process.
    const [clientSide, serverSide] = createMemoryPair('local', { values: true });
    server.serve(serverSide, { resumable: false });
    const client = loggingClient(clientSide);
    client.connection.start();
    try {
      await client.connection.request(Initialize, { clientName: 'test' });
      client.connection.notify(Initialized, {});
      const stopped = new AbortController();
      const asked = client.connection.request(FsGetMetadata, { path: `file://${join(work.path, 'missing')}` }, { signal: stopped.signal });
      // The turn stops while the server is looking: the caller has its answer (aborted) at once.
      stopped.abort(new Error('turn stopped'));
      await expect(asked).rejects.toThrow('turn stopped');
      // The server's answer (ENOENT) still comes, later: seen as late, not as an answer to nothing.
      await waitFor(() => /late response|no pending request/.test(client.log()), 'the late answer to arrive');
      expect(client.log()).toMatch(/dropped the late response to a request given up on .*"method":"fs\/getMetadata"/);
      expect(client.log()).not.toMatch(/no pending request/);
      expect(client.unsolicited()).toBe(0);
      // The connection still serves.
      expect(await client.connection.request(EnvironmentStatus, {})).toMatchObject({ status: expect.any(String) as unknown });
    } finally {
      await client.connection.close();
    }
  });

  it('drops a late answer to a timed-out request quietly, and still flags an answer to a request never sent', async () => {
    const [clientSide, peerSide] = createMemoryPair('scripted');
    const peer = new RpcConnection(peerSide);
    const answer = deferred<void>();
    peer.onRequest(FsGetMetadata, async () => {
      await answer.promise;
      throw RpcError.notFound('No such file or directory (os error 2)');
    });
    peer.start();
    const client = loggingClient(clientSide);
    client.connection.start();
    try {
      // The peer answers only when told: the deadline passes first whatever the machine's load.
      const asked = client.connection.request(FsGetMetadata, { path: 'file:///missing' }, { timeoutMs: 1 });
      await expect(asked).rejects.toMatchObject({ code: LocalErrorCode.RequestTimeout });
      answer.resolve();
      await waitFor(() => /late response|no pending request/.test(client.log()), 'the late answer to arrive');
      expect(client.log()).not.toMatch(/no pending request/);
      expect(client.unsolicited()).toBe(0);
      // An answer under an id no request had is still a peer's fault.
      peerSide.send(JSON.stringify({ id: 4242, error: { code: -32004, message: 'No such file or directory (os error 2)' } }));
      await waitFor(() => client.unsolicited() === 1, 'the unsolicited answer to be flagged');
      expect(client.log()).toMatch(/error response for no pending request/);
    } finally {
      await client.connection.close();
      await peer.close();
    }
  });
});
