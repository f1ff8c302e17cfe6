/**
 * Issue 17 figure: several instances on one PostgreSQL database. `INSTANCES` built `serve`
 * processes on loopback HTTP share a throwaway cluster (threads and leases in the database);
 * `THREADS_PER_INSTANCE` threads per instance run at once, each `TURNS_PER_THREAD` turns of one
 * `exec_command` each, and every turn of a thread goes to the next instance (round robin), so each
 * turn is served by an instance that did not run the thread's previous one. Clients: the SDK v2
 * client in the 2026-07-28 era (stateless, as behind a load balancer without affinity). Prints
 * tool calls per second, turn latency p50/p99, failures, and the CPU of the instances, of
 * PostgreSQL and of this process (clients + fake model). Printed, never asserted.
 * Usage: `npm run bench -- scale-out` (`BENCH_SCALE_INSTANCES`, `BENCH_SCALE_THREADS`,
 * `BENCH_SCALE_TURNS` change the shape; defaults 3 x 300 x 5; `BENCH_SCALE_LEASE_SEC` the lease).
 */
import { readFile, readdir } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { Client as ModernClient, StreamableHTTPClientTransport as ModernHttpTransport } from '@modelcontextprotocol/client';
import pg from 'pg';
import { inputItems, startFakeResponsesServer, type FakeResponsesServer, type RecordedRequest } from '../tools/fake-responses-server.js';
import { serverEnv, writeMcpConfig } from '../test/helpers/mcp.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { CLI, startListening, tempDir, type ListeningProcess } from '../test/helpers/process.js';
import { exec, isRecord, say } from '../test/helpers/steps.js';
import { fmt, median, percentile, printTable, since } from './stats.js';

const INSTANCES = Number(process.env.BENCH_SCALE_INSTANCES ?? 3);
const THREADS_PER_INSTANCE = Number(process.env.BENCH_SCALE_THREADS ?? 300);
const TURNS_PER_THREAD = Number(process.env.BENCH_SCALE_TURNS ?? 5);
/** Waits with `codex-status` (any instance) for a turn that answered "running"; its last agent message. */
async function followRunningTurn(client: ModernClient, running: { threadId?: string; turnId?: string }): Promise<string | null | undefined> {
  for (;;) {
    const result = await client.callTool({ name: 'codex-status', arguments: { threadId: running.threadId, turnId: running.turnId, waitMs: 50_000 } });
    const status = result.structuredContent as { state?: string; lastAgentMessage?: string | null } | undefined;
    if (result.isError === true) throw new Error(JSON.stringify(result.content).slice(0, 300));
    if (status?.state !== 'running') return status?.lastAgentMessage;
  }
}

/** The instances' `multienv.lease_sec`; unset, their default. A longer one tells lease renewals starved by load from other failures. */
const LEASE_SEC = process.env.BENCH_SCALE_LEASE_SEC;
const MODERN = '2026-07-28';

/** The model: a turn's first request runs one command, the request with its output ends the turn. */
function respond(request: RecordedRequest): ReturnType<typeof say> {
  const last = inputItems(request).at(-1);
  return isRecord(last) && last.type === 'function_call_output' ? say('done') : exec('echo scale-out');
}

/** CPU time (user + system) of `pid` and its descendants so far, in ms, from /proc. */
async function treeCpuMs(pid: number): Promise<number> {
  const ticks = 100;
  let total = 0;
  const children = async (of: number): Promise<number[]> => {
    const tasks = await readdir(`/proc/${of}/task`).catch(() => [] as string[]);
    const found: number[] = [];
    for (const task of tasks) {
      const text = await readFile(`/proc/${of}/task/${task}/children`, 'utf8').catch(() => '');
      found.push(...text.split(' ').filter(Boolean).map(Number));
    }
    return found;
  };
  const pending = [pid];
  while (pending.length > 0) {
    const next = pending.pop();
    if (next === undefined) break;
    const stat = await readFile(`/proc/${next}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    total += ((Number(fields[11]) + Number(fields[12])) / ticks) * 1000;
    pending.push(...(await children(next)));
  }
  return total;
}

/** The pid of the cluster's postmaster (its backends are its children). */
async function postmasterPid(clusterFolder: string): Promise<number> {
  const pidFile = await readFile(join(clusterFolder, 'pgdata', 'postmaster.pid'), 'utf8');
  return Number(pidFile.split('\n')[0]);
}

async function main(): Promise<void> {
  const home = await tempDir('bench-scale-home-');
  const work = await tempDir('bench-scale-work-');
  const clusterDir = await tempDir('bench-scale-pg-');
  const cluster = await startPostgres(clusterDir.path);
  const servers: ListeningProcess[] = [];
  const clients: ModernClient[] = [];
  let model: FakeResponsesServer | undefined;
  try {
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE scale');
    await admin.end();
    const url = cluster.url.replace('/postgres?', '/scale?');
    model = await startFakeResponsesServer({ respond });
    await writeMcpConfig(home.path, model.url);
    const env = serverEnv(home.path, { HOME: home.path, SHELL: '/bin/sh', CODEX_MULTIENV_DATABASE_URL: url });
    for (let i = 0; i < INSTANCES; i++) {
      servers.push(
        await startListening(
          process.execPath,
          [
            CLI,
            'serve',
            '--listen',
            'http://127.0.0.1:0',
            '-c',
            `multienv.max_concurrent_turns=${THREADS_PER_INSTANCE * 2}`,
            ...(LEASE_SEC === undefined ? [] : ['-c', `multienv.lease_sec=${LEASE_SEC}`]),
          ],
          env,
        ),
      );
    }
    for (const server of servers) {
      const client = new ModernClient({ name: 'scale-out-bench', version: '1.0.0' }, { capabilities: {}, versionNegotiation: { mode: { pin: MODERN } } });
      await client.connect(new ModernHttpTransport(new URL(server.url)));
      clients.push(client);
    }
    const client = (i: number): ModernClient => {
      const found = clients[i % clients.length];
      if (found === undefined) throw new Error('no client');
      return found;
    };

    // Warm-up: one thread per instance, so the first turns' costs (pools, caches) are not timed.
    for (let i = 0; i < INSTANCES; i++) await client(i).callTool({ name: 'codex', arguments: { prompt: 'warm up', cwd: work.path } });

    const threads = INSTANCES * THREADS_PER_INSTANCE;
    const pgPids = [await postmasterPid(clusterDir.path)];
    const serverPids = servers.map((server) => server.child.pid ?? 0);
    const cpu0 = { servers: await Promise.all(serverPids.map(treeCpuMs)), postgres: await Promise.all(pgPids.map(treeCpuMs)), bench: process.cpuUsage() };
    const load = loadavg()[0] ?? Number.NaN;
    const latencies: number[] = [];
    const failures: string[] = [];
    const started = performance.now();
    await Promise.all(
      Array.from({ length: threads }, async (_, t) => {
        let threadId: string | undefined;
        for (let turn = 0; turn < TURNS_PER_THREAD; turn++) {
          const at = performance.now();
          try {
            const result = await client(t + turn).callTool({
              name: turn === 0 ? 'codex' : 'codex-reply',
              arguments: turn === 0 ? { prompt: `thread ${t}`, cwd: work.path } : { threadId, prompt: `turn ${turn}` },
            });
            const content = result.structuredContent as { threadId?: string; content?: string; status?: string; turnId?: string } | undefined;
            if (result.isError === true) throw new Error(JSON.stringify(result.content).slice(0, 300));
            threadId = content?.threadId;
            // A turn that outlasts the call's wait budget goes on; a client follows it with codex-status, as here.
            const message = content?.status === 'running' ? await followRunningTurn(client(t + turn), content) : content?.content;
            if (message !== 'done') throw new Error(JSON.stringify(result.content).slice(0, 300));
            latencies.push(since(at));
          } catch (error) {
            failures.push(`thread ${t} turn ${turn}: ${String(error)}`);
            return;
          }
        }
      }),
    );
    const wallMs = since(started);
    const benchCpu = process.cpuUsage(cpu0.bench);
    const serversCpu = (await Promise.all(serverPids.map(treeCpuMs))).reduce((sum, value, i) => sum + value - (cpu0.servers[i] ?? 0), 0);
    const postgresCpu = (await Promise.all(pgPids.map(treeCpuMs))).reduce((sum, value, i) => sum + value - (cpu0.postgres[i] ?? 0), 0);
    const calls = latencies.length;

    process.stdout.write(
      `\nscale-out: ${INSTANCES} instances x ${THREADS_PER_INSTANCE} threads x ${TURNS_PER_THREAD} turns of one exec_command, each turn on the next instance; one PostgreSQL; ` +
        `lease ${LEASE_SEC ?? 'default'} s; ` +
        `${availableParallelism()} cores, load ${fmt(load)} before, ${fmt(loadavg()[0] ?? Number.NaN)} after\n`,
    );
    printTable(
      ['tool calls', 'failures', 'wall s', 'tool calls/s', 'turn p50 ms', 'turn p99 ms', 'instances CPU/call ms', 'PostgreSQL CPU/call ms', 'bench CPU/call ms (clients+model)'],
      [
        [
          String(calls),
          String(failures.length),
          fmt(wallMs / 1000, 1),
          fmt((calls / wallMs) * 1000, 0),
          fmt(median(latencies), 0),
          fmt(percentile(latencies, 99), 0),
          fmt(serversCpu / calls),
          fmt(postgresCpu / calls),
          fmt((benchCpu.user + benchCpu.system) / 1000 / calls),
        ],
      ],
    );
    // Failures by kind (the error without its thread, turn and ids), then the first few in full.
    const kinds = new Map<string, number>();
    for (const failure of failures) {
      const kind = failure
        .replace(/^thread \d+ turn \d+: /, '')
        .replace(/[0-9a-f-]{36}|\d+/g, 'N')
        .slice(0, 120);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    for (const [kind, count] of kinds) process.stdout.write(`${count} failure(s): ${kind}\n`);
    for (const failure of failures.slice(0, 5)) process.stdout.write(`failure: ${failure}\n`);
    // What the instances said about it: their distinct warnings (ids and numbers folded), a few each.
    if (failures.length > 0) {
      servers.forEach((server, i) => {
        const said = new Map<string, number>();
        for (const line of server.stderr().split('\n')) {
          if (!/warn|error/i.test(line)) continue;
          const kind = line.replace(/[0-9a-f-]{36}|\d+/g, 'N').slice(0, 240);
          said.set(kind, (said.get(kind) ?? 0) + 1);
        }
        for (const [kind, count] of [...said].slice(0, 8)) process.stdout.write(`instance ${i}: ${count} x ${kind}\n`);
      });
    }
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const server of servers) await server.stop();
    await model?.close();
    await cluster.stop();
    for (const dir of [home, work, clusterDir]) await dir.cleanup();
  }
}

await main();
