/**
 * Model request size over a long thread, ours against the real Codex (pinned 0.169.0) in the same
 * run: one scripted thread of {@link TURNS} text turns in the same working directory (with an
 * AGENTS.md), each side against its own fake Responses server; prints the bytes of the request
 * body at turns 1, 50 and 100 (and the last) and the ratio. Codex runs as `codex exec`, then
 * `codex exec resume --last` for each later turn; ours through MCP (`codex`, then `codex-reply`).
 * Usage: `npm run bench -- request-size` (BENCH_TURNS to change the count).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startFakeResponsesServer, type FakeResponsesServer } from '../tools/fake-responses-server.js';
import { codexHomeForFakeModel } from '../test/helpers/codex-home.js';
import { writeMcpConfig } from '../test/helpers/mcp.js';
import { CLI, CODEX, runCommand, tempDir } from '../test/helpers/process.js';
import { printTable } from './stats.js';

/** Turns of the thread. */
const TURNS = Number(process.env.BENCH_TURNS ?? 100);
/** The turns whose request size is printed. */
const SHOWN = [...new Set([1, 50, 100, TURNS].filter((turn) => turn <= TURNS))];

const answer = (): ReturnType<typeof startFakeResponsesServer> =>
  startFakeResponsesServer({ respond: (_request, index) => ({ kind: 'output', items: [{ type: 'message', text: `ok, turn ${index + 1} is done.` }] }) });

/** Bytes of the first model request of each turn (text turns make one request each). */
function sizes(model: FakeResponsesServer): number[] {
  return model.requests.filter((request) => request.path.endsWith('/responses')).map((request) => Buffer.byteLength(request.rawBody));
}

async function ours(work: string): Promise<number[]> {
  const home = await tempDir('cmx-bench-size-home-');
  const model = await answer();
  try {
    await writeMcpConfig(home.path, model.url);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI],
      env: { ...(process.env as Record<string, string>), CODEX_HOME: home.path, FAKE_MODEL_API_KEY: 'bench-key', CODEX_MULTIENV_LOG: 'warn' },
      stderr: 'ignore',
    });
    const client = new Client({ name: 'bench', version: '1.0.0' });
    await client.connect(transport);
    try {
      const first = await client.callTool({ name: 'codex', arguments: { prompt: 'turn 1: please answer briefly', cwd: work, environments: [{ id: 'local', cwd: work }] } });
      const threadId = (first.structuredContent as { threadId: string }).threadId;
      for (let turn = 2; turn <= TURNS; turn++) await client.callTool({ name: 'codex-reply', arguments: { threadId, prompt: `turn ${turn}: please answer briefly` } });
    } finally {
      await client.close();
    }
    return sizes(model);
  } finally {
    await model.close();
    await home.cleanup();
  }
}

async function codex(work: string): Promise<number[]> {
  const model = await answer();
  const home = await codexHomeForFakeModel(model.url);
  try {
    const env = { ...process.env, CODEX_HOME: home.path, FAKE_MODEL_API_KEY: 'bench-key' };
    const first = await runCommand(CODEX, ['exec', '--skip-git-repo-check', '-C', work, 'turn 1: please answer briefly'], env);
    if (first.code !== 0) throw new Error(`codex exec failed: ${first.stderr}`);
    for (let turn = 2; turn <= TURNS; turn++) {
      const next = await runCommand(CODEX, ['exec', 'resume', '--last', '--skip-git-repo-check', `turn ${turn}: please answer briefly`], env, work);
      if (next.code !== 0) throw new Error(`codex exec resume failed at turn ${turn}: ${next.stderr}`);
    }
    return sizes(model);
  } finally {
    await model.close();
    await home.cleanup();
  }
}

const work = await tempDir('cmx-bench-size-work-');
try {
  await mkdir(join(work.path, '.git'));
  await writeFile(join(work.path, 'AGENTS.md'), '# Project rules\n- Run `npm test` before you finish.\n- Keep answers short.\n');
  const [mine, theirs] = await Promise.all([ours(work.path), codex(work.path)]);
  const kb = (bytes: number | undefined): string => (bytes === undefined ? '-' : `${(bytes / 1024).toFixed(1)} KB`);
  printTable(
    ['turn', 'ours', 'Codex 0.169', 'ours / Codex'],
    SHOWN.map((turn) => {
      const a = mine[turn - 1];
      const b = theirs[turn - 1];
      return [String(turn), kb(a), kb(b), a === undefined || b === undefined ? '-' : (a / b).toFixed(2)];
    }),
  );
  const growth = (values: number[]): string => (values.length < 2 ? '-' : `${((values[values.length - 1]! - values[0]!) / (values.length - 1)).toFixed(0)} B`);
  console.log(`growth per turn: ours ${growth(mine)}, Codex ${growth(theirs)} (over ${TURNS} turns)`);
} finally {
  await work.cleanup();
}
