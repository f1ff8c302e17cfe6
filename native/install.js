// `npm install` step: builds the native process starter (native/spawn.c). It is optional: when it
// cannot be built (no C compiler, not Linux), commands start through Node.js's child_process
// instead, and the install still succeeds: this script always exits 0, whatever goes wrong.
//
// N-API needs only Node.js's headers, which official builds and distribution packages ship next to
// the binary (<prefix>/include/node): the C compiler is called directly with them, offline.
// Only when those headers are missing does node-gyp (which npm bundles) build binding.gyp; it may
// download the headers. With the headers present, node-gyp would call the same compiler, so a
// failed direct build is final (no second attempt that could only fail again, after a download).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const output = join(root, 'build', 'Release', 'codex_multienv_spawn.node');
const headers = join(dirname(process.execPath), '..', 'include', 'node');

/** How long the direct compile of one small C file may take. */
const COMPILE_TIMEOUT_MS = 120_000;
/** How long node-gyp may take, including a download of the Node.js headers. */
const NODE_GYP_TIMEOUT_MS = 600_000;

/**
 * Runs a build command; returns why it failed, or undefined when it succeeded.
 * @param {string} command
 * @param {string[]} args
 * @param {number} timeout
 * @returns {string | undefined}
 */
function run(command, args, timeout) {
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], timeout, killSignal: 'SIGKILL' });
  if (result.error !== undefined) return `${command}: ${result.error.message}`;
  return result.status === 0 ? undefined : `${command} exited with ${result.status ?? result.signal}`;
}

function compileDirectly() {
  mkdirSync(dirname(output), { recursive: true });
  const flags = ['-O2', '-Wall', '-Wextra', '-fPIC', '-shared', '-pthread', `-I${headers}`];
  return run(process.env.CC ?? 'cc', [...flags, '-o', output, join(root, 'native', 'spawn.c')], COMPILE_TIMEOUT_MS);
}

function compileWithNodeGyp() {
  // npm puts its own node-gyp on PATH for install scripts; npm_config_node_gyp names it too.
  const nodeGyp = process.env.npm_config_node_gyp;
  return nodeGyp !== undefined && nodeGyp.endsWith('.js') ? run(process.execPath, [nodeGyp, 'rebuild'], NODE_GYP_TIMEOUT_MS) : run('node-gyp', ['rebuild'], NODE_GYP_TIMEOUT_MS);
}

/** Builds the starter; returns why it was not built, or undefined when it was. */
function build() {
  if (existsSync(join(headers, 'node_api.h'))) return compileDirectly();
  const nodeGyp = compileWithNodeGyp();
  return nodeGyp === undefined ? undefined : `no Node.js headers in ${headers}; node-gyp: ${nodeGyp}`;
}

if (process.platform === 'linux') {
  let reason;
  try {
    reason = build();
  } catch (error) {
    reason = error instanceof Error ? error.message : String(error);
  }
  if (reason !== undefined) {
    process.stderr.write(
      `codex-multienv: the native process starter was not built (${reason}); commands will start through ` +
        'Node.js child_process, 1-2 ms slower each. It needs a C compiler (Debian: apt-get install build-essential), ' +
        'then `npm rebuild codex-multienv-mcp`; `codex-multienv doctor` says which one is used.\n',
    );
  }
}
