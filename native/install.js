// `npm install` step: builds the native process starter (native/spawn.c). It is optional: when it
// cannot be built (no C compiler, not Linux), commands start through Node.js's child_process
// instead, and the install still succeeds.
//
// N-API needs only Node.js's headers, which official builds and distribution packages ship next to
// the binary (<prefix>/include/node): the C compiler is called directly with them, offline.
// Without them, node-gyp (which npm bundles) builds binding.gyp and may download the headers.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const output = join(root, 'build', 'Release', 'codex_multienv_spawn.node');
const headers = join(dirname(process.execPath), '..', 'include', 'node');

/**
 * Runs a build command; returns why it failed, or undefined when it succeeded.
 * @param {string} command
 * @param {string[]} args
 * @returns {string | undefined}
 */
function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.error !== undefined) return result.error.message;
  return result.status === 0 ? undefined : `${command} exited with ${result.status ?? result.signal}`;
}

function compileDirectly() {
  mkdirSync(dirname(output), { recursive: true });
  const flags = ['-O2', '-Wall', '-Wextra', '-fPIC', '-shared', '-pthread', `-I${headers}`];
  return run(process.env.CC ?? 'cc', [...flags, '-o', output, join(root, 'native', 'spawn.c')]);
}

function compileWithNodeGyp() {
  // npm puts its own node-gyp on PATH for install scripts; npm_config_node_gyp names it too.
  const nodeGyp = process.env.npm_config_node_gyp;
  return nodeGyp !== undefined && nodeGyp.endsWith('.js') ? run(process.execPath, [nodeGyp, 'rebuild']) : run('node-gyp', ['rebuild']);
}

if (process.platform === 'linux') {
  const direct = existsSync(join(headers, 'node_api.h')) ? compileDirectly() : `no Node.js headers in ${headers}`;
  const reason = direct === undefined ? undefined : compileWithNodeGyp();
  if (reason !== undefined) {
    process.stderr.write(
      `codex-multienv: the native process starter was not built (${direct}; node-gyp: ${reason}); commands will ` +
        'start through Node.js child_process, 1-2 ms slower each. It needs a C compiler (Debian: apt-get install ' +
        'build-essential); `codex-multienv doctor` says which one is used.\n',
    );
  }
}
