// An environment added with environment/add lives as long as the server process, or until
// environment/remove. A thread sticky to it, continued by a later server process (or after the
// removal), fails its turn before any model request, naming the missing id, and works again
// (history kept) once the environment is added again. Real exec-servers (websocket and stdio).
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { inputItems, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, textOf, type McpHarness } from '../helpers/mcp.js';
import { CLI, isAlive, startOurWsExecServer, startTcpProxy, waitFor, type ListeningProcess } from '../helpers/process.js';
import { exec, gate, hold, isRecord, say, type Json } from '../helpers/steps.js';

function structured(result: CallToolResult): Json {
  const value = result.structuredContent;
  if (!isRecord(value)) throw new Error(`no structuredContent in ${JSON.stringify(result)}`);
  return value;
}

/** The ids `environment/list` shows. */
async function listedIds(mcp: McpHarness): Promise<unknown[]> {
  const environments = structured(await mcp.call('environment/list', {})).environments;
  return Array.isArray(environments) ? environments.map((e: unknown) => (isRecord(e) ? e.id : undefined)) : [];
}

describe('environments added at run time', () => {
  let world: Awaited<ReturnType<typeof setUpMcpWorld>>;
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  let box: ListeningProcess | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('runtime-env', () => steps.shift() ?? say('script exhausted'));
    model = world.model;
    box = await startOurWsExecServer();
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
    await box?.stop();
  });

  it('are gone after a restart: the sticky thread fails clearly without a model request, then continues once the environment is added again', async () => {
    mcp = await startInProcessMcp(world.home.path);
    const added = await mcp.call('environment/add', { id: 'box', url: box!.url });
    expect(added.isError).toBeFalsy();
    steps.push(exec('echo on-the-box'), say('first done'));
    const first = await mcp.call('codex', { prompt: 'use the box', cwd: world.work.path, environments: [{ id: 'box', cwd: world.work.path }] });
    expect(first.structuredContent).toMatchObject({ content: 'first done' });
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    await mcp.close();

    mcp = await startInProcessMcp(world.home.path);
    const requestsBefore = model.requests.length;
    const failed = await mcp.call('codex-reply', { threadId, prompt: 'again' });
    expect(failed.isError).toBe(true);
    expect(textOf(failed)).toContain("the thread's environment `box` is not registered in this server");
    expect(textOf(failed)).toContain('known environments: local');
    expect(model.requests).toHaveLength(requestsBefore);

    await mcp.call('environment/add', { id: 'box', url: box!.url });
    steps.push(say('second done'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'again' });
    expect(second.structuredContent).toEqual({ threadId, content: 'second done' });
    expect(JSON.stringify(inputItems(model.requests.at(-1)!))).toContain('on-the-box');
  });

  describe('environment/remove', () => {
    it('closes the connection and drops the environment; a thread sticky to it fails its next turn clearly, and continues once it is added again', async () => {
      const proxy = await startTcpProxy(Number(new URL(box!.url).port));
      try {
        mcp = await startInProcessMcp(world.home.path);
        await mcp.call('environment/add', { id: 'box', url: `ws://127.0.0.1:${proxy.port}` });
        steps.push(exec('echo on-the-box'), say('first done'));
        const first = await mcp.call('codex', { prompt: 'use the box', cwd: world.work.path, environments: [{ id: 'box', cwd: world.work.path }] });
        expect(first.structuredContent).toMatchObject({ content: 'first done' });
        const threadId = String(structured(first).threadId);
        expect(proxy.open()).toBe(1);

        const removed = await mcp.call('environment/remove', { id: 'box' });
        expect(removed.isError).toBeFalsy();
        expect(removed.structuredContent).toEqual({ id: 'box', restored: null });
        expect(textOf(removed)).toBe(`Removed environment \`box\` (ws://127.0.0.1:${proxy.port}) and closed its connection.`);
        await waitFor(() => proxy.open() === 0, 'the connection to the removed environment to close');
        expect(await listedIds(mcp)).toEqual(['local']);

        const requestsBefore = model.requests.length;
        const failed = await mcp.call('codex-reply', { threadId, prompt: 'again' });
        expect(failed.isError).toBe(true);
        expect(textOf(failed)).toContain("the thread's environment `box` is not registered in this server");
        expect(failed.structuredContent).toEqual({ threadId, content: textOf(failed) });
        expect(model.requests).toHaveLength(requestsBefore);

        const again = await mcp.call('environment/remove', { id: 'box' });
        expect(again.isError).toBe(true);
        expect(textOf(again)).toBe('environment/remove: unknown environment `box`; known environments: `local`');

        await mcp.call('environment/add', { id: 'box', url: box!.url });
        steps.push(say('second done'));
        const second = await mcp.call('codex-reply', { threadId, prompt: 'again' });
        expect(second.structuredContent).toEqual({ threadId, content: 'second done' });
        expect(JSON.stringify(inputItems(model.requests.at(-1)!))).toContain('on-the-box');
      } finally {
        await proxy.close();
      }
    });

    it('ends the process of a program environment', async () => {
      mcp = await startInProcessMcp(world.home.path, { args: ['-c', 'multienv.allow_runtime_program_environments=true'] });
      const pidFile = join(world.work.path, 'exec-server.pid');
      const added = await mcp.call('environment/add', {
        id: 'piped',
        program: '/bin/sh',
        args: ['-c', 'echo $$ > "$0"; exec "$1" "$2" exec-server --listen stdio', pidFile, process.execPath, CLI],
      });
      expect(added.isError).toBeFalsy();
      steps.push(exec('echo through-the-pipe'), say('piped done'));
      const turn = await mcp.call('codex', { prompt: 'use the pipe', cwd: world.work.path, environments: [{ id: 'piped', cwd: world.work.path }] });
      expect(turn.structuredContent).toMatchObject({ content: 'piped done' });
      const pid = Number((await readFile(pidFile, 'utf8')).trim());
      expect(isAlive(pid)).toBe(true);

      expect((await mcp.call('environment/remove', { id: 'piped' })).isError).toBeFalsy();
      await waitFor(() => !isAlive(pid), 'the exec-server process of the removed environment to end');
    });

    it('is refused while a turn runs in the environment, naming the thread and turn; a turn elsewhere does not hold it', async () => {
      mcp = await startInProcessMcp(world.home.path);
      await mcp.call('environment/add', { id: 'box', url: box!.url });
      const release = gate();
      steps.push(hold(release.promise, say('held on the box')));
      const running = structured(await mcp.call('codex', { prompt: 'hold the box', cwd: world.work.path, environments: [{ id: 'box', cwd: world.work.path }], waitMs: 0 }));
      expect(running.status).toBe('running');
      const threadId = String(running.threadId);
      const turnId = String(running.turnId);
      let refused: CallToolResult;
      try {
        refused = await mcp.call('environment/remove', { id: 'box' });
      } finally {
        release.open();
      }
      expect(refused.isError).toBe(true);
      expect(textOf(refused)).toMatch(
        new RegExp(
          `^environment/remove: environment \`box\` is in use by a turn: thread ${threadId} \\(turn ${turnId}, (running|queued)\\); wait for it \\(codex-status with waitMs\\) or stop it \\(turn/interrupt\\), then remove the environment$`,
        ),
      );
      expect(await listedIds(mcp)).toContain('box');
      expect(structured(await mcp.call('codex-status', { threadId, waitMs: 30_000 }))).toMatchObject({
        status: 'idle',
        lastTurn: { status: 'completed', lastAgentMessage: 'held on the box' },
      });

      // A turn that runs only on `local` does not hold `box`.
      const second = gate();
      steps.push(hold(second.promise, say('held at home')));
      const local = structured(await mcp.call('codex', { prompt: 'stay home', cwd: world.work.path, environments: [{ id: 'local' }], waitMs: 0 }));
      try {
        expect(local.status).toBe('running');
        const removed = await mcp.call('environment/remove', { id: 'box' });
        expect(removed.isError).toBeFalsy();
      } finally {
        second.open();
      }
      expect(structured(await mcp.call('codex-status', { threadId: String(local.threadId), waitMs: 30_000 }))).toMatchObject({ status: 'idle', lastAgentMessage: 'held at home' });
      expect(await listedIds(mcp)).toEqual(['local']);
    });

    it('refuses local and configured environments, saying where each comes from; removing a run-time replacement brings the configured one back', async () => {
      const file = join(world.home.path, 'environments.toml');
      await writeFile(file, ['include_local = true', '[[environments]]', 'id = "cfg"', `url = "${box!.url}"`].join('\n'));
      mcp = await startInProcessMcp(world.home.path);
      const local = await mcp.call('environment/remove', { id: 'local' });
      expect(local.isError).toBe(true);
      expect(textOf(local)).toBe(
        'environment/remove: environment `local` is built in (this machine, served in-process); only environments added with environment/add can be removed',
      );
      const configured = await mcp.call('environment/remove', { id: 'cfg' });
      expect(configured.isError).toBe(true);
      expect(textOf(configured)).toBe(
        `environment/remove: environment \`cfg\` comes from ${file} (read at start-up; edit it and restart the server to change it); only environments added with environment/add can be removed`,
      );

      // Replaced at run time (never used, so never connected), then removed: the file's definition is back.
      await mcp.call('environment/add', { id: 'cfg', url: 'ws://127.0.0.1:1' });
      const removed = await mcp.call('environment/remove', { id: 'cfg' });
      expect(removed.isError).toBeFalsy();
      expect(removed.structuredContent).toMatchObject({ id: 'cfg', restored: { id: 'cfg', endpoint: box!.url, source: file } });
      expect(textOf(removed)).toBe(
        `Removed environment \`cfg\` (ws://127.0.0.1:1) and closed its connection. The environment of that id from ${file} (${box!.url}) is in effect again.`,
      );
      expect(textOf(await mcp.call('environment/remove', { id: 'cfg' }))).toContain(`comes from ${file}`);
      steps.push(exec('echo configured-again'), say('configured works'));
      const turn = await mcp.call('codex', { prompt: 'use cfg', cwd: world.work.path, environments: [{ id: 'cfg', cwd: world.work.path }] });
      expect(turn.structuredContent).toMatchObject({ content: 'configured works' });
      await mcp.close();

      await rm(file);
      mcp = await startInProcessMcp(world.home.path, { env: { CODEX_EXEC_SERVER_URL: box!.url } });
      const remote = await mcp.call('environment/remove', { id: 'remote' });
      expect(remote.isError).toBe(true);
      expect(textOf(remote)).toBe(
        'environment/remove: environment `remote` comes from the CODEX_EXEC_SERVER_URL environment variable (read at start-up); only environments added with environment/add can be removed',
      );
    });
  });

  describe('environment/add', () => {
    it('does not replace an environment a turn runs in: refused naming the thread and turn, the turn keeps its connection', async () => {
      mcp = await startInProcessMcp(world.home.path);
      await mcp.call('environment/add', { id: 'box', url: box!.url });
      const release = gate();
      // The turn's second command comes after the refused replacement; `$((…))` so that only a run prints `ran-2`.
      steps.push(exec('echo ran-1'), hold(release.promise, exec('echo ran-$((1+1))')), say('held on the box'));
      const running = structured(await mcp.call('codex', { prompt: 'hold the box', cwd: world.work.path, environments: [{ id: 'box', cwd: world.work.path }], waitMs: 0 }));
      expect(running.status).toBe('running');
      const threadId = String(running.threadId);
      const turnId = String(running.turnId);
      let refused: CallToolResult;
      try {
        refused = await mcp.call('environment/add', { id: 'box', url: 'ws://127.0.0.1:1' });
      } finally {
        release.open();
      }
      expect(refused.isError).toBe(true);
      expect(textOf(refused)).toMatch(
        new RegExp(
          `^environment/add: environment \`box\` is in use by a turn: thread ${threadId} \\(turn ${turnId}, (running|queued)\\); wait for it \\(codex-status with waitMs\\) or stop it \\(turn/interrupt\\), then replace the environment$`,
        ),
      );
      expect(structured(await mcp.call('codex-status', { threadId, waitMs: 30_000 }))).toMatchObject({
        status: 'idle',
        lastTurn: { status: 'completed', lastAgentMessage: 'held on the box' },
      });
      // The command after the refusal ran on the box itself, over the connection the turn had.
      expect(JSON.stringify(inputItems(model.requests.at(-1)!))).toContain('ran-2');
      const listed = structured(await mcp.call('environment/list', {})).environments;
      expect(Array.isArray(listed) && listed.find((e: unknown) => isRecord(e) && e.id === 'box')).toMatchObject({ endpoint: box!.url });

      // Once no turn runs in it, it is replaced.
      const replaced = await mcp.call('environment/add', { id: 'box', url: 'ws://127.0.0.1:1' });
      expect(replaced.isError).toBeFalsy();
      expect(replaced.structuredContent).toMatchObject({ environment: { id: 'box', endpoint: 'ws://127.0.0.1:1' } });
    });
  });
});
