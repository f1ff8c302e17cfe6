import { randomBytes } from 'node:crypto';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { applyPatchTool } from '../../src/agent/tools/apply-patch.js';
import type { ToolContext } from '../../src/agent/tools/tool.js';
import { stdioConnector, websocketConnector } from '../../src/environments/connectors.js';
import { ExecClient, type ExecClientState, type ExecConnector } from '../../src/exec/client.js';
import { ReadBudget, readMemoryCost, type ReadReservation } from '../../src/exec/read-budget.js';
import { ExecServer } from '../../src/exec/server.js';
import { singleEnvironmentToolContext } from '../helpers/tool-context.js';
import { DEFAULT_MAX_WHOLE_FILE_BYTES } from '../../src/protocol/limits.js';
import { listenWebSocket, type WebSocketListener } from '../../src/transport/websocket.js';
import { LocalError, LocalErrorCode } from '../../src/util/errors.js';
import { rawStdio, rawWebSocket, type RawPeer } from '../helpers/raw-peer.js';
import { CLI, CODEX, startCodexWsExecServer, startOurWsExecServer, tempDir, waitFor, type ListeningProcess } from '../helpers/process.js';

// Whole-file reads and writes against the message limit, end to end: our exec-server (spawned, on
// a websocket and on stdio) and the real `codex exec-server` 0.169.0, which does not bound its
// reads. "60 MB" files are sparse: refusing them must not need reading them.

/** The brief's example: a 60 MB file, over the 50,282,496-byte whole-file limit. */
const OVER_LIMIT_BYTES = 60_000_000;
const LIMIT_WORDS = `is ${OVER_LIMIT_BYTES} bytes, over the ${DEFAULT_MAX_WHOLE_FILE_BYTES}-byte limit`;

/** A file of `size` bytes without writing them (a hole reads as zeros). */
async function sparseFile(path: string, size: number): Promise<string> {
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

/** Records every state the client goes through (a dropped websocket shows as `reconnecting`). */
function watchStates(client: ExecClient): ExecClientState[] {
  const states: ExecClientState[] = [];
  client.onStateChange((state) => states.push(state));
  return states;
}

let work: { path: string; cleanup: () => Promise<void> };
let big: string;
let small: string;

beforeAll(async () => {
  work = await tempDir('exec-limits-');
  big = await sparseFile(join(work.path, 'big.bin'), OVER_LIMIT_BYTES);
  small = join(work.path, 'small.txt');
  await writeFile(small, 'still here\n');
});
afterAll(() => work.cleanup());

async function initialize(peer: RawPeer): Promise<void> {
  peer.send(JSON.stringify({ id: 1, method: 'initialize', params: { clientName: 'test' } }));
  expect(await peer.next()).toMatchObject({ id: 1, result: { sessionId: expect.any(String) } });
  peer.send(JSON.stringify({ method: 'initialized' }));
}

/** fs/readFile of the big file is refused up front, naming its size and the limit; the connection goes on. */
async function expectServerRefusal(peer: RawPeer): Promise<void> {
  await initialize(peer);
  peer.send(JSON.stringify({ id: 2, method: 'fs/readFile', params: { path: pathToFileURL(big).href } }));
  expect(await peer.next()).toEqual({
    id: 2,
    error: {
      code: -32600,
      message: `fs/readFile: \`${big}\` is too large to read whole: ${OVER_LIMIT_BYTES} bytes, over the ${DEFAULT_MAX_WHOLE_FILE_BYTES}-byte limit of fs/readFile (its base64 must fit in one message); read it in blocks with fs/open and fs/readBlock`,
    },
  });
  peer.send(JSON.stringify({ id: 3, method: 'fs/readFile', params: { path: pathToFileURL(small).href } }));
  expect(await peer.next()).toEqual({ id: 3, result: { dataBase64: Buffer.from('still here\n').toString('base64') } });
  await peer.close();
}

describe('our exec-server refuses fs/readFile of a file over the whole-file limit', () => {
  it('over websocket', async () => {
    const server = await startOurWsExecServer();
    try {
      await expectServerRefusal(await rawWebSocket(server.url));
    } finally {
      await server.stop();
    }
  });

  it('over stdio', async () => {
    await expectServerRefusal(rawStdio(process.execPath, [CLI, 'exec-server', '--listen', 'stdio']));
  });
});

/** The client refuses to read or write the file whole, before sending anything; the connection is kept. */
async function expectClientRefusals(connector: ExecConnector): Promise<void> {
  const client = await ExecClient.connect(connector);
  const states = watchStates(client);
  try {
    const read = await rejectionOf(client.readFile(big));
    expect(read).toBeInstanceOf(LocalError);
    expect((read as LocalError).code).toBe(LocalErrorCode.LimitExceeded);
    expect((read as LocalError).message).toContain(`file too large to read whole on ${connector.label}: \`${big}\` ${LIMIT_WORDS}`);
    const write = await rejectionOf(client.writeFile(join(work.path, 'not-written.bin'), Buffer.alloc(OVER_LIMIT_BYTES)));
    expect((write as LocalError).code).toBe(LocalErrorCode.LimitExceeded);
    expect((write as LocalError).message).toContain(`file too large to write whole on ${connector.label}`);
    await expect(stat(join(work.path, 'not-written.bin'))).rejects.toThrow(/ENOENT/);
    expect((await client.readFile(small)).toString()).toBe('still here\n');
    expect(states).toEqual([]);
  } finally {
    await client.close();
  }
}

describe('our client refuses whole-file reads and writes over the limit, keeping the connection', () => {
  let ours: ListeningProcess;
  let codex: ListeningProcess;
  let codexHome: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    codexHome = await tempDir('codex-home-');
    [ours, codex] = await Promise.all([startOurWsExecServer(), startCodexWsExecServer(codexHome.path)]);
  });
  afterAll(async () => {
    await Promise.all([ours.stop(), codex.stop()]);
    await codexHome.cleanup();
  });

  it('with our exec-server over websocket and stdio', async () => {
    await expectClientRefusals(websocketConnector(ours.url));
    await expectClientRefusals(stdioConnector({ program: process.execPath, args: [CLI, 'exec-server', '--listen', 'stdio'], env: process.env }));
  });

  // The real server answers any read whole: a 60 MB file would come back as an 80 MB message,
  // which drops a websocket (1009) and, on stdio, was a request that never got its answer.
  it('with the real codex exec-server over websocket and stdio', async () => {
    await expectClientRefusals(websocketConnector(codex.url));
    await expectClientRefusals(stdioConnector({ program: CODEX, args: ['exec-server', '--listen', 'stdio'], env: { ...process.env, CODEX_HOME: codexHome.path } }));
  });

  // Real size: the limit is what fits. The largest whole file is read from our server (its answer
  // fits the client's message limit) and written to the real one, whose websocket refuses frames
  // over 16 MiB (we send 4 MiB fragments) and messages over 64 MiB.
  it('moves the largest whole file: read from our exec-server, written to the real one', async () => {
    const largest = await sparseFile(join(work.path, 'largest.bin'), DEFAULT_MAX_WHOLE_FILE_BYTES);
    const fromOurs = await ExecClient.connect(websocketConnector(ours.url));
    const toCodex = await ExecClient.connect(websocketConnector(codex.url));
    const states = [watchStates(fromOurs), watchStates(toCodex)];
    try {
      expect((await fromOurs.readFile(largest)).length).toBe(DEFAULT_MAX_WHOLE_FILE_BYTES);
      const copy = join(work.path, 'written-by-codex.bin');
      await toCodex.writeFile(copy, Buffer.alloc(DEFAULT_MAX_WHOLE_FILE_BYTES, 0x61));
      expect((await stat(copy)).size).toBe(DEFAULT_MAX_WHOLE_FILE_BYTES);
      expect(states).toEqual([[], []]);
    } finally {
      await Promise.all([fromOurs.close(), toCodex.close()]);
    }
  });
});

describe('apply_patch on a remote file over the limit', () => {
  function toolContext(client: ExecClient, cwd: string): ToolContext {
    return singleEnvironmentToolContext({ id: 'remote', cwd, client: () => Promise.resolve(client) }, { approver: { request: () => Promise.resolve({ decision: 'approved' }) } });
  }

  async function patchBigThenSmall(url: string): Promise<void> {
    const dir = await tempDir('exec-limits-patch-');
    const client = await ExecClient.connect(websocketConnector(url));
    const states = watchStates(client);
    try {
      const huge = await sparseFile(join(dir.path, 'huge.txt'), OVER_LIMIT_BYTES);
      await writeFile(join(dir.path, 'notes.txt'), 'one\n');
      const tool = applyPatchTool({ multiEnvironment: false });
      const context = toolContext(client, dir.path);
      const refused = await tool.run('*** Begin Patch\n*** Update File: huge.txt\n@@\n+first line\n*** End Patch\n', context);
      expect(refused).toBe(
        `apply_patch verification failed: cannot read huge.txt: file too large to read whole on ${url}: \`${huge}\` ${LIMIT_WORDS} (its base64 must fit in one 67108864-byte message); read it in blocks with fs/open and fs/readBlock`,
      );
      expect((await stat(huge)).size).toBe(OVER_LIMIT_BYTES);
      // The same connection goes on patching.
      expect(await tool.run('*** Begin Patch\n*** Update File: notes.txt\n-one\n+two\n*** End Patch\n', context)).toBe('Success. Updated the following files:\nM notes.txt');
      expect(await readFile(join(dir.path, 'notes.txt'), 'utf8')).toBe('two\n');
      expect(states).toEqual([]);
    } finally {
      await client.close();
      await dir.cleanup();
    }
  }

  it('says the file is too large, on our exec-server and the real one, and the connection goes on', async () => {
    const home = await tempDir('codex-home-');
    const [ours, codex] = await Promise.all([startOurWsExecServer(), startCodexWsExecServer(home.path)]);
    try {
      await patchBigThenSmall(ours.url);
      await patchBigThenSmall(codex.url);
    } finally {
      await Promise.all([ours.stop(), codex.stop()]);
      await home.cleanup();
    }
  });
});

/** A budget that remembers the most it ever held. */
class RecordingBudget extends ReadBudget {
  peakBytes = 0;

  override async reserve(bytes: number, signal?: AbortSignal): Promise<ReadReservation> {
    const reservation = await super.reserve(bytes, signal);
    this.peakBytes = Math.max(this.peakBytes, this.usedBytes);
    return reservation;
  }
}

describe('concurrent reads share the exec-server read budget (over a real websocket)', () => {
  const FILE_BYTES = 3 * 1024 * 1024;
  let server: ExecServer;
  let listener: WebSocketListener;
  let budget: RecordingBudget;

  beforeAll(async () => {
    // Room for one read of a file at a time.
    budget = new RecordingBudget(readMemoryCost(FILE_BYTES), 60_000);
    server = new ExecServer({
      env: process.env,
      host: { env: process.env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' },
      readBudget: budget,
    });
    listener = await listenWebSocket({ host: '127.0.0.1', port: 0, onConnection: (transport) => server.serve(transport, { resumable: true }) });
  });
  afterAll(async () => {
    await listener.close();
    await server.close();
  });

  it('makes reads over the budget wait their turn, and every one completes', async () => {
    const files = await Promise.all(
      [0, 1, 2, 3].map(async (index) => {
        const path = join(work.path, `budget-${index}.bin`);
        const data = randomBytes(FILE_BYTES);
        await writeFile(path, data);
        return { path, data };
      }),
    );
    const clients = await Promise.all(files.map(() => ExecClient.connect(websocketConnector(listener.url))));
    try {
      // Hold the whole budget, so that every read must queue for it.
      const gate = await budget.reserve(budget.capacityBytes);
      const reads = files.map((file, index) => clients[index]!.readFile(file.path));
      await waitFor(() => budget.waiting === files.length, 'every read to wait for the budget');
      gate.release();
      const results = await Promise.all(reads);
      results.forEach((bytes, index) => expect(bytes.equals(files[index]!.data)).toBe(true));
      expect(budget.peakBytes).toBe(budget.capacityBytes);
      await waitFor(() => budget.usedBytes === 0, 'every read to give its budget back');
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  });
});
