import { writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecClient } from '../../src/exec/client.js';
import { DEFAULT_QUEUED_OUTPUT_BYTES } from '../../src/exec/remote-process.js';
import { ExecServer } from '../../src/exec/server.js';
import { localConnector } from '../../src/environments/connectors.js';
import { Initialize, Initialized, ProcessClosed, ProcessExited, ProcessOutput, ProcessRead, ProcessStart } from '../../src/protocol/exec.js';
import { RpcConnection } from '../../src/rpc/connection.js';
import { createMemoryPair } from '../../src/transport/memory.js';
import { deferred } from '../../src/util/deferred.js';
import { tempDir } from '../helpers/process.js';

// The `local` environment: our exec-server's handlers reached through a memory pair that hands
// output over as the pipe's Buffers (no base64, no JSON). Same handlers, same process table, so
// the same seq, retention and close ordering as over a wire; these tests hold that.

const host = { env: process.env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' };
const env = { PATH: '/usr/bin:/bin' };

type Event = { kind: 'output'; seq: number; stream: string; chunk: unknown } | { kind: 'exited' | 'closed'; seq: number };

/** A client connection to `server` made as `localConnector` makes it, recording every process event. */
async function rawLocalClient(server: ExecServer): Promise<{ connection: RpcConnection; events: Event[]; closed: Promise<void> }> {
  const [clientSide, serverSide] = createMemoryPair('local', { values: true });
  server.serve(serverSide, { resumable: false });
  const connection = new RpcConnection(clientSide);
  const events: Event[] = [];
  const closed = deferred<void>();
  connection.onNotification(ProcessOutput, (p) => events.push({ kind: 'output', seq: p.seq, stream: p.stream, chunk: p.chunk }));
  connection.onNotification(ProcessExited, (p) => events.push({ kind: 'exited', seq: p.seq }));
  connection.onNotification(ProcessClosed, (p) => {
    events.push({ kind: 'closed', seq: p.seq });
    closed.resolve();
  });
  connection.start();
  await connection.request(Initialize, { clientName: 'test' });
  connection.notify(Initialized, {});
  return { connection, events, closed: closed.promise };
}

/** The bytes of the output events of `stream`, in order. */
function streamBytes(events: readonly Event[], stream: string): Buffer {
  return Buffer.concat(events.flatMap((event) => (event.kind === 'output' && event.stream === stream ? [event.chunk as Buffer] : [])));
}

describe('in-process (local) command output', () => {
  let work: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    work = await tempDir('exec-local-output-');
  });
  afterAll(() => work.cleanup());

  it('arrives as Buffers, never base64, with seqs 1, 2, 3… in order, output before exited before closed', async () => {
    const server = new ExecServer({ env, host });
    const { connection, events, closed } = await rawLocalClient(server);
    try {
      const script = 'i=0; while [ $i -lt 3000 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); done';
      await connection.request(ProcessStart, { processId: 'mixed', argv: ['/bin/sh', '-c', script], cwd: `file://${work.path}`, env, tty: false, arg0: null });
      await closed;
      expect(events.map((event) => event.seq)).toEqual(events.map((_event, index) => index + 1));
      expect(events.filter((event) => event.kind === 'output').every((event) => Buffer.isBuffer(event.chunk))).toBe(true);
      const lines = (prefix: string): string => Array.from({ length: 3000 }, (_, i) => `${prefix}-${i}\n`).join('');
      expect(streamBytes(events, 'stdout').toString()).toBe(lines('out'));
      expect(streamBytes(events, 'stderr').toString()).toBe(lines('err'));
      expect(events.filter((event) => event.kind !== 'output').map((event) => event.kind)).toEqual(['exited', 'closed']);
      expect(events.at(-1)?.kind).toBe('closed');
    } finally {
      await connection.close();
      await server.close();
    }
  });

  it('retains the newest output within the bound for process/read, as Buffers with their seqs, after the process closed', async () => {
    const retainedOutputBytes = 4096;
    const server = new ExecServer({ env, host, retainedOutputBytes });
    const { connection, events, closed } = await rawLocalClient(server);
    try {
      const script = 'i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done';
      await connection.request(ProcessStart, { processId: 'long', argv: ['/bin/sh', '-c', script], cwd: `file://${work.path}`, env, tty: false, arg0: null });
      await closed;
      const output = events.filter((event) => event.kind === 'output');
      const all = streamBytes(events, 'stdout');
      const read = await connection.request(ProcessRead, { processId: 'long', afterSeq: 0 });
      const retained = Buffer.concat(read.chunks.map((chunk) => chunk.chunk as Buffer));
      expect(read.chunks.every((chunk) => Buffer.isBuffer(chunk.chunk))).toBe(true);
      // The newest chunks: within the bound (unless the newest alone is over it), ending where the output ended.
      expect(read.chunks.length === 1 || retained.length <= retainedOutputBytes).toBe(true);
      expect(all.subarray(all.length - retained.length).equals(retained)).toBe(true);
      expect(read.chunks.map((chunk) => chunk.seq)).toEqual(output.slice(-read.chunks.length).map((event) => event.seq));
      expect(read.chunks.length).toBeLessThan(output.length);
      expect(read.nextSeq).toBe(events.at(-1)!.seq + 1);
      expect(read).toMatchObject({ exited: true, exitCode: 0, closed: true });
      // What a client that saw seq n asks for: only what came after it.
      const lastSeen = read.chunks[0]!.seq;
      const after = await connection.request(ProcessRead, { processId: 'long', afterSeq: lastSeen });
      expect(after.chunks.map((chunk) => chunk.seq)).toEqual(read.chunks.slice(1).map((chunk) => chunk.seq));
    } finally {
      await connection.close();
      await server.close();
    }
  });

  it('is not paused for a client that reads nothing: the client keeps the newest output within its bound and counts what it dropped', async () => {
    const server = new ExecServer({ env, host });
    const client = await ExecClient.connect(localConnector(server));
    try {
      const total = DEFAULT_QUEUED_OUTPUT_BYTES + 8 * 1024 * 1024;
      const command = await client.startProcess({ argv: ['head', '-c', String(total), '/dev/zero'], cwd: work.path, env, tty: false });
      // Told when `closed` is queued, without taking anything from the queue (the client's own hook still runs).
      const finished = deferred<void>();
      const clientHook = command.onFinished;
      command.onFinished = () => {
        clientHook?.();
        finished.resolve();
      };
      if (!command.finished) await finished.promise;
      const events = command.drain();
      const kept = events.reduce((sum, event) => sum + (event.kind === 'output' ? event.data.length : 0), 0);
      expect(kept).toBeLessThanOrEqual(DEFAULT_QUEUED_OUTPUT_BYTES);
      expect(kept + command.droppedBytes).toBe(total);
      expect(events.slice(-2).map((event) => event.kind)).toEqual(['exited', 'closed']);
      expect(command.exitCode).toBe(0);
    } finally {
      await client.close();
      await server.close();
    }
  });

  it('hands a file read whole over as its own bytes: the next read does not change them', async () => {
    const server = new ExecServer({ env, host });
    const client = await ExecClient.connect(localConnector(server));
    try {
      await writeFile(join(work.path, 'a.txt'), 'a'.repeat(1000));
      await writeFile(join(work.path, 'b.txt'), 'b'.repeat(1000));
      // The server reads whole files into a buffer it reuses for the next read.
      const first = await client.readFile(join(work.path, 'a.txt'));
      const second = await client.readFile(join(work.path, 'b.txt'));
      expect(first.toString()).toBe('a'.repeat(1000));
      expect(second.toString()).toBe('b'.repeat(1000));
    } finally {
      await client.close();
      await server.close();
    }
  });
});
