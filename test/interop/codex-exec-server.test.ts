import { ExecClient } from '../../src/exec/client.js';
import { stdioConnector, websocketConnector } from '../../src/environments/connectors.js';
import { execScenarios } from '../helpers/exec-scenarios.js';
import { CODEX, startCodexWsExecServer, tempDir } from '../helpers/process.js';

// Our client against the real `codex exec-server` 0.169.0 (pinned in package.json).

execScenarios('real codex exec-server over websocket', async () => {
  const home = await tempDir('codex-home-');
  const server = await startCodexWsExecServer(home.path);
  const client = await ExecClient.connect(websocketConnector(server.url));
  return {
    client,
    close: async () => {
      await client.close();
      await server.stop();
      await home.cleanup();
    },
  };
});

execScenarios('real codex exec-server over stdio', async () => {
  const home = await tempDir('codex-home-');
  const client = await ExecClient.connect(stdioConnector({ program: CODEX, args: ['exec-server', '--listen', 'stdio'], env: { ...process.env, CODEX_HOME: home.path } }));
  return {
    client,
    close: async () => {
      await client.close();
      await home.cleanup();
    },
  };
});
