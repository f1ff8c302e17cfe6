import { ExecClient, type ExecConnector } from '../../../src/exec/client.js';
import type { RemoteProcess, RemoteProcessEvent } from '../../../src/exec/remote-process.js';
import {
  EnvironmentStatus,
  Initialize,
  Initialized,
  ProcessClosed,
  ProcessExited,
  ProcessOutput,
  ProcessRead,
  ProcessStart,
  type ProcessReadResult,
} from '../../../src/protocol/exec.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import { deferred, type Deferred } from '../../../src/util/deferred.js';

// The client's gap filling against a scripted exec-server peer on the in-memory transport. The
// peer sends notifications with gaps and answers each `process/read` only when the test says so,
// so every race between a replay and the notifications is played out in one fixed order.

/** A `process/read` the peer received and has not answered yet. */
interface PendingRead {
  processId: string;
  afterSeq: number;
  waitMs: number;
  answer: Deferred<ProcessReadResult>;
}

class ScriptedExecServer {
  readonly reads: PendingRead[] = [];
  #connection?: RpcConnection;
  #readWaiter?: () => void;

  readonly connector: ExecConnector = {
    label: 'scripted',
    resumable: false,
    connect: () => {
      const [clientSide, serverSide] = createMemoryPair('scripted');
      const connection = new RpcConnection(serverSide);
      connection.onRequest(Initialize, () => ({ sessionId: 'session-1' }));
      connection.onNotification(Initialized, () => undefined);
      connection.onRequest(EnvironmentStatus, () => ({ status: 'ready' }));
      connection.onRequest(ProcessStart, (params) => ({ processId: params.processId, sandboxType: 'none' }));
      connection.onRequest(ProcessRead, (params) => {
        const answer = deferred<ProcessReadResult>();
        this.reads.push({ processId: params.processId, afterSeq: params.afterSeq ?? 0, waitMs: params.waitMs ?? 0, answer });
        this.#readWaiter?.();
        return answer.promise;
      });
      connection.start();
      this.#connection = connection;
      return Promise.resolve(clientSide);
    },
  };

  /** Resolves with the `index`-th read (0-based) once the peer has received it. */
  async read(index: number): Promise<PendingRead> {
    for (;;) {
      const read = this.reads[index];
      if (read !== undefined) return read;
      await new Promise<void>((resolve) => (this.#readWaiter = resolve));
    }
  }

  output(processId: string, seq: number, text: string): void {
    this.#peer().notify(ProcessOutput, { processId, seq, stream: 'stdout', chunk: Buffer.from(text).toString('base64') });
  }

  exited(processId: string, seq: number, exitCode: number): void {
    this.#peer().notify(ProcessExited, { processId, seq, exitCode, sandboxDenied: false });
  }

  closed(processId: string, seq: number): void {
    this.#peer().notify(ProcessClosed, { processId, seq });
  }

  #peer(): RpcConnection {
    if (this.#connection === undefined) throw new Error('the client has not connected');
    return this.#connection;
  }
}

/** A read answer: `chunks` as [seq, text] pairs. */
function readResult(chunks: [number, string][], nextSeq: number, state: { exitCode?: number; closed?: boolean } = {}): ProcessReadResult {
  return {
    chunks: chunks.map(([seq, text]) => ({ seq, stream: 'stdout' as const, chunk: Buffer.from(text).toString('base64') })),
    nextSeq,
    exited: state.exitCode !== undefined,
    exitCode: state.exitCode ?? null,
    closed: state.closed === true,
    failure: null,
    sandboxDenied: false,
  };
}

/**
 * Lets every message and continuation already under way run to its end: round trips on the same
 * ordered connection, many more than any chain of the client's reactions to one message takes.
 */
async function settle(client: ExecClient): Promise<void> {
  for (let i = 0; i < 20; i++) await client.request(EnvironmentStatus, {});
}

/** The events queued so far, with output as text. */
function events(proc: RemoteProcess): (Exclude<RemoteProcessEvent, { kind: 'output' }> | { kind: 'output'; text: string })[] {
  return proc.drain().map((event) => (event.kind === 'output' ? { kind: 'output', text: event.data.toString() } : event));
}

let peer: ScriptedExecServer;
let client: ExecClient;

beforeEach(async () => {
  peer = new ScriptedExecServer();
  client = await ExecClient.connect(peer.connector);
});

afterEach(async () => {
  await client.close();
});

async function start(): Promise<RemoteProcess> {
  return client.startProcess({ processId: 'p', argv: ['true'], cwd: '/', env: {}, tty: false });
}

test('a replay that raced the notifications and brought nothing new is asked again, long-polling', async () => {
  const proc = await start();
  peer.output('p', 1, 'a');
  peer.output('p', 3, 'c');
  const first = await peer.read(0);
  expect(first).toMatchObject({ afterSeq: 1, waitMs: 0 });
  // Answered from a snapshot older than seq 3 (as a server may): nothing after seq 1 yet.
  first.answer.resolve(readResult([], 2));
  await settle(client);
  expect(events(proc)).toEqual([{ kind: 'output', text: 'a' }]);
  expect(peer.reads).toHaveLength(2);

  const second = await peer.read(1);
  // The server was behind what it had notified: wait on it rather than ask in a loop.
  expect(second.afterSeq).toBe(1);
  expect(second.waitMs).toBeGreaterThan(0);
  second.answer.resolve(
    readResult(
      [
        [2, 'b'],
        [3, 'c'],
      ],
      4,
    ),
  );
  peer.exited('p', 4, 0);
  peer.closed('p', 5);
  const collected = await proc.collect();
  expect(collected.stdout.toString()).toBe('bc');
  expect(collected.exitCode).toBe(0);
  expect(peer.reads).toHaveLength(2);
});

test('a second gap found while a replay is in flight is filled after it, even when that replay brought no output', async () => {
  const proc = await start();
  peer.output('p', 1, 'a');
  // Seq 2 (the exit) is missed: seq 3 waits for a replay.
  peer.output('p', 3, 'c');
  const first = await peer.read(0);
  expect(first.afterSeq).toBe(1);
  // While that replay is in flight, seq 4 is missed too and `closed` (seq 5) waits behind it.
  peer.closed('p', 5);
  await settle(client);
  expect(peer.reads).toHaveLength(1);
  // The answer covers the exit only; it says nothing of seq 4.
  first.answer.resolve(readResult([], 3, { exitCode: 0 }));
  await settle(client);
  expect(peer.reads).toHaveLength(2);
  const second = await peer.read(1);
  expect(second).toMatchObject({ afterSeq: 3, waitMs: 0 });
  second.answer.resolve(
    readResult(
      [
        [3, 'c'],
        [4, 'd'],
      ],
      6,
      { exitCode: 0, closed: true },
    ),
  );
  await settle(client);
  expect(events(proc)).toEqual([{ kind: 'output', text: 'a' }, { kind: 'exited', exitCode: 0 }, { kind: 'output', text: 'c' }, { kind: 'output', text: 'd' }, { kind: 'closed' }]);
  expect(proc.finished).toBe(true);
});

test('output a replay repeats from held notifications is delivered once', async () => {
  const proc = await start();
  peer.output('p', 1, 'a');
  peer.output('p', 3, 'c');
  peer.output('p', 4, 'd');
  const read = await peer.read(0);
  read.answer.resolve(
    readResult(
      [
        [2, 'b'],
        [3, 'c'],
        [4, 'd'],
      ],
      5,
    ),
  );
  await settle(client);
  peer.output('p', 5, 'e');
  peer.exited('p', 6, 0);
  peer.closed('p', 7);
  expect((await proc.collect()).stdout.toString()).toBe('abcde');
});

test('a replay places the exit among trailing output instead of reporting its seq as lost output', async () => {
  const proc = await start();
  peer.output('p', 1, 'a');
  // Missed: the exit (seq 2) and trailing output (seq 3); seq 4 (`closed`) waits for the replay.
  peer.closed('p', 4);
  const read = await peer.read(0);
  read.answer.resolve(readResult([[3, 'b']], 5, { exitCode: 7, closed: true }));
  await settle(client);
  expect(events(proc)).toEqual([{ kind: 'output', text: 'a' }, { kind: 'exited', exitCode: 7 }, { kind: 'output', text: 'b' }, { kind: 'closed' }]);
  expect(proc.exitCode).toBe(7);
});

test('output the server no longer retains is reported lost, and the exit after it still arrives', async () => {
  const proc = await start();
  // Seqs 1 and 2 were evicted before anyone read them; seq 3 is retained, seq 4 is the exit.
  peer.closed('p', 5);
  const read = await peer.read(0);
  expect(read.afterSeq).toBe(0);
  read.answer.resolve(readResult([[3, 'c']], 6, { exitCode: 0, closed: true }));
  await settle(client);
  expect(events(proc)).toEqual([
    { kind: 'output', text: '\n[output lost: events 1..2 were evicted before they could be read]\n' },
    { kind: 'output', text: 'c' },
    { kind: 'exited', exitCode: 0 },
    { kind: 'closed' },
  ]);
});

test('a replay the server refuses fails the process with the reason instead of leaving it waiting', async () => {
  const proc = await start();
  peer.output('p', 2, 'b');
  const read = await peer.read(0);
  read.answer.reject(RpcError.invalidRequest('unknown process id p'));
  await settle(client);
  expect(proc.finished).toBe(true);
  await expect(proc.collect()).rejects.toThrow(/events of process p on scripted were missed and could not be replayed: unknown process id p/);
});

test('in-order notifications need no replay', async () => {
  const proc = await start();
  peer.output('p', 1, 'a');
  peer.exited('p', 2, 0);
  peer.output('p', 3, 'b');
  peer.closed('p', 4);
  const collected = await proc.collect();
  expect(collected.stdout.toString()).toBe('ab');
  expect(peer.reads).toHaveLength(0);
});
