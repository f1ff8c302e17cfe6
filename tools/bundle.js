// Second step of `npm run build` (after `tsc` has type-checked src/): bundles the CLI into three
// files (plus source maps), so a cold start loads two files (the third is the model worker's) instead of ~400 modules.
//
// - dist/cli/main.js, the command (package.json `bin`), from src/cli/main.ts: help, version, the
//   relay in front of the MCP worker. It holds none of the server's modules, so the relay starts
//   the worker without loading them first.
// - dist/cli/model-worker.cjs, from src/cli/model-worker.ts: the thread that runs model requests.
// - dist/cli/commands.cjs, from src/cli/commands.ts: every command's modules as one CommonJS
//   script, which main.js compiles with V8's code cache (src/cli/code-cache.ts). A command's
//   modules, and rarely needed packages (the openai SDK, ws, the proxy agent), are evaluated when
//   first used, as with dynamic imports.
//
// - dist/cli/tool-listings.json: the built server's `tools/list` results, which the relay answers
//   a client's first `tools/list` with while the worker loads (tools/tool-listings.js).
//
// dist/ holds this bundle and nothing else; it is what the npm package ships. Every package the
// bundle takes in is a devDependency; `dependencies` in package.json lists the `external` ones
// below, which load from node_modules at run time (all but ws's optional utf-8-validate).
import { readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { writeToolListings } from './tool-listings.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const outdir = join(dist, 'cli');

/**
 * `import { z } from 'zod'` takes in all of zod (its `z` is one namespace object, 750 KB with every
 * locale); `import * as z from 'zod'` lets esbuild keep only what is used (~170 KB). The two mean
 * the same to code that only reads `z.something`, which is how src/ uses it.
 * @type {import('esbuild').Plugin}
 */
const zodNamespace = {
  name: 'zod-namespace',
  setup(build) {
    build.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      return { contents: text.replace(/^import \{ z \} from 'zod';$/m, "import * as z from 'zod';"), loader: 'ts' };
    });
  },
};

/**
 * The MCP SDK's server and client import their Ajv validator (Ajv with its formats, a tenth of the
 * SDK's load time) only to make a default one, which the server replaces with its own, built at
 * the first form elicitation (src/mcp/server.ts). In the bundle the module is a stand-in that
 * loads the real one when a validator is first made, so a start does not load Ajv.
 * @type {import('esbuild').Plugin}
 */
const lazyAjvProvider = {
  name: 'lazy-ajv-provider',
  setup(build) {
    const provider = /[\\/]@modelcontextprotocol[\\/]sdk[\\/]dist[\\/]esm[\\/]validation[\\/]ajv-provider\.js$/;
    build.onResolve({ filter: /^\.\/ajv-provider\.js\?real$/ }, (args) => ({ path: join(args.resolveDir, 'ajv-provider.js'), suffix: '?real' }));
    build.onLoad({ filter: provider }, (args) => {
      if (args.suffix === '?real') return undefined;
      return {
        contents: `let real;
export class AjvJsonSchemaValidator {
  constructor(ajv) {
    real ??= require('./ajv-provider.js?real');
    return new real.AjvJsonSchemaValidator(ajv);
  }
}
`,
        loader: 'js',
        resolveDir: dirname(args.path),
      };
    });
  },
};

/** Options of both builds. */
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  // Native addons (and ws's optional native helpers) load from node_modules at run time; so does
  // pg, which only the PostgreSQL store loads.
  external: ['@lydell/node-pty', 'bufferutil', 'utf-8-validate', 'pg'],
  plugins: [zodNamespace],
  logLevel: 'warning',
};

// An earlier build's files have other names (and older builds left chunks and tsc's output).
await rm(dist, { recursive: true, force: true });

await build({
  ...common,
  entryPoints: { main: join(root, 'src/cli/main.ts') },
  outdir,
  format: 'esm',
  // The relay is in main.js; the loader of commands.cjs is a small chunk loaded when needed.
  splitting: true,
  chunkNames: 'chunk-[hash]',
  entryNames: '[name]',
  plugins: [
    ...common.plugins,
    {
      // load-commands.ts imports commands.ts itself only when run from the sources; in the
      // package it runs commands.cjs instead.
      name: 'commands-outside',
      setup(build) {
        build.onResolve({ filter: /^\.\/commands\.js$/ }, (args) => ({ path: args.path, external: true }));
      },
    },
  ],
});

await build({
  ...common,
  entryPoints: [join(root, 'src/cli/commands.ts')],
  outfile: join(outdir, 'commands.cjs'),
  format: 'cjs',
  // import() becomes a lazily evaluated module inside the script (a vm.Script cannot import).
  supported: { 'dynamic-import': false },
  // No comments and no indentation: a third less to read, hash and scan at every start (names
  // stay, so stack traces still say which function; the source map has the rest).
  minifyWhitespace: true,
  inject: [join(root, 'tools/import-meta-url.js')],
  define: { 'import.meta.url': 'importMetaUrl' },
  plugins: [...common.plugins, lazyAjvProvider],
});

// The model worker thread's script (src/cli/model-worker.ts): only the model client and what it
// needs, so a worker starts without compiling the whole server.
await build({
  ...common,
  entryPoints: [join(root, 'src/cli/model-worker.ts')],
  outfile: join(outdir, 'model-worker.cjs'),
  format: 'cjs',
  // As commands.cjs: the openai SDK is evaluated on the first request, not at the worker's start.
  supported: { 'dynamic-import': false },
  minifyWhitespace: true,
  inject: [join(root, 'tools/import-meta-url.js')],
  define: { 'import.meta.url': 'importMetaUrl' },
});

// Last: the listings come from the server just built.
await writeToolListings(outdir);
