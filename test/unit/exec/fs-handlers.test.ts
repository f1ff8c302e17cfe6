import { execFileSync, spawn } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  FsCanonicalize,
  FsClose,
  FsCopy,
  FsCreateDirectory,
  FsGetMetadata,
  FsOpen,
  FsReadBlock,
  FsReadDirectory,
  FsReadFile,
  FsRemove,
  FsWalk,
  FsWriteBlock,
  FsWriteFile,
  type SandboxContext,
} from '../../../src/protocol/exec.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { createFsSessionState, registerFsHandlers, type FsHandlerOptions, type FsSessionState } from '../../../src/exec/fs-handlers.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import { specialEntry, workspaceWriteSandbox } from '../../helpers/sandbox.js';

const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64');
const WALK = { maxDepth: 10, maxDirectories: 100, maxEntries: 100, followDirectorySymlinks: false };

let tmp: string;
const open: { client: RpcConnection; server: RpcConnection; state: FsSessionState }[] = [];

/** A percent-encoded file URI for a path inside the temp dir. */
function uri(...parts: string[]): string {
  return pathToFileURL(join(tmp, ...parts)).href;
}

/** A client connected over an in-memory pair to a server with the fs handlers registered. */
function connect(options?: FsHandlerOptions): { client: RpcConnection; state: FsSessionState } {
  const [a, b] = createMemoryPair('fs-test');
  const server = new RpcConnection(a);
  const client = new RpcConnection(b);
  const state = createFsSessionState();
  registerFsHandlers(server, state, options);
  server.start();
  client.start();
  open.push({ client, server, state });
  return { client, state };
}

let client: RpcConnection;

/** Expects an RpcError with `code` whose message contains every fragment; then checks the connection still answers. */
async function expectRpcError(promise: Promise<unknown>, code: number, ...fragments: string[]): Promise<RpcError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(RpcError);
  const rpcError = error as RpcError;
  expect(rpcError.code).toBe(code);
  for (const fragment of fragments) expect(rpcError.message).toContain(fragment);
  await expect(client.request(FsCanonicalize, { path: uri() })).resolves.toEqual({ path: pathToFileURL(tmp).href });
  return rpcError;
}

beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'fs-handlers-')));
  client = connect().client;
});

afterEach(async () => {
  for (const entry of open.splice(0)) {
    await entry.client.close();
    await entry.server.close();
    await entry.state.closeAll();
  }
  await rm(tmp, { recursive: true, force: true });
});

describe('fs/readFile', () => {
  it('reads bytes, following symlinks by default', async () => {
    const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
    await writeFile(join(tmp, 'bin'), bytes);
    await symlink(join(tmp, 'bin'), join(tmp, 'link'));
    await expect(client.request(FsReadFile, { path: uri('bin') })).resolves.toEqual({ dataBase64: bytes.toString('base64') });
    await expect(client.request(FsReadFile, { path: uri('link') })).resolves.toEqual({ dataBase64: bytes.toString('base64') });
  });

  it('accepts percent-encoded and unencoded URIs, FILE: and localhost', async () => {
    await mkdir(join(tmp, 'dïr ectory'));
    await writeFile(join(tmp, 'dïr ectory', 'sp ace ü.txt'), 'hi');
    const encoded = uri('dïr ectory', 'sp ace ü.txt');
    expect(encoded).toContain('d%C3%AFr%20ectory/sp%20ace%20%C3%BC.txt');
    const expected = { dataBase64: b64('hi') };
    await expect(client.request(FsReadFile, { path: encoded })).resolves.toEqual(expected);
    await expect(client.request(FsReadFile, { path: `file://${tmp}/dïr ectory/sp ace ü.txt` })).resolves.toEqual(expected);
    await expect(client.request(FsReadFile, { path: encoded.replace('file:', 'FILE:') })).resolves.toEqual(expected);
    await expect(client.request(FsReadFile, { path: encoded.replace('file://', 'file://localhost') })).resolves.toEqual(expected);
  });

  it('reports a missing file as -32004', async () => {
    await expectRpcError(client.request(FsReadFile, { path: uri('missing.txt') }), -32004, 'No such file or directory (os error 2)');
  });

  it('refuses a directory and a FIFO as -32600 not a file', async () => {
    await mkdir(join(tmp, 'dir'));
    await expectRpcError(client.request(FsReadFile, { path: uri('dir') }), -32600, `path \`${join(tmp, 'dir')}\` is not a file`);
    execFileSync('mkfifo', [join(tmp, 'fifo')]);
    await expectRpcError(client.request(FsReadFile, { path: uri('fifo') }), -32600, 'is not a file');
  });

  it('refuses files over maxReadFileBytes, pointing at fs/open + fs/readBlock', async () => {
    ({ client } = connect({ maxReadFileBytes: 4 }));
    await writeFile(join(tmp, 'four'), 'abcd');
    await writeFile(join(tmp, 'five'), 'abcde');
    await expect(client.request(FsReadFile, { path: uri('four') })).resolves.toEqual({ dataBase64: b64('abcd') });
    await expectRpcError(client.request(FsReadFile, { path: uri('five') }), -32600, '5 bytes', '4-byte limit', 'fs/open', 'fs/readBlock');
  });

  it('with followSymlinks false refuses a symlink, final or among the parents', async () => {
    await mkdir(join(tmp, 'real'));
    await writeFile(join(tmp, 'real', 'f'), 'x');
    await symlink(join(tmp, 'real', 'f'), join(tmp, 'lf'));
    await symlink(join(tmp, 'real'), join(tmp, 'ld'));
    await expect(client.request(FsReadFile, { path: uri('real', 'f'), followSymlinks: false })).resolves.toEqual({ dataBase64: b64('x') });
    await expectRpcError(client.request(FsReadFile, { path: uri('lf'), followSymlinks: false }), -32603, '(os error 40)');
    await expectRpcError(client.request(FsReadFile, { path: uri('ld', 'f'), followSymlinks: false }), -32603, 'Not a directory (os error 20)');
  });

  it('answers bad URIs with the path-uri errors', async () => {
    await expectRpcError(client.request(FsReadFile, { path: join(tmp, 'x') }), -32602, 'invalid URI: relative URL without a base');
    await expectRpcError(client.request(FsReadFile, { path: 'file://relative/x' }), -32600, "'file://relative/x' is invalid on");
    await expectRpcError(client.request(FsReadFile, { path: 'http:///x' }), -32602, 'unsupported path URI scheme `http`');
    await expectRpcError(client.request(FsReadFile, { path: 'file:///a%2Fb' }), -32602, 'invalid URI');
    await expectRpcError(client.request(FsReadDirectory, { path: 'relative/dir' }), -32602, 'invalid URI');
  });

  it('refuses a sandbox request it cannot understand instead of acting unconfined', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await expectRpcError(client.request(FsReadFile, { path: uri('f'), sandbox: { permissions: {} } }), -32602, 'unsupported sandbox request');
  });
});

describe('fs/* under a sandbox', () => {
  /** Codex's workspace-write shape with `ws` as the workspace, plus a denied `ws/secret`. */
  const sandbox = (): SandboxContext => workspaceWriteSandbox(join(tmp, 'ws'), { extra: [specialEntry('project_roots', 'deny', { subpath: 'secret' })] });

  beforeEach(async () => {
    await mkdir(join(tmp, 'ws', 'secret'), { recursive: true });
    await mkdir(join(tmp, 'outside'));
    await writeFile(join(tmp, 'ws', 'secret', 'key'), 'hidden');
    await writeFile(join(tmp, 'outside', 'f'), 'keep');
    await symlink(join(tmp, 'outside'), join(tmp, 'ws', 'escape'));
  });

  it('writes inside the workspace and refuses every kind of write outside it, through symlinks and ..', async () => {
    const sb = sandbox();
    await client.request(FsWriteFile, { path: uri('ws', 'ok'), dataBase64: b64('in'), sandbox: sb });
    expect(await readFile(join(tmp, 'ws', 'ok'), 'utf8')).toBe('in');
    await expectRpcError(client.request(FsWriteFile, { path: uri('outside', 'new'), dataBase64: b64('x'), sandbox: sb }), -32600, 'not allowed by the sandbox');
    await expectRpcError(client.request(FsWriteFile, { path: uri('ws', 'escape', 'new'), dataBase64: b64('x'), sandbox: sb }), -32600, 'resolves to');
    await expectRpcError(client.request(FsWriteFile, { path: `${uri('ws')}/../outside/new`, dataBase64: b64('x'), sandbox: sb }), -32600, 'not allowed by the sandbox');
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('outside', 'd'), sandbox: sb }), -32600, 'not allowed');
    await expectRpcError(client.request(FsRemove, { path: uri('outside', 'f'), sandbox: sb }), -32600, 'not allowed');
    await expectRpcError(client.request(FsCopy, { sourcePath: uri('ws', 'ok'), destinationPath: uri('outside', 'copy'), recursive: false, sandbox: sb }), -32600, 'not allowed');
    await expectRpcError(client.request(FsOpen, { handleId: 'h', path: uri('outside', 'f'), mode: 'replace', sandbox: sb }), -32600, 'not allowed');
    // Removing the symlink itself is a write inside the workspace; its target is untouched.
    await client.request(FsRemove, { path: uri('ws', 'escape'), sandbox: sb });
    await expect(lstat(join(tmp, 'ws', 'escape'))).rejects.toThrow(/ENOENT/);
    expect(await readFile(join(tmp, 'outside', 'f'), 'utf8')).toBe('keep');
    await expect(stat(join(tmp, 'outside', 'new'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(tmp, 'outside', 'copy'))).rejects.toThrow(/ENOENT/);
    await expect(stat(join(tmp, 'outside', 'd'))).rejects.toThrow(/ENOENT/);
  });

  it('hides denied paths from reads and listings', async () => {
    const sb = sandbox();
    await expectRpcError(client.request(FsReadFile, { path: uri('ws', 'secret', 'key'), sandbox: sb }), -32600, 'reading');
    await expectRpcError(client.request(FsReadDirectory, { path: uri('ws', 'secret'), sandbox: sb }), -32600, 'reading');
    const listing = await client.request(FsReadDirectory, { path: uri('ws'), sandbox: sb });
    expect(listing.entries.map((entry) => entry.fileName).sort()).toEqual(['escape']);
    const walked = await client.request(FsWalk, { path: uri('ws'), options: WALK, sandbox: sb });
    expect(walked.entries.map((entry) => entry.path)).not.toContain(uri('ws', 'secret'));
    // Reading outside the workspace is allowed (the root is readable).
    await expect(client.request(FsReadFile, { path: uri('outside', 'f'), sandbox: sb })).resolves.toEqual({ dataBase64: b64('keep') });
  });

  it('judges a write through a dangling symlink by where it would land, for every kind of write', async () => {
    const sb = sandbox();
    await writeFile(join(tmp, 'ws', 'ok'), 'in');
    await mkdir(join(tmp, 'ws', 'tree'));
    // Links the model may make in its workspace: to a missing file outside, a chain ending
    // there, and a relative one.
    await symlink(join(tmp, 'outside', 'new'), join(tmp, 'ws', 'evil'));
    await symlink('evil', join(tmp, 'ws', 'chain'));
    await symlink('../outside/rel', join(tmp, 'ws', 'relative'));
    const refused = (promise: Promise<unknown>): Promise<RpcError> => expectRpcError(promise, -32600, 'not allowed by the sandbox', `(it resolves to \`${join(tmp, 'outside')}/`);
    for (const link of ['evil', 'chain', 'relative']) {
      await refused(client.request(FsWriteFile, { path: uri('ws', link), dataBase64: b64('x'), sandbox: sb }));
      await refused(client.request(FsOpen, { handleId: `h-${link}`, path: uri('ws', link), mode: 'replace', sandbox: sb }));
      await refused(client.request(FsCopy, { sourcePath: uri('ws', 'ok'), destinationPath: uri('ws', link), recursive: false, sandbox: sb }));
      await refused(client.request(FsCopy, { sourcePath: uri('ws', 'tree'), destinationPath: uri('ws', link), recursive: true, sandbox: sb }));
      await refused(client.request(FsCreateDirectory, { path: uri('ws', link), sandbox: sb }));
      await refused(client.request(FsCreateDirectory, { path: uri('ws', link, 'sub'), sandbox: sb }));
    }
    expect((await readdir(join(tmp, 'outside'))).sort()).toEqual(['f']);

    // A dangling link that stays inside is written through, creating its target, as before.
    await symlink(join(tmp, 'ws', 'made'), join(tmp, 'ws', 'inner'));
    await client.request(FsWriteFile, { path: uri('ws', 'inner'), dataBase64: b64('through'), sandbox: sb });
    expect(await readFile(join(tmp, 'ws', 'made'), 'utf8')).toBe('through');
    await symlink(join(tmp, 'ws', 'made-dir', 'a'), join(tmp, 'ws', 'inner-dir'));
    await client.request(FsCreateDirectory, { path: uri('ws', 'inner-dir', 'b'), sandbox: sb });
    expect((await stat(join(tmp, 'ws', 'made-dir', 'a', 'b'))).isDirectory()).toBe(true);
    // Links going round are refused as the kernel refuses them.
    await symlink('loop-b', join(tmp, 'ws', 'loop-a'));
    await symlink('loop-a', join(tmp, 'ws', 'loop-b'));
    await expectRpcError(client.request(FsWriteFile, { path: uri('ws', 'loop-a'), dataBase64: b64('x'), sandbox: sb }), -32603, '(os error 40)');
  });

  it('makes sandboxed writes with the usual outcomes inside the workspace', async () => {
    const sb = sandbox();
    await mkdir(join(tmp, 'ws', 'real'));
    await writeFile(join(tmp, 'ws', 'real', 'target'), 'old');
    await symlink(join(tmp, 'ws', 'real'), join(tmp, 'ws', 'linked'));
    await symlink(join(tmp, 'ws', 'real', 'target'), join(tmp, 'ws', 'to-target'));
    await client.request(FsWriteFile, { path: uri('ws', 'linked', 'new'), dataBase64: b64('n'), sandbox: sb });
    expect(await readFile(join(tmp, 'ws', 'real', 'new'), 'utf8')).toBe('n');
    await client.request(FsWriteFile, { path: uri('ws', 'to-target'), dataBase64: b64('through'), sandbox: sb });
    expect(await readFile(join(tmp, 'ws', 'real', 'target'), 'utf8')).toBe('through');
    await expectRpcError(client.request(FsWriteFile, { path: uri('ws', 'to-target'), dataBase64: b64('no'), followSymlinks: false, sandbox: sb }), -32603, '(os error 40)');
    await expectRpcError(client.request(FsWriteFile, { path: uri('ws', 'no', 'such'), dataBase64: b64('x'), sandbox: sb }), -32004, 'No such file or directory');
    await client.request(FsOpen, { handleId: 'w', path: uri('ws', 'linked', 'blocks'), mode: 'replace', sandbox: sb });
    await client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: b64('block') });
    await client.request(FsClose, { handleId: 'w' });
    expect(await readFile(join(tmp, 'ws', 'real', 'blocks'), 'utf8')).toBe('block');

    await client.request(FsCreateDirectory, { path: uri('ws', 'linked', 'a', 'b'), sandbox: sb });
    expect((await stat(join(tmp, 'ws', 'real', 'a', 'b'))).isDirectory()).toBe(true);
    await client.request(FsCreateDirectory, { path: uri('ws', 'linked', 'a'), sandbox: sb });
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('ws', 'real', 'a'), recursive: false, sandbox: sb }), -32603, 'File exists (os error 17)');
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('ws', 'real', 'target'), sandbox: sb }), -32603, 'File exists (os error 17)');
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('ws', 'x', 'y'), recursive: false, sandbox: sb }), -32004, 'No such file or directory');

    await client.request(FsCopy, { sourcePath: uri('ws', 'real', 'target'), destinationPath: uri('ws', 'linked', 'copy'), recursive: false, sandbox: sb });
    expect(await readFile(join(tmp, 'ws', 'real', 'copy'), 'utf8')).toBe('through');
    await client.request(FsCopy, { sourcePath: uri('ws', 'real', 'copy'), destinationPath: uri('ws', 'real', 'copy'), recursive: false, sandbox: sb });
    expect(await readFile(join(tmp, 'ws', 'real', 'copy'), 'utf8')).toBe('through');

    await client.request(FsRemove, { path: uri('ws', 'linked', 'copy'), sandbox: sb });
    await expect(lstat(join(tmp, 'ws', 'real', 'copy'))).rejects.toThrow(/ENOENT/);
    await expect(client.request(FsRemove, { path: uri('ws', 'gone', 'x'), sandbox: sb })).resolves.toEqual({});
  });

  it('judges every entry a walk reports or a copy reads as a direct read, through symlink aliases', async () => {
    // A denied folder outside the workspace too, next to a readable one.
    const vaultSecret = { path: { type: 'path', path: uri('vault', 'secret') }, access: 'deny' };
    const sb = workspaceWriteSandbox(join(tmp, 'ws'), { extra: [specialEntry('project_roots', 'deny', { subpath: 'secret' }), vaultSecret] });
    await mkdir(join(tmp, 'vault', 'secret', 'inner'), { recursive: true });
    await writeFile(join(tmp, 'vault', 'secret', 'key'), 'vault key');
    await writeFile(join(tmp, 'vault', 'secret', 'inner', 'deep'), 'deep key');
    await writeFile(join(tmp, 'vault', 'public'), 'public');
    await symlink(join(tmp, 'ws', 'secret'), join(tmp, 'ws', 'alias'));
    await symlink(join(tmp, 'vault', 'secret'), join(tmp, 'ws', 'vault-alias'));

    // A walk through the aliases lists nothing inside the denied folders, nor the aliases.
    const walked = await client.request(FsWalk, { path: uri('ws'), options: { ...WALK, followDirectorySymlinks: true }, sandbox: sb });
    expect(walked).toEqual({
      entries: [
        { path: uri('ws', 'escape'), kind: 'directory' },
        { path: uri('ws', 'escape', 'f'), kind: 'file' },
      ],
      errors: [],
      truncated: false,
    });
    const vault = await client.request(FsWalk, { path: uri('vault'), options: WALK, sandbox: sb });
    expect(vault.entries).toEqual([{ path: uri('vault', 'public'), kind: 'file' }]);

    // Copying the parent of a denied folder copies everything but it.
    await client.request(FsCopy, { sourcePath: uri('vault'), destinationPath: uri('ws', 'loot'), recursive: true, sandbox: sb });
    expect(await readdir(join(tmp, 'ws', 'loot'))).toEqual(['public']);
    await expectRpcError(client.request(FsReadFile, { path: uri('ws', 'loot', 'secret', 'key'), sandbox: sb }), -32004, 'No such file or directory');
    // A tree holding an alias gets the alias as a link, which reads as the denied folder does.
    await mkdir(join(tmp, 'ws', 'tree'));
    await symlink(join(tmp, 'vault', 'secret'), join(tmp, 'ws', 'tree', 'alias'));
    await client.request(FsCopy, { sourcePath: uri('ws', 'tree'), destinationPath: uri('ws', 'tree-copy'), recursive: true, sandbox: sb });
    expect(await readlink(join(tmp, 'ws', 'tree-copy', 'alias'))).toBe(join(tmp, 'vault', 'secret'));
    await expectRpcError(client.request(FsReadFile, { path: uri('ws', 'tree-copy', 'alias', 'key'), sandbox: sb }), -32600, 'reading');
    // Copies through an alias are refused, whole folders and single files.
    await expectRpcError(
      client.request(FsCopy, { sourcePath: uri('ws', 'vault-alias', 'inner'), destinationPath: uri('ws', 'inner'), recursive: true, sandbox: sb }),
      -32600,
      'reading',
    );
    await expectRpcError(
      client.request(FsCopy, { sourcePath: uri('ws', 'vault-alias', 'key'), destinationPath: uri('ws', 'key'), recursive: false, sandbox: sb }),
      -32600,
      'reading',
    );
    await expect(lstat(join(tmp, 'ws', 'inner'))).rejects.toThrow(/ENOENT/);
    await expect(lstat(join(tmp, 'ws', 'key'))).rejects.toThrow(/ENOENT/);
  });
});

describe('fs/writeFile', () => {
  it('creates, truncates and writes empty files; names are decoded from the URI', async () => {
    const target = join(tmp, 'nëw fïle.txt');
    await expect(client.request(FsWriteFile, { path: uri('nëw fïle.txt'), dataBase64: b64('hello world') })).resolves.toEqual({});
    expect(await readFile(target, 'utf8')).toBe('hello world');
    await client.request(FsWriteFile, { path: uri('nëw fïle.txt'), dataBase64: b64('bye') });
    expect(await readFile(target, 'utf8')).toBe('bye');
    await client.request(FsWriteFile, { path: uri('nëw fïle.txt'), dataBase64: '' });
    expect(await readFile(target, 'utf8')).toBe('');
  });

  it('refuses invalid base64 with -32600 and the decoder reason', async () => {
    await expectRpcError(client.request(FsWriteFile, { path: uri('f'), dataBase64: '*' }), -32600, 'fs/writeFile requires valid base64 dataBase64: Invalid symbol 42, offset 0.');
    await expectRpcError(client.request(FsWriteFile, { path: uri('f'), dataBase64: 'aGk' }), -32600, 'fs/writeFile requires valid base64 dataBase64: Invalid padding');
    await expect(lstat(join(tmp, 'f'))).rejects.toThrow('ENOENT');
  });

  it('needs the parent to exist (-32004) and refuses a directory (-32603)', async () => {
    await expectRpcError(client.request(FsWriteFile, { path: uri('no', 'such'), dataBase64: b64('x') }), -32004, 'No such file or directory (os error 2)');
    await mkdir(join(tmp, 'dir'));
    await expectRpcError(client.request(FsWriteFile, { path: uri('dir'), dataBase64: b64('x') }), -32603, 'Is a directory (os error 21)');
  });

  it('writes through a symlink by default, and refuses to with followSymlinks false', async () => {
    await writeFile(join(tmp, 'target'), 'old');
    await symlink(join(tmp, 'target'), join(tmp, 'link'));
    await client.request(FsWriteFile, { path: uri('link'), dataBase64: b64('new') });
    expect(await readFile(join(tmp, 'target'), 'utf8')).toBe('new');
    await expectRpcError(client.request(FsWriteFile, { path: uri('link'), dataBase64: b64('no'), followSymlinks: false }), -32603, '(os error 40)');
    expect(await readFile(join(tmp, 'target'), 'utf8')).toBe('new');
  });
});

describe('fs/createDirectory', () => {
  it('is recursive by default and accepts an existing directory', async () => {
    await expect(client.request(FsCreateDirectory, { path: uri('a', 'b', 'c') })).resolves.toEqual({});
    expect((await stat(join(tmp, 'a', 'b', 'c'))).isDirectory()).toBe(true);
    await expect(client.request(FsCreateDirectory, { path: uri('a', 'b'), recursive: null })).resolves.toEqual({});
  });

  it('with recursive false: existing → -32603 File exists, missing parent → -32004', async () => {
    await mkdir(join(tmp, 'd'));
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('d'), recursive: false }), -32603, 'File exists (os error 17)');
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('x', 'y'), recursive: false }), -32004, 'No such file or directory (os error 2)');
    await expect(client.request(FsCreateDirectory, { path: uri('d', 'e'), recursive: false })).resolves.toEqual({});
  });

  it('refuses a path that is a file', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('f') }), -32603, 'File exists (os error 17)');
  });

  it('with followSymlinks false refuses a symlinked parent', async () => {
    await mkdir(join(tmp, 'real'));
    await symlink(join(tmp, 'real'), join(tmp, 'ld'));
    await expectRpcError(client.request(FsCreateDirectory, { path: uri('ld', 'new'), followSymlinks: false }), -32603, 'Not a directory (os error 20)');
    await expect(client.request(FsCreateDirectory, { path: uri('ld', 'new') })).resolves.toEqual({});
    expect((await stat(join(tmp, 'real', 'new'))).isDirectory()).toBe(true);
  });
});

describe('fs/getMetadata', () => {
  it('describes files and directories with integer times', async () => {
    await writeFile(join(tmp, 'f'), 'hello');
    await mkdir(join(tmp, 'd'));
    const info = await stat(join(tmp, 'f'));
    const file = await client.request(FsGetMetadata, { path: uri('f') });
    expect(file).toEqual({
      isDirectory: false,
      isFile: true,
      isSymlink: false,
      size: 5,
      createdAtMs: info.birthtimeMs > 0 ? Math.floor(info.birthtimeMs) : 0,
      modifiedAtMs: Math.floor(info.mtimeMs),
    });
    expect(Number.isInteger(file.createdAtMs) && Number.isInteger(file.modifiedAtMs)).toBe(true);
    await expect(client.request(FsGetMetadata, { path: uri('d') })).resolves.toMatchObject({ isDirectory: true, isFile: false, isSymlink: false });
    await expect(client.request(FsGetMetadata, { path: uri('f'), followSymlinks: false })).resolves.toMatchObject({ isFile: true, isSymlink: false, size: 5 });
  });

  it('follows symlinks and still reports isSymlink', async () => {
    await writeFile(join(tmp, 'f'), 'hello');
    await mkdir(join(tmp, 'd'));
    await symlink(join(tmp, 'f'), join(tmp, 'lf'));
    await symlink(join(tmp, 'd'), join(tmp, 'ld'));
    await expect(client.request(FsGetMetadata, { path: uri('lf') })).resolves.toMatchObject({ isFile: true, isDirectory: false, isSymlink: true, size: 5 });
    await expect(client.request(FsGetMetadata, { path: uri('ld') })).resolves.toMatchObject({ isFile: false, isDirectory: true, isSymlink: true });
  });

  it('with followSymlinks false: a symlink → -32600, a symlinked parent → -32603', async () => {
    await mkdir(join(tmp, 'd'));
    await writeFile(join(tmp, 'd', 'f'), 'x');
    await symlink(join(tmp, 'd'), join(tmp, 'ld'));
    await expectRpcError(client.request(FsGetMetadata, { path: uri('ld'), followSymlinks: false }), -32600, 'path contains a symbolic link');
    await expectRpcError(client.request(FsGetMetadata, { path: uri('ld', 'f'), followSymlinks: false }), -32603, 'Not a directory (os error 20)');
  });

  it('reports missing paths and dangling links as -32004', async () => {
    await symlink(join(tmp, 'nowhere'), join(tmp, 'dangling'));
    await expectRpcError(client.request(FsGetMetadata, { path: uri('missing') }), -32004, 'No such file or directory (os error 2)');
    await expectRpcError(client.request(FsGetMetadata, { path: uri('dangling') }), -32004, 'No such file or directory (os error 2)');
  });
});

describe('fs/readDirectory', () => {
  it('lists one level; symlinks report their target; unresolvable links are left out', async () => {
    await writeFile(join(tmp, 'f.txt'), 'x');
    await mkdir(join(tmp, 'sub'));
    await writeFile(join(tmp, 'sub', 'deep'), 'x');
    await writeFile(join(tmp, 'sp ace ü.txt'), 'x');
    await symlink(join(tmp, 'f.txt'), join(tmp, 'lf'));
    await symlink(join(tmp, 'sub'), join(tmp, 'ld'));
    await symlink(join(tmp, 'nowhere'), join(tmp, 'dangling'));
    await symlink('loop', join(tmp, 'loop'));
    execFileSync('mkfifo', [join(tmp, 'fifo')]);
    const { entries } = await client.request(FsReadDirectory, { path: uri() });
    expect([...entries].sort((a, b) => a.fileName.localeCompare(b.fileName))).toEqual([
      { fileName: 'f.txt', isDirectory: false, isFile: true },
      { fileName: 'fifo', isDirectory: false, isFile: false },
      { fileName: 'ld', isDirectory: true, isFile: false },
      { fileName: 'lf', isDirectory: false, isFile: true },
      { fileName: 'sp ace ü.txt', isDirectory: false, isFile: true },
      { fileName: 'sub', isDirectory: true, isFile: false },
    ]);
    await expect(client.request(FsReadDirectory, { path: uri('ld') })).resolves.toEqual({ entries: [{ fileName: 'deep', isDirectory: false, isFile: true }] });
  });

  it('reports a missing directory as -32004 and a file as -32603', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await expectRpcError(client.request(FsReadDirectory, { path: uri('missing') }), -32004, 'No such file or directory (os error 2)');
    await expectRpcError(client.request(FsReadDirectory, { path: uri('f') }), -32603, 'Not a directory (os error 20)');
  });
});

describe('fs/walk', () => {
  /** The tree of the live probe of codex 0.169.0 whose answers the expectations below repeat. */
  async function probeTree(): Promise<void> {
    await writeFile(join(tmp, 'f.txt'), 'hello');
    await mkdir(join(tmp, 'd', 'e', 'g'), { recursive: true });
    await writeFile(join(tmp, 'd', 'x.txt'), 'x');
    await writeFile(join(tmp, 'd', 'e', 'y.txt'), 'y');
    await writeFile(join(tmp, 'd', 'e', 'g', 'z.txt'), 'z');
    await mkdir(join(tmp, 'locked'));
    await writeFile(join(tmp, 'locked', 'a'), 'a');
    await symlink(join(tmp, 'f.txt'), join(tmp, 'lf'));
    await symlink(join(tmp, 'd'), join(tmp, 'ld'));
    await symlink(join(tmp, 'nope'), join(tmp, 'dangling'));
  }
  const dir = (...parts: string[]) => ({ path: uri(...parts), kind: 'directory' });
  const file = (...parts: string[]) => ({ path: uri(...parts), kind: 'file' });

  it('goes breadth-first in name order, skipping file and dangling symlinks', async () => {
    await probeTree();
    await expect(client.request(FsWalk, { path: uri(), options: WALK })).resolves.toEqual({
      entries: [
        dir('d'),
        file('f.txt'),
        dir('locked'),
        dir('d', 'e'),
        file('d', 'x.txt'),
        file('locked', 'a'),
        dir('d', 'e', 'g'),
        file('d', 'e', 'y.txt'),
        file('d', 'e', 'g', 'z.txt'),
      ],
      errors: [],
      truncated: false,
    });
  });

  it('lists directory symlinks only with followDirectorySymlinks, never walking a directory twice', async () => {
    await probeTree();
    const { entries } = await client.request(FsWalk, { path: uri(), options: { ...WALK, followDirectorySymlinks: true } });
    expect(entries.slice(0, 4)).toEqual([dir('d'), file('f.txt'), dir('ld'), dir('locked')]);
    expect(entries.filter((entry) => entry.path.startsWith(uri('ld') + '/'))).toEqual([]);

    await mkdir(join(tmp, 'outside'));
    await writeFile(join(tmp, 'outside', 'o.txt'), 'o');
    await mkdir(join(tmp, 'root'));
    await symlink(join(tmp, 'outside'), join(tmp, 'root', 'lo'));
    await symlink(join(tmp, 'root'), join(tmp, 'outside', 'back')); // a cycle
    await expect(client.request(FsWalk, { path: uri('root'), options: { ...WALK, followDirectorySymlinks: true } })).resolves.toEqual({
      entries: [dir('root', 'lo'), dir('root', 'lo', 'back'), file('root', 'lo', 'o.txt')],
      errors: [],
      truncated: false,
    });
    await expect(client.request(FsWalk, { path: uri('root'), options: WALK })).resolves.toEqual({ entries: [], errors: [], truncated: false });
  });

  it('honours maxDepth (depth 0 is the root’s own entries) without truncating', async () => {
    await probeTree();
    await expect(client.request(FsWalk, { path: uri(), options: { ...WALK, maxDepth: 0 } })).resolves.toEqual({
      entries: [dir('d'), file('f.txt'), dir('locked')],
      errors: [],
      truncated: false,
    });
    const depth1 = await client.request(FsWalk, { path: uri(), options: { ...WALK, maxDepth: 1 } });
    expect(depth1).toEqual({ entries: [dir('d'), file('f.txt'), dir('locked'), dir('d', 'e'), file('d', 'x.txt'), file('locked', 'a')], errors: [], truncated: false });
  });

  it('honours maxDirectories (the root counts) and maxEntries (skipped entries count), setting truncated', async () => {
    await probeTree();
    await expect(client.request(FsWalk, { path: uri(), options: { ...WALK, maxDirectories: 1 } })).resolves.toEqual({
      entries: [dir('d'), file('f.txt'), dir('locked')],
      errors: [],
      truncated: true,
    });
    await expect(client.request(FsWalk, { path: uri(), options: { ...WALK, maxDirectories: 2 } })).resolves.toEqual({
      entries: [dir('d'), file('f.txt'), dir('locked'), dir('d', 'e'), file('d', 'x.txt')],
      errors: [],
      truncated: true,
    });
    await expect(client.request(FsWalk, { path: uri(), options: { ...WALK, maxEntries: 3 } })).resolves.toEqual({
      entries: [dir('d'), file('f.txt')],
      errors: [],
      truncated: true,
    });
  });

  it('validates limits before looking at the path', async () => {
    await expectRpcError(client.request(FsWalk, { path: uri('nope'), options: { ...WALK, maxEntries: 0 } }), -32600, 'filesystem walk limits must be greater than zero');
    await expectRpcError(client.request(FsWalk, { path: uri(), options: { ...WALK, maxDirectories: 0 } }), -32600, 'filesystem walk limits must be greater than zero');
    await expectRpcError(
      client.request(FsWalk, { path: uri(), options: { ...WALK, maxDepth: 65 } }),
      -32600,
      'filesystem walk limits exceed maximums: depth=64, directories=10000, entries=50000',
    );
    await expectRpcError(client.request(FsWalk, { path: uri(), options: { ...WALK, maxEntries: 50_001 } }), -32600, 'exceed maximums');
  });

  it('returns nothing for a file root, -32004 for a missing one, and percent-encodes paths', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await mkdir(join(tmp, 'dïr ectory'));
    await writeFile(join(tmp, 'dïr ectory', 'ü.txt'), 'x');
    await expect(client.request(FsWalk, { path: uri('f'), options: WALK })).resolves.toEqual({ entries: [], errors: [], truncated: false });
    await expectRpcError(client.request(FsWalk, { path: uri('missing'), options: WALK }), -32004, 'No such file or directory (os error 2)');
    const { entries } = await client.request(FsWalk, { path: uri('dïr ectory'), options: WALK });
    expect(entries).toEqual([{ path: pathToFileURL(tmp).href + '/d%C3%AFr%20ectory/%C3%BC.txt', kind: 'file' }]);
  });

  it('reports unreadable directories under errors and goes on', async () => {
    await mkdir(join(tmp, 'a', 'locked'), { recursive: true });
    await writeFile(join(tmp, 'a', 'locked', 'x'), 'x');
    await writeFile(join(tmp, 'a', 'z'), 'z');
    await chmod(join(tmp, 'a', 'locked'), 0);
    try {
      const result = await walkAsUnprivilegedUser(uri());
      expect(result).toEqual({
        entries: [dir('a'), dir('a', 'locked'), file('a', 'z')],
        errors: [{ path: uri('a', 'locked'), message: 'Permission denied (os error 13)' }],
        truncated: false,
      });
    } finally {
      await chmod(join(tmp, 'a', 'locked'), 0o755);
    }
  });
});

/**
 * Walks `path` where permissions apply: in this process, or (as root, who reads anything) in a
 * child running the same handlers as the `nobody` user.
 */
async function walkAsUnprivilegedUser(path: string): Promise<unknown> {
  if (process.getuid?.() !== 0) return client.request(FsWalk, { path, options: WALK });
  await chmod(tmp, 0o755);
  const source = (relative: string): string => new URL(`../../../src/${relative}`, import.meta.url).href;
  const script = `
    import { createFsSessionState, registerFsHandlers } from ${JSON.stringify(source('exec/fs-handlers.ts'))};
    import { FsWalk } from ${JSON.stringify(source('protocol/exec.ts'))};
    import { RpcConnection } from ${JSON.stringify(source('rpc/connection.ts'))};
    import { createMemoryPair } from ${JSON.stringify(source('transport/memory.ts'))};
    const [a, b] = createMemoryPair();
    const server = new RpcConnection(a);
    const client = new RpcConnection(b);
    registerFsHandlers(server, createFsSessionState());
    server.start();
    client.start();
    process.stdout.write(JSON.stringify(await client.request(FsWalk, ${JSON.stringify({ path, options: WALK })})));
    await client.close();
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`unprivileged walk failed (${code}): ${stderr}`);
  return JSON.parse(stdout) as unknown;
}

describe('fs/canonicalize', () => {
  it('resolves dot segments and symlinks to a percent-encoded URI', async () => {
    await mkdir(join(tmp, 'sub'));
    await writeFile(join(tmp, 'sp ace ü.txt'), 'x');
    await symlink(join(tmp, 'sub'), join(tmp, 'link'));
    await expect(client.request(FsCanonicalize, { path: `${uri('sub')}/../sp ace ü.txt` })).resolves.toEqual({
      path: pathToFileURL(tmp).href + '/sp%20ace%20%C3%BC.txt',
    });
    await expect(client.request(FsCanonicalize, { path: uri('link') })).resolves.toEqual({ path: uri('sub') });
  });

  it('reports a missing path as -32004', async () => {
    await expectRpcError(client.request(FsCanonicalize, { path: uri('missing', 'x') }), -32004, 'No such file or directory (os error 2)');
  });
});

describe('fs/remove', () => {
  it('is recursive and forced by default', async () => {
    await mkdir(join(tmp, 'd', 'e'), { recursive: true });
    await writeFile(join(tmp, 'd', 'e', 'f'), 'x');
    await expect(client.request(FsRemove, { path: uri('d') })).resolves.toEqual({});
    await expect(lstat(join(tmp, 'd'))).rejects.toThrow('ENOENT');
    await expect(client.request(FsRemove, { path: uri('missing') })).resolves.toEqual({});
    await expect(client.request(FsRemove, { path: uri('missing'), recursive: false })).resolves.toEqual({});
  });

  it('recursive false: a non-empty dir → -32603, an empty one is removed', async () => {
    await mkdir(join(tmp, 'full'));
    await writeFile(join(tmp, 'full', 'f'), 'x');
    await mkdir(join(tmp, 'empty'));
    await expectRpcError(client.request(FsRemove, { path: uri('full'), recursive: false }), -32603, 'Directory not empty (os error 39)');
    await expect(client.request(FsRemove, { path: uri('empty'), recursive: false })).resolves.toEqual({});
    await expect(lstat(join(tmp, 'empty'))).rejects.toThrow('ENOENT');
  });

  it('force false: a missing path → -32004; force never hides other errors', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await expectRpcError(client.request(FsRemove, { path: uri('missing'), force: false }), -32004, 'No such file or directory (os error 2)');
    await expectRpcError(client.request(FsRemove, { path: uri('f', 'x') }), -32603, 'Not a directory (os error 20)');
  });

  it('removes a symlink, never what it points to', async () => {
    await mkdir(join(tmp, 'd'));
    await writeFile(join(tmp, 'd', 'keep'), 'x');
    await symlink(join(tmp, 'd'), join(tmp, 'ld'));
    await client.request(FsRemove, { path: uri('ld') });
    await expect(lstat(join(tmp, 'ld'))).rejects.toThrow('ENOENT');
    expect(await readFile(join(tmp, 'd', 'keep'), 'utf8')).toBe('x');
  });

  it('with followSymlinks false refuses a symlink', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await symlink(join(tmp, 'f'), join(tmp, 'lf'));
    await expectRpcError(client.request(FsRemove, { path: uri('lf'), recursive: false, followSymlinks: false }), -32600, 'path contains a symbolic link');
    await expect(client.request(FsRemove, { path: uri('f'), recursive: false, followSymlinks: false })).resolves.toEqual({});
  });
});

describe('fs/copy', () => {
  it('copies a file, keeping its mode; copying a file onto itself keeps it', async () => {
    await writeFile(join(tmp, 'f'), 'hello');
    await chmod(join(tmp, 'f'), 0o750);
    await expect(client.request(FsCopy, { sourcePath: uri('f'), destinationPath: uri('g ü'), recursive: false })).resolves.toEqual({});
    expect(await readFile(join(tmp, 'g ü'), 'utf8')).toBe('hello');
    expect((await stat(join(tmp, 'g ü'))).mode & 0o777).toBe(0o750);
    await client.request(FsCopy, { sourcePath: uri('f'), destinationPath: uri('f'), recursive: false });
    expect(await readFile(join(tmp, 'f'), 'utf8')).toBe('hello');
  });

  it('needs recursive for a directory (-32600) and copies trees preserving symlinks', async () => {
    await mkdir(join(tmp, 'd', 'e'), { recursive: true });
    await writeFile(join(tmp, 'd', 'e', 'y.txt'), 'y');
    await writeFile(join(tmp, 'f.txt'), 'f');
    await symlink(join(tmp, 'f.txt'), join(tmp, 'd', 'lf'));
    await symlink('e', join(tmp, 'd', 'le'));
    await symlink('nowhere', join(tmp, 'd', 'dangling'));
    await expectRpcError(
      client.request(FsCopy, { sourcePath: uri('d'), destinationPath: uri('d2'), recursive: false }),
      -32600,
      'fs/copy requires recursive: true when sourcePath is a directory',
    );
    await expect(client.request(FsCopy, { sourcePath: uri('d'), destinationPath: uri('d2'), recursive: true })).resolves.toEqual({});
    expect(await readFile(join(tmp, 'd2', 'e', 'y.txt'), 'utf8')).toBe('y');
    expect(await readlink(join(tmp, 'd2', 'lf'))).toBe(join(tmp, 'f.txt'));
    expect(await readlink(join(tmp, 'd2', 'le'))).toBe('e');
    expect(await readlink(join(tmp, 'd2', 'dangling'))).toBe('nowhere');
    await expectRpcError(client.request(FsCopy, { sourcePath: uri('d'), destinationPath: uri('d2'), recursive: true }), -32603, 'File exists (os error 17)');
  });

  it('copies a symlink source as a symlink', async () => {
    await mkdir(join(tmp, 'd'));
    await symlink(join(tmp, 'd'), join(tmp, 'ld'));
    await client.request(FsCopy, { sourcePath: uri('ld'), destinationPath: uri('ld2'), recursive: false });
    expect(await readlink(join(tmp, 'ld2'))).toBe(join(tmp, 'd'));
  });

  it('refuses copying a directory into itself, special files, and reports missing paths', async () => {
    await mkdir(join(tmp, 'd'));
    await writeFile(join(tmp, 'f'), 'x');
    await expectRpcError(
      client.request(FsCopy, { sourcePath: uri('d'), destinationPath: uri('d', 'sub'), recursive: true }),
      -32600,
      'fs/copy cannot copy a directory to itself or one of its descendants',
    );
    execFileSync('mkfifo', [join(tmp, 'fifo')]);
    await expectRpcError(
      client.request(FsCopy, { sourcePath: uri('fifo'), destinationPath: uri('fifo2'), recursive: false }),
      -32600,
      'fs/copy only supports regular files, directories, and symlinks',
    );
    await expectRpcError(client.request(FsCopy, { sourcePath: uri('missing'), destinationPath: uri('x'), recursive: false }), -32004, 'No such file or directory');
    await expectRpcError(client.request(FsCopy, { sourcePath: uri('f'), destinationPath: uri('no', 'x'), recursive: false }), -32004, 'No such file or directory');
    await expectRpcError(client.request(FsCopy, { sourcePath: uri('f'), destinationPath: uri('d'), recursive: false }), -32603, 'Is a directory (os error 21)');
  });
});

describe('fs/open, fs/readBlock, fs/writeBlock, fs/close', () => {
  it('reads blocks with eof when fewer bytes than asked remain', async () => {
    await writeFile(join(tmp, 'hello.txt'), 'hello file\n');
    await expect(client.request(FsOpen, { handleId: 'h', path: uri('hello.txt') })).resolves.toEqual({ handleId: 'h' });
    await expect(client.request(FsReadBlock, { handleId: 'h', offset: 0, len: 5 })).resolves.toEqual({ chunk: b64('hello'), eof: false });
    await expect(client.request(FsReadBlock, { handleId: 'h', offset: 6, len: 100 })).resolves.toEqual({ chunk: b64('file\n'), eof: true });
    await expect(client.request(FsReadBlock, { handleId: 'h', offset: 11, len: 4 })).resolves.toEqual({ chunk: '', eof: true });
    await expect(client.request(FsReadBlock, { handleId: 'h', offset: 1000, len: 4 })).resolves.toEqual({ chunk: '', eof: true });
    await expect(client.request(FsClose, { handleId: 'h' })).resolves.toEqual({});
  });

  it('bounds readBlock len to 1..1048576', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await client.request(FsOpen, { handleId: 'h', path: uri('f') });
    await expectRpcError(client.request(FsReadBlock, { handleId: 'h', offset: 0, len: 0 }), -32600, 'file read block length must be between 1 and 1048576');
    await expectRpcError(client.request(FsReadBlock, { handleId: 'h', offset: 0, len: 16 * 1024 * 1024 }), -32600, 'file read block length must be between 1 and 1048576');
    await expect(client.request(FsReadBlock, { handleId: 'h', offset: 0, len: 1048576 })).resolves.toEqual({ chunk: b64('x'), eof: true });
  });

  it('writes positional blocks in replace mode, zero-filling gaps', async () => {
    await writeFile(join(tmp, 'blocks.bin'), 'previous contents');
    await client.request(FsOpen, { handleId: 'w', path: uri('blocks.bin'), mode: 'replace' });
    expect(await readFile(join(tmp, 'blocks.bin'), 'utf8')).toBe(''); // truncated on open
    await expect(client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: b64('abc') })).resolves.toEqual({});
    await client.request(FsWriteBlock, { handleId: 'w', offset: 5, chunk: b64('xy') });
    await client.request(FsClose, { handleId: 'w' });
    expect(await readFile(join(tmp, 'blocks.bin'))).toEqual(Buffer.from([0x61, 0x62, 0x63, 0, 0, 0x78, 0x79]));
  });

  it('replace creates a new file with a percent-encoded name', async () => {
    await client.request(FsOpen, { handleId: 'w', path: uri('nëw blöck.bin'), mode: 'replace' });
    await client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: b64('ok') });
    await client.request(FsClose, { handleId: 'w' });
    expect(await readFile(join(tmp, 'nëw blöck.bin'), 'utf8')).toBe('ok');
  });

  it('bounds writeBlock chunks to 1..1048576 bytes and validates base64', async () => {
    await client.request(FsOpen, { handleId: 'w', path: uri('f'), mode: 'replace' });
    await expectRpcError(client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: '' }), -32600, 'file write block length must be between 1 and 1048576');
    await expectRpcError(
      client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: Buffer.alloc(1048577).toString('base64') }),
      -32600,
      'file write block length must be between 1 and 1048576',
    );
    await expectRpcError(client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: '*' }), -32602, 'Invalid symbol 42, offset 0.');
    await expect(client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: Buffer.alloc(1048576).toString('base64') })).resolves.toEqual({});
  });

  it('refuses to write a read handle or read a replace handle, with -32600', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await client.request(FsOpen, { handleId: 'r', path: uri('f'), mode: 'read' });
    await client.request(FsOpen, { handleId: 'w', path: uri('g'), mode: 'replace' });
    await expectRpcError(client.request(FsWriteBlock, { handleId: 'r', offset: 0, chunk: b64('y') }), -32600, 'file handle `r` was opened with mode `read`');
    await expectRpcError(client.request(FsReadBlock, { handleId: 'w', offset: 0, len: 1 }), -32600, 'file handle `w` was opened with mode `replace`');
    expect(await readFile(join(tmp, 'f'), 'utf8')).toBe('x');
  });

  it('refuses a reused handleId, and unknown or closed handles; close is idempotent', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    await client.request(FsOpen, { handleId: 'h1', path: uri('f') });
    await expectRpcError(client.request(FsOpen, { handleId: 'h1', path: uri('f') }), -32600, 'file handle `h1` already exists');
    await client.request(FsClose, { handleId: 'h1' });
    await expect(client.request(FsClose, { handleId: 'h1' })).resolves.toEqual({});
    await expect(client.request(FsClose, { handleId: 'never' })).resolves.toEqual({});
    await expectRpcError(client.request(FsReadBlock, { handleId: 'h1', offset: 0, len: 1 }), -32004, 'unknown file handle `h1`');
    await expectRpcError(client.request(FsWriteBlock, { handleId: 'h1', offset: 0, chunk: b64('x') }), -32004, 'unknown file handle `h1`');
    await expect(client.request(FsOpen, { handleId: 'h1', path: uri('f') })).resolves.toEqual({ handleId: 'h1' });
  });

  it('lets only one of two concurrent opens with one handleId win', async () => {
    await writeFile(join(tmp, 'f'), 'x');
    const results = await Promise.allSettled([client.request(FsOpen, { handleId: 'h', path: uri('f') }), client.request(FsOpen, { handleId: 'h', path: uri('f') })]);
    expect(results.map((result) => result.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    expect((rejected?.reason as RpcError).code).toBe(-32600);
  });

  it('open: missing → -32004, a directory → -32600 not a file, replace on a directory → -32603', async () => {
    await mkdir(join(tmp, 'd'));
    await expectRpcError(client.request(FsOpen, { handleId: 'm', path: uri('missing') }), -32004, 'No such file or directory (os error 2)');
    await expectRpcError(client.request(FsOpen, { handleId: 'd', path: uri('d') }), -32600, `path \`${join(tmp, 'd')}\` is not a file`);
    await expectRpcError(client.request(FsReadBlock, { handleId: 'd', offset: 0, len: 1 }), -32004, 'unknown file handle `d`');
    await expectRpcError(client.request(FsOpen, { handleId: 'w', path: uri('d'), mode: 'replace' }), -32603, 'Is a directory (os error 21)');
    await expectRpcError(client.request(FsOpen, { handleId: 'w', path: uri('no', 'f'), mode: 'replace' }), -32004, 'No such file or directory (os error 2)');
    await expectRpcError(client.request(FsOpen, { handleId: 'u', path: 'relative' }), -32602, 'invalid URI');
  });

  it('bounds the open handles of a session', async () => {
    ({ client } = connect({ maxOpenHandles: 2 }));
    await writeFile(join(tmp, 'f'), 'x');
    await client.request(FsOpen, { handleId: 'a', path: uri('f') });
    await client.request(FsOpen, { handleId: 'b', path: uri('f') });
    await expectRpcError(client.request(FsOpen, { handleId: 'c', path: uri('f') }), -32600, 'too many open file handles (limit 2)', 'fs/close');
    await client.request(FsClose, { handleId: 'a' });
    await expect(client.request(FsOpen, { handleId: 'c', path: uri('f') })).resolves.toEqual({ handleId: 'c' });
  });

  it('keeps handles across connections of one session and releases them with closeAll', async () => {
    await writeFile(join(tmp, 'f'), 'abc');
    const first = connect();
    await first.client.request(FsOpen, { handleId: 'h', path: uri('f') });
    // A second connection of the same session (a resumed websocket) sees the handle.
    const [a, b] = createMemoryPair('fs-test-resumed');
    const server = new RpcConnection(a);
    const second = new RpcConnection(b);
    registerFsHandlers(server, first.state);
    server.start();
    second.start();
    open.push({ client: second, server, state: first.state });
    await expect(second.request(FsReadBlock, { handleId: 'h', offset: 1, len: 2 })).resolves.toEqual({ chunk: b64('bc'), eof: false });
    await first.state.closeAll();
    await first.state.closeAll();
    expect(first.state.openHandles).toBe(0);
    client = second;
    await expectRpcError(second.request(FsReadBlock, { handleId: 'h', offset: 0, len: 1 }), -32004, 'unknown file handle `h`');
    await expectRpcError(second.request(FsOpen, { handleId: 'h2', path: uri('f') }), -32600, 'closed');
  });
});
