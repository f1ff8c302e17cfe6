/**
 * Issue 16 figures: `tasks/get` of a running task with 200 threads (199 idle, the task's turn held
 * running), in the server process that runs the turn (memory only) and in a second server process
 * sharing the threads folder (the store's summary of the thread), plus `tasks/get` of an ended
 * task after a restart (its records read once, then kept). Runs the BUILT server
 * (`dist/cli/main.js`) through the real MCP SDK client (2025-11-25 tasks); run with
 * `npm run bench -- tasks` (builds first).
 */
import { availableParallelism, loadavg } from 'node:os';
import { CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { inputItems, startFakeResponsesServer, type FakeResponsesServer, type FakeStep } from '../tools/fake-responses-server.js';
import { startMcp, writeMcpConfig, type McpHarness } from '../test/helpers/mcp.js';
import { tempDir, waitFor } from '../test/helpers/process.js';
import { fmt, median, percentile, printTable, since, printRawFigures, rawRow } from './stats.js';

/** Threads in total (one of them runs the task). */
const THREADS = Number(process.env.BENCH_TASKS_THREADS ?? 200);
/** Timed calls per figure, after untimed warm-up calls. */
const CALLS = Number(process.env.BENCH_TASKS_CALLS ?? 300);
const WARMUP = 30;
const SERVER_LOG = process.env.BENCH_SERVER_LOG ?? 'info';

/** Runs `work` over `items` with at most `limit` at once. */
async function bounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** Times `call` CALLS times (after WARMUP untimed calls), one at a time. */
async function timed(call: () => Promise<void>): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await call();
  const samples: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const start = performance.now();
    await call();
    samples.push(since(start));
  }
  return samples;
}

/** `tasks/get` of `taskId`, checked to be in `status`. */
const getTask = (harness: McpHarness, taskId: string, status: string) => async (): Promise<void> => {
  const task = await harness.client.experimental.tasks.getTask(taskId);
  if (task.status !== status) throw new Error(`task ${taskId} is ${task.status}, expected ${status}`);
};

async function main(): Promise<void> {
  const home = await tempDir('bench-tasks-home-');
  const work = await tempDir('bench-tasks-work-');
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let model: FakeResponsesServer | undefined;
  const servers: McpHarness[] = [];
  try {
    model = await startFakeResponsesServer({
      respond: (request): FakeStep => {
        const answer: FakeStep = { kind: 'output', items: [{ type: 'message', text: 'ok' }] };
        return JSON.stringify(inputItems(request)).includes('HOLD') ? { kind: 'hold', release: held, then: answer } : answer;
      },
    });
    await writeMcpConfig(home.path, model.url);
    const env = { CODEX_MULTIENV_LOG: SERVER_LOG };
    const a = await startMcp(home.path, { env });
    servers.push(a);
    await bounded(
      Array.from({ length: THREADS - 1 }, (_, i) => i),
      8,
      async (i) => {
        const result = await a.call('codex', { prompt: `idle thread ${i}`, cwd: work.path });
        if (result.isError === true) throw new Error(`thread ${i} failed`);
      },
    );
    const created = await a.client.request(
      { method: 'tools/call', params: { name: 'codex', arguments: { prompt: 'HOLD the task', cwd: work.path }, task: { ttl: 3_600_000 } } },
      CreateTaskResultSchema,
    );
    const taskId = created.task.taskId;
    await model.waitForRequests(THREADS, 60_000);

    const loadBefore = loadavg()[0] ?? Number.NaN;
    const here = await timed(getTask(a, taskId, 'working'));
    const b = await startMcp(home.path, { env });
    servers.push(b);
    const elsewhere = await timed(getTask(b, taskId, 'working'));

    release();
    await waitFor(async () => (await a.client.experimental.tasks.getTask(taskId)).status === 'completed', 'the task to complete', 60_000);
    await b.close();
    servers.pop();
    await a.close();
    servers.pop();
    const restarted = await startMcp(home.path, { env });
    servers.push(restarted);
    const firstStart = performance.now();
    await getTask(restarted, taskId, 'completed')();
    const first = since(firstStart);
    const afterRestart = await timed(getTask(restarted, taskId, 'completed'));

    const pass = (ok: boolean): string => (ok ? 'yes' : 'NO');
    process.stdout.write(
      `\nserver log level ${SERVER_LOG}; ${THREADS} threads, one running a task (held); ${CALLS} timed calls per figure after ${WARMUP} warm-up, one at a time, ` +
        `client round trip over stdio; ${availableParallelism()} CPUs, load average ${fmt(loadBefore)} before, ${fmt(loadavg()[0] ?? Number.NaN)} after\n\n`,
    );
    printTable(
      ['figure', 'measured', 'target', 'pass?'],
      [
        [`tasks/get of a running task (${THREADS} threads), median ms`, fmt(median(here)), '<= 5', pass(median(here) <= 5)],
        ['same, p99 ms', fmt(percentile(here, 99)), '', ''],
        ['tasks/get from a second server process on the same threads, median ms', fmt(median(elsewhere)), '<= 5', pass(median(elsewhere) <= 5)],
        ['same, p99 ms', fmt(percentile(elsewhere, 99)), '', ''],
      ],
    );
    printRawFigures([
      rawRow('tasks/get, running task, process running it', here),
      rawRow('tasks/get, running task, another process', elsewhere),
      rawRow('after a restart: first tasks/get of the ended task (reads its thread)', [first]),
      rawRow('after a restart: tasks/get of the ended task', afterRestart),
    ]);
    process.stdout.write('\n');
  } finally {
    release();
    for (const server of servers) await server.close().catch(() => undefined);
    await model?.close();
    await home.cleanup();
    await work.cleanup();
  }
}

await main();
