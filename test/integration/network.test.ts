// Proxies and certificates end to end: our server composed in-process with the SDK client, the fake
// model over HTTPS (a certificate from a CA made with openssl for this test) and a real HTTP proxy
// (CONNECT and absolute-form) on 127.0.0.1. Everything stays on loopback: the model and the MCP
// server are named `localhost` where a request must go through the proxy and `127.0.0.1` where
// NO_PROXY sends it direct.
import { join } from 'node:path';
import { startFakeResponsesServer, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { startHttpProxy, type TestHttpProxy } from '../helpers/http-proxy.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { textOf, writeMcpConfig, type McpHarness } from '../helpers/mcp.js';
import { makeTestCertificates, networkEnv, type TestCertificates } from '../helpers/network.js';
import { CLI, isAlive, REPO_ROOT, runCommand, startListening, tempDir, type ListeningProcess } from '../helpers/process.js';
import { say } from '../helpers/steps.js';

const EVERYTHING_HTTP = join(REPO_ROOT, 'tools/everything-http.js');

describe('network: proxies and certificates', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let certs: TestCertificates;
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let proxy: TestHttpProxy;
  let home: { path: string; cleanup: () => Promise<void> };
  let mcp: McpHarness | undefined;
  const stops: (() => Promise<void>)[] = [];

  /** The model's URL with `host` in it (the certificate is for localhost and 127.0.0.1). */
  const modelUrl = (host: string): string => model.url.replace('//localhost:', `//${host}:`);
  const tunnelTo = (host: string): string => `${host}:${new URL(model.url).port}`;

  beforeAll(async () => {
    dir = await tempDir('network-');
    certs = makeTestCertificates(dir.path);
    model = await startFakeResponsesServer({ respond: () => steps.shift() ?? say('script exhausted'), tls: { key: certs.key, cert: certs.cert }, urlHost: 'localhost' });
  });
  afterAll(async () => {
    await model.close();
    await dir.cleanup();
  });
  beforeEach(async () => {
    steps = [];
    proxy = await startHttpProxy();
    home = await tempDir('network-home-');
  });
  afterEach(async () => {
    await mcp?.close();
    mcp = undefined;
    for (const stop of stops.splice(0).reverse()) await stop();
    await proxy.close();
    await home.cleanup();
  });

  it('sends model requests through HTTPS_PROXY, trusting CODEX_CA_CERTIFICATE over SSL_CERT_FILE', async () => {
    await writeMcpConfig(home.path, modelUrl('localhost'));
    steps.push(say('answered through the proxy'));
    mcp = await startInProcessMcp(home.path, { env: { HTTPS_PROXY: proxy.url, CODEX_CA_CERTIFICATE: certs.caPath, SSL_CERT_FILE: join(dir.path, 'missing.pem') } });

    const result = await mcp.call('codex', { prompt: 'hello', cwd: dir.path });
    expect(result.structuredContent).toMatchObject({ content: 'answered through the proxy' });
    expect(proxy.requests).toEqual([{ kind: 'connect', target: tunnelTo('localhost'), status: 200, proxyAuthorization: undefined }]);
    await mcp.waitForStderr(/network.*https via http:\/\/127\.0\.0\.1:\d+ \(HTTPS_PROXY\).*CODEX_CA_CERTIFICATE/, 'the network settings logged at start-up');
  });

  it('goes direct to a NO_PROXY host (127.0.0.1 listed, the model there), trusting SSL_CERT_FILE', async () => {
    await writeMcpConfig(home.path, modelUrl('127.0.0.1'));
    steps.push(say('answered directly'));
    mcp = await startInProcessMcp(home.path, { env: { https_proxy: proxy.url, no_proxy: 'example.invalid, 127.0.0.1', SSL_CERT_FILE: certs.caPath } });

    const result = await mcp.call('codex', { prompt: 'hello', cwd: dir.path });
    expect(result.structuredContent).toMatchObject({ content: 'answered directly' });
    expect(proxy.requests).toEqual([]);
  });

  it('reaches a Streamable HTTP MCP server on local through HTTP_PROXY', async () => {
    const web: ListeningProcess = await startListening(process.execPath, [EVERYTHING_HTTP]);
    stops.push(web.stop);
    const webUrl = web.url.replace('//127.0.0.1:', '//localhost:');
    await writeMcpConfig(home.path, modelUrl('localhost'), `[mcp_servers.web]\nurl = ${JSON.stringify(webUrl)}\n`);
    steps.push({ kind: 'output', items: [{ type: 'function_call', name: 'mcp__web__echo', arguments: { message: 'via the proxy' } }] }, say('mcp done'));
    mcp = await startInProcessMcp(home.path, { env: { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url, CODEX_CA_CERTIFICATE: certs.caPath } });

    const result = await mcp.call('codex', { prompt: 'use the web server', cwd: dir.path });
    expect(result.structuredContent).toMatchObject({ content: 'mcp done' });
    const forwarded = proxy.requests.filter((request) => request.kind === 'forward');
    expect(forwarded.length).toBeGreaterThanOrEqual(3);
    expect(forwarded.every((request) => request.target === webUrl && request.status < 300)).toBe(true);
    expect(proxy.requests.filter((request) => request.kind === 'connect').map((request) => request.target)).toEqual([tunnelTo('localhost')]);
  });

  it('a CA file that cannot be read fails each turn naming the variable and the path; the server keeps serving', async () => {
    const missing = join(dir.path, 'missing.pem');
    await writeMcpConfig(home.path, modelUrl('localhost'));
    steps.push(say('never sent'));
    mcp = await startInProcessMcp(home.path, { env: { CODEX_CA_CERTIFICATE: missing, HTTPS_PROXY: proxy.url } });
    const modelRequests = model.requests.length;

    const expected = new RegExp(`cannot read the CA certificate file ${missing} named by CODEX_CA_CERTIFICATE: ENOENT`);
    for (const prompt of ['first', 'second']) {
      const result = await mcp.call('codex', { prompt, cwd: dir.path });
      expect(result.isError).toBe(true);
      expect(textOf(result)).toMatch(expected);
    }
    expect(model.requests).toHaveLength(modelRequests);
    expect(proxy.requests).toEqual([]);
    expect(isAlive(await mcp.workerPid())).toBe(true);
    expect((await mcp.client.listTools()).tools.map((tool) => tool.name)).toContain('codex');
    await mcp.waitForStderr(/model requests and HTTP MCP servers on local will fail: cannot read the CA certificate file/, 'the start-up warning');
  });

  it('doctor reports the proxy and the CA in use, and a CA file it cannot read', async () => {
    await writeMcpConfig(home.path, modelUrl('localhost'));
    steps.push(say('OK'));
    const doctor = (env: Record<string, string>): ReturnType<typeof runCommand> =>
      runCommand(process.execPath, [CLI, 'doctor', '--json'], networkEnv(process.env, { CODEX_HOME: home.path, FAKE_MODEL_API_KEY: 'test-key', ...env }));
    const networkCheck = (stdout: string): unknown => (JSON.parse(stdout) as { checks: { id: string }[] }).checks.find((check) => check.id === 'network');

    const good = await doctor({ HTTPS_PROXY: `http://user:secret@127.0.0.1:${proxy.port}`, NO_PROXY: '127.0.0.1', CODEX_CA_CERTIFICATE: certs.caPath });
    expect(networkCheck(good.stdout)).toEqual({
      id: 'network',
      title: 'network (proxy, certificates)',
      status: 'ok',
      detail: `https via ${proxy.url} (HTTPS_PROXY); direct to 127.0.0.1 (NO_PROXY); trusting 1 certificate from ${certs.caPath} (CODEX_CA_CERTIFICATE) besides the bundled roots`,
    });
    expect(good.stdout).not.toContain('secret');
    expect(JSON.parse(good.stdout)).toMatchObject({ checks: expect.arrayContaining([expect.objectContaining({ id: 'model', status: 'ok' })]) });
    expect(proxy.requests.map((request) => request.target)).toEqual([tunnelTo('localhost')]);

    const missing = join(dir.path, 'missing.pem');
    const bad = await doctor({ SSL_CERT_FILE: missing });
    expect(bad.code).toBe(1);
    expect(networkCheck(bad.stdout)).toMatchObject({ status: 'fail', detail: expect.stringContaining(`cannot read the CA certificate file ${missing} named by SSL_CERT_FILE`) });
    expect(JSON.parse(bad.stdout)).toMatchObject({
      checks: expect.arrayContaining([expect.objectContaining({ id: 'model', status: 'fail', detail: expect.stringContaining('SSL_CERT_FILE') })]),
    });
  });
});
