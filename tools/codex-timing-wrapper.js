// Stands in for the Codex CLI in the codex-engine bench (`multienv.codex_path`): runs the real
// one (BENCH_CODEX_REAL, a codex.js) with the same arguments, passes its stdio JSON lines through
// unchanged, and appends to BENCH_CODEX_TIMING_LOG how long each turn took inside the app-server:
// from the `turn/start` request reaching it to its `turn/completed` leaving it, in ms. The bench
// subtracts that from the MCP call's time to get what our server adds to a turn.
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { createInterface } from 'node:readline';

const real = process.env.BENCH_CODEX_REAL;
const log = process.env.BENCH_CODEX_TIMING_LOG;
if (real === undefined || log === undefined) throw new Error('BENCH_CODEX_REAL and BENCH_CODEX_TIMING_LOG must be set');
const child = spawn(process.execPath, [real, ...process.argv.slice(2)], { stdio: ['pipe', 'pipe', 'inherit'] });
/**
 * The thread id of a JSON line whose `method` is `method` (`params.threadId`), else undefined.
 * @param {string} line
 * @param {string} method
 * @returns {string | undefined}
 */
function threadOf(line, method) {
  /** @type {unknown} */
  const message = JSON.parse(line);
  if (typeof message !== 'object' || message === null || !('method' in message) || message.method !== method) return undefined;
  const params = 'params' in message ? message.params : undefined;
  if (typeof params !== 'object' || params === null || !('threadId' in params) || typeof params.threadId !== 'string') return undefined;
  return params.threadId;
}

/** When the running turn of each thread was asked for. */
/** @type {Map<string, number>} */
const started = new Map();

createInterface({ input: process.stdin }).on('line', (line) => {
  const thread = line.includes('"turn/start"') ? threadOf(line, 'turn/start') : undefined;
  if (thread !== undefined) started.set(thread, performance.now());
  child.stdin.write(`${line}\n`);
});
process.stdin.on('end', () => child.stdin.end());
createInterface({ input: child.stdout }).on('line', (line) => {
  process.stdout.write(`${line}\n`);
  const thread = line.includes('"turn/completed"') ? threadOf(line, 'turn/completed') : undefined;
  const since = thread === undefined ? undefined : started.get(thread);
  if (since !== undefined) appendFileSync(log, `${(performance.now() - since).toFixed(3)}\n`);
});
child.on('exit', (code) => process.exit(code ?? 1));
