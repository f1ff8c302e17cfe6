/**
 * Issue 2 figures: the same client against our exec-server and `codex exec-server` 0.169.0, over
 * websocket and stdio on loopback. Issue 18 (3): the throughput of one command's output in
 * process and over websocket, beside a plain Node pipe and a raw `ws` loopback measured in the
 * same run. Run with `npm run bench -- exec` (builds first); `BENCH_ONLY=servers` or
 * `BENCH_ONLY=output` runs one part. `BENCH_BASELINE=/path/to/other/dist/cli/main.js` adds that
 * build to the output figure: its exec-server over websocket, driven by the client of its own
 * sources (the `src/` beside that `dist/`), so that both ends are the other build's, and its
 * `local` environment's server and client in this process.
 *
 * Both servers are measured side by side, one run of ours and one of codex's in turn (the order
 * alternating), so that load from other work on the machine and the client's own warm-up fall on
 * both alike; each figure is a median over its runs.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WebSocket } from 'ws';
import { ExecClient, type ExecConnector } from '../src/exec/client.js';
import { ExecServer } from '../src/exec/server.js';
import { localConnector, stdioConnector, websocketConnector } from '../src/environments/connectors.js';
import { LocalExecServer } from '../src/environments/local-server.js';
import { EnvironmentStatus } from '../src/protocol/exec.js';
import { CLI, CODEX, startCodexWsExecServer, startListening, startOurWsExecServer, tempDir, type ListeningProcess } from '../test/helpers/process.js';
import { fmt, median, printTable, since } from './stats.js';

const START_RUNS = Number(process.env.BENCH_START_RUNS ?? 200);
const FILE_RUNS = Number(process.env.BENCH_FILE_RUNS ?? 100);
const THROUGHPUT_RUNS = Number(process.env.BENCH_THROUGHPUT_RUNS ?? 3);
const THROUGHPUT_BYTES = 64 * 1024 * 1024;
const CONCURRENT = 1000;
const CONCURRENT_RUNS = Number(process.env.BENCH_CONCURRENT_RUNS ?? 3);
/** Un-timed bursts before the figure: the client (JIT-compiled JavaScript) needs a few to warm up. */
const CONCURRENT_WARMUP_RUNS = 5;
const CONCURRENT_WARMUP = 500;
/**
 * Bound on one request of the concurrency figure. `codex exec-server` 0.169.0 sometimes stops
 * answering a connection for good in the middle of a burst of 1000 requests (seen with a bare
 * websocket client too; never with bursts of 500); such a burst is retried on a new connection.
 */
const CONCURRENT_TIMEOUT_MS = 10_000;
const CONCURRENT_ATTEMPTS = 3;
/** Output of one command in the issue 18 figure. */
const OUTPUT_BYTES = 256 * 1024 * 1024;
const OUTPUT_RUNS = Number(process.env.BENCH_OUTPUT_RUNS ?? 5);
const ONLY = process.env.BENCH_ONLY?.split(',');
/** Another build's `dist/cli/main.js`, measured in the output figure beside this one. */
const BASELINE_CLI = process.env.BENCH_BASELINE;

interface Figures {
  startMs: number;
  throughputMiBs: number;
  readMs: number;
  writeMs: number;
  concurrentMs: number;
}

interface Side {
  connector: ExecConnector;
  client: ExecClient;
  file: string;
  starts: number[];
  throughputs: number[];
  reads: number[];
  writes: number[];
  concurrent: number[];
}

/** Runs `step` for each side, ours first on even rounds and codex's first on odd ones. */
async function alternate(sides: readonly Side[], round: number, step: (side: Side) => Promise<void>): Promise<void> {
  const order = round % 2 === 0 ? sides : [...sides].reverse();
  for (const side of order) await step(side);
}

/** Measures every figure for each connector, interleaving the runs; results in connector order. */
async function measure(connectors: readonly ExecConnector[], work: string): Promise<Figures[]> {
  const sides: Side[] = [];
  try {
    for (const [index, connector] of connectors.entries()) {
      sides.push({
        connector,
        client: await ExecClient.connect(connector),
        file: join(work, `bench-${index}.bin`),
        starts: [],
        throughputs: [],
        reads: [],
        writes: [],
        concurrent: [],
      });
    }
    const env = { PATH: '/usr/bin:/bin' };
    const startTrue = async (side: Side): Promise<void> => {
      await (await side.client.startProcess({ argv: ['true'], cwd: work, env, tty: false })).collect();
    };
    for (let i = 0; i < 10; i++) await alternate(sides, i, startTrue);
    for (let i = 0; i < THROUGHPUT_RUNS; i++) {
      await alternate(sides, i, async (side) => {
        const t0 = performance.now();
        const big = await side.client.startProcess({ argv: ['head', '-c', String(THROUGHPUT_BYTES), '/dev/zero'], cwd: work, env, tty: false });
        let received = 0;
        for await (const event of big.events()) if (event.kind === 'output') received += event.data.length;
        const seconds = since(t0) / 1000;
        if (received !== THROUGHPUT_BYTES) throw new Error(`throughput run received ${received} bytes`);
        side.throughputs.push(THROUGHPUT_BYTES / 1024 / 1024 / seconds);
      });
    }

    const payload = Buffer.alloc(1024 * 1024, 7);
    for (let i = 0; i < FILE_RUNS; i++) {
      await alternate(sides, i, async (side) => {
        let t = performance.now();
        await side.client.writeFile(side.file, payload);
        side.writes.push(since(t));
        t = performance.now();
        await side.client.readFile(side.file);
        side.reads.push(since(t));
      });
    }

    // Warm-up bursts of a size codex answers reliably (see CONCURRENT_TIMEOUT_MS), then the figure.
    for (let i = 0; i < CONCURRENT_WARMUP_RUNS; i++) {
      await alternate(sides, i, async (side) => {
        await Promise.all(Array.from({ length: CONCURRENT_WARMUP }, () => side.client.request(EnvironmentStatus, {})));
      });
    }
    for (let i = 0; i < CONCURRENT_RUNS; i++) {
      await alternate(sides, i, async (side) => {
        side.concurrent.push(await concurrentBurst(side));
      });
    }
    // Last: codex answers a start over a websocket only after ~50 ms, and a server left idle that
    // long between its own runs has V8 shrink its heap (the memory reducer); measured first, that
    // would weigh on our figures measured after it, an effect of the bench's order, not of the work.
    for (let i = 0; i < START_RUNS; i++) {
      await alternate(sides, i, async (side) => {
        const t = performance.now();
        await startTrue(side);
        side.starts.push(since(t));
      });
    }

    return sides.map((side) => ({
      startMs: median(side.starts),
      throughputMiBs: median(side.throughputs),
      readMs: median(side.reads),
      writeMs: median(side.writes),
      concurrentMs: median(side.concurrent),
    }));
  } finally {
    for (const side of sides) await side.client.close();
  }
}

/** Times one burst of concurrent requests; a burst the server stops answering is retried on a new connection. */
async function concurrentBurst(side: Side): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const tc = performance.now();
    try {
      await Promise.all(Array.from({ length: CONCURRENT }, () => side.client.request(EnvironmentStatus, {}, { timeoutMs: CONCURRENT_TIMEOUT_MS })));
      return since(tc);
    } catch (error) {
      if (attempt === CONCURRENT_ATTEMPTS) throw error;
      process.stdout.write(`(${side.connector.label} stopped answering a burst of ${CONCURRENT} requests; retrying on a new connection)\n`);
      await side.client.close();
      side.client = await ExecClient.connect(side.connector);
      for (let i = 0; i < 10; i++) await side.client.request(EnvironmentStatus, {});
    }
  }
}

/** Start true→closed through the in-process server alone (the client-overhead figure). */
async function localStartMedian(work: string): Promise<number> {
  const server = new ExecServer({ env: process.env, host: { env: process.env, cwd: work, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'bench' } });
  const client = await ExecClient.connect(localConnector(server));
  try {
    const env = { PATH: '/usr/bin:/bin' };
    const runs: number[] = [];
    for (let i = 0; i < START_RUNS + 10; i++) {
      const t = performance.now();
      await (await client.startProcess({ argv: ['true'], cwd: work, env, tty: false })).collect();
      if (i >= 10) runs.push(since(t));
    }
    return median(runs);
  } finally {
    await client.close();
    await server.close();
  }
}

async function directSpawnMedian(): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < START_RUNS + 10; i++) {
    const t = performance.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn('true', [], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.once('error', reject);
      child.once('close', () => resolve());
    });
    if (i >= 10) runs.push(since(t));
  }
  return median(runs);
}

/** One way of moving a command's output to this process; resolves with the bytes received. */
interface OutputCase {
  name: string;
  run: () => Promise<number>;
  runs: number[];
  /** The server process, when the case has one (its process tree's CPU is counted). */
  serverPid?: number;
  /** CPU ms per MiB of output of each run: this process (the client), and the server's process tree. */
  clientCpu: number[];
  serverCpu: number[];
}

/**
 * CPU seconds (user + system) used so far by `pid` and its live descendants (`codex` is a wrapper
 * that runs the native server as its child), from /proc; 0 where /proc is missing.
 */
function treeCpuSeconds(pid: number): number {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return 0;
  }
  const children = new Map<number, number[]>();
  const cpu = new Map<number, number>();
  for (const entry of entries) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields after the command (which may hold spaces) in parentheses: state, ppid, … utime (14), stime (15).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const parent = Number(fields[1]);
    cpu.set(Number(entry), (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS);
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  let total = 0;
  const stack = [pid];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    total += cpu.get(next) ?? 0;
    stack.push(...(children.get(next) ?? []));
  }
  return total;
}

/** /proc's clock ticks per second (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** `head -c OUTPUT_BYTES /dev/zero` through a plain Node pipe: the in-process floor. */
function nodePipeOutput(work: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('head', ['-c', String(OUTPUT_BYTES), '/dev/zero'], { cwd: work, stdio: ['ignore', 'pipe', 'inherit'] });
    let received = 0;
    child.stdout.on('data', (data: Buffer) => (received += data.length));
    child.once('error', reject);
    child.once('close', () => resolve(received));
  });
}

/**
 * A client of `bench/raw-ws-floor.ts`: each run asks it for OUTPUT_BYTES, of a command's output
 * (`command`) or from its memory (`loopback`).
 */
async function rawWsOutput(url: string): Promise<{ run: (what: 'command' | 'loopback') => Promise<number>; close: () => void }> {
  const socket = new WebSocket(url, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return {
    run: (what) =>
      new Promise((resolve) => {
        let received = 0;
        const onMessage = (data: Buffer): void => {
          received += data.length;
          if (received < OUTPUT_BYTES) return;
          socket.off('message', onMessage);
          resolve(received);
        };
        socket.on('message', onMessage);
        socket.send(what === 'loopback' ? `loopback:${OUTPUT_BYTES}` : String(OUTPUT_BYTES));
      }),
    close: () => socket.close(),
  };
}

/** What {@link clientOutput} needs of a client: this build's `ExecClient`, or the baseline's. */
interface OutputClient {
  startProcess(params: { argv: string[]; cwd: string; env: Record<string, string>; tty: boolean }): Promise<{ events(): AsyncIterable<{ kind: string; data?: Buffer }> }>;
  close(): Promise<void>;
}

/** Runs `head -c OUTPUT_BYTES /dev/zero` through `client` and counts the output events' bytes. */
async function clientOutput(client: OutputClient, work: string): Promise<number> {
  const command = await client.startProcess({ argv: ['head', '-c', String(OUTPUT_BYTES), '/dev/zero'], cwd: work, env: { PATH: '/usr/bin:/bin' }, tty: false });
  let received = 0;
  for await (const event of command.events()) if (event.kind === 'output') received += event.data?.length ?? 0;
  return received;
}

/** The baseline's clients: of its exec-server on a websocket, and of its in-process `local` server. */
interface BaselineClients {
  server: ListeningProcess;
  client: OutputClient;
  local: OutputClient;
  /** Closes the baseline's in-process server (its client is closed with the others). */
  closeLocal: () => Promise<void>;
}

/**
 * The baseline build's exec-server on a websocket and a client of it made by the baseline's own
 * sources (loaded through tsx, as this bench's are), and the baseline's `local` environment
 * server with its client in this process, or undefined without {@link BASELINE_CLI}.
 */
async function baselineOutputClients(work: string): Promise<BaselineClients | undefined> {
  if (BASELINE_CLI === undefined) return undefined;
  const root = dirname(dirname(dirname(BASELINE_CLI)));
  // The baseline's own modules, typed by what this bench calls (checked to exist before use).
  const { ExecClient: baselineClient } = (await import(pathToFileURL(join(root, 'src/exec/client.ts')).href)) as {
    ExecClient?: { connect?: (connector: unknown) => Promise<OutputClient> };
  };
  const { websocketConnector: baselineConnector, localConnector: baselineLocalConnector } = (await import(pathToFileURL(join(root, 'src/environments/connectors.ts')).href)) as {
    websocketConnector?: (url: string) => unknown;
    localConnector?: (server: unknown) => unknown;
  };
  const { LocalExecServer: BaselineLocalServer } = (await import(pathToFileURL(join(root, 'src/environments/local-server.ts')).href)) as {
    LocalExecServer?: new (options: unknown) => { close: () => Promise<void> };
  };
  if (
    typeof baselineClient?.connect !== 'function' ||
    typeof baselineConnector !== 'function' ||
    typeof baselineLocalConnector !== 'function' ||
    BaselineLocalServer === undefined
  ) {
    throw new Error(`${root}/src has no ExecClient.connect, websocketConnector, localConnector or LocalExecServer`);
  }
  const localServer = new BaselineLocalServer({
    env: process.env,
    host: { env: process.env, cwd: work, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'bench' },
  });
  const server = await startListening(process.execPath, [BASELINE_CLI, 'exec-server', '--listen', 'ws://127.0.0.1:0']);
  try {
    const client = await baselineClient.connect(baselineConnector(server.url));
    const local = await baselineClient.connect(baselineLocalConnector(localServer));
    return { server, client, local, closeLocal: () => localServer.close() };
  } catch (error) {
    await server.stop();
    await localServer.close();
    throw error;
  }
}

/**
 * Issue 18 (3): MiB/s of one command's 256 MiB of output, ours in process and over websocket
 * beside the floors and Codex's exec-server, interleaved round by round (the order rotating) so
 * that the machine's load falls on all alike. The floors: the command through a plain Node pipe
 * (for in process), the command through a bare `ws` server (for over websocket, the like-for-like
 * floor: the same command and hops, no protocol), and a bare `ws` loopback sending from memory
 * (the websocket alone, no command).
 */
async function measureOutput(work: string, ours: ListeningProcess, codex: ListeningProcess): Promise<void> {
  const floorServer = await startListening(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./raw-ws-floor.ts', import.meta.url))]);
  // The local environment's server, made as the environment makes it (its output is not gathered into windows).
  const local = new LocalExecServer({
    env: process.env,
    host: { env: process.env, cwd: work, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'bench' },
  });
  const clients: OutputClient[] = [];
  let rawWs: Awaited<ReturnType<typeof rawWsOutput>> | undefined;
  let baseline: BaselineClients | undefined;
  try {
    rawWs = await rawWsOutput(floorServer.url);
    baseline = await baselineOutputClients(work);
    if (baseline !== undefined) clients.push(baseline.client, baseline.local);
    const connect = async (connector: ExecConnector): Promise<ExecClient> => {
      const client = await ExecClient.connect(connector);
      clients.push(client);
      return client;
    };
    const [inProcess, oursWs, codexWs] = [
      await connect(localConnector(await local.get())),
      await connect(websocketConnector(ours.url)),
      await connect(websocketConnector(codex.url)),
    ];
    const raw = rawWs;
    const outputCase = (name: string, run: () => Promise<number>, serverPid?: number): OutputCase => ({ name, run, runs: [], serverPid, clientCpu: [], serverCpu: [] });
    const cases: OutputCase[] = [
      outputCase('Node pipe floor (head | this process)', () => nodePipeOutput(work)),
      outputCase('raw ws floor (head | ws server | this process)', () => raw.run('command'), floorServer.child.pid),
      outputCase('raw ws loopback (no command: memory | ws server | this process)', () => raw.run('loopback'), floorServer.child.pid),
      outputCase('ours in process (local)', () => clientOutput(inProcess, work)),
      outputCase('ours over websocket', () => clientOutput(oursWs, work), ours.child.pid),
      outputCase('codex exec-server over websocket', () => clientOutput(codexWs, work), codex.child.pid),
    ];
    const base = baseline;
    if (base !== undefined) {
      cases.push(
        outputCase('baseline over websocket (its client and server)', () => clientOutput(base.client, work), base.server.child.pid),
        outputCase('baseline in process (its local)', () => clientOutput(base.local, work)),
      );
    }
    // One un-timed round warms every path up.
    for (let round = -1; round < OUTPUT_RUNS; round++) {
      const shift = Math.max(0, round) % cases.length;
      for (const item of [...cases.slice(shift), ...cases.slice(0, shift)]) {
        const serverCpu0 = item.serverPid === undefined ? 0 : treeCpuSeconds(item.serverPid);
        const clientCpu0 = process.cpuUsage();
        const t0 = performance.now();
        const received = await item.run();
        const seconds = since(t0) / 1000;
        const clientCpu = process.cpuUsage(clientCpu0);
        const serverCpu = item.serverPid === undefined ? 0 : treeCpuSeconds(item.serverPid) - serverCpu0;
        if (received !== OUTPUT_BYTES) throw new Error(`${item.name} received ${received} bytes, not ${OUTPUT_BYTES}`);
        if (round < 0) continue;
        const mib = OUTPUT_BYTES / 1024 / 1024;
        item.runs.push(mib / seconds);
        item.clientCpu.push((clientCpu.user + clientCpu.system) / 1000 / mib);
        item.serverCpu.push((serverCpu * 1000) / mib);
      }
    }
    const [pipe, rawFloor, rawLoopback, oursLocal, oursOverWs, codexOverWs, baseOverWs, baseLocal] = cases.map((item) => median(item.runs));
    if (pipe === undefined || rawFloor === undefined || rawLoopback === undefined || oursLocal === undefined || oursOverWs === undefined || codexOverWs === undefined) {
      throw new Error('missing figures');
    }
    process.stdout.write(`\nissue 18 (3): ${OUTPUT_BYTES / 1024 / 1024} MiB of one command's stdout, median of ${OUTPUT_RUNS} runs, MiB/s\n`);
    // The spread of the runs: on a shared machine one run can be half another.
    const range = (index: number): string => {
      const runs = cases[index]!.runs;
      return `${fmt(Math.min(...runs), 0)}-${fmt(Math.max(...runs), 0)}`;
    };
    const baselineRows =
      baseOverWs === undefined || baseLocal === undefined
        ? []
        : [
            [cases[6]!.name, fmt(baseOverWs, 0), range(6), fmt(baseOverWs / rawFloor), 'raw ws', ''],
            ['ours over websocket vs baseline', '', '', fmt(oursOverWs / baseOverWs), 'baseline', ''],
            [cases[7]!.name, fmt(baseLocal, 0), range(7), fmt(baseLocal / pipe), 'Node pipe', ''],
            ['ours in process vs baseline', '', '', fmt(oursLocal / baseLocal), 'baseline', ''],
          ];
    printTable(
      ['path', 'MiB/s', 'runs', 'ratio', 'to', 'target'],
      [
        [cases[0]!.name, fmt(pipe, 0), range(0), '', '', ''],
        [cases[1]!.name, fmt(rawFloor, 0), range(1), '', '', ''],
        [cases[2]!.name, fmt(rawLoopback, 0), range(2), '', '', ''],
        [cases[3]!.name, fmt(oursLocal, 0), range(3), fmt(oursLocal / pipe), 'Node pipe', '>= 0.8'],
        [cases[4]!.name, fmt(oursOverWs, 0), range(4), fmt(oursOverWs / rawFloor), 'raw ws', '>= 0.7'],
        ['', '', '', fmt(oursOverWs / rawLoopback), 'ws loopback', ''],
        [cases[5]!.name, fmt(codexOverWs, 0), range(5), fmt(codexOverWs / rawFloor), 'raw ws', ''],
        ['', '', '', fmt(codexOverWs / rawLoopback), 'ws loopback', ''],
        ['ours over websocket vs codex', '', '', fmt(oursOverWs / codexOverWs), 'codex', '>= 1.0'],
        ...baselineRows,
      ],
    );
    // CPU is what a loaded machine takes away: it varies far less with the load than MiB/s does.
    process.stdout.write(
      `\nCPU ms per MiB of output, median of ${OUTPUT_RUNS} runs (this process is the client, and also the server in process; the command's own CPU is not counted)\n`,
    );
    const cpuTotal = (item: OutputCase): number => median(item.clientCpu.map((client, index) => client + (item.serverCpu[index] ?? 0)));
    const rawTotal = cpuTotal(cases[1]!);
    printTable(
      ['path', 'client', 'server', 'total', 'to raw ws floor'],
      cases.map((item) => [
        item.name,
        fmt(median(item.clientCpu)),
        item.serverPid === undefined ? '' : fmt(median(item.serverCpu)),
        fmt(cpuTotal(item)),
        fmt(cpuTotal(item) / rawTotal),
      ]),
    );
  } finally {
    rawWs?.close();
    for (const client of clients) await client.close();
    await local.close();
    await baseline?.closeLocal();
    await baseline?.server.stop();
    await floorServer.stop();
  }
}

async function main(): Promise<void> {
  const work = await tempDir('bench-exec-');
  const codexHome = await tempDir('bench-codex-home-');
  const servers: ListeningProcess[] = [];
  try {
    const ours = await startOurWsExecServer();
    const codex = await startCodexWsExecServer(codexHome.path);
    servers.push(ours, codex);
    if (ONLY === undefined || ONLY.includes('output')) await measureOutput(work.path, ours, codex);
    if (ONLY !== undefined && !ONLY.includes('servers')) return;
    const [oursWs, codexWs] = await measure([websocketConnector(ours.url), websocketConnector(codex.url)], work.path);
    const [oursStdio, codexStdio] = await measure(
      [
        stdioConnector({ program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'], env: process.env }),
        stdioConnector({ program: CODEX, args: ['exec-server', '--listen', 'stdio'], env: { ...process.env, CODEX_HOME: codexHome.path } }),
      ],
      work.path,
    );

    const rows: string[][] = [];
    const add = (label: string, transport: string, a: Figures | undefined, b: Figures | undefined): void => {
      if (a === undefined || b === undefined) throw new Error('missing figures');
      rows.push(
        [`${label} (a) start true→closed, median ms`, transport, fmt(a.startMs), fmt(b.startMs), fmt(a.startMs / b.startMs), '<= 1.0'],
        [`${label} (b) 64 MiB stdout, MiB/s`, transport, fmt(a.throughputMiBs, 0), fmt(b.throughputMiBs, 0), fmt(a.throughputMiBs / b.throughputMiBs), '>= 1.0'],
        [`${label} (c) fs/readFile 1 MiB, median ms`, transport, fmt(a.readMs), fmt(b.readMs), fmt(a.readMs / b.readMs), '<= 1.0'],
        [`${label} (c) fs/writeFile 1 MiB, median ms`, transport, fmt(a.writeMs), fmt(b.writeMs), fmt(a.writeMs / b.writeMs), '<= 1.0'],
        [`${label} (d) ${CONCURRENT} concurrent requests, median ms`, transport, fmt(a.concurrentMs), fmt(b.concurrentMs), fmt(a.concurrentMs / b.concurrentMs), '<= 1.0'],
      );
    };
    add('exec', 'websocket', oursWs, codexWs);
    add('exec', 'stdio', oursStdio, codexStdio);
    printTable(['figure', 'transport', 'ours', 'codex', 'ratio', 'target'], rows);

    const local = await localStartMedian(work.path);
    const direct = await directSpawnMedian();
    process.stdout.write(
      `\nclient overhead over a direct local spawn: in-process exec-server start true→closed ${fmt(local)} ms vs a direct child_process spawn ${fmt(direct)} ms: ${local >= direct ? '+' : ''}${fmt(local - direct)} ms (target <= 2 ms)\n`,
    );
  } finally {
    for (const server of servers) await server.stop();
    await work.cleanup();
    await codexHome.cleanup();
  }
}

await main();
