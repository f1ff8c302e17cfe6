/**
 * Summarizes Linux `perf` samples of the server's main thread: CPU time by the nearest of our
 * source files on the stack (what each module costs, with the Node.js and V8 work it sets off),
 * and by the nearest JavaScript function. Unlike the inspector's profiles (`cpu-profile-hook.mjs`),
 * which sample wall time and so charge the time a thread spent preempted on a busy machine to the
 * system call it had just made, `perf` counts only time on the CPU. Frames in the bundle
 * (dist/cli/*.cjs) are traced back to their module and line through the source map beside it.
 *
 * Record (the server started with `BENCH_SERVER_NODE_OPTIONS=--perf-basic-prof`, so that perf can
 * name JavaScript frames; the main thread's id is the process id):
 * `perf record -F 999 -g -t <pid> -o /tmp/perf.data -- sleep 30`, then
 * `perf script -i /tmp/perf.data -F ip,sym > /tmp/perf.txt` and
 * `npx tsx bench/perf-summary.ts /tmp/perf.txt [--top N] [--under TEXT]`; the last splits the
 * samples with a frame matching TEXT on the stack by the frame just below it.
 */
import { readFileSync } from 'node:fs';
import type { SourceMapping } from 'node:module';
import { sourceMapOf } from './source-maps.js';
import { fmt, printTable } from './stats.js';

/** A JavaScript frame as perf names it with `--perf-basic-prof`: `JS:*name /path/file.js:line:column`. */
const JS_FRAME = /^JS:[*^~]?(.*?) (\S+):(\d+):(\d+)$/;

/** Where a frame's code lives (`src/…`, `node_modules/<package>`, `node:…`) and its name; undefined for native frames. */
function describe(symbol: string): { where: string; name: string } | undefined {
  const match = JS_FRAME.exec(symbol);
  if (match === null) return undefined;
  const [, functionName = '', url = '', line = '0', column = '0'] = match;
  const entry = url.startsWith('/') ? sourceMapOf(url)?.findEntry(Number(line) - 1, Number(column) - 1) : undefined;
  let where = url;
  let at = Number(line);
  const mapped = entry !== undefined && 'originalSource' in entry ? (entry as SourceMapping) : undefined;
  if (mapped !== undefined) {
    where = mapped.originalSource;
    at = mapped.originalLine + 1;
  }
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(where);
  if (pkg?.[1] !== undefined) where = `node_modules/${pkg[1]}`;
  else where = where.replace(/^.*?\/(src\/)/, '$1');
  const name = `${functionName || '(anonymous)'} ${where}${where.startsWith('src/') ? `:${at}` : ''}`;
  return { where, name };
}

/** The samples of a `perf script -F ip,sym` output: each a stack of symbols, innermost first. */
function samplesOf(text: string): string[][] {
  return text
    .split(/\n\s*\n/)
    .map((block) =>
      block
        .split('\n')
        .map((line) => line.trim().replace(/^[0-9a-f]+ /, ''))
        .filter((line) => line !== ''),
    )
    .filter((stack) => stack.length > 0);
}

function add(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function main(): void {
  const args = process.argv.slice(2);
  const option = (name: string): string | undefined => {
    const index = args.indexOf(name);
    return index >= 0 ? args[index + 1] : undefined;
  };
  const top = Number(option('--top') ?? 40);
  const under = option('--under');
  const files = args.filter((arg, i) => !arg.startsWith('--') && !['--top', '--under'].includes(args[i - 1] ?? ''));
  const byModule = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const below = new Map<string, number>();
  let total = 0;
  for (const file of files) {
    for (const stack of samplesOf(readFileSync(file, 'utf8'))) {
      total += 1;
      const frames = stack.map((symbol) => describe(symbol));
      const js = frames.filter((frame) => frame !== undefined);
      const native = stack[0] ?? '';
      const gc = stack.some((symbol) => /Heap::(Scavenge|CollectGarbage|MarkCompact)|ScavengerCollector/.test(symbol));
      const ours = js.find((frame) => frame.where.startsWith('src/'));
      add(
        byModule,
        ours?.where ??
          js.find((frame) => frame.where.startsWith('node_modules/'))?.where ??
          (js[0] === undefined ? (gc ? '(garbage collection)' : `(native) ${native}`) : js[0].where),
      );
      add(byFunction, js[0]?.name ?? (gc ? '(garbage collection)' : `(native) ${native}`));
      if (under !== undefined) {
        const index = js.findIndex((frame) => frame.name.includes(under));
        if (index >= 0) add(below, index === 0 ? '(itself, and native code it called)' : (js[index - 1]?.name ?? ''));
      }
    }
  }
  const rows = (map: Map<string, number>): string[][] =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, count]) => [name, fmt((100 * count) / total, 1)]);
  process.stdout.write(`${total} samples (on CPU)\n\nby the nearest of our modules on the stack (else the nearest package)\n`);
  printTable(['module', '%'], rows(byModule));
  process.stdout.write('\nby the nearest JavaScript function (its own time and the native code it called)\n');
  printTable(['function', '%'], rows(byFunction));
  if (under !== undefined) {
    process.stdout.write(`\nsamples with ${under} on the stack, by the JavaScript frame just below it\n`);
    printTable(['function', '%'], rows(below));
  }
}

main();
