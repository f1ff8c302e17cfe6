/**
 * Summarizes V8 CPU profiles (`node --cpu-prof`): self time by package or source file, and the
 * heaviest functions. Usage: `npx tsx bench/cpuprofile-summary.ts FILE.cpuprofile... [--top N]
 * [--callers-of OWNER]`; the last attributes the self time of one owner (e.g. `zod`) to the
 * nearest function of another owner that called it.
 * Profile the session bench's servers with
 * `BENCH_ONLY=turns BENCH_KINDS=text BENCH_SERVER_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench -- session`.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { fmt, printTable } from './stats.js';

const ProfileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }),
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

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const topIndex = args.indexOf('--top');
  const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 40;
  const callersIndex = args.indexOf('--callers-of');
  const callersOf = callersIndex >= 0 ? args[callersIndex + 1] : undefined;
  const files = args.filter((arg, i) => !arg.startsWith('--') && (topIndex < 0 || i !== topIndex + 1) && (callersIndex < 0 || i !== callersIndex + 1));
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
    for (const [i, id] of profile.samples.entries()) {
      const us = profile.timeDeltas[i] ?? 0;
      const node = nodes.get(id);
      if (node === undefined) continue;
      const { functionName, url, lineNumber } = node.callFrame;
      if (functionName === '(idle)') {
        idle += us;
        continue;
      }
      total += us;
      const where = owner(url);
      byOwner.set(where, (byOwner.get(where) ?? 0) + us);
      const key = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
      byFunction.set(key, (byFunction.get(key) ?? 0) + us);
      const onStack = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
        const frame = nodes.get(at)?.callFrame;
        if (frame === undefined) break;
        onStack.add(`${frame.functionName || '(anonymous)'} ${owner(frame.url)}:${frame.lineNumber + 1}`);
      }
      for (const name of onStack) inclusive.set(name, (inclusive.get(name) ?? 0) + us);
      if (callersOf !== undefined && where === callersOf) {
        for (let at = parents.get(id); at !== undefined; at = parents.get(at)) {
          const frame = nodes.get(at)?.callFrame;
          // Code a package generated at run time (zod's parsers) has no URL: look past it too.
          if (frame === undefined || owner(frame.url) === callersOf || frame.url === '') continue;
          const caller = `${frame.functionName || '(anonymous)'} ${owner(frame.url)}:${frame.lineNumber + 1}`;
          callers.set(caller, (callers.get(caller) ?? 0) + us);
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
