// MCP servers inside sessions, end to end (issue 5): our server composed in-process, the SDK client,
// the fake model calling `mcp__<server>__<tool>`, and real MCP servers from npm
// (@modelcontextprotocol/server-everything, stdio and Streamable HTTP) plus tools/mcp-fixture-server.js,
// run on `local` and on remote environments (our exec-server, the real `codex exec-server`).
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { functionCallOutputs, inputItems, toolNames, type FakeResponsesServer, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, textOf, writeMcpConfig, type ElicitationAnswer, type McpHarness } from '../helpers/mcp.js';
import { isAlive, REPO_ROOT, startListening, startOurWsExecServer, tempDir, waitFor, type ListeningProcess } from '../helpers/process.js';
import { isRecord, say, type Json } from '../helpers/steps.js';

const EVERYTHING = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const EVERYTHING_HTTP = join(REPO_ROOT, 'tools/everything-http.js');
const FIXTURE = join(REPO_ROOT, 'tools/mcp-fixture-server.js');

const callTool = (name: string, args: Json = {}): FakeStep => ({ kind: 'output', items: [{ type: 'function_call', name, arguments: args }] });

/** A `[mcp_servers.NAME]` table. */
function serverToml(name: string, keys: Json): string {
  const lines = [`[mcp_servers.${name}]`];
  for (const [key, value] of Object.entries(keys)) {
    if (isRecord(value)) {
      lines.push(
        `${key} = { ${Object.entries(value)
          .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
          .join(', ')} }`,
      );
    } else {
      lines.push(`${key} = ${JSON.stringify(value)}`);
    }
  }
  return lines.join('\n');
}

/** The outputs the model was sent in request `index`. */
function outputsAt(model: FakeResponsesServer, index: number): unknown[] {
  const request = model.requests[index];
  if (request === undefined) throw new Error(`the model received no request #${index} (got ${model.requests.length})`);
  return functionCallOutputs(request).map((o) => o.output);
}

/** The text of the last output the model was sent in request `index`. */
function lastOutputAt(model: FakeResponsesServer, index: number): string {
  const output = outputsAt(model, index).at(-1);
  return typeof output === 'string' ? output : JSON.stringify(output);
}

/** The function tool named `name` offered in `request`. */
function toolSpec(request: RecordedRequest, name: string): Json {
  const tools = isRecord(request.body) && Array.isArray(request.body.tools) ? request.body.tools : [];
  const found = tools.find((tool): tool is Json => isRecord(tool) && tool.name === name);
  if (found === undefined) throw new Error(`no tool ${name} in ${JSON.stringify(toolNames(request))}`);
  return found;
}

/** Lines of a process's stderr that say our exec-server received `method` (its trace log). */
function requestsLogged(server: ListeningProcess, method: string): number {
  return server
    .stderr()
    .split('\n')
    .filter((line) => line.includes(' request ') && line.includes(`"method":"${method}"`)).length;
}

/** HTTP requests the Streamable HTTP fixture received (it logs each one). */
function httpRequestsReceived(server: ListeningProcess): string[] {
  return server
    .stderr()
    .split('\n')
    .filter((line) => line.startsWith('HTTP '));
}

/** The value of `key` in the JSON text a tool returned. */
function parsedOutput(text: string): Json {
  const value: unknown = JSON.parse(text);
  if (!isRecord(value)) throw new Error(`not a JSON object: ${text}`);
  return value;
}

describe('MCP servers inside sessions', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;
  const stops: (() => Promise<void>)[] = [];

  /** Rewrites config.toml for the fake model with these extra tables. */
  const configure = (...tables: string[]): Promise<void> => writeMcpConfig(home.path, model.url, tables.join('\n\n'));

  beforeEach(async () => {
    steps = [];
    ({ home, work, model } = await setUpMcpWorld('mcp-srv', () => steps.shift() ?? say('script exhausted')));
  });
  afterEach(async () => {
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  it('offers a local stdio server’s tools as mcp__<server>__<tool> and returns text, images, structured content and errors', async () => {
    await configure(serverToml('everything', { command: process.execPath, args: [EVERYTHING, 'stdio'], disabled_tools: ['toggle-simulated-logging'] }));
    steps.push(
      callTool('mcp__everything__echo', { message: 'hello from the model' }),
      callTool('mcp__everything__get-tiny-image'),
      callTool('mcp__everything__get-structured-content', { location: 'Chicago' }),
      callTool('mcp__everything__echo', {}),
      say('done'),
    );
    mcp = await startInProcessMcp(home.path);
    const result = await mcp.call('codex', { prompt: 'use the MCP tools', cwd: work.path });
    expect(result.structuredContent).toMatchObject({ content: 'done' });
    expect(model.errors).toEqual([]);

    const first = model.requests[0]!;
    const names = toolNames(first);
    expect(names).toEqual(expect.arrayContaining(['exec_command', 'mcp__everything__echo', 'mcp__everything__get-tiny-image', 'mcp__everything__get-structured-content']));
    expect(names).not.toContain('mcp__everything__toggle-simulated-logging');
    // The schema as the Responses API accepts it: an object, no `$schema`, required kept.
    const echo = toolSpec(first, 'mcp__everything__echo');
    expect(echo).toMatchObject({ type: 'function', strict: false, description: expect.stringContaining('Echoes back the input string') });
    expect(echo.parameters).toEqual({ type: 'object', properties: { message: { type: 'string', description: 'Message to echo' } }, required: ['message'] });
    expect(toolSpec(first, 'mcp__everything__get-tiny-image').parameters).toEqual({ type: 'object', properties: {} });

    expect(lastOutputAt(model, 1)).toBe('Echo: hello from the model');
    const image = outputsAt(model, 2).at(-1);
    expect(image).toEqual([
      { type: 'input_text', text: "Here's the image you requested:\nThe image above is the MCP logo." },
      { type: 'input_image', image_url: expect.stringMatching(/^data:image\/png;base64,iVBORw0KGgo/) },
    ]);
    expect(parsedOutput(lastOutputAt(model, 3))).toEqual({ temperature: 36, conditions: 'Light rain / drizzle', humidity: 82 });
    expect(lastOutputAt(model, 4)).toMatch(/^The MCP tool reported an error:\n.*message/s);
  });

  it('runs a stdio server bound to a remote environment (our exec-server) there: its variables, cwd and parent process are the executor’s', async () => {
    const box = await tempDir('mcp-srv-box-');
    stops.push(box.cleanup);
    const server = await startOurWsExecServer(['--log-level', 'trace'], { ...process.env, WHERE_MARK: 'on-our-exec-server' });
    stops.push(server.stop);
    await configure(
      serverToml('everything', { command: process.execPath, args: [EVERYTHING, 'stdio'], environment_id: 'box', env_vars: ['WHERE_MARK'], env: { FROM_CONFIG: 'yes' } }),
      serverToml('fixture', { command: process.execPath, args: [FIXTURE], environment_id: 'box', cwd: 'sub' }),
    );
    await mkdir(join(box.path, 'sub'));
    steps.push(callTool('mcp__everything__get-env'), callTool('mcp__fixture__whereami'), say('remote done'));
    mcp = await startInProcessMcp(home.path, { env: { WHERE_MARK: 'on-the-orchestrator' } });
    expect((await mcp.call('environment/add', { id: 'box', url: server.url })).isError).toBeFalsy();
    const result = await mcp.call('codex', {
      prompt: 'where do you run?',
      environments: [
        { id: 'local', cwd: work.path },
        { id: 'box', cwd: box.path },
      ],
    });
    expect(result.structuredContent).toMatchObject({ content: 'remote done' });

    const env = parsedOutput(lastOutputAt(model, 1));
    expect(env.WHERE_MARK).toBe('on-our-exec-server');
    expect(env.FROM_CONFIG).toBe('yes');
    // Only the default minimal set and env_vars are inherited: not the orchestrator's model key.
    expect(env.FAKE_MODEL_API_KEY).toBeUndefined();
    const where = parsedOutput(lastOutputAt(model, 2));
    expect(where).toMatchObject({ cwd: join(box.path, 'sub'), ppid: server.child.pid });
    expect(requestsLogged(server, 'process/start')).toBe(2);
    // With two environments, descriptions say where each server runs.
    expect(toolSpec(model.requests[0]!, 'mcp__fixture__whereami').description).toMatch(/runs in environment `box`/);
  });

  it('runs a stdio server bound to an environment served by the real codex exec-server there', async () => {
    const codexHome = await tempDir('mcp-srv-codex-home-');
    const box = await tempDir('mcp-srv-codex-box-');
    stops.push(codexHome.cleanup, box.cleanup);
    const server = await startListening(join(REPO_ROOT, 'node_modules/.bin/codex'), ['exec-server', '--listen', 'ws://127.0.0.1:0'], {
      ...process.env,
      CODEX_HOME: codexHome.path,
      WHERE_MARK: 'on-codex-exec-server',
    });
    stops.push(server.stop);
    await configure(
      serverToml('everything', { command: process.execPath, args: [EVERYTHING, 'stdio'], environment_id: 'real', env_vars: ['WHERE_MARK'] }),
      serverToml('fixture', { command: process.execPath, args: [FIXTURE], environment_id: 'real' }),
    );
    steps.push(callTool('mcp__everything__get-env'), callTool('mcp__everything__echo', { message: 'via codex' }), callTool('mcp__fixture__whereami'), say('codex done'));
    mcp = await startInProcessMcp(home.path, { env: { WHERE_MARK: 'on-the-orchestrator' } });
    expect((await mcp.call('environment/add', { id: 'real', url: server.url })).isError).toBeFalsy();
    const result = await mcp.call('codex', { prompt: 'where?', environments: [{ id: 'real', cwd: box.path }] });
    expect(result.structuredContent).toMatchObject({ content: 'codex done' });
    expect(parsedOutput(lastOutputAt(model, 1)).WHERE_MARK).toBe('on-codex-exec-server');
    expect(lastOutputAt(model, 2)).toBe('Echo: via codex');
    const where = parsedOutput(lastOutputAt(model, 3));
    expect(where.cwd).toBe(box.path);
    // Its parent is the codex exec-server process.
    expect(readFileSync(`/proc/${String(where.ppid)}/cmdline`, 'utf8').split('\0')).toContain('exec-server');
  });

  it('reaches a Streamable HTTP server bound to a remote environment only through that environment’s http/request', async () => {
    const server = await startOurWsExecServer(['--log-level', 'trace']);
    stops.push(server.stop);
    const remoteHttp = await startListening(process.execPath, [EVERYTHING_HTTP]);
    stops.push(remoteHttp.stop);
    const localHttp = await startListening(process.execPath, [EVERYTHING_HTTP]);
    stops.push(localHttp.stop);
    await configure(serverToml('web', { url: remoteHttp.url, environment_id: 'box' }), serverToml('direct', { url: localHttp.url, environment_id: 'local' }));
    steps.push(
      callTool('mcp__web__echo', { message: 'through the executor' }),
      callTool('mcp__web__get-structured-content', { location: 'New York' }),
      callTool('mcp__direct__echo', { message: 'direct' }),
      say('http done'),
    );
    mcp = await startInProcessMcp(home.path);
    expect((await mcp.call('environment/add', { id: 'box', url: server.url })).isError).toBeFalsy();
    const result = await mcp.call('codex', { prompt: 'http', cwd: work.path, environments: [{ id: 'local' }, { id: 'box' }] });
    expect(result.structuredContent).toMatchObject({ content: 'http done' });
    expect(lastOutputAt(model, 1)).toBe('Echo: through the executor');
    expect(parsedOutput(lastOutputAt(model, 2))).toMatchObject({ temperature: 33 });
    expect(lastOutputAt(model, 3)).toBe('Echo: direct');

    // Every request the remote-bound server received was an http/request of the exec-server; the
    // local-bound one was reached directly (had it gone through the executor, the counts differ).
    await waitFor(() => httpRequestsReceived(remoteHttp).length === requestsLogged(server, 'http/request'), 'the executor and the HTTP server to agree');
    expect(httpRequestsReceived(remoteHttp).filter((line) => line.startsWith('HTTP POST')).length).toBeGreaterThanOrEqual(4);
    expect(httpRequestsReceived(localHttp).length).toBeGreaterThanOrEqual(4);
    // Shutting down ends the session with a DELETE, through the executor too.
    await mcp.close();
    mcp = undefined;
    await waitFor(() => httpRequestsReceived(remoteHttp).some((line) => line.startsWith('HTTP DELETE')), 'the session DELETE');
    await waitFor(() => httpRequestsReceived(remoteHttp).length === requestsLogged(server, 'http/request'), 'the executor and the HTTP server to agree after shutdown');
  });

  it('a broken or crashing server leaves the turn and the other servers working, and restarts at the next turn', async () => {
    await configure(
      serverToml('broken', { command: process.execPath, args: ['-e', "process.stderr.write('no luck today'); process.exit(3)"] }),
      serverToml('missing', { command: join(work.path, 'no-such-program') }),
      serverToml('fixture', { command: process.execPath, args: [FIXTURE] }),
      serverToml('everything', { command: process.execPath, args: [EVERYTHING, 'stdio'], enabled_tools: ['echo'] }),
    );
    steps.push(callTool('mcp__fixture__crash'), callTool('mcp__fixture__whereami'), callTool('mcp__everything__echo', { message: 'still here' }), say('survived'));
    mcp = await startInProcessMcp(home.path);
    const first = await mcp.call('codex', { prompt: 'try them', cwd: work.path });
    expect(first.structuredContent).toMatchObject({ content: 'survived' });
    expect(toolNames(model.requests[0]!).filter((name) => name.startsWith('mcp__'))).toEqual([
      'mcp__fixture__whereami',
      'mcp__fixture__crash',
      'mcp__fixture__write_note',
      'mcp__everything__echo',
    ]);
    const context = JSON.stringify(inputItems(model.requests[0]!));
    expect(context).toContain('<mcp_servers_unavailable>');
    expect(context).toMatch(
      /server name=\\"broken\\" environment=\\"local\\">MCP server `broken` on environment `local` failed to start: .*exited with code 3; its stderr ends with: no luck today/,
    );
    expect(context).toMatch(/server name=\\"missing\\" environment=\\"local\\">MCP server `missing` on environment `local` failed to start/);
    expect(lastOutputAt(model, 1)).toMatch(/^mcp__fixture__crash failed: .*(stopped|closed)/i);
    expect(lastOutputAt(model, 2)).toMatch(
      /^mcp__fixture__whereami failed: MCP server `fixture` on environment `local` is not running: the process exited with code 7; its stderr ends with: fixture crashing on purpose/,
    );
    expect(lastOutputAt(model, 3)).toBe('Echo: still here');

    const list = await mcp.call('environment/list', {});
    const local = (list.structuredContent as { environments: { id: string; mcpServers: Json[] }[] }).environments.find((e) => e.id === 'local');
    expect(local?.mcpServers.map((s) => [s.name, s.state])).toEqual([
      ['broken', 'failed'],
      ['missing', 'failed'],
      ['fixture', 'failed'],
      ['everything', 'ready'],
    ]);

    // The next turn starts the crashed server again.
    steps.push(callTool('mcp__fixture__whereami'), say('back'));
    const second = await mcp.call('codex-reply', { threadId: (first.structuredContent as { threadId: string }).threadId, prompt: 'again' });
    expect(second.structuredContent).toMatchObject({ content: 'back' });
    expect(parsedOutput(lastOutputAt(model, 5))).toMatchObject({ cwd: work.path });
  });

  it('reports a call that outlives tool_timeout_sec, and the server keeps serving', async () => {
    await configure(serverToml('slow', { command: process.execPath, args: [EVERYTHING, 'stdio'], tool_timeout_sec: 0.3 }));
    steps.push(callTool('mcp__slow__trigger-long-running-operation', { duration: 60, steps: 1 }), callTool('mcp__slow__echo', { message: 'after the timeout' }), say('timed'));
    mcp = await startInProcessMcp(home.path);
    const result = await mcp.call('codex', { prompt: 'slow', cwd: work.path });
    expect(result.structuredContent).toMatchObject({ content: 'timed' });
    expect(lastOutputAt(model, 1)).toBe('mcp__slow__trigger-long-running-operation failed: the MCP tool call did not finish within 300 ms (tool_timeout_sec)');
    expect(lastOutputAt(model, 2)).toBe('Echo: after the timeout');
  });

  it('stops a server when its environment is replaced, and starts it in the new one at the next turn', async () => {
    const first = await startOurWsExecServer();
    stops.push(first.stop);
    const second = await startOurWsExecServer();
    stops.push(second.stop);
    await configure(serverToml('fixture', { command: process.execPath, args: [FIXTURE], environment_id: 'box' }));
    steps.push(callTool('mcp__fixture__whereami'), say('one'));
    mcp = await startInProcessMcp(home.path);
    expect((await mcp.call('environment/add', { id: 'box', url: first.url })).isError).toBeFalsy();
    const one = await mcp.call('codex', { prompt: 'where?', environments: [{ id: 'box', cwd: work.path }] });
    const before = parsedOutput(lastOutputAt(model, 1));
    expect(before.ppid).toBe(first.child.pid);

    expect((await mcp.call('environment/add', { id: 'box', url: second.url })).isError).toBeFalsy();
    // Stopped at once, not when the old websocket session expires.
    await waitFor(() => !isAlive(Number(before.pid)), 'the server on the replaced environment to stop');
    steps.push(callTool('mcp__fixture__whereami'), say('two'));
    const two = await mcp.call('codex-reply', { threadId: (one.structuredContent as { threadId: string }).threadId, prompt: 'and now?' });
    expect(two.structuredContent).toMatchObject({ content: 'two' });
    expect(parsedOutput(lastOutputAt(model, 3)).ppid).toBe(second.child.pid);
  });

  it('refuses a bad [mcp_servers] entry in a call’s config with the key named, before any model call, and keeps serving', async () => {
    mcp = await startInProcessMcp(home.path);
    const bad = await mcp.call('codex', { prompt: 'x', cwd: work.path, config: { 'mcp_servers.web.url': 'ftp://127.0.0.1/mcp' } });
    expect(bad.isError).toBe(true);
    expect(textOf(bad)).toBe('mcp_servers.web.url: expected an http or https URL, got "ftp://127.0.0.1/mcp"');
    expect(model.requests).toHaveLength(0);
    steps.push(say('still fine'));
    expect((await mcp.call('codex', { prompt: 'y', cwd: work.path })).structuredContent).toMatchObject({ content: 'still fine' });
  });

  it('fails the turn clearly when a required server cannot start', async () => {
    await configure(serverToml('needed', { command: process.execPath, args: ['-e', 'process.exit(1)'], required: true }));
    mcp = await startInProcessMcp(home.path);
    const result = await mcp.call('codex', { prompt: 'needs it', cwd: work.path });
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/^The turn failed: a required MCP server is unavailable: MCP server `needed` on environment `local` failed to start: .*exited with code 1/);
    expect(model.requests).toHaveLength(0);
  });

  it('follows the approval policy for MCP tool calls and names the environment', async () => {
    const asked: Json[] = [];
    const answer: ElicitationAnswer = (params) => {
      asked.push(params);
      return { action: 'accept', content: { decision: asked.length === 1 ? 'deny' : 'approve_for_session' } };
    };
    await configure(serverToml('fixture', { command: process.execPath, args: [FIXTURE] }));
    steps.push(
      callTool('mcp__fixture__whereami'),
      callTool('mcp__fixture__write_note', { text: 'first' }),
      callTool('mcp__fixture__write_note', { text: 'second' }),
      callTool('mcp__fixture__write_note', { text: 'third' }),
      say('approved'),
    );
    mcp = await startInProcessMcp(home.path, { answer });
    const result = await mcp.call('codex', { prompt: 'notes', cwd: work.path, 'approval-policy': 'untrusted' });
    expect(result.structuredContent).toMatchObject({ content: 'approved' });
    // whereami is read-only: no question. write_note: denied, then approved for the session.
    expect(asked).toHaveLength(2);
    expect(asked[0]).toMatchObject({
      codex_elicitation: 'mcp-tool-call-approval',
      codex_environment_id: 'local',
      codex_mcp_server: 'fixture',
      codex_mcp_tool: 'write_note',
      codex_mcp_arguments: { text: 'first' },
      message: expect.stringMatching(/tool `write_note` of MCP server `fixture` in environment `local` with arguments \{"text":"first"\}/),
    });
    expect(parsedOutput(lastOutputAt(model, 1))).toMatchObject({ cwd: work.path });
    expect(lastOutputAt(model, 2)).toMatch(/^mcp__fixture__write_note was rejected by the user/);
    expect(lastOutputAt(model, 3)).toBe('noted: second');
    expect(lastOutputAt(model, 4)).toBe('noted: third');
  });
});
