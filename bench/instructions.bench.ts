/**
 * Instructions the MCP server executes per turn, counted by `valgrind --tool=callgrind`: unlike
 * wall or CPU time, the count hardly moves when the machine is busy, so it tells whether a change
 * made the server's own work smaller. User-space only (system calls are not counted; `strace -c`
 * counts those). Runs the BUILT server under valgrind twice per kind of turn, with
 * {@link FEW} and {@link MANY} turns after the same warm-up, and reports the difference per turn.
 * Slow (valgrind runs Node ~50× slower). Usage: `npm run bench -- instructions`; needs valgrind.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startFakeResponsesServer, inputItems, type FakeStep, type RecordedRequest } from '../tools/fake-responses-server.js';
import { writeMcpConfig } from '../test/helpers/mcp.js';
import { CLI, tempDir } from '../test/helpers/process.js';
import { fmt, printTable } from './stats.js';

/** Turns before counting starts to matter (JIT warm-up), the same in both runs. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 10);
const FEW = Number(process.env.BENCH_FEW ?? 5);
const MANY = Number(process.env.BENCH_MANY ?? 45);
const KINDS = (process.env.BENCH_KINDS ?? 'text,exec,patch').split(',');

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

let patches = 0;

/** The last item says what to do: a user prompt names the kind of turn; a tool output ends it. */
function respond(request: RecordedRequest): FakeStep {
  const items = inputItems(request);
  const last = items[items.length - 1];
  const say = (text: string): FakeStep => ({ kind: 'output', items: [{ type: 'message', text }] });
  if (!isRecord(last) || last['role'] !== 'user') return say('done');
  const prompt = JSON.stringify(last['content']);
  if (prompt.includes('KIND=exec')) return { kind: 'output', items: [{ type: 'function_call', name: 'exec_command', arguments: { cmd: 'true' } }] };
  if (prompt.includes('KIND=patch')) {
    const file = `added-${patches++}.txt`;
    return { kind: 'output', items: [{ type: 'custom_tool_call', name: 'apply_patch', input: `*** Begin Patch\n*** Add File: ${file}\n+x\n*** End Patch\n` }] };
  }
  return say('done');
}

/** Runs `turns` turns of `kind` (after the warm-up) in a server under callgrind; returns its instruction count. */
async function count(kind: string, turns: number, home: string, work: string): Promise<number> {
  const out = join(home, `callgrind.${kind}.${turns}.out`);
  const transport = new StdioClientTransport({
    command: 'valgrind',
    args: ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, CLI],
    env: { ...(process.env as Record<string, string>), CODEX_HOME: home, FAKE_MODEL_API_KEY: 'bench-key', CODEX_MULTIENV_LOG: 'info' },
    stderr: 'pipe',
  });
  transport.stderr?.on('data', () => undefined);
  const client = new Client({ name: 'bench-client', version: '1.0.0' });
  await client.connect(transport, { timeout: 600_000 });
  const call = async (name: string, args: Record<string, unknown>): Promise<string> => {
    const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 600_000 });
    const structured = result.structuredContent;
    if (result.isError === true || !isRecord(structured) || structured['content'] !== 'done' || typeof structured['threadId'] !== 'string') {
      throw new Error(`${name} failed: ${JSON.stringify(result).slice(0, 500)}`);
    }
    return structured['threadId'];
  };
  let threadId = await call('codex', { prompt: 'start', cwd: work });
  for (let i = 0; i < WARMUP + turns; i++) {
    // A new thread every 25 turns, as in the session bench, so history stays bounded.
    if (i % 25 === 24) threadId = await call('codex', { prompt: 'start', cwd: work });
    await call('codex-reply', { threadId, prompt: `go KIND=${kind}` });
  }
  await client.close();
  // The SDK's close does not wait for the child to exit; callgrind writes its file at exit.
  for (let attempt = 0; ; attempt++) {
    const text = await readFile(out, 'utf8').catch(() => '');
    const total = /^(?:summary|totals):\s*(\d+)/m.exec(text)?.[1];
    if (total !== undefined) return Number(total);
    if (attempt > 600) throw new Error(`no callgrind totals in ${out}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main(): Promise<void> {
  const home = await tempDir('bench-instr-home-');
  const work = await tempDir('bench-instr-work-');
  const model = await startFakeResponsesServer({ respond });
  try {
    await writeMcpConfig(home.path, model.url);
    const rows: string[][] = [];
    for (const kind of KINDS) {
      const few = await count(kind, FEW, home.path, work.path);
      const many = await count(kind, MANY, home.path, work.path);
      process.stderr.write(`[instructions bench] ${kind}: ${few} with ${FEW} turns, ${many} with ${MANY}\n`);
      rows.push([kind, fmt((many - few) / (MANY - FEW) / 1e6, 2), fmt(few / 1e6, 0)]);
    }
    process.stdout.write(`\nMCP server instructions per codex-reply turn (callgrind, (run with ${MANY} turns − run with ${FEW}) / ${MANY - FEW}, after ${WARMUP} warm-up turns)\n`);
    printTable(['turn', 'M instructions per turn', `M instructions, whole run with ${FEW} turns`], rows);
  } finally {
    await model.close();
    await home.cleanup();
    await work.cleanup();
  }
}

await main();
