// A session never starts this server inside itself (the config.toml that registers this server
// is the one its sessions read [mcp_servers] from): our server composed in-process (recognising the
// built CLI as itself) with the SDK client, the fake model, and a [mcp_servers] entry that launches the built server again, next to
// @modelcontextprotocol/server-everything.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inputItems, toolNames, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, writeMcpConfig, type McpHarness } from '../helpers/mcp.js';
import { CLI, REPO_ROOT, startCodexWsExecServer, startOurWsExecServer, tempDir, waitFor, type ListeningProcess } from '../helpers/process.js';
import { say, type Json } from '../helpers/steps.js';

const EVERYTHING = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const WARNING = /mcp_servers\.self is left out of sessions: it launches this server itself/g;

/** Pids of live processes whose environment holds `variable=value` (a nested server of this test). */
function processesWith(variable: string, value: string): number[] {
  const wanted = `${variable}=${value}`;
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(wanted);
      } catch {
        // Gone meanwhile, or not ours to read.
        return false;
      }
    })
    .map(Number);
}

/** A TOML inline table of strings. */
const inline = (values: Record<string, string>): string =>
  `{ ${Object.entries(values)
    .map(([key, value]) => `${key} = ${JSON.stringify(value)}`)
    .join(', ')} }`;

/** The MCP servers `environment/list` shows for `local`: [name, state, error]. */
async function localServers(mcp: McpHarness): Promise<[string, string, string | undefined][]> {
  const list = await mcp.call('environment/list', {});
  const local = (list.structuredContent as { environments: { id: string; mcpServers: Json[] }[] }).environments.find((e) => e.id === 'local');
  return (local?.mcpServers ?? []).map((server) => [String(server.name), String(server.state), typeof server.error === 'string' ? server.error : undefined]);
}

describe('a session never starts this server inside itself', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  /** CODEX_HOME of the nested server, if one starts: its own valid config, and a way to find its processes. */
  let nested: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  const everything = `[mcp_servers.everything]\ncommand = ${JSON.stringify(process.execPath)}\nargs = ${JSON.stringify([EVERYTHING, 'stdio'])}\nenabled_tools = ["echo"]`;

  beforeEach(async () => {
    steps = [];
    ({ home, work, model } = await setUpMcpWorld('self-ref', () => steps.shift() ?? say('script exhausted')));
    nested = await tempDir('self-ref-nested-home-');
    await writeMcpConfig(nested.path, model.url);
  });
  afterEach(async () => {
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
    // A nested server that did start ends with its parent session.
    await waitFor(() => processesWith('CODEX_HOME', nested.path).length === 0, 'the nested servers to end');
    await nested.cleanup();
  });

  it('leaves out an entry that launches this server (node + our script), with one warning, and starts no nested process', async () => {
    await writeMcpConfig(
      home.path,
      model.url,
      [`[mcp_servers.self]\ncommand = ${JSON.stringify(process.execPath)}\nargs = ${JSON.stringify([CLI])}\nenv = ${inline({ CODEX_HOME: nested.path })}`, everything].join('\n\n'),
    );
    steps.push(say('one'), say('two'));
    mcp = await startInProcessMcp(home.path);
    const first = await mcp.call('codex', { prompt: 'hello', cwd: work.path });
    expect(first.structuredContent).toMatchObject({ content: 'one' });
    const second = await mcp.call('codex', { prompt: 'again', cwd: work.path });
    expect(second.structuredContent).toMatchObject({ content: 'two' });

    for (const request of model.requests) {
      const names = toolNames(request);
      expect(names).toContain('mcp__everything__echo');
      expect(names.filter((name) => name.startsWith('mcp__self__'))).toEqual([]);
      // Had it been started, the nested server would have refused and been reported here.
      expect(JSON.stringify(inputItems(request))).not.toContain('<mcp_servers_unavailable>');
    }
    // One thread per call, each with its everything server, and no `self` in either.
    expect(await localServers(mcp)).toEqual([
      ['everything', 'ready', undefined],
      ['everything', 'ready', undefined],
    ]);
    await mcp.waitForStderr(WARNING, 'the self-reference warning');
    const stderr = mcp.stderr();
    expect(stderr.match(WARNING)).toHaveLength(1);
    expect(stderr).toMatch(/give this server its own CODEX_HOME.*enabled = false.*CODEX_MULTIENV_NESTED = \\?"allow\\?"/);
    expect(stderr).not.toMatch(/mcp:self/);
  });

  it('a nested copy started through a wrapper refuses at once: the turn completes, the model is told why, no nested worker is left', async () => {
    const wrapper = ['-c', 'exec "$0" "$@"', process.execPath, CLI];
    await writeMcpConfig(
      home.path,
      model.url,
      [`[mcp_servers.wrapped]\ncommand = "sh"\nargs = ${JSON.stringify(wrapper)}\nenv = ${inline({ CODEX_HOME: nested.path })}\nstartup_timeout_sec = 30`, everything].join('\n\n'),
    );
    steps.push(say('done anyway'));
    mcp = await startInProcessMcp(home.path);
    const result = await mcp.call('codex', { prompt: 'hello', cwd: work.path });
    expect(result.structuredContent).toMatchObject({ content: 'done anyway' });

    const request = model.requests[0]!;
    expect(toolNames(request)).toContain('mcp__everything__echo');
    expect(toolNames(request).filter((name) => name.startsWith('mcp__wrapped__'))).toEqual([]);
    const context = JSON.stringify(inputItems(request));
    expect(context).toContain('<mcp_servers_unavailable>');
    expect(context).toMatch(
      /server name=\\"wrapped\\" environment=\\"local\\">MCP server `wrapped` on environment `local` failed to start: .*exited with code 2; its stderr ends with: codex-multienv refuses to serve MCP here: it was started as an MCP server by a session of codex-multienv/,
    );
    // The fix and the override reach the model too (quotes escaped inside the XML-like block).
    expect(context).toMatch(/own CODEX_HOME.*enabled = false.*CODEX_MULTIENV_NESTED = &quot;allow&quot;/);
    const [wrapped] = await localServers(mcp);
    expect(wrapped).toEqual(['wrapped', 'failed', expect.stringContaining('refuses to serve MCP here')]);
    // It refused before starting its detached worker.
    expect(processesWith('CODEX_HOME', nested.path)).toEqual([]);
  });

  it.each([
    ['our exec-server', (): Promise<ListeningProcess> => startOurWsExecServer()],
    ['the real codex exec-server', (): Promise<ListeningProcess> => startCodexWsExecServer(nested.path)],
  ])('a nested copy started on a remote environment (%s) refuses the same way', async (_, startExecServer) => {
    const server = await startExecServer();
    try {
      const wrapper = ['-c', 'exec "$0" "$@"', process.execPath, CLI];
      await writeMcpConfig(
        home.path,
        model.url,
        `[mcp_servers.wrapped]\ncommand = "sh"\nargs = ${JSON.stringify(wrapper)}\nenv = ${inline({ CODEX_HOME: nested.path })}\nenvironment_id = "box"\nstartup_timeout_sec = 30`,
      );
      steps.push(say('remote done'));
      mcp = await startInProcessMcp(home.path);
      expect((await mcp.call('environment/add', { id: 'box', url: server.url })).isError).toBeFalsy();
      const result = await mcp.call('codex', { prompt: 'hello', environments: [{ id: 'box', cwd: work.path }] });
      expect(result.structuredContent).toMatchObject({ content: 'remote done' });
      const context = JSON.stringify(inputItems(model.requests[0]!));
      expect(context).toMatch(
        /server name=\\"wrapped\\" environment=\\"box\\">MCP server `wrapped` on environment `box` failed to start: .*exited with code 2; its stderr ends with: codex-multienv refuses to serve MCP here/,
      );
      expect(toolNames(model.requests[0]!).filter((name) => name.startsWith('mcp__wrapped__'))).toEqual([]);
    } finally {
      await server.stop();
    }
  });

  it('starts this server inside sessions when the entry sets CODEX_MULTIENV_NESTED = "allow"', async () => {
    await writeMcpConfig(
      home.path,
      model.url,
      [
        `[mcp_servers.self]\ncommand = ${JSON.stringify(process.execPath)}\nargs = ${JSON.stringify([CLI])}\nenv = ${inline({ CODEX_HOME: nested.path, CODEX_MULTIENV_NESTED: 'allow' })}\nstartup_timeout_sec = 30`,
        everything,
      ].join('\n\n'),
    );
    steps.push(say('nested on purpose'));
    mcp = await startInProcessMcp(home.path);
    const result = await mcp.call('codex', { prompt: 'hello', cwd: work.path });
    expect(result.structuredContent).toMatchObject({ content: 'nested on purpose' });
    const request = model.requests[0]!;
    expect(toolNames(request)).toEqual(expect.arrayContaining(['mcp__self__codex', 'mcp__self__codex-reply', 'mcp__everything__echo']));
    expect(JSON.stringify(inputItems(request))).not.toContain('<mcp_servers_unavailable>');
    expect(mcp.stderr()).not.toMatch(WARNING);
    expect(processesWith('CODEX_HOME', nested.path).length).toBeGreaterThan(0);
  });
});
