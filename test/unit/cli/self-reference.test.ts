// Which [mcp_servers] entries launch this server itself, on real files: a script in a temp folder
// standing for ours, a symlinked command in a temp PATH folder, another copy of the package.
import { chmod, mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveConfig } from '../../../src/config/config.js';
import { parseConfigToml } from '../../../src/config/layers.js';
import { parseMcpServers, type McpServerConfig } from '../../../src/config/mcp-servers.js';
import { findSelfReference, findSelfReferences, selfReferenceFilter, selfReferenceWarning, type SelfReferenceHost } from '../../../src/cli/self-reference.js';
import { createLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/process.js';

let root: { path: string; cleanup: () => Promise<void> };
let host: SelfReferenceHost;
/** Our package: `<root>/ours`, its script `dist/cli/main.js`. */
let ours: string;
let script: string;
/** A folder on the host's PATH. */
let bin: string;

/** A package folder with `dist/cli/main.js` and a package.json named `name`; returns the script. */
async function makePackage(dir: string, name: string): Promise<string> {
  await mkdir(join(dir, 'dist/cli'), { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name, version: '0.1.0' }));
  const file = join(dir, 'dist/cli/main.js');
  await writeFile(file, '#!/usr/bin/env node\n');
  await chmod(file, 0o755);
  return file;
}

/** The `[mcp_servers.NAME]` entry the server would load from this TOML. */
function entry(toml: string): McpServerConfig {
  const { config } = resolveConfig({ layers: [parseConfigToml(toml, '/h/.codex/config.toml')], codexHome: '/h/.codex' });
  const [server] = parseMcpServers(config.mcpServers).servers;
  if (server === undefined) throw new Error('no server');
  return server;
}

function stdio(command: string, args: string[] = [], extra = ''): McpServerConfig {
  return entry(`[mcp_servers.self]\ncommand = ${JSON.stringify(command)}\nargs = ${JSON.stringify(args)}\n${extra}`);
}

beforeAll(async () => {
  root = await tempDir('self-ref-');
  ours = join(root.path, 'ours');
  // The package's own name: a script found by path equality must not need it.
  script = await realpath(await makePackage(ours, 'renamed-checkout'));
  bin = join(root.path, 'bin');
  await mkdir(bin);
  await symlink(script, join(bin, 'codex-multienv'));
  await symlink(script, join(bin, 'my-orchestrator'));
  await writeFile(join(bin, 'unrelated-tool'), '#!/bin/sh\n');
  await chmod(join(bin, 'unrelated-tool'), 0o755);
  host = { scriptPath: script, nodePath: await realpath(process.execPath), pathEnv: `${join(root.path, 'empty')}:${bin}`, cwd: root.path };
});
afterAll(async () => {
  await root.cleanup();
});

describe('findSelfReference', () => {
  it('finds node with our script, with node options before it and MCP-serving options after it', () => {
    expect(findSelfReference(stdio('node', [script]), host)).toBe(`node ${script} runs this server's script`);
    expect(findSelfReference(stdio('node', ['--enable-source-maps', script, '--foreground', '-c', 'model="o3"']), host)).toBeDefined();
    expect(findSelfReference(stdio('nodejs', [script]), host)).toBeDefined();
  });

  it('finds this node binary by its path, and a script relative to the entry’s cwd or the default thread cwd', () => {
    expect(findSelfReference(stdio(process.execPath, [script]), host)).toBeDefined();
    expect(findSelfReference(stdio('node', ['dist/cli/main.js'], `cwd = ${JSON.stringify(ours)}`), host)).toBeDefined();
    expect(findSelfReference(stdio('node', ['ours/dist/cli/main.js']), host)).toBeDefined();
    expect(findSelfReference(stdio('node', ['dist/cli/main.js'], 'cwd = "elsewhere"'), host)).toBeUndefined();
  });

  it('follows a command through PATH and its symlinks to our script, whatever its name', () => {
    expect(findSelfReference(stdio('my-orchestrator'), host)).toBe("my-orchestrator runs this server's command");
    expect(findSelfReference(stdio('codex-multienv', ['--profile', 'fast']), host)).toBeDefined();
    expect(findSelfReference(stdio(join(bin, 'my-orchestrator')), host)).toBeDefined();
    // Not on this PATH: the same name elsewhere is another program.
    expect(findSelfReference(stdio('my-orchestrator'), { ...host, pathEnv: join(root.path, 'empty') })).toBeUndefined();
  });

  it('takes our command name as ours even where this PATH does not have it (a remote host, another install)', () => {
    expect(findSelfReference(stdio('codex-multienv'), { ...host, pathEnv: '' })).toBeDefined();
    expect(findSelfReference(stdio('/opt/tools/bin/codex-multienv', ['--foreground']), host)).toBeDefined();
  });

  it('finds another copy of the package by its package.json, and not a look-alike', async () => {
    const copy = await makePackage(join(root.path, 'global/codex-multienv-mcp'), 'codex-multienv-mcp');
    const other = await makePackage(join(root.path, 'other'), 'some-other-server');
    expect(findSelfReference(stdio('node', [copy]), host)).toBeDefined();
    expect(findSelfReference(stdio('node', [other]), host)).toBeUndefined();
  });

  it('finds npx and npm exec of the package or its command', () => {
    for (const args of [
      ['-y', 'codex-multienv-mcp'],
      ['codex-multienv-mcp@0.1.0', '--foreground'],
      ['--yes', '--package=codex-multienv-mcp', 'codex-multienv'],
      ['-p', 'codex-multienv-mcp@latest', 'codex-multienv', '-c', 'model="o3"'],
      ['--', 'codex-multienv-mcp'],
    ]) {
      expect(findSelfReference(stdio('npx', args), host)).toBe(`npx ${args.join(' ')} runs this server's package`);
    }
    expect(findSelfReference(stdio('npm', ['exec', '--yes', '--', 'codex-multienv-mcp']), host)).toBeDefined();
    expect(findSelfReference(stdio('/usr/local/bin/npm', ['x', 'codex-multienv-mcp']), host)).toBeDefined();
  });

  it('leaves a subcommand other than serving MCP alone: exec-server, doctor, --version, --help', () => {
    expect(findSelfReference(stdio('node', [script, 'exec-server', '--listen', 'stdio']), host)).toBeUndefined();
    expect(findSelfReference(stdio('codex-multienv', ['doctor']), host)).toBeUndefined();
    expect(findSelfReference(stdio('my-orchestrator', ['--version']), host)).toBeUndefined();
    expect(findSelfReference(stdio('npx', ['-y', 'codex-multienv-mcp', 'exec-server', '--listen', 'stdio']), host)).toBeUndefined();
    expect(findSelfReference(stdio('npx', ['codex-multienv-mcp', '--help']), host)).toBeUndefined();
  });

  it('leaves unrelated servers alone', () => {
    expect(findSelfReference(stdio('node', ['/srv/everything/dist/index.js', 'stdio']), host)).toBeUndefined();
    expect(findSelfReference(stdio('node', ['-e', 'process.exit(0)']), host)).toBeUndefined();
    expect(findSelfReference(stdio('unrelated-tool', ['--foreground']), host)).toBeUndefined();
    expect(findSelfReference(stdio('npx', ['-y', '@modelcontextprotocol/server-everything']), host)).toBeUndefined();
    expect(findSelfReference(stdio('npx', ['--package', 'other-package', 'codex-multienv']), host)).toBeUndefined();
    expect(findSelfReference(stdio('npm', ['install', 'codex-multienv-mcp']), host)).toBeUndefined();
    expect(findSelfReference(stdio('sh', ['-c', `exec node ${script}`]), host)).toBeUndefined();
    expect(findSelfReference(entry('[mcp_servers.web]\nurl = "http://127.0.0.1:1/mcp"'), host)).toBeUndefined();
  });

  it('leaves a disabled entry and one that allows nesting on purpose', () => {
    expect(findSelfReference(stdio('node', [script], 'enabled = false'), host)).toBeUndefined();
    expect(findSelfReference(stdio('node', [script], 'env = { CODEX_MULTIENV_NESTED = "allow" }'), host)).toBeUndefined();
    expect(findSelfReference(stdio('node', [script], 'env = { CODEX_MULTIENV_NESTED = "1" }'), host)).toBeDefined();
  });
});

describe('selfReferenceFilter', () => {
  const toml = (selfArgs: string[]): McpServerConfig[] => {
    const { config } = resolveConfig({
      layers: [
        parseConfigToml(`[mcp_servers.self]\ncommand = "node"\nargs = ${JSON.stringify(selfArgs)}\n[mcp_servers.docs]\ncommand = "unrelated-tool"\n`, '/h/.codex/config.toml'),
      ],
      codexHome: '/h/.codex',
    });
    return parseMcpServers(config.mcpServers).servers;
  };

  it('drops the entries that launch this server and warns once per entry, not on every call', () => {
    const lines: string[] = [];
    const skip = selfReferenceFilter(host, createLogger({ write: (line) => lines.push(line), level: 'info' }));
    for (let call = 0; call < 3; call++) expect(skip(toml([script])).map((server) => server.name)).toEqual(['docs']);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(selfReferenceWarning({ server: 'self', how: `node ${script} runs this server's script` }));
    expect(lines[0]).toMatch(/own CODEX_HOME.*enabled = false.*CODEX_MULTIENV_NESTED = "allow"/);
    // A changed entry is decided (and reported) again.
    expect(skip(toml([script, '--foreground'])).map((server) => server.name)).toEqual(['docs']);
    expect(lines).toHaveLength(2);
    expect(findSelfReferences(toml([script]), host)).toEqual([{ server: 'self', how: `node ${script} runs this server's script` }]);
  });

  it('keeps every entry without a host (the script is unknown)', () => {
    const lines: string[] = [];
    const skip = selfReferenceFilter(undefined, createLogger({ write: (line) => lines.push(line), level: 'info' }));
    expect(skip(toml([script])).map((server) => server.name)).toEqual(['self', 'docs']);
    expect(lines).toEqual([]);
  });
});
