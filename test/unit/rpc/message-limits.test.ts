import { PassThrough } from 'node:stream';
import { EnvironmentStatus, FsReadFile, FsWriteFile } from '../../../src/protocol/exec.js';
import { base64Length, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_WHOLE_FILE_BYTES, MESSAGE_ENVELOPE_RESERVE_BYTES, maxBase64PayloadBytes } from '../../../src/protocol/limits.js';
import { withBase64Bytes } from '../../../src/rpc/base64-field.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { readMessageHead } from '../../../src/rpc/message-head.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import { StreamTransport } from '../../../src/transport/stream.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';

const open: RpcConnection[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((connection) => connection.close()));
});

/** Two connections joined by two pipes (NDJSON, as over a child's stdio), each with its own limits. */
function stdioPair(limits: { clientIn: number; serverIn: number }): { client: RpcConnection; server: RpcConnection } {
  const up = new PassThrough();
  const down = new PassThrough();
  const client = new RpcConnection(new StreamTransport(down, up, 'client-side', { maxMessageBytes: limits.clientIn }));
  const server = new RpcConnection(new StreamTransport(up, down, 'server-side', { maxMessageBytes: limits.serverIn }));
  open.push(client, server);
  return { client, server };
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('size limits', () => {
  it('derive the whole-file limit from the message limit, base64 and the envelope', () => {
    expect(DEFAULT_MAX_MESSAGE_BYTES).toBe(64 * 1024 * 1024);
    expect(DEFAULT_MAX_WHOLE_FILE_BYTES).toBe(50_282_496);
    // The largest payload fits with its envelope; one more quantum would not.
    expect(base64Length(DEFAULT_MAX_WHOLE_FILE_BYTES) + MESSAGE_ENVELOPE_RESERVE_BYTES).toBeLessThanOrEqual(DEFAULT_MAX_MESSAGE_BYTES);
    expect(base64Length(DEFAULT_MAX_WHOLE_FILE_BYTES + 1) + MESSAGE_ENVELOPE_RESERVE_BYTES).toBeGreaterThan(DEFAULT_MAX_MESSAGE_BYTES);
    expect(maxBase64PayloadBytes(100)).toBe(0);
  });
});

describe('readMessageHead', () => {
  it('reads the id and method before the first structured value, cut or not', () => {
    expect(readMessageHead('{"id":7,"result":{"dataBase64":"QUJD')).toEqual({ id: 7, keys: ['id', 'result'] });
    expect(readMessageHead(' { "id" : "req-1" , "method" : "fs/writeFile", "params":{"path":"file:///x","dataBase64":"QUJD')).toEqual({
      id: 'req-1',
      method: 'fs/writeFile',
      keys: ['id', 'method', 'params'],
    });
    expect(readMessageHead('{"method":"process/output","params":{"chunk":"QUJD')).toEqual({ method: 'process/output', keys: ['method', 'params'] });
  });

  it('takes nothing it cannot be sure of: a value cut at the end, a fractional id, no object', () => {
    // `12` may be the start of `123`.
    expect(readMessageHead('{"id":12')).toEqual({ keys: ['id'] });
    expect(readMessageHead('{"id":1.5,"result":{')).toEqual({ keys: ['id', 'result'] });
    expect(readMessageHead('{"id":"unterminated')).toEqual({ keys: ['id'] });
    expect(readMessageHead('[{"id":1}]')).toEqual({ keys: [] });
    expect(readMessageHead('{"id":"a\u0001b","result":{')).toEqual({ keys: ['id', 'result'] });
  });
});

describe('RpcConnection message limits', () => {
  it('fails a request over the message limit before sending it, and the connection stays usable', async () => {
    const [a, b] = createMemoryPair('limits');
    const client = new RpcConnection(a, { maxMessageBytes: 1000 });
    const server = new RpcConnection(b);
    open.push(client, server);
    const received: string[] = [];
    server.onRequest(FsWriteFile, (params) => {
      received.push(params.path);
      return {};
    });
    server.onRequest(EnvironmentStatus, () => ({ status: 'ready' }));
    server.start();
    client.start();
    const error = await rejectionOf(client.request(FsWriteFile, { path: 'file:///big', dataBase64: 'QUJD'.repeat(300) }));
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.FrameTooLarge);
    expect((error as LocalError).message).toMatch(/the fs\/writeFile request is 12\d\d bytes, over the 1000-byte message limit of .*; it was not sent/);
    await expect(client.request(FsWriteFile, { path: 'file:///small', dataBase64: 'QUJD' })).resolves.toEqual({});
    expect(received).toEqual(['file:///small']);
  });

  it('answers a result over the message limit with -32603 instead, and settles its memory', async () => {
    const [a, b] = createMemoryPair('limits');
    const client = new RpcConnection(a);
    const server = new RpcConnection(b, { maxMessageBytes: 1000 });
    open.push(client, server);
    const settled: string[] = [];
    server.onRequest(FsReadFile, (params) =>
      withBase64Bytes({}, 'dataBase64', Buffer.alloc(params.path === 'file:///big' ? 900 : 9), {}, { encoded: () => settled.push('encoded'), sent: () => settled.push('sent') }),
    );
    server.start();
    client.start();
    const error = await rejectionOf(client.request(FsReadFile, { path: 'file:///big' }));
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).code).toBe(-32603);
    expect((error as RpcError).message).toMatch(/^the fs\/readFile result is 12\d\d bytes, over the 1000-byte message limit; it was not sent$/);
    expect(settled).toEqual(['encoded', 'sent']);
    await expect(client.request(FsReadFile, { path: 'file:///small' })).resolves.toEqual({ dataBase64: Buffer.alloc(9).toString('base64') });
  });

  it('over stdio, fails only the request whose response was over the limit; the next one works', async () => {
    const { client, server } = stdioPair({ clientIn: 4096, serverIn: DEFAULT_MAX_MESSAGE_BYTES });
    server.onRequest(FsReadFile, (params) => withBase64Bytes({}, 'dataBase64', Buffer.alloc(params.path === 'file:///big' ? 10_000 : 3)));
    server.start();
    client.start();
    // Without the fix this waited for the timeout: the dropped line's id was never looked at.
    const error = await rejectionOf(client.request(FsReadFile, { path: 'file:///big' }, { timeoutMs: 10_000 }));
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.FrameTooLarge);
    expect((error as LocalError).message).toBe('the response to fs/readFile from client-side is larger than the 4096-byte message limit; it was dropped');
    await expect(client.request(FsReadFile, { path: 'file:///small' })).resolves.toEqual({ dataBase64: 'AAAA' });
    expect(client.isClosed).toBe(false);
  });

  it('over stdio, answers a request over the limit with an error under its own id; the next one works', async () => {
    const { client, server } = stdioPair({ clientIn: DEFAULT_MAX_MESSAGE_BYTES, serverIn: 4096 });
    server.onRequest(FsWriteFile, () => ({}));
    server.start();
    client.start();
    const error = await rejectionOf(client.request(FsWriteFile, { path: 'file:///big', dataBase64: 'QUJD'.repeat(2000) }, { timeoutMs: 10_000 }));
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).code).toBe(-32600);
    expect((error as RpcError).message).toBe('failed to parse JSON-RPC message from server-side: message exceeds the limit of 4096 bytes and was dropped');
    await expect(client.request(FsWriteFile, { path: 'file:///small', dataBase64: 'QUJD' })).resolves.toEqual({});
  });
});
