import { homedir, tmpdir } from 'node:os';
import { localConnector } from '../../src/environments/connectors.js';
import { ExecClient } from '../../src/exec/client.js';
import { ExecServer } from '../../src/exec/server.js';

it('probe', async () => {
  const server = new ExecServer({ env: process.env, host: { env: process.env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' } });
  const client = await ExecClient.connect(localConnector(server));
  const codes: number[] = [];
  for (const cmd of Array.from({ length: 20 }, () => 'cat; echo rc=$?; sleep 0.2')) {
    const p = await client.startProcess({ argv: ['/bin/bash', '-c', cmd], cwd: process.cwd(), env: {}, envPolicy: { inherit: 'all', ignoreDefaultExcludes: true, exclude: [], set: {}, includeOnly: [] }, tty: true, pipeStdin: false });
    await new Promise((r) => setTimeout(r, 300));
    await p.write('ping\n');
    let out = '';
    for await (const e of p.events()) {
      if (e.kind === 'output') { out += e.data.toString(); if (/ping\r\nping\r\n/.test(out)) { await new Promise((r) => setTimeout(r, 300)); await p.write('\u0004'); } }
      else if (e.kind === 'exited') codes.push(`${e.exitCode}:${JSON.stringify(out)}`);
    }
  }
  console.log('CODES', codes.join(','));
  await client.close(); await server.close();
});
