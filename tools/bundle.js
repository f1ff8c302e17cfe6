// Second step of `npm run build`: bundles the CLI (after `tsc` has checked and emitted dist/) into
// dist/cli/main.js plus chunks beside it, so a cold start loads a few files instead of ~400
// modules (about 110 ms less CPU from spawn to the tools/list answer). Commands and rarely needed
// packages stay separate chunks, loaded on first use as before (dynamic imports).
import { rm, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist/cli');

// Chunks of an earlier build have other hashes; remove them so dist/ holds one build.
for (const name of await readdir(outdir).catch(() => [])) {
  if (name.startsWith('chunk-') || /-[A-Z0-9]{8}\.js(\.map)?$/.test(name)) await rm(join(outdir, name));
}

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
