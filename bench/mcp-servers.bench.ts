/**
 * Issue 5 figure: the extra time of an MCP tool call made through an environment, compared with
 * the same call made directly (the SDK client spawning the stdio server itself, or fetching the
 * Streamable HTTP server itself). Target: <= 5 ms median on loopback for a remote environment.
 * Run with `npm run bench -- mcp` (builds first); BENCH_MCP_CALLS sets the calls per route.
 *
 * The server is @modelcontextprotocol/server-everything and the call is its `echo` tool. The
 * routes are measured in turn, one call each per round (the order rotating), so that load from
 * other work on the machine falls on all of them alike; each figure is a median over its calls.
 */
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { McpServerConfig } from '../src/config/mcp-servers.js';
import { ThreadMcpServers, type McpToolBinding } from '../src/environments/mcp-servers.js';
import { EnvironmentRegistry } from '../src/environments/registry.js';
import { ExecServer } from '../src/exec/server.js';
import { CODEX, REPO_ROOT, startCodexWsExecServer, startListening, startOurWsExecServer, tempDir, type ListeningProcess } from '../test/helpers/process.js';
import { fmt, median, printTable, since } from './stats.js';

const CALLS = Number(process.env.BENCH_MCP_CALLS ?? 300);
const WARMUP_CALLS = 30;
const EVERYTHING = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const EVERYTHING_HTTP = join(REPO_ROOT, 'tools/everything-http.js');
const TARGET_MS = 5;

/** One way to call `echo`. */
interface Route {
  label: string;
  call: (message: string) => Promise<unknown>;
  times: number[];
}

function serverConfig(name: string, transport: McpServerConfig['transport'], environmentId: string): McpServerConfig {
  return { name, transport, enabled: true, required: false, startupTimeoutMs: 30_000, toolTimeoutMs: 30_000, enabledTools: ['echo'], disabledTools: [], environmentId };
}

const stdio = (): McpServerConfig['transport'] => ({ type: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: {}, envVars: [], cwd: undefined });

async function directStdio(): Promise<{ client: Client; call: Route['call'] }> {
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [EVERYTHING, 'stdio'], stderr: 'ignore' }));
  return { client, call: (message) => client.callTool({ name: 'echo', arguments: { message } }) };
}

async function directHttp(url: string): Promise<{ client: Client; call: Route['call'] }> {
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return { client, call: (message) => client.callTool({ name: 'echo', arguments: { message } }) };
}

function bindingCall(binding: McpToolBinding): Route['call'] {
  const signal = new AbortController().signal;
  return (message) => binding.call({ message }, signal);
}

const work = await tempDir('bench-mcp-');
const codexHome = await tempDir('bench-mcp-codex-');
const processes: ListeningProcess[] = [];
const clients: Client[] = [];
const local = new ExecServer({ env: process.env, host: { env: process.env, cwd: work.path, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'bench' } });
const registry = new EnvironmentRegistry({
  config: { includeLocal: true, defaultId: 'local', environments: [] },
  configSource: 'bench',
  localServer: local,
  launcherEnv: process.env,
});
let servers: ThreadMcpServers | undefined;
try {
  const ours = await startOurWsExecServer();
  const codex = await startCodexWsExecServer(codexHome.path);
  const http = await startListening(process.execPath, [EVERYTHING_HTTP]);
  processes.push(ours, codex, http);
  await registry.add({ id: 'ours', url: ours.url });
  await registry.add({ id: 'codex', url: codex.url });
  await registry.add({ id: 'codexstdio', program: CODEX, args: ['exec-server', '--listen', 'stdio'], env: { CODEX_HOME: codexHome.path } });
  servers = new ThreadMcpServers({
    configs: [
      serverConfig('stdio_local', stdio(), 'local'),
      serverConfig('stdio_ours', stdio(), 'ours'),
      serverConfig('stdio_codex', stdio(), 'codex'),
      serverConfig('stdio_codex_stdio', stdio(), 'codexstdio'),
      serverConfig('http_ours', { type: 'streamable_http', url: http.url, bearerTokenEnvVar: undefined, httpHeaders: {}, envHttpHeaders: {} }, 'ours'),
      serverConfig('http_local', { type: 'streamable_http', url: http.url, bearerTokenEnvVar: undefined, httpHeaders: {}, envHttpHeaders: {} }, 'local'),
    ],
    registry,
    launcherEnv: process.env,
    clientVersion: 'bench',
  });
  const environments = ['local', 'ours', 'codex', 'codexstdio'].map((id) => ({ id, cwd: work.path }));
  const { tools, failures } = await servers.prepare(environments, new AbortController().signal);
  if (failures.length > 0) throw new Error(`servers failed: ${JSON.stringify(failures)}`);
  const binding = (server: string): McpToolBinding => {
    const found = tools.find((tool) => tool.server === server);
    if (found === undefined) throw new Error(`no echo on ${server}`);
    return found;
  };
  const stdioDirect = await directStdio();
  const httpDirect = await directHttp(http.url);
  clients.push(stdioDirect.client, httpDirect.client);
  const routes: Route[] = [
    { label: 'stdio direct (SDK spawns the server)', call: stdioDirect.call, times: [] },
    { label: 'stdio via local (in-process executor)', call: bindingCall(binding('stdio_local')), times: [] },
    { label: 'stdio via our exec-server (ws)', call: bindingCall(binding('stdio_ours')), times: [] },
    { label: 'stdio via codex exec-server 0.169.0 (ws)', call: bindingCall(binding('stdio_codex')), times: [] },
    { label: 'stdio via codex exec-server 0.169.0 (stdio)', call: bindingCall(binding('stdio_codex_stdio')), times: [] },
    { label: 'http direct (SDK fetch)', call: httpDirect.call, times: [] },
    { label: 'http via local (direct fetch)', call: bindingCall(binding('http_local')), times: [] },
    { label: 'http via our exec-server (http/request)', call: bindingCall(binding('http_ours')), times: [] },
  ];
  for (let i = 0; i < WARMUP_CALLS; i++) for (const route of routes) await route.call(`warm ${i}`);
  for (let i = 0; i < CALLS; i++) {
    for (let j = 0; j < routes.length; j++) {
      const route = routes[(i + j) % routes.length]!;
      const t0 = performance.now();
      await route.call(`call ${i}`);
      route.times.push(since(t0));
    }
  }
  const stdioBase = median(routes[0]!.times);
  const httpBase = median(routes[5]!.times);
  const rows = routes.map((route, index) => {
    const base = index < 5 ? stdioBase : httpBase;
    const value = median(route.times);
    const remote = route.label.includes('exec-server');
    return [route.label, fmt(value), index === 0 || index === 5 ? '' : fmt(value - base), remote ? `<= ${TARGET_MS}` : ''];
  });
  process.stdout.write(`MCP tool call (server-everything \`echo\`), median of ${CALLS} calls per route\n`);
  printTable(['route', 'median ms', 'extra ms', 'target'], rows);
} finally {
  await servers?.close();
  for (const client of clients) await client.close();
  await registry.close();
  await local.close();
  for (const child of processes) await child.stop();
  await work.cleanup();
  await codexHome.cleanup();
}
