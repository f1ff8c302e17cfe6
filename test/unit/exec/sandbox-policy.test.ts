import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { bwrapArgs, createBwrapProbe } from '../../../src/exec/bwrap.js';
import { accessOf, assertWritable, normalizeRules, parseSandboxRequest, type SandboxPolicy } from '../../../src/exec/sandbox-policy.js';
import { RpcError } from '../../../src/rpc/errors.js';
import { tempDir } from '../../helpers/process.js';
import { specialEntry, workspaceWriteSandbox } from '../../helpers/sandbox.js';

const host = { tempDir: '/var/tmp-host' };

/** The shape Codex 0.169 sends for `workspace-write` (with its /tmp, temp dir and .git entries). */
function workspaceWrite(root: string, network: 'restricted' | 'enabled' = 'restricted'): unknown {
  return {
    ...workspaceWriteSandbox(root, {
      network,
      extra: [specialEntry('slash_tmp', 'write'), specialEntry('tmpdir', 'write'), specialEntry('project_roots', 'read', { subpath: '.git', skipMissing: true })],
    }),
    windowsSandboxLevel: 'disabled',
  };
}

function run(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bwrap', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

describe('sandbox policy', () => {
  it('parses the workspace-write request Codex sends', () => {
    const policy = parseSandboxRequest(workspaceWrite('/srv/demo'), host)!;
    expect(policy.restrictedFileSystem).toBe(true);
    expect(policy.network).toBe(false);
    expect(policy.rules).toEqual([
      { path: '/', access: 'read' },
      { path: '/tmp', access: 'write' },
      { path: '/srv/demo', access: 'write' },
      { path: '/var/tmp-host', access: 'write' },
    ]);
    expect(accessOf(policy, '/srv/demo/src/a.ts')).toBe('write');
    expect(accessOf(policy, '/srv/other')).toBe('read');
    expect(parseSandboxRequest(null, host)).toBeUndefined();
    expect(parseSandboxRequest(workspaceWrite('/srv/demo', 'enabled'), host)?.network).toBe(true);
  });

  it('lets deny beat write beat read on one path, and deeper rules override', () => {
    const rules = normalizeRules([
      { path: '/w', access: 'read' },
      { path: '/w', access: 'write' },
      { path: '/w/secret', access: 'write' },
      { path: '/w/secret', access: 'deny' },
    ]);
    const policy: SandboxPolicy = { restrictedFileSystem: true, rules, network: false };
    expect(accessOf(policy, '/w/x')).toBe('write');
    expect(accessOf(policy, '/w/secret/key')).toBe('deny');
    expect(accessOf(policy, '/elsewhere')).toBeUndefined();
  });

  it('rejects requests it cannot understand instead of running unconfined', () => {
    expect(() => parseSandboxRequest({ permissions: { type: 'something-new' } }, host)).toThrow(RpcError);
    expect(() =>
      parseSandboxRequest(
        { permissions: { type: 'managed', file_system: { type: 'restricted', entries: [{ path: { type: 'special', value: { kind: 'moon' } }, access: 'read' }] } } },
        host,
      ),
    ).toThrow(/unsupported special sandbox path `moon`/);
  });

  it('judges writes by where they land, through symlinks and ..', async () => {
    const dir = await tempDir('sandbox-links-');
    const outside = await tempDir('sandbox-outside-');
    try {
      await mkdir(join(dir.path, 'ws'));
      await symlink(outside.path, join(dir.path, 'ws', 'escape'));
      // Only the workspace is writable (the temp folders that workspace-write adds hold these dirs).
      const policy: SandboxPolicy = {
        restrictedFileSystem: true,
        rules: normalizeRules([
          { path: '/', access: 'read' },
          { path: join(dir.path, 'ws'), access: 'write' },
        ]),
        network: false,
      };
      expect(() => assertWritable(policy, join(dir.path, 'ws', 'ok.txt'), 'fs/writeFile')).not.toThrow();
      expect(() => assertWritable(policy, join(dir.path, 'ws', 'escape', 'x.txt'), 'fs/writeFile')).toThrow(/not allowed by the sandbox \(it resolves to/);
      expect(() => assertWritable(policy, join(dir.path, 'ws', '..', 'x.txt'), 'fs/writeFile')).toThrow(/not allowed by the sandbox/);
      expect(() => assertWritable(policy, join(dir.path, 'ws', 'new', 'deeper', 'file'), 'fs/writeFile')).not.toThrow();
    } finally {
      await dir.cleanup();
      await outside.cleanup();
    }
  });
});

describe('bubblewrap confinement (real processes)', () => {
  let server: Server;
  let port = 0;
  beforeAll(async () => {
    const probe = await createBwrapProbe()();
    if (!probe.ok) throw new Error(`these tests need bubblewrap: ${probe.message}`);
    server = createServer((_req, res) => res.end('reachable'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    port = typeof address === 'object' && address !== null ? address.port : 0;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  it('allows writes in the workspace and refuses them elsewhere, and pid namespace is its own', async () => {
    const ws = await tempDir('bwrap-ws-');
    const outside = await tempDir('bwrap-outside-');
    try {
      const policy: SandboxPolicy = {
        restrictedFileSystem: true,
        rules: normalizeRules([
          { path: '/', access: 'read' },
          { path: ws.path, access: 'write' },
        ]),
        network: false,
      };
      const inside = await run(bwrapArgs(policy, { file: '/bin/sh', argv: ['sh', '-c', 'echo ok > inside.txt && echo $$'], cwd: ws.path, tty: false }));
      expect(inside.code).toBe(0);
      // In its own PID namespace the shell is PID 2 (bwrap's reaper is PID 1).
      expect(Number(inside.output.trim())).toBeLessThanOrEqual(2);
      expect(existsSync(join(ws.path, 'inside.txt'))).toBe(true);
      const escape = await run(bwrapArgs(policy, { file: '/bin/sh', argv: ['sh', '-c', `echo no > ${join(outside.path, 'x.txt')}`], cwd: ws.path, tty: false }));
      expect(escape.code).not.toBe(0);
      expect(escape.output).toMatch(/Read-only file system/);
      expect(existsSync(join(outside.path, 'x.txt'))).toBe(false);
    } finally {
      await ws.cleanup();
      await outside.cleanup();
    }
  });

  it('hides denied paths and cuts the network unless it is enabled', async () => {
    const ws = await tempDir('bwrap-deny-');
    try {
      await mkdir(join(ws.path, 'secret'));
      await writeFile(join(ws.path, 'secret', 'key'), 'hunter2');
      const rules = normalizeRules([
        { path: '/', access: 'read' },
        { path: ws.path, access: 'write' },
        { path: join(ws.path, 'secret'), access: 'deny' },
      ]);
      const curl = `exec ${process.execPath} -e "fetch('http://127.0.0.1:${port}/').then(r=>r.text()).then(t=>console.log(t),e=>{console.log('unreachable');})"`;
      const closed = await run(
        bwrapArgs({ restrictedFileSystem: true, rules, network: false }, { file: '/bin/sh', argv: ['sh', '-c', `cat secret/key; echo; ${curl}`], cwd: ws.path, tty: false }),
      );
      expect(closed.output).not.toContain('hunter2');
      expect(closed.output).toContain('unreachable');
      const open = await run(bwrapArgs({ restrictedFileSystem: true, rules, network: true }, { file: '/bin/sh', argv: ['sh', '-c', curl], cwd: ws.path, tty: false }));
      expect(open.output).toContain('reachable');
      expect(open.output).not.toContain('unreachable');
    } finally {
      await ws.cleanup();
    }
  });
});
