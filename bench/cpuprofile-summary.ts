/**
 * Summarizes V8 CPU profiles (`node --cpu-prof`): self time by package or source file, and the
 * heaviest functions. Frames in the bundle (dist/cli/*.js, commands.cjs) are traced back to their
 * module and line through the source maps beside it. Usage: `npx tsx bench/cpuprofile-summary.ts FILE.cpuprofile... [--top N]
 * [--callers-of OWNER]`; the last attributes the self time of one owner (e.g. `zod`) to the
 * nearest function of another owner that called it. `--until TEXT` counts only the samples before
 * the first with a function whose name (as printed) contains TEXT on its stack: e.g. the cold start
 * up to the `initialize` answer is `--until 'send mcp/stdio-transport.ts'`.
 * Profile the session bench's servers with
 * `BENCH_ONLY=turns BENCH_KINDS=text BENCH_SERVER_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench -- session`.
 */
import { readFile } from 'node:fs/promises';
import type { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { sourceMapOf } from './source-maps.js';
import { fmt, printTable } from './stats.js';

const ProfileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number(), columnNumber: z.number() }),
      children: z.array(z.number()).optional(),
    }),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});

/** Where a function lives: a package, one of our files, or Node's internals. */
function owner(url: string): string {
  if (url === '') return '(vm: gc, idle, program)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg?.[1] !== undefined) return pkg[1];
  const ours = /\/(dist|src)\/(.*)$/.exec(url);
  if (ours?.[2] !== undefined) return ours[2];
  if (url.startsWith('node:')) return url;
  return url;
}

/** The source map of a profiled script (a file URL or an absolute path), read once. */
function scriptSourceMap(url: string): SourceMap | undefined {
  const path = url.startsWith('file:') ? fileURLToPath(url) : url.startsWith('/') ? url : undefined;
  return path === undefined ? undefined : sourceMapOf(path);
}

/** A frame as `function owner:line`, through the bundle's source map to the module it came from. */
function describe(frame: { functionName: string; url: string; lineNumber: number; columnNumber: number }): { where: string; name: string } {
  const entry = scriptSourceMap(frame.url)?.findEntry(frame.lineNumber, frame.columnNumber);
  const mapped = entry !== undefined && 'originalSource' in entry ? { where: owner(entry.originalSource), line: entry.originalLine + 1 } : undefined;
  const where = mapped?.where ?? owner(frame.url);
  return { where, name: `${frame.functionName || '(anonymous)'} ${where}:${mapped?.line ?? frame.lineNumber + 1}` };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const topIndex = args.indexOf('--top');
  const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 40;
  const callersIndex = args.indexOf('--callers-of');
  const callersOf = callersIndex >= 0 ? args[callersIndex + 1] : undefined;
  const untilIndex = args.indexOf('--until');
  const until = untilIndex >= 0 ? args[untilIndex + 1] : undefined;
  const optionValues = new Set([topIndex, callersIndex, untilIndex].filter((i) => i >= 0).map((i) => i + 1));
  const files = args.filter((arg, i) => !arg.startsWith('--') && !optionValues.has(i));
  /** Self time of `callersOf`, by the nearest calling function of another owner. */
  const callers = new Map<string, number>();
  const byOwner = new Map<string, number>();
  const byFunction = new Map<string, number>();
  /** Time with the function anywhere on the stack (counted once per sample). */
  const inclusive = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const file of files) {
    const profile = ProfileSchema.parse(JSON.parse(await readFile(file, 'utf8')));
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
    const parents = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
    /** The names of the functions on the stack of a sample, innermost first. */
    const stackNames = (id: number): string[] => {
      const names: string[] = [];
      for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
        const frame = nodes.get(at)?.callFrame;
        if (frame === undefined) break;
        names.push(describe(frame).name);
      }
      return names;
    };
    for (const [i, id] of profile.samples.entries()) {
      const us = profile.timeDeltas[i] ?? 0;
      const node = nodes.get(id);
      if (node === undefined) continue;
      if (until !== undefined && stackNames(id).some((name) => name.includes(until))) break;
      if (node.callFrame.functionName === '(idle)') {
        idle += us;
        continue;
      }
      total += us;
      const { where, name } = describe(node.callFrame);
      byOwner.set(where, (byOwner.get(where) ?? 0) + us);
      byFunction.set(name, (byFunction.get(name) ?? 0) + us);
      for (const frameName of new Set(stackNames(id))) inclusive.set(frameName, (inclusive.get(frameName) ?? 0) + us);
      if (callersOf !== undefined && where === callersOf) {
        for (let at = parents.get(id); at !== undefined; at = parents.get(at)) {
          const frame = nodes.get(at)?.callFrame;
          // Code a package generated at run time (zod's parsers) has no URL: look past it too.
          if (frame === undefined || frame.url === '') continue;
          const caller = describe(frame);
          if (caller.where === callersOf) continue;
          callers.set(caller.name, (callers.get(caller.name) ?? 0) + us);
          break;
        }
      }
    }
  }
  const rows = (map: Map<string, number>): string[][] =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => [name, fmt(us / 1000, 1), fmt((100 * us) / total, 1)]);
  process.stdout.write(`busy ${fmt(total / 1000, 1)} ms, idle ${fmt(idle / 1000, 1)} ms\n\nself time by owner\n`);
  printTable(['owner', 'ms', '%'], rows(byOwner));
  process.stdout.write('\nself time by function\n');
  printTable(['function', 'ms', '%'], rows(byFunction));
  if (callersOf !== undefined) {
    process.stdout.write(`\nself time of ${callersOf}, by calling function\n`);
    printTable(['function', 'ms', '%'], rows(callers));
  }
  process.stdout.write('\ntotal time by function (on the stack)\n');
  printTable(['function', 'ms', '%'], rows(inclusive));
}

await main();
