// Last step of `npm run build` (tools/bundle.js): writes dist/cli/tool-listings.json, the server's
// `tools/list` results, which the relay answers a client's first `tools/list` with while the worker
// loads (src/cli/tool-listings.ts). They are what the built server itself answers: it runs here,
// in one process (`--foreground`) with an empty configuration, once per variant of the listing
// (default and portable tool names), and is asked in both eras. test/unit/cli/tool-listings.test.ts
// checks the file against the sources, so a tool changed without a rebuild fails a test.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { createInterface } from 'node:readline';
import { clearTimeout, setTimeout } from 'node:timers';

/** How long one server may take to start and answer. */
const ANSWER_TIMEOUT_MS = 60_000;

/**
 * The variants (see TOOL_LISTING_VARIANTS in src/cli/tool-listings.ts) and the command line of each.
 * @type {Record<string, string[]>}
 */
const VARIANTS = { default: [], portable: ['--portable-tool-names'] };

const MODERN_META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };

const REQUESTS = [
  { jsonrpc: '2.0', id: 'init', method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'build', version: '0' } } },
  { jsonrpc: '2.0', method: 'notifications/initialized' },
  { jsonrpc: '2.0', id: 'legacy', method: 'tools/list' },
  { jsonrpc: '2.0', id: 'modern', method: 'tools/list', params: { _meta: MODERN_META } },
];

/**
 * Runs `main` (the built CLI) with `args` in `home` and returns its results of the two `tools/list` requests.
 * @param {string} main
 * @param {string[]} args
 * @param {string} home
 * @returns {Promise<Record<string, unknown>>}
 */
async function listingsOf(main, args, home) {
  // A clean environment: nothing of the builder's (CODEX_HOME, an exec-server URL, a nesting mark) reaches the server.
  const env = { PATH: process.env.PATH ?? '', HOME: home, CODEX_HOME: home, CODEX_MULTIENV_CACHE_DIR: join(home, 'cache') };
  const child = spawn(process.execPath, [main, '--foreground', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (/** @type {Buffer} */ chunk) => (stderr += chunk.toString()));
  /** @type {Record<string, unknown>} */
  const results = {};
  try {
    return await new Promise((/** @type {(value: Record<string, unknown>) => void} */ resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no tools/list answers within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS);
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the server exited (${code}) before it answered`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        /** @type {unknown} */
        const message = JSON.parse(line);
        if (typeof message !== 'object' || message === null || !('id' in message) || (message.id !== 'legacy' && message.id !== 'modern')) return;
        if (!('result' in message)) reject(new Error(`tools/list (${message.id}) failed: ${line}`));
        else results[message.id] = message.result;
        if (results.legacy !== undefined && results.modern !== undefined) {
          clearTimeout(timer);
          resolve(results);
        }
      });
      child.stdin.write(REQUESTS.map((request) => `${JSON.stringify(request)}\n`).join(''));
    });
  } catch (error) {
    throw new Error(`cannot list the tools of ${main} ${args.join(' ')}: ${error instanceof Error ? error.message : String(error)}\n${stderr}`);
  } finally {
    child.stdin.end();
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  }
}

/**
 * Writes `<outdir>/tool-listings.json` from the CLI built in `outdir`.
 * @param {string} outdir
 */
export async function writeToolListings(outdir) {
  const main = join(outdir, 'main.js');
  /** @type {Record<string, Record<string, unknown>>} */
  const listings = {};
  for (const [variant, args] of Object.entries(VARIANTS)) {
    const home = await mkdtemp(join(tmpdir(), 'codex-multienv-build-'));
    try {
      listings[variant] = await listingsOf(main, args, home);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }
  await writeFile(join(outdir, 'tool-listings.json'), `${JSON.stringify(listings)}\n`);
}
