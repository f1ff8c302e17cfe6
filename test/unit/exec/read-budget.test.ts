import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createFsSessionState, registerFsHandlers, type FsSessionState } from '../../../src/exec/fs-handlers.js';
import { ReadBudget, readMemoryCost } from '../../../src/exec/read-budget.js';
import { bytesOf } from '../../../src/exec/remote-process.js';
import { FsOpen, FsReadBlock, FsReadFile } from '../../../src/protocol/exec.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';
import { tempDir, waitFor } from '../../helpers/process.js';

/** The error a promise rejects with (it must reject). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('ReadBudget', () => {
  it('costs a read its bytes plus their base64 message', () => {
    expect(readMemoryCost(0)).toBe(0);
    expect(readMemoryCost(3)).toBe(3 + 4);
    expect(readMemoryCost(4)).toBe(4 + 8);
  });

  it('grants at once what fits, and makes later reads wait in order until room is given back', async () => {
    const budget = new ReadBudget(100, 60_000);
    const first = await budget.reserve(60);
    const order: string[] = [];
    const big = budget.reserve(70).then((r) => {
      order.push('big');
      return r;
    });
    // 30 would fit beside the first, but it arrived after the waiting 70: it must not overtake it.
    const small = budget.reserve(30).then((r) => {
      order.push('small');
      return r;
    });
    expect(budget.waiting).toBe(2);
    expect(budget.usedBytes).toBe(60);
    first.release();
    first.release(); // idempotent: gives back nothing more
    const bigHeld = await big;
    const smallHeld = await small;
    expect(order).toEqual(['big', 'small']);
    expect(budget.usedBytes).toBe(100);
    bigHeld.release();
    smallHeld.release();
    expect(budget.usedBytes).toBe(0);
  });

  it('refuses at once a read larger than the whole budget', async () => {
    const budget = new ReadBudget(100, 60_000);
    const error = await rejectionOf(budget.reserve(101));
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.LimitExceeded);
    expect((error as LocalError).message).toContain('needs 101 bytes of memory, more than the whole 100-byte read budget');
    expect(budget.waiting).toBe(0);
  });

  it('refuses a read as busy once its wait runs out, and lets the next one through', async () => {
    const budget = new ReadBudget(100, 10);
    const held = await budget.reserve(90);
    const error = await rejectionOf(budget.reserve(50));
    expect((error as LocalError).code).toBe(LocalErrorCode.Busy);
    expect((error as LocalError).message).toContain('the exec-server is busy');
    expect(budget.waiting).toBe(0);
    held.release();
    (await budget.reserve(50)).release();
    expect(budget.usedBytes).toBe(0);
  });

  it('takes a waiting read out of the queue when its signal aborts, unblocking those behind it', async () => {
    const budget = new ReadBudget(100, 60_000);
    const held = await budget.reserve(50);
    const controller = new AbortController();
    const blocked = budget.reserve(80, controller.signal);
    const behind = budget.reserve(40);
    controller.abort(new LocalError(LocalErrorCode.ConnectionClosed, 'connection closed'));
    expect(((await rejectionOf(blocked)) as LocalError).code).toBe(LocalErrorCode.ConnectionClosed);
    const granted = await behind;
    expect(budget.usedBytes).toBe(90);
    granted.release();
    held.release();
  });

  it('extends a reservation when room allows and gives all of it back at once', async () => {
    const budget = new ReadBudget(100, 60_000);
    const held = await budget.reserve(10);
    await held.extend(50);
    expect(held.bytes).toBe(60);
    expect(budget.usedBytes).toBe(60);
    held.release();
    expect(budget.usedBytes).toBe(0);
  });
});

describe('fs/readFile and fs/readBlock under a read budget', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  const connections: RpcConnection[] = [];
  const states: FsSessionState[] = [];

  beforeEach(async () => {
    dir = await tempDir('read-budget-');
  });
  afterEach(async () => {
    await Promise.all(connections.splice(0).map((connection) => connection.close()));
    await Promise.all(states.splice(0).map((state) => state.closeAll()));
    await dir.cleanup();
  });

  /** A client of fs handlers that take their memory from `budget`. */
  function connect(budget: ReadBudget): RpcConnection {
    const [a, b] = createMemoryPair('read-budget');
    const server = new RpcConnection(a);
    const client = new RpcConnection(b);
    const state = createFsSessionState();
    registerFsHandlers(server, state, { readBudget: budget });
    server.start();
    client.start();
    connections.push(client, server);
    states.push(state);
    return client;
  }

  async function file(name: string, contents: string): Promise<string> {
    await writeFile(join(dir.path, name), contents);
    return pathToFileURL(join(dir.path, name)).href;
  }

  it('answers a read that found no room in time as busy (-32603), and serves it once there is room', async () => {
    const budget = new ReadBudget(readMemoryCost(10), 20);
    const client = connect(budget);
    const path = await file('ten.txt', '0123456789');
    const gate = await budget.reserve(budget.capacityBytes);
    const busy = await rejectionOf(client.request(FsReadFile, { path }));
    expect(busy).toBeInstanceOf(RpcError);
    expect((busy as RpcError).code).toBe(-32603);
    expect((busy as RpcError).message).toMatch(
      /^fs\/readFile: the exec-server is busy: reads holding 26 bytes of its 26-byte read budget left no room for 26 more within 20 ms; try again later$/,
    );
    gate.release();
    await expect(client.request(FsReadFile, { path })).resolves.toEqual({ dataBase64: Buffer.from('0123456789').toString('base64') });
    expect(budget.usedBytes).toBe(0);
  });

  it('refuses with -32600 a read that needs more than the whole budget', async () => {
    const budget = new ReadBudget(readMemoryCost(10), 60_000);
    const client = connect(budget);
    const error = await rejectionOf(client.request(FsReadFile, { path: await file('eleven.txt', '0123456789A') }));
    expect((error as RpcError).code).toBe(-32600);
    expect((error as RpcError).message).toBe('fs/readFile: it needs 27 bytes of memory, more than the whole 26-byte read budget');
  });

  it('makes concurrent fs/readBlock requests wait for the budget, then answers them all', async () => {
    const budget = new ReadBudget(readMemoryCost(4) * 2, 60_000);
    const client = connect(budget);
    await client.request(FsOpen, { handleId: 'h', path: await file('blocks.txt', 'aaaabbbbccccdddd') });
    const gate = await budget.reserve(budget.capacityBytes);
    const blocks = [0, 4, 8, 12].map((offset) => client.request(FsReadBlock, { handleId: 'h', offset, len: 4 }));
    await waitFor(() => budget.waiting === 4, 'every block read to wait for the budget');
    gate.release();
    const chunks = (await Promise.all(blocks)).map((result) => bytesOf(result.chunk).toString());
    expect(chunks).toEqual(['aaaa', 'bbbb', 'cccc', 'dddd']);
    expect(budget.usedBytes).toBe(0);
  });
});
