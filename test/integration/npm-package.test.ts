// The npm package as a user receives it: `npm pack` of the built tree, installed from the tarball
// into an empty project (its dependencies from the npm registry, through the npm cache), started
// with `npx codex-multienv` by a real MCP SDK client for `initialize`, `tools/list` and a `codex`
// turn that runs commands, then `npx codex-multienv doctor`. Three installs: an ordinary one (the
// native process starter is compiled), one whose C compiler fails (`CC=/bin/false`) and one with
// `--ignore-scripts`. The last two must install and run all the same, starting commands through
// child_process, and `npm rebuild codex-multienv-mcp` (what doctor advises) must then build the
// starter. The npm registry is the only address off this machine the test reaches; if it cannot
// be reached, the test fails at once saying so (`npm ping`), with npm's own message.

import { spawn } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { z } from 'zod';
import { functionCallOutputs, startFakeResponsesServer, type FakeResponsesServer, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { CLI, REPO_ROOT, tempDir } from '../helpers/process.js';
import { exec, say } from '../helpers/steps.js';

const PACKAGE = 'codex-multienv-mcp';
/** What the doctor's model check asks (src/cli/doctor-command.ts); the fake model answers "OK". */
const DOCTOR_PROMPT = 'Reply with the single word OK.';
const ANSWER = 'the packaged server answered';
/** npm's own deadline for one command here: installs fetch from the registry on a cold cache. */
const NPM_TIMEOUT_MS = 150_000;

const PackOutputSchema = z.array(z.object({ filename: z.string(), files: z.array(z.object({ path: z.string() })) })).length(1);

const DoctorReportSchema = z.object({
  ok: z.boolean(),
  checks: z.array(z.object({ id: z.string(), status: z.enum(['ok', 'warn', 'fail', 'skip']), detail: z.string() })),
});
type DoctorReport = z.infer<typeof DoctorReportSchema>;

const TurnResultSchema = z.object({ structuredContent: z.object({ threadId: z.string().min(1), content: z.string() }) });

/** One way of installing the tarball. */
interface InstallCase {
  name: string;
  /** Extra `npm install` arguments. */
  args: string[];
  /** Set over the test's environment for `npm install`. */
  env: Record<string, string>;
  /** Whether the install builds the native starter. */
  builds: boolean;
}

const CASES: InstallCase[] = [
  { name: 'with a C compiler', args: ['--ignore-scripts=false'], env: {}, builds: true },
  { name: 'with a C compiler that fails (CC=/bin/false)', args: ['--ignore-scripts=false'], env: { CC: '/bin/false' }, builds: false },
  { name: 'with --ignore-scripts', args: ['--ignore-scripts'], env: {}, builds: false },
];

/**
 * The environment of a user's shell: the test's, without anything of ours that could stand in for
 * what the test sets (provider key, CODEX_HOME, the compiler, npm's script switch).
 */
function userEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || /^(OPENAI_API_KEY|CODEX_HOME|CODEX_EXEC_SERVER_URL|FAKE_MODEL_API_KEY|CC)$/.test(key) || key.startsWith('CODEX_MULTIENV')) continue;
    if (/^npm_config_ignore_scripts$/i.test(key)) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** Runs npm (or npx) in `cwd`, killed after {@link NPM_TIMEOUT_MS}; returns its stdout, throws with its output when it fails. */
function npm(program: 'npm' | 'npx', args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: NPM_TIMEOUT_MS, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) return resolve(stdout);
      const why = signal === null ? `exited with ${code}` : `was killed (${signal}${signal === 'SIGKILL' ? `, not done after ${NPM_TIMEOUT_MS} ms` : ''})`;
      const unreachable = args[0] === 'install' && /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)\b/.test(stderr);
      const hint = unreachable ? ' (the npm registry could not be reached: this test installs the dependencies from it)' : '';
      reject(new Error(`\`${program} ${args.join(' ')}\` in ${cwd} ${why}${hint}:\n${stderr.slice(-4000)}${stdout.slice(-2000)}`));
    });
  });
}

/** The `process_start` check of a doctor report. */
function processStart(report: DoctorReport): DoctorReport['checks'][number] {
  const check = report.checks.find((entry) => entry.id === 'process_start');
  if (check === undefined) throw new Error(`doctor reported no process_start check: ${JSON.stringify(report)}`);
  return check;
}

/** The fake model: the doctor's probe gets "OK"; a turn runs a piped command, then one on a terminal, then answers. */
function respond(request: RecordedRequest): ReturnType<typeof say> {
  if (request.rawBody.includes(DOCTOR_PROMPT)) return say('OK');
  const done = functionCallOutputs(request).length;
  if (done === 0) return exec('printf piped-ok');
  if (done === 1) return exec('test -t 0 && echo on-a-terminal', { tty: true });
  return say(ANSWER);
}

describe('the npm package, installed from `npm pack` on a fresh project', () => {
  let work: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let tarball = '';
  let packed: string[] = [];
  /** The projects, in the order of CASES, each with the tarball installed. */
  const projects: string[] = [];

  beforeAll(async () => {
    await access(CLI).catch(() => {
      throw new Error(`${CLI} is missing: run \`npm run build\` first (npm pack ships dist/ as built)`);
    });
    // Unreachable, the registry would fail the installs only after npm's retries, or not at all
    // from a warm cache; say so at once instead.
    await npm('npm', ['ping', '--fetch-retries=1'], REPO_ROOT, userEnv({})).catch((error: unknown) => {
      throw new Error(`the npm registry cannot be reached, and this test installs the package's dependencies from it: ${error instanceof Error ? error.message : String(error)}`);
    });
    work = await tempDir('cmx-npm-package-');
    model = await startFakeResponsesServer({ respond });
    // The tree is built already; `npm pack` alone runs prepack (the build) first, which the
    // package metadata test checks.
    const output = PackOutputSchema.parse(JSON.parse(await npm('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work.path], REPO_ROOT, userEnv({}))));
    tarball = join(work.path, output[0]!.filename);
    packed = output[0]!.files.map((file) => file.path);
    // The installs share the npm cache; run them side by side.
    await Promise.all(
      CASES.map(async (entry, index) => {
        const project = join(work.path, `project-${index}`);
        await mkdir(project);
        await writeFile(join(project, 'package.json'), JSON.stringify({ name: `fresh-project-${index}`, private: true }));
        await npm('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...entry.args, tarball], project, userEnv(entry.env));
        projects[index] = project;
      }),
    );
  }, 4 * NPM_TIMEOUT_MS);

  afterAll(async () => {
    await model?.close();
    await work?.cleanup();
  });

  /** A CODEX_HOME with only the provider set: everything else (sandbox, approvals) as a new user gets it. */
  const codexHome = async (name: string): Promise<string> => {
    const home = join(work.path, `home-${name}`);
    await mkdir(home, { recursive: true });
    await writeFile(
      join(home, 'config.toml'),
      [
        'model = "gpt-5.5"',
        'model_provider = "fake"',
        '[model_providers.fake]',
        'name = "fake"',
        `base_url = "${model.url}"`,
        'env_key = "OPENAI_API_KEY"',
        'request_max_retries = 0',
        'stream_max_retries = 0',
        '',
      ].join('\n'),
    );
    return home;
  };

  const doctor = async (project: string, home: string): Promise<DoctorReport> =>
    DoctorReportSchema.parse(
      JSON.parse(await npm('npx', ['--no', 'codex-multienv', 'doctor', '--json'], project, userEnv({ CODEX_HOME: home, OPENAI_API_KEY: 'sk-npm-package' }))),
    );

  it('packs the built server (with the tool listing its relay answers from), its install script and the native sources, and nothing of the repository besides', () => {
    expect(packed).toEqual(
      expect.arrayContaining([
        'package.json',
        'dist/cli/main.js',
        'dist/cli/commands.cjs',
        'dist/cli/tool-listings.json',
        'native/install.js',
        'native/spawn.c',
        'binding.gyp',
        'README.md',
      ]),
    );
    const outside = packed.filter(
      (path) => !/^(package\.json|README\.md|LICENSE|binding\.gyp|native\/(install\.js|spawn\.c)|dist\/cli\/([\w.-]+\.c?js(\.map)?|tool-listings\.json))$/.test(path),
    );
    expect(outside).toEqual([]);
  });

  it.each(CASES.map((entry, index) => [entry.name, index] as const))('%s: npx codex-multienv serves MCP (a codex turn runs commands) and doctor runs', async (name, index) => {
    const entry = CASES[index]!;
    const project = projects[index]!;
    const home = await codexHome(String(index));
    const transport = new StdioClientTransport({
      command: 'npx',
      args: ['--no', 'codex-multienv'],
      cwd: project,
      env: userEnv({ CODEX_HOME: home, OPENAI_API_KEY: 'sk-npm-package' }) as Record<string, string>,
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const client = new Client({ name: 'npm-package-test', version: '1.0.0' });
    try {
      await client.connect(transport);
      expect(client.getServerVersion()).toMatchObject({ version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
      const names = (await client.listTools()).tools.map((tool) => tool.name);
      expect(names).toEqual(expect.arrayContaining(['codex', 'codex-reply', 'codex-status', 'environment/add']));
      const before = model.requests.length;
      const result = TurnResultSchema.parse(await client.callTool({ name: 'codex', arguments: { prompt: `hello from ${name}`, cwd: project } }, undefined, { timeout: 120_000 }));
      expect(result.structuredContent.content).toBe(ANSWER);
      const turn = model.requests.slice(before).filter((request) => request.rawBody.includes(`hello from ${name}`));
      expect(turn).toHaveLength(3);
      const outputs = functionCallOutputs(turn[2]!).map((output) => JSON.stringify(output.output));
      expect(outputs).toEqual([expect.stringContaining('piped-ok'), expect.stringContaining('on-a-terminal')]);
      expect(turn.every((request) => request.headers.authorization === 'Bearer sk-npm-package')).toBe(true);
    } catch (error) {
      throw new Error(`${name}: ${error instanceof Error ? error.message : String(error)}\nserver stderr: ${stderr.slice(-3000)}`);
    } finally {
      await client.close();
    }

    const report = await doctor(project, home);
    expect({ ok: report.ok, failed: report.checks.filter((check) => check.status === 'fail') }).toEqual({ ok: true, failed: [] });
    expect(report.checks.find((check) => check.id === 'model')?.status).toBe('ok');
    // Installed without @openai/codex (not a dependency): the builtin engine serves new threads.
    expect(report.checks.find((check) => check.id === 'engine')?.detail).toContain('new threads run on the builtin engine');
    const starter = join(project, 'node_modules', PACKAGE, 'build', 'Release', 'codex_multienv_spawn.node');
    if (entry.builds) {
      expect(processStart(report)).toMatchObject({ status: 'ok', detail: `posix_spawn through ${starter}` });
    } else {
      expect(processStart(report)).toMatchObject({ status: 'warn', detail: expect.stringContaining('child_process') });
      // What doctor advises once a compiler is there.
      await npm('npm', ['rebuild', PACKAGE, '--ignore-scripts=false'], project, userEnv({}));
      expect(processStart(await doctor(project, home))).toMatchObject({ status: 'ok', detail: `posix_spawn through ${starter}` });
    }
    expect(model.errors).toEqual([]);
  });
});
