import { homedir, tmpdir } from 'node:os';
import { localConnector } from '../../src/environments/connectors.js';
import { ExecClient } from '../../src/exec/client.js';
import { ExecServer } from '../../src/exec/server.js';

it('probe', async () => {
  const server = new ExecServer({ env: process.env, host: { env: process.env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' } });
  const client = await ExecClient.connect(localConnector(server));
  const variants: [string, RegExp, string][] = [
    ['read line; echo "got:$line"; read line2; echo "x$line2"', /got:ping\r\n/, 'end\n'],
    ['exec cat', /ping\r\nping\r\n/, '\u0004'],
    ['cat', /ping\r\nping\r\n/, '\u0004'],
  ];
  const codes: Record<string, string[]> = {};
  for (let i = 0; i < 45; i++) {
    const [cmd, pattern, second] = variants[i % 3]!;
    const p = await client.startProcess({ argv: ['/bin/bash', '-c', cmd], cwd: process.cwd(), env: {}, envPolicy: { inherit: 'all', ignoreDefaultExcludes: true, exclude: [], set: {}, includeOnly: [] }, tty: true, pipeStdin: false });
    await p.write('ping\n');
    let out = '';
    let sent = false;
    for await (const e of p.events()) {
      if (e.kind === 'output') { out += e.data.toString(); if (!sent && pattern.test(out)) { sent = true; await p.write(second); } }
      else if (e.kind === 'exited') (codes[cmd] ??= []).push(String(e.exitCode));
    }
  }
  console.log('CODES', JSON.stringify(codes));
  await client.close(); await server.close();
});
