// Every client configuration we publish, started as its client would start it. There is no VS
// Code, Cursor, Claude Code, Gemini CLI or opencode here, so each configuration is made verifiably
// correct instead: (1) it is read from where users copy it (the marked blocks of README's Clients
// section and mcp.config.example.json), (2) it is checked against the format its client documents
// (a strict zod schema per format: VS Code's mcp.json `servers`/`inputs`, Cursor's, Claude Code's
// and Gemini CLI's `mcpServers`, opencode's `mcp` with `type: "local"` and a command array,
// Codex's `[mcp_servers.NAME]`), (3) exactly the documented placeholders are filled
// in, and (4) each entry is started like its client does (command + args, the entry's env over the
// parent environment, the project folder as working directory) with the SDK's stdio transport,
// and must list our tools and run a `codex` turn against the fake model with the key it was given.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { z } from 'zod';
import { parseToml } from '../../src/config/toml.js';
import { startFakeResponsesServer, type FakeResponsesServer } from '../../tools/fake-responses-server.js';
import { REPO_ROOT, tempDir } from '../helpers/process.js';
import { say } from '../helpers/steps.js';

/** The placeholders README's Clients section documents, and what the test puts in their place. */
const INSTALL_PLACEHOLDER = '/path/to/codex-multienv-mcp';
const HOME_PLACEHOLDER = '/home/you';
const KEY_PLACEHOLDER = 'sk-...';
/** The key the test gives every entry; the fake model must receive exactly this one. */
const TEST_KEY = 'sk-test-client-configs';

// ---- the formats, as each client documents them (unknown keys are errors: a typo must fail) ----

const Env = z.record(z.string(), z.string());

/** VS Code `mcp.json`: top-level `servers` (not `mcpServers`) and optional `inputs`. */
const VsCodeStdioServer = z.strictObject({
  type: z.literal('stdio'),
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  // VS Code removes a variable whose value is null.
  env: z.record(z.string(), z.string().nullable()).optional(),
  envFile: z.string().optional(),
});
const VsCodeInput = z.strictObject({
  type: z.enum(['promptString', 'pickString']),
  id: z.string().min(1),
  description: z.string(),
  password: z.boolean().optional(),
  default: z.string().optional(),
  options: z.array(z.string()).optional(),
});
const VsCodeMcpJson = z.strictObject({ inputs: z.array(VsCodeInput).optional(), servers: z.record(z.string(), VsCodeStdioServer) });

/** Cursor `mcp.json` (`~/.cursor/mcp.json`, `.cursor/mcp.json`): `mcpServers`; stdio is inferred from `command`. */
const CursorStdioServer = z.strictObject({
  type: z.literal('stdio').optional(),
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  env: Env.optional(),
  envFile: z.string().optional(),
});
const CursorMcpJson = z.strictObject({ mcpServers: z.record(z.string(), CursorStdioServer) });

/** Claude Code `.mcp.json`: `mcpServers`, `type` optional for stdio. */
const ClaudeStdioServer = z.strictObject({ type: z.literal('stdio').optional(), command: z.string().min(1), args: z.array(z.string()).optional(), env: Env.optional() });
const ClaudeMcpJson = z.strictObject({ mcpServers: z.record(z.string(), ClaudeStdioServer) });

/**
 * Gemini CLI `settings.json` (`~/.gemini/settings.json`, `.gemini/settings.json`): `mcpServers`;
 * a stdio entry is `command` with optional `args`, `env`, `cwd`, `timeout` (ms), `trust` and tool filters.
 */
const GeminiStdioServer = z.strictObject({
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  env: Env.optional(),
  cwd: z.string().optional(),
  timeout: z.number().int().positive().optional(),
  trust: z.boolean().optional(),
  description: z.string().optional(),
  includeTools: z.array(z.string()).optional(),
  excludeTools: z.array(z.string()).optional(),
});
const GeminiSettingsJson = z.strictObject({ mcpServers: z.record(z.string(), GeminiStdioServer) });

/** opencode `opencode.json`: `mcp`, a local server is `type: "local"` with the command and its arguments in one array. */
const OpencodeLocalServer = z.strictObject({
  type: z.literal('local'),
  command: z.array(z.string()).min(1),
  environment: Env.optional(),
  enabled: z.boolean().optional(),
  timeout: z.number().int().positive().optional(),
  cwd: z.string().optional(),
});
const OpencodeJson = z.strictObject({ $schema: z.literal('https://opencode.ai/config.json').optional(), mcp: z.record(z.string(), OpencodeLocalServer) });

/** Codex `config.toml`: `[mcp_servers.NAME]` tables (stdio keys only). */
const CodexStdioServer = z.strictObject({
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  env: Env.optional(),
  env_vars: z.array(z.string()).optional(),
  cwd: z.string().optional(),
  enabled: z.boolean().optional(),
  startup_timeout_sec: z.number().positive().optional(),
  tool_timeout_sec: z.number().positive().optional(),
});
const CodexConfigToml = z.strictObject({ mcp_servers: z.record(z.string(), CodexStdioServer) });

const ClientNameSchema = z.enum(['codex', 'claude-code', 'vscode', 'cursor', 'gemini', 'opencode']);
type ClientName = z.infer<typeof ClientNameSchema>;
const CLIENTS = ClientNameSchema.options;

/** One published configuration: where it is, for which client, its text. */
interface Published {
  client: ClientName;
  /** `README.md line N` or the file name. */
  source: string;
  kind: 'config' | 'command';
  text: string;
}

/** One server entry as its client would start it (placeholders not yet filled in). */
interface Launch {
  label: string;
  command: string;
  args: string[];
  /** Set over the parent environment; null removes a variable. */
  env: Record<string, string | null>;
}

/** The `## Clients` section of README.md with the line number it starts at. */
function clientsSection(readme: string): { lines: string[]; firstLine: number } {
  const lines = readme.split('\n');
  const start = lines.indexOf('## Clients');
  if (start < 0) throw new Error('README.md has no "## Clients" section');
  const after = lines.findIndex((line, index) => index > start && line.startsWith('## '));
  return { lines: lines.slice(start, after < 0 ? undefined : after), firstLine: start + 1 };
}

const MARKER = /^<!-- client-(config|command): (\S+)(?: \S+)? -->$/;

/**
 * The marked blocks of the Clients section: `<!-- client-config: CLIENT FILE -->` (or
 * `client-command`) right before a fenced block. A json/toml block without a marker is an error,
 * so no published configuration escapes the test.
 */
function publishedBlocks(readme: string): Published[] {
  const { lines, firstLine } = clientsSection(readme);
  const found: Published[] = [];
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i] ?? '';
    const fence = /^```(\w*)$/.exec(line);
    if (fence !== null && fence[1] !== '') {
      const end = lines.indexOf('```', i + 1);
      if (end < 0) throw new Error(`README.md line ${firstLine + i}: unclosed code block`);
      const marker = MARKER.exec(lines[i - 1] ?? '');
      if (marker === null) {
        if (fence[1] === 'json' || fence[1] === 'toml')
          throw new Error(`README.md line ${firstLine + i}: a ${fence[1]} block in the Clients section without a client-config marker`);
      } else {
        const client = ClientNameSchema.safeParse(marker[2]);
        if (!client.success) throw new Error(`README.md line ${firstLine + i - 1}: unknown client "${marker[2]}"`);
        found.push({
          client: client.data,
          source: `README.md line ${firstLine + i}`,
          kind: marker[1] === 'command' ? 'command' : 'config',
          text: lines.slice(i + 1, end).join('\n'),
        });
      }
      i = end;
    } else if (MARKER.test(line) && !/^```\w+$/.test(lines[i + 1] ?? '')) {
      throw new Error(`README.md line ${firstLine + i}: a client marker not followed by a code block`);
    }
  }
  return found;
}

/** Entries of `claude mcp add NAME [--scope S] [-e K=V]… -- COMMAND ARGS…` (whitespace-separated, no quoting). */
function claudeAddCommand(text: string, source: string): Launch[] {
  return text
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line) => {
      if (/["'\\$`]/.test(line)) throw new Error(`${source}: quoting and expansion are not supported in "${line}"`);
      const words = line.trim().split(/\s+/);
      const dashes = words.indexOf('--');
      const [claude, mcp, add, name, ...options] = words.slice(0, dashes < 0 ? undefined : dashes);
      if (claude !== 'claude' || mcp !== 'mcp' || add !== 'add' || name === undefined || dashes < 0)
        throw new Error(`${source}: not "claude mcp add NAME … -- COMMAND …": ${line}`);
      const env: Record<string, string> = {};
      for (let i = 0; i < options.length; i += 2) {
        const [option, value] = [options[i], options[i + 1]];
        if (value === undefined) throw new Error(`${source}: ${option} needs a value`);
        if (option === '-e' || option === '--env') {
          const eq = value.indexOf('=');
          if (eq <= 0) throw new Error(`${source}: ${option} wants KEY=VALUE, got ${value}`);
          env[value.slice(0, eq)] = value.slice(eq + 1);
        } else if (option === '-s' || option === '--scope') {
          if (!['local', 'project', 'user'].includes(value)) throw new Error(`${source}: unknown scope ${value}`);
        } else if (option === '-t' || option === '--transport') {
          if (value !== 'stdio') throw new Error(`${source}: transport ${value} is not stdio`);
        } else throw new Error(`${source}: unknown option ${option}`);
      }
      const [command, ...args] = words.slice(dashes + 1);
      if (command === undefined) throw new Error(`${source}: no command after --`);
      return { label: `${source} (claude mcp add ${name})`, command, args, env };
    });
}

/** Fills in VS Code's `${input:ID}` variables; any other `${…}` is an error (we publish none). */
function vscodeInputs(value: string, inputs: ReadonlyMap<string, string>, where: string): string {
  return value.replace(/\$\{([^}]*)\}/g, (_whole, variable: string) => {
    const id = /^input:(.+)$/.exec(variable)?.[1];
    const input = id === undefined ? undefined : inputs.get(id);
    if (input === undefined) throw new Error(`${where}: \${${variable}} is not an input declared in "inputs"`);
    return input;
  });
}

/** `value` checked against `schema`, or an error naming the source and what is wrong. */
function checked<T>(schema: z.ZodType<T>, value: unknown, published: Published): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new Error(`${published.source} is not a valid ${published.client} configuration: ${z.prettifyError(result.error)}`);
  return result.data;
}

/** Checks a published configuration against its client's format and returns its entries. */
function entriesOf(published: Published): Launch[] {
  const { client, source, text } = published;
  if (published.kind === 'command') {
    if (client !== 'claude-code') throw new Error(`${source}: commands are known for claude-code only`);
    return claudeAddCommand(text, source);
  }
  const plain = (servers: Record<string, { command: string; args?: string[] | undefined; env?: Record<string, string> | undefined }>): Launch[] =>
    Object.entries(servers).map(([name, entry]) => ({ label: `${source} (${name})`, command: entry.command, args: entry.args ?? [], env: entry.env ?? {} }));
  if (client === 'codex') return plain(checked(CodexConfigToml, parseToml(text, source), published).mcp_servers);
  const json: unknown = JSON.parse(text);
  if (client === 'cursor') return plain(checked(CursorMcpJson, json, published).mcpServers);
  if (client === 'claude-code') return plain(checked(ClaudeMcpJson, json, published).mcpServers);
  if (client === 'gemini') return plain(checked(GeminiSettingsJson, json, published).mcpServers);
  if (client === 'opencode') {
    return Object.entries(checked(OpencodeJson, json, published).mcp).map(([name, entry]) => {
      const [command = '', ...args] = entry.command;
      return { label: `${source} (${name})`, command, args, env: entry.environment ?? {} };
    });
  }
  const config = checked(VsCodeMcpJson, json, published);
  // What the user types when VS Code prompts: the key for a password prompt.
  const inputs = new Map((config.inputs ?? []).map((input) => [input.id, input.password === true ? KEY_PLACEHOLDER : (input.default ?? '')]));
  return Object.entries(config.servers).map(([name, entry]) => {
    const where = `${source} (${name})`;
    const env = Object.fromEntries(Object.entries(entry.env ?? {}).map(([key, value]) => [key, value === null ? null : vscodeInputs(value, inputs, where)]));
    return { label: where, command: vscodeInputs(entry.command, inputs, where), args: (entry.args ?? []).map((arg) => vscodeInputs(arg, inputs, where)), env };
  });
}

/** Fills in the documented placeholders; anything placeholder-like left over is an error. */
function filled(value: string, home: string, where: string): string {
  const out = value.replaceAll(INSTALL_PLACEHOLDER, REPO_ROOT).replaceAll(HOME_PLACEHOLDER, home).replaceAll(KEY_PLACEHOLDER, TEST_KEY);
  if (/\/path\/to\b|\.\.\.|\$\{/.test(out)) throw new Error(`${where}: an undocumented placeholder is left in "${value}"`);
  return out;
}

describe('published client configurations', () => {
  let model: FakeResponsesServer;
  let home: { path: string; cleanup: () => Promise<void> };
  let project: { path: string; cleanup: () => Promise<void> };
  let published: Published[];
  let answer = 'no answer set';

  beforeAll(async () => {
    model = await startFakeResponsesServer({ respond: () => say(answer) });
    home = await tempDir('client-configs-home-');
    project = await tempDir('client-configs-project-');
    // The published entries use the default provider's key variable, OPENAI_API_KEY; here it
    // points at the fake model. Both CODEX_HOMEs the entries name (and the default ~/.codex) get it.
    const config = [
      'model = "gpt-5.5"',
      'model_provider = "fake"',
      'approval_policy = "never"',
      'sandbox_mode = "danger-full-access"',
      '[model_providers.fake]',
      'name = "fake"',
      `base_url = "${model.url}"`,
      'env_key = "OPENAI_API_KEY"',
      'request_max_retries = 0',
      'stream_max_retries = 0',
      '',
    ].join('\n');
    for (const folder of ['.codex', '.codex-multienv']) {
      await mkdir(join(home.path, folder), { recursive: true });
      await writeFile(join(home.path, folder, 'config.toml'), config);
    }
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const example = await readFile(join(REPO_ROOT, 'mcp.config.example.json'), 'utf8');
    published = [
      ...publishedBlocks(readme),
      // mcp.config.example.json is the `mcpServers` file Cursor and Claude Code read as is.
      { client: 'cursor', source: 'mcp.config.example.json', kind: 'config', text: example },
      { client: 'claude-code', source: 'mcp.config.example.json', kind: 'config', text: example },
    ];
  });
  afterAll(async () => {
    await model.close();
    await home.cleanup();
    await project.cleanup();
  });

  /** The client's own environment: nothing of the test's that could stand in for the entry's env. */
  const parentEnv = (): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value === undefined || key === 'OPENAI_API_KEY' || key === 'CODEX_HOME' || key === 'FAKE_MODEL_API_KEY' || key.startsWith('CODEX_MULTIENV')) continue;
      env[key] = value;
    }
    env.HOME = home.path;
    return env;
  };

  /** Starts `launch` like a client, lists the tools and runs a `codex` turn; throws on anything wrong. */
  const startAndUse = async (launch: Launch): Promise<string[]> => {
    const env = parentEnv();
    for (const [key, value] of Object.entries(launch.env)) {
      if (value === null) delete env[key];
      else env[key] = filled(value, home.path, launch.label);
    }
    const transport = new StdioClientTransport({
      command: filled(launch.command, home.path, launch.label),
      args: launch.args.map((arg) => filled(arg, home.path, launch.label)),
      env,
      cwd: project.path,
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const client = new Client({ name: 'client-configs-test', version: '1.0.0' });
    try {
      await client.connect(transport);
      const names = (await client.listTools()).tools.map((tool) => tool.name);
      answer = `answer for ${launch.label}`;
      const before = model.requests.length;
      const result = await client.callTool({ name: 'codex', arguments: { prompt: 'hello', cwd: project.path } }, undefined, { timeout: 60_000 });
      const content = z.object({ structuredContent: z.object({ threadId: z.string(), content: z.string() }) }).safeParse(result);
      if (!content.success || content.data.structuredContent.content !== answer) throw new Error(`the codex turn did not answer: ${JSON.stringify(result)}`);
      const request = model.requests[before];
      if (request?.headers.authorization !== `Bearer ${TEST_KEY}`) throw new Error(`the model got the key ${request?.headers.authorization ?? '(none)'}`);
      return names;
    } catch (error) {
      throw new Error(`${launch.label}: ${error instanceof Error ? error.message : String(error)}\nserver stderr: ${stderr.slice(-2000)}`);
    } finally {
      await client.close();
    }
  };

  it("publishes a marked configuration for every client, each valid in its client's format", () => {
    expect(new Set(published.map((p) => p.client))).toEqual(new Set(CLIENTS));
    for (const entry of published) expect(entriesOf(entry).length).toBeGreaterThan(0);
  });

  it('starts every published entry as its client would: tools listed, a codex turn answered with the given key', async () => {
    const launches = published.flatMap(entriesOf);
    expect(launches.length).toBeGreaterThanOrEqual(published.length);
    for (const launch of launches) {
      const names = await startAndUse(launch);
      const portable = launch.args.includes('--portable-tool-names');
      expect({ label: launch.label, names }).toEqual({
        label: launch.label,
        names: expect.arrayContaining(['codex', 'codex-reply', 'codex-status', portable ? 'environment_add' : 'environment/add']),
      });
      if (portable) expect(names.every((name) => /^[a-zA-Z0-9_-]+$/.test(name))).toBe(true);
    }
  });

  describe('a broken configuration fails', () => {
    const readmeBlock = (client: ClientName): Published => {
      const block = published.find((p) => p.client === client && p.kind === 'config' && p.source.startsWith('README'));
      if (block === undefined) throw new Error(`no README block for ${client}`);
      return block;
    };
    const edited = (block: Published, edit: (text: string) => string): Published => ({ ...block, text: edit(block.text) });

    it('a wrong key in any format', () => {
      expect(() => entriesOf(edited(readmeBlock('vscode'), (t) => t.replace('"servers"', '"mcpServers"')))).toThrow(/not a valid vscode configuration/);
      expect(() => entriesOf(edited(readmeBlock('vscode'), (t) => t.replace('"type": "stdio",', '')))).toThrow(/type/);
      expect(() => entriesOf(edited(readmeBlock('vscode'), (t) => t.replace('${input:openai-key}', '${input:api-key}')))).toThrow(/not an input declared/);
      expect(() => entriesOf(edited(readmeBlock('cursor'), (t) => t.replace('"mcpServers"', '"servers"')))).toThrow(/not a valid cursor configuration/);
      expect(() => entriesOf(edited(readmeBlock('cursor'), (t) => t.replace('"command"', '"cmd"')))).toThrow(/not a valid cursor configuration/);
      expect(() => entriesOf(edited(readmeBlock('claude-code'), (t) => t.replace('"args"', '"arguments"')))).toThrow(/not a valid claude-code configuration/);
      expect(() => entriesOf(edited(readmeBlock('codex'), (t) => t.replace('[mcp_servers.', '[mcp-servers.')))).toThrow(/not a valid codex configuration/);
      expect(() => entriesOf(edited(readmeBlock('gemini'), (t) => t.replace('"env"', '"environment"')))).toThrow(/not a valid gemini configuration/);
      expect(() => entriesOf(edited(readmeBlock('gemini'), (t) => t.replace('"mcpServers"', '"mcp"')))).toThrow(/not a valid gemini configuration/);
      expect(() => entriesOf(edited(readmeBlock('opencode'), (t) => t.replace('"type": "local",', '')))).toThrow(/not a valid opencode configuration/);
      expect(() => entriesOf(edited(readmeBlock('opencode'), (t) => t.replace('"environment"', '"env"')))).toThrow(/not a valid opencode configuration/);
      expect(() => publishedBlocks('## Clients\n\n```json\n{}\n```\n')).toThrow(/without a client-config marker/);
    });

    it('a wrong command, a wrong path, a missing key', async () => {
      const [good] = entriesOf(readmeBlock('cursor'));
      expect(good).toBeDefined();
      await expect(startAndUse({ ...good!, command: 'no-such-node' })).rejects.toThrow(/ENOENT/);
      await expect(startAndUse({ ...good!, args: good!.args.map((arg) => arg.replace('dist/cli/main.js', 'dist/cli/mian.js')) })).rejects.toThrow(
        /Connection closed[\s\S]*Cannot find module/,
      );
      const { OPENAI_API_KEY: _key, ...withoutKey } = good!.env;
      // The server refuses the turn before any model request, naming the variable to set.
      await expect(startAndUse({ ...good!, env: withoutKey })).rejects.toThrow(/the codex turn did not answer.*environment variable OPENAI_API_KEY, which is not set/);
    });
  });
});
