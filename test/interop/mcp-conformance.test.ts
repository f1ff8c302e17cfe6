// The official MCP conformance suite (@modelcontextprotocol/conformance 0.1.13, the last release
// that runs on Node 20) against our built server. The suite only speaks Streamable HTTP, so it
// goes through tools/stdio-http-bridge.ts, which starts one real server process per session.
// Scenarios that do not apply to a tools-only server are listed, with reasons, in
// mcp-conformance-baseline.yml; the suite itself fails on any other failure and on a listed
// scenario that passes.

import { readdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { z } from 'zod';
import { startStdioHttpBridge, type StdioHttpBridge } from '../../tools/stdio-http-bridge.js';
import { setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, REPO_ROOT, runCommand, tempDir } from '../helpers/process.js';

const CONFORMANCE = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const BASELINE = join(REPO_ROOT, 'test/interop/mcp-conformance-baseline.yml');

/** The scenario names of the baseline's `server:` list (one `- name  # reason` per line). */
async function baselineScenarios(): Promise<string[]> {
  const text = await readFile(BASELINE, 'utf8');
  return [...text.matchAll(/^\s+-\s+([a-z0-9-]+)/gm)].map((match) => match[1] ?? '');
}

const ChecksSchema = z.array(z.looseObject({ status: z.string() }));

/** Scenario → whether every check passed, from the `-o` folder (`server-<scenario>-<timestamp>/checks.json`). */
async function scenarioResults(outDir: string): Promise<Map<string, boolean>> {
  const results = new Map<string, boolean>();
  for (const entry of await readdir(outDir)) {
    const match = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry);
    if (match?.[1] === undefined) continue;
    const checks = ChecksSchema.parse(JSON.parse(await readFile(join(outDir, entry, 'checks.json'), 'utf8')));
    results.set(
      match[1],
      checks.every((check) => check.status !== 'FAILURE' && check.status !== 'WARNING'),
    );
  }
  return results;
}

/** POSTs a JSON-RPC message with extra headers (node:http, since fetch may not set Host); resolves with the status. */
function postStatus(url: string, body: unknown, headers: Record<string, string>): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once('error', reject);
    req.end(JSON.stringify(body));
  });
}

function serverEnv(codexHome: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(networkEnv(process.env))) if (value !== undefined) env[name] = value;
  return { ...env, CODEX_HOME: codexHome, CODEX_MULTIENV_LOG: 'warn', FAKE_MODEL_API_KEY: 'test-key' };
}

describe('MCP conformance suite through the stdio-to-HTTP bridge', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let out: { path: string; cleanup: () => Promise<void> };
  let bridge: StdioHttpBridge;
  let bridgeLog = '';

  beforeAll(async () => {
    home = await tempDir('cmx-conformance-home-');
    out = await tempDir('cmx-conformance-out-');
    bridge = await startStdioHttpBridge({ command: process.execPath, args: [CLI], env: serverEnv(home.path), log: (line) => (bridgeLog += `${line}\n`) });
  });
  afterAll(async () => {
    await bridge.close();
    await out.cleanup();
    await home.cleanup();
  });

  it('passes every scenario that applies to a tools-only server; the others are exactly the baseline', async () => {
    const run = await runCommand(process.execPath, [CONFORMANCE, 'server', '--url', bridge.url, '--suite', 'all', '--expected-failures', BASELINE, '-o', out.path], process.env);
    const results = await scenarioResults(out.path);
    const failing = [...results].filter(([, passed]) => !passed).map(([name]) => name);
    const passing = [...results].filter(([, passed]) => passed).map(([name]) => name);
    // Compared before the exit code, so a failure shows which scenarios moved.
    expect(failing.sort()).toEqual((await baselineScenarios()).sort());
    expect(passing.sort()).toEqual([
      'dns-rebinding-protection',
      'logging-set-level',
      'ping',
      'server-initialize',
      'server-sse-multiple-streams',
      'tools-call-error',
      'tools-call-simple-text',
      'tools-list',
    ]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(run.stdout).toContain('Baseline check passed');
    // Every scenario opened its own session on a real server process.
    expect(bridge.sessionsOpened()).toBeGreaterThanOrEqual(results.size);
    expect(bridgeLog).not.toMatch(/send to (child|client) failed|child error/);
    // 32 scenarios, each on a fresh server process: about 15 s idle, more on a loaded 2-core CI.
  }, 180_000);
});

describe('the bridge itself, with an SDK Streamable HTTP client', () => {
  let world: McpTestWorld;
  let bridge: StdioHttpBridge;
  let client: Client | undefined;

  beforeAll(async () => {
    world = await setUpMcpWorld('cmx-bridge', () => ({ kind: 'output', items: [{ type: 'message', text: 'bridged answer' }] }));
    bridge = await startStdioHttpBridge({ command: process.execPath, args: [CLI], env: serverEnv(world.home.path) });
  });
  afterAll(async () => {
    await client?.close();
    await bridge.close();
    await tearDownMcpWorld(world, undefined);
  });

  it('runs a codex turn over HTTP and routes its progress notifications to the calling request', async () => {
    client = new Client({ name: 'bridge-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(bridge.url)));
    const progress: string[] = [];
    const result = await client.callTool({ name: 'codex', arguments: { prompt: 'say something', cwd: world.work.path, environments: [] } }, undefined, {
      onprogress: (p) => progress.push(p.message ?? ''),
    });
    expect(result.structuredContent).toEqual({ threadId: expect.any(String), content: 'bridged answer' });
    expect(progress.length).toBeGreaterThan(0);
    expect(bridge.sessionsOpened()).toBe(1);
  });

  it('refuses a request whose Host is not loopback (DNS rebinding) and an unknown session', async () => {
    const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } };
    expect(await postStatus(bridge.url, initialize, { host: 'evil.example' })).toBe(403);
    expect(await postStatus(bridge.url, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'mcp-session-id': 'no-such-session' })).toBe(404);
    expect(await postStatus(bridge.url, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, {})).toBe(400);
    expect(bridge.sessionsOpened()).toBe(1);
  });
});
