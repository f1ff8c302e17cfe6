import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { functionCallOutputs, startFakeResponsesServer, type FakeResponsesServer } from '../../tools/fake-responses-server.js';
import { codexHomeForFakeModel } from '../helpers/codex-home.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, CODEX, runCommand, startOurWsExecServer, tempDir, type ListeningProcess } from '../helpers/process.js';

// The real Codex 0.169.0 (`codex exec`) as a client of OUR exec-server, configured through
// environments.toml and driven by the scripted fake model.

function runCodexExec(codexHome: string, cwd: string, env: NodeJS.ProcessEnv): ReturnType<typeof runCommand> {
  return runCommand(CODEX, ['exec', '--skip-git-repo-check', '-C', cwd, 'Please do the scripted task.'], { ...env, CODEX_HOME: codexHome, FAKE_MODEL_API_KEY: 'test-key' });
}

function script(marker: string) {
  return [
    {
      kind: 'output' as const,
      items: [{ type: 'function_call' as const, name: 'exec_command', arguments: { cmd: `echo ran-on-$MARK; echo ${marker} > marker.txt`, environment_id: 'ours' } }],
    },
    {
      kind: 'output' as const,
      items: [
        {
          type: 'custom_tool_call' as const,
          name: 'apply_patch',
          input: '*** Begin Patch\n*** Environment ID: ours\n*** Add File: patched.txt\n+written through our exec-server\n*** End Patch\n',
        },
      ],
    },
    { kind: 'output' as const, items: [{ type: 'message' as const, text: 'all done' }] },
  ];
}

describe.each(['websocket', 'stdio'] as const)('real codex exec against our exec-server over %s', (transport) => {
  let model: FakeResponsesServer;
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let server: ListeningProcess | undefined;
  let logFile: string;

  beforeAll(async () => {
    model = await startFakeResponsesServer({ script: script(`marker-${transport}`) });
    work = await tempDir('codex-client-');
    logFile = join(work.path, 'exec-server.log');
    let entry: string;
    if (transport === 'websocket') {
      server = await startOurWsExecServer(['--log-level', 'trace'], { ...networkEnv(process.env), MARK: 'ours-ws', CODEX_MULTIENV_LOG_FILE: logFile });
      entry = `url = "${server.url}"`;
    } else {
      const env = `env = { MARK = "ours-stdio", CODEX_MULTIENV_LOG = "trace", CODEX_MULTIENV_LOG_FILE = ${JSON.stringify(logFile)} }`;
      entry = [`program = ${JSON.stringify(process.execPath)}`, `args = ${JSON.stringify([CLI, 'exec-server', '--listen', 'stdio'])}`, env].join('\n');
    }
    home = await codexHomeForFakeModel(model.url);
    await writeFile(join(home.path, 'environments.toml'), `default = "ours"\ninclude_local = true\n\n[[environments]]\nid = "ours"\n${entry}\n`);
  });

  afterAll(async () => {
    await server?.stop();
    await model.close();
    await home.cleanup();
    await work.cleanup();
  });

  it('runs exec_command and apply_patch through our exec-server', async () => {
    const run = await runCodexExec(home.path, work.path, networkEnv(process.env));
    expect({ code: run.code, errors: model.errors }).toEqual({ code: 0, errors: [] });
    expect(run.stdout).toContain('all done');
    const mark = transport === 'websocket' ? 'ours-ws' : 'ours-stdio';
    const outputs = model.requests.flatMap((request) => functionCallOutputs(request));
    expect(JSON.stringify(outputs)).toContain(`ran-on-${mark}`);
    expect((await readFile(join(work.path, 'marker.txt'), 'utf8')).trim()).toBe(`marker-${transport}`);
    expect(await readFile(join(work.path, 'patched.txt'), 'utf8')).toBe('written through our exec-server\n');
    // The patch went through our server's filesystem methods, not Codex's local ones.
    const log = await readFile(logFile, 'utf8');
    expect(log).toContain('"method":"process/start"');
    expect(log).toContain('"method":"fs/writeFile"');
  });
});
