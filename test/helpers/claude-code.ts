import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { REPO_ROOT } from './process.js';

/** The pinned real Claude Code binary. */
export const CLAUDE = join(REPO_ROOT, 'node_modules/.bin/claude');
/** The stdio recorder that sits between Claude Code and a server it starts (see tools/stdio-tee.js). */
export const STDIO_TEE = join(REPO_ROOT, 'tools/stdio-tee.js');

/** How long one Claude Code run may take before it is killed. */
export const DEFAULT_CLAUDE_CODE_TIMEOUT_MS = 120_000;

/** A stdio MCP server entry of Claude Code's `--mcp-config` file. */
export interface ClaudeStdioServer {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/** Options of {@link runClaudeCode}. */
export interface ClaudeCodeOptions {
  /** The prompt given with `-p`. */
  prompt: string;
  /** A folder of the test's own: Claude Code's config dir (`config/`), HOME (`home/`), TMPDIR (`tmp/`), the MCP config and its debug log go here. */
  dir: string;
  /** The working directory of the run. */
  cwd: string;
  /** The fake Messages API (`ANTHROPIC_BASE_URL`, without `/v1`). */
  modelUrl: string;
  /** The MCP servers, by name; Claude Code loads these and no others (`--strict-mcp-config`). */
  mcpServers: Record<string, ClaudeStdioServer>;
  /** Tools allowed without asking (`--allowedTools`), e.g. `mcp__multienv__codex`. */
  allowedTools: string[];
  /** User settings, written to `<config dir>/settings.json` (e.g. `hooks`). @default none */
  settings?: Record<string, unknown>;
  /** Variables added to Claude Code's environment (e.g. `MCP_PROTOCOL_NEGOTIATION`). @default none */
  env?: Record<string, string>;
  /** The run is killed (its whole process group) after this long. @default {@link DEFAULT_CLAUDE_CODE_TIMEOUT_MS} */
  timeoutMs?: number;
}

/** One line of `--output-format stream-json`: every line has a `type`. */
const StreamEventSchema = z.looseObject({ type: z.string() });

/** The last line of a `-p` run: how it ended. */
const ResultEventSchema = z.looseObject({
  type: z.literal('result'),
  subtype: z.string(),
  is_error: z.boolean(),
  result: z.string().optional(),
  num_turns: z.number().optional(),
});

/** What one Claude Code run did. */
export interface ClaudeCodeRun {
  /** Exit code; `null` when it was killed. */
  code: number | null;
  /** True when the deadline killed it. */
  timedOut: boolean;
  /** Every stream-json event, in order. */
  events: z.infer<typeof StreamEventSchema>[];
  /** The final `result` event, when there was one. */
  result: z.infer<typeof ResultEventSchema> | undefined;
  stderr: string;
  /** Claude Code's debug log (`--debug-file`), for diagnosing a failed run. */
  debugLog: string;
}

/**
 * Runs `claude -p` headless: stream-json output, the given MCP servers only, a throwaway config
 * dir, HOME and TMPDIR under `dir`, the fake model, and a deadline. The environment is built from
 * nothing but PATH (no ambient HOME, SHELL, proxies or certificates): proxies stay unset and
 * `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` stops the start-up traffic (a DNS lookup and a
 * `HEAD /api/hello` warm-up) that would otherwise leave 127.0.0.1; telemetry and the auto-updater
 * are off too.
 */
export async function runClaudeCode(options: ClaudeCodeOptions): Promise<ClaudeCodeRun> {
  const configDir = join(options.dir, 'config');
  const home = join(options.dir, 'home');
  const tmp = join(options.dir, 'tmp');
  for (const folder of [configDir, home, tmp]) await mkdir(folder, { recursive: true });
  if (options.settings !== undefined) await writeFile(join(configDir, 'settings.json'), JSON.stringify(options.settings, null, 2));
  const mcpConfig = join(options.dir, 'mcp.json');
  const servers = Object.fromEntries(Object.entries(options.mcpServers).map(([name, server]) => [name, { type: 'stdio', ...server }]));
  await writeFile(mcpConfig, JSON.stringify({ mcpServers: servers }, null, 2));
  const debugFile = join(options.dir, 'claude-debug.log');

  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    TMPDIR: tmp,
    SHELL: '/bin/sh',
    CLAUDE_CONFIG_DIR: configDir,
    ANTHROPIC_BASE_URL: options.modelUrl,
    ANTHROPIC_API_KEY: 'sk-ant-test-key',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    ...options.env,
  };
  const args = [
    '-p',
    options.prompt,
    '--output-format',
    'stream-json',
    '--verbose',
    '--mcp-config',
    mcpConfig,
    '--strict-mcp-config',
    '--allowedTools',
    options.allowedTools.join(','),
    '--no-session-persistence',
    '--debug-file',
    debugFile,
  ];

  // Its own process group, so the deadline also ends the MCP servers it started.
  const child = spawn(CLAUDE, args, { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  }, options.timeoutMs ?? DEFAULT_CLAUDE_CODE_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode) => resolve(exitCode));
  }).finally(() => clearTimeout(timer));

  const events = stdout
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line, index) => {
      const parsed = StreamEventSchema.safeParse(JSON.parse(line));
      if (!parsed.success) throw new Error(`Claude Code output line ${index + 1} is not a stream-json event: ${line.slice(0, 200)}`);
      return parsed.data;
    });
  const last = events.findLast((event) => event.type === 'result');
  const debugLog = await readFile(debugFile, 'utf8').catch(() => '');
  return { code, timedOut, events, result: last === undefined ? undefined : ResultEventSchema.parse(last), stderr, debugLog };
}

/** A stdio server entry that runs `command args` behind the stdio recorder, which appends each line to `log`. */
export function teedServer(log: string, server: ClaudeStdioServer): ClaudeStdioServer {
  return { command: process.execPath, args: [STDIO_TEE, log, server.command, ...server.args], env: server.env };
}

/** One JSON-RPC message the stdio recorder saw: `in` from the client, `out` from the server. */
export interface TeedMessage {
  dir: 'in' | 'out';
  message: Record<string, unknown>;
}

const TeeLineSchema = z.object({ dir: z.enum(['in', 'out']), line: z.string() });

/** The messages in a stdio recorder's log, in order (lines that are not JSON objects are left out). */
export async function readStdioTee(log: string): Promise<TeedMessage[]> {
  const text = await readFile(log, 'utf8');
  const messages: TeedMessage[] = [];
  for (const raw of text.split('\n')) {
    if (raw.trim().length === 0) continue;
    const { dir, line } = TeeLineSchema.parse(JSON.parse(raw));
    const parsed = z.looseObject({}).safeParse(parseJsonOrUndefined(line));
    if (parsed.success) messages.push({ dir, message: parsed.data });
  }
  return messages;
}

function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
