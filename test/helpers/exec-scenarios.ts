import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { ExecClient } from '../../src/exec/client.js';
import { bytesOf } from '../../src/exec/remote-process.js';
import { ProcessRead, ProcessStart } from '../../src/protocol/exec.js';
import { RpcError } from '../../src/rpc/errors.js';
import { tempDir } from './process.js';

/** Something that yields a connected client and tears it down. */
export interface ExecPeer {
  client: ExecClient;
  close: () => Promise<void>;
}

const PATH_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin' };

async function rejection(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RpcError) return error;
    throw error;
  }
  throw new Error('expected the request to fail');
}

/**
 * The behaviour every Codex-compatible exec-server must have, run against one peer. Used for our
 * server (in-process, websocket, stdio) and for the real `codex exec-server`.
 */
export function execScenarios(name: string, connect: () => Promise<ExecPeer>): void {
  describe(name, () => {
    let peer: ExecPeer;
    let work: { path: string; cleanup: () => Promise<void> };
    let http: Server;
    let httpPort = 0;

    beforeAll(async () => {
      peer = await connect();
      work = await tempDir('exec-scenario-');
      http = createServer((request, response) => {
        const chunks: Buffer[] = [];
        request.on('data', (c: Buffer) => chunks.push(c));
        request.on('end', () => {
          if (request.url === '/stream') {
            response.writeHead(200, { 'content-type': 'text/event-stream' });
            response.write('data: one\n\n');
            response.end('data: two\n\n');
            return;
          }
          response.setHeader('x-multi', ['a', 'b']);
          response.writeHead(200, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ method: request.method, url: request.url, body: Buffer.concat(chunks).toString(), test: request.headers['x-test'] }));
        });
      });
      await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
      const address = http.address();
      httpPort = typeof address === 'object' && address !== null ? address.port : 0;
    });

    afterAll(async () => {
      await peer.close();
      await work.cleanup();
      await new Promise((r) => http.close(r));
    });

    it('reports environment info at initialize', () => {
      expect(peer.client.sessionId).toMatch(/\S/);
      expect(typeof peer.client.info.platformOs).toBe('string');
      expect(peer.client.info.shell?.path).toMatch(/\//);
    });

    it('runs echo and delivers output, exit and close in order', async () => {
      const process = await peer.client.startProcess({ argv: ['echo', 'hello'], cwd: work.path, env: PATH_ENV, tty: false });
      const result = await process.collect();
      expect(result.stdout.toString()).toBe('hello\n');
      expect(result.exitCode).toBe(0);
    });

    it('reports a non-zero exit code and stderr', async () => {
      const process = await peer.client.startProcess({ argv: ['/bin/sh', '-c', 'echo out; echo err 1>&2; exit 3'], cwd: work.path, env: {}, tty: false });
      const result = await process.collect();
      expect(result.exitCode).toBe(3);
      expect(result.stdout.toString()).toBe('out\n');
      expect(result.stderr.toString()).toBe('err\n');
    });

    it('feeds stdin through process/write and terminates with 137', async () => {
      const process = await peer.client.startProcess({ argv: ['cat'], cwd: work.path, env: PATH_ENV, tty: false, pipeStdin: true });
      expect(await process.write('hello stdin\n')).toBe('accepted');
      let seen = '';
      while (!seen.includes('hello stdin')) {
        await process.waitForEvents(10_000);
        for (const event of process.drain()) if (event.kind === 'output') seen += event.data.toString();
      }
      expect(await process.terminate()).toBe(true);
      const rest = await process.collect();
      expect(rest.exitCode).toBe(137);
    });

    it('runs a tty process with echo and CRLF', async () => {
      const process = await peer.client.startProcess({
        argv: ['/bin/sh', '-c', 'printf "ready\\n"; read line; printf "got:%s\\n" "$line"'],
        cwd: work.path,
        env: { TERM: 'dumb' },
        tty: true,
      });
      let seen = '';
      while (!seen.includes('ready')) {
        await process.waitForEvents(10_000);
        for (const event of process.drain()) if (event.kind === 'output') seen += event.data.toString();
      }
      await process.write('abc\n');
      const rest = await process.collect();
      expect(seen + rest.pty.toString()).toContain('got:abc\r\n');
      expect(rest.exitCode).toBe(0);
    });

    it.each([
      ['a terminal', true, 'pty'],
      ['pipes', false, 'stdout'],
    ] as const)('delivers all of a burst on %s written just before the exit, before closed', async (_name, tty, stream) => {
      // More than a terminal holds at once, so reads are still due when the exit is known.
      const bytes = 60_000;
      for (let run = 0; run < 3; run++) {
        const process = await peer.client.startProcess({ argv: ['/bin/sh', '-c', `head -c ${bytes} /dev/zero | tr '\\0' x`], cwd: work.path, env: PATH_ENV, tty });
        const result = await process.collect();
        expect({ run, exitCode: result.exitCode, bytes: result[stream].length }).toEqual({ run, exitCode: 0, bytes });
      }
    });

    it('interrupts with SIGINT (exit 130)', async () => {
      const process = await peer.client.startProcess({ argv: ['/bin/sleep', '30'], cwd: work.path, env: {}, tty: false });
      await process.interrupt();
      expect((await process.collect()).exitCode).toBe(130);
    });

    it('gives the child exactly env without an envPolicy, and applies a policy when given', async () => {
      const bare = await peer.client.startProcess({ argv: ['/usr/bin/env'], cwd: work.path, env: { ONLY: '1' }, tty: false });
      expect((await bare.collect()).stdout.toString()).toBe('ONLY=1\n');
      const policed = await peer.client.startProcess({
        argv: ['/usr/bin/env'],
        cwd: work.path,
        env: { FOO: 'bar' },
        tty: false,
        envPolicy: { inherit: 'none', ignoreDefaultExcludes: true, exclude: [], set: { FOO: 'policy', SET: 'yes' }, includeOnly: [] },
      });
      const lines = (await policed.collect()).stdout.toString().trim().split('\n').sort();
      expect(lines).toEqual(['FOO=bar', 'SET=yes']);
    });

    it('starts bash with a piped stdin as a plain non-interactive shell: ~/.bashrc is not read, even without SHLVL', async () => {
      await writeFile(join(work.path, '.bashrc'), `touch ${join(work.path, 'bashrc-was-read')}\n`);
      const shell = await peer.client.startProcess({
        argv: ['/bin/bash', '-c', 'echo ran'],
        cwd: work.path,
        env: { HOME: work.path, PATH: '/usr/bin:/bin' },
        tty: false,
        pipeStdin: true,
      });
      const { exitCode, stdout } = await shell.collect();
      expect({ exitCode, stdout: stdout.toString() }).toEqual({ exitCode: 0, stdout: 'ran\n' });
      expect(existsSync(join(work.path, 'bashrc-was-read'))).toBe(false);
    });

    it('reads, writes, lists, copies, canonicalizes and removes files', async () => {
      const dir = join(work.path, 'fs demo', 'sub');
      await peer.client.createDirectory(dir);
      const file = join(work.path, 'fs demo', 'hello ü.txt');
      await peer.client.writeFile(file, 'hello file\n');
      expect((await peer.client.readFile(file)).toString()).toBe('hello file\n');
      const entries = await peer.client.readDirectory(join(work.path, 'fs demo'));
      expect(entries.map((e) => e.fileName).sort()).toEqual(['hello ü.txt', 'sub']);
      const meta = await peer.client.getMetadata(file);
      expect(meta).toMatchObject({ isFile: true, isDirectory: false, size: 11 });
      await peer.client.copy(file, join(dir, 'copy.txt'), false);
      expect((await peer.client.readFile(join(dir, 'copy.txt'))).toString()).toBe('hello file\n');
      expect(await peer.client.canonicalize(join(dir, '..', 'hello ü.txt'))).toBe(new URL(`file://${file}`).href);
      await peer.client.remove(join(work.path, 'fs demo'));
      const missing = await rejection(peer.client.readFile(file));
      expect(missing.code).toBe(-32004);
    });

    it('makes HTTP requests from the executor, buffered and streamed', async () => {
      const response = await peer.client.fetch(`http://127.0.0.1:${httpPort}/echo?x=1`, { method: 'POST', body: 'ping', headers: { 'x-test': '1' } });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ method: 'POST', url: '/echo?x=1', body: 'ping', test: '1' });
      const stream = await peer.client.fetch(`http://127.0.0.1:${httpPort}/stream`);
      expect(stream.headers.get('content-type')).toBe('text/event-stream');
      expect(await stream.text()).toBe('data: one\n\ndata: two\n\n');
    });

    it('answers bad requests with clear JSON-RPC errors and stays usable', async () => {
      const first = await peer.client.startProcess({ processId: `dup-${name}`, argv: ['true'], cwd: work.path, env: PATH_ENV, tty: false });
      await first.collect();
      const duplicate = await rejection(peer.client.request(ProcessStart, { processId: `dup-${name}`, argv: ['true'], cwd: `file://${work.path}`, env: {}, tty: false }));
      expect(duplicate.code).toBe(-32600);
      expect(duplicate.message).toContain('already exists');
      const empty = await rejection(peer.client.request(ProcessStart, { processId: `empty-${name}`, argv: [], cwd: `file://${work.path}`, env: {}, tty: false }));
      expect(empty).toMatchObject({ code: -32602, message: 'argv must not be empty' });
      const relative = await rejection(peer.client.request(ProcessStart, { processId: `rel-${name}`, argv: ['true'], cwd: work.path, env: {}, tty: false }));
      expect(relative.code).toBe(-32602);
      const unknown = await rejection(peer.client.request(ProcessRead, { processId: 'never-started' }));
      expect(unknown).toMatchObject({ code: -32600, message: 'unknown process id never-started' });
      const after = await peer.client.startProcess({ argv: ['echo', 'still fine'], cwd: work.path, env: PATH_ENV, tty: false });
      expect((await after.collect()).stdout.toString()).toBe('still fine\n');
    });

    it('replays retained output with process/read after the process closed', async () => {
      const process = await peer.client.startProcess({ argv: ['/bin/sh', '-c', 'echo a; echo b'], cwd: work.path, env: {}, tty: false });
      await process.collect();
      const read = await peer.client.request(ProcessRead, { processId: process.id, afterSeq: 0 });
      expect(Buffer.concat(read.chunks.map((c) => bytesOf(c.chunk))).toString()).toBe('a\nb\n');
      expect(read).toMatchObject({ exited: true, exitCode: 0, closed: true });
      expect(read.nextSeq).toBeGreaterThan(read.chunks.length);
    });

    it('answers many concurrent requests', async () => {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => peer.client.getMetadata(i % 2 === 0 ? work.path : '/')));
      expect(results.every((r) => r.isDirectory)).toBe(true);
    });
  });
}
