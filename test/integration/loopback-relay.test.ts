// The loopback relay that hands our environments to Codex's app-server: a real stdio exec-server
// (our CLI) behind it, real websocket clients in front, on 127.0.0.1.
import { ExecClient } from '../../src/exec/client.js';
import { websocketConnector } from '../../src/environments/connectors.js';
import { LoopbackRelay } from '../../src/environments/loopback-relay.js';
import { EnvironmentRegistry } from '../../src/environments/registry.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, tempDir } from '../helpers/process.js';
import { rawWebSocket } from '../helpers/raw-peer.js';

describe('LoopbackRelay', () => {
  let registry: EnvironmentRegistry;
  let relay: LoopbackRelay;
  let dir: { path: string; cleanup: () => Promise<void> };

  beforeEach(async () => {
    dir = await tempDir('relay-');
    registry = new EnvironmentRegistry({ config: { includeLocal: false, defaultId: null, environments: [] }, configSource: 'test', launcherEnv: networkEnv(process.env) });
    await registry.add({ id: 'pipe', program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'] });
    relay = new LoopbackRelay({ registry });
  });
  afterEach(async () => {
    await relay.close();
    await registry.close();
    await dir.cleanup();
  });

  it('serves a stdio environment on a loopback websocket to a client with its token', async () => {
    const exposed = await relay.expose('pipe');
    expect(exposed.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    const client = await ExecClient.connect(websocketConnector(exposed.url, { authBearerToken: exposed.authBearerToken }));
    try {
      const process = await client.startProcess({ argv: ['/bin/pwd'], cwd: dir.path, env: {}, tty: false });
      expect((await process.collect()).stdout.toString()).toBe(`${dir.path}\n`);
    } finally {
      await client.close();
    }
    expect(await relay.expose('pipe')).toEqual(exposed);
  });

  it.each([
    ['no token', undefined],
    ['a wrong token', 'Bearer not-the-token'],
  ])('refuses an upgrade with %s', async (_name, authorization) => {
    const exposed = await relay.expose('pipe');
    await expect(rawWebSocket(exposed.url, authorization === undefined ? undefined : { authorization })).rejects.toThrow(/401/);
  });

  it('gives a replaced environment a new address and stops the old one', async () => {
    const before = await relay.expose('pipe');
    await registry.add({ id: 'pipe', program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'] });
    const after = await relay.expose('pipe');
    expect(after.url).not.toBe(before.url);
    await expect(ExecClient.connect(websocketConnector(before.url, { authBearerToken: before.authBearerToken }))).rejects.toThrow(/ECONNREFUSED|connect/i);
  });

  it('says which environment it does not know', async () => {
    await expect(relay.expose('nope')).rejects.toThrow('unknown environment `nope`');
  });
});
