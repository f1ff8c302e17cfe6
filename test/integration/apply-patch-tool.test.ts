import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionApprovals, type ApprovalDecision, type ApprovalPolicy, type ApprovalRequest } from '../../src/agent/approvals.js';
import { TurnAbortedError } from '../../src/agent/errors.js';
import { applyPatchTool } from '../../src/agent/tools/apply-patch.js';
import { ToolError, type ToolContext, type TurnEnvironment } from '../../src/agent/tools/tool.js';
import { localConnector } from '../../src/environments/connectors.js';
import { ExecClient } from '../../src/exec/client.js';
import { ExecServer } from '../../src/exec/server.js';
import { tempDir } from '../helpers/process.js';
import { workspaceWriteSandbox } from '../helpers/sandbox.js';
import { noProcesses } from '../helpers/tool-context.js';

const patch = (...lines: string[]): string => `${lines.join('\n')}\n`;

/** A scripted approver that records what it was asked. */
class ScriptedApprover {
  readonly requests: ApprovalRequest[] = [];
  decision: ApprovalDecision = { decision: 'approved' };

  request(request: ApprovalRequest): Promise<ApprovalDecision> {
    this.requests.push(request);
    return Promise.resolve(this.decision);
  }
}

describe('apply_patch tool on a real exec-server', () => {
  let server: ExecServer;
  let client: ExecClient;
  const dirs: { path: string; cleanup: () => Promise<void> }[] = [];

  beforeAll(async () => {
    server = new ExecServer({
      env: process.env,
      host: { env: process.env, cwd: process.cwd(), homeDir: homedir(), tempDir: tmpdir(), platform: process.platform, version: 'test' },
    });
    client = await ExecClient.connect(localConnector(server));
  });
  afterAll(async () => {
    await client.close();
    await server.close();
    await Promise.all(dirs.map((d) => d.cleanup()));
  });

  interface Harness {
    context: ToolContext;
    approver: ScriptedApprover;
    progress: string[];
    /** Working directory of environment `a` (the primary) and `b`. */
    a: string;
    b: string;
  }

  async function harness(policy: ApprovalPolicy = 'never', sessionApprovals = new SessionApprovals()): Promise<Harness> {
    const a = await tempDir('cmx-patch-a-');
    const b = await tempDir('cmx-patch-b-');
    dirs.push(a, b);
    const environments: TurnEnvironment[] = [
      { id: 'a', cwd: a.path, client: () => Promise.resolve(client) },
      { id: 'b', cwd: b.path, client: () => Promise.resolve(client) },
    ];
    const approver = new ScriptedApprover();
    const progress: string[] = [];
    const context: ToolContext = {
      threadId: 'thread-1',
      callId: 'call-1',
      environments,
      environment: (id) => {
        if (id === undefined) return environments[0]!;
        const found = environments.find((e) => e.id === id);
        if (found === undefined) throw new ToolError(`unknown environment_id ${JSON.stringify(id)}; known: ${environments.map((e) => e.id).join(', ')}`);
        return found;
      },
      approvalPolicy: policy,
      approver,
      sessionApprovals,
      processes: noProcesses,
      commandEnvironment: () => ({ envPolicy: { inherit: 'all', ignoreDefaultExcludes: false, exclude: [], set: {}, includeOnly: [] }, env: {} }),
      sandbox: () => null,
      allowLoginShell: false,
      maxOutputTokens: 10_000,
      progress: (line) => progress.push(line),
      plan: () => undefined,
      signal: new AbortController().signal,
    };
    return { context, approver, progress, a: a.path, b: b.path };
  }

  const tool = applyPatchTool({ multiEnvironment: true });
  const read = (path: string): Promise<string> => readFile(path, 'utf8');
  const exists = (path: string): Promise<boolean> =>
    readFile(path).then(
      () => true,
      () => false,
    );

  it('describes itself with the grammar, the environment line only with several environments', () => {
    expect(tool.kind).toBe('custom');
    expect(tool.name).toBe('apply_patch');
    expect(tool.grammar).toContain('start: begin_patch environment_id? hunk+ end_patch');
    expect(tool.grammar).toContain('environment_id: "*** Environment ID: " filename LF');
    expect(tool.description).toContain('*** Environment ID:');
    const single = applyPatchTool({ multiEnvironment: false });
    expect(single.grammar).toContain('start: begin_patch hunk+ end_patch');
    expect(single.grammar).not.toContain('Environment ID');
    expect(single.description).not.toContain('Environment ID');
  });

  it('adds, updates, deletes and moves files, creating nested directories', async () => {
    const h = await harness();
    await writeFile(join(h.a, 'update.txt'), 'one\ntwo\nthree\n');
    await writeFile(join(h.a, 'gone.txt'), 'bye\n');
    await writeFile(join(h.a, 'move-me.txt'), 'keep\nold\n');
    const output = await tool.run(
      patch(
        '*** Begin Patch',
        '*** Add File: deep/er/new.txt',
        '+fresh',
        '*** Update File: update.txt',
        '@@',
        ' one',
        '-two',
        '+TWO',
        '*** Delete File: gone.txt',
        '*** Update File: move-me.txt',
        '*** Move to: moved/here.txt',
        '@@',
        ' keep',
        '-old',
        '+new',
        '*** End Patch',
      ),
      h.context,
    );
    expect(output).toBe('Success. Updated the following files:\nA deep/er/new.txt\nM update.txt\nM moved/here.txt\nD gone.txt');
    expect(await read(join(h.a, 'deep/er/new.txt'))).toBe('fresh\n');
    expect(await read(join(h.a, 'update.txt'))).toBe('one\nTWO\nthree\n');
    expect(await exists(join(h.a, 'gone.txt'))).toBe(false);
    expect(await exists(join(h.a, 'move-me.txt'))).toBe(false);
    expect(await read(join(h.a, 'moved/here.txt'))).toBe('keep\nnew\n');
    expect(h.progress).toEqual(['patch applied: 4 file(s) on a']);
    expect(h.approver.requests).toEqual([]);
  });

  it('accepts absolute paths', async () => {
    const h = await harness();
    const target = join(h.b, 'abs.txt');
    expect(await tool.run(patch('*** Begin Patch', `*** Add File: ${target}`, '+x', '*** End Patch'), h.context)).toBe(`Success. Updated the following files:\nA ${target}`);
    expect(await read(target)).toBe('x\n');
  });

  it('under a sandbox, writes nothing through a link to a missing file or folder outside the workspace', async () => {
    const h = await harness();
    const outside = await tempDir('cmx-patch-outside-');
    dirs.push(outside);
    const context: ToolContext = { ...h.context, sandbox: () => workspaceWriteSandbox(h.a) };
    await writeFile(join(h.a, 'inside.txt'), 'keep\n');
    await symlink(join(outside.path, 'added.txt'), join(h.a, 'add-link'));
    await symlink(join(outside.path, 'moved.txt'), join(h.a, 'move-link'));
    await symlink(join(outside.path, 'dir'), join(h.a, 'dir-link'));
    const add = tool.run(patch('*** Begin Patch', '*** Add File: add-link', '+x', '*** End Patch'), context);
    await expect(add).rejects.toThrow(
      /^apply_patch failed on a at .*add-link: fs\/writeFile: writing .* is not allowed by the sandbox \(it resolves to .*added\.txt`\) \(no file was changed\)$/,
    );
    const move = tool.run(patch('*** Begin Patch', '*** Update File: inside.txt', '*** Move to: move-link', '@@', '-keep', '+moved', '*** End Patch'), context);
    await expect(move).rejects.toThrow(/not allowed by the sandbox \(it resolves to .*moved\.txt/);
    const nested = tool.run(patch('*** Begin Patch', '*** Add File: dir-link/sub/new.txt', '+x', '*** End Patch'), context);
    await expect(nested).rejects.toThrow(/fs\/createDirectory: writing .* is not allowed by the sandbox \(it resolves to .*dir\/sub/);
    expect(await read(join(h.a, 'inside.txt'))).toBe('keep\n');
    expect(await readdir(outside.path)).toEqual([]);
  });

  it('writes nothing when a later hunk does not fit', async () => {
    const h = await harness();
    await writeFile(join(h.a, 'first.txt'), 'alpha\n');
    await writeFile(join(h.a, 'second.txt'), 'beta\n');
    const output = await tool.run(
      patch(
        '*** Begin Patch',
        '*** Update File: first.txt',
        '-alpha',
        '+ALPHA',
        '*** Add File: third.txt',
        '+3',
        '*** Update File: second.txt',
        '-gamma',
        '+GAMMA',
        '*** End Patch',
      ),
      h.context,
    );
    expect(output).toBe('apply_patch verification failed: Failed to find expected lines in second.txt:\ngamma');
    expect(await read(join(h.a, 'first.txt'))).toBe('alpha\n');
    expect(await exists(join(h.a, 'third.txt'))).toBe(false);
    expect(h.progress).toEqual([]);
  });

  it('tells the model about parse errors, missing files and existing files', async () => {
    const h = await harness();
    await writeFile(join(h.a, 'here.txt'), 'x\n');
    expect(await tool.run('*** Begin Patch\n*** Frobnicate: x\n*** End Patch', h.context)).toBe(
      "apply_patch verification failed: line 2: expected '*** Add File: ', '*** Delete File: ' or '*** Update File: ', got '*** Frobnicate: x'",
    );
    expect(await tool.run(patch('*** Begin Patch', '*** Update File: nope.txt', '-a', '+b', '*** End Patch'), h.context)).toBe(
      'apply_patch verification failed: cannot update nope.txt: no such file',
    );
    expect(await tool.run(patch('*** Begin Patch', '*** Delete File: nope.txt', '*** End Patch'), h.context)).toBe(
      'apply_patch verification failed: cannot delete nope.txt: no such file',
    );
    expect(await tool.run(patch('*** Begin Patch', '*** Add File: here.txt', '+y', '*** End Patch'), h.context)).toMatch(
      /^apply_patch verification failed: cannot add here\.txt: it already exists/,
    );
    expect(await tool.run(patch('*** Begin Patch', '*** Add File: a\0b', '+y', '*** End Patch'), h.context)).toMatch(/^apply_patch verification failed: .*must not contain NUL/);
    expect(await read(join(h.a, 'here.txt'))).toBe('x\n');
  });

  it('throws a ToolError for an unknown environment id', async () => {
    const h = await harness();
    const run = tool.run(patch('*** Begin Patch', '*** Environment ID: nowhere', '*** Add File: x.txt', '+x', '*** End Patch'), h.context);
    await expect(run).rejects.toThrow(ToolError);
    await expect(run).rejects.toThrow(/unknown environment_id "nowhere"/);
  });

  it('writes into the environment the patch names, and only there', async () => {
    const h = await harness();
    const output = await tool.run(patch('*** Begin Patch', '*** Environment ID: b', '*** Add File: only-b.txt', '+b', '*** End Patch'), h.context);
    expect(output).toBe('Success. Updated the following files:\nA only-b.txt');
    expect(await read(join(h.b, 'only-b.txt'))).toBe('b\n');
    expect(await exists(join(h.a, 'only-b.txt'))).toBe(false);
    expect(h.progress).toEqual(['patch applied: 1 file(s) on b']);
  });

  describe('under the untrusted policy', () => {
    it('asks with the changes and applies when approved', async () => {
      const h = await harness('untrusted');
      await mkdir(join(h.a, 'src'));
      await writeFile(join(h.a, 'src/app.ts'), 'a\nb\nc\n');
      await writeFile(join(h.a, 'old.txt'), 'bye\n');
      const output = await tool.run(
        patch('*** Begin Patch', '*** Add File: new.txt', '+hi', '*** Update File: src/app.ts', '@@', ' a', '-b', '+B', '*** Delete File: old.txt', '*** End Patch'),
        h.context,
      );
      expect(output).toMatch(/^Success\./);
      expect(h.approver.requests).toEqual([
        {
          kind: 'patch',
          threadId: 'thread-1',
          callId: 'call-1',
          environmentId: 'a',
          cwd: h.a,
          changes: {
            [join(h.a, 'new.txt')]: { type: 'add', content: 'hi\n' },
            [join(h.a, 'src/app.ts')]: { type: 'update', unified_diff: '@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n', move_path: null },
            [join(h.a, 'old.txt')]: { type: 'delete', content: 'bye\n' },
          },
        },
      ]);
      expect(await read(join(h.a, 'src/app.ts'))).toBe('a\nB\nc\n');
    });

    it('reports a move with its destination', async () => {
      const h = await harness('untrusted');
      await writeFile(join(h.a, 'from.txt'), 'x\n');
      await tool.run(patch('*** Begin Patch', '*** Update File: from.txt', '*** Move to: to.txt', '*** End Patch'), h.context);
      expect(h.approver.requests[0]?.kind === 'patch' && h.approver.requests[0].changes).toEqual({
        [join(h.a, 'from.txt')]: { type: 'update', unified_diff: '', move_path: join(h.a, 'to.txt') },
      });
      expect(await read(join(h.a, 'to.txt'))).toBe('x\n');
      expect(await exists(join(h.a, 'from.txt'))).toBe(false);
    });

    it('remembers approved_for_session, per environment', async () => {
      const h = await harness('untrusted');
      h.approver.decision = { decision: 'approved_for_session' };
      const edit = (text: string, env = 'a'): string => patch('*** Begin Patch', `*** Environment ID: ${env}`, '*** Add File: s.txt', `+${text}`, '*** End Patch');
      expect(await tool.run(edit('1'), h.context)).toMatch(/^Success\./);
      await rm(join(h.a, 's.txt'));
      // The same patch again: covered by the session approval, so not asked.
      expect(await tool.run(edit('1'), h.context)).toMatch(/^Success\./);
      expect(h.approver.requests).toHaveLength(1);
      expect(await read(join(h.a, 's.txt'))).toBe('1\n');
      // Another environment is a different approval.
      await tool.run(edit('1', 'b'), h.context);
      expect(h.approver.requests).toHaveLength(2);
    });

    it('writes nothing when denied and tells the model', async () => {
      const h = await harness('untrusted');
      h.approver.decision = { decision: 'denied', reason: 'not now' };
      const output = await tool.run(patch('*** Begin Patch', '*** Add File: no.txt', '+x', '*** End Patch'), h.context);
      expect(output).toBe('apply_patch was rejected by the user: not now');
      expect(await exists(join(h.a, 'no.txt'))).toBe(false);
      expect(h.progress).toEqual([]);
    });

    it('throws TurnAbortedError when the user aborts, writing nothing', async () => {
      const h = await harness('untrusted');
      h.approver.decision = { decision: 'abort', reason: 'stop everything' };
      const run = tool.run(patch('*** Begin Patch', '*** Add File: no.txt', '+x', '*** End Patch'), h.context);
      await expect(run).rejects.toThrow(TurnAbortedError);
      await expect(run).rejects.toThrow('stop everything');
      expect(await exists(join(h.a, 'no.txt'))).toBe(false);
    });
  });

  it('does not ask under other policies', async () => {
    for (const policy of ['on-request', 'on-failure', 'never'] as const) {
      const h = await harness(policy);
      h.approver.decision = { decision: 'denied', reason: 'should not be asked' };
      expect(await tool.run(patch('*** Begin Patch', '*** Add File: ok.txt', '+x', '*** End Patch'), h.context)).toMatch(/^Success\./);
      expect(h.approver.requests).toEqual([]);
    }
  });
});
