/**
 * Issue 4 figure: the extra time a sandboxed `exec_command` of `true` costs over an unsandboxed
 * one. Runs `bash -c true` (what exec_command runs) from start to closed through our exec-server,
 * in-process (the `local` environment) and over a websocket (a remote environment), alternating
 * a workspace-write sandbox (bubblewrap) and none, and prints medians. Run with
 * `npm run bench -- sandbox` (builds first).
 */
import { homedir, tmpdir } from 'node:os';
import { localConnector, websocketConnector } from '../src/environments/connectors.js';
import { ExecClient } from '../src/exec/client.js';
import { ExecServer } from '../src/exec/server.js';
import type { SandboxContext } from '../src/protocol/exec.js';
import { startOurWsExecServer, tempDir } from '../test/helpers/process.js';
import { specialEntry, workspaceWriteSandbox } from '../test/helpers/sandbox.js';
import { fmt, median, percentile, printTable, since } from './stats.js';

/** Timed runs per side and variant. */
const RUNS = Number(process.env.BENCH_SANDBOX_RUNS ?? 200);
const WARMUP = 20;
const TARGET_MS = 15;

/** Codex's workspace-write request, with `cwd` as the workspace (and /tmp, the temp dir). */
const workspaceWrite = (cwd: string): SandboxContext => workspaceWriteSandbox(cwd, { extra: [specialEntry('slash_tmp', 'write'), specialEntry('tmpdir', 'write')] });

async function measure(client: ExecClient, cwd: string): Promise<{ plain: number[]; confined: number[] }> {
  const env = { PATH: '/usr/bin:/bin' };
  const sandbox = workspaceWrite(cwd);
  const plain: number[] = [];
  const confined: number[] = [];
  for (let i = 0; i < RUNS + WARMUP; i++) {
    // Alternating keeps drift (load, GC, page cache) out of the difference.
    for (const [box, into] of [
      [null, plain],
      [sandbox, confined],
    ] as const) {
      const t = performance.now();
      const proc = await client.startProcess({ argv: ['/bin/bash', '-c', 'true'], cwd, env, tty: false, sandbox: box });
      const { exitCode } = await proc.collect();
      if (exitCode !== 0) throw new Error(`bash -c true exited ${exitCode} (${box === null ? 'unsandboxed' : 'sandboxed'})`);
      if (i >= WARMUP) into.push(since(t));
    }
  }
  return { plain, confined };
}

const work = await tempDir('bench-sandbox-');
const server = new ExecServer({
  env: process.env,
  host: { env: process.env, cwd: work.path, homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'bench' },
});
const local = await ExecClient.connect(localConnector(server));
const wsServer = await startOurWsExecServer();
const remote = await ExecClient.connect(websocketConnector(wsServer.url, {}));
try {
  const rows: string[][] = [];
  for (const [label, client] of [
    ['local (in-process)', local],
    ['websocket exec-server', remote],
  ] as const) {
    const { plain, confined } = await measure(client, work.path);
    const extra = median(confined) - median(plain);
    rows.push([label, fmt(median(plain)), fmt(median(confined)), fmt(percentile(confined, 95)), fmt(extra), `<= ${TARGET_MS}`, extra <= TARGET_MS ? 'yes' : 'NO']);
  }
  process.stdout.write(`sandbox overhead: \`bash -c true\` start→closed, ${RUNS} runs each, alternating\n`);
  printTable(['environment', 'unsandboxed p50 ms', 'bwrap p50 ms', 'bwrap p95 ms', 'extra p50 ms', 'target', 'met'], rows);
  process.stdout.write('for comparison (issue 4): Codex 0.169’s bwrap path measured about 40 ms here\n');
} finally {
  await local.close();
  await remote.close();
  await server.close();
  await wsServer.stop();
  await work.cleanup();
}
