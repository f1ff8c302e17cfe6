import { posix, win32 } from 'node:path';
import { z } from 'zod';
import type { ExecClient } from '../../exec/client.js';
import { describeReconnect, type RemoteProcess } from '../../exec/remote-process.js';
import { sandboxNetworkEnabled } from '../../exec/sandbox-policy.js';
import type { SandboxContext } from '../../protocol/exec.js';
import { abortReason } from '../../util/abort.js';
import { errorMessage, LocalError, LocalErrorCode } from '../../util/errors.js';
import { askUnlessCovered, isKnownSafeCommand, type ApprovalRequest } from '../approvals.js';
import { formatExecOutput, OutputCapture } from '../output.js';
import { parseToolArgs } from './args.js';
import { ToolError, type EvictedProcess, type FunctionTool, type ToolContext, type TurnEnvironment } from './tool.js';

/** How long `exec_command` waits for the command to finish before yielding a session id. */
export const DEFAULT_EXEC_YIELD_TIME_MS = 10_000;
/** How long `write_stdin` collects output before returning. */
export const DEFAULT_WRITE_STDIN_YIELD_TIME_MS = 250;
/** Bounds of `yield_time_ms` for both tools. */
export const MIN_YIELD_TIME_MS = 250;
export const MAX_YIELD_TIME_MS = 30_000;
/** The shell used when the call names none and the environment reports none. */
export const FALLBACK_SHELL = '/bin/bash';

/** Characters of the command shown in progress lines. */
const PROGRESS_COMMAND_CHARS = 80;

/** Models sometimes send `null` for an absent optional argument; treat it as absent. */
const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((value) => value ?? undefined);

const ExecCommandArgs = z.object({
  cmd: z.string().refine((cmd) => cmd.trim().length > 0, 'must not be empty'),
  environment_id: optional(z.string()),
  workdir: optional(z.string()),
  yield_time_ms: optional(z.number()),
  max_output_tokens: optional(z.number()),
  tty: optional(z.boolean()),
  login: optional(z.boolean()),
  shell: optional(z.string()),
  sandbox_permissions: optional(z.enum(['use_default', 'require_escalated'])),
  justification: optional(z.string()),
  prefix_rule: optional(z.array(z.string())),
});

const WriteStdinArgs = z.object({
  // A numeric string is accepted too: models occasionally quote the id.
  session_id: z.union([z.number().int(), z.string().regex(/^\d+$/).transform(Number)], { error: 'expected the integer session id that exec_command returned' }),
  chars: optional(z.string()),
  yield_time_ms: optional(z.number()),
  max_output_tokens: optional(z.number()),
});

const NUMBER_SCHEMA = { type: 'number' } as const;

/** Options of {@link execCommandTool}. */
export interface ExecCommandToolOptions {
  /** Offer `environment_id` (the turn has more than one environment). */
  multiEnvironment: boolean;
}

/**
 * `exec_command`: runs a shell command in an environment, returns its output once it finishes
 * or, after `yield_time_ms`, a session id that `write_stdin` continues with.
 */
export function execCommandTool(options: ExecCommandToolOptions): FunctionTool {
  return {
    kind: 'function',
    name: 'exec_command',
    description: options.multiEnvironment
      ? 'Runs a shell command in one of the environments (environment_id; default the primary one) and returns its output. A command still running after yield_time_ms keeps running and returns a session_id for write_stdin.'
      : 'Runs a shell command and returns its output. A command still running after yield_time_ms keeps running and returns a session_id for write_stdin.',
    parameters: {
      type: 'object',
      properties: {
        cmd: { type: 'string', description: 'The shell command to run.' },
        ...(options.multiEnvironment ? { environment_id: { type: 'string', description: 'Id of the environment to run in; defaults to the primary environment.' } } : {}),
        workdir: { type: 'string', description: "Working directory, absolute or relative to the environment's cwd; defaults to the cwd." },
        yield_time_ms: {
          ...NUMBER_SCHEMA,
          description: `How long to wait for the command to finish before returning (${MIN_YIELD_TIME_MS}..${MAX_YIELD_TIME_MS}; default ${DEFAULT_EXEC_YIELD_TIME_MS}).`,
        },
        max_output_tokens: { ...NUMBER_SCHEMA, description: 'Bound on the output returned; the middle of longer output is elided.' },
        tty: { type: 'boolean', description: 'Run in a terminal, for programs that read input (write_stdin feeds them); default false: no input, stdin is at end-of-file.' },
        login: { type: 'boolean', description: 'Run the shell as a login shell (-lc); default false. Refused unless the server allows login shells.' },
        shell: { type: 'string', description: "Shell binary to run the command with; defaults to the environment's shell." },
        sandbox_permissions: {
          type: 'string',
          enum: ['use_default', 'require_escalated'],
          description: 'require_escalated asks the user to run this command outside the sandbox.',
        },
        justification: { type: 'string', description: 'Why escalation is needed; shown to the user when asking.' },
        prefix_rule: { type: 'array', items: { type: 'string' }, description: 'A command prefix the user may approve for later calls.' },
      },
      required: ['cmd'],
      additionalProperties: false,
    },
    run: (args, ctx) => runExecCommand(args, ctx),
  };
}

/** `write_stdin`: writes to a running `exec_command` session and returns its new output. */
export function writeStdinTool(): FunctionTool {
  return {
    kind: 'function',
    name: 'write_stdin',
    description:
      'Writes characters to the terminal of a command started by exec_command with tty: true that is still running, then returns the output produced since the last call. Empty chars just polls for output (of any running command).',
    parameters: {
      type: 'object',
      properties: {
        session_id: { ...NUMBER_SCHEMA, description: 'The session id exec_command returned.' },
        chars: { type: 'string', description: 'Characters to write (include "\\n" to send a line); default none.' },
        yield_time_ms: {
          ...NUMBER_SCHEMA,
          description: `How long to collect output before returning (${MIN_YIELD_TIME_MS}..${MAX_YIELD_TIME_MS}; default ${DEFAULT_WRITE_STDIN_YIELD_TIME_MS}).`,
        },
        max_output_tokens: { ...NUMBER_SCHEMA, description: 'Bound on the output returned; the middle of longer output is elided.' },
      },
      required: ['session_id'],
      additionalProperties: false,
    },
    run: (args, ctx) => runWriteStdin(args, ctx),
  };
}

async function runExecCommand(rawArgs: unknown, ctx: ToolContext): Promise<string> {
  const args = parseToolArgs(ExecCommandArgs, rawArgs, 'exec_command');
  const started = performance.now();
  const startedAt = Date.now();
  const environment = ctx.environment(args.environment_id);
  const client = await connect(environment, ctx);
  const workdir = resolveWorkdir(environment.cwd, args.workdir);
  // A login shell runs profile files that can rewrite PATH behind the user's back: opt-in only.
  if (args.login === true && !ctx.allowLoginShell) {
    return 'exec_command failed: login shells are disabled on this server (allow_login_shell = false); run the command without login: true';
  }
  const shell = args.shell ?? nonEmpty(client.info.shell?.path) ?? FALLBACK_SHELL;
  const argv = [shell, args.login === true ? '-lc' : '-c', args.cmd];
  const escalate = args.sandbox_permissions === 'require_escalated';
  const request: ApprovalRequest = { kind: 'exec', threadId: ctx.threadId, callId: ctx.callId, environmentId: environment.id, cwd: workdir, command: argv };
  if (args.justification !== undefined) request.reason = args.justification;

  // Reaching the command after asking means the user approved it.
  const approved = mustAsk(ctx, args.cmd, escalate);
  if (approved) {
    const denial = await askUnlessCovered(ctx, request);
    if (denial !== undefined) return `exec_command was rejected by the user: ${denial}`;
  }

  const tty = args.tty === true;
  // An escalation the user approved runs outside the sandbox, as in Codex.
  const sandbox = escalate && approved ? null : ctx.sandbox(environment.id, workdir);
  const run = (confinement: SandboxContext | null): Promise<CommandRun> =>
    runCommand({
      ctx,
      client,
      environmentId: environment.id,
      argv,
      cmd: args.cmd,
      workdir,
      tty,
      sandbox: confinement,
      maxOutputTokens: args.max_output_tokens,
      yieldTimeMs: args.yield_time_ms,
      started,
      startedAt,
    });
  const first = await run(sandbox);
  if (first.kind !== 'finished' || !first.sandboxDenied || sandbox === null || !offersRerun(ctx)) return first.text;

  // The sandbox stopped it: only the user can let it run again outside (on-failure / on-request).
  const rerun: ApprovalRequest = {
    ...request,
    reason: `the sandbox denied it on ${environment.id}; run it again outside the sandbox?${args.justification === undefined ? '' : ` (${args.justification})`}`,
  };
  const denial = await askUnlessCovered(ctx, rerun);
  if (denial !== undefined) return `${first.text}\nThe sandbox denied this command and the user declined to run it outside the sandbox: ${denial}`;
  ctx.progress(`re-running outside the sandbox on ${environment.id} (approved)`);
  const second = await run(null);
  return `The sandbox denied the first attempt; the user approved running it outside the sandbox.\n${second.text}`;
}

/** The outcome of one start of a command. */
type CommandRun = { kind: 'finished'; text: string; sandboxDenied: boolean } | { kind: 'other'; text: string };

interface CommandSpec {
  ctx: ToolContext;
  client: ExecClient;
  environmentId: string;
  argv: string[];
  cmd: string;
  workdir: string;
  tty: boolean;
  sandbox: SandboxContext | null;
  maxOutputTokens: number | undefined;
  yieldTimeMs: number | undefined;
  started: number;
  startedAt: number;
}

/** Starts the command and collects its output until it finishes or yields a session id. */
async function runCommand(spec: CommandSpec): Promise<CommandRun> {
  const { ctx, client, environmentId, sandbox } = spec;
  const { envPolicy, env: baseEnv } = ctx.commandEnvironment(environmentId);
  // As Codex tells confined commands that the network is off, so tools can skip it quickly.
  const env = sandbox !== null && !sandboxNetworkEnabled(sandbox) ? { ...baseEnv, CODEX_SANDBOX_NETWORK_DISABLED: '1' } : baseEnv;
  throwIfAborted(ctx.signal);
  let proc: RemoteProcess;
  try {
    // No signal here: an aborted start could leave a process we hold no handle to.
    // As Codex: without a terminal the command gets no stdin (it reads end-of-file at once), so a
    // command that asks for input fails fast instead of waiting out the yield time; interactive
    // programs run with tty: true, which write_stdin feeds.
    proc = await client.startProcess({ argv: spec.argv, cwd: spec.workdir, env, envPolicy, tty: spec.tty, pipeStdin: false, sandbox });
  } catch (error) {
    throwIfAborted(ctx.signal);
    // The model can adapt (another cwd, no sandbox request), so this is output, not a failure.
    return { kind: 'other', text: `exec_command failed: ${errorMessage(error)}` };
  }
  ctx.progress(`command started on ${environmentId}: ${commandPreview(spec.cmd)}`);

  const maxTokens = outputTokens(spec.maxOutputTokens, ctx);
  const capture = new OutputCapture(maxTokens);
  let outcome: Collected;
  try {
    outcome = await collect(proc, capture, yieldTime(spec.yieldTimeMs, DEFAULT_EXEC_YIELD_TIME_MS), ctx.signal);
  } catch (error) {
    if (ctx.signal.aborted) {
      await proc.terminate().catch(() => undefined);
      throw abortReason(ctx.signal);
    }
    throw error;
  }
  const chunkId = newChunkId();
  const wallTimeMs = performance.now() - spec.started;
  if (outcome.kind === 'closed') {
    ctx.progress(`command finished on ${environmentId} (exit ${proc.exitCode ?? 'unknown'})`);
    const text = formatExecOutput({ chunkId, wallTimeMs, exitCode: proc.exitCode, output: capture, maxTokens });
    return { kind: 'finished', text, sandboxDenied: proc.sandboxDenied };
  }
  if (outcome.kind === 'lost') {
    ctx.progress(`command lost on ${environmentId}: ${outcome.error.message}`);
    return { kind: 'other', text: formatExecOutput({ chunkId, wallTimeMs, processState: lostState(environmentId, undefined, outcome.error), output: capture, maxTokens }) };
  }
  const { sessionId, evicted } = ctx.processes.register({ environmentId, process: proc, startedAt: spec.startedAt });
  const text = formatExecOutput({ chunkId, wallTimeMs, sessionId, processState: reconnectingState(environmentId, sessionId, proc), output: capture, maxTokens });
  return { kind: 'other', text: evicted === undefined ? text : `${evictionNotice(evicted)}\n${text}` };
}

/** Policies under which a command the sandbox denied may be re-run outside it, after asking. */
function offersRerun(ctx: ToolContext): boolean {
  return ctx.approvalPolicy === 'on-failure' || ctx.approvalPolicy === 'on-request';
}

async function runWriteStdin(rawArgs: unknown, ctx: ToolContext): Promise<string> {
  const args = parseToolArgs(WriteStdinArgs, rawArgs, 'write_stdin');
  const started = performance.now();
  const sessionId = args.session_id;
  const entry = ctx.processes.get(sessionId);
  if (entry === undefined) {
    const running = ctx.processes.sessionIds();
    throw new ToolError(`unknown session_id ${sessionId}; running sessions: ${running.length === 0 ? 'none' : running.join(', ')}`);
  }
  const proc = entry.process;
  const notes: string[] = [];
  const chars = args.chars ?? '';
  const reconnecting = proc.reconnecting;
  if (chars.length > 0 && reconnecting !== undefined) {
    // A write now would wait out the reconnect and could land long after this call answered.
    notes.push(`Note: environment ${entry.environmentId} is ${describeReconnect(reconnecting)}; the characters were not written, send them again once it is back.`);
  } else if (chars.length > 0) {
    let status: Awaited<ReturnType<RemoteProcess['write']>>;
    try {
      status = await proc.write(chars);
    } catch (error) {
      throwIfAborted(ctx.signal);
      throw new ToolError(`write_stdin to session ${sessionId} failed: ${errorMessage(error)}`);
    }
    switch (status) {
      case 'accepted':
        break;
      case 'unknownProcess':
        ctx.processes.remove(sessionId);
        throw new ToolError(`session ${sessionId} no longer exists on ${entry.environmentId}`);
      case 'starting':
        throw new ToolError(`session ${sessionId} is still starting; try again`);
      case 'stdinClosed':
        // Still report what the process printed and whether it exited.
        notes.push(`Note: session ${sessionId} takes no input (it was started without tty: true, or its stdin closed); the characters were not written.`);
        break;
    }
  }

  const maxTokens = outputTokens(args.max_output_tokens, ctx);
  const capture = new OutputCapture(maxTokens);
  // Throws only the abort reason: an interrupted turn leaves the session running.
  const outcome = await collect(proc, capture, yieldTime(args.yield_time_ms, DEFAULT_WRITE_STDIN_YIELD_TIME_MS), ctx.signal);
  const chunkId = newChunkId();
  const wallTimeMs = performance.now() - started;
  let text: string;
  switch (outcome.kind) {
    case 'closed':
      ctx.processes.remove(sessionId);
      ctx.progress(`command finished on ${entry.environmentId} (exit ${proc.exitCode ?? 'unknown'})`);
      text = formatExecOutput({ chunkId, wallTimeMs, exitCode: proc.exitCode, output: capture, maxTokens });
      break;
    case 'lost':
      ctx.processes.remove(sessionId);
      ctx.progress(`command lost on ${entry.environmentId}: ${outcome.error.message}`);
      text = formatExecOutput({ chunkId, wallTimeMs, processState: lostState(entry.environmentId, sessionId, outcome.error), output: capture, maxTokens });
      break;
    case 'running':
      text = formatExecOutput({ chunkId, wallTimeMs, sessionId, processState: reconnectingState(entry.environmentId, sessionId, proc), output: capture, maxTokens });
      break;
  }
  return [...notes, text].join('\n');
}

/**
 * How a collection ended: the process closed; `yieldMs` passed with it not known to have ended
 * (running, or its environment is reconnecting); or its connection was lost for good.
 */
type Collected = { kind: 'closed' } | { kind: 'running' } | { kind: 'lost'; error: Error };

/**
 * Moves the process's events into `capture` until it closes, is lost, or `yieldMs` passes.
 * @throws the abort reason on abort.
 */
async function collect(proc: RemoteProcess, capture: OutputCapture, yieldMs: number, signal: AbortSignal): Promise<Collected> {
  const deadline = performance.now() + yieldMs;
  for (;;) {
    for (const event of proc.drain()) {
      switch (event.kind) {
        case 'output':
          capture.push(event.data);
          break;
        case 'exited':
          break;
        case 'closed':
          return { kind: 'closed' };
        case 'failed':
          return { kind: 'lost', error: event.error };
      }
    }
    // Finished with nothing queued: its `closed` was consumed earlier; never spin on it.
    if (proc.finished) return { kind: 'closed' };
    const remaining = deadline - performance.now();
    if (remaining <= 0) return { kind: 'running' };
    await proc.waitForEvents(remaining, signal);
  }
}

/**
 * The process line while the process's environment is reconnecting: "running" would be a guess,
 * since nothing is known of the process until the session is back; undefined when connected.
 */
function reconnectingState(environmentId: string, sessionId: number, proc: RemoteProcess): string | undefined {
  const reconnecting = proc.reconnecting;
  if (reconnecting === undefined) return undefined;
  return `Process state unknown with session ID ${sessionId}: environment ${environmentId} is ${describeReconnect(reconnecting)}. Its output resumes if the session is resumed; poll again with write_stdin.`;
}

/**
 * The process line once no more events can come: its connection was lost for good (the
 * environment is disconnected), or its missed events could not be replayed.
 */
function lostState(environmentId: string, sessionId: number | undefined, error: Error): string {
  const session = sessionId === undefined ? '' : ` (session ID ${sessionId} is closed)`;
  const disconnected = error instanceof LocalError && error.code === LocalErrorCode.ConnectionClosed;
  const reason = disconnected ? `environment ${environmentId} is disconnected: ${error.message}` : error.message;
  return `Process lost${session}: ${reason}. The command may still be running there or may have ended; its further output cannot be read.`;
}

function mustAsk(ctx: ToolContext, cmd: string, escalate: boolean): boolean {
  switch (ctx.approvalPolicy) {
    case 'never':
    case 'on-failure':
      return false;
    case 'untrusted':
      return !isKnownSafeCommand(cmd);
    case 'on-request':
      return escalate;
  }
}

async function connect(environment: TurnEnvironment, ctx: ToolContext): Promise<ExecClient> {
  try {
    return await environment.client(ctx.signal);
  } catch (error) {
    throwIfAborted(ctx.signal);
    throw new ToolError(`environment ${environment.id} is unavailable: ${errorMessage(error)}`);
  }
}

function evictionNotice(evicted: EvictedProcess): string {
  return evicted.wasRunning
    ? `Warning: too many running sessions; session ${evicted.sessionId} (on ${evicted.environmentId}) was terminated to make room.`
    : `Warning: too many sessions; the unread output of finished session ${evicted.sessionId} (on ${evicted.environmentId}) was dropped to make room.`;
}

/** `workdir` relative to the environment's cwd, in that host's path flavour. */
function resolveWorkdir(cwd: string, workdir: string | undefined): string {
  if (workdir === undefined || workdir.length === 0) return cwd;
  const path = /^[A-Za-z]:[\\/]|^\\\\/.test(cwd) ? win32 : posix;
  return path.resolve(cwd, workdir);
}

function yieldTime(requested: number | undefined, fallback: number): number {
  const value = requested === undefined || !Number.isFinite(requested) ? fallback : requested;
  return Math.min(MAX_YIELD_TIME_MS, Math.max(MIN_YIELD_TIME_MS, value));
}

function outputTokens(requested: number | undefined, ctx: ToolContext): number {
  if (requested === undefined || !Number.isFinite(requested)) return ctx.maxOutputTokens;
  return Math.min(ctx.maxOutputTokens, Math.max(0, Math.floor(requested)));
}

function commandPreview(cmd: string): string {
  const flat = cmd.replace(/\s+/g, ' ').trim();
  const chars = [...flat];
  return chars.length <= PROGRESS_COMMAND_CHARS ? flat : `${chars.slice(0, PROGRESS_COMMAND_CHARS).join('')}…`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.length === 0 ? undefined : value;
}

/**
 * Six hex digits naming one output chunk for the model. Nothing relies on it being unpredictable,
 * and a call to the crypto binding for it cost most of a percent of the main thread.
 */
function newChunkId(): string {
  return Math.floor(Math.random() * 0x1000000)
    .toString(16)
    .padStart(6, '0');
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortReason(signal);
}
