/**
 * Runs the benchmarks named on the command line (all by default) and prints their figures.
 * Usage: `npm run bench -- [exec|session|sandbox|mcp|ops ...]`.
 */
const BENCHES: Record<string, string> = {
  exec: './exec-server.bench.js',
  session: './session.bench.js',
  sandbox: './sandbox.bench.js',
  mcp: './mcp-servers.bench.js',
  ops: './ops.bench.js',
  model: './model-client.bench.js',
  instructions: './instructions.bench.js',
};

const wanted = process.argv.slice(2);
for (const name of wanted.length === 0 ? Object.keys(BENCHES) : wanted) {
  const path = BENCHES[name];
  if (path === undefined) throw new Error(`unknown benchmark \`${name}\`; known: ${Object.keys(BENCHES).join(', ')}`);
  process.stdout.write(`\n== ${name} ==\n`);
  await import(path);
}
