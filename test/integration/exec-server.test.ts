import { homedir, tmpdir } from 'node:os';
import { ExecClient } from '../../src/exec/client.js';
import { ExecServer } from '../../src/exec/server.js';
import { localConnector, stdioConnector, websocketConnector } from '../../src/environments/connectors.js';
import { NATIVE_SPAWN_ENV } from '../../src/exec/native-spawn-env.js';
import { execScenarios } from '../helpers/exec-scenarios.js';
import { CLI, isAlive, startOurWsExecServer, tempDir, waitFor } from '../helpers/process.js';

const host = { env: process.env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' };

execScenarios('our exec-server in-process', async () => {
  const server = new ExecServer({ env: process.env, host });
  const client = await ExecClient.connect(localConnector(server));
  return {
    client,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
});

execScenarios('our exec-server over websocket', async () => {
  const server = await startOurWsExecServer();
  const client = await ExecClient.connect(websocketConnector(server.url));
  return {
    client,
    close: async () => {
      await client.close();
      await server.stop();
    },
  };
});

execScenarios('our exec-server over stdio', async () => {
  const client = await ExecClient.connect(stdioConnector({ program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'], env: process.env }));
  return { client, close: () => client.close() };
});

// The fallback when the native starter is not built: Node.js's child_process.
execScenarios('our exec-server over stdio, commands started by child_process', async () => {
  const env = { ...process.env, [NATIVE_SPAWN_ENV]: '0' };
  const client = await ExecClient.connect(stdioConnector({ program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'], env }));
  return { client, close: () => client.close() };
});

// The `local` environment is this in-process server: closing its connection (the environment) or
// the server (the MCP server's shutdown) ends the session, which kills every process group it
// started, also the background jobs of commands that already exited.
describe('our in-process exec-server ends background jobs with its session', () => {
  it.each([
    ['its connection closes', async (client: ExecClient) => client.close()],
    ['the server closes', async (_client: ExecClient, server: ExecServer) => server.close()],
  ])('when %s', async (_name, end) => {
    const work = await tempDir('exec-local-job-');
    const server = new ExecServer({ env: { PATH: '/usr/bin:/bin' }, host });
    const client = await ExecClient.connect(localConnector(server));
    let pid = 0;
    let gone = false;
    try {
      const job = await client.startProcess({ argv: ['/bin/sh', '-c', 'sleep 300 & echo $!; echo bye'], cwd: work.path, env: { PATH: '/usr/bin:/bin' }, tty: false });
      let stdout = '';
      while (job.exitCode === undefined || !stdout.endsWith('bye\n')) {
        await job.waitForEvents(20_000);
        for (const event of job.drain()) if (event.kind === 'output') stdout += event.data.toString();
        // Known as soon as printed, so a failure after that still cleans up.
        if (pid === 0 && stdout.includes('\n')) pid = Number(stdout.split('\n')[0]);
      }
      expect(job.exitCode).toBe(0);
      expect(isAlive(pid)).toBe(true);
      await end(client, server);
      await waitFor(() => !isAlive(pid), `background job ${pid} to be killed`);
      gone = true;
    } finally {
      if (!gone && pid > 0 && isAlive(pid)) process.kill(pid, 'SIGKILL');
      await client.close();
      await server.close();
      await work.cleanup();
    }
  });
});
