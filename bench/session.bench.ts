/**
 * Issue 3 figures: the MCP server's own overhead per turn, per tool call, at start-up, in memory
 * and under concurrency, with the fake model answering at once. Runs the BUILT server
 * (`dist/cli/main.js`) through the real MCP SDK client; run with `npm run bench -- session`
 * (builds first).
 *
 * The fake model picks each answer from the request itself: the current turn's user prompt carries
 * a marker `BENCH[mode;tag;env…]`, and the number of tool outputs after that prompt says which
 * step of the turn comes next. It also checks every tool output it is sent; a wrong one makes it
 * answer `WRONG: …`, which aborts the bench.
 */
import { readdir, readFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { inputItems, startFakeResponsesServer, type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../tools/fake-responses-server.js';
import { startMcp, textOf, writeMcpConfig, type McpHarness } from '../test/helpers/mcp.js';
import { CLI, startOurWsExecServer, tempDir, type ListeningProcess } from '../test/helpers/process.js';
import { fmt, median, percentile, printTable, since, printRawFigures, rawRow } from './stats.js';

/** Timed turns per figure of (a)–(c). */
const TURNS = Number(process.env.BENCH_TURNS ?? 200);
/** Untimed turns per figure before measuring. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 20);
/** A thread is replaced after this many turns, so history growth does not dominate the figures. */
const TURNS_PER_THREAD = Number(process.env.BENCH_TURNS_PER_THREAD ?? 25);
/** Cold starts measured for (d). */
const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 15);
/** Idle threads created for (e). */
const IDLE_THREADS = 100;
/** Concurrent threads, tool calls per thread, and rounds for (f). */
const CONCURRENT_THREADS = 32;
const CALLS_PER_THREAD = 5;
const CONCURRENT_ROUNDS = Number(process.env.BENCH_CONCURRENT_ROUNDS ?? 3);
/** Thread counts of (g), each run with `max_concurrent_turns` equal to it (comma-separated). */
const THROUGHPUT_THREADS = (process.env.BENCH_THREADS ?? '32,128').split(',').map(Number);
/** Rounds of (g) per thread count and build. */
const THROUGHPUT_ROUNDS = Number(process.env.BENCH_THROUGHPUT_ROUNDS ?? 4);
/**
 * Other builds' `dist/cli/main.js` (comma-separated), measured in the same (g) rounds, interleaved
 * with this one. One is named `baseline`; several are named by their worktree's folder.
 */
const BASELINE_CLIS = (process.env.BENCH_BASELINE ?? '').split(',').filter((path) => path.length > 0);
/** Log level of the measured server (the CLI default is `info`; the test helper uses `debug`). */
const SERVER_LOG = process.env.BENCH_SERVER_LOG ?? 'info';
/** `NODE_OPTIONS` of the measured servers, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them. */
const SERVER_NODE_OPTIONS = process.env.BENCH_SERVER_NODE_OPTIONS;
/** Which parts to run (comma-separated: cold, memory, turns, concurrent, throughput); all by default. */
const PARTS = new Set((process.env.BENCH_ONLY ?? 'cold,memory,turns,concurrent,throughput').split(','));
/** Which kinds of turn (a)–(c) measures (comma-separated: text, execLocal, execRemote, patch); all by default. */
const KINDS = process.env.BENCH_KINDS?.split(',');

// ---------------------------------------------------------------------------------------------
// The scripted model.

/** What one turn asks the model to do. */
type TurnPlan = { mode: 'text'; tag: string } | { mode: 'exec'; tag: string } | { mode: 'patch'; tag: string; file: string } | { mode: 'multi'; tag: string; envs: string[] };

const MARKER = /BENCH\[([^\]]+)\]/;

function marker(plan: TurnPlan): string {
  switch (plan.mode) {
    case 'text':
    case 'exec':
      return `BENCH[${plan.mode};${plan.tag}]`;
    case 'patch':
      return `BENCH[patch;${plan.tag};${plan.file}]`;
    case 'multi':
      return `BENCH[multi;${plan.tag};${plan.envs.join(',')}]`;
  }
}

function parseMarker(text: string): TurnPlan {
  const fields = (MARKER.exec(text)?.[1] ?? '').split(';');
  const [mode, tag, extra] = fields;
  if (tag === undefined) throw new Error(`bad marker in ${text.slice(0, 200)}`);
  switch (mode) {
    case 'text':
    case 'exec':
      return { mode, tag };
    case 'patch':
      return { mode, tag, file: extra ?? '' };
    case 'multi':
      return { mode, tag, envs: (extra ?? '').split(',') };
    default:
      throw new Error(`unknown bench mode ${mode ?? ''}`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The current turn: its plan and the tool outputs sent since its user prompt. */
function currentTurn(request: RecordedRequest): { plan: TurnPlan; outputs: string[] } {
  const items = inputItems(request);
  let start = -1;
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    if (isRecord(item) && item['role'] === 'user' && MARKER.test(JSON.stringify(item['content']))) {
      start = i;
      break;
    }
  }
  if (start < 0) throw new Error('no bench marker in the request');
  const outputs: string[] = [];
  for (const item of items.slice(start + 1)) {
    if (!isRecord(item)) continue;
    if (item['type'] !== 'function_call_output' && item['type'] !== 'custom_tool_call_output') continue;
    const output = item['output'];
    outputs.push(typeof output === 'string' ? output : JSON.stringify(output));
  }
  return { plan: parseMarker(JSON.stringify(items[start])), outputs };
}

const say = (text: string): FakeStep => ({ kind: 'output', items: [{ type: 'message', text }] });
const exec = (cmd: string, environmentId?: string): FakeStep => ({
  kind: 'output',
  items: [{ type: 'function_call', name: 'exec_command', arguments: environmentId === undefined ? { cmd } : { cmd, environment_id: environmentId } }],
});
const patch = (file: string): FakeStep => ({
  kind: 'output',
  items: [{ type: 'custom_tool_call', name: 'apply_patch', input: `*** Begin Patch\n*** Add File: ${file}\n+bench ${file}\n*** End Patch\n` }],
});

/** The answer that ends a turn, checked by the bench. */
const done = (tag: string): string => `done:${tag}`;

/** When each model request of a turn arrived (`performance.now()`), by turn tag. */
const arrivals = new Map<string, number[]>();

/** Chooses the model's next step; any unexpected tool output becomes a `WRONG:` answer. */
function respond(request: RecordedRequest): FakeStep {
  const now = performance.now();
  const { plan, outputs } = currentTurn(request);
  const seen = arrivals.get(plan.tag);
  if (seen === undefined) arrivals.set(plan.tag, [now]);
  else seen.push(now);
  const last = outputs[outputs.length - 1];
  switch (plan.mode) {
    case 'text':
      return say(done(plan.tag));
    case 'exec':
      if (last === undefined) return exec('true');
      if (!/Process exited with code 0\b/.test(last)) return say(`WRONG: exec_command true gave ${last}`);
      return say(done(plan.tag));
    case 'patch':
      if (last === undefined) return patch(plan.file);
      if (!last.startsWith('Success.') || !last.includes(plan.file)) return say(`WRONG: apply_patch gave ${last}`);
      return say(done(plan.tag));
    case 'multi': {
      const n = outputs.length;
      if (last !== undefined && !(/Process exited with code 0\b/.test(last) && last.includes(`\n${plan.tag}-${n - 1}\n`))) {
        return say(`WRONG: call ${n - 1} of ${plan.tag} gave ${last}`);
      }
      if (n < CALLS_PER_THREAD) return exec(`echo ${plan.tag}-${n}`, plan.envs[n % plan.envs.length]);
      return say(done(plan.tag));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Driving the server.

/** Aborts the bench with a clear message unless `result` is the expected `done:` answer. */
function expectDone(result: CallToolResult, tag: string, what: string): string {
  const structured = result.structuredContent;
  const content = isRecord(structured) ? structured['content'] : undefined;
  const threadId = isRecord(structured) ? structured['threadId'] : undefined;
  if (result.isError === true || content !== done(tag) || typeof threadId !== 'string') {
    throw new Error(`${what}: expected content ${JSON.stringify(done(tag))}, got ${JSON.stringify(result).slice(0, 1000)}`);
  }
  return threadId;
}

/** One timed turn. */
interface TurnSample {
  /** `tools/call` → result. */
  ms: number;
  /** `tools/call` → the first model request arrives. */
  toModelMs: number;
  /** First → last model request (the tool calls, plus the model's answers in between). */
  betweenMs: number;
  /** Last model request arrives → result. */
  fromModelMs: number;
  /** CPU time of the MCP server process (all its threads). */
  serverCpuMs: number;
  /** CPU time of the remote exec-servers, when the turn has any. */
  execServerCpuMs: number;
  /** CPU time of this process: the MCP client and the fake model. */
  benchCpuMs: number;
}

/** CPU time of every thread of `pid` so far, in ms, from `/proc/<pid>/task/<tid>/schedstat` (ns on CPU). */
async function cpuMs(pid: number): Promise<number> {
  let ns = 0;
  for (const task of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${task}/schedstat`, 'utf8').catch(() => '0');
    ns += Number(stat.split(' ')[0] ?? 0);
  }
  return ns / 1e6;
}

/** CPU time of the main thread of `pid` (the event loop's; its tid is the pid) so far, in ms. */
async function mainThreadCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/task/${pid}/schedstat`, 'utf8');
  return Number(stat.split(' ')[0] ?? 0) / 1e6;
}

async function cpuOf(pids: number[]): Promise<number> {
  let ms = 0;
  for (const pid of pids) ms += await cpuMs(pid);
  return ms;
}

function benchCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

/** One figure's thread: a fresh `codex` thread every {@link TURNS_PER_THREAD} turns, then `codex-reply`. */
class TurnRunner {
  #threadId: string | undefined;
  #turns = 0;
  #count = 0;

  constructor(
    private readonly mcp: McpHarness,
    private readonly name: string,
    private readonly environments: { id: string; cwd: string }[],
    private readonly plan: (tag: string) => TurnPlan,
    private readonly serverPid: number,
    private readonly execServerPids: number[],
  ) {}

  /** Runs one `codex-reply` turn and measures it (a new thread, untimed, when due). */
  async turn(): Promise<TurnSample> {
    if (this.#threadId === undefined || this.#turns >= TURNS_PER_THREAD) {
      const tag = `${this.name}-start-${this.#count++}`;
      const result = await this.mcp.call('codex', { prompt: `start ${marker({ mode: 'text', tag })}`, cwd: this.environments[0]?.cwd, environments: this.environments });
      this.#threadId = expectDone(result, tag, `${this.name}: starting a thread`);
      arrivals.delete(tag);
      this.#turns = 0;
    }
    const tag = `${this.name}-${this.#count++}`;
    const cpu0 = [await cpuMs(this.serverPid), await cpuOf(this.execServerPids), benchCpuMs()] as const;
    const t = performance.now();
    const result = await this.mcp.call('codex-reply', { threadId: this.#threadId, prompt: `go ${marker(this.plan(tag))}` });
    const end = performance.now();
    const bench = benchCpuMs() - cpu0[2];
    const cpu1 = [await cpuMs(this.serverPid), await cpuOf(this.execServerPids)] as const;
    expectDone(result, tag, `${this.name}: turn ${tag}`);
    this.#turns++;
    const seen = arrivals.get(tag) ?? [];
    arrivals.delete(tag);
    const first = seen[0] ?? Number.NaN;
    const last = seen[seen.length - 1] ?? Number.NaN;
    return {
      ms: end - t,
      toModelMs: first - t,
      betweenMs: last - first,
      fromModelMs: end - last,
      serverCpuMs: cpu1[0] - cpu0[0],
      execServerCpuMs: cpu1[1] - cpu0[1],
      benchCpuMs: bench,
    };
  }
}

/**
 * The pid of the process that serves MCP and runs turns: the detached worker behind the relay
 * the client started (from the worker's ready log line).
 */
function serverPid(mcp: McpHarness): Promise<number> {
  return mcp.workerPid();
}

/** The pid of the process the client started (the relay), from the SDK's stdio transport. */
function relayPid(mcp: McpHarness): number {
  const transport = mcp.client.transport;
  const pid = transport instanceof StdioClientTransport ? transport.pid : null;
  if (pid === null) throw new Error('the MCP server has no pid');
  return pid;
}

/** Proportional set size of `pid` (its private pages plus its share of pages shared with other processes), in MiB. */
async function pssMiB(pid: number): Promise<number> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = /^Pss:\s+(\d+)\s+kB$/m.exec(rollup)?.[1];
  if (kb === undefined) throw new Error(`no Pss in /proc/${pid}/smaps_rollup`);
  return Number(kb) / 1024;
}

/** VmRSS of `pid`, in MiB. */
async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) / 1024;
}

function serverEnv(): Record<string, string> {
  return { CODEX_MULTIENV_LOG: SERVER_LOG, ...(SERVER_NODE_OPTIONS === undefined ? {} : { NODE_OPTIONS: SERVER_NODE_OPTIONS }) };
}

async function addEnvironment(mcp: McpHarness, id: string, url: string): Promise<void> {
  const added = await mcp.call('environment/add', { environmentId: id, execServerUrl: url });
  if (added.isError === true) throw new Error(`environment/add ${id}: ${textOf(added)}`);
}

// ---------------------------------------------------------------------------------------------
// Figures.

interface TurnFigures {
  text: TurnSample[];
  execLocal: TurnSample[];
  execRemote: TurnSample[];
  patch: TurnSample[];
}

/** (a)–(c): the four kinds of turn, interleaved so drift affects them alike. */
async function turnFigures(mcp: McpHarness, work: string, box: string, boxServer: ListeningProcess): Promise<TurnFigures> {
  await addEnvironment(mcp, 'box', boxServer.url);
  const pid = await serverPid(mcp);
  const boxPid = boxServer.child.pid;
  if (boxPid === undefined) throw new Error('the exec-server has no pid');
  const local = [{ id: 'local', cwd: work }];
  let file = 0;
  const runners = {
    text: new TurnRunner(mcp, 'text', local, (tag) => ({ mode: 'text', tag }), pid, []),
    execLocal: new TurnRunner(mcp, 'exec-local', local, (tag) => ({ mode: 'exec', tag }), pid, []),
    execRemote: new TurnRunner(mcp, 'exec-box', [{ id: 'box', cwd: box }], (tag) => ({ mode: 'exec', tag }), pid, [boxPid]),
    patch: new TurnRunner(mcp, 'patch', local, (tag) => ({ mode: 'patch', tag, file: `added-${file++}.txt` }), pid, []),
  };
  const figures: TurnFigures = { text: [], execLocal: [], execRemote: [], patch: [] };
  const kinds = (Object.keys(runners) as (keyof TurnFigures)[]).filter((kind) => KINDS === undefined || KINDS.includes(kind));
  for (let i = 0; i < WARMUP + TURNS; i++) {
    for (const kind of kinds) {
      const sample = await runners[kind].turn();
      if (i >= WARMUP) figures[kind].push(sample);
    }
  }
  // Every patch really wrote its file.
  const last = file - 1;
  if (last >= 0) {
    const content = await readFile(join(work, `added-${last}.txt`), 'utf8');
    if (content !== `bench added-${last}.txt\n`) throw new Error(`apply_patch wrote ${JSON.stringify(content)} to added-${last}.txt`);
  }
  return figures;
}

interface ColdFigures {
  initialize: number[];
  toolsList: number[];
}

/** (d): spawn → initialize → tools/list, each run a fresh process. */
async function coldStarts(home: string): Promise<ColdFigures> {
  const figures: ColdFigures = { initialize: [], toolsList: [] };
  for (let i = 0; i < COLD_RUNS; i++) {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI],
      env: { ...(process.env as Record<string, string>), CODEX_HOME: home, FAKE_MODEL_API_KEY: 'bench-key', ...serverEnv() },
      stderr: 'pipe',
    });
    transport.stderr?.on('data', () => undefined);
    const client = new Client({ name: 'bench-client', version: '1.0.0' });
    try {
      const t = performance.now();
      await client.connect(transport);
      figures.initialize.push(since(t));
      const { tools } = await client.listTools();
      figures.toolsList.push(since(t));
      if (!tools.some((tool) => tool.name === 'codex')) throw new Error(`tools/list has no \`codex\`: ${tools.map((tool) => tool.name).join(', ')}`);
    } finally {
      await client.close();
    }
  }
  return figures;
}

interface MemoryFigures {
  /** RSS of the worker (the process serving MCP and running turns). */
  idleMiB: number;
  threadsMiB: number;
  /** RSS of the relay (the process the client started), and the two processes' PSS together (shared pages counted once). */
  relayMiB: number;
  pairPssMiB: number;
}

/** (e): RSS after one tools/list, then after {@link IDLE_THREADS} text-only `codex` threads. */
async function memory(home: string, work: string): Promise<MemoryFigures> {
  const mcp = await startMcp(home, { env: serverEnv() });
  try {
    const pid = await serverPid(mcp);
    await mcp.client.listTools();
    const idleMiB = await rssMiB(pid);
    const relayMiB = await rssMiB(relayPid(mcp));
    const pairPssMiB = (await pssMiB(pid)) + (await pssMiB(relayPid(mcp)));
    for (let i = 0; i < IDLE_THREADS; i++) {
      const tag = `idle-${i}`;
      expectDone(await mcp.call('codex', { prompt: `hello ${marker({ mode: 'text', tag })}`, cwd: work }), tag, `idle thread ${i}`);
    }
    return { idleMiB, threadsMiB: await rssMiB(pid), relayMiB, pairPssMiB };
  } finally {
    await mcp.close();
  }
}

interface ConcurrentRound {
  ok: number;
  latencies: number[];
  wallMs: number;
  /** CPU time of the MCP server (all threads; its main thread alone), of the two exec-servers, and of this process (client + fake model) during the round. */
  serverCpuMs: number;
  serverMainCpuMs: number;
  execServersCpuMs: number;
  benchCpuMs: number;
}

/** (f): {@link CONCURRENT_THREADS} threads at once, each {@link CALLS_PER_THREAD} commands across three environments. */
async function concurrent(mcp: McpHarness, work: string, boxes: { path: string }[], execServerPids: number[], label: string): Promise<ConcurrentRound[]> {
  const rounds: ConcurrentRound[] = [];
  for (let round = 0; round < CONCURRENT_ROUNDS; round++) rounds.push(await concurrentRound(mcp, work, boxes, execServerPids, `${label}-r${round}`, CONCURRENT_THREADS));
  return rounds;
}

/** One round: `threads` threads at once, each {@link CALLS_PER_THREAD} commands across three environments. */
async function concurrentRound(mcp: McpHarness, work: string, boxes: { path: string }[], execServerPids: number[], label: string, threads: number): Promise<ConcurrentRound> {
  const pid = await serverPid(mcp);
  const environments = [{ id: 'local', cwd: work }, ...boxes.map((box, i) => ({ id: `box${i + 1}`, cwd: box.path }))];
  const ids = environments.map((env) => env.id);
  {
    const cpu0 = [await cpuMs(pid), await cpuOf(execServerPids), await mainThreadCpuMs(pid), benchCpuMs()] as const;
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: threads }, async (_, thread) => {
        const tag = `${label}-t${thread}`;
        // Each thread starts on a different environment so all three are busy from the start.
        const envs = ids.map((_id, k) => ids[(thread + k) % ids.length] ?? 'local');
        const t = performance.now();
        const result = await mcp.call('codex', { prompt: `run ${marker({ mode: 'multi', tag, envs })}`, cwd: work, environments });
        const ms = since(t);
        try {
          expectDone(result, tag, `concurrent thread ${tag}`);
          return { ok: true, ms, error: '' };
        } catch (error) {
          return { ok: false, ms, error: error instanceof Error ? error.message : String(error) };
        }
      }),
    );
    const wallMs = since(t0);
    const bench = benchCpuMs() - cpu0[3];
    const cpu1 = [await cpuMs(pid), await cpuOf(execServerPids), await mainThreadCpuMs(pid)] as const;
    const failures = results.filter((r) => !r.ok);
    if (failures.length > 0) throw new Error(`${label}: ${failures.length}/${threads} threads failed; first: ${failures[0]?.error ?? ''}`);
    return {
      ok: results.length,
      latencies: results.map((r) => r.ms),
      wallMs,
      serverCpuMs: cpu1[0] - cpu0[0],
      serverMainCpuMs: cpu1[2] - cpu0[2],
      execServersCpuMs: cpu1[1] - cpu0[1],
      benchCpuMs: bench,
    };
  }
}

/** A baseline's name in the figures: `baseline` when it is the only one, else its worktree's folder (`…/<name>/dist/cli/main.js`). */
function baselineName(cli: string): string {
  if (BASELINE_CLIS.length === 1) return 'baseline';
  const parts = cli.split('/');
  return parts[parts.length - 4] ?? cli;
}

/** One build's (g) rounds at one thread count. */
interface ThroughputFigures {
  build: string;
  threads: number;
  rounds: ConcurrentRound[];
}

/**
 * (g): tool calls per second with `threads` threads at once (the cap raised to match), for this
 * build and each of {@link BASELINE_CLIS}: one server per build, an untimed warm-up round each,
 * then their rounds alternate (the order flipping every round) so drift in the load hits all alike.
 */
async function throughput(
  home: string,
  work: string,
  boxes: { path: string }[],
  execServers: ListeningProcess[],
  execPids: number[],
  threads: number,
  servers: McpHarness[],
): Promise<ThroughputFigures[]> {
  const builds = [{ build: 'this', cli: CLI }, ...BASELINE_CLIS.map((cli) => ({ build: baselineName(cli), cli }))];
  const started: { figures: ThroughputFigures; mcp: McpHarness }[] = [];
  for (const { build, cli } of builds) {
    const mcp = await startMcp(home, { env: serverEnv(), args: ['-c', `multienv.max_concurrent_turns=${threads}`], cli });
    servers.push(mcp);
    for (const [i, server] of execServers.entries()) await addEnvironment(mcp, `box${i + 1}`, server.url);
    await concurrentRound(mcp, work, boxes, execPids, `${build}-n${threads}-warmup`, threads);
    started.push({ figures: { build, threads, rounds: [] }, mcp });
  }
  for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
    const order = round % 2 === 0 ? started : [...started].reverse();
    for (const { figures, mcp } of order) figures.rounds.push(await concurrentRound(mcp, work, boxes, execPids, `${figures.build}-n${threads}-r${round}`, threads));
  }
  for (const { mcp } of started) await mcp.close();
  return started.map((entry) => entry.figures);
}

/** Tool calls of one (g) round. */
const callsOf = (threads: number): number => threads * CALLS_PER_THREAD;
/** Median calls/s over the rounds. */
const perSecond = (f: ThroughputFigures): number => median(f.rounds.map((r) => (callsOf(f.threads) / r.wallMs) * 1000));
/** Every turn's latency of every round. */
const latencies = (f: ThroughputFigures): number[] => f.rounds.flatMap((r) => r.latencies);
/** Median over the rounds of `pick` per tool call. */
const perCall = (f: ThroughputFigures, pick: (r: ConcurrentRound) => number): number => median(f.rounds.map((r) => pick(r) / callsOf(f.threads)));
/** The CPU the bench sees (server, exec-servers, client and fake model) in a round. */
const measuredCpu = (r: ConcurrentRound): number => r.serverCpuMs + r.execServersCpuMs + r.benchCpuMs;

/** Prints (g): per build and thread count, medians over the rounds, and this build's ratios to each baseline's. */
function printThroughput(all: ThroughputFigures[]): void {
  process.stdout.write(
    `\n(g) tool calls/s: N threads at once, each ${CALLS_PER_THREAD} exec_command across local + 2 websocket environments, cap N; medians of ${THROUGHPUT_ROUNDS} rounds\n`,
  );
  printTable(
    [
      'build',
      'threads',
      'calls/s',
      'turn p50 ms',
      'turn p99 ms',
      'server CPU/call ms (main + other threads)',
      'server CPU / wall',
      'exec-servers CPU/call',
      'bench CPU/call (client+model)',
    ],
    all.map((f) => [
      f.build,
      String(f.threads),
      fmt(perSecond(f), 0),
      fmt(median(latencies(f)), 0),
      fmt(percentile(latencies(f), 99), 0),
      `${fmt(perCall(f, (r) => r.serverCpuMs))} (${fmt(perCall(f, (r) => r.serverMainCpuMs))} + ${fmt(perCall(f, (r) => r.serverCpuMs - r.serverMainCpuMs))})`,
      fmt(median(f.rounds.map((r) => r.serverCpuMs / r.wallMs))),
      fmt(perCall(f, (r) => r.execServersCpuMs)),
      fmt(perCall(f, (r) => r.benchCpuMs)),
    ]),
  );
  for (const f of all) {
    if (f.build !== 'this') continue;
    for (const base of all.filter((b) => b.build !== 'this' && b.threads === f.threads)) printRatios(f, base);
  }
  printRawFigures(all.map((f) => rawRow(`(g) ${f.build}, ${f.threads} threads: per-turn latency`, latencies(f))));
}

/** This build's (g) figures over one baseline's. */
function printRatios(f: ThroughputFigures, base: ThroughputFigures): void {
  const roundRatios = f.rounds.map((r, i) => {
    const b = base.rounds[i];
    return b === undefined ? Number.NaN : b.wallMs / r.wallMs;
  });
  process.stdout.write(
    `${f.threads} threads, this / ${base.build}: calls/s ${fmt(perSecond(f) / perSecond(base))}x (per round ${roundRatios.map((x) => fmt(x)).join(', ')}), ` +
      `turn p50 ${fmt(median(latencies(f)) / median(latencies(base)))}x, p99 ${fmt(percentile(latencies(f), 99) / percentile(latencies(base), 99))}x, ` +
      `server main-thread CPU/call ${fmt(perCall(f, (r) => r.serverMainCpuMs) / perCall(base, (r) => r.serverMainCpuMs))}x, ` +
      `server CPU/call ${fmt(perCall(f, (r) => r.serverCpuMs) / perCall(base, (r) => r.serverCpuMs))}x, ` +
      `measured CPU/call (server + exec-servers + bench) ${fmt(perCall(f, measuredCpu) / perCall(base, measuredCpu))}x\n`,
  );
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main(): Promise<void> {
  const home = await tempDir('bench-session-home-');
  const work = await tempDir('bench-session-work-');
  const boxes = [await tempDir('bench-session-box1-'), await tempDir('bench-session-box2-')];
  const execServers: ListeningProcess[] = [];
  const servers: McpHarness[] = [];
  let model: FakeResponsesServer | undefined;
  try {
    // Thousands of requests: the fake keeps none, so its heap (and GC time) does not grow with the run.
    model = await startFakeResponsesServer({ respond, keepRequests: false });
    await writeMcpConfig(home.path, model.url);
    for (let i = 0; i < 2; i++) execServers.push(await startOurWsExecServer());
    const [ws1, ws2] = execServers;
    const execPids = execServers.map((server) => server.child.pid ?? 0).filter((pid) => pid > 0);
    const [box1, box2] = boxes;
    if (ws1 === undefined || ws2 === undefined || box1 === undefined || box2 === undefined) throw new Error('unreachable');

    const loadBefore = loadavg()[0] ?? Number.NaN;
    const started = performance.now();
    const log = (what: string): void => {
      process.stderr.write(`[session bench] ${what} (${fmt(since(started) / 1000, 1)} s)\n`);
    };

    const cold: ColdFigures = { initialize: [], toolsList: [] };
    if (PARTS.has('cold')) {
      log('cold starts');
      Object.assign(cold, await coldStarts(home.path));
    }
    let mem: MemoryFigures = { idleMiB: Number.NaN, threadsMiB: Number.NaN, relayMiB: Number.NaN, pairPssMiB: Number.NaN };
    if (PARTS.has('memory')) {
      log('memory');
      mem = await memory(home.path, work.path);
    }

    let turns: TurnFigures = { text: [], execLocal: [], execRemote: [], patch: [] };
    let serverRssAfterTurns = Number.NaN;
    let execServerRss = Number.NaN;
    if (PARTS.has('turns')) {
      log(`turns: ${WARMUP} warm-up + ${TURNS} timed of each kind`);
      const mcp = await startMcp(home.path, { env: serverEnv() });
      servers.push(mcp);
      // For attaching a profiler (e.g. `perf record -p`) to the measured server.
      log(`MCP server pid ${await serverPid(mcp)}`);
      turns = await turnFigures(mcp, work.path, box1.path, ws1);
      serverRssAfterTurns = await rssMiB(await serverPid(mcp));
      execServerRss = ws1.child.pid === undefined ? Number.NaN : await rssMiB(ws1.child.pid);
      await mcp.close();
    }

    let wideRounds: ConcurrentRound[] = [];
    let narrowRounds: ConcurrentRound[] = [];
    if (PARTS.has('concurrent')) {
      /** A fresh server with both remote environments, run through the concurrency rounds. */
      const roundsOn = async (args: string[], label: string): Promise<ConcurrentRound[]> => {
        const server = await startMcp(home.path, { env: serverEnv(), args });
        servers.push(server);
        await addEnvironment(server, 'box1', ws1.url);
        await addEnvironment(server, 'box2', ws2.url);
        const rounds = await concurrent(server, work.path, boxes, execPids, label);
        await server.close();
        return rounds;
      };
      log(`concurrency, max_concurrent_turns=${CONCURRENT_THREADS}`);
      wideRounds = await roundsOn(['-c', `multienv.max_concurrent_turns=${CONCURRENT_THREADS}`], 'cap32');
      log('concurrency, default max_concurrent_turns');
      narrowRounds = await roundsOn([], 'capdefault');
    }
    const throughputFigures: ThroughputFigures[] = [];
    if (PARTS.has('throughput')) {
      for (const threads of THROUGHPUT_THREADS) {
        log(`throughput, ${threads} threads${BASELINE_CLIS.length === 0 ? '' : `, interleaved with ${BASELINE_CLIS.join(', ')}`}`);
        throughputFigures.push(...(await throughput(home.path, work.path, boxes, execServers, execPids, threads, servers)));
      }
    }
    log('done');

    if (model.errors.length > 0) throw new Error(`the fake model recorded errors: ${model.errors.slice(0, 3).join('; ')}`);

    const ms = (samples: TurnSample[]): number[] => samples.map((sample) => sample.ms);
    const text = { p50: median(ms(turns.text)), p95: percentile(ms(turns.text), 95) };
    const extra = (samples: TurnSample[]): number => median(ms(samples)) - text.p50;
    const pass = (ok: boolean): string => (ok ? 'yes' : 'NO');
    const allWide = wideRounds.flatMap((r) => r.latencies);
    const allNarrow = narrowRounds.flatMap((r) => r.latencies);
    const okWide = wideRounds.map((r) => `${r.ok}/${CONCURRENT_THREADS}`).join(' ');
    const okNarrow = narrowRounds.map((r) => `${r.ok}/${CONCURRENT_THREADS}`).join(' ');
    const coldMedian = median(cold.toolsList);
    const execLocal = extra(turns.execLocal);
    const execRemote = extra(turns.execRemote);
    const patchExtra = extra(turns.patch);

    // The figures are CPU-bound: a busy machine inflates them, so say how busy it was.
    process.stdout.write(
      `\nserver log level ${SERVER_LOG}; ${TURNS} timed turns per kind after ${WARMUP} warm-up, a new thread every ${TURNS_PER_THREAD} turns; ` +
        `${availableParallelism()} CPUs, load average ${fmt(loadBefore)} before, ${fmt(loadavg()[0] ?? Number.NaN)} after\n\n`,
    );
    printTable(
      ['figure', 'measured', 'target', 'pass?'],
      [
        ['(a) text-only turn (codex-reply), median ms', fmt(text.p50), '<= 5', pass(text.p50 <= 5)],
        ['(a) text-only turn (codex-reply), p95 ms (for reference; the figure is the median)', fmt(text.p95), '-', '-'],
        ['(b) + per exec_command `true`, local, ms', fmt(execLocal), '<= 5', pass(execLocal <= 5)],
        ['(b) + per exec_command `true`, websocket, ms', fmt(execRemote), '<= 8', pass(execRemote <= 8)],
        ['(c) + per apply_patch Add File, local, ms', fmt(patchExtra), '<= 5', pass(patchExtra <= 5)],
        ['(d) cold spawn → tools/list answer, median ms', fmt(coldMedian), '<= 300', pass(coldMedian <= 300)],
        ['(e) RSS idle after tools/list (worker), MiB', fmt(mem.idleMiB, 1), '<= 100', pass(mem.idleMiB <= 100)],
        ['(e) RSS of the relay; PSS of worker + relay, MiB', `${fmt(mem.relayMiB, 1)}; ${fmt(mem.pairPssMiB, 1)}`, '<= 100 (PSS)', pass(mem.pairPssMiB <= 100)],
        [`(e) RSS with ${IDLE_THREADS} idle threads, MiB`, fmt(mem.threadsMiB, 1), '-', '-'],
        [
          `(f) ${CONCURRENT_THREADS}×${CALLS_PER_THREAD} calls / 3 envs, cap ${CONCURRENT_THREADS}: ok per round`,
          okWide,
          `${CONCURRENT_THREADS}/${CONCURRENT_THREADS}`,
          pass(wideRounds.every((r) => r.ok === CONCURRENT_THREADS)),
        ],
        [`(f) … cap ${CONCURRENT_THREADS}: per-turn p50 / p99 ms`, `${fmt(median(allWide))} / ${fmt(percentile(allWide, 99))}`, '-', '-'],
        ['(f) … default cap (8): ok per round', okNarrow, `${CONCURRENT_THREADS}/${CONCURRENT_THREADS}`, pass(narrowRounds.every((r) => r.ok === CONCURRENT_THREADS))],
        ['(f) … default cap (8): per-turn p50 / p99 ms', `${fmt(median(allNarrow))} / ${fmt(percentile(allNarrow, 99))}`, '-', '-'],
      ],
    );

    printRawFigures([
      rawRow('(a) text-only turn', ms(turns.text)),
      rawRow('(b) turn with exec_command true, local', ms(turns.execLocal)),
      rawRow('(b) turn with exec_command true, websocket', ms(turns.execRemote)),
      rawRow('(c) turn with apply_patch Add File', ms(turns.patch)),
      rawRow('(d) cold spawn → initialize answer', cold.initialize),
      rawRow('(d) cold spawn → tools/list answer', cold.toolsList),
      rawRow(`(f) cap ${CONCURRENT_THREADS}: per-turn latency`, allWide),
      rawRow('(f) default cap (8): per-turn latency', allNarrow),
    ]);

    // Where a turn's time goes: the phases around the model requests, and who burnt CPU.
    const phase = (samples: TurnSample[], pick: (sample: TurnSample) => number): string => fmt(median(samples.map(pick)));
    const breakdown = (label: string, samples: TurnSample[]): string[] => [
      label,
      phase(samples, (x) => x.ms),
      phase(samples, (x) => x.toModelMs),
      phase(samples, (x) => x.betweenMs),
      phase(samples, (x) => x.fromModelMs),
      phase(samples, (x) => x.serverCpuMs),
      phase(samples, (x) => x.execServerCpuMs),
      phase(samples, (x) => x.benchCpuMs),
    ];
    process.stdout.write('\nbreakdown per turn, medians in ms (model request = the fake model receives a complete request)\n');
    printTable(
      ['turn', 'total', 'call→1st model req', '1st→last model req', 'last model req→result', 'server CPU', 'exec-server CPU', 'bench CPU (client+model)'],
      [
        breakdown('(a) text-only', turns.text),
        breakdown('(b) exec_command true, local', turns.execLocal),
        breakdown('(b) exec_command true, websocket', turns.execRemote),
        breakdown('(c) apply_patch Add File', turns.patch),
      ],
    );
    process.stdout.write(
      [
        '',
        `(b) extra p95 over (a) p95: local ${fmt(percentile(ms(turns.execLocal), 95) - text.p95)}, websocket ${fmt(percentile(ms(turns.execRemote), 95) - text.p95)}; (c) ${fmt(percentile(ms(turns.patch), 95) - text.p95)}`,
        `RSS after the turns: MCP server ${fmt(serverRssAfterTurns, 1)} MiB, our websocket exec-server ${fmt(execServerRss, 1)} MiB`,
        `(f) wall time per round of ${CONCURRENT_THREADS} threads, ms: cap ${CONCURRENT_THREADS} ${wideRounds.map((r) => fmt(r.wallMs, 0)).join(', ')}; default cap ${narrowRounds.map((r) => fmt(r.wallMs, 0)).join(', ')}`,
        `(f) CPU per round, ms (MCP server / both exec-servers): cap ${CONCURRENT_THREADS} ${wideRounds.map((r) => `${fmt(r.serverCpuMs, 0)}/${fmt(r.execServersCpuMs, 0)}`).join(', ')}; default cap ${narrowRounds.map((r) => `${fmt(r.serverCpuMs, 0)}/${fmt(r.execServersCpuMs, 0)}`).join(', ')}`,
        '',
        'real Codex 0.169 app-server (issue 3): text-only turn 64-89 ms, +66-87 ms per exec_command, +32-49 ms per apply_patch, 87-137 ms spawn→initialize, ~150 MB RSS',
        `ours:                                  text-only turn ${fmt(text.p50)} ms, +${fmt(execLocal)} ms per exec_command (local; +${fmt(execRemote)} websocket), +${fmt(patchExtra)} ms per apply_patch, ${fmt(median(cold.initialize))} ms spawn→initialize, ${fmt(mem.idleMiB, 0)} MiB RSS idle`,
        '',
      ].join('\n'),
    );
    if (throughputFigures.length > 0) printThroughput(throughputFigures);
  } finally {
    for (const server of servers) await server.close().catch(() => undefined);
    for (const server of execServers) await server.stop();
    await model?.close();
    for (const dir of [home, work, ...boxes]) await dir.cleanup();
  }
}

await main();
