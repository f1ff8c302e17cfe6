import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ThreadProcessTable } from '../../src/agent/process-table.js';
import { execCommandTool, writeStdinTool } from '../../src/agent/tools/exec-command.js';
import { ToolError, type FunctionTool, type ToolContext, type TurnEnvironment } from '../../src/agent/tools/tool.js';
import { stdioConnector, websocketConnector } from '../../src/environments/connectors.js';
import { Environment } from '../../src/environments/environment.js';
import type { ExecClient, ExecClientState, ExecConnector } from '../../src/exec/client.js';
import { singleEnvironmentToolContext } from '../helpers/tool-context.js';
import { CLI, startOurWsExecServer, startTcpProxy, tempDir, type ListeningProcess } from '../helpers/process.js';

// A remote exec-server that dies (kill -9) must not look alive to the model: while the client
// resumes a dropped session, results say the environment is reconnecting instead of "Process
// running"; a refused connection (nothing listens any more) ends the wait at once and the process
// is reported lost. The reconnect window is far longer than a test may run, so a client that
// waited it out would fail the test instead of passing late.

const RECONNECT_WINDOW_MS = 60 * 60_000;
const RUNNING = /^Process running with session ID/m;

interface Box {
  environment: Environment;
  ctx: ToolContext;
  processes: ThreadProcessTable;
}

/** Our environment `box` through `connector`, and a tool context whose only environment it is. */
function box(connector: ExecConnector, kind: 'websocket' | 'stdio', cwd: string): Box {
  const environment = new Environment({ id: 'box', kind, endpoint: connector.label, source: 'test', connector, client: { reconnectWindowMs: RECONNECT_WINDOW_MS } });
  const turnEnvironment: TurnEnvironment = { id: 'box', cwd, client: (signal) => environment.client(signal) };
  const processes = new ThreadProcessTable();
  const ctx = singleEnvironmentToolContext(turnEnvironment, { threadId: 'thread-killed', processes });
  return { environment, ctx, processes };
}

/** Runs a tool and returns its text output (these tools answer with text). */
async function call(tool: FunctionTool, args: Record<string, unknown>, ctx: ToolContext): Promise<string> {
  const output = await tool.run(args, ctx);
  if (typeof output !== 'string') throw new Error(`expected text from ${tool.name}, got ${JSON.stringify(output)}`);
  return output;
}

/** Resolves when `client` enters `state` (at once when it is there already). */
function untilState(client: ExecClient, state: ExecClientState): Promise<void> {
  if (client.state === state) return Promise.resolve();
  return new Promise((resolve) => {
    const off = client.onStateChange((next) => {
      if (next !== state) return;
      off();
      resolve();
    });
  });
}

/** The exec-server's own environment: nothing ambient (SHELL, HOME) leaks into what it reports. */
function serverEnv(home: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, SHELL: '/bin/bash' };
}

/**
 * A command that prints `<marker> <pid> <parent pid>` and then a tick every 0.1 s forever. Once
 * its exec-server is gone, the next tick hits a closed pipe and ends it (SIGPIPE).
 */
function tickingCommand(marker: string): string {
  return `echo "${marker} $$ $PPID"; while :; do echo tick; sleep 0.1; done`;
}

/** The `<pid> <parent pid>` that {@link tickingCommand} printed. */
function pids(output: string, marker: string): { pid: number; parent: number } {
  const match = new RegExp(`${marker} (\\d+) (\\d+)`).exec(output);
  if (match === null) throw new Error(`no pids in ${JSON.stringify(output)}`);
  return { pid: Number(match[1]), parent: Number(match[2]) };
}

/** The command line of `pid`, or '' once it is gone. */
function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Stops the ticking command the test started if it is still there (its command line carries the marker). */
function stopCommand(pid: number | undefined, marker: string): void {
  if (pid === undefined || !commandLine(pid).includes(marker)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // It ended meanwhile.
  }
}

/** Kills the exec-server the test started and waits for it to be gone. */
async function kill9(server: ListeningProcess): Promise<void> {
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGKILL');
  await exited;
}

describe('a killed or unreachable exec-server does not look alive', () => {
  const execCommand = execCommandTool({ multiEnvironment: false });
  const writeStdin = writeStdinTool();

  it('websocket: after kill -9 the poll reports the process lost at once, and the environment disconnected with the reason', async () => {
    const tmp = await tempDir('killed-ws-');
    const ws = join(tmp.path, 'ws');
    await mkdir(ws);
    await mkdir(join(tmp.path, 'home'));
    const server = await startOurWsExecServer([], serverEnv(join(tmp.path, 'home')));
    const { environment, ctx, processes } = box(websocketConnector(server.url), 'websocket', ws);
    const marker = `killed-ws-${randomBytes(4).toString('hex')}`;
    let command: number | undefined;
    try {
      let seen = await call(execCommand, { cmd: tickingCommand(marker), yield_time_ms: 250 }, ctx);
      expect(seen).toMatch(RUNNING);
      while (!seen.includes(marker)) seen += await call(writeStdin, { session_id: 1 }, ctx);
      command = pids(seen, marker).pid;
      const client = await environment.client();

      await kill9(server);
      // Without the fix the client retried the refused connection for the whole (hour-long)
      // window: this poll then waited out its yield time and said "Process running".
      const poll = await call(writeStdin, { session_id: 1, yield_time_ms: 30_000 }, ctx);
      expect(poll).not.toMatch(RUNNING);
      expect(poll).toMatch(
        new RegExp(
          `^Process lost \\(session ID 1 is closed\\): environment box is disconnected: lost the session on ${server.url}: nothing listens there any more \\(connection refused\\), so the session cannot be resumed\\. The command may still be running there or may have ended; its further output cannot be read\\.$`,
          'm',
        ),
      );
      expect(client.state).toBe('closed');
      expect(processes.sessionIds()).toEqual([]);
      expect(environment.describe()).toMatchObject({
        status: 'disconnected',
        error: `lost the session on ${server.url}: nothing listens there any more (connection refused), so the session cannot be resumed`,
      });

      // The session is gone, and so is the process's session id; a new command says why it cannot run.
      await expect(writeStdin.run({ session_id: 1 }, ctx)).rejects.toThrow('unknown session_id 1; running sessions: none');
      const again = execCommand.run({ cmd: 'echo again' }, ctx);
      await expect(again).rejects.toThrow(ToolError);
      await expect(again).rejects.toThrow(`environment box is unavailable: failed to connect to exec-server websocket \`${server.url}\`: connection refused`);
    } finally {
      stopCommand(command, marker);
      await environment.close();
      await server.stop();
      await tmp.cleanup();
    }
  });

  it('websocket: while a dropped connection is resumed, polls say the environment is reconnecting, and no output is lost once it is back', async () => {
    const tmp = await tempDir('reconnecting-ws-');
    const ws = join(tmp.path, 'ws');
    await mkdir(ws);
    await mkdir(join(tmp.path, 'home'));
    const server = await startOurWsExecServer([], serverEnv(join(tmp.path, 'home')));
    const proxy = await startTcpProxy(Number(new URL(server.url).port));
    const url = `ws://127.0.0.1:${proxy.port}`;
    const { environment, ctx } = box(websocketConnector(url), 'websocket', ws);
    try {
      const script = 'echo one; while [ ! -e go ]; do sleep 0.02; done; echo two; exit 4';
      let seen = await call(execCommand, { cmd: script, yield_time_ms: 250 }, ctx);
      expect(seen).toMatch(RUNNING);
      while (!seen.includes('one\n')) seen += await call(writeStdin, { session_id: 1 }, ctx);
      const client = await environment.client();

      // The server stays alive; the network between drops and new connections are cut at once
      // (reset, not refused), so the client keeps trying.
      proxy.pause();
      proxy.cut();
      await untilState(client, 'reconnecting');
      const poll = await call(writeStdin, { session_id: 1, chars: 'ignored\n' }, ctx);
      expect(poll).not.toMatch(RUNNING);
      const since = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
      expect(poll).toMatch(
        new RegExp(
          `^Note: environment box is reconnecting to ${url} \\(attempt \\d+, since ${since}\\): .+; the characters were not written, send them again once it is back\\.$`,
          'm',
        ),
      );
      expect(poll).toMatch(
        new RegExp(
          `^Process state unknown with session ID 1: environment box is reconnecting to ${url} \\(attempt \\d+, since ${since}\\): .+\\. Its output resumes if the session is resumed; poll again with write_stdin\\.$`,
          'm',
        ),
      );
      const status = environment.describe();
      expect(status.status).toBe('pending');
      expect(status.error).toMatch(new RegExp(`^reconnecting to ${url} \\(attempt \\d+, since ${since}\\): `));

      await writeFile(join(ws, 'go'), '');
      proxy.resume();
      let rest = '';
      for (;;) {
        const result = await call(writeStdin, { session_id: 1, yield_time_ms: 5000 }, ctx);
        rest += /\nOutput:\n([\s\S]*)$/.exec(result)?.[1] ?? '';
        if (/^Process exited with code 4$/m.test(result)) break;
        expect(result).toMatch(/^Process (running|state unknown) with session ID 1/m);
      }
      expect(rest).toBe('two\n');
      expect(client.state).toBe('connected');
      expect(environment.describe().status).toBe('ready');
    } finally {
      await environment.close();
      await proxy.close();
      await server.stop();
      await tmp.cleanup();
    }
  });

  it('stdio: after kill -9 of the exec-server the poll reports the process lost at once', async () => {
    const tmp = await tempDir('killed-stdio-');
    const ws = join(tmp.path, 'ws');
    await mkdir(ws);
    await mkdir(join(tmp.path, 'home'));
    const connector = stdioConnector({ program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'], env: serverEnv(join(tmp.path, 'home')) });
    const { environment, ctx, processes } = box(connector, 'stdio', ws);
    const marker = `killed-stdio-${randomBytes(4).toString('hex')}`;
    let command: number | undefined;
    try {
      let seen = await call(execCommand, { cmd: tickingCommand(marker), yield_time_ms: 250 }, ctx);
      expect(seen).toMatch(RUNNING);
      while (!seen.includes(marker)) seen += await call(writeStdin, { session_id: 1 }, ctx);
      const { pid, parent } = pids(seen, marker);
      command = pid;
      // The command's parent is the exec-server this test started over stdio: kill exactly it.
      expect(commandLine(parent)).toContain(`${CLI} exec-server --listen stdio`);
      const client = await environment.client();
      process.kill(parent, 'SIGKILL');

      const poll = await call(writeStdin, { session_id: 1, yield_time_ms: 30_000 }, ctx);
      expect(poll).not.toMatch(RUNNING);
      expect(poll).toMatch(
        /^Process lost \(session ID 1 is closed\): environment box is disconnected: lost the connection to stdio:.+\. The command may still be running there or may have ended; its further output cannot be read\.$/m,
      );
      expect(client.state).toBe('closed');
      expect(processes.sessionIds()).toEqual([]);
      expect(environment.describe()).toMatchObject({ status: 'disconnected', error: expect.stringMatching(/^lost the connection to stdio:/) as unknown });
    } finally {
      stopCommand(command, marker);
      await environment.close();
      await tmp.cleanup();
    }
  });
});
