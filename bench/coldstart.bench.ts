/**
 * Issue 18 figures: cold start, from spawn to the `initialize` answer, ours beside the real Codex
 * 0.169 in the same run. Each round starts every case once, in a rotated order, so the machine's
 * load falls on all of them alike; ratios are of medians, and per round (pairwise).
 *
 * The client writes its `initialize` request right after spawning, as MCP clients do, and the
 * clock stops at the answer's line. Besides wall time, each case reports the CPU its process tree
 * (the spawned process and its descendants) had used by then, from `/proc/<pid>/task/<tid>/schedstat`:
 * on a loaded machine wall time mostly measures the wait for a core, CPU time what we spend.
 *
 * Cases: ours as a client starts it (the relay, then the worker, with V8's code cache that the
 * untimed first round wrote into a temporary folder); ours in one process (`--foreground`); ours
 * without the code cache (the first start after an install or upgrade); `codex app-server` as npm
 * installs it (a Node.js launcher that runs the native binary) and the native binary alone;
 * Node.js itself answering one line (the floor of any Node.js server).
 * `BENCH_COLDSTART_BASELINE=/path/to/dist/cli/main.js` adds another build of ours (e.g. before a
 * change) to the same rounds. Run with `npm run bench -- coldstart` (builds first);
 * `BENCH_COLDSTART_RUNS` sets the rounds; `BENCH_COLDSTART_REQUEST=discover` times `server/discover` instead of `initialize`.
 *
 * The relay answers the first request while its worker loads (see src/mcp/early-answers.ts), so
 * for ours the bench also times the next request, `tools/list`, sent once the first is answered:
 * the time until the server is of use (the column `list p50`; the app-server has no such request).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI, CODEX, tempDir } from '../test/helpers/process.js';
import { networkEnv } from '../test/helpers/network.js';
import { fmt, median, percentile, printTable, since } from './stats.js';

/** Rounds (each case starts once per round). */
const RUNS = Number(process.env.BENCH_COLDSTART_RUNS ?? 30);
/** Another build of ours to measure in the same rounds. */
const BASELINE = process.env.BENCH_COLDSTART_BASELINE;
/** How long one start may take before the bench gives up on it (a loaded machine is slow, not stuck). */
const START_DEADLINE_MS = 60_000;

const MCP_INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1.0.0' } },
};
const MCP_DISCOVER = {
  jsonrpc: '2.0',
  id: 1,
  method: 'server/discover',
  params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} } },
};
/**
 * What ours is asked first: `initialize` (a 2025 client), or with `BENCH_COLDSTART_REQUEST=discover`
 * `server/discover` (a 2026-07-28 client; Claude Code waits 3 s for its answer).
 */
const OUR_REQUEST = process.env.BENCH_COLDSTART_REQUEST === 'discover' ? MCP_DISCOVER : MCP_INITIALIZE;
// The app-server's JSON-RPC has no "jsonrpc" field.
const APP_SERVER_INITIALIZE = { id: 1, method: 'initialize', params: { clientInfo: { name: 'bench', version: '1.0.0' } } };
/** What a 2025 client sends once `initialize` is answered: the notification, then its first request. */
const MCP_FOLLOW_UP = [
  { jsonrpc: '2.0', method: 'notifications/initialized' },
  { jsonrpc: '2.0', id: 2, method: 'tools/list' },
];
/** A 2026-07-28 client's first request after `server/discover`. */
const MCP_MODERN_FOLLOW_UP = [{ jsonrpc: '2.0', id: 2, method: 'tools/list', params: MCP_DISCOVER.params }];
const OUR_FOLLOW_UP = OUR_REQUEST === MCP_DISCOVER ? MCP_MODERN_FOLLOW_UP : MCP_FOLLOW_UP;
/** The smallest Node.js server: answers the first line it reads. */
const NODE_FLOOR = `process.stdin.once('data', () => process.stdout.write('{"id":1,"result":{}}\\n'));`;

interface Case {
  label: string;
  command: string;
  args: string[];
  request: object;
  /** Lines sent once `request` is answered, the last a request with id 2, timed too. */
  followUp?: object[];
  /** Set over the bench's environment. */
  env?: Record<string, string>;
}

interface Sample {
  ms: number;
  cpuMs: number;
  /** Spawn → the answer to the follow-up request (NaN without one). */
  followUpMs: number;
}

/** The native binary the npm launcher runs (the launcher finds it the same way, per platform). */
function nativeCodex(): string | undefined {
  const root = join(dirname(realpathSync(CODEX)), '..', '..');
  try {
    for (const triple of readdirSync(join(root, 'codex-linux-x64', 'vendor'))) return join(root, 'codex-linux-x64', 'vendor', triple, 'bin', 'codex');
  } catch {
    // Not x64 Linux: the launcher's case stands alone.
  }
  return undefined;
}

/** Nanoseconds on a CPU so far of `pid`'s threads and of its descendants' (Linux; NaN elsewhere). */
function treeCpuNs(pid: number): number {
  let total = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return Number.NaN;
  }
  for (const tid of tasks) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) {
        if (child.trim().length > 0) total += treeCpuNs(Number(child));
      }
    } catch {
      // The thread ended meanwhile.
    }
  }
  return total;
}

/** Starts `c` once: spawn → the answer to its `initialize`; then ends it (stdin EOF, then SIGTERM). */
async function startOnce(c: Case, env: NodeJS.ProcessEnv): Promise<Sample> {
  const start = performance.now();
  const child = spawn(c.command, c.args, { env: { ...env, ...c.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stderr.resume();
  child.stdin.write(`${JSON.stringify(c.request)}\n`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  try {
    const sample = await new Promise<Sample>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      let first: Omit<Sample, 'followUpMs'> | undefined;
      lines.on('line', (line) => {
        if (first === undefined && line.includes('"id":1')) {
          first = { ms: since(start), cpuMs: child.pid === undefined ? Number.NaN : treeCpuNs(child.pid) / 1e6 };
          if (c.followUp === undefined) resolve({ ...first, followUpMs: Number.NaN });
          else child.stdin.write(c.followUp.map((message) => `${JSON.stringify(message)}\n`).join(''));
        } else if (first !== undefined && line.includes('"id":2')) resolve({ ...first, followUpMs: since(start) });
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`${c.label} exited (${String(code)}) before answering its first request`)));
      timer = setTimeout(() => reject(new Error(`${c.label} did not answer its first request within ${START_DEADLINE_MS} ms`)), START_DEADLINE_MS);
    });
    return sample;
  } finally {
    clearTimeout(timer);
    child.stdin.end();
    // A server that does not stop at EOF gets SIGTERM.
    const stop = setTimeout(() => child.kill('SIGTERM'), 5_000);
    await exited;
    clearTimeout(stop);
  }
}

async function main(): Promise<void> {
  const home = await tempDir('bench-coldstart-home-');
  try {
    // Both servers read their config from CODEX_HOME; neither needs one to answer initialize.
    await writeFile(join(home.path, 'config.toml'), '');
    // Our code cache in the temporary folder too (the ambient settings could point elsewhere or turn it off).
    const env = networkEnv(process.env, {
      HOME: home.path,
      CODEX_HOME: home.path,
      CODEX_MULTIENV_LOG: 'info',
      CODEX_MULTIENV_CACHE_DIR: join(home.path, 'code-cache'),
      CODEX_MULTIENV_CODE_CACHE: '1',
    });
    const codexNative = nativeCodex();
    const cases: Case[] = [
      { label: 'ours (relay + worker)', command: CLI, args: [], request: OUR_REQUEST, followUp: OUR_FOLLOW_UP },
      { label: 'ours --foreground (one process)', command: CLI, args: ['--foreground'], request: OUR_REQUEST, followUp: OUR_FOLLOW_UP },
      // What the first start after an install or upgrade costs, before the code cache exists.
      { label: 'ours without the code cache', command: CLI, args: [], request: OUR_REQUEST, followUp: OUR_FOLLOW_UP, env: { CODEX_MULTIENV_CODE_CACHE: '0' } },
      ...(BASELINE === undefined ? [] : [{ label: 'baseline (relay + worker)', command: process.execPath, args: [BASELINE], request: OUR_REQUEST, followUp: OUR_FOLLOW_UP }]),
      { label: 'codex app-server (npm launcher)', command: CODEX, args: ['app-server'], request: APP_SERVER_INITIALIZE },
      ...(codexNative === undefined ? [] : [{ label: 'codex app-server (native binary)', command: codexNative, args: ['app-server'], request: APP_SERVER_INITIALIZE }]),
      { label: 'node answering one line (floor)', command: process.execPath, args: ['-e', NODE_FLOOR], request: {} },
    ];
    const samples = new Map<Case, Sample[]>(cases.map((c) => [c, []]));
    // One untimed round: the files come into the page cache, and our first start writes the code cache.
    for (const c of cases) await startOnce(c, env);
    const loadBefore = loadavg()[0] ?? Number.NaN;
    for (let round = 0; round < RUNS; round++) {
      for (let i = 0; i < cases.length; i++) {
        const c = cases[(round + i) % cases.length]!;
        samples.get(c)!.push(await startOnce(c, env));
      }
    }
    const loadAfter = loadavg()[0] ?? Number.NaN;

    process.stdout.write(
      `\nspawn → ${OUR_REQUEST.method} answered (ours; initialize for the app-server), ${RUNS} rounds, each case once per round in rotated order; ` +
        `${availableParallelism()} CPUs, load average ${fmt(loadBefore)} before, ${fmt(loadAfter)} after` +
        `${BASELINE === undefined ? '' : `; baseline: ${BASELINE}`}\n\n`,
    );
    const wall = (c: Case): number[] => samples.get(c)!.map((s) => s.ms);
    const cpu = (c: Case): number[] => samples.get(c)!.map((s) => s.cpuMs);
    const followUp = (c: Case): number[] => samples.get(c)!.map((s) => s.followUpMs);
    printTable(
      ['case', 'n', 'wall min', 'wall p50', 'wall p90', 'CPU p50', 'CPU p90', 'list p50', 'list p90'],
      cases.map((c) => [
        c.label,
        String(wall(c).length),
        fmt(Math.min(...wall(c)), 1),
        fmt(median(wall(c)), 1),
        fmt(percentile(wall(c), 90), 1),
        fmt(median(cpu(c)), 1),
        fmt(percentile(cpu(c), 90), 1),
        c.followUp === undefined ? '' : fmt(median(followUp(c)), 1),
        c.followUp === undefined ? '' : fmt(percentile(followUp(c), 90), 1),
      ]),
    );

    // Ours (and the baseline) over each reference: of the medians, and per round.
    const ratioRows: string[][] = [];
    const ours = cases.filter((c) => c.request === OUR_REQUEST);
    const references = cases.filter((c) => c.request !== OUR_REQUEST);
    for (const mine of ours) {
      for (const reference of references) {
        for (const [what, pick] of [
          ['wall', wall],
          ['CPU', cpu],
        ] as const) {
          const pairs = pick(mine).map((value, round) => value / (pick(reference)[round] ?? Number.NaN));
          ratioRows.push([
            `${mine.label} / ${reference.label}`,
            what,
            fmt(median(pick(mine)) / median(pick(reference))),
            `${fmt(percentile(pairs, 10))}–${fmt(percentile(pairs, 90))}`,
          ]);
        }
      }
    }
    // Ours over the other build of ours, also for the time until tools/list is answered.
    const baseline = ours.find((c) => c.args[0] === BASELINE);
    for (const mine of baseline === undefined ? [] : ours.filter((c) => c !== baseline)) {
      for (const [what, pick] of [
        ['wall', wall],
        ['CPU', cpu],
        ['list', followUp],
      ] as const) {
        const pairs = pick(mine).map((value, round) => value / (pick(baseline!)[round] ?? Number.NaN));
        ratioRows.push([
          `${mine.label} / ${baseline!.label}`,
          what,
          fmt(median(pick(mine)) / median(pick(baseline!))),
          `${fmt(percentile(pairs, 10))}–${fmt(percentile(pairs, 90))}`,
        ]);
      }
    }
    process.stdout.write('\nratios (below 1.00: ours starts faster)\n');
    printTable(['ours / reference', 'time', 'of medians', 'per round, p10–p90'], ratioRows);
    process.stdout.write('\n');
  } finally {
    await home.cleanup();
  }
}

await main();
