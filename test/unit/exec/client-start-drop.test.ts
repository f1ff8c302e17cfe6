import { ExecClient, type ExecConnector } from '../../../src/exec/client.js';
import { Initialize, Initialized, ProcessRead, ProcessStart, type ProcessReadResult } from '../../../src/protocol/exec.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import type { MessageTransport } from '../../../src/transport/transport.js';
import { deferred, type Deferred } from '../../../src/util/deferred.js';

// The client's handling of a `process/start` whose connection drops before the answer, against a
// scripted exec-server peer on the in-memory transport that resumes sessions. Each start is
// handled as the test scripts it (answered, or the connection cut before or after the server
// took it), so the races a real network leaves to chance are played out in one fixed order.

/** What the peer does with the next `process/start`. */
type StartScript =
  /** Takes it and answers (or refuses a known id, as real servers do). */
  | 'answer'
  /** Cuts the connection without taking it. */
  | 'drop-before'
  /** Takes it (the process runs) and cuts the connection before answering. */
  | 'drop-after'
  /** Takes it, leaves it starting and cuts the connection; the test finishes it. */
  | 'drop-starting';

class ResumingExecServer {
  /** Every `process/start` the peer took, in order. */
  readonly starts: string[] = [];
  readonly processes = new Map<string, 'starting' | 'running'>();
  readonly scripts: StartScript[] = [];
  /** The process ids of the reads the peer was asked, in order. */
  readonly reads: string[] = [];
  /** Ids the next read of answers "unknown" although the peer has them. */
  readonly hideOnce = new Set<string>();
  refusedDuplicates = 0;
  /** Resolves each time a connection is cut. */
  cuts: Deferred<void> = deferred<void>();
  connections = 0;
  /** Refuses resumes (as when the session expired). */
  forget = false;
  #readWaiter?: () => void;

  readonly connector: ExecConnector;

  constructor(resumable: boolean) {
    this.connector = { label: 'scripted', resumable, connect: () => this.#connect() };
  }

  #connect(): Promise<MessageTransport> {
    this.connections++;
    const [clientSide, serverSide] = createMemoryPair('scripted');
    const connection = new RpcConnection(serverSide);
    connection.onRequest(Initialize, (params) => {
      if (params.resumeSessionId !== undefined && params.resumeSessionId !== null && this.forget) throw RpcError.invalidRequest(`unknown session id ${params.resumeSessionId}`);
      return { sessionId: 'session-1' };
    });
    connection.onNotification(Initialized, () => undefined);
    connection.onRequest(ProcessStart, (params) => {
      const script = this.scripts.shift() ?? 'answer';
      if (script === 'drop-before') return this.#cut(connection);
      if (this.processes.has(params.processId)) {
        this.refusedDuplicates++;
        throw RpcError.invalidRequest(`process ${params.processId} already exists`);
      }
      this.starts.push(params.processId);
      this.processes.set(params.processId, script === 'drop-starting' ? 'starting' : 'running');
      if (script !== 'answer') return this.#cut(connection);
      return { processId: params.processId, sandboxType: 'none' };
    });
    connection.onRequest(ProcessRead, (params) => {
      this.reads.push(params.processId);
      this.#readWaiter?.();
      const entry = this.hideOnce.delete(params.processId) ? undefined : this.processes.get(params.processId);
      if (entry === undefined) throw RpcError.invalidRequest(`unknown process id ${params.processId}`);
      if (entry === 'starting') throw RpcError.invalidRequest(`process id ${params.processId} is starting`);
      return EXITED_READ;
    });
    connection.start();
    return Promise.resolve(clientSide);
  }

  /** Resolves once the peer has been asked `count` reads. */
  async readsReached(count: number): Promise<void> {
    while (this.reads.length < count) await new Promise<void>((resolve) => (this.#readWaiter = resolve));
  }

  async #cut(connection: RpcConnection): Promise<never> {
    await connection.close();
    const cuts = this.cuts;
    this.cuts = deferred<void>();
    cuts.resolve();
    // Never answered: the connection is gone.
    return new Promise<never>(() => undefined);
  }
}

/** A read of a process that printed `hi` and exited 0. */
const EXITED_READ: ProcessReadResult = {
  chunks: [{ seq: 1, stream: 'stdout', chunk: Buffer.from('hi').toString('base64') }],
  nextSeq: 4,
  exited: true,
  exitCode: 0,
  closed: true,
  failure: null,
  sandboxDenied: false,
};

const START = { processId: 'p1', argv: ['true'], cwd: '/', env: {}, tty: false };

test('a start taken before the drop is found by a read on the resumed session; its output and exit arrive once', async () => {
  const peer = new ResumingExecServer(true);
  const client = await ExecClient.connect(peer.connector);
  try {
    peer.scripts.push('drop-after');
    const proc = await client.startProcess(START);
    expect(peer.starts).toEqual(['p1']);
    expect(await proc.collect()).toEqual({ exitCode: 0, stdout: Buffer.from('hi'), stderr: Buffer.alloc(0), pty: Buffer.alloc(0) });
    expect(peer.connections).toBe(2);
  } finally {
    await client.close();
  }
});

test('a start that is still starting on the resumed session is asked about again until it runs', async () => {
  const peer = new ResumingExecServer(true);
  const client = await ExecClient.connect(peer.connector);
  try {
    peer.scripts.push('drop-starting');
    const start = client.startProcess(START);
    await peer.cuts.promise;
    // Let the client find it starting a few times before it runs.
    await peer.readsReached(3);
    peer.processes.set('p1', 'running');
    const proc = await start;
    expect((await proc.collect()).stdout.toString()).toBe('hi');
    expect(peer.starts).toEqual(['p1']);
  } finally {
    await client.close();
  }
});

test('a resent start refused as a duplicate means the first one was taken after all: the process is read, not reported failed', async () => {
  const peer = new ResumingExecServer(true);
  const client = await ExecClient.connect(peer.connector);
  try {
    // The first read after the resume misses the process (the server had not got to it yet).
    peer.hideOnce.add('p1');
    peer.scripts.push('drop-after');
    const proc = await client.startProcess(START);
    expect((await proc.collect()).stdout.toString()).toBe('hi');
    expect(peer.starts).toEqual(['p1']);
    expect(peer.refusedDuplicates).toBe(1);
    expect(peer.reads).toEqual(['p1', 'p1']);
  } finally {
    await client.close();
  }
});

test('without resumable sessions (stdio), a drop during the start says the command may or may not have started', async () => {
  const peer = new ResumingExecServer(false);
  const client = await ExecClient.connect(peer.connector);
  try {
    peer.scripts.push('drop-after');
    await expect(client.startProcess(START)).rejects.toThrow(
      /the connection to scripted was lost before it answered process\/start of p1, so the command may or may not have started on scripted/,
    );
    expect(peer.connections).toBe(1);
  } finally {
    await client.close();
  }
});

test('when the session is gone after the drop, the start fails saying it may have started, without sending it again', async () => {
  const peer = new ResumingExecServer(true);
  const client = await ExecClient.connect(peer.connector);
  try {
    peer.forget = true;
    peer.scripts.push('drop-before');
    await expect(client.startProcess(START)).rejects.toThrow(/may or may not have started on scripted: lost the session on scripted: unknown session id session-1/);
    expect(peer.starts).toEqual([]);
  } finally {
    await client.close();
  }
});

test('an abort while the start waits for the resume rejects with the abort reason', async () => {
  const peer = new ResumingExecServer(true);
  const client = await ExecClient.connect(peer.connector);
  try {
    peer.scripts.push('drop-starting');
    const controller = new AbortController();
    const start = client.startProcess(START, { signal: controller.signal });
    await peer.cuts.promise;
    await peer.readsReached(1);
    controller.abort(new Error('stop waiting'));
    await expect(start).rejects.toThrow('stop waiting');
  } finally {
    await client.close();
  }
});
