import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, stat } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionApprovals, type ApprovalDecision, type ApprovalPolicy, type ApprovalRequest, type Approver } from '../../src/agent/approvals.js';
import { TurnAbortedError } from '../../src/agent/errors.js';
import { ThreadProcessTable } from '../../src/agent/process-table.js';
import { execCommandTool, writeStdinTool } from '../../src/agent/tools/exec-command.js';
import { ToolError, type ToolContext, type TurnEnvironment } from '../../src/agent/tools/tool.js';
import { localConnector } from '../../src/environments/connectors.js';
import { ExecClient } from '../../src/exec/client.js';
import { ExecServer } from '../../src/exec/server.js';
import type { EnvPolicy, SandboxContext } from '../../src/protocol/exec.js';

const INHERIT_ALL: EnvPolicy = { inherit: 'all', ignoreDefaultExcludes: true, exclude: [], set: {}, includeOnly: [] };
const OUTPUT_SHAPE =
  /^Chunk ID: [0-9a-f]{6}\nWall time: \d+\.\d{4} seconds\n(?:Process exited with code (-?\d+)|Process running with session ID (\d+))\nOriginal token count: (\d+)\nOutput:\n([\s\S]*)$/;

interface TestEnvironment {
  id: string;
  cwd: string;
  server: ExecServer;
  client: ExecClient;
}

interface ParsedOutput {
  exitCode?: number;
  sessionId?: number;
  originalTokens: number;
  output: string;
}

/** Parses a tool result in Codex's shape; fails the test on any other shape. */
function parse(text: unknown): ParsedOutput {
  if (typeof text !== 'string') throw new Error(`expected text output, got ${JSON.stringify(text)}`);
  const match = OUTPUT_SHAPE.exec(text);
  if (match === null) throw new Error(`not an exec output: ${JSON.stringify(text)}`);
  const [, exit, session, tokens, output] = match;
  return {
    ...(exit === undefined ? {} : { exitCode: Number(exit) }),
    ...(session === undefined ? {} : { sessionId: Number(session) }),
    originalTokens: Number(tokens),
    output: output ?? '',
  };
}

/** An approver answering from a script and recording what it was asked. */
function scriptedApprover(...decisions: ApprovalDecision[]): Approver & { requests: ApprovalRequest[] } {
  const requests: ApprovalRequest[] = [];
  return {
    requests,
    request: (request) => {
      requests.push(request);
      return Promise.resolve(decisions.shift() ?? { decision: 'denied', reason: 'no scripted answer' });
    },
  };
}

async function startEnvironment(id: string): Promise<TestEnvironment> {
  const cwd = await realpath(await mkdtemp(join(tmpdir(), `cmx-exec-tool-${id}-`)));
  const env = { ...process.env, MARK: id };
  const server = new ExecServer({ env, host: { env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' } });
  const client = await ExecClient.connect(localConnector(server));
  return { id, cwd, server, client };
}

describe('exec_command and write_stdin tools', () => {
  const execCommand = execCommandTool({ multiEnvironment: true });
  const writeStdin = writeStdinTool();
  let a: TestEnvironment;
  let b: TestEnvironment;
  const tables: ThreadProcessTable[] = [];
  let callCounter = 0;

  beforeAll(async () => {
    a = await startEnvironment('a');
    b = await startEnvironment('b');
    await mkdir(join(a.cwd, 'sub'));
  });

  afterEach(async () => {
    await Promise.all(tables.splice(0).map((table) => table.terminateAll()));
  });

  afterAll(async () => {
    for (const environment of [a, b]) {
      await environment.client.close();
      await environment.server.close();
      await rm(environment.cwd, { recursive: true, force: true });
    }
  });

  function context(
    options: {
      policy?: ApprovalPolicy;
      approver?: Approver;
      sessionApprovals?: SessionApprovals;
      processes?: ThreadProcessTable;
      signal?: AbortSignal;
      maxOutputTokens?: number;
      sandbox?: SandboxContext | null;
      progress?: string[];
      allowLoginShell?: boolean;
    } = {},
  ): ToolContext {
    const environments: TurnEnvironment[] = [a, b].map((environment) => ({
      id: environment.id,
      cwd: environment.cwd,
      client: () => Promise.resolve(environment.client),
    }));
    const processes = options.processes ?? new ThreadProcessTable();
    tables.push(processes);
    return {
      threadId: 'thread-1',
      callId: `call-${++callCounter}`,
      environments,
      environment: (id) => {
        const found = id === undefined ? environments[0] : environments.find((environment) => environment.id === id);
        if (found === undefined) throw new ToolError(`unknown environment_id "${id}"; known: ${environments.map((e) => e.id).join(', ')}`);
        return found;
      },
      approvalPolicy: options.policy ?? 'never',
      approver: options.approver ?? scriptedApprover(),
      sessionApprovals: options.sessionApprovals ?? new SessionApprovals(),
      processes,
      commandEnvironment: () => ({ envPolicy: INHERIT_ALL, env: {} }),
      sandbox: () => options.sandbox ?? null,
      allowLoginShell: options.allowLoginShell ?? true,
      maxOutputTokens: options.maxOutputTokens ?? 10_000,
      progress: (message) => options.progress?.push(message),
      plan: () => undefined,
      signal: options.signal ?? new AbortController().signal,
    };
  }

  /** Calls write_stdin (writing `chars` once) until the collected output matches or the process ends. */
  async function pollUntil(ctx: ToolContext, sessionId: number, pattern: RegExp, chars = ''): Promise<string> {
    let seen = '';
    let toWrite = chars;
    for (let attempt = 0; attempt < 200; attempt++) {
      const result = parse(await writeStdin.run({ session_id: sessionId, chars: toWrite }, ctx));
      toWrite = '';
      seen += result.output;
      if (pattern.test(seen)) return seen;
      if (result.exitCode !== undefined) break;
    }
    throw new Error(`output never matched ${String(pattern)}: ${JSON.stringify(seen)}`);
  }

  describe('running commands', () => {
    it("returns a finished command's output in Codex's exact shape", async () => {
      const progress: string[] = [];
      const text = await execCommand.run({ cmd: 'echo hello' }, context({ progress }));
      expect(text).toMatch(/^Chunk ID: [0-9a-f]{6}\nWall time: \d+\.\d{4} seconds\nProcess exited with code 0\nOriginal token count: 2\nOutput:\nhello\n$/);
      expect(progress).toEqual(['command started on a: echo hello', 'command finished on a (exit 0)']);
    });

    it('reports a non-zero exit code', async () => {
      const result = parse(await execCommand.run({ cmd: 'echo oops; exit 7' }, context()));
      expect(result).toEqual({ exitCode: 7, originalTokens: 2, output: 'oops\n' });
    });

    it('includes stderr with stdout', async () => {
      const result = parse(await execCommand.run({ cmd: 'echo to-stdout; echo to-stderr >&2' }, context()));
      expect(result.exitCode).toBe(0);
      expect(result.output).toContain('to-stdout\n');
      expect(result.output).toContain('to-stderr\n');
    });

    it("runs in the environment's cwd, a workdir relative to it, or an absolute workdir", async () => {
      const tmp = await realpath(tmpdir());
      expect(parse(await execCommand.run({ cmd: 'pwd' }, context())).output).toBe(`${a.cwd}\n`);
      expect(parse(await execCommand.run({ cmd: 'pwd', workdir: 'sub' }, context())).output).toBe(`${join(a.cwd, 'sub')}\n`);
      expect(parse(await execCommand.run({ cmd: 'pwd', workdir: tmp }, context())).output).toBe(`${tmp}\n`);
    });

    it("uses the environment's shell without a login shell by default, and -lc when login is true", async () => {
      const defaultShell = a.client.info.shell?.path ?? '/bin/bash';
      expect(parse(await execCommand.run({ cmd: 'echo "$0"' }, context())).output).toBe(`${defaultShell}\n`);
      const probe = 'shopt -q login_shell && echo login-shell || echo plain-shell';
      expect(parse(await execCommand.run({ cmd: probe, shell: '/bin/bash' }, context())).output).toBe('plain-shell\n');
      expect(parse(await execCommand.run({ cmd: probe, shell: '/bin/bash', login: false }, context())).output).toBe('plain-shell\n');
      expect(parse(await execCommand.run({ cmd: probe, shell: '/bin/bash', login: true }, context())).output).toContain('login-shell\n');
    });

    it('truncates long output around a marker and reports the original token count', async () => {
      const expected = execFileSync('seq', ['1', '3000']).toString();
      const result = parse(await execCommand.run({ cmd: 'seq 1 3000', max_output_tokens: 20 }, context()));
      expect(result.exitCode).toBe(0);
      expect(result.originalTokens).toBe(Math.ceil(Buffer.byteLength(expected) / 4));
      expect(result.output).toMatch(/^1\n2\n3\n[\s\S]*…\d+ tokens truncated…\n[\s\S]*2999\n3000\n$/);
      expect(Buffer.byteLength(result.output.replace(/\n?…\d+ tokens truncated…\n/, ''))).toBeLessThanOrEqual(80);
    });

    it("caps max_output_tokens at the context's bound", async () => {
      const result = parse(await execCommand.run({ cmd: 'seq 1 3000', max_output_tokens: 1_000_000 }, context({ maxOutputTokens: 10 })));
      expect(result.output).toMatch(/…\d+ tokens truncated…/);
      expect(Buffer.byteLength(result.output.replace(/\n?…\d+ tokens truncated…\n/, ''))).toBeLessThanOrEqual(40);
    });

    it('returns a start failure to the model as output', async () => {
      expect(await execCommand.run({ cmd: 'true', workdir: 'no-such-dir' }, context())).toMatch(/^exec_command failed: .+/);
      expect(await execCommand.run({ cmd: 'true' }, context({ sandbox: { permissions: { fileSystem: 'read-only' } } }))).toMatch(/^exec_command failed: .*sandbox/);
    });

    it('rejects bad arguments with a ToolError naming the field', async () => {
      await expect(execCommand.run({}, context())).rejects.toThrow(ToolError);
      await expect(execCommand.run({}, context())).rejects.toThrow(/cmd/);
      await expect(execCommand.run({ cmd: 'true', yield_time_ms: 'soon' }, context())).rejects.toThrow(/yield_time_ms/);
      await expect(execCommand.run({ cmd: 'true', tty: 'yes' }, context())).rejects.toThrow(/tty/);
      await expect(writeStdin.run({ chars: 'x' }, context())).rejects.toThrow(/session_id/);
    });
  });

  describe('environments', () => {
    it('routes by environment_id, defaulting to the primary environment', async () => {
      expect(parse(await execCommand.run({ cmd: 'echo "mark=$MARK"; pwd' }, context())).output).toBe(`mark=a\n${a.cwd}\n`);
      expect(parse(await execCommand.run({ cmd: 'echo "mark=$MARK"; pwd', environment_id: 'b' }, context())).output).toBe(`mark=b\n${b.cwd}\n`);
    });

    it('fails with a ToolError for an unknown environment_id', async () => {
      await expect(execCommand.run({ cmd: 'true', environment_id: 'nowhere' }, context())).rejects.toThrow(ToolError);
      await expect(execCommand.run({ cmd: 'true', environment_id: 'nowhere' }, context())).rejects.toThrow(/nowhere/);
    });

    it('offers environment_id only with several environments, and never additional properties', () => {
      const single = execCommandTool({ multiEnvironment: false }).parameters;
      const multi = execCommand.parameters as { properties: Record<string, unknown>; required: string[]; additionalProperties: boolean };
      expect(Object.keys((single as { properties: Record<string, unknown> }).properties)).not.toContain('environment_id');
      expect(Object.keys(multi.properties).sort()).toEqual(
        ['cmd', 'environment_id', 'justification', 'login', 'max_output_tokens', 'prefix_rule', 'sandbox_permissions', 'shell', 'tty', 'workdir', 'yield_time_ms'].sort(),
      );
      expect(multi.required).toEqual(['cmd']);
      expect(multi.additionalProperties).toBe(false);
      expect(single.additionalProperties).toBe(false);
      expect(writeStdin.parameters).toMatchObject({ required: ['session_id'], additionalProperties: false });
      expect(Object.keys((writeStdin.parameters as { properties: Record<string, unknown> }).properties).sort()).toEqual([
        'chars',
        'max_output_tokens',
        'session_id',
        'yield_time_ms',
      ]);
    });
  });

  describe('sessions', () => {
    it('yields a session id for a running command, which write_stdin feeds (in a terminal) until it exits', async () => {
      const ctx = context();
      const started = parse(
        await execCommand.run({ cmd: 'stty -echo; read first; echo "first:$first"; read second; echo "second:$second"; exit 3', tty: true, yield_time_ms: 250 }, ctx),
      );
      expect(started.exitCode).toBeUndefined();
      expect(started.sessionId).toBe(1);
      expect(started.output).toBe('');

      expect(await pollUntil(ctx, 1, /first:one\r\n/, 'one\n')).toBe('first:one\r\n');
      const ended = parse(await writeStdin.run({ session_id: 1, chars: 'two\n', yield_time_ms: 30_000 }, ctx));
      expect(ended).toEqual({ exitCode: 3, originalTokens: 3, output: 'second:two\r\n' });
      await expect(writeStdin.run({ session_id: 1 }, ctx)).rejects.toThrow('unknown session_id 1; running sessions: none');
    });

    it('gives a command without a terminal no input, as Codex: it reads end-of-file at once, and write_stdin says the characters were not written', async () => {
      const ctx = context();
      const quick = parse(await execCommand.run({ cmd: 'if read line; then echo "got:$line"; else echo eof; fi' }, ctx));
      expect(quick).toEqual({ exitCode: 0, originalTokens: 1, output: 'eof\n' });

      const running = parse(await execCommand.run({ cmd: 'sleep 30', yield_time_ms: 250 }, ctx));
      expect(running.sessionId).toBe(1);
      const written = await writeStdin.run({ session_id: 1, chars: 'hello\n' }, ctx);
      expect(written).toMatch(/^Note: session 1 takes no input \(it was started without tty: true, or its stdin closed\); the characters were not written\.\nChunk ID: /);
    });

    it('names the running sessions when the session id is unknown', async () => {
      const ctx = context();
      expect(parse(await execCommand.run({ cmd: 'read x', tty: true, yield_time_ms: 250 }, ctx)).sessionId).toBe(1);
      expect(parse(await execCommand.run({ cmd: 'read x', tty: true, yield_time_ms: 250, environment_id: 'b' }, ctx)).sessionId).toBe(2);
      await expect(writeStdin.run({ session_id: 9 }, ctx)).rejects.toThrow(new ToolError('unknown session_id 9; running sessions: 1, 2'));
      const ended = parse(await writeStdin.run({ session_id: 2, chars: 'go\n', yield_time_ms: 30_000 }, ctx));
      expect(ended.exitCode).toBe(0);
      await expect(writeStdin.run({ session_id: 9 }, ctx)).rejects.toThrow('unknown session_id 9; running sessions: 1');
    });

    it('runs in a terminal with tty, keeping CRLF', async () => {
      const result = parse(await execCommand.run({ cmd: 'test -t 0 && test -t 1 && echo in-a-tty', tty: true }, context()));
      expect(result).toEqual({ exitCode: 0, originalTokens: 3, output: 'in-a-tty\r\n' });

      // A shell-driven exit: a program ending on ^D races node-pty's hang-up of the terminal (SIGHUP, 129).
      const ctx = context();
      const session = parse(await execCommand.run({ cmd: 'read first; echo "first:$first"; read second; echo "second:$second"', tty: true, yield_time_ms: 250 }, ctx));
      expect(session.sessionId).toBe(1);
      // The terminal echoes the line, then the shell prints its answer.
      expect(await pollUntil(ctx, 1, /first:ping\r\n/, 'ping\n')).toBe('ping\r\nfirst:ping\r\n');
      const ended = parse(await writeStdin.run({ session_id: 1, chars: 'pong\n', yield_time_ms: 30_000 }, ctx));
      expect(ended).toEqual({ exitCode: 0, originalTokens: 5, output: 'pong\r\nsecond:pong\r\n' });
    });

    it('evicts the oldest session when the table is full, and says so', async () => {
      const ctx = context({ processes: new ThreadProcessTable({ maxEntries: 2 }) });
      for (const expected of [1, 2]) expect(parse(await execCommand.run({ cmd: 'sleep 30', yield_time_ms: 250 }, ctx)).sessionId).toBe(expected);
      const third = await execCommand.run({ cmd: 'sleep 30', yield_time_ms: 250 }, ctx);
      expect(third).toMatch(/^Warning: too many running sessions; session 1 \(on a\) was terminated to make room\.\nChunk ID: /);
      expect(parse((third as string).replace(/^Warning: .*\n/, '')).sessionId).toBe(3);
      await expect(writeStdin.run({ session_id: 1 }, ctx)).rejects.toThrow('unknown session_id 1; running sessions: 2, 3');
    });
  });

  describe('approvals', () => {
    it('under untrusted asks for unsafe commands only', async () => {
      const approver = scriptedApprover({ decision: 'approved' });
      const ctx = context({ policy: 'untrusted', approver });
      expect(parse(await execCommand.run({ cmd: 'ls' }, ctx)).exitCode).toBe(0);
      expect(approver.requests).toEqual([]);

      const made = join(a.cwd, 'made-by-untrusted');
      expect(parse(await execCommand.run({ cmd: 'touch made-by-untrusted' }, ctx)).exitCode).toBe(0);
      expect(approver.requests).toEqual([
        {
          kind: 'exec',
          threadId: 'thread-1',
          callId: ctx.callId,
          environmentId: 'a',
          cwd: a.cwd,
          command: [a.client.info.shell?.path ?? '/bin/bash', '-c', 'touch made-by-untrusted'],
        },
      ]);
      await expect(stat(made)).resolves.toBeDefined();
    });

    it('remembers approved_for_session for the same environment and cwd only', async () => {
      const approver = scriptedApprover({ decision: 'approved_for_session' }, { decision: 'approved' }, { decision: 'approved' });
      const sessionApprovals = new SessionApprovals();
      const run = (args: Record<string, unknown>): Promise<unknown> => execCommand.run(args, context({ policy: 'untrusted', approver, sessionApprovals }));
      await run({ cmd: 'touch session-approved' });
      await run({ cmd: 'touch session-approved' });
      expect(approver.requests.map((r) => r.environmentId)).toEqual(['a']);
      await run({ cmd: 'touch session-approved', environment_id: 'b' });
      expect(approver.requests.map((r) => r.environmentId)).toEqual(['a', 'b']);
      await run({ cmd: 'touch session-approved', workdir: 'sub' });
      expect(approver.requests.map((r) => r.cwd)).toEqual([a.cwd, b.cwd, join(a.cwd, 'sub')]);
    });

    it('under on-request asks only for require_escalated, with the justification as the reason', async () => {
      const approver = scriptedApprover({ decision: 'approved' });
      const ctx = context({ policy: 'on-request', approver });
      expect(parse(await execCommand.run({ cmd: 'touch on-request-plain' }, ctx)).exitCode).toBe(0);
      expect(parse(await execCommand.run({ cmd: 'touch on-request-plain', sandbox_permissions: 'use_default' }, ctx)).exitCode).toBe(0);
      expect(approver.requests).toEqual([]);
      const result = parse(
        await execCommand.run(
          { cmd: 'touch on-request-escalated', sandbox_permissions: 'require_escalated', justification: 'needs to write outside the sandbox', prefix_rule: ['touch'] },
          ctx,
        ),
      );
      expect(result.exitCode).toBe(0);
      expect(approver.requests).toHaveLength(1);
      expect(approver.requests[0]).toMatchObject({ kind: 'exec', environmentId: 'a', reason: 'needs to write outside the sandbox' });
    });

    it('runs an approved escalation without the sandbox, and an unapproved one with it', async () => {
      // A request the exec-server cannot parse makes "exec_command failed", so it shows the sandbox was requested.
      const sandbox = { permissions: { fileSystem: 'read-only' } };
      const approver = scriptedApprover({ decision: 'approved' });
      const escalated = { cmd: 'echo escalated', sandbox_permissions: 'require_escalated', justification: 'needs the network' };
      expect(parse(await execCommand.run(escalated, context({ policy: 'on-request', approver, sandbox }))).output).toBe('escalated\n');
      expect(await execCommand.run(escalated, context({ policy: 'never', sandbox }))).toMatch(/^exec_command failed: .*sandbox/);
    });

    it('never asks under never and on-failure', async () => {
      const approver = scriptedApprover();
      for (const policy of ['never', 'on-failure'] as const) {
        expect(parse(await execCommand.run({ cmd: 'touch no-ask', sandbox_permissions: 'require_escalated' }, context({ policy, approver }))).exitCode).toBe(0);
      }
      expect(approver.requests).toEqual([]);
    });

    it('returns the denial to the model without running the command', async () => {
      const approver = scriptedApprover({ decision: 'denied', reason: 'not today' });
      const text = await execCommand.run({ cmd: 'touch denied-file' }, context({ policy: 'untrusted', approver }));
      expect(text).toBe('exec_command was rejected by the user: not today');
      await expect(stat(join(a.cwd, 'denied-file'))).rejects.toThrow(/ENOENT/);
    });

    it('throws TurnAbortedError when the user aborts', async () => {
      const approver = scriptedApprover({ decision: 'abort', reason: 'stop everything' });
      const run = execCommand.run({ cmd: 'touch aborted-file' }, context({ policy: 'untrusted', approver }));
      await expect(run).rejects.toThrow(TurnAbortedError);
      await expect(stat(join(a.cwd, 'aborted-file'))).rejects.toThrow(/ENOENT/);
    });
  });

  describe('cancellation', () => {
    it('terminates the running process when the turn is aborted, and rethrows the reason', async () => {
      const fifo = join(a.cwd, 'alive.fifo');
      execFileSync('mkfifo', [fifo]);
      // The command holds the fifo's write end open; the reader sees EOF only once it is gone.
      const reader = createReadStream(fifo);
      const ready = new Promise<void>((resolve) => reader.once('data', () => resolve()));
      const gone = new Promise<void>((resolve, reject) => {
        reader.once('end', () => resolve());
        reader.once('error', reject);
      });
      reader.resume();

      const controller = new AbortController();
      const reason = new Error('turn interrupted');
      const run = execCommand.run({ cmd: `exec 3>${JSON.stringify(fifo)}; echo ready >&3; sleep 30`, yield_time_ms: 30_000 }, context({ signal: controller.signal }));
      await ready;
      controller.abort(reason);
      await expect(run).rejects.toBe(reason);
      await gone;
    });
  });
});
