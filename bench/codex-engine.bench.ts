/**
 * Issue 15 figures: what the Codex engine costs. Per turn and per tool call, three ways of running
 * the same scripted turns on the real Codex (pinned 0.169.0) or our agent, against one fake model:
 *   - direct: Codex's app-server driven over its stdio JSON-RPC by a minimal client here
 *     (`turn/start` → `turn/completed`), no MCP, none of our code in the path; started as ours
 *     starts it (through the same timing wrapper, the same notifications opted out of);
 *   - codex: our built server (MCP over stdio, the real SDK client), thread on the codex engine;
 *   - builtin: the same server, thread on the builtin engine.
 * "codex − direct" is what our server adds to a Codex turn (MCP hop included). A tool-call turn
 * runs `true` through `exec_command` once; its cost is the tool turn less the text turn. Then
 * memory with {@link THREADS} Codex-engine threads: resident sizes of our server and of the
 * app-server. Prints, never asserts. Usage: `npm run bench -- codex-engine` (builds first);
 * BENCH_TURNS / BENCH_WARMUP / BENCH_THREADS change the counts; BENCH_THREADS_DIR moves our threads folder; BENCH_SERVER_ARGS adds arguments, BENCH_SERVER_NODE_OPTIONS sets their NODE_OPTIONS;
 * BENCH_BASE_CLI (another build's `dist/cli/main.js`) adds the series `codex-base`, that build on the codex engine, for A/B figures in one run.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { functionCallOutputs, inputItems, startFakeResponsesServer, type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../tools/fake-responses-server.js';
import { codexHomeForFakeModel } from '../test/helpers/codex-home.js';
import { networkEnv } from '../test/helpers/network.js';
import { CLI, REPO_ROOT, tempDir } from '../test/helpers/process.js';
import { APP_SERVER_UNREAD_NOTIFICATIONS } from '../src/protocol/app-server.js';
import { fmt, median, percentile, printRawFigures, printTable, rawRow, since } from './stats.js';

/** Timed turns per series and kind. */
const TURNS = Number(process.env.BENCH_TURNS ?? 30);
/** Untimed turns per series before measuring. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5);
/** Codex-engine threads for the memory figure. */
const THREADS = Number(process.env.BENCH_THREADS ?? 100);
/** Our server's threads folder (`multienv.threads_dir`), e.g. on tmpfs to see what durable writes cost; CODEX_HOME's by default. */
const THREADS_DIR = process.env.BENCH_THREADS_DIR;
/** More arguments of our server, space-separated (e.g. `--foreground` to run it without its relay process). */
const SERVER_ARGS = process.env.BENCH_SERVER_ARGS?.split(' ').filter((arg) => arg.length > 0) ?? [];
/** `NODE_OPTIONS` of our servers, e.g. `--import=$PWD/bench/cpu-profile-hook.mjs` (with CPU_PROFILE_DIR) to profile them. */
const SERVER_NODE_OPTIONS = process.env.BENCH_SERVER_NODE_OPTIONS;
/** Another build of our server, compared side by side on the codex engine (series `codex-base`). */
const BASE_CLI = process.env.BENCH_BASE_CLI;
/** The Codex CLI of the pinned package (a Node launcher of the native binary). */
const CODEX_JS = `${REPO_ROOT}/node_modules/@openai/codex/bin/codex.js`;
/** Runs {@link CODEX_JS} and logs how long each turn took inside the app-server. */
const TIMING_WRAPPER = `${REPO_ROOT}/tools/codex-timing-wrapper.js`;

type Kind = 'text' | 'tool';

// ---------------------------------------------------------------------------------------------
// The scripted model: a prompt with `[tool]` makes one `exec_command` of `true`, then an answer.

function lastUserText(request: RecordedRequest): string {
  const items = inputItems(request);
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i] as { role?: unknown; content?: unknown };
    if (item.role !== 'user' || !Array.isArray(item.content)) continue;
    return item.content.map((part: { text?: unknown }) => (typeof part.text === 'string' ? part.text : '')).join('');
  }
  return '';
}

function respond(request: RecordedRequest): FakeStep {
  const items = inputItems(request);
  const lastUser = items.findLastIndex((item) => (item as { role?: unknown }).role === 'user');
  const answered = functionCallOutputs({ ...request, body: { input: items.slice(lastUser + 1) } }).length > 0;
  if (lastUserText(request).includes('[tool]') && !answered) {
    return { kind: 'output', items: [{ type: 'function_call', name: 'exec_command', arguments: { cmd: 'true' } }] };
  }
  return { kind: 'output', items: [{ type: 'message', text: 'ok' }] };
}

// ---------------------------------------------------------------------------------------------
// Processes.

/** Resident set size of `pid` in MiB, 0 once it is gone. */
function rssMiB(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] === undefined ? 0 : Number(match[1]) / 1024;
  } catch {
    return 0;
  }
}

/** `pid` and every process under it, from /proc. */
function tree(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // Ended while listed.
    }
  }
  const found = [pid];
  for (let i = 0; i < found.length; i++) for (const [child, parent] of parents) if (parent === found[i]) found.push(child);
  return found;
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Resident MiB of the tree under `pid`: our processes and Codex's (its launcher and app-server). */
function memoryOf(pid: number): { ours: number; codex: number } {
  let ours = 0;
  let codex = 0;
  for (const member of tree(pid)) {
    if (commandLine(member).includes('app-server')) codex += rssMiB(member);
    else ours += rssMiB(member);
  }
  return { ours, codex };
}

// ---------------------------------------------------------------------------------------------
// Bare JSON-RPC line clients over a child's stdio: of `codex app-server` (the direct drive), and
// of our server (the `raw` series), so that both sides pay the same client code.

interface LineClient {
  request(method: string, params: unknown): Promise<Record<string, unknown>>;
  notify(method: string, params: unknown): void;
  /** Resolves with the next `turn/completed` of `threadId` (app-server notifications). */
  turnCompleted(threadId: string): Promise<void>;
  close(): void;
}

/**
 * A JSON-RPC client of one line per message on `child`'s stdin and stdout; requests to the client
 * are refused. `marker`: whether messages carry `"jsonrpc": "2.0"` (MCP does; the app-server's
 * messages leave it out).
 */
function lineClient(child: ChildProcessByStdio<Writable, Readable, null>, marker: boolean): LineClient {
  const envelope = marker ? { jsonrpc: '2.0' } : {};
  let next = 1;
  const pending = new Map<number, { resolve: (value: Record<string, unknown>) => void; reject: (error: Error) => void }>();
  const completions = new Map<string, () => void>();
  createInterface({ input: child.stdout }).on('line', (line) => {
    const message = JSON.parse(line) as { id?: number; method?: string; result?: Record<string, unknown>; error?: { message: string }; params?: { threadId?: string } };
    if (message.method === undefined && message.id !== undefined) {
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(message.error.message));
      else waiter?.resolve(message.result ?? {});
    } else if (message.method === 'turn/completed' && message.params?.threadId !== undefined) {
      completions.get(message.params.threadId)?.();
    } else if (message.id !== undefined) {
      // A request to the client (none expected with approvals off): refuse it.
      child.stdin.write(`${JSON.stringify({ ...envelope, id: message.id, error: { code: -32601, message: 'not supported' } })}\n`);
    }
  });
  return {
    request: (method, params) =>
      new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject });
        child.stdin.write(`${JSON.stringify({ ...envelope, id, method, params })}\n`);
      }),
    notify: (method, params) => child.stdin.write(`${JSON.stringify({ ...envelope, method, params })}\n`),
    turnCompleted: (threadId) => new Promise((resolve) => completions.set(threadId, resolve)),
    close: () => child.stdin.end(),
  };
}

/**
 * The app-server as our server runs it in this bench: through the timing wrapper, whose pipe hop
 * our series pays too, so "codex − direct" counts only our server.
 */
function startDirect(codexHome: string, timingLog: string): LineClient {
  const child = spawn(process.execPath, [TIMING_WRAPPER, 'app-server', '--listen', 'stdio://'], {
    env: { ...networkEnv(process.env), CODEX_HOME: codexHome, FAKE_MODEL_API_KEY: 'bench-key', BENCH_CODEX_REAL: CODEX_JS, BENCH_CODEX_TIMING_LOG: timingLog },
    stdio: ['pipe', 'pipe', 'ignore'],
    // In a session of its own, as under our server (whose worker is detached): Codex's commands
    // take several times longer in a session with a controlling terminal.
    detached: true,
  });
  return lineClient(child, false);
}

/** One way of running turns on one thread, opened before any is timed. */
interface Driver {
  turn(prompt: string): Promise<void>;
  close(): Promise<void>;
}

async function openDirect(codexHome: string, work: string, timingLog: string): Promise<Driver> {
  const server = startDirect(codexHome, timingLog);
  // Opted out of the notifications our server opts out of: Codex then writes the same messages both ways.
  await server.request('initialize', {
    clientInfo: { name: 'bench', title: null, version: '0' },
    capabilities: { experimentalApi: true, requestAttestation: false, optOutNotificationMethods: [...APP_SERVER_UNREAD_NOTIFICATIONS] },
  });
  const started = await server.request('thread/start', {
    cwd: work,
    model: 'gpt-5.5',
    approvalPolicy: 'never',
    sandbox: 'danger-full-access',
    config: {},
    environments: [{ environmentId: 'local', cwd: work }],
  });
  const threadId = (started.thread as { id: string }).id;
  return {
    turn: async (prompt) => {
      const done = server.turnCompleted(threadId);
      await server.request('turn/start', { threadId, input: [{ type: 'text', text: prompt, text_elements: [] }], environments: [{ environmentId: 'local', cwd: work }] });
      await done;
    },
    close: () => Promise.resolve(server.close()),
  };
}

// ---------------------------------------------------------------------------------------------
// Our server.

/** How our server is started: its command line and environment; with `timingLog`, its Codex is the timing wrapper, which logs each turn's time inside the app-server there. */
function serverCommand(codexHome: string, engine: 'codex' | 'builtin', timingLog: string | undefined, cli: string): { args: string[]; env: Record<string, string> } {
  const wrapper = timingLog === undefined ? [] : ['-c', `multienv.codex_path=${JSON.stringify(TIMING_WRAPPER)}`];
  return {
    args: [
      cli,
      ...SERVER_ARGS,
      '-c',
      `multienv.engine="${engine}"`,
      ...wrapper,
      ...(THREADS_DIR === undefined ? [] : ['-c', `multienv.threads_dir=${JSON.stringify(THREADS_DIR)}`]),
    ],
    env: {
      ...(networkEnv(process.env) as Record<string, string>),
      CODEX_HOME: codexHome,
      FAKE_MODEL_API_KEY: 'bench-key',
      CODEX_MULTIENV_LOG: 'warn',
      ...(SERVER_NODE_OPTIONS === undefined ? {} : { NODE_OPTIONS: SERVER_NODE_OPTIONS }),
      ...(timingLog === undefined ? {} : { BENCH_CODEX_REAL: CODEX_JS, BENCH_CODEX_TIMING_LOG: timingLog }),
    },
  };
}

/** Our server under the MCP SDK client. */
async function connect(codexHome: string, engine: 'codex' | 'builtin', timingLog?: string, cli = CLI): Promise<{ client: Client; pid: number }> {
  const transport = new StdioClientTransport({ command: process.execPath, ...serverCommand(codexHome, engine, timingLog, cli), stderr: 'ignore' });
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(transport);
  const pid = transport.pid;
  if (pid === null) throw new Error('the server has no pid');
  return { client, pid };
}

const turnArgs = (work: string) => ({ cwd: work, sandbox: 'danger-full-access', 'approval-policy': 'never', environments: [{ id: 'local', cwd: work }] });

async function openOurs(codexHome: string, work: string, engine: 'codex' | 'builtin', timingLog?: string, cli = CLI): Promise<Driver> {
  const { client } = await connect(codexHome, engine, timingLog, cli);
  const first = await client.callTool({ name: 'codex', arguments: { prompt: 'start', ...turnArgs(work) } });
  const threadId = (first.structuredContent as { threadId: string }).threadId;
  return {
    turn: async (prompt) => {
      const result = await client.callTool({ name: 'codex-reply', arguments: { threadId, prompt } });
      if (result.isError === true) throw new Error(`turn failed: ${JSON.stringify(result.content)}`);
    },
    close: () => client.close(),
  };
}

/**
 * Our server driven by the same bare line client as the direct drive (MCP 2025-11-25 over stdio,
 * no SDK), so "raw − direct" is our server alone, without the SDK client's own time.
 */
async function openRaw(codexHome: string, work: string, timingLog: string): Promise<Driver> {
  const { args, env } = serverCommand(codexHome, 'codex', timingLog, CLI);
  const server = lineClient(spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'ignore'] }), true);
  await server.request('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench-raw', version: '1.0.0' } });
  server.notify('notifications/initialized', {});
  const call = async (name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const result = await server.request('tools/call', { name, arguments: args });
    if (result.isError === true) throw new Error(`turn failed: ${JSON.stringify(result.content)}`);
    return result;
  };
  const first = await call('codex', { prompt: 'start', ...turnArgs(work) });
  const threadId = (first.structuredContent as { threadId: string }).threadId;
  return {
    turn: async (prompt) => {
      await call('codex-reply', { threadId, prompt });
    },
    close: () => Promise.resolve(server.close()),
  };
}

/**
 * Warm-up, then timed turns: round by round, each driver runs a text turn and a tool turn in
 * turn, so the load of this shared machine drifts over all series alike.
 */
async function measure(drivers: Record<string, Driver>): Promise<Record<string, Record<Kind, number[]>>> {
  const times: Record<string, Record<Kind, number[]>> = {};
  for (const [name, driver] of Object.entries(drivers)) {
    times[name] = { text: [], tool: [] };
    for (let i = 0; i < WARMUP; i++) await driver.turn(i % 2 === 0 ? `warm ${i}` : `warm ${i} [tool]`);
  }
  for (let i = 0; i < TURNS; i++) {
    for (const kind of ['text', 'tool'] as const) {
      for (const [name, driver] of Object.entries(drivers)) {
        const start = performance.now();
        await driver.turn(kind === 'tool' ? `turn ${i} [tool]` : `turn ${i}`);
        times[name]?.[kind].push(since(start));
      }
    }
  }
  return times;
}

async function memory(codexHome: string, work: string, engine: 'codex' | 'builtin', rows: string[][]): Promise<void> {
  const { client, pid } = await connect(codexHome, engine);
  try {
    const sample = (label: string): void => {
      const { ours, codex } = memoryOf(pid);
      rows.push([engine, label, fmt(ours, 1), fmt(codex, 1), fmt(ours + codex, 1)]);
    };
    sample('server started');
    for (let i = 1; i <= THREADS; i++) {
      await client.callTool({ name: 'codex', arguments: { prompt: `thread ${i}`, ...turnArgs(work) } });
      if (i === 1 || i === THREADS) sample(`${i} thread${i === 1 ? '' : 's'} (one turn each)`);
    }
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------------

const model: FakeResponsesServer = await startFakeResponsesServer({ respond });
const homes: { path: string; cleanup: () => Promise<void> }[] = [];
/**
 * A CODEX_HOME of its own for each series, all alike: app-servers sharing one keep Codex's state
 * there together, and one of them then ran each command about a second longer than the others.
 */
const newHome = async (): Promise<string> => {
  const home = await codexHomeForFakeModel(model.url, '[analytics]\nenabled = false\n');
  homes.push(home);
  return home.path;
};
const work = await tempDir('cmx-bench-codex-engine-');
try {
  process.stdout.write(`${TURNS} timed turns of each kind per series after ${WARMUP} warm-up turns, the series interleaved; fake model answers at once\n`);
  const directTimingLog = join(work.path, 'direct-turns.log');
  const timingLog = join(work.path, 'codex-turns.log');
  const baseTimingLog = join(work.path, 'codex-base-turns.log');
  const rawTimingLog = join(work.path, 'raw-turns.log');
  const drivers: Record<string, Driver> = {
    direct: await openDirect(await newHome(), work.path, directTimingLog),
    codex: await openOurs(await newHome(), work.path, 'codex', timingLog),
    raw: await openRaw(await newHome(), work.path, rawTimingLog),
    ...(BASE_CLI === undefined ? {} : { 'codex-base': await openOurs(await newHome(), work.path, 'codex', baseTimingLog, BASE_CLI) }),
    builtin: await openOurs(await newHome(), work.path, 'builtin'),
  };
  let all: Record<string, Record<Kind, number[]>>;
  try {
    all = await measure(drivers);
  } finally {
    for (const driver of Object.values(drivers)) await driver.close();
  }
  printTable(
    ['series', 'text turn p50 ms', 'tool turn p50 ms', 'per tool call ms'],
    Object.entries(all).map(([name, times]) => [name, fmt(median(times.text)), fmt(median(times.tool)), fmt(median(times.tool) - median(times.text))]),
  );
  const around: Record<string, Record<Kind, number>> = {};
  for (const [series, log] of [
    ['direct', directTimingLog],
    ['codex', timingLog],
    ['raw', rawTimingLog],
    ...(BASE_CLI === undefined ? [] : [['codex-base', baseTimingLog]]),
  ] as const) {
    const paired = (kind: Kind): number[] => (all[series]?.[kind] ?? []).map((time, i) => time - (all.direct?.[kind][i] ?? Number.NaN));
    if (series !== 'direct') {
      process.stdout.write(
        `\n${series} over the direct drive, median of the round-by-round differences: ${fmt(median(paired('text')))} ms per text turn, ${fmt(median(paired('tool')))} ms per tool turn (target: ≤ 2 ms per turn)\n`,
      );
    }
    // The wrapper logged every turn of the series in order; the timed ones are the last, a text and a tool turn a round.
    const inside = (await readFile(log, 'utf8'))
      .trim()
      .split('\n')
      .map(Number)
      .slice(-2 * TURNS);
    const added = (kind: Kind): number[] => (all[series]?.[kind] ?? []).map((time, i) => time - (inside[2 * i + (kind === 'text' ? 0 : 1)] ?? Number.NaN));
    around[series] = { text: median(added('text')), tool: median(added('tool')) };
    process.stdout.write(
      `${series} around Codex's own turn time (turn/start in → turn/completed out at the app-server's stdio), median: ${fmt(median(added('text')))} ms per text turn, ${fmt(median(added('tool')))} ms per tool turn (p95 ${fmt(percentile(added('text'), 95))} / ${fmt(percentile(added('tool'), 95))}; ${series === 'direct' ? '' : 'MCP hop and '}the timing wrapper's pipe hop included)\n`,
    );
  }
  // Codex's own turn time varies by tens of ms from turn to turn; around it, the series compare by what their clients and servers add.
  for (const [series, times] of Object.entries(around)) {
    if (series === 'direct' || around.direct === undefined) continue;
    process.stdout.write(
      `\n${series} around Codex's turn less the direct drive's: ${fmt(times.text - around.direct.text)} ms per text turn, ${fmt(times.tool - around.direct.tool)} ms per tool turn (target: ≤ 2 ms per turn)`,
    );
  }
  process.stdout.write('\n');
  printRawFigures(Object.entries(all).flatMap(([name, times]) => [rawRow(`${name} text`, times.text), rawRow(`${name} tool`, times.tool)]));
  process.stdout.write(`\nmemory with ${THREADS} threads (resident MiB)\n`);
  const rows: string[][] = [];
  await memory(await newHome(), work.path, 'codex', rows);
  await memory(await newHome(), work.path, 'builtin', rows);
  printTable(['engine', 'state', 'our server', 'codex app-server', 'total'], rows);
} finally {
  await model.close();
  for (const home of homes) await home.cleanup();
  await work.cleanup();
}
