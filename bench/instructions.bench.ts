/**
 * Instructions the MCP server executes per turn, counted by `valgrind --tool=callgrind`: unlike
 * wall or CPU time, the count hardly moves when the machine is busy, so it tells whether a change
 * made the server's own work smaller. User-space only (system calls are not counted; `strace -c`
 * counts those). Runs the BUILT server under valgrind once per kind of turn: after
 * {@link WARMUP} turns the counters are zeroed (`callgrind_control -z`), {@link TURNS} turns run,
 * and the counters are dumped (`callgrind_control -d`). JIT compilation and GC in that window
 * count too, so small differences (a few %) are noise. Slow (valgrind runs Node ~50× slower).
 * Usage: `npm run bench -- instructions`; needs valgrind.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startFakeResponsesServer, inputItems, type FakeStep, type RecordedRequest } from '../tools/fake-responses-server.js';
import { writeMcpConfig } from '../test/helpers/mcp.js';
import { CLI, tempDir } from '../test/helpers/process.js';
import { fmt, printTable } from './stats.js';

/** Turns before counting starts (JIT warm-up). */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 30);
/** Turns counted. */
const TURNS = Number(process.env.BENCH_TURNS ?? 50);
const KINDS = (process.env.BENCH_KINDS ?? 'text,exec,patch').split(',');
/** The server's entry point; another build (e.g. of an older commit) can be compared. */
const SERVER = process.env.BENCH_CLI ?? CLI;

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

/** Runs {@link WARMUP} then {@link TURNS} turns of `kind` in a server under callgrind; returns the instructions of the latter. */
async function count(kind: string, home: string, work: string): Promise<number> {
  const out = join(home, `callgrind.${kind}.out`);
  const transport = new StdioClientTransport({
    command: 'valgrind',
    args: ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, SERVER],
    env: { ...(process.env as Record<string, string>), CODEX_HOME: home, FAKE_MODEL_API_KEY: 'bench-key', CODEX_MULTIENV_LOG: 'info' },
    stderr: 'pipe',
  });
  transport.stderr?.on('data', () => undefined);
  const client = new Client({ name: 'bench-client', version: '1.0.0' });
  await client.connect(transport, { timeout: 600_000 });
  const pid = transport.pid;
  if (pid === null) throw new Error('valgrind has no pid');
  const call = async (name: string, args: Record<string, unknown>): Promise<string> => {
    const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 600_000 });
    const structured = result.structuredContent;
    if (result.isError === true || !isRecord(structured) || structured['content'] !== 'done' || typeof structured['threadId'] !== 'string') {
      throw new Error(`${name} failed: ${JSON.stringify(result).slice(0, 500)}`);
    }
    return structured['threadId'];
  };
  let threadId = '';
  for (let i = 0; i < WARMUP + TURNS; i++) {
    if (i === WARMUP) await run('callgrind_control', ['-z', String(pid)]);
    // A new thread every 25 turns, as in the session bench, so history stays bounded.
    if (i % 25 === 0) threadId = await call('codex', { prompt: 'start', cwd: work });
    await call('codex-reply', { threadId, prompt: `go KIND=${kind}` });
  }
  await run('callgrind_control', ['-d', String(pid)]);
  await client.close();
  const text = await readFile(`${out}.1`, 'utf8');
  const total = /^(?:summary|totals):\s*(\d+)/m.exec(text)?.[1];
  if (total === undefined) throw new Error(`no callgrind totals in ${out}.1`);
  return Number(total);
}

const run = promisify(execFile);

async function main(): Promise<void> {
  const home = await tempDir('bench-instr-home-');
  const work = await tempDir('bench-instr-work-');
  const model = await startFakeResponsesServer({ respond });
  try {
    await writeMcpConfig(home.path, model.url);
    const rows: string[][] = [];
    for (const kind of KINDS) {
      const total = await count(kind, home.path, work.path);
      process.stderr.write(`[instructions bench] ${kind}: ${total} instructions in ${TURNS} turns\n`);
      rows.push([kind, fmt(total / TURNS / 1e6, 2)]);
    }
    process.stdout.write(
      `\nMCP server instructions per codex-reply turn (callgrind; ${TURNS} turns counted after ${WARMUP} warm-up turns; a new thread, i.e. a codex turn, every 25 turns is counted too)\n`,
    );
    printTable(['turn', 'M instructions per turn'], rows);
  } finally {
    await model.close();
    await home.cleanup();
    await work.cleanup();
  }
}

await main();
