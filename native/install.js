// `npm install` step: builds the native process starter (native/spawn.c, see binding.gyp) with
// node-gyp. It is optional: when it cannot be built (no compiler, not Linux), commands start
// through Node.js's child_process instead, and the install still succeeds.
import { spawnSync } from 'node:child_process';
import process from 'node:process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

if (process.platform !== 'linux') process.exit(0);
// npm puts its own node-gyp on PATH for install scripts; npm_config_node_gyp names it too.
const nodeGyp = process.env.npm_config_node_gyp;
const [command, args] =
  nodeGyp !== undefined && nodeGyp.endsWith('.js') ? [process.execPath, [nodeGyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
if (result.status !== 0) {
  const reason = result.error !== undefined ? result.error.message : `node-gyp exited with ${result.status ?? result.signal}`;
  process.stderr.write(
    `codex-multienv: the native process starter was not built (${reason}); commands will start ` +
      'through Node.js child_process, 1-2 ms slower each. It needs python3, make and a C compiler ' +
      '(Debian: apt-get install build-essential python3); `codex-multienv doctor` says which one is used.\n',
  );
}
