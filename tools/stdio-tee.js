// Runs a stdio program and records, line by line, what passes each way: for watching the
// JSON-RPC a real MCP client (Claude Code, Codex) exchanges with a stdio server it starts.
//
// Run: `node tools/stdio-tee.js <log file> <program> [args...]`. stdin and stdout are passed
// through unchanged, stderr is inherited; each line is appended to the log as one JSON line,
// `{"dir":"in"|"out","line":"..."}` ("in" = from the client to the program). The exit code (or
// signal) of the program is passed on; a signal to this process is passed to the program.
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import process from 'node:process';
import { StringDecoder } from 'node:string_decoder';

const [log, program, ...args] = process.argv.slice(2);
if (log === undefined || program === undefined) {
  process.stderr.write('usage: node tools/stdio-tee.js <log file> <program> [args...]\n');
  process.exit(2);
}

const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'inherit'] });

/**
 * Appends each complete line of a stream's chunks to the log, tagged with its direction.
 * @param {'in' | 'out'} dir
 * @returns {(chunk: Buffer) => void}
 */
function recorder(dir) {
  let pending = '';
  // A chunk may end inside a multi-byte character: the decoder keeps its first bytes for the next one.
  const decoder = new StringDecoder('utf8');
  return (chunk) => {
    pending += decoder.write(chunk);
    let end;
    while ((end = pending.indexOf('\n')) !== -1) {
      appendFileSync(log, `${JSON.stringify({ dir, line: pending.slice(0, end) })}\n`);
      pending = pending.slice(end + 1);
    }
  };
}

const recordIn = recorder('in');
const recordOut = recorder('out');
process.stdin.on('data', (/** @type {Buffer} */ chunk) => {
  recordIn(chunk);
  child.stdin.write(chunk);
});
process.stdin.on('end', () => child.stdin.end());
// The program may go before its client stops writing: a write to its closed stdin is not an error here.
child.stdin.on('error', () => undefined);
child.stdout.on('data', (/** @type {Buffer} */ chunk) => {
  recordOut(chunk);
  process.stdout.write(chunk);
});
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
child.on('error', (error) => {
  process.stderr.write(`stdio-tee: cannot start ${program}: ${error.message}\n`);
  process.exit(127);
});
// `close` comes after the program's stdout is drained; stdin may still be open, so exit explicitly.
child.on('close', (code, signal) => {
  process.stdout.end(() => process.exit(code ?? (signal === null ? 1 : 128)));
});
