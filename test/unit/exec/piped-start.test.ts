import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ioError } from '../../../src/exec/io-errors.js';
import { processStarter, startOnAddon, startPiped, type PipedEvents, type PipedSpec, type StarterOptions } from '../../../src/exec/piped-start.js';

/** What a finished child reported. */
interface Outcome {
  pid: number;
  stdout: string;
  stderr: string;
  exitCode: number;
  /** Milliseconds from exit to close. */
  closeAfterExitMs: number;
}

function spec(script: string, overrides: Partial<PipedSpec> = {}): PipedSpec {
  return { file: '/bin/sh', argv: ['sh', '-c', script], cwd: tmpdir(), env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, pipeStdin: false, ...overrides };
}

async function run(piped: PipedSpec, options: StarterOptions, stdin?: string): Promise<Outcome> {
  let exitCode: number | undefined;
  let exitedAt = 0;
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const child = await startPiped(
    piped,
    {
      onExit: (code) => {
        exitCode = code;
        exitedAt = Date.now();
      },
      onClose: resolveClosed,
    },
    options,
  );
  let stdout = '';
  let stderr = '';
  child.stdout.onData((data) => (stdout += data.toString()));
  child.stderr.onData((data) => (stderr += data.toString()));
  if (stdin !== undefined) child.stdin?.end(stdin);
  await closed;
  if (exitCode === undefined) throw new Error('closed before exit');
  return { pid: child.pid, stdout, stderr, exitCode, closeAfterExitMs: Date.now() - exitedAt };
}

const ignored: PipedEvents = { onExit: () => undefined, onClose: () => undefined };

it('uses the native posix_spawn starter on Linux (npm install builds it), unless told not to', () => {
  if (process.platform === 'linux')
    expect(processStarter()).toEqual({ kind: 'posix_spawn', path: expect.stringMatching(/\/build\/Release\/codex_multienv_spawn\.node$/) as unknown });
  else expect(processStarter().kind).toBe('child_process');
  expect(processStarter({ native: false })).toEqual({ kind: 'child_process', reason: 'turned off (CODEX_MULTIENV_NATIVE_SPAWN=0)' });
});

// Both starters must behave alike: the native one is the default, child_process the fallback.
describe.each([
  ['the native starter', { native: true }],
  ['child_process', { native: false }],
])('starting piped commands with %s', (_name, options: StarterOptions) => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'piped-start-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the command its argv, env and cwd, and reports output and the exit code', async () => {
    const script = 'printf "%s|%s|%s|%s" "$0" "$1" "$GREETING" "$(pwd)"; echo oops >&2; exit 7';
    const outcome = await run(spec(script, { argv: ['sh', '-c', script, 'zero', 'one'], cwd: dir, env: { GREETING: 'hi there', PATH: '/usr/bin:/bin' } }), options);
    expect(outcome).toMatchObject({ stdout: `zero|one|hi there|${dir}`, stderr: 'oops\n', exitCode: 7 });
  });

  it('runs argv[0] as arg0 when given', async () => {
    const outcome = await run({ ...spec(''), file: '/bin/sh', argv: ['sh', '-c', 'echo "$0"'], arg0: 'renamed' }, options);
    expect(outcome.stdout).toBe('renamed\n');
  });

  it('starts the child in its own session with default signal handling and nothing blocked', async () => {
    // SigIgn/SigBlk are masks of ignored and blocked signals: Node.js ignores SIGPIPE, which must
    // not leak into commands (`yes | head -1` would report a broken pipe instead of ending quietly).
    const outcome = await run(spec("cut -d' ' -f5,6 /proc/$$/stat; grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -1"), options);
    const [pgid, sid] = outcome.stdout.split('\n')[0]?.split(' ').map(Number) ?? [];
    expect(sid).toBe(outcome.pid);
    expect(pgid).toBe(outcome.pid);
    expect(outcome.stdout).toMatch(/SigBlk:\s*0+\n/);
    expect(outcome.stdout).toMatch(/SigIgn:\s*0+\n/);
    expect(outcome.stdout).toMatch(/\ny\n$/);
    expect(outcome.stderr).toBe('');
  });

  it('reports a signal as 128 + its number', async () => {
    expect((await run(spec('kill -9 $$'), options)).exitCode).toBe(137);
  });

  it('gives stdin /dev/null without a pipe, and feeds it with one', async () => {
    expect((await run(spec('cat; echo "[$?]"'), options)).stdout).toBe('[0]\n');
    expect((await run(spec('cat', { pipeStdin: true }), options, 'hello')).stdout).toBe('hello');
  });

  it('closes only when a background child holding the pipes has let go', async () => {
    const outcome = await run(spec('(sleep 0.3; echo late) & echo early'), options);
    expect(outcome.stdout).toBe('early\nlate\n');
    expect(outcome.exitCode).toBe(0);
    expect(outcome.closeAfterExitMs).toBeGreaterThanOrEqual(200);
  });

  it('fails with the system error Node.js gives: missing cwd, missing or non-executable file', async () => {
    await expect(startPiped(spec('true', { cwd: join(dir, 'missing') }), ignored, options)).rejects.toMatchObject({ code: 'ENOENT', syscall: 'spawn /bin/sh' });
    await expect(startPiped({ ...spec('true'), file: join(dir, 'nothing-here') }, ignored, options)).rejects.toMatchObject({ code: 'ENOENT' });
    const script = join(dir, 'not-executable.sh');
    await writeFile(script, '#!/bin/sh\necho no\n');
    await chmod(script, 0o644);
    await expect(startPiped({ ...spec('true'), file: script, argv: [script] }, ignored, options)).rejects.toMatchObject({ code: 'EACCES' });
  });

  it('runs a script without #! as the Codex exec-server does: an exec format error (child_process hands it to /bin/sh)', async () => {
    const script = join(dir, 'no-shebang.sh');
    await writeFile(script, 'echo ran by sh\n');
    await chmod(script, 0o755);
    const start = { ...spec(''), file: script, argv: [script] };
    if (options.native) {
      const error: unknown = await startPiped(start, ignored, options).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'ENOEXEC' });
      // The wire error the real `codex exec-server` 0.169 gives for the same request.
      expect(ioError(error).message).toBe('Exec format error (os error 8)');
    } else {
      expect((await run(start, options)).stdout).toBe('ran by sh\n');
    }
  });

  it('refuses NUL bytes instead of running a shortened command', async () => {
    await expect(startPiped(spec('echo a\0rm -rf x'), ignored, options)).rejects.toThrow(/NUL|null bytes/);
    await expect(startPiped(spec('true', { env: { BAD: 'a\0b' } }), ignored, options)).rejects.toThrow(/NUL|null bytes/);
  });

  it('starts many commands at once and reports each one its own exit', async () => {
    const outcomes = await Promise.all(Array.from({ length: 40 }, (_, i) => run(spec(`echo ${i}; exit ${i % 5}`), options)));
    outcomes.forEach((outcome, i) => {
      expect(outcome.stdout).toBe(`${i}\n`);
      expect(outcome.exitCode).toBe(i % 5);
    });
  });
});

describe('the native starter events', () => {
  /** Runs `startOnAddon` with an addon that reports `events` at once; what it resolves, the exit it reports, or what it throws. */
  async function onEvents(...events: unknown[][]): Promise<{ started?: number[]; exit?: number; error?: unknown }> {
    const outcome: { started?: number[]; exit?: number; error?: unknown } = {};
    try {
      outcome.started = await startOnAddon(
        (onEvent) => {
          for (const event of events) onEvent(...event);
          return undefined;
        },
        '/bin/true',
        (pid, fds) => [pid, ...fds],
        (exitCode) => {
          outcome.exit = exitCode;
        },
      );
    } catch (error) {
      outcome.error = error;
    }
    return outcome;
  }

  it('reads a start and an exit (a signal as 128 + its number)', async () => {
    expect(await onEvents([0, 42, -1, 7, 8], [2, 3, 0])).toEqual({ started: [42, -1, 7, 8], exit: 3 });
    expect(await onEvents([0, 42, -1, 7, 8], [2, -1, 9])).toEqual({ started: [42, -1, 7, 8], exit: 137 });
  });

  it("reads spawn's answer: a negative errno is the system error; anything but that or undefined is refused", async () => {
    const start = (answer: unknown): Promise<unknown> =>
      startOnAddon(
        () => answer,
        '/nonexistent/tool',
        () => 'started',
        () => undefined,
      );
    await expect(start(-2)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(start('x')).rejects.toThrow(/expected/i);
    await expect(start(2)).rejects.toThrow(/expected number to be <0/);
  });

  it.each([
    ['a start without its fds', [0, 42, -1]],
    ['a start with a pid of 0', [0, 0, -1, 7, 8]],
    ['a start with a fractional fd', [0, 42, -1, 7.5, 8]],
    ['an exit with a text code', [2, '3', 0]],
    ['an unknown tag', [3, 1]],
  ])('refuses %s, saying what is wrong', async (_name, event) => {
    const { error } = await onEvents(event);
    expect(error).toBeInstanceOf(Error);
    expect(String(error)).toMatch(/invalid|expected/i);
  });
});
