/**
 * `http/request` leaves the executor through the proxy named in the exec-server's own
 * environment (given to the process here, never this test's), for ours and for the real
 * `codex exec-server` alike: a loopback proxy records what it was asked.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkEnv } from '../helpers/network.js';
import { CLI, CODEX, startListening, tempDir, type ListeningProcess } from '../helpers/process.js';
import { startHttpProxy, type TestHttpProxy } from '../helpers/http-proxy.js';
import { rawWebSocket } from '../helpers/raw-peer.js';

let target: Server;
let targetUrl: string;
let proxy: TestHttpProxy;
let home: { path: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  target = createServer((_req, res) => res.end('from the target'));
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  targetUrl = `http://127.0.0.1:${(target.address() as AddressInfo).port}/hello`;
  home = await tempDir('exec-http-proxy-');
});

beforeEach(async () => {
  proxy = await startHttpProxy();
});

afterEach(async () => {
  await proxy.close();
});

afterAll(async () => {
  target.closeAllConnections();
  await new Promise<void>((resolve) => target.close(() => resolve()));
  await home.cleanup();
});

const servers: [string, (env: NodeJS.ProcessEnv) => Promise<ListeningProcess>][] = [
  ['ours', (env) => startListening(process.execPath, [CLI, 'exec-server', '--listen', 'ws://127.0.0.1:0'], env)],
  ['codex', (env) => startListening(CODEX, ['exec-server', '--listen', 'ws://127.0.0.1:0'], { ...env, CODEX_HOME: home.path })],
];

describe.each(servers)('http/request of the %s exec-server', (_name, start) => {
  async function get(env: Record<string, string>): Promise<Record<string, unknown>> {
    const server = await start(networkEnv(process.env, env));
    try {
      const peer = await rawWebSocket(server.url);
      peer.send(JSON.stringify({ id: 1, method: 'initialize', params: { clientName: 'test', resumeSessionId: null } }));
      await peer.next();
      peer.send(JSON.stringify({ method: 'initialized', params: {} }));
      peer.send(JSON.stringify({ id: 2, method: 'http/request', params: { method: 'GET', url: targetUrl, requestId: 'buffered-request' } }));
      const answer = await peer.next();
      await peer.close();
      return answer;
    } finally {
      await server.stop();
    }
  }

  it('goes through HTTP_PROXY of its environment', async () => {
    const answer = await get({ HTTP_PROXY: proxy.url });
    expect(answer).toMatchObject({ id: 2, result: { status: 200, bodyBase64: Buffer.from('from the target').toString('base64') } });
    expect(proxy.requests.map(({ kind, target: asked }) => ({ kind, target: asked }))).toEqual([{ kind: 'forward', target: targetUrl }]);
  });

  it('goes direct to a host NO_PROXY names', async () => {
    const answer = await get({ HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1' });
    expect(answer).toMatchObject({ id: 2, result: { status: 200 } });
    expect(proxy.requests).toEqual([]);
  });
});
