import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExecClient } from '../../src/exec/client.js';
import type { RemoteProcess } from '../../src/exec/remote-process.js';
import { websocketConnector } from '../../src/environments/connectors.js';
import { startOurWsExecServer, startTcpProxy, tempDir, waitFor, type ListeningProcess } from '../helpers/process.js';

// Every process's output and exit reach the client over our websocket exec-server: under many
// concurrent processes on a few connections, and across a dropped connection during which the
// processes printed, exited and closed (their notifications were dropped and must be replayed).

const SHELL = '/bin/sh';
const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

let server: ListeningProcess;

beforeAll(async () => {
  server = await startOurWsExecServer();
});

afterAll(async () => {
  await server.stop();
});

function run(client: ExecClient, script: string, cwd: string): Promise<RemoteProcess> {
  return client.startProcess({ argv: [SHELL, '-c', script], cwd, env: ENV, tty: false });
}

test('many concurrent short processes on a few websocket connections each report their output and exit', async () => {
  const dir = await tempDir('exec-gaps-');
  const clients = await Promise.all([0, 1].map(() => ExecClient.connect(websocketConnector(server.url))));
  try {
    const count = 120;
    const results = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const client = clients[i % clients.length];
        if (client === undefined) throw new Error('no client');
        const proc = await run(client, `echo out-${i}; echo err-${i} >&2; exit ${i % 7}`, dir.path);
        const collected = await proc.collect();
        return { i, stdout: collected.stdout.toString(), stderr: collected.stderr.toString(), exitCode: collected.exitCode };
      }),
    );
    for (const result of results) {
      expect(result).toEqual({ i: result.i, stdout: `out-${result.i}\n`, stderr: `err-${result.i}\n`, exitCode: result.i % 7 });
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await dir.cleanup();
  }
});

test('output and exits produced while the connection is down are replayed whole once it resumes, alongside live output', async () => {
  const dir = await tempDir('exec-gaps-');
  const proxy = await startTcpProxy(Number(new URL(server.url).port));
  const client = await ExecClient.connect(websocketConnector(`ws://127.0.0.1:${proxy.port}`));
  try {
    const go = join(dir.path, 'go');
    const count = 20;
    // Each prints `ready` and waits for the go file; then, while the connection is down, prints on
    // both streams and marks itself done. Even ones exit at once (only a replay can bring their
    // events); odd ones go on printing across the resume, so live notifications on the new
    // connection race the replays.
    const tail = (i: number): string[] => (i % 2 === 0 ? [] : Array.from({ length: 30 }, (_, k) => `line-${k}`));
    const procs = await Promise.all(
      Array.from({ length: count }, (_, i) => {
        const loop = tail(i).length === 0 ? '' : `for k in $(seq 0 29); do echo line-$k; sleep 0.005; done; `;
        return run(client, `echo ready-${i}; while [ ! -e go ]; do sleep 0.05; done; echo after-${i}; echo more-${i} >&2; touch done-${i}; ${loop}exit 3`, dir.path);
      }),
    );
    // Everything before the drop arrives live.
    await Promise.all(procs.map((proc, i) => waitForOutput(proc, `ready-${i}\n`)));
    proxy.pause();
    proxy.cut();
    await waitFor(() => client.state === 'reconnecting', 'the client to notice the drop');
    await writeFile(go, '');
    await waitFor(() => Array.from({ length: count }, (_, i) => existsSync(join(dir.path, `done-${i}`))).every(Boolean), 'every process to finish while disconnected');
    proxy.resume();
    const rest = await Promise.all(procs.map((proc) => proc.collect()));
    rest.forEach((collected, i) => {
      expect({ stdout: collected.stdout.toString(), stderr: collected.stderr.toString(), exitCode: collected.exitCode }).toEqual({
        stdout: [`after-${i}`, ...tail(i)].map((line) => `${line}\n`).join(''),
        stderr: `more-${i}\n`,
        exitCode: 3,
      });
    });
    expect(client.state).toBe('connected');
  } finally {
    await client.close();
    await proxy.close();
    await dir.cleanup();
  }
});

/** Consumes the process's events until its stdout so far is exactly `text`. */
async function waitForOutput(proc: RemoteProcess, text: string): Promise<void> {
  let seen = '';
  while (seen !== text) {
    await proc.waitForEvents(60_000);
    for (const event of proc.drain()) {
      if (event.kind === 'output' && event.stream === 'stdout') seen += event.data.toString();
      else throw new Error(`unexpected ${event.kind} before ${JSON.stringify(text)} (stdout so far ${JSON.stringify(seen)})`);
    }
    if (!text.startsWith(seen)) throw new Error(`unexpected stdout ${JSON.stringify(seen)}, wanted ${JSON.stringify(text)}`);
  }
}
