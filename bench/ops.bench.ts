/**
 * Issue 6 figures: with 200 threads of which 20 have a running turn, how fast `thread/list` and
 * `codex-status` answer; and that a `codex` call with a 1 s wait budget answers within 1.1 s while
 * its turn goes on. Runs the BUILT server (`dist/cli/main.js`) through the real MCP SDK client;
 * run with `npm run bench -- ops` (builds first).
 *
 * The fake model answers at once, except for prompts marked HOLD, which it holds until the end of
 * the bench, so those turns stay running for the whole measurement.
 */
import { availableParallelism, loadavg } from 'node:os';
import { inputItems, startFakeResponsesServer, type FakeResponsesServer, type FakeStep } from '../tools/fake-responses-server.js';
import { startMcp, writeMcpConfig, type McpHarness } from '../test/helpers/mcp.js';
import { tempDir } from '../test/helpers/process.js';
import { fmt, median, printTable, since, printRawFigures, rawRow } from './stats.js';

/** Threads in total, and how many of them have a running turn. */
const THREADS = Number(process.env.BENCH_OPS_THREADS ?? 200);
const RUNNING = Number(process.env.BENCH_OPS_RUNNING ?? 20);
/** Timed calls per figure, after untimed warm-up calls. */
const CALLS = Number(process.env.BENCH_OPS_CALLS ?? 300);
const WARMUP = 30;
/** Calls with a wait budget, and the budget. */
const BUDGET_CALLS = Number(process.env.BENCH_OPS_BUDGET_CALLS ?? 10);
const BUDGET_MS = 1000;
/** Log level of the measured server (the CLI default is `info`; the test helper uses `debug`). */
const SERVER_LOG = process.env.BENCH_SERVER_LOG ?? 'info';

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function structured(result: { structuredContent?: unknown; isError?: boolean }): Record<string, unknown> {
  if (result.isError === true || !isRecord(result.structuredContent)) throw new Error(`unexpected result ${JSON.stringify(result)}`);
  return result.structuredContent;
}

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
async function timed(call: (i: number) => Promise<void>): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await call(i);
  const samples: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const start = performance.now();
    await call(i);
    samples.push(since(start));
  }
  return samples;
}

async function main(): Promise<void> {
  const home = await tempDir('bench-ops-home-');
  const work = await tempDir('bench-ops-work-');
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let model: FakeResponsesServer | undefined;
  let mcp: McpHarness | undefined;
  try {
    model = await startFakeResponsesServer({
      respond: (request): FakeStep => {
        const text = JSON.stringify(inputItems(request));
        const answer: FakeStep = { kind: 'output', items: [{ type: 'message', text: 'ok' }] };
        return text.includes('HOLD') ? { kind: 'hold', release: held, then: answer } : answer;
      },
    });
    await writeMcpConfig(home.path, model.url);
    const env = { CODEX_MULTIENV_LOG: SERVER_LOG };
    // Room for every held turn to run at once (the default cap, 8, would queue most of them).
    const args = ['-c', `multienv.max_concurrent_turns=${RUNNING + BUDGET_CALLS + 4}`, '-c', `multienv.max_queued_turns_per_thread=4`];
    mcp = await startMcp(home.path, { env, args });
    const harness = mcp;

    const idle: string[] = [];
    await bounded(
      Array.from({ length: THREADS - RUNNING }, (_, i) => i),
      8,
      async (i) => {
        idle.push(String(structured(await harness.call('codex', { prompt: `idle thread ${i}`, cwd: work.path })).threadId));
      },
    );
    const running: string[] = [];
    for (let i = 0; i < RUNNING; i++) {
      const answer = structured(await harness.call('codex', { prompt: `HOLD running thread ${i}`, cwd: work.path, waitMs: 0 }));
      if (answer.status !== 'running') throw new Error('a held turn did not answer as running');
      running.push(String(answer.threadId));
    }
    await model.waitForRequests(THREADS, 60_000);
    const all = [...running, ...idle];

    const loadBefore = loadavg()[0] ?? Number.NaN;
    const list = await timed(async () => {
      const answer = structured(await harness.call('thread/list', { limit: 1000 }));
      if (answer.total !== THREADS) throw new Error(`thread/list listed ${String(answer.total)} threads, expected ${THREADS}`);
    });
    const statusRunning = await timed(async (i) => {
      const answer = structured(await harness.call('codex-status', { threadId: running[i % running.length] }));
      if (answer.status !== 'running') throw new Error(`expected a running thread, got ${String(answer.status)}`);
    });
    const statusAny = await timed(async (i) => {
      structured(await harness.call('codex-status', { threadId: all[(i * 7) % all.length] }));
    });

    // A call with a wait budget of 1 s on a turn that holds: it must answer "running" in time.
    const budget: number[] = [];
    for (let i = 0; i < BUDGET_CALLS; i++) {
      const start = performance.now();
      const answer = structured(await harness.call('codex', { prompt: `HOLD budget ${i}`, cwd: work.path, waitMs: BUDGET_MS }));
      budget.push(since(start));
      if (answer.status !== 'running') throw new Error('the budgeted call did not answer as running');
      const later = structured(await harness.call('codex-status', { threadId: answer.threadId }));
      if (later.status !== 'running') throw new Error('the budgeted turn did not go on after its call answered');
    }

    // After a restart every thread is stored, none loaded: the listing reads the thread files.
    release();
    await harness.call('codex-status', { threadId: running[running.length - 1], waitMs: 60_000 });
    await mcp.close();
    mcp = await startMcp(home.path, { env, args });
    const restarted = mcp;
    const firstListStart = performance.now();
    structured(await restarted.call('thread/list', { limit: 1000 }));
    const firstList = since(firstListStart);
    const storedList = await timed(async () => {
      structured(await restarted.call('thread/list', { limit: 1000 }));
    });
    const storedStatus = await timed(async (i) => {
      structured(await restarted.call('codex-status', { threadId: all[(i * 7) % all.length] }));
    });

    const pass = (ok: boolean): string => (ok ? 'yes' : 'NO');
    process.stdout.write(
      `\nserver log level ${SERVER_LOG}; ${THREADS} threads, ${RUNNING} with a running (held) turn; ${CALLS} timed calls per figure after ${WARMUP} warm-up, one at a time, ` +
        `client round trip over stdio; ${availableParallelism()} CPUs, load average ${fmt(loadBefore)} before, ${fmt(loadavg()[0] ?? Number.NaN)} after\n\n`,
    );
    printTable(
      ['figure', 'measured', 'target', 'pass?'],
      [
        [`thread/list (${THREADS} threads, ${RUNNING} running), median ms`, fmt(median(list)), '<= 10', pass(median(list) <= 10)],
        ['codex-status of a running thread, median ms', fmt(median(statusRunning)), '<= 10', pass(median(statusRunning) <= 10)],
        ['codex-status of any thread, median ms', fmt(median(statusAny)), '<= 10', pass(median(statusAny) <= 10)],
        [
          `codex with waitMs ${BUDGET_MS} on a held turn → "running" answer, max ms`,
          fmt(Math.max(...budget)),
          `<= ${BUDGET_MS * 1.1}`,
          pass(Math.max(...budget) <= BUDGET_MS * 1.1),
        ],
      ],
    );
    printRawFigures([
      rawRow('thread/list, threads loaded', list),
      rawRow('codex-status, running thread', statusRunning),
      rawRow('codex-status, any thread', statusAny),
      rawRow(`codex waitMs ${BUDGET_MS}, held turn`, budget),
      rawRow('after a restart: first thread/list (reads every file)', [firstList]),
      rawRow('after a restart: thread/list (stored, not loaded)', storedList),
      rawRow('after a restart: codex-status (reads the thread file)', storedStatus),
    ]);
    process.stdout.write('\n');
  } finally {
    release();
    await mcp?.close().catch(() => undefined);
    await model?.close();
    await home.cleanup();
    await work.cleanup();
  }
}

await main();
