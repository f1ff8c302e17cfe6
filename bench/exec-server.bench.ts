/**
 * Issue 2 figures: the same client against our exec-server and `codex exec-server` 0.169.0, over
 * websocket and stdio on loopback. Run with `npm run bench -- exec` (builds first).
 */
import { spawn } from 'node:child_process';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecClient, type ExecConnector } from '../src/exec/client.js';
import { ExecServer } from '../src/exec/server.js';
import { localConnector, stdioConnector, websocketConnector } from '../src/environments/connectors.js';
import { EnvironmentStatus } from '../src/protocol/exec.js';
import { CLI, CODEX, startCodexWsExecServer, startOurWsExecServer, tempDir, type ListeningProcess } from '../test/helpers/process.js';
import { fmt, median, printTable, since } from './stats.js';

const START_RUNS = Number(process.env.BENCH_START_RUNS ?? 200);
const FILE_RUNS = Number(process.env.BENCH_FILE_RUNS ?? 50);
const THROUGHPUT_BYTES = 64 * 1024 * 1024;
const CONCURRENT = 1000;

interface Figures {
  startMs: number;
  throughputMiBs: number;
  readMs: number;
  writeMs: number;
  concurrentMs: number;
}

async function measure(connector: ExecConnector, work: string): Promise<Figures> {
  const client = await ExecClient.connect(connector);
  try {
    const env = { PATH: '/usr/bin:/bin' };
    for (let i = 0; i < 10; i++) await (await client.startProcess({ argv: ['true'], cwd: work, env, tty: false })).collect();
    const starts: number[] = [];
    for (let i = 0; i < START_RUNS; i++) {
      const t = performance.now();
      await (await client.startProcess({ argv: ['true'], cwd: work, env, tty: false })).collect();
      starts.push(since(t));
    }

    const t0 = performance.now();
    const big = await client.startProcess({ argv: ['head', '-c', String(THROUGHPUT_BYTES), '/dev/zero'], cwd: work, env, tty: false });
    let received = 0;
    for await (const event of big.events()) if (event.kind === 'output') received += event.data.length;
    const seconds = since(t0) / 1000;
    if (received !== THROUGHPUT_BYTES) throw new Error(`throughput run received ${received} bytes`);

    const payload = Buffer.alloc(1024 * 1024, 7);
    const file = join(work, 'bench.bin');
    const writes: number[] = [];
    const reads: number[] = [];
    for (let i = 0; i < FILE_RUNS; i++) {
      let t = performance.now();
      await client.writeFile(file, payload);
      writes.push(since(t));
      t = performance.now();
      await client.readFile(file);
      reads.push(since(t));
    }

    const tc = performance.now();
    await Promise.all(Array.from({ length: CONCURRENT }, () => client.request(EnvironmentStatus, {})));
    const concurrentMs = since(tc);
    return { startMs: median(starts), throughputMiBs: THROUGHPUT_BYTES / 1024 / 1024 / seconds, readMs: median(reads), writeMs: median(writes), concurrentMs };
  } finally {
    await client.close();
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

async function main(): Promise<void> {
  const work = await tempDir('bench-exec-');
  const codexHome = await tempDir('bench-codex-home-');
  const servers: ListeningProcess[] = [];
  try {
    const ours = await startOurWsExecServer();
    const codex = await startCodexWsExecServer(codexHome.path);
    servers.push(ours, codex);
    const oursWs = await measure(websocketConnector(ours.url), work.path);
    const codexWs = await measure(websocketConnector(codex.url), work.path);
    const oursStdio = await measure(stdioConnector({ program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'], env: process.env }), work.path);
    const codexStdio = await measure(stdioConnector({ program: CODEX, args: ['exec-server', '--listen', 'stdio'], env: { ...process.env, CODEX_HOME: codexHome.path } }), work.path);

    const rows: string[][] = [];
    const add = (label: string, transport: string, a: Figures, b: Figures): void => {
      rows.push(
        [`${label} (a) start true→closed, median ms`, transport, fmt(a.startMs), fmt(b.startMs), fmt(a.startMs / b.startMs), '<= 1.0'],
        [`${label} (b) 64 MiB stdout, MiB/s`, transport, fmt(a.throughputMiBs, 0), fmt(b.throughputMiBs, 0), fmt(a.throughputMiBs / b.throughputMiBs), '>= 1.0'],
        [`${label} (c) fs/readFile 1 MiB, median ms`, transport, fmt(a.readMs), fmt(b.readMs), fmt(a.readMs / b.readMs), '<= 1.0'],
        [`${label} (c) fs/writeFile 1 MiB, median ms`, transport, fmt(a.writeMs), fmt(b.writeMs), fmt(a.writeMs / b.writeMs), '<= 1.0'],
        [`${label} (d) ${CONCURRENT} concurrent requests, ms`, transport, fmt(a.concurrentMs), fmt(b.concurrentMs), fmt(a.concurrentMs / b.concurrentMs), '<= 1.0'],
      );
    };
    add('exec', 'websocket', oursWs, codexWs);
    add('exec', 'stdio', oursStdio, codexStdio);
    printTable(['figure', 'transport', 'ours', 'codex', 'ratio', 'target'], rows);

    const server = new ExecServer({ env: process.env, host: { env: process.env, cwd: work.path, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'bench' } });
    const local = await measure(localConnector(server), work.path);
    await server.close();
    const direct = await directSpawnMedian();
    process.stdout.write(
      `\nclient overhead over a direct local spawn: in-process exec-server start true→closed ${fmt(local.startMs)} ms vs direct spawn ${fmt(direct)} ms: +${fmt(local.startMs - direct)} ms (target <= 2 ms)\n`,
    );
  } finally {
    for (const server of servers) await server.stop();
    await work.cleanup();
    await codexHome.cleanup();
  }
}

await main();
