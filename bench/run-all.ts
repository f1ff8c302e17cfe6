/**
 * Runs the benchmarks named on the command line and prints their figures; by default every
 * issue's figures that need nothing installed (exec, session, sandbox, mcp, ops, coldstart, list, tasks). Usage: `npm run bench -- [exec|session|sandbox|mcp|ops|coldstart|list|tasks|http|pg|pg-ownership|scale-out|model|request-size|codex-engine|instructions ...]`.
 */
const BENCHES: Record<string, string> = {
  exec: './exec-server.bench.js',
  session: './session.bench.js',
  sandbox: './sandbox.bench.js',
  mcp: './mcp-servers.bench.js',
  ops: './ops.bench.js',
  coldstart: './coldstart.bench.js',
  list: './thread-list.bench.js',
  http: './mcp-http.bench.js',
  tasks: './tasks.bench.js',
  model: './model-client.bench.js',
  // Need PostgreSQL installed (as .ci/run does): only when asked for.
  pg: './pg-store.bench.js',
  'pg-ownership': './pg-ownership.bench.js',
  'scale-out': './scale-out.bench.js',
  // Drives the real Codex for 100 turns: only when asked for.
  'request-size': './request-size.bench.js',
  // Drives the real Codex (its app-server) for a few hundred turns: only when asked for.
  'codex-engine': './codex-engine.bench.js',
  // Slow (valgrind) and needs valgrind installed: only when asked for.
  instructions: './instructions.bench.js',
};
const DEFAULT = ['exec', 'session', 'sandbox', 'mcp', 'ops', 'coldstart', 'list', 'tasks'];

const wanted = process.argv.slice(2);
for (const name of wanted.length === 0 ? DEFAULT : wanted) {
  const path = BENCHES[name];
  if (path === undefined) throw new Error(`unknown benchmark \`${name}\`; known: ${Object.keys(BENCHES).join(', ')}`);
  process.stdout.write(`\n== ${name} ==\n`);
  await import(path);
}
