/**
 * Two parts (`BENCH_ONLY=roundtrip,sse`, both by default):
 * - `roundtrip`: CPU cost of one model round trip through `ModelClient` (streaming, over its
 *   `node:http` exchange), against the fake Responses server running in a child process so only
 *   the client's work is counted. The request is a realistic one: the real tools and base
 *   instructions and a history of {@link HISTORY_ITEMS} items. Plain http direct and through a
 *   proxy (another process), and https with an extra CA, direct and through a CONNECT tunnel
 *   (`BENCH_FETCH=name,...` picks variants).
 * - `sse`: CPU cost of decoding an event stream with our `SseDecoder` and with
 *   `eventsource-parser` fed the same chunks, side by side in the same run: an ordinary stream
 *   of small events, and single events of 1 MB and 4 MB, in network-sized and in 256-byte chunks.
 * Run with `npm run bench -- model` (builds first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { createParser } from 'eventsource-parser';
import { BASE_INSTRUCTIONS } from '../src/agent/instructions.js';
import { applyPatchTool } from '../src/agent/tools/apply-patch.js';
import { execCommandTool, writeStdinTool } from '../src/agent/tools/exec-command.js';
import { listDirTool } from '../src/agent/tools/list-dir.js';
import type { AgentTool } from '../src/agent/tools/tool.js';
import { viewImageTool } from '../src/agent/tools/view-image.js';
import { ModelClient, type ModelRequest } from '../src/model/client.js';
import { HttpExchange } from '../src/model/http-exchange.js';
import { SseDecoder, type SseEvent } from '../src/model/sse.js';
import type { ResponseInputItem, ToolSpec } from '../src/protocol/responses.js';
import { makeTestCertificates } from '../test/helpers/network.js';
import { tempDir } from '../test/helpers/process.js';
import { fmt, median, percentile, printTable } from './stats.js';

/** Timed requests per variant (after {@link WARMUP}). */
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 200);
/** Items of conversation history sent with each request. */
const HISTORY_ITEMS = Number(process.env.BENCH_HISTORY_ITEMS ?? 60);
/** Rounds over the variants, interleaved so drift affects them alike. */
const ROUNDS = 4;
/** Which parts run. */
const PARTS = new Set((process.env.BENCH_ONLY ?? 'roundtrip,sse').split(','));
/** Decodes of each SSE case per variant and round (after one warm-up decode). */
const SSE_REPEATS = Number(process.env.BENCH_SSE_REPEATS ?? 5);
/** Chunk size of a stream read from a socket: one TLS record. */
const NETWORK_CHUNK = 16 * 1024;

function toolSpec(tool: AgentTool): ToolSpec {
  if (tool.kind === 'function') return { type: 'function', name: tool.name, description: tool.description, strict: false, parameters: tool.parameters };
  return { type: 'custom', name: tool.name, description: tool.description, format: { type: 'grammar', syntax: 'lark', definition: tool.grammar } };
}

function history(): ResponseInputItem[] {
  const items: ResponseInputItem[] = [{ type: 'message', role: 'developer', content: [{ type: 'input_text', text: BASE_INSTRUCTIONS }] }];
  for (let i = 0; items.length < HISTORY_ITEMS; i++) {
    items.push({ type: 'message', role: 'user', content: [{ type: 'input_text', text: `please run step ${i}` }] });
    items.push({ type: 'function_call', call_id: `call_${i}`, name: 'exec_command', arguments: JSON.stringify({ cmd: `echo step ${i}` }) });
    items.push({ type: 'function_call_output', call_id: `call_${i}`, output: `Chunk ID: ${i}\nWall time: 0.0012 seconds\nProcess exited with code 0\nOutput:\nstep ${i}\n` });
    items.push({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: `step ${i} done` }] });
  }
  return items;
}

async function startModelProcess(steps: number, extraArgs: string[] = []): Promise<{ url: string; stop: () => void }> {
  const dir = await tempDir('bench-model-');
  const script = join(dir.path, 'script.json');
  const step = { kind: 'output', items: [{ type: 'message', text: 'done: the command printed what was expected' }] };
  await writeFile(script, JSON.stringify(Array.from({ length: steps }, () => step)));
  const child = spawn(process.execPath, ['--import', 'tsx', 'tools/fake-responses-server.ts', '--script', script, ...extraArgs], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await firstLine(child, 'the fake model');
  return {
    url,
    stop: () => {
      child.kill('SIGTERM');
      void dir.cleanup();
    },
  };
}

/** The test helpers' HTTP proxy (CONNECT and absolute-form) in a process of its own, so its work is not counted. */
async function startProxyProcess(): Promise<{ url: string; stop: () => void }> {
  const helper = pathToFileURL(join(process.cwd(), 'test/helpers/http-proxy.ts')).href;
  const program = `const { startHttpProxy } = await import(${JSON.stringify(helper)}); const proxy = await startHttpProxy(); process.stdout.write(proxy.url + '\\n');`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await firstLine(child, 'the proxy');
  return { url, stop: () => child.kill('SIGTERM') };
}

/** The first stdout line of a child (its URL). */
function firstLine(child: ChildProcess, what: string): Promise<string> {
  const stdout = child.stdout;
  if (stdout === null) throw new Error(`${what} has no stdout`);
  const lines = createInterface({ input: stdout });
  return new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code ?? 'a signal'}`)));
  });
}

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

async function roundTrip(): Promise<void> {
  // Plain http to the fake model, direct and through a proxy; https with an extra CA, direct and
  // through a CONNECT tunnel. The proxy and the model run in other processes: only the client's
  // CPU is counted.
  const certDir = await tempDir('bench-certs-');
  const certs = makeTestCertificates(certDir.path);
  const ca = { variable: 'CODEX_CA_CERTIFICATE', path: certs.caPath, certificates: [new X509Certificate(certs.caPem).raw.toString('base64')] };
  const all = ['node:http', 'node:http via proxy', 'node:https+CA', 'node:https+CA via CONNECT'];
  const names = all.filter((name) => process.env.BENCH_FETCH === undefined || process.env.BENCH_FETCH.split(',').includes(name));
  const steps = ROUNDS * names.length * (WARMUP + REQUESTS);
  const plain = await startModelProcess(steps);
  const secure = await startModelProcess(steps, [
    '--tls-key',
    join(certDir.path, 'test-server.key'),
    '--tls-cert',
    join(certDir.path, 'test-server.pem'),
    '--url-host',
    'localhost',
  ]);
  const proxy = await startProxyProcess();
  const proxyUrl = new URL(proxy.url);
  const variants: Record<string, { http: HttpExchange; url: string }> = {
    'node:http': { http: new HttpExchange(), url: plain.url },
    'node:http via proxy': { http: new HttpExchange({ network: { httpProxy: { variable: 'HTTP_PROXY', url: proxyUrl } } }), url: plain.url },
    'node:https+CA': { http: new HttpExchange({ network: { ca } }), url: secure.url },
    'node:https+CA via CONNECT': { http: new HttpExchange({ network: { httpsProxy: { variable: 'HTTPS_PROXY', url: proxyUrl }, ca } }), url: secure.url },
  };
  const model = {
    stop: () => {
      plain.stop();
      secure.stop();
      proxy.stop();
      void certDir.cleanup();
    },
  };
  try {
    const request: ModelRequest = {
      model: 'gpt-bench',
      input: history(),
      tools: [
        execCommandTool({ multiEnvironment: false }),
        writeStdinTool(),
        applyPatchTool({ multiEnvironment: false }),
        viewImageTool({ multiEnvironment: false }),
        listDirTool({ multiEnvironment: false }),
      ].map(toolSpec),
      parallelToolCalls: true,
    };
    const results = new Map<string, { cpu: number[]; wall: number[] }>(names.map((name) => [name, { cpu: [], wall: [] }]));
    const perRound = Math.ceil(REQUESTS / ROUNDS);
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of names) {
        const variant = variants[name]!;
        const client = new ModelClient({ baseUrl: variant.url, apiKey: 'bench-key', http: variant.http });
        const signal = new AbortController().signal;
        for (let i = 0; i < WARMUP / ROUNDS; i++) await client.respond(request, { signal });
        const cpu0 = cpuMs();
        const t0 = performance.now();
        for (let i = 0; i < perRound; i++) await client.respond(request, { signal });
        const entry = results.get(name)!;
        entry.cpu.push((cpuMs() - cpu0) / perRound);
        entry.wall.push((performance.now() - t0) / perRound);
      }
    }
    process.stdout.write(
      `\n${perRound} requests × ${ROUNDS} rounds per variant, ${request.input.length} history items, ${request.tools.length} tools; client CPU and wall time per request\n`,
    );
    printTable(
      ['variant', 'CPU ms (median of rounds)', 'CPU ms (worst round)', 'wall ms (median of rounds)'],
      names.map((name) => {
        const entry = results.get(name)!;
        return [name, fmt(median(entry.cpu), 3), fmt(percentile(entry.cpu, 100), 3), fmt(median(entry.wall), 3)];
      }),
    );
  } finally {
    model.stop();
  }
}

// ---- SSE decoding ----

/** One SSE event of the Responses stream, in its wire form. */
function sseEvent(type: string, payload: Record<string, unknown>): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...payload })}\n\n`;
}

/** An ordinary answer: text deltas of a few words each, about `bytes` long in all. */
function ordinaryStream(bytes: number): string {
  const parts = [sseEvent('response.created', { response: { id: 'resp_bench', status: 'in_progress' } })];
  let size = parts[0]?.length ?? 0;
  for (let sequence = 1; size < bytes; sequence++) {
    const part = sseEvent('response.output_text.delta', { item_id: 'msg_bench', output_index: 0, content_index: 0, delta: `word${sequence} and more `, sequence_number: sequence });
    parts.push(part);
    size += part.length;
  }
  return parts.join('');
}

/** One event whose `data:` line is about `bytes` long (a large tool call's arguments). */
function singleEventStream(bytes: number): string {
  const text = 'x'.repeat(Math.max(0, bytes - 200));
  return sseEvent('response.output_item.done', { output_index: 0, item: { type: 'function_call', call_id: 'call_bench', name: 'apply_patch', arguments: text } });
}

function chunks(text: string, size: number): Uint8Array[] {
  const bytes = new TextEncoder().encode(text);
  const result: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += size) result.push(bytes.subarray(offset, offset + size));
  return result;
}

/** Our decoder, as `ModelClient` drives it. */
function decodeOurs(stream: readonly Uint8Array[]): SseEvent[] {
  const decoder = new SseDecoder();
  const events: SseEvent[] = [];
  for (const chunk of stream) events.push(...decoder.push(chunk));
  events.push(...decoder.end());
  return events;
}

/** eventsource-parser fed the same chunks, decoded to text the same way. */
function decodeLibrary(stream: readonly Uint8Array[]): SseEvent[] {
  const text = new TextDecoder();
  const events: SseEvent[] = [];
  const parser = createParser({ onEvent: (message) => events.push({ event: message.event ?? null, data: message.data }) });
  for (const chunk of stream) parser.feed(text.decode(chunk, { stream: true }));
  parser.feed(text.decode());
  parser.reset({ consume: true });
  return events;
}

const DECODERS = { ours: decodeOurs, 'eventsource-parser': decodeLibrary } as const;

function sseBench(): void {
  const MB = 1024 * 1024;
  const cases = [
    { name: 'ordinary stream 1 MB, 16 KiB chunks', stream: chunks(ordinaryStream(MB), NETWORK_CHUNK) },
    { name: 'ordinary stream 1 MB, 256 B chunks', stream: chunks(ordinaryStream(MB), 256) },
    { name: 'one 1 MB event, 16 KiB chunks', stream: chunks(singleEventStream(MB), NETWORK_CHUNK) },
    { name: 'one 4 MB event, 16 KiB chunks', stream: chunks(singleEventStream(4 * MB), NETWORK_CHUNK) },
    { name: 'one 1 MB event, 256 B chunks', stream: chunks(singleEventStream(MB), 256) },
  ];
  const rows: string[][] = [];
  for (const { name, stream } of cases) {
    const expected = decodeLibrary(stream);
    const cpu: Record<keyof typeof DECODERS, number[]> = { ours: [], 'eventsource-parser': [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const [variant, decode] of Object.entries(DECODERS) as [keyof typeof DECODERS, typeof decodeOurs][]) {
        // The two must agree, or the figures compare different work.
        if (round === 0 && !isDeepStrictEqual(decode(stream), expected)) throw new Error(`${variant} decodes \`${name}\` differently`);
        for (let i = 0; i < SSE_REPEATS; i++) {
          const cpu0 = cpuMs();
          decode(stream);
          cpu[variant].push(cpuMs() - cpu0);
        }
      }
    }
    const ours = median(cpu.ours);
    const library = median(cpu['eventsource-parser']);
    rows.push([
      name,
      String(expected.length),
      fmt(ours, 2),
      fmt(percentile(cpu.ours, 100), 2),
      fmt(library, 2),
      fmt(percentile(cpu['eventsource-parser'], 100), 2),
      `${fmt(ours / library, 2)}x`,
    ]);
  }
  process.stdout.write(`\nSSE decoding, ${ROUNDS} rounds × ${SSE_REPEATS} decodes per decoder, interleaved; CPU ms per decoded stream\n`);
  printTable(['case', 'events', 'ours (median)', 'ours (worst)', 'eventsource-parser (median)', 'eventsource-parser (worst)', 'ours / library'], rows);
}

if (PARTS.has('roundtrip')) await roundTrip();
if (PARTS.has('sse')) sseBench();
