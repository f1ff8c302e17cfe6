/**
 * Issue 18 item 2 figures: `thread/list` with 100,000 stored threads (none loaded), through the
 * BUILT server (`dist/cli/main.js`) and the real MCP SDK client: the first listing of a folder
 * without a summary index (a one-time build), the first listing after a restart, later listings
 * back to back and as a hub polls them (spaced further apart than any cache lasts, with the
 * worker's CPU time per call), and `codex-status` of stored threads (unchanged by the index). Run
 * with `npm run bench -- list` (builds first).
 *
 * The threads are written straight into the threads folder (copies of one thread the store
 * wrote, each with its own id): making 100,000 through the model would take hours.
 *
 * The reference, in the same run: the real Codex app-server's `thread/list` with as many stored
 * threads (copies of a rollout Codex wrote; see `codex-thread-list.ts`), the same figures and the
 * ratios. `BENCH_LIST_REFERENCE=0` leaves it out.
 */
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { JsonlThreadStore } from '../src/session/jsonl-thread-store.js';
import { startFakeResponsesServer, type FakeResponsesServer } from '../tools/fake-responses-server.js';
import { AppServer, codexHomeWithThreads, listedThreads } from './codex-thread-list.js';
import { startMcp, writeMcpConfig, type McpHarness } from '../test/helpers/mcp.js';
import { tempDir } from '../test/helpers/process.js';
import { fmt, median, percentile, printTable, since, printRawFigures, rawRow } from './stats.js';

/** Stored threads. */
const THREADS = Number(process.env.BENCH_LIST_THREADS ?? 100_000);
/** Back-to-back timed calls per figure, after untimed warm-up calls. */
const CALLS = Number(process.env.BENCH_LIST_CALLS ?? 100);
const WARMUP = 10;
/** Calls spaced as a polling hub makes them, and the gap (beyond the 5 s summary cache the server had before the index). */
const POLLS = Number(process.env.BENCH_LIST_POLLS ?? 5);
const POLL_GAP_MS = Number(process.env.BENCH_LIST_POLL_GAP_MS ?? 5_500);
const SERVER_LOG = process.env.BENCH_SERVER_LOG ?? 'info';
const REFERENCE = process.env.BENCH_LIST_REFERENCE !== '0';
/** Files written at once while the folder is filled. */
const WRITE_CONCURRENCY = 32;

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function structured(result: { structuredContent?: unknown; isError?: boolean }): Record<string, unknown> {
  if (result.isError === true || !isRecord(result.structuredContent)) throw new Error(`unexpected result ${JSON.stringify(result)}`);
  return result.structuredContent;
}

/** CPU time of every thread of `pid` so far, in ms (`/proc/<pid>/task/<tid>/schedstat`: ns on CPU). */
async function cpuMs(pid: number): Promise<number> {
  let ns = 0;
  for (const task of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${task}/schedstat`, 'utf8').catch(() => '0');
    ns += Number(stat.split(' ')[0] ?? 0);
  }
  return ns / 1e6;
}

/** CPU time of `pid` and every process below it so far, in ms (the `codex` command is a launcher of the native binary). */
async function treeCpuMs(pid: number): Promise<number> {
  let ms = await cpuMs(pid);
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [])) {
    const children = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '');
    for (const child of children.split(' ').filter((word) => word !== '')) ms += await treeCpuMs(Number(child));
  }
  return ms;
}

/** Writes `count` threads of one finished turn each into `dir`: copies of one the store wrote, with their own ids. */
async function fillThreads(dir: string, count: number): Promise<string[]> {
  const template = new JsonlThreadStore({ dir, fsync: false });
  const templateId = 'template-thread';
  await template.create({
    threadId: templateId,
    createdAt: new Date().toISOString(),
    config: { model: 'gpt-5-codex', modelProvider: 'fake', approvalPolicy: 'never', sandbox: 'workspace-write', cwd: '/work', configOverrides: {} },
    environments: [{ id: 'local', cwd: '/work' }],
  });
  await template.append(templateId, {
    type: 'turn_started',
    turnId: 'turn-1',
    prompt: 'fix the flaky test in the frontend module and check the build still passes',
    environments: [{ id: 'local', cwd: '/work' }],
  });
  await template.append(templateId, {
    type: 'item',
    turnId: 'turn-1',
    item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Done: the test waited on a timer; it now waits on the event.' }] },
  });
  await template.append(templateId, { type: 'turn_completed', turnId: 'turn-1', status: 'completed', lastAgentMessage: 'Done.' });
  await template.close();
  const text = await readFile(join(dir, `${templateId}.jsonl`), 'utf8');
  const ids = Array.from({ length: count }, (_, i) => `bench-${String(i).padStart(7, '0')}-${Math.random().toString(36).slice(2, 10)}`);
  let next = 0;
  await Promise.all(
    Array.from({ length: WRITE_CONCURRENCY }, async () => {
      while (next < ids.length) {
        const id = ids[next++] as string;
        await writeFile(join(dir, `${id}.jsonl`), text.replaceAll(templateId, id), { mode: 0o600 });
      }
    }),
  );
  await rm(join(dir, `${templateId}.jsonl`));
  return ids;
}

async function timedList(mcp: McpHarness): Promise<number> {
  const start = performance.now();
  const answer = structured(await mcp.call('thread/list', {}));
  const ms = since(start);
  if (answer.total !== THREADS) throw new Error(`thread/list counted ${String(answer.total)} threads, expected ${THREADS}`);
  return ms;
}

/** The figures compared with the reference. */
interface ListFigures {
  firstAfterRestart: number;
  later: number[];
  polled: number[];
  polledCpu: number[];
}

/** The reference's figures: Codex's app-server over the same number of stored threads. */
async function referenceFigures(modelUrl: string): Promise<ListFigures & { firstEver: number; rolloutBytes: number }> {
  const fillStart = performance.now();
  const home = await codexHomeWithThreads(modelUrl, THREADS);
  process.stdout.write(`[list bench] ${THREADS} Codex rollouts written (${fmt(since(fillStart) / 1000, 1)} s)\n`);
  const list = async (server: AppServer): Promise<number> => {
    const start = performance.now();
    const { ids } = listedThreads(await server.request('thread/list', { limit: 100 }));
    const ms = since(start);
    if (ids.length !== Math.min(100, THREADS)) throw new Error(`Codex's thread/list listed ${ids.length} threads`);
    return ms;
  };
  let server: AppServer | undefined;
  try {
    // Codex never started on these rollouts: whatever it builds of its own, it builds now.
    server = await AppServer.start(home.path);
    const firstEver = await list(server);
    await server.close();
    server = await AppServer.start(home.path);
    const firstAfterRestart = await list(server);
    for (let i = 0; i < WARMUP; i++) await list(server);
    const later: number[] = [];
    for (let i = 0; i < CALLS; i++) later.push(await list(server));
    const polled: number[] = [];
    const polledCpu: number[] = [];
    for (let i = 0; i < POLLS; i++) {
      await new Promise((resolve) => setTimeout(resolve, POLL_GAP_MS));
      const cpuBefore = await treeCpuMs(server.pid);
      polled.push(await list(server));
      polledCpu.push((await treeCpuMs(server.pid)) - cpuBefore);
    }
    return { firstEver, firstAfterRestart, later, polled, polledCpu, rolloutBytes: home.rolloutBytes };
  } finally {
    await server?.close();
    await home.cleanup();
  }
}

async function main(): Promise<void> {
  const home = await tempDir('bench-list-home-');
  const work = await tempDir('bench-list-work-');
  let model: FakeResponsesServer | undefined;
  let mcp: McpHarness | undefined;
  try {
    model = await startFakeResponsesServer({ respond: () => ({ kind: 'output', items: [{ type: 'message', text: 'ok' }] }) });
    await writeMcpConfig(home.path, model.url);
    const dir = join(home.path, 'multienv', 'threads');
    const fillStart = performance.now();
    const ids = await fillThreads(dir, THREADS);
    process.stdout.write(`[list bench] ${THREADS} thread files written (${fmt(since(fillStart) / 1000, 1)} s)\n`);
    const env = { CODEX_MULTIENV_LOG: SERVER_LOG };
    const loadBefore = loadavg()[0] ?? Number.NaN;

    // A folder no server with the index has listed yet.
    mcp = await startMcp(home.path, { env });
    const noIndex = await timedList(mcp);
    await mcp.close();

    // A restart: the index is there.
    mcp = await startMcp(home.path, { env });
    const harness = mcp;
    const firstAfterRestart = await timedList(harness);
    for (let i = 0; i < WARMUP; i++) await timedList(harness);
    const later: number[] = [];
    for (let i = 0; i < CALLS; i++) later.push(await timedList(harness));

    // As a hub polls: calls further apart than the old summary cache lasted; CPU of the worker per call.
    const worker = await harness.workerPid();
    const polled: number[] = [];
    const polledCpu: number[] = [];
    for (let i = 0; i < POLLS; i++) {
      await new Promise((resolve) => setTimeout(resolve, POLL_GAP_MS));
      const cpuBefore = await cpuMs(worker);
      polled.push(await timedList(harness));
      polledCpu.push((await cpuMs(worker)) - cpuBefore);
    }
    // An idle worker between polls: what a hub polling every POLL_GAP_MS costs besides the calls.
    const idleCpuStart = await cpuMs(worker);
    await new Promise((resolve) => setTimeout(resolve, POLL_GAP_MS));
    const idleCpu = (await cpuMs(worker)) - idleCpuStart;

    const status: number[] = [];
    for (let i = 0; i < WARMUP + CALLS; i++) {
      const start = performance.now();
      const answer = structured(await harness.call('codex-status', { threadId: ids[(i * 7919) % ids.length] }));
      if (i >= WARMUP) status.push(since(start));
      if (answer.status !== 'idle') throw new Error(`expected an idle stored thread, got ${String(answer.status)}`);
    }

    await mcp.close();
    mcp = undefined;
    await home.cleanup();
    const reference = REFERENCE ? await referenceFigures(model.url) : undefined;

    const pass = (ok: boolean): string => (ok ? 'yes' : 'NO');
    process.stdout.write(
      `\nserver log level ${SERVER_LOG}; ${THREADS} stored threads, none loaded; thread/list with its default page (100); ${CALLS} back-to-back calls after ${WARMUP} warm-up, ` +
        `${POLLS} polled calls ${POLL_GAP_MS} ms apart; client round trip over stdio; ${availableParallelism()} CPUs, load average ${fmt(loadBefore)} before, ${fmt(loadavg()[0] ?? Number.NaN)} after\n\n`,
    );
    printTable(
      ['figure', 'measured', 'target', 'pass?'],
      [
        [`first thread/list after a restart (${THREADS} threads), ms`, fmt(firstAfterRestart), '<= 200', pass(firstAfterRestart <= 200)],
        ['later thread/list, median ms', fmt(median(later)), '<= 10', pass(median(later) <= 10)],
        [`thread/list polled every ${fmt(POLL_GAP_MS / 1000, 1)} s, median ms`, fmt(median(polled)), '<= 10', pass(median(polled) <= 10)],
        ['… worker CPU per polled call, median ms', fmt(median(polledCpu)), '-', '-'],
        ['codex-status of a stored thread, median ms', fmt(median(status)), 'unchanged', '-'],
      ],
    );
    printRawFigures([
      rawRow('first thread/list, no index yet (builds it)', [noIndex]),
      rawRow('first thread/list after a restart', [firstAfterRestart]),
      rawRow('thread/list, back to back', later),
      rawRow(`thread/list, polled ${fmt(POLL_GAP_MS / 1000, 1)} s apart`, polled),
      rawRow('worker CPU per polled thread/list', polledCpu),
      rawRow(`worker CPU idle for ${fmt(POLL_GAP_MS / 1000, 1)} s between polls`, [idleCpu]),
      rawRow('codex-status, stored thread', status),
      ...(reference === undefined
        ? []
        : [
            rawRow('Codex: first thread/list, never started on these threads', [reference.firstEver]),
            rawRow('Codex: first thread/list after a restart', [reference.firstAfterRestart]),
            rawRow('Codex: thread/list, back to back', reference.later),
            rawRow(`Codex: thread/list, polled ${fmt(POLL_GAP_MS / 1000, 1)} s apart`, reference.polled),
            rawRow('Codex: app-server CPU per polled thread/list', reference.polledCpu),
          ]),
    ]);
    if (reference !== undefined) {
      const ours: ListFigures = { firstAfterRestart, later, polled, polledCpu };
      const ratio = (a: number, b: number): string => fmt(a / b);
      process.stdout.write(`\nours vs the real Codex app-server (rollouts of ${reference.rolloutBytes} bytes), ${THREADS} stored threads, pages of 100\n`);
      printTable(
        ['figure', 'ours', 'codex', 'ratio'],
        [
          ['first thread/list after a restart, ms', fmt(ours.firstAfterRestart), fmt(reference.firstAfterRestart), ratio(ours.firstAfterRestart, reference.firstAfterRestart)],
          ['later thread/list, median ms', fmt(median(ours.later)), fmt(median(reference.later)), ratio(median(ours.later), median(reference.later))],
          ['later thread/list, p99 ms', fmt(percentile(ours.later, 99)), fmt(percentile(reference.later, 99)), ratio(percentile(ours.later, 99), percentile(reference.later, 99))],
          ['polled thread/list, median ms', fmt(median(ours.polled)), fmt(median(reference.polled)), ratio(median(ours.polled), median(reference.polled))],
          ['CPU per polled thread/list, median ms', fmt(median(ours.polledCpu)), fmt(median(reference.polledCpu)), ratio(median(ours.polledCpu), median(reference.polledCpu))],
        ],
      );
    }
    process.stdout.write('\n');
  } finally {
    await mcp?.close().catch(() => undefined);
    await model?.close();
    await home.cleanup().catch(() => undefined);
    await work.cleanup();
  }
}

await main();
