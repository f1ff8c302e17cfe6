/**
 * A path component swapped for a symlink between the sandbox's check of an `fs/*` call and its
 * use, made deterministic through the handlers' `raceWindow` seam: the swap happens exactly in
 * that window. Every attack aims at decoys inside the test's own temp folder (`$tmp/outside`).
 */
import { lstat, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
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
  FsWriteBlock,
  FsWriteFile,
  type SandboxContext,
} from '../../../src/protocol/exec.js';
import { RpcConnection } from '../../../src/rpc/connection.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { createFsSessionState, registerFsHandlers, type FsSessionState } from '../../../src/exec/fs-handlers.js';
import { MAX_REMOVE_DEPTH } from '../../../src/exec/fs-remove.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import { workspaceWriteSandbox } from '../../helpers/sandbox.js';

const b64 = (text: string): string => Buffer.from(text).toString('base64');
const DECOY = 'decoy, must stay\n';
const SECRET = 'outside secret 7c1e\n';

let tmp: string;
let ws: string;
let outside: string;
let client: RpcConnection;
let server: RpcConnection;
let state: FsSessionState;
/** The path (as asked) at whose race window the swap is made, and whether it was. */
let swapAt: string | undefined;
let swapped: boolean;
/** The swap itself: `ws/dir` moved to `ws/moved` and replaced by a symlink to `outside`. */
let swap: () => Promise<void>;

const uri = (path: string): string => pathToFileURL(path).href;

/** Workspace-write on `ws`, with `outside` denied (so nothing there may be read either). */
const sandbox = (): SandboxContext => workspaceWriteSandbox(ws, { extra: [{ path: { type: 'path', path: uri(outside) }, access: 'deny' }] });

/** What a racing process does in the window: `from` moved to `to`, and a symlink to `outside` put in its place. */
const swapFor = (from: string, to: string) => async (): Promise<void> => {
  await rename(from, to);
  await symlink(outside, from);
};

async function expectRefused(promise: Promise<unknown>, ...fragments: string[]): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(RpcError);
  expect((error as RpcError).code).toBe(-32600);
  for (const fragment of fragments) expect((error as RpcError).message).toContain(fragment);
}

/** The decoys in `outside` are exactly as the test made them. */
async function expectDecoysUntouched(): Promise<void> {
  expect((await readdir(outside)).sort()).toEqual(['f', 'key', 'sub']);
  expect(await readFile(join(outside, 'f'), 'utf8')).toBe(DECOY);
  expect(await readFile(join(outside, 'key'), 'utf8')).toBe(SECRET);
  expect(await readdir(join(outside, 'sub'))).toEqual(['g']);
}

beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'fs-races-')));
  ws = join(tmp, 'ws');
  outside = join(tmp, 'outside');
  await mkdir(join(ws, 'dir'), { recursive: true });
  await mkdir(join(outside, 'sub'), { recursive: true });
  // The names a redirected call would hit in `outside`.
  await writeFile(join(outside, 'f'), DECOY);
  await writeFile(join(outside, 'key'), SECRET);
  await writeFile(join(outside, 'sub', 'g'), DECOY);
  await writeFile(join(ws, 'dir', 'f'), 'inside\n');
  await writeFile(join(ws, 'dir', 'key'), 'inside key\n');
  swapAt = undefined;
  swapped = false;
  swap = swapFor(join(ws, 'dir'), join(ws, 'moved'));
  const [a, b] = createMemoryPair('fs-races');
  server = new RpcConnection(a);
  client = new RpcConnection(b);
  state = createFsSessionState();
  registerFsHandlers(server, state, {
    raceWindow: async (path) => {
      if (path !== swapAt || swapped) return;
      swapped = true;
      await swap();
    },
  });
  server.start();
  client.start();
});

afterEach(async () => {
  await client.close();
  await server.close();
  await state.closeAll();
  await rm(tmp, { recursive: true, force: true });
});

describe('a symlink swapped in between the check and the write', () => {
  it('leaves fs/writeFile and fs/open (replace) in the folder that was judged', async () => {
    swapAt = join(ws, 'dir', 'f');
    await client.request(FsWriteFile, { path: uri(join(ws, 'dir', 'f')), dataBase64: b64('written'), sandbox: sandbox() });
    expect(swapped).toBe(true);
    await expectDecoysUntouched();
    expect(await readFile(join(ws, 'moved', 'f'), 'utf8')).toBe('written');

    await rm(join(ws, 'dir'));
    await rename(join(ws, 'moved'), join(ws, 'dir'));
    swapped = false;
    await client.request(FsOpen, { handleId: 'w', path: uri(join(ws, 'dir', 'f')), mode: 'replace', sandbox: sandbox() });
    await client.request(FsWriteBlock, { handleId: 'w', offset: 0, chunk: b64('block') });
    await client.request(FsClose, { handleId: 'w' });
    expect(swapped).toBe(true);
    await expectDecoysUntouched();
    expect(await readFile(join(ws, 'moved', 'f'), 'utf8')).toBe('block');
  });

  it('leaves fs/createDirectory in the folder that was judged, recursive or not', async () => {
    swapAt = join(ws, 'dir', 'a', 'b');
    await client.request(FsCreateDirectory, { path: uri(join(ws, 'dir', 'a', 'b')), sandbox: sandbox() });
    expect(swapped).toBe(true);
    await expectDecoysUntouched();
    expect(await readdir(join(ws, 'moved', 'a'))).toEqual(['b']);

    swapped = false;
    swap = swapFor(join(ws, 'moved'), join(ws, 'moved-again'));
    swapAt = join(ws, 'moved', 'c');
    await client.request(FsCreateDirectory, { path: uri(join(ws, 'moved', 'c')), recursive: false, sandbox: sandbox() });
    expect(swapped).toBe(true);
    await expectDecoysUntouched();
    expect((await lstat(join(ws, 'moved-again', 'c'))).isDirectory()).toBe(true);
  });

  it('leaves fs/copy of a file, a symlink and a tree in the folder that was judged', async () => {
    await writeFile(join(ws, 'source'), 'copied');
    await symlink('source', join(ws, 'link'));
    await mkdir(join(ws, 'tree', 'sub'), { recursive: true });
    await writeFile(join(ws, 'tree', 'sub', 'g'), 'tree file');
    const cases = [
      { source: 'source', name: 'f', recursive: false },
      { source: 'link', name: 'key', recursive: false },
      { source: 'tree', name: 'sub', recursive: true },
    ];
    for (const [index, { source, name, recursive }] of cases.entries()) {
      const moved = join(ws, `moved-${index}`);
      if (index > 0) await mkdir(join(ws, 'dir'));
      swap = swapFor(join(ws, 'dir'), moved);
      swapped = false;
      swapAt = join(ws, 'dir', name);
      // The name exists outside; inside it does not yet, so the copy creates it.
      await rm(join(ws, 'dir', name), { recursive: true, force: true });
      await client.request(FsCopy, { sourcePath: uri(join(ws, source)), destinationPath: uri(join(ws, 'dir', name)), recursive, sandbox: sandbox() });
      expect(swapped).toBe(true);
      await expectDecoysUntouched();
      await expect(lstat(join(moved, name))).resolves.toBeDefined();
      await rm(join(ws, 'dir'));
    }
    expect(await readFile(join(ws, 'moved-0', 'f'), 'utf8')).toBe('copied');
    expect(await readFile(join(ws, 'moved-2', 'sub', 'sub', 'g'), 'utf8')).toBe('tree file');
  });

  it('leaves fs/remove (as an apply_patch delete makes) in the folder that was judged', async () => {
    swapAt = join(ws, 'dir', 'f');
    await client.request(FsRemove, { path: uri(join(ws, 'dir', 'f')), sandbox: sandbox() });
    expect(swapped).toBe(true);
    await expectDecoysUntouched();
    expect(await readdir(join(ws, 'moved'))).toEqual(['key']);
  });
});

describe('a symlink swapped in between the check and the open of a read', () => {
  it('is refused by fs/readFile, fs/open (read) and fs/readDirectory, which judge what they opened', async () => {
    swapAt = join(ws, 'dir', 'key');
    await expectRefused(client.request(FsReadFile, { path: uri(join(ws, 'dir', 'key')), sandbox: sandbox() }), 'reading', `opened at \`${join(outside, 'key')}\``);
    expect(swapped).toBe(true);

    await rm(join(ws, 'dir'));
    await rename(join(ws, 'moved'), join(ws, 'dir'));
    swapped = false;
    await expectRefused(client.request(FsOpen, { handleId: 'r', path: uri(join(ws, 'dir', 'key')), mode: 'read', sandbox: sandbox() }), 'reading');
    expect(swapped).toBe(true);
    // No handle was kept for the refused open.
    await expect(client.request(FsReadBlock, { handleId: 'r', offset: 0, len: 64 })).rejects.toThrow(/unknown file handle/);
    expect(state.openHandles).toBe(0);

    await rm(join(ws, 'dir'));
    await rename(join(ws, 'moved'), join(ws, 'dir'));
    swapped = false;
    swapAt = join(ws, 'dir');
    await expectRefused(client.request(FsReadDirectory, { path: uri(join(ws, 'dir')), sandbox: sandbox() }), 'reading');
    expect(swapped).toBe(true);
    await expectDecoysUntouched();
  });

  it('is refused by fs/copy of a symlink, which reads the link where it was judged', async () => {
    await symlink('inside-target', join(ws, 'dir', 'lnk'));
    await symlink('outside-secret-target', join(outside, 'lnk'));
    swapAt = join(ws, 'dir', 'lnk');
    const copy = client.request(FsCopy, { sourcePath: uri(join(ws, 'dir', 'lnk')), destinationPath: uri(join(ws, 'copy')), recursive: false, sandbox: sandbox() });
    await expectRefused(copy, 'reading');
    expect(swapped).toBe(true);
    await expect(lstat(join(ws, 'copy'))).rejects.toThrow(/ENOENT/);
  });

  it('still reads what was judged when nothing is swapped', async () => {
    await expect(client.request(FsReadFile, { path: uri(join(ws, 'dir', 'key')), sandbox: sandbox() })).resolves.toEqual({ dataBase64: b64('inside key\n') });
    const listing = await client.request(FsReadDirectory, { path: uri(join(ws, 'dir')), sandbox: sandbox() });
    expect(listing.entries.map((entry) => entry.fileName).sort()).toEqual(['f', 'key']);
    await client.request(FsOpen, { handleId: 'r', path: uri(join(ws, 'dir', 'key')), mode: 'read', sandbox: sandbox() });
    await expect(client.request(FsReadBlock, { handleId: 'r', offset: 0, len: 64 })).resolves.toEqual({ chunk: b64('inside key\n'), eof: true });
  });
});

describe('a symlink swapped in between the check and a lookup', () => {
  it('is refused by fs/getMetadata, following links or not, which looks the entry up from its held-open folder', async () => {
    for (const followSymlinks of [true, false]) {
      swapAt = join(ws, 'dir', 'key');
      swapped = false;
      await expectRefused(client.request(FsGetMetadata, { path: uri(join(ws, 'dir', 'key')), followSymlinks, sandbox: sandbox() }), 'fs/getMetadata: reading');
      expect(swapped).toBe(true);
      await rm(join(ws, 'dir'));
      await rename(join(ws, 'moved'), join(ws, 'dir'));
    }
    await expectDecoysUntouched();
  });

  it('is refused by fs/canonicalize, which never answers with a name from outside', async () => {
    swapAt = join(ws, 'dir', 'key');
    const error = await client.request(FsCanonicalize, { path: uri(join(ws, 'dir', 'key')), sandbox: sandbox() }).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(swapped).toBe(true);
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).code).toBe(-32600);
    expect((error as RpcError).message).toContain('fs/canonicalize: reading');
    expect((error as RpcError).message).not.toContain(outside);
  });

  it('leaves fs/readDirectory reporting what a listed symlink leads to in the folder it listed', async () => {
    // `dir/sub` is a link to the file `dir/f`; `outside/sub` (denied) is a folder.
    await symlink('f', join(ws, 'dir', 'sub'));
    swapAt = join(ws, 'dir', 'sub');
    swap = swapFor(join(ws, 'dir'), join(ws, 'moved'));
    const listing = await client.request(FsReadDirectory, { path: uri(join(ws, 'dir')), sandbox: sandbox() });
    expect(swapped).toBe(true);
    expect(listing.entries.find((entry) => entry.fileName === 'sub')).toEqual({ fileName: 'sub', isDirectory: false, isFile: true });
    await expectDecoysUntouched();
  });
});

describe('lookups under a sandbox', () => {
  it('leave out of a listing a symlink whose target may not be read', async () => {
    await symlink(join(outside, 'sub'), join(ws, 'dir', 'to-denied'));
    await symlink(join(ws, 'dir', 'f'), join(ws, 'dir', 'to-file'));
    const listing = await client.request(FsReadDirectory, { path: uri(join(ws, 'dir')), sandbox: sandbox() });
    expect(listing.entries.map((entry) => entry.fileName).sort()).toEqual(['f', 'key', 'to-file']);
  });

  it('answer fs/getMetadata and fs/canonicalize as they do without one', async () => {
    await mkdir(join(ws, 'dir', 'd'));
    await symlink('f', join(ws, 'dir', 'lf'));
    await symlink('lf', join(ws, 'dir', 'chain'));
    await symlink(join(ws, 'dir', 'd'), join(ws, 'dir', 'ld'));
    await symlink('../dir/ld', join(ws, 'dir', 'rel'));
    await symlink('missing', join(ws, 'dir', 'dangling'));
    await symlink('loop', join(ws, 'dir', 'loop'));
    const names = ['f', 'd', 'lf', 'chain', 'ld', 'rel', 'dangling', 'loop', 'missing', 'd/', 'f/', 'ld/'];
    const outcome = (promise: Promise<unknown>): Promise<unknown> =>
      promise.then(
        (value) => value,
        (error: unknown) => (error instanceof RpcError ? { code: error.code, message: error.message } : error),
      );
    for (const name of names) {
      const path = join(ws, 'dir', name) + (name.endsWith('/') ? '/' : '');
      for (const followSymlinks of [true, false]) {
        const [plain, sandboxed] = await Promise.all(
          [undefined, sandbox()].map((box) => outcome(client.request(FsGetMetadata, { path: uri(path), followSymlinks, ...(box === undefined ? {} : { sandbox: box }) }))),
        );
        expect({ name, followSymlinks, metadata: sandboxed }).toEqual({ name, followSymlinks, metadata: plain });
      }
      const [plain, sandboxed] = await Promise.all(
        [undefined, sandbox()].map((box) => outcome(client.request(FsCanonicalize, { path: uri(path), ...(box === undefined ? {} : { sandbox: box }) }))),
      );
      expect({ name, canonical: sandboxed }).toEqual({ name, canonical: plain });
    }
    await expect(client.request(FsCanonicalize, { path: uri('/'), sandbox: sandbox() })).resolves.toEqual({ path: 'file:///' });
  });
});

describe('a symlink swapped into a tree while fs/remove removes it', () => {
  for (const sandboxed of [true, false]) {
    it(`unlinks the link and removes nothing it leads to (${sandboxed ? 'under a sandbox' : 'without a sandbox'})`, async () => {
      await mkdir(join(ws, 'tree', 'sub', 'deeper'), { recursive: true });
      await writeFile(join(ws, 'tree', 'sub', 'g'), 'inside');
      await writeFile(join(ws, 'tree', 'sub', 'f'), 'inside');
      await writeFile(join(ws, 'tree', 'top'), 'inside');
      // Just before the walk enters `tree/sub`, it becomes a symlink to `outside` (same names inside).
      swap = swapFor(join(ws, 'tree', 'sub'), join(ws, 'sub-moved'));
      swapAt = join(ws, 'tree', 'sub');
      await client.request(FsRemove, { path: uri(join(ws, 'tree')), ...(sandboxed ? { sandbox: sandbox() } : {}) });
      expect(swapped).toBe(true);
      await expect(lstat(join(ws, 'tree'))).rejects.toThrow(/ENOENT/);
      await expectDecoysUntouched();
      // The real folder, moved away from the tree, was never reached either.
      expect((await readdir(join(ws, 'sub-moved'))).sort()).toEqual(['deeper', 'f', 'g']);
    });
  }

  it('leaves a read-only or denied folder inside the tree, refusing the removal by its name', async () => {
    for (const access of ['read', 'deny'] as const) {
      await mkdir(join(ws, 'tree', 'kept'), { recursive: true });
      await writeFile(join(ws, 'tree', 'kept', 'g'), 'kept');
      const rules = [{ path: { type: 'path', path: uri(join(ws, 'tree', 'kept')) }, access }];
      const guarded = workspaceWriteSandbox(ws, { extra: [...rules, { path: { type: 'path', path: uri(outside) }, access: 'deny' }] });
      await expectRefused(client.request(FsRemove, { path: uri(join(ws, 'tree')), sandbox: guarded }), `writing \`${join(ws, 'tree', 'kept')}\` is not allowed by the sandbox`);
      expect(await readFile(join(ws, 'tree', 'kept', 'g'), 'utf8')).toBe('kept');
      await rm(join(ws, 'tree'), { recursive: true });
    }
  });

  it(`refuses a tree more than ${MAX_REMOVE_DEPTH} folders deep, naming where`, async () => {
    const names = Array.from({ length: MAX_REMOVE_DEPTH + 1 }, () => 'd');
    await mkdir(join(ws, 'tree', ...names), { recursive: true });
    await expectRefused(client.request(FsRemove, { path: uri(join(ws, 'tree')) }), `fs/remove: \`${join(ws, 'tree', ...names)}\` is more than ${MAX_REMOVE_DEPTH} folders deep`);
    // One level less is removed.
    await rmdir(join(ws, 'tree', ...names));
    await client.request(FsRemove, { path: uri(join(ws, 'tree')) });
    await expect(lstat(join(ws, 'tree'))).rejects.toThrow(/ENOENT/);
  });

  it('removes a deep tree with files, links and empty folders', async () => {
    let deep = join(ws, 'tree');
    for (let level = 0; level < 20; level += 1) {
      deep = join(deep, `d${level}`);
      await mkdir(deep, { recursive: true });
      await writeFile(join(deep, 'file'), 'x');
      await symlink(outside, join(deep, 'to-outside'));
    }
    await client.request(FsRemove, { path: uri(join(ws, 'tree')), sandbox: sandbox() });
    await expect(lstat(join(ws, 'tree'))).rejects.toThrow(/ENOENT/);
    await expectDecoysUntouched();
  });
});
