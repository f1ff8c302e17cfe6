// The policy layer end to end (issue 4): our server composed in-process, the fake model asking for
// commands and patches, commands confined by real bubblewrap, on `local` and on remote
// environments served by our own exec-server over a websocket.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { functionCallOutputs, inputItems, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, textOf, writeMcpConfig, type ElicitationAnswer, type McpHarness } from '../helpers/mcp.js';
import { startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';
import { DECOY_TEXT, makeEscapeLayout, mountEscapes, SECRET_TEXT } from '../helpers/sandbox.js';
import { exec, isRecord, patch, say, type Json } from '../helpers/steps.js';

const addFile = (path: string, text: string, environmentId?: string): FakeStep =>
  patch(['*** Begin Patch', ...(environmentId === undefined ? [] : [`*** Environment ID: ${environmentId}`]), `*** Add File: ${path}`, `+${text}`, '*** End Patch'].join('\n'));

/** Workspace-write where only the workspace is writable (this machine's /tmp holds the test folders). */
const WORKSPACE_ONLY = ['[sandbox_workspace_write]', 'exclude_slash_tmp = true', 'exclude_tmpdir_env_var = true'].join('\n');

/** The newest tool output the model was sent in request `index` (the answer to its previous call). */
function outputAt(model: FakeResponsesServer, index: number): string {
  const request = model.requests[index];
  if (request === undefined) throw new Error(`the model received no request #${index} (got ${model.requests.length})`);
  const output = functionCallOutputs(request).at(-1)?.output;
  return typeof output === 'string' ? output : JSON.stringify(output ?? '');
}

/** The exit code an exec_command output reports. */
function exitCodeOf(output: string): number | undefined {
  const match = /Process exited with code (\d+)/.exec(output);
  return match === null ? undefined : Number(match[1]);
}

/** The environment context message of request `index`. */
function environmentContext(model: FakeResponsesServer, index: number): string {
  const request = model.requests[index];
  if (request === undefined) throw new Error(`no request #${index}`);
  const text = JSON.stringify(inputItems(request));
  const start = text.indexOf('<environment_context>');
  return start === -1 ? '' : text.slice(start, text.indexOf('</environment_context>', start));
}

describe('sandbox, permission profiles and the command environment, end to end', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let outside: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  const execServers: ListeningProcess[] = [];
  const remoteWorks: { path: string; cleanup: () => Promise<void> }[] = [];

  beforeEach(async () => {
    steps = [];
    ({ home, work, model } = await setUpMcpWorld('mcp-sbx', () => steps.shift() ?? say('script exhausted')));
    outside = await tempDir('mcp-sbx-outside-');
  });
  afterEach(async () => {
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
    await outside.cleanup();
    await Promise.all(execServers.splice(0).map((server) => server.stop()));
    await Promise.all(remoteWorks.splice(0).map((dir) => dir.cleanup()));
  });

  /** Our exec-server on a websocket, with its own working folder and variables. */
  async function remote(env: NodeJS.ProcessEnv = {}): Promise<{ url: string; cwd: string }> {
    const dir = await tempDir('mcp-sbx-remote-');
    remoteWorks.push(dir);
    const server = await startOurWsExecServer([], { ...process.env, ...env });
    execServers.push(server);
    return { url: server.url, cwd: dir.path };
  }

  async function config(extra: string): Promise<void> {
    await writeMcpConfig(home.path, model.url, extra);
  }

  it.each(['local', 'remote'])('refuses writes outside the writable roots on %s, by command and by patch, and writes nothing there', async (where) => {
    await config(WORKSPACE_ONLY);
    mcp = await startInProcessMcp(home.path);
    let environments: Json[] | undefined;
    let cwd = work.path;
    if (where === 'remote') {
      const server = await remote();
      cwd = server.cwd;
      const added = await mcp.call('environment/add', { id: 'box', url: server.url });
      expect(added.isError).toBeFalsy();
      environments = [{ id: 'box', cwd }];
    }
    steps.push(
      exec(`touch ${join(outside.path, 'by-command')}`),
      addFile(join(outside.path, 'by-patch.txt'), 'nope'),
      exec('touch inside && ln -s ' + outside.path + ' escape'),
      addFile('escape/through-link.txt', 'nope'),
      addFile('inside.txt', 'yes'),
      // One patch: an update and an add inside, then a file outside: it applies whole or not at all.
      patch(
        [
          '*** Begin Patch',
          '*** Update File: inside.txt',
          '@@',
          '-yes',
          '+changed',
          '*** Add File: also-inside.txt',
          '+new',
          `*** Add File: ${join(outside.path, 'last.txt')}`,
          '+nope',
          '*** End Patch',
        ].join('\n'),
      ),
      // A link to a file outside that does not exist yet: adding the link's name would create it.
      exec(`ln -s ${join(outside.path, 'dangling-target.txt')} dangling`),
      addFile('dangling', 'nope'),
      say('done'),
    );
    const result = await mcp.call('codex', { prompt: 'try writing', cwd: work.path, sandbox: 'workspace-write', ...(environments === undefined ? {} : { environments }) });
    expect(result.isError).toBeFalsy();

    const byCommand = outputAt(model, 1);
    expect(exitCodeOf(byCommand)).not.toBe(0);
    expect(byCommand).toMatch(/Read-only file system|Permission denied/);
    expect(outputAt(model, 2)).toMatch(/apply_patch failed .*not allowed by the sandbox.*no file was changed/s);
    expect(exitCodeOf(outputAt(model, 3))).toBe(0);
    expect(outputAt(model, 4)).toMatch(/not allowed by the sandbox/);
    expect(outputAt(model, 5)).toMatch(/^Success/);
    expect(outputAt(model, 6)).toMatch(/apply_patch failed .*last\.txt.*not allowed by the sandbox.*no file was changed: the 2 already written were restored/s);
    expect(exitCodeOf(outputAt(model, 7))).toBe(0);
    expect(outputAt(model, 8)).toMatch(/apply_patch failed .*not allowed by the sandbox \(it resolves to .*dangling-target\.txt/s);
    expect(existsSync(join(outside.path, 'by-command'))).toBe(false);
    expect(existsSync(join(outside.path, 'by-patch.txt'))).toBe(false);
    expect(existsSync(join(outside.path, 'through-link.txt'))).toBe(false);
    expect(existsSync(join(outside.path, 'dangling-target.txt'))).toBe(false);
    expect(existsSync(join(cwd, 'inside'))).toBe(true);
    expect(readFileSync(join(cwd, 'inside.txt'), 'utf8')).toBe('yes\n');
    expect(existsSync(join(cwd, 'also-inside.txt'))).toBe(false);
  });

  it.each(['local', 'remote'])('keeps a command inside the sandbox on %s when the server runs as root: no remount, no unmount of a denied path', async (where) => {
    // CI runs this as root: the server and the exec-server, so the commands too.
    const layout = await makeEscapeLayout(outside.path);
    await config(['[permissions.guarded.filesystem]', '":root" = "read"', '":workspace_roots" = "write"', `${JSON.stringify(layout.secret)} = "deny"`].join('\n'));
    mcp = await startInProcessMcp(home.path);
    let environment: Json = { id: 'local', cwd: work.path, permissions: 'guarded' };
    let cwd = work.path;
    if (where === 'remote') {
      const server = await remote();
      cwd = server.cwd;
      expect((await mcp.call('environment/add', { id: 'box', url: server.url })).isError).toBeFalsy();
      environment = { id: 'box', cwd, permissions: 'guarded' };
    }
    const [remount, unmount] = mountEscapes(layout);
    if (remount === undefined || unmount === undefined) throw new Error('mountEscapes lists the remount and the unmount');
    steps.push(exec(remount.script), exec(unmount.script), exec('echo inside > inside.txt && cat inside.txt'), say('done'));
    const result = await mcp.call('codex', { prompt: 'get out', cwd: work.path, environments: [environment] });
    expect(result.isError).toBeFalsy();

    expect(outputAt(model, 1)).not.toContain(remount.marker);
    expect(outputAt(model, 1)).toMatch(remount.refusal);
    expect(outputAt(model, 2)).not.toContain(SECRET_TEXT.trim());
    expect(outputAt(model, 2)).toMatch(unmount.refusal);
    expect(readFileSync(layout.decoy, 'utf8')).toBe(DECOY_TEXT);
    expect(exitCodeOf(outputAt(model, 3))).toBe(0);
    expect(readFileSync(join(cwd, 'inside.txt'), 'utf8')).toBe('inside\n');
  });

  describe('network', () => {
    let listener: Server;
    let port: number;
    beforeEach(async () => {
      listener = createServer((socket) => socket.end('pong\n'));
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      const address = listener.address();
      port = typeof address === 'object' && address !== null ? address.port : 0;
    });
    afterEach(async () => {
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    });

    it.each(['local', 'remote'])('cuts a sandboxed command off a loopback server on %s unless the network is on', async (where) => {
      await config(WORKSPACE_ONLY);
      mcp = await startInProcessMcp(home.path);
      let environments: Json[] | undefined;
      if (where === 'remote') {
        const server = await remote();
        expect((await mcp.call('environment/add', { id: 'box', url: server.url })).isError).toBeFalsy();
        environments = [{ id: 'box', cwd: server.cwd }];
      }
      const probe = `exec 3<>/dev/tcp/127.0.0.1/${port} && head -c 5 <&3; echo "network=$CODEX_SANDBOX_NETWORK_DISABLED"`;
      const base = { cwd: work.path, sandbox: 'workspace-write', ...(environments === undefined ? {} : { environments }) };
      steps.push(exec(probe, { shell: '/bin/bash' }), say('off'));
      await mcp.call('codex', { prompt: 'network off', ...base });
      const off = outputAt(model, 1);
      expect(off).not.toContain('pong');
      expect(off).toContain('network=1');

      steps.push(exec(probe, { shell: '/bin/bash' }), say('on'));
      await mcp.call('codex', { prompt: 'network on', ...base, config: { 'sandbox_workspace_write.network_access': true } });
      const on = outputAt(model, 3);
      expect(on).toContain('pong');
      expect(on).toContain('network=\n');
    });
  });

  it('lets one thread write to staging and only read production, as each environment is configured', async () => {
    const staging = await remote();
    const production = await remote();
    await writeFile(join(production.cwd, 'live.txt'), 'live\n');
    await config(['[permissions.staging-write]', 'extends = ":workspace"', '[permissions.staging-write.network]', 'enabled = false'].join('\n'));
    await writeFile(join(home.path, 'environments.toml'), ['[[environments]]', 'id = "production"', `url = "${production.url}"`, 'permissions = ":read-only"'].join('\n'));
    mcp = await startInProcessMcp(home.path);
    // Runtime registration carries a profile too; an unknown one is refused before anything runs.
    const bad = await mcp.call('environment/add', { id: 'staging', url: staging.url, permissions: 'no-such-profile' });
    expect(bad.isError).toBe(true);
    expect(textOf(bad)).toMatch(/unknown permission profile `no-such-profile`; known profiles: .*staging-write/);
    expect((await mcp.call('environment/add', { id: 'staging', url: staging.url, permissions: 'staging-write' })).isError).toBeFalsy();

    steps.push(
      addFile('release.txt', 'v2', 'staging'),
      exec('touch deployed', { environment_id: 'staging' }),
      addFile('release.txt', 'v2', 'production'),
      exec('touch deployed; cat live.txt', { environment_id: 'production' }),
      say('done'),
    );
    // The thread default would allow everything; each environment's own profile still wins.
    const result = await mcp.call('codex', {
      prompt: 'deploy',
      cwd: work.path,
      sandbox: 'danger-full-access',
      environments: [
        { id: 'staging', cwd: staging.cwd },
        { id: 'production', cwd: production.cwd },
      ],
    });
    expect(result.isError).toBeFalsy();
    expect(outputAt(model, 1)).toMatch(/^Success/);
    expect(exitCodeOf(outputAt(model, 2))).toBe(0);
    expect(outputAt(model, 3)).toMatch(/not allowed by the sandbox/);
    const productionRun = outputAt(model, 4);
    expect(productionRun).toMatch(/Read-only file system|Permission denied/);
    expect(productionRun).toContain('live');
    expect(existsSync(join(staging.cwd, 'release.txt'))).toBe(true);
    expect(existsSync(join(staging.cwd, 'deployed'))).toBe(true);
    expect(existsSync(join(production.cwd, 'release.txt'))).toBe(false);
    expect(existsSync(join(production.cwd, 'deployed'))).toBe(false);

    // The model was told, per environment.
    const context = environmentContext(model, 0);
    expect(context).toMatch(/id=\\"staging\\".*<permissions>staging-write: writable: the working directory/);
    expect(context).toMatch(/id=\\"production\\".*<permissions>:read-only: writable: nothing; network: off/);
    expect(context).toContain("the remote executor's own environment");

    // A thread may pick another profile for an environment; status tools show each one's own.
    const listed = await mcp.call('environment/list', {});
    const entries = (listed.structuredContent as { environments: Json[] }).environments;
    expect(entries.find((e) => e.id === 'production')).toMatchObject({ permissions: ':read-only: writable: nothing; network: off', commandEnvironmentBase: 'executor' });
    expect(entries.find((e) => e.id === 'local')).toMatchObject({ commandEnvironmentBase: 'launcher' });
    expect(String(entries.find((e) => e.id === 'local')?.commandEnvironment)).toMatch(
      /launcher.*credentials removed \(names \*KEY\*,\*SECRET\*,\*TOKEN\*,\*PASSWORD\*.*; values holding a URL with a password\)/,
    );

    steps.push(addFile('hotfix.txt', 'fix'), say('fixed'));
    const hotfix = await mcp.call('codex', { prompt: 'hotfix', cwd: work.path, environments: [{ id: 'production', cwd: production.cwd, permissions: ':workspace' }] });
    expect(hotfix.isError).toBeFalsy();
    expect(existsSync(join(production.cwd, 'hotfix.txt'))).toBe(true);
    const unknown = await mcp.call('codex', { prompt: 'x', environments: [{ id: 'production', permissions: 'bogus' }] });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toMatch(/environment `production`: unknown permission profile `bogus`/);
  });

  it.each(['local', 'remote'])('keeps launcher secrets out of commands on %s by default, and refuses login shells', async (where) => {
    mcp = await startInProcessMcp(home.path, { env: { LAUNCHER_API_KEY: 'launcher-secret', LAUNCHER_PLAIN: 'launcher-plain' } });
    let environments: Json[] | undefined;
    if (where === 'remote') {
      const server = await remote({ EXECUTOR_PLAIN: 'executor-plain', EXECUTOR_TOKEN: 'executor-secret' });
      expect((await mcp.call('environment/add', { id: 'box', url: server.url })).isError).toBeFalsy();
      environments = [{ id: 'box', cwd: server.cwd }];
    }
    steps.push(exec('env'), exec('echo hi', { login: true }), say('done'));
    await mcp.call('codex', { prompt: 'env', cwd: work.path, ...(environments === undefined ? {} : { environments }) });
    const env = outputAt(model, 1);
    expect(env).not.toContain('launcher-secret');
    expect(env).not.toContain('executor-secret');
    expect(env).toContain('NO_COLOR=1');
    if (where === 'local') {
      expect(env).toContain('LAUNCHER_PLAIN=launcher-plain');
    } else {
      // The executor's own environment, never this machine's.
      expect(env).toContain('EXECUTOR_PLAIN=executor-plain');
      expect(env).not.toContain('launcher-plain');
    }
    expect(outputAt(model, 2)).toMatch(/login shells are disabled/);
  });

  it.each([
    ['approved', { action: 'accept', content: { decision: 'approve' } }, true],
    ['denied', { action: 'accept', content: { decision: 'deny' } }, false],
  ] as const)('re-runs a command the sandbox denied outside it only when %s (on-failure)', async (_label, answer, runs) => {
    await config(WORKSPACE_ONLY);
    const asked: Json[] = [];
    const reply: ElicitationAnswer = (params) => {
      asked.push(params);
      return answer;
    };
    mcp = await startInProcessMcp(home.path, { answer: reply });
    const target = join(outside.path, 'needs-approval');
    steps.push(exec(`touch ${target}`), say('done'));
    const result = await mcp.call('codex', { prompt: 'write outside', cwd: work.path, sandbox: 'workspace-write', 'approval-policy': 'on-failure' });
    expect(result.isError).toBeFalsy();
    expect(asked).toHaveLength(1);
    expect(String(asked[0]?.message)).toMatch(/local/);
    expect(asked[0]).toMatchObject({ codex_environment_id: 'local' });
    expect(existsSync(target)).toBe(runs);
    const output = outputAt(model, 1);
    expect(output).toMatch(runs ? /user approved running it outside the sandbox/ : /declined to run it outside the sandbox/);
  });

  it('never asks to re-run under never, and fails a sandboxed command clearly when the sandbox cannot start', async () => {
    await config(WORKSPACE_ONLY);
    mcp = await startInProcessMcp(home.path, { answer: () => ({ action: 'accept', content: { decision: 'approve' } }) });
    steps.push(exec(`touch ${join(outside.path, 'never')}`), say('done'));
    await mcp.call('codex', { prompt: 'never', cwd: work.path, sandbox: 'workspace-write', 'approval-policy': 'never' });
    expect(mcp.received.some((m) => isRecord(m) && m.method === 'elicitation/create')).toBe(false);
    expect(existsSync(join(outside.path, 'never'))).toBe(false);
    await mcp.close();

    // No bubblewrap on PATH: the command is refused with the fix, never run unconfined.
    const bin = join(work.path, 'bin');
    await mkdir(bin);
    mcp = await startInProcessMcp(home.path, { env: { PATH: bin } });
    steps.push(exec(`/usr/bin/touch ${join(work.path, 'unconfined')}`), say('done'));
    await mcp.call('codex', { prompt: 'no bwrap', cwd: work.path, sandbox: 'workspace-write' });
    expect(outputAt(model, 3)).toMatch(/exec_command failed: .*bubblewrap.*apt-get install bubblewrap/);
    expect(existsSync(join(work.path, 'unconfined'))).toBe(false);
    // Configured as danger-full-access, so nothing to warn about at start-up.
    expect(mcp.stderr()).not.toContain('confines every command on `local`');
  });

  it('warns once at start-up when the configured sandbox needs bubblewrap and this host has none', async () => {
    const bin = join(work.path, 'bin');
    await mkdir(bin);
    mcp = await startInProcessMcp(home.path, { env: { PATH: bin }, args: ['-c', 'sandbox_mode="read-only"'] });
    const warning =
      /WARN .*the configured sandbox \(sandbox_mode=read-only\) confines every command on `local`, and this host cannot, so each one will be refused: sandboxing needs bubblewrap \(`bwrap`\), which is not installed on this host; install it/;
    await mcp.waitForStderr(warning, 'the missing-bubblewrap warning');
    steps.push(exec('/usr/bin/true'), say('done'));
    await mcp.call('codex', { prompt: 'read-only', cwd: work.path });
    expect(outputAt(model, 1)).toMatch(/exec_command failed: .*bubblewrap.*not installed/);
    expect(mcp.stderr().match(new RegExp(warning.source, 'g'))).toHaveLength(1);
  });
});
