/**
 * Issue 17 figures: the latency of one MCP tool call over Streamable HTTP (`codex-multienv serve`,
 * a 2025-11-25 session and the stateless 2026-07-28 form) beside stdio, against the BUILT server
 * on this machine. Two calls: `environment/list` (no model, no environment: the transport and the
 * MCP layer alone) and a `codex` turn the fake model answers at once. Printed, never asserted.
 * Run with `npm run bench -- http` (builds first).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client as ModernClient, StreamableHTTPClientTransport as ModernHttpTransport } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { connectTestClient, serverEnv, startMcp, writeMcpConfig } from '../test/helpers/mcp.js';
import { CLI, startListening, tempDir } from '../test/helpers/process.js';
import { startFakeResponsesServer } from '../tools/fake-responses-server.js';
import { fmt, median, percentile, printTable, since } from './stats.js';

/** Timed calls per figure. */
const CALLS = Number(process.env.BENCH_CALLS ?? 200);
/** Untimed calls before measuring. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 20);

/** A way to call a tool, whatever the transport. */
type CallTool = (name: string, args: Record<string, unknown>) => Promise<unknown>;

/** Times `CALLS` calls of each kind through `call` (after `WARMUP` untimed ones). */
async function measure(call: CallTool, cwd: string): Promise<{ list: number[]; turn: number[] }> {
  const kinds = { list: () => call('environment/list', {}), turn: () => call('codex', { prompt: 'bench', cwd }) };
  const figures = { list: [] as number[], turn: [] as number[] };
  for (const [kind, run] of Object.entries(kinds) as [keyof typeof kinds, () => Promise<unknown>][]) {
    for (let i = 0; i < WARMUP; i += 1) await run();
    for (let i = 0; i < CALLS; i += 1) {
      const start = performance.now();
      await run();
      figures[kind].push(since(start));
    }
  }
  return figures;
}

/**
 * The floor under the HTTP figures: a bare node:http server echoing each POST, reached with fetch
 * as the clients reach ours (on a loaded machine this alone is most of an HTTP call).
 */
async function httpFloor(): Promise<number[]> {
  const server = createServer((request, response) => request.pipe(response.writeHead(200, { 'content-type': 'application/json' })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const times: number[] = [];
  try {
    for (let i = 0; i < WARMUP + CALLS; i += 1) {
      const start = performance.now();
      await (await fetch(url, { method: 'POST', body: '{"jsonrpc":"2.0","id":1,"result":{}}' })).text();
      if (i >= WARMUP) times.push(since(start));
    }
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  return times;
}

const home = await tempDir('bench-http-home-');
const work = await tempDir('bench-http-work-');
const model = await startFakeResponsesServer({ respond: () => ({ kind: 'output', items: [{ type: 'message', text: 'ok' }] }) });
await writeMcpConfig(home.path, model.url);
const env = serverEnv(home.path, { CODEX_MULTIENV_LOG: 'info', HOME: home.path, SHELL: '/bin/sh' });
const rows: string[][] = [];
const row = (label: string, figures: { list: number[]; turn: number[] }): void => {
  rows.push([label, fmt(median(figures.list)), fmt(percentile(figures.list, 95)), fmt(median(figures.turn)), fmt(percentile(figures.turn, 95))]);
};

try {
  const stdio = await startMcp(home.path, { env });
  try {
    row('stdio (relay + worker)', await measure((name, args) => stdio.call(name, args), work.path));
  } finally {
    await stdio.close();
  }

  const served = await startListening(process.execPath, [CLI, 'serve', '--listen', 'http://127.0.0.1:0'], env);
  try {
    const legacy = await connectTestClient(new StreamableHTTPClientTransport(new URL(served.url)));
    try {
      row('HTTP, 2025-11-25 session', await measure((name, args) => legacy.call(name, args), work.path));
    } finally {
      await legacy.client.close();
    }
    const modern = new ModernClient({ name: 'bench', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await modern.connect(new ModernHttpTransport(new URL(served.url)));
    try {
      row('HTTP, 2026-07-28 stateless', await measure((name, args) => modern.callTool({ name, arguments: args }), work.path));
    } finally {
      await modern.close();
    }
  } finally {
    await served.stop();
  }
  const floor = await httpFloor();
  rows.push(['floor: bare node:http + fetch', fmt(median(floor)), fmt(percentile(floor, 95)), '', '']);
  process.stdout.write(`tool-call latency (ms), ${CALLS} calls each after ${WARMUP} untimed, fake model answering at once\n`);
  printTable(['transport', 'environment/list p50', 'p95', 'codex turn p50', 'p95'], rows);
} finally {
  await model.close();
  await home.cleanup();
  await work.cleanup();
}
