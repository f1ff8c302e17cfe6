// `codex-multienv doctor` end to end: the built CLI with a temporary CODEX_HOME, our exec-server on
// 127.0.0.1 (over a websocket and over stdio) and the real codex one, a refused port, broken config
// files, and the fake model as the provider.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { startFakeResponsesServer, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { writeMcpConfig } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, runCommand, startCodexWsExecServer, startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';

const ReportSchema = z.object({
  version: z.string(),
  codexHome: z.string(),
  ok: z.boolean(),
  checks: z.array(z.object({ id: z.string(), title: z.string(), status: z.enum(['ok', 'warn', 'fail', 'skip']), detail: z.string(), fix: z.string().optional() })),
});
type Report = z.infer<typeof ReportSchema>;

function statuses(report: Report): Record<string, string> {
  return Object.fromEntries(report.checks.map((check) => [check.id, check.status]));
}

function checkOf(report: Report, id: string): Report['checks'][number] {
  const found = report.checks.find((check) => check.id === id);
  if (found === undefined) throw new Error(`no check ${id} in ${JSON.stringify(report)}`);
  return found;
}

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('codex-multienv doctor', () => {
  let execServer: ListeningProcess;
  let model: FakeResponsesServer;
  /** Steps for the next model requests; then "OK". */
  let queued: FakeStep[] = [];
  let home: { path: string; cleanup: () => Promise<void> };
  let emptyPath: { path: string; cleanup: () => Promise<void> };

  const doctor = async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> => {
    const base: NodeJS.ProcessEnv = { ...networkEnv(process.env), CODEX_HOME: home.path, FAKE_MODEL_API_KEY: 'test-key' };
    delete base.CODEX_EXEC_SERVER_URL;
    return runCommand(process.execPath, [CLI, 'doctor', ...args], { ...base, ...env });
  };
  const doctorJson = async (args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; report: Report }> => {
    const run = await doctor(['--json', ...args], env);
    return { code: run.code, report: ReportSchema.parse(JSON.parse(run.stdout)) };
  };
  const writeEnvironments = (lines: string[]): Promise<void> => writeFile(join(home.path, 'environments.toml'), lines.join('\n'));
  const goodEnvironments = (): string[] => [
    'default = "box"',
    '[[environments]]',
    'id = "box"',
    `url = "${execServer.url}"`,
    '[[environments]]',
    'id = "pipe"',
    `program = ${JSON.stringify(process.execPath)}`,
    `args = ${JSON.stringify([CLI, 'exec-server', '--listen', 'stdio'])}`,
  ];

  beforeAll(async () => {
    execServer = await startOurWsExecServer();
    model = await startFakeResponsesServer({ respond: () => queued.shift() ?? { kind: 'output', items: [{ type: 'message', text: 'OK' }] } });
    emptyPath = await tempDir('cmx-doctor-path-');
  });
  beforeEach(async () => {
    home = await tempDir('cmx-doctor-home-');
    await writeMcpConfig(home.path, model.url);
  });
  afterEach(async () => {
    await home.cleanup();
  });
  afterAll(async () => {
    await execServer.stop();
    await model.close();
    await emptyPath.cleanup();
  });

  it('passes with reachable environments and a working provider: one real model request, executor facts for each environment', async () => {
    await writeEnvironments(goodEnvironments());
    // A thread whose turn runs in another live server process (this test's process stands in for it).
    const threads = join(home.path, 'multienv', 'threads');
    await mkdir(threads, { recursive: true });
    await writeFile(join(threads, 'busy-thread.lease'), JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
    const before = model.requests.length;
    const { code, report } = await doctorJson();
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.codexHome).toBe(home.path);
    expect(statuses(report)).toEqual({
      config: 'ok',
      environments: 'ok',
      'environment:local': 'ok',
      'environment:box': 'ok',
      'environment:pipe': 'ok',
      threads: 'ok',
      // npm install builds the native starter on Linux.
      process_start: process.platform === 'linux' ? 'ok' : 'skip',
      // CI runs as root, which is a warning.
      user: process.geteuid?.() === 0 ? 'warn' : 'ok',
      // Depends on the host; the configured sandbox is danger-full-access, so never a failure.
      bubblewrap: expect.stringMatching(/^(ok|warn|skip)$/),
      network: 'ok',
      model: 'ok',
      engine: 'ok',
    });
    expect(checkOf(report, 'network').detail).toBe('no proxy; bundled roots');
    if (process.platform === 'linux') expect(checkOf(report, 'process_start').detail).toMatch(/^posix_spawn through \/.*\/build\/Release\/codex_multienv_spawn\.node$/);
    expect(checkOf(report, 'threads').detail).toBe(`${threads} is writable; 1 thread has a turn running in server process pid ${process.pid} (see codex-status)`);
    expect(checkOf(report, 'environments').detail).toContain('3 environments, default box');
    expect(checkOf(report, 'environment:box').detail).toMatch(/^websocket ws:\/\/127\.0\.0\.1:\d+: ready; linux, \S+, \//);
    expect(checkOf(report, 'environment:pipe').detail).toMatch(/^stdio .* exec-server --listen stdio: ready; linux/);
    expect(checkOf(report, 'model').detail).toBe(`${model.url} (model gpt-5.5) answered "OK" (key from FAKE_MODEL_API_KEY)`);
    expect(model.requests.length).toBe(before + 1);
    const request = model.requests[before]!;
    expect(request.headers.authorization).toBe('Bearer test-key');
    expect(request.body).toMatchObject({ model: 'gpt-5.5', input: [{ type: 'message', role: 'user' }], tools: [] });
  });

  it('checks the real codex exec-server 0.169.0 the same way', async () => {
    const codexHome = await tempDir('cmx-doctor-codex-');
    const codex = await startCodexWsExecServer(codexHome.path);
    try {
      await writeEnvironments(['[[environments]]', 'id = "cx"', `url = "${codex.url}"`]);
      const { report } = await doctorJson();
      expect(checkOf(report, 'environment:cx')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/: ready; linux, \S+, \/.*, executor 0\.169\.0$/) });
    } finally {
      await codex.stop();
      await codexHome.cleanup();
    }
  });

  it('fails on an unreachable environment and says what to fix, in text and in JSON', async () => {
    await writeEnvironments([...goodEnvironments(), '[[environments]]', 'id = "gone"', 'url = "ws://127.0.0.1:1"', 'connect_timeout_sec = 2']);
    const { code, report } = await doctorJson();
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    const gone = checkOf(report, 'environment:gone');
    expect(gone.status).toBe('fail');
    expect(gone.detail).toMatch(/^websocket ws:\/\/127\.0\.0\.1:1: .*connection refused/);
    expect(gone.fix).toContain('codex-multienv exec-server --listen ws://127.0.0.1:1');
    expect(gone.fix).toContain(join(home.path, 'environments.toml'));
    expect(checkOf(report, 'environment:box').status).toBe('ok');

    const text = await doctor([]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^fail\s+environment gone\s+websocket ws:\/\/127\.0\.0\.1:1: .*connection refused/m);
    expect(text.stdout).toMatch(/^\s+fix: start an exec-server there/m);
    expect(text.stdout).toMatch(/^ok\s+environment box\s+websocket/m);
    expect(text.stdout).toMatch(/^1 failed, \d+ warnings?$/m);
  });

  it('fails on a stdio environment whose program is not an exec-server', async () => {
    await writeEnvironments([
      '[[environments]]',
      'id = "wrong"',
      `program = ${JSON.stringify(process.execPath)}`,
      `args = ["-e", "process.exit(3)"]`,
      'initialize_timeout_sec = 5',
    ]);
    const { code, report } = await doctorJson();
    expect(code).toBe(1);
    const wrong = checkOf(report, 'environment:wrong');
    expect(wrong.status).toBe('fail');
    expect(wrong.fix).toMatch(/must speak the exec-server protocol on stdin\/stdout/);
  });

  it('reports a bad config.toml with its file and key, and skips what depends on it', async () => {
    await writeFile(join(home.path, 'config.toml'), 'approval_policy = "sometimes"\n');
    const { code, report } = await doctorJson();
    expect(code).toBe(1);
    const config = checkOf(report, 'config');
    expect(config.status).toBe('fail');
    expect(config.detail).toContain(`${join(home.path, 'config.toml')}: approval_policy: expected one of`);
    expect(checkOf(report, 'model').status).toBe('skip');
    expect(checkOf(report, 'threads').status).toBe('skip');
    // The environments do not depend on config.toml and are still checked.
    expect(checkOf(report, 'environment:local').status).toBe('ok');

    await writeFile(join(home.path, 'config.toml'), 'model = "unterminated\n');
    const syntax = await doctorJson();
    expect(checkOf(syntax.report, 'config').detail).toMatch(/config\.toml: TOML syntax error at line 1/);
  });

  it('warns about unknown config keys, and applies -c overrides as the server does', async () => {
    await writeFile(join(home.path, 'config.toml'), `no_such_key = 1\n${await readFile(join(home.path, 'config.toml'), 'utf8')}`);
    const { code, report } = await doctorJson(['-c', 'model="other-model"']);
    expect(code).toBe(0);
    const config = checkOf(report, 'config');
    expect(config.status).toBe('warn');
    expect(config.detail).toContain('model other-model via provider `fake`');
    expect(config.detail).toContain('unknown config key `no_such_key` ignored');
    expect(checkOf(report, 'model').detail).toContain('(model other-model)');
  });

  it('says which [mcp_servers] entries sessions skip because they launch this server, and how to fix or allow it', async () => {
    const config = await readFile(join(home.path, 'config.toml'), 'utf8');
    const entries = [
      `[mcp_servers.self]\ncommand = ${JSON.stringify(process.execPath)}\nargs = ${JSON.stringify([CLI, '--foreground'])}`,
      '[mcp_servers.npx-self]\ncommand = "npx"\nargs = ["-y", "codex-multienv-mcp"]',
      `[mcp_servers.pipe]\ncommand = ${JSON.stringify(process.execPath)}\nargs = ${JSON.stringify([CLI, 'exec-server', '--listen', 'stdio'])}`,
      `[mcp_servers.allowed]\ncommand = ${JSON.stringify(process.execPath)}\nargs = ${JSON.stringify([CLI])}\nenv = { CODEX_MULTIENV_NESTED = "allow" }`,
    ];
    await writeFile(join(home.path, 'config.toml'), `${config}\n${entries.join('\n')}\n`);
    const { code, report } = await doctorJson();
    expect(code).toBe(0);
    const check = checkOf(report, 'mcp_servers');
    expect(check.status).toBe('warn');
    expect(check.detail).toBe(
      `4 configured, enabled: self, npx-self, pipe, allowed; skipped in sessions because they launch this server itself: self (${process.execPath} ${CLI} --foreground runs this server's script); npx-self (npx -y codex-multienv-mcp runs this server's package)`,
    );
    expect(check.fix).toMatch(/own CODEX_HOME.*`enabled = false` on mcp_servers\.self, mcp_servers\.npx-self.*CODEX_MULTIENV_NESTED = "allow"/);

    // Without such entries the check is fine; without any entry there is no check at all.
    await writeFile(join(home.path, 'config.toml'), `${config}\n${entries.slice(2).join('\n')}\n`);
    expect(checkOf((await doctorJson()).report, 'mcp_servers')).toMatchObject({ status: 'ok', detail: '2 configured, enabled: pipe, allowed' });
    await writeFile(join(home.path, 'config.toml'), config);
    expect((await doctorJson()).report.checks.map((c) => c.id)).not.toContain('mcp_servers');
  });

  it('reports a bad environments.toml with its file, entry and field, and checks no environment', async () => {
    await writeEnvironments(['[[environments]]', 'id = "box"', 'url = "http://127.0.0.1:9"']);
    const { code, report } = await doctorJson();
    expect(code).toBe(1);
    const environments = checkOf(report, 'environments');
    expect(environments.status).toBe('fail');
    expect(environments.detail).toContain(join(home.path, 'environments.toml'));
    expect(environments.detail).toContain('environments[0] (id `box`)');
    expect(environments.detail).toContain('must use ws:// or wss://');
    expect(report.checks.filter((check) => check.id.startsWith('environment:'))).toEqual([]);
  });

  it('skips the model request without a key, with a note on where the key goes', async () => {
    const before = model.requests.length;
    const { code, report } = await doctorJson([], { FAKE_MODEL_API_KEY: '' });
    expect(code).toBe(0);
    const check = checkOf(report, 'model');
    expect(check.status).toBe('warn');
    expect(check.detail).toContain('no request sent, FAKE_MODEL_API_KEY is not set');
    expect(check.fix).toContain('`env`');
    expect(model.requests.length).toBe(before);
  });

  it('says which engine a new thread gets and why, from the credentials, with the Codex version found', async () => {
    // The Codex CLI is the installed @openai/codex (no `codex` on this PATH).
    const codex = 'Codex CLI 0.169.0 at ';
    const withKey = checkOf((await doctorJson([], { PATH: emptyPath.path })).report, 'engine');
    expect(withKey).toMatchObject({ status: 'ok', detail: expect.stringContaining('new threads run on the builtin engine (auto: the model provider has its API key') });
    expect(withKey.detail).toContain(codex);
    // Only a ChatGPT sign-in (a fake one): the real Codex, which can use it.
    await writeFile(join(home.path, 'auth.json'), JSON.stringify({ OPENAI_API_KEY: null, tokens: { id_token: 'x', access_token: 'y', refresh_token: 'z' } }));
    const signedIn = checkOf((await doctorJson([], { PATH: emptyPath.path, FAKE_MODEL_API_KEY: '' })).report, 'engine');
    expect(signedIn).toMatchObject({ status: 'ok', detail: expect.stringContaining('new threads run on the codex engine (auto: only a ChatGPT sign-in') });
    expect(signedIn.detail).toContain(codex);
    const builtin = checkOf((await doctorJson(['-c', 'multienv.engine="builtin"'], { PATH: emptyPath.path, FAKE_MODEL_API_KEY: '' })).report, 'engine');
    expect(builtin.detail).toContain('new threads run on the builtin engine (multienv.engine = "builtin")');
    const missing = checkOf(
      (await doctorJson(['-c', 'multienv.engine="codex"', '-c', `multienv.codex_path="${join(emptyPath.path, 'codex')}"`], { PATH: emptyPath.path })).report,
      'engine',
    );
    expect(missing).toMatchObject({ status: 'fail', detail: expect.stringContaining(`no Codex CLI found at multienv.codex_path ${join(emptyPath.path, 'codex')}`) });
  });

  it('fails when the provider rejects the key, and when it cannot be reached', async () => {
    const before = model.requests.length;
    queued = [{ kind: 'http-error', status: 401, body: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } } }];
    const rejected = await doctorJson();
    expect(rejected.code).toBe(1);
    const check = checkOf(rejected.report, 'model');
    expect(check.status).toBe('fail');
    expect(check.detail).toMatch(/401/);
    expect(check.detail).toContain('Incorrect API key provided');
    expect(check.fix).toBe('check the key in FAKE_MODEL_API_KEY');
    expect(model.requests.length).toBe(before + 1);

    const port = await closedPort();
    const unreachable = await doctorJson(['-c', `model_providers.fake.base_url="http://127.0.0.1:${port}/v1"`]);
    expect(unreachable.code).toBe(1);
    expect(checkOf(unreachable.report, 'model')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(new RegExp(`cannot reach the model API at http://127\\.0\\.0\\.1:${port}/v1: .*ECONNREFUSED`)),
      fix: expect.stringContaining('base_url'),
    });
  });

  it('fails the bubblewrap check when it is missing and the configured sandbox confines local; only warns under danger-full-access; skips it without local', async () => {
    const withoutBwrap = { PATH: emptyPath.path };
    const sandboxed = await doctorJson(['-c', 'sandbox_mode="read-only"'], withoutBwrap);
    expect(sandboxed.code).toBe(1);
    expect(checkOf(sandboxed.report, 'bubblewrap')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(
        /bubblewrap \(`bwrap`\), which is not installed.*; the configured sandbox \(sandbox_mode=read-only\) confines every command on `local`, so each one is refused$/,
      ),
    });
    // A permission profile is a configured sandbox too.
    await writeFile(join(home.path, 'config.toml'), `default_permissions = ":workspace"\n${await readFile(join(home.path, 'config.toml'), 'utf8')}`);
    const profiled = await doctorJson([], withoutBwrap);
    expect(checkOf(profiled.report, 'bubblewrap')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('the configured sandbox (:workspace) confines every command on `local`'),
    });
    const unsandboxed = await doctorJson(['-c', 'sandbox_mode="danger-full-access"', '-c', 'default_permissions=":danger-full-access"'], withoutBwrap);
    expect(checkOf(unsandboxed.report, 'bubblewrap')).toMatchObject({ status: 'warn', detail: expect.stringContaining('a thread that asks for one there is refused') });
    expect(unsandboxed.code).toBe(0);
    const remoteOnly = await doctorJson(['-c', 'sandbox_mode="read-only"'], { ...withoutBwrap, CODEX_EXEC_SERVER_URL: execServer.url });
    expect(checkOf(remoteOnly.report, 'bubblewrap')).toMatchObject({ status: 'skip', detail: expect.stringContaining('there is no `local` environment') });
  });

  it('warns when the server runs as root: commands run as root, and only the sandbox holds them', async () => {
    const { report } = await doctorJson();
    const user = checkOf(report, 'user');
    if (process.geteuid?.() === 0) {
      expect(user).toMatchObject({
        status: 'warn',
        detail: expect.stringMatching(/^uid 0 \(root\): every command runs as root\. In the sandbox bubblewrap drops all capabilities.*can do anything on this host$/),
        fix: expect.stringContaining('unprivileged user'),
      });
    } else {
      expect(user).toMatchObject({ status: 'ok', detail: expect.stringMatching(new RegExp(`^uid ${process.geteuid?.()}\\b.*commands run with this user's rights$`)) });
    }
  });
});
