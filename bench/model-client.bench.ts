/**
 * CPU cost of one model round trip through `ModelClient` (the `openai` SDK, streaming), against
 * the fake Responses server running in a child process so only the client's work is counted.
 * The request is a realistic one: the real tools and base instructions and a history of
 * {@link HISTORY_ITEMS} items. Compares Node's fetch (undici) with our `node:http` fetch.
 * Run with `npm run bench -- model` (builds first).
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { BASE_INSTRUCTIONS } from '../src/agent/instructions.js';
import { applyPatchTool } from '../src/agent/tools/apply-patch.js';
import { execCommandTool, writeStdinTool } from '../src/agent/tools/exec-command.js';
import { listDirTool } from '../src/agent/tools/list-dir.js';
import type { AgentTool } from '../src/agent/tools/tool.js';
import { viewImageTool } from '../src/agent/tools/view-image.js';
import { ModelClient, type ModelRequest } from '../src/model/client.js';
import { createHttpFetch } from '../src/model/http-fetch.js';
import type { ResponseInputItem, ToolSpec } from '../src/protocol/responses.js';
import { tempDir } from '../test/helpers/process.js';
import { fmt, median, percentile, printTable } from './stats.js';

/** Timed requests per variant (after {@link WARMUP}). */
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 200);
/** Items of conversation history sent with each request. */
const HISTORY_ITEMS = Number(process.env.BENCH_HISTORY_ITEMS ?? 60);
/** Rounds over the variants, interleaved so drift affects them alike. */
const ROUNDS = 4;

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

async function startModelProcess(steps: number): Promise<{ url: string; stop: () => void }> {
  const dir = await tempDir('bench-model-');
  const script = join(dir.path, 'script.json');
  const step = { kind: 'output', items: [{ type: 'message', text: 'done: the command printed what was expected' }] };
  await writeFile(script, JSON.stringify(Array.from({ length: steps }, () => step)));
  const child = spawn(process.execPath, ['--import', 'tsx', 'tools/fake-responses-server.ts', '--script', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the fake model exited with ${code ?? 'a signal'}`)));
  });
  return {
    url,
    stop: () => {
      child.kill('SIGTERM');
      void dir.cleanup();
    },
  };
}

function cpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

async function main(): Promise<void> {
  const variants: Record<string, typeof fetch | undefined> = { undici: undefined, 'node:http': createHttpFetch() };
  const names = Object.keys(variants).filter((name) => process.env.BENCH_FETCH === undefined || process.env.BENCH_FETCH.split(',').includes(name));
  const model = await startModelProcess(ROUNDS * names.length * (WARMUP + REQUESTS));
  try {
    const request: ModelRequest = {
      model: 'gpt-bench',
      input: history(),
      tools: [execCommandTool({ multiEnvironment: false }), writeStdinTool(), applyPatchTool({ multiEnvironment: false }), viewImageTool({ multiEnvironment: false }), listDirTool({ multiEnvironment: false })].map(toolSpec),
      parallelToolCalls: true,
    };
    const results = new Map<string, { cpu: number[]; wall: number[] }>(names.map((name) => [name, { cpu: [], wall: [] }]));
    const perRound = Math.ceil(REQUESTS / ROUNDS);
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of names) {
        const client = new ModelClient({ baseUrl: model.url, apiKey: 'bench-key', fetch: variants[name] });
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
    process.stdout.write(`\n${perRound} requests × ${ROUNDS} rounds per fetch, ${request.input.length} history items, ${request.tools.length} tools; client CPU and wall time per request\n`);
    printTable(
      ['fetch', 'CPU ms (median of rounds)', 'CPU ms (worst round)', 'wall ms (median of rounds)'],
      names.map((name) => {
        const entry = results.get(name)!;
        return [name, fmt(median(entry.cpu), 3), fmt(percentile(entry.cpu, 100), 3), fmt(median(entry.wall), 3)];
      }),
    );
  } finally {
    model.stop();
  }
}

await main();
