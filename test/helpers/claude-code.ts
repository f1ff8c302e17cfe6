import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { isRecord } from './steps.js';
import { REPO_ROOT, waitFor } from './process.js';

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
  /** The prompt: given with `-p`, or typed into an interactive session. */
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

/** The throwaway files of a run, and the environment and arguments every run shares. */
interface Prepared {
  env: Record<string, string>;
  /** `--mcp-config`, `--strict-mcp-config`, `--allowedTools`, `--debug-file`. */
  args: string[];
  configDir: string;
  debugFile: string;
}

/** The API key Claude Code is given (the fake accepts any). */
const API_KEY = 'sk-ant-test-key';

/**
 * The config dir, HOME and TMPDIR under `dir`, the settings and MCP config files, and the
 * environment, built from nothing but PATH (no ambient HOME, SHELL, proxies or certificates):
 * proxies stay unset and `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` stops the start-up traffic (a
 * DNS lookup and a `HEAD /api/hello` warm-up) that would otherwise leave 127.0.0.1; telemetry and
 * the auto-updater are off too.
 */
async function prepare(options: Omit<ClaudeCodeOptions, 'prompt'>): Promise<Prepared> {
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
    ANTHROPIC_API_KEY: API_KEY,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    ...options.env,
  };
  const args = ['--mcp-config', mcpConfig, '--strict-mcp-config', '--allowedTools', options.allowedTools.join(','), '--debug-file', debugFile];
  return { env, args, configDir, debugFile };
}

/** Runs `claude -p` headless (stream-json output) in the world {@link prepare} makes, with a deadline. */
export async function runClaudeCode(options: ClaudeCodeOptions): Promise<ClaudeCodeRun> {
  const { env, args: shared, debugFile } = await prepare(options);
  const args = ['-p', options.prompt, '--output-format', 'stream-json', '--verbose', '--no-session-persistence', ...shared];

  // Its own process group, so the deadline also ends the MCP servers it started.
  const child = spawn(CLAUDE, args, { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) killGroup(child.pid);
  }, options.timeoutMs ?? DEFAULT_CLAUDE_CODE_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode) => resolve(exitCode));
  }).finally(() => clearTimeout(timer));
  // Anything of its group still running after it exited would be an orphan: end it.
  if (child.pid !== undefined) killGroup(child.pid);

  const events = stdout
    .split('\n')
    .filter((line) => line.trim().length > 0)
    .map((line, index) => {
      const parsed = StreamEventSchema.safeParse(parseJsonOrUndefined(line));
      if (!parsed.success) throw new Error(`Claude Code output line ${index + 1} is not a stream-json event: ${line.slice(0, 200)}`);
      return parsed.data;
    });
  const last = events.findLast((event) => event.type === 'result');
  const debugLog = await readFile(debugFile, 'utf8').catch(() => '');
  return { code, timedOut, events, result: last === undefined ? undefined : ResultEventSchema.parse(last), stderr, debugLog };
}

/** Options of {@link runClaudeCodeInteractive}. */
export interface ClaudeCodeInteractiveOptions extends ClaudeCodeOptions {
  /** Holds once Claude Code can take the prompt (e.g. our server's tools were listed). */
  ready: () => boolean | Promise<boolean>;
  /** Holds once the session did what the test waits for; the session is then ended. */
  done: () => boolean | Promise<boolean>;
}

/** What an interactive session left behind. */
export interface ClaudeCodeInteractiveRun {
  /** Everything it drew on its terminal (escape sequences included). */
  screen: string;
  debugLog: string;
}

/**
 * Runs Claude Code as a person would, in a terminal (node-pty), because some of its behaviour is
 * only there: an interactive session declares the MCP tasks extension, a `-p` run does not. The
 * first-run dialogs are answered in advance in its `.claude.json` (onboarding done, the API key
 * approved, the working folder trusted). Once `ready` holds, the prompt is typed with Enter; once
 * `done` holds, or at the deadline, the session's process group is killed.
 */
export async function runClaudeCodeInteractive(options: ClaudeCodeInteractiveOptions): Promise<ClaudeCodeInteractiveRun> {
  const { env, args, configDir, debugFile } = await prepare(options);
  // Claude Code remembers an approved key by its last 20 characters.
  const state = {
    hasCompletedOnboarding: true,
    customApiKeyResponses: { approved: [API_KEY.slice(-20)], rejected: [] },
    projects: { [options.cwd]: { hasTrustDialogAccepted: true } },
  };
  await writeFile(join(configDir, '.claude.json'), JSON.stringify(state, null, 2));
  const { spawn: spawnPty } = await import('@lydell/node-pty');
  const terminal = spawnPty(CLAUDE, args, { name: 'xterm-256color', cols: 160, rows: 48, cwd: options.cwd, env: { ...env, TERM: 'xterm-256color' } });
  let screen = '';
  terminal.onData((data) => (screen += data));
  const exited = new Promise<void>((resolve) => terminal.onExit(() => resolve()));
  const timeoutMs = options.timeoutMs ?? DEFAULT_CLAUDE_CODE_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  try {
    await waitFor(options.ready, 'Claude Code to be ready for the prompt', timeoutMs);
    terminal.write(`${options.prompt}\r`);
    await waitFor(options.done, 'the interactive Claude Code session to finish', Math.max(0, deadline - Date.now()));
  } finally {
    // node-pty starts it as a session leader: its process group holds the MCP servers it started.
    killGroup(terminal.pid);
    await exited;
  }
  return { screen, debugLog: await readFile(debugFile, 'utf8').catch(() => '') };
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

/** The messages in a stdio recorder's log, in order (lines that are not JSON objects are left out; none before the log exists). */
export async function readStdioTee(log: string): Promise<TeedMessage[]> {
  // Until the client has started the server, there is no log yet.
  const text = await readFile(log, 'utf8').catch((error: unknown) => {
    if (isRecord(error) && error['code'] === 'ENOENT') return '';
    throw error;
  });
  const messages: TeedMessage[] = [];
  for (const raw of text.split('\n')) {
    if (raw.trim().length === 0) continue;
    const { dir, line } = TeeLineSchema.parse(JSON.parse(raw));
    const parsed = z.looseObject({}).safeParse(parseJsonOrUndefined(line));
    if (parsed.success) messages.push({ dir, message: parsed.data });
  }
  return messages;
}

/** SIGKILL to every process of group `pgid`; a group already gone is fine. */
function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (error) {
    if (!(isRecord(error) && error['code'] === 'ESRCH')) throw error;
  }
}

function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
