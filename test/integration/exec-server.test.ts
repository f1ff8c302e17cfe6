import { homedir, tmpdir } from 'node:os';
import { ExecClient } from '../../src/exec/client.js';
import { ExecServer } from '../../src/exec/server.js';
import { localConnector, stdioConnector, websocketConnector } from '../../src/environments/connectors.js';
import { NATIVE_SPAWN_ENV } from '../../src/exec/piped-start.js';
import { execScenarios } from '../helpers/exec-scenarios.js';
import { CLI, startOurWsExecServer } from '../helpers/process.js';

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
