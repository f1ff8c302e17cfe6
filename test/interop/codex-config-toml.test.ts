// The same config.toml files given to the real Codex 0.169.0 and to us. Codex reads TOML 1.1, so
// a file it accepts must load here too (the MCP server refuses to start on a config it cannot
// read), with the same values; a broken file must fail in both, at the same line and column.
// Codex's side is `codex mcp get NAME --json`, which loads config.toml and prints the server entry
// as parsed, without touching the network. Ours is the config loader the MCP server and `doctor`
// use (for the values), and the built `doctor`, which checks config.toml as the server loads it.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { resolveConfig } from '../../src/config/config.js';
import { parseConfigToml } from '../../src/config/layers.js';
import { parseMcpServers } from '../../src/config/mcp-servers.js';
import { CLI, CODEX, runCommand, tempDir } from '../helpers/process.js';

/** What `codex mcp get NAME --json` prints, as far as these files set it. */
const CodexMcpGet = z.object({
  name: z.string(),
  transport: z.object({ type: z.literal('stdio'), command: z.string(), args: z.array(z.string()), env: z.record(z.string(), z.string()).nullable() }),
});

const DoctorReport = z.object({ checks: z.array(z.object({ id: z.string(), status: z.string(), detail: z.string() })) });

/** `text` as a regular expression that matches it literally. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * First lines of every file, all top-level keys: a provider on a closed loopback port whose key
 * is unset, so neither program sends anything.
 */
const HEAD = [
  'model = "m"',
  'model_provider = "fake"',
  'model_providers = { fake = { name = "fake", base_url = "http://127.0.0.1:9/v1", env_key = "CONFIG_TOML_TEST_UNSET_KEY" } }',
];

/** Files with TOML 1.1 syntax that TOML 1.0 rejects, and the `env` of `[mcp_servers.docs]` they define. */
const ACCEPTED: { name: string; lines: string[]; env: Record<string, string> }[] = [
  {
    name: 'a multi-line inline table with comments and a trailing comma',
    lines: ['[mcp_servers.docs]', 'command = "docs-server"', 'env = {', '  A = "1", # first', '  B = "2",', '}'],
    env: { A: '1', B: '2' },
  },
  {
    name: 'the \\e and \\xHH escapes',
    lines: ['[mcp_servers.docs]', 'command = "docs-server"', 'env = { BOLD = "\\e[1m", LETTER = "\\x41" }'],
    env: { BOLD: '\u001b[1m', LETTER: 'A' },
  },
  {
    name: 'nested inline tables spanning lines',
    lines: ['mcp_servers = { docs = {', '  command = "docs-server",', '  env = { PAGER = "cat" },', '} }'],
    env: { PAGER: 'cat' },
  },
];

/**
 * Broken files, each rejected by both at the line (of `lines`, after {@link HEAD}) and column
 * given, 1-based as Codex prints them.
 */
const REJECTED: { name: string; lines: string[]; line: number; column: number }[] = [
  { name: 'an unclosed table header', lines: ['[mcp_servers.docs', 'command = "x"'], line: 1, column: 18 },
  { name: 'a table defined twice', lines: ['[features]', 'a = true', '[features]'], line: 3, column: 2 },
  { name: 'an unknown escape', lines: ['developer_instructions = "a\\qb"'], line: 1, column: 29 },
  { name: 'a missing comma in a multi-line inline table', lines: ['features = {', '  a = true', '  b = false', '}'], line: 3, column: 3 },
  { name: 'a key defined twice in an inline table', lines: ['features = { a = true, a = false }'], line: 1, column: 24 },
  { name: 'a key without a value', lines: ['sandbox_mode = '], line: 1, column: 16 },
];

describe('config.toml read by the real codex 0.169.0 and by us', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let configPath: string;

  beforeAll(async () => {
    home = await tempDir('cmx-config-toml-');
    configPath = join(home.path, 'config.toml');
    await mkdir(join(home.path, 'home'));
  });
  afterAll(async () => {
    await home.cleanup();
  });

  /** Only what both programs need: no ambient keys, proxies or SHELL. */
  const env = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, HOME: join(home.path, 'home'), CODEX_HOME: home.path });
  const codexMcpGet = (): ReturnType<typeof runCommand> => runCommand(CODEX, ['mcp', 'get', 'docs', '--json'], env());
  const doctor = async (): Promise<z.infer<typeof DoctorReport>> => {
    const run = await runCommand(process.execPath, [CLI, 'doctor', '--json'], env());
    return DoctorReport.parse(JSON.parse(run.stdout));
  };
  const checkStatus = (report: z.infer<typeof DoctorReport>, id: string): string | undefined => report.checks.find((check) => check.id === id)?.status;
  /** Our loader, as the MCP server runs it: parse, resolve, then the `[mcp_servers]` entries. */
  const ourEnv = (text: string): Record<string, string> | undefined => {
    const { config } = resolveConfig({ layers: [parseConfigToml(text, configPath)], codexHome: home.path });
    const docs = parseMcpServers(config.mcpServers).servers.find((server) => server.name === 'docs');
    return docs?.transport.type === 'stdio' ? docs.transport.env : undefined;
  };

  it.each(ACCEPTED)('both accept $name, with the same values', async ({ lines, env: expected }) => {
    const text = [...HEAD, ...lines, ''].join('\n');
    await writeFile(configPath, text);

    const codex = await codexMcpGet();
    expect({ code: codex.code, stderr: codex.stderr }).toMatchObject({ code: 0 });
    expect(CodexMcpGet.parse(JSON.parse(codex.stdout)).transport.env).toEqual(expected);

    expect(ourEnv(text)).toEqual(expected);
    const report = await doctor();
    expect({ config: checkStatus(report, 'config'), mcpServers: checkStatus(report, 'mcp_servers') }).toEqual({ config: 'ok', mcpServers: 'ok' });
  });

  it.each(REJECTED)('both reject $name at the same line and column', async ({ lines, line, column }) => {
    await writeFile(configPath, [...HEAD, ...lines, ''].join('\n'));
    const at = { line: HEAD.length + line, column };

    const codex = await codexMcpGet();
    expect(codex.code).not.toBe(0);
    expect(codex.stderr).toContain(`${configPath}:${at.line}:${at.column}: `);

    const config = (await doctor()).checks.find((check) => check.id === 'config');
    expect(config?.status).toBe('fail');
    expect(config?.detail).toMatch(new RegExp(`^${literal(configPath)}: TOML syntax error at line ${at.line}, column ${at.column}: \\S`));
  });
});
