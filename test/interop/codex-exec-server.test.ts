import { ExecClient } from '../../src/exec/client.js';
import { stdioConnector, websocketConnector } from '../../src/environments/connectors.js';
import { execScenarios } from '../helpers/exec-scenarios.js';
import { networkEnv } from '../helpers/network.js';
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
  const client = await ExecClient.connect(
    stdioConnector({ program: CODEX, args: ['exec-server', '--listen', 'stdio'], env: { ...networkEnv(process.env), CODEX_HOME: home.path } }),
  );
  return {
    client,
    close: async () => {
      await client.close();
      await home.cleanup();
    },
  };
});

describe('the default excludes on the real codex exec-server', () => {
  it('drops the credentials Codex’s own defaults miss (PGPASSWORD, DATABASE_URL, MYSQL_PWD): our client lists them in exclude', async () => {
    const home = await tempDir('codex-home-');
    const credentials = { PGPASSWORD: 'pg-secret', DATABASE_URL: 'postgres://u:db-secret@h/db', MYSQL_PWD: 'mysql-secret' };
    const client = await ExecClient.connect(
      stdioConnector({ program: CODEX, args: ['exec-server', '--listen', 'stdio'], env: { ...networkEnv(process.env), CODEX_HOME: home.path, HOME: home.path, ...credentials } }),
    );
    try {
      const env = await client.startProcess({
        argv: ['/usr/bin/env'],
        cwd: home.path,
        env: {},
        tty: false,
        envPolicy: { inherit: 'all', ignoreDefaultExcludes: false, exclude: [], set: {}, includeOnly: [] },
      });
      const lines = (await env.collect()).stdout.toString().split('\n');
      const names = lines.map((line) => line.slice(0, line.indexOf('=')));
      expect(names).toEqual(expect.arrayContaining(['HOME', 'PATH']));
      expect(names.filter((name) => name in credentials)).toEqual([]);
    } finally {
      await client.close();
      await home.cleanup();
    }
  });
});
