import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The layer rule of DESIGN.md, re-derived from the source: a folder may import only from folders
 * listed above it in DESIGN.md's layout (earlier here), never a sibling of its own tier.
 * Third-party packages are confined to their owners.
 */
const ORDER: string[][] = [['util'], ['protocol'], ['config'], ['transport'], ['rpc'], ['exec', 'model'], ['environments'], ['agent'], ['session'], ['mcp'], ['cli']];

/** Packages (or package prefixes) and the only folders allowed to import them. */
const OWNERS: Record<string, string[]> = {
  'smol-toml': ['config'],
  'eventsource-parser': ['model'],
  ws: ['transport'],
  'https-proxy-agent': ['transport'],
  'p-queue': ['session'],
  openai: ['model'],
  '@modelcontextprotocol/sdk/server': ['mcp'],
  '@modelcontextprotocol/sdk/experimental': ['mcp'],
  '@lydell/node-pty': ['exec'],
  '@modelcontextprotocol/sdk/client': ['environments'],
};

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

function layerOf(folder: string): number {
  const index = ORDER.findIndex((names) => names.includes(folder));
  if (index === -1) throw new Error(`src/${folder} is not in the layer order of DESIGN.md`);
  return index;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers: string[] = [];
  for (const match of text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    specifiers.push(match[1] ?? match[2] ?? '');
  }
  return specifiers;
}

describe('layer rule', () => {
  const files = sourceFiles(root);

  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it('every import points to the same or a lower layer, and siblings of one layer stay apart', () => {
    const violations: string[] = [];
    for (const file of files) {
      const folder = relative(root, file).split('/')[0] ?? '';
      const layer = layerOf(folder);
      for (const specifier of importsOf(file)) {
        if (!specifier.startsWith('.')) continue;
        const target = relative(root, resolve(dirname(file), specifier)).split('/')[0] ?? '';
        if (target === folder) continue;
        const targetLayer = layerOf(target);
        if (targetLayer >= layer) violations.push(`${relative(root, file)} imports ${specifier} (src/${target} is not below src/${folder})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('third-party packages are imported only by their owners, and only cli reads process.env', () => {
    const violations: string[] = [];
    for (const file of files) {
      const folder = relative(root, file).split('/')[0] ?? '';
      for (const specifier of importsOf(file)) {
        for (const [pkg, owners] of Object.entries(OWNERS)) {
          if ((specifier === pkg || specifier.startsWith(`${pkg}/`)) && !owners.includes(folder)) {
            violations.push(`${relative(root, file)} imports ${specifier} (only ${owners.join(', ')} may)`);
          }
        }
      }
      if (folder !== 'cli' && /process\.(env|argv)\b/.test(readFileSync(file, 'utf8'))) {
        violations.push(`${relative(root, file)} reads process.env or process.argv (only src/cli may)`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("the session layer's seams are implemented behind their interfaces and chosen only in src/cli", () => {
    // The thread manager and the MCP layer know a TurnEngine, a ThreadStore and a ThreadOwnership;
    // which engine, store and ownership a server uses (and that processes share threads) is cli's choice.
    const implementations = [
      'session/builtin-engine.ts',
      'session/codex-engine.ts',
      'session/codex-turn.ts',
      'session/codex-app-server.ts',
      'session/jsonl-thread-store.ts',
      'session/thread-lease.ts',
      'session/pg-database.ts',
      'session/pg-listener.ts',
      'session/pg-migrations.ts',
      'session/pg-ownership-schema.ts',
      'session/pg-ownership.ts',
      'session/pg-secrets-schema.ts',
      'session/pg-store-schema.ts',
      'session/pg-thread-store.ts',
    ];
    const violations: string[] = [];
    for (const file of files) {
      const from = relative(root, file);
      if (from.startsWith('cli/')) continue;
      for (const specifier of importsOf(file)) {
        if (!specifier.startsWith('.')) continue;
        const target = relative(root, resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
        // An implementation may use its own helpers, never another implementation.
        if (implementations.includes(target) && !implementations.includes(from)) violations.push(`${from} imports ${specifier}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('no file imports itself through other files (type-only imports count too)', () => {
    const graph = new Map<string, string[]>();
    for (const file of files) {
      const targets = importsOf(file)
        .filter((specifier) => specifier.startsWith('.'))
        .map((specifier) => resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
      graph.set(file, targets);
    }
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const trail: string[] = [];
    const visit = (file: string): void => {
      state.set(file, 'open');
      trail.push(file);
      for (const target of graph.get(file) ?? []) {
        if (state.get(target) === 'open') cycles.push([...trail.slice(trail.indexOf(target)), target].map((path) => relative(root, path)).join(' -> '));
        else if (state.get(target) === undefined && graph.has(target)) visit(target);
      }
      trail.pop();
      state.set(file, 'done');
    };
    for (const file of files) if (state.get(file) === undefined) visit(file);
    expect(cycles).toEqual([]);
  });
});
