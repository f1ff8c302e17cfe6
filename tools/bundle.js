// Second step of `npm run build` (after `tsc` has type-checked src/): bundles the CLI into
// dist/cli/main.js plus chunks beside it, so a cold start loads a few files instead of ~400
// modules (about 110 ms less CPU from spawn to the tools/list answer). Commands and rarely needed
// packages stay separate chunks, loaded on first use as before (dynamic imports).
//
// dist/ holds this bundle and nothing else; it is what the npm package ships. Every package the
// bundle takes in is a devDependency; `dependencies` in package.json lists the `external` ones
// below, which load from node_modules at run time (all but ws's optional utf-8-validate).
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const outdir = join(dist, 'cli');

// An earlier build's chunks have other hashes (and older builds left tsc's per-module output).
await rm(dist, { recursive: true, force: true });

await build({
  entryPoints: { main: join(root, 'src/cli/main.ts') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  // Chunks sit beside main.js: runtime.ts finds package.json relative to its own file.
  chunkNames: 'chunk-[hash]',
  entryNames: '[name]',
  // Native addons (and ws's optional native helpers) load from node_modules at run time.
  external: ['@lydell/node-pty', 'bufferutil', 'utf-8-validate'],
  // Bundled CommonJS packages (ws) call require(); give ESM output a real one.
  banner: { js: "import { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});
