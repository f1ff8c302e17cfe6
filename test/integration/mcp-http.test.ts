// MCP over Streamable HTTP end to end: the built `codex-multienv serve` as a process, the SDK v1
// client over StreamableHTTPClientTransport (the 2025-11-25 session form), the SDK v2 client pinned
// to the 2026-07-28 era (stateless), raw HTTP for the edges (auth, Origin, Host, body size), and a
// plain reverse proxy in front.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type ClientRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Client as ModernClient, StreamableHTTPClientTransport as ModernHttpTransport } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  connectTestClient,
  serverEnv,
  setUpMcpWorld,
  storedRecords,
  tearDownMcpWorld,
  threadIdOf,
  type ElicitationAnswer,
  type McpTestClient,
  type McpTestWorld,
} from '../helpers/mcp.js';
import { CLI, runCommand, startListening, waitFor, type ListeningProcess } from '../helpers/process.js';
import { inPrivateNetwork } from '../helpers/network.js';
import { exec, gate, hold, say, type Json } from '../helpers/steps.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';

const MODERN = '2026-07-28';
const APPROVE = { action: 'accept', content: { decision: 'approve' } };
const DECLINE = { action: 'decline' };
const TOKEN = 'test-token-of-the-http-server';

/** `_meta` of a raw modern request. */
const modernMeta = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} };

/** The server's environment: the fake model's config, and no ambient HOME or SHELL. */
const envOf = (world: McpTestWorld): Record<string, string> => serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' });

/** Starts `codex-multienv serve` on a free loopback port with `args`. */
function startServe(world: McpTestWorld, args: string[] = []): Promise<ListeningProcess> {
  return startListening(process.execPath, [CLI, 'serve', '--listen', 'http://127.0.0.1:0', ...args], envOf(world));
}

/** The SDK v1 client over Streamable HTTP (a 2025-11-25 session), with elicitation when `answer` is given. */
function legacyClient(url: string, answer?: ElicitationAnswer, headers: Record<string, string> = {}): Promise<McpTestClient> {
  return connectTestClient(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }), answer);
}

/** The SDK v2 client pinned to the modern era over Streamable HTTP, answering approvals with `answer` when given. */
async function modernClient(url: string, answer?: (params: Json) => Json, headers: Record<string, string> = {}): Promise<ModernClient> {
  const client = new ModernClient(
    { name: 'v2-http-test', version: '1.0.0' },
    { capabilities: answer === undefined ? {} : { elicitation: { form: {} } }, versionNegotiation: { mode: { pin: MODERN } } },
  );
  if (answer !== undefined) client.setRequestHandler('elicitation/create', (request) => answer({ ...request.params }) as never);
  await client.connect(new ModernHttpTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

/** One raw HTTP request (node:http, so any header can be set, `Host` too); the whole answer is read. */
function raw(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: options.method ?? 'POST', headers: options.headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    request.once('error', reject);
    request.end(options.body);
  });
}

/** A modern `server/discover` POST with `headers` added. */
function discover(url: string, headers: Record<string, string> = {}): ReturnType<typeof raw> {
  return raw(url, {
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: modernMeta } }),
  });
}

/**
 * A plain reverse proxy on 127.0.0.1: each request is forwarded to `target` as it comes and each
 * answer piped back as it comes, over its own upstream connections (no connection identity kept).
 */
async function startReverseProxy(target: string): Promise<{ url: string; forwarded: () => number; close: () => Promise<void> }> {
  const upstream = new URL(target);
  let forwarded = 0;
  const server: Server = createServer((request, response) => {
    forwarded += 1;
    const out = httpRequest(
      { host: upstream.hostname, port: upstream.port, path: request.url, method: request.method, headers: { ...request.headers, host: upstream.host } },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    out.once('error', () => response.destroy());
    response.once('close', () => out.destroy());
    request.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${upstream.pathname}`,
    forwarded: () => forwarded,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('codex-multienv serve: MCP over Streamable HTTP', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let server: ListeningProcess | undefined;
  const closers: (() => Promise<unknown>)[] = [];

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-http', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await server?.stop();
    server = undefined;
    await tearDownMcpWorld(world, undefined);
  });

  it('prints its endpoint as the first stdout line and serves a 2025-11-25 session: tools, codex with progress, codex-reply', async () => {
    server = await startServe(world);
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const mcp = await legacyClient(server.url);
    closers.push(() => mcp.client.close());

    const { tools } = await mcp.client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['codex', 'codex-reply', 'codex-status']));

    steps.push(say('first answer'));
    const progress: unknown[] = [];
    const first = await mcp.call('codex', { prompt: 'hello', cwd: world.work.path }, { onprogress: (note) => progress.push(note) });
    const threadId = threadIdOf(first);
    expect(first.structuredContent).toEqual({ threadId, content: 'first answer' });
    expect(progress).toEqual(expect.arrayContaining([expect.objectContaining({ message: expect.stringContaining('turn started on thread') })]));

    steps.push(say('second answer'));
    const second = await mcp.call('codex-reply', { threadId, prompt: 'again' });
    expect(second.structuredContent).toEqual({ threadId, content: 'second answer' });
    expect(JSON.stringify(world.model.requests[1]?.body)).toContain('first answer');
  });

  it('asks approvals of a 2025-11-25 session over its stream (elicitation): approved runs, declined does not', async () => {
    server = await startServe(world);
    const answers = [APPROVE, DECLINE];
    const asked: Json[] = [];
    const mcp = await legacyClient(server.url, (params) => {
      asked.push(params);
      return answers.shift();
    });
    closers.push(() => mcp.client.close());

    steps.push(exec('touch approved.txt', {}, 'call-approve'), say('touched'));
    const approved = await mcp.call('codex', { prompt: 'make it', cwd: world.work.path, 'approval-policy': 'untrusted' });
    expect(approved.structuredContent).toEqual({ threadId: threadIdOf(approved), content: 'touched' });
    expect(existsSync(join(world.work.path, 'approved.txt'))).toBe(true);

    steps.push(exec('touch declined.txt', {}, 'call-decline'), say('gave up'));
    const declined = await mcp.call('codex', { prompt: 'make another', cwd: world.work.path, 'approval-policy': 'untrusted' });
    expect(declined.structuredContent).toEqual({ threadId: threadIdOf(declined), content: 'gave up' });
    expect(existsSync(join(world.work.path, 'declined.txt'))).toBe(false);
    expect(asked).toHaveLength(2);
    expect(asked[0]?.message).toEqual(expect.stringContaining('touch approved.txt'));
  });

  it('serves the v2 client in the 2026-07-28 era (no session): a turn with progress, an approval as input_required, and the threads of a 2025 session', async () => {
    server = await startServe(world);
    const modern = await modernClient(server.url, () => APPROVE);
    closers.push(() => modern.close());
    expect(modern.getProtocolEra()).toBe('modern');

    const { tools } = await modern.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['codex', 'codex-reply']));

    steps.push(exec('touch modern.txt', {}, 'call-modern'), say('made it'));
    const progress: unknown[] = [];
    const result = await modern.callTool(
      { name: 'codex', arguments: { prompt: 'make it', cwd: world.work.path, 'approval-policy': 'untrusted' } },
      { onprogress: (note) => progress.push(note) },
    );
    const threadId = threadIdOf(result);
    expect(result.structuredContent).toEqual({ threadId, content: 'made it' });
    expect(existsSync(join(world.work.path, 'modern.txt'))).toBe(true);
    expect(progress).toEqual(expect.arrayContaining([expect.objectContaining({ message: expect.stringContaining('turn started on thread') })]));

    // One set of threads per process: a 2025 session continues the thread a modern call started.
    const legacy = await legacyClient(server.url);
    closers.push(() => legacy.client.close());
    steps.push(say('continued'));
    const reply = await legacy.call('codex-reply', { threadId, prompt: 'go on' });
    expect(reply.structuredContent).toEqual({ threadId, content: 'continued' });
  });

  it('keeps two modern clients that use the same request id apart: closing one stream ends that call only, and its turn goes on', async () => {
    server = await startServe(world);
    const url = server.url;
    const releaseA = gate();
    const releaseB = gate();
    steps.push(hold(releaseA.promise, say('answer of A, kept')), hold(releaseB.promise, say('answer of B')));
    /** A modern `codex` call with request id 7, as each client numbers its own requests. */
    const open = (prompt: string): { request: ClientRequest; answer: Promise<string> } => {
      let request: ClientRequest | undefined;
      const answer = new Promise<string>((resolve, reject) => {
        request = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' } }, (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (body += chunk));
          response.on('end', () => resolve(body));
        });
        request.once('error', reject);
        request.end(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'codex', arguments: { prompt, cwd: world.work.path }, _meta: modernMeta } }));
      });
      if (request === undefined) throw new Error('no request');
      return { request, answer };
    };
    const a = open('call of A');
    await waitFor(() => world.model.requests.length === 1, "A's turn to reach the model");
    const b = open('call of B');
    await waitFor(() => world.model.requests.length === 2, "B's turn to reach the model");
    // A closes its stream: that ends A's call, never B's (same id, other client).
    a.request.destroy();
    await a.answer.catch(() => undefined);
    await waitFor(() => /the client stopped waiting for a modern tool call/.test(server?.stderr() ?? ''), "the end of A's call");
    releaseB.open();
    expect(JSON.parse(await b.answer)).toMatchObject({ id: 7, result: { structuredContent: { content: 'answer of B' } } });
    // A closed stream may be a time-out or a dropped proxy connection: A's turn went on, and its
    // answer is kept with its thread.
    releaseA.open();
    const legacy = await legacyClient(url);
    closers.push(() => legacy.client.close());
    const listed = (await legacy.call('thread/list', {})).structuredContent as { threads: { threadId: string; preview: string }[] };
    const threadOfA = listed.threads.find((thread) => thread.preview === 'call of A');
    if (threadOfA === undefined) throw new Error(`no thread of A in ${JSON.stringify(listed)}`);
    expect((await legacy.call('codex-status', { threadId: threadOfA.threadId, waitMs: 30_000 })).structuredContent).toMatchObject({
      status: 'idle',
      lastTurn: { status: 'completed', lastAgentMessage: 'answer of A, kept' },
    });
  });

  it('takes a bearer token: missing or wrong is 401, the right one works for both eras', async () => {
    const tokenFile = join(world.home.path, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
    server = await startServe(world, ['--auth-token-file', tokenFile]);

    const missing = await discover(server.url);
    expect(missing.status).toBe(401);
    expect(missing.body).toContain('missing MCP bearer token');
    const wrong = await discover(server.url, { authorization: 'Bearer not-the-token' });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toContain('invalid MCP bearer token');
    await expect(legacyClient(server.url)).rejects.toThrow();

    const right = await discover(server.url, { authorization: `Bearer ${TOKEN}` });
    expect(right.status).toBe(200);
    const legacy = await legacyClient(server.url, undefined, { authorization: `Bearer ${TOKEN}` });
    closers.push(() => legacy.client.close());
    expect((await legacy.client.listTools()).tools.length).toBeGreaterThan(0);
    const modern = await modernClient(server.url, undefined, { authorization: `Bearer ${TOKEN}` });
    closers.push(() => modern.close());
    expect((await modern.listTools()).tools.length).toBeGreaterThan(0);
  });

  it('takes the token as its SHA-256 too', async () => {
    server = await startServe(world, ['--auth-token-sha256', createHash('sha256').update(TOKEN).digest('hex')]);
    expect((await discover(server.url, { authorization: 'Bearer nope' })).status).toBe(401);
    expect((await discover(server.url, { authorization: `Bearer ${TOKEN}` })).status).toBe(200);
  });

  it('refuses a non-loopback address without a token before binding anything', async () => {
    // 192.0.2.1 (TEST-NET-1) is never this machine's: the refusal must come before any listen.
    // In a network namespace of its own as well, so a broken refusal binds nothing real.
    const result = await runCommand(...inPrivateNetwork(process.execPath, [CLI, 'serve', '--listen', 'http://192.0.2.1:0']), envOf(world));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('refusing to serve MCP on non-loopback address 192.0.2.1 without authentication');
    expect(result.stdout).toBe('');
  });

  it('refuses web pages whose Origin is not allowed (403) and a Host that is not loopback (DNS rebinding); --allow-origin and --allow-host let one through', async () => {
    server = await startServe(world, ['--allow-origin', 'http://app.example:8080', '--allow-host', 'MCP.example.com']);
    const foreign = await discover(server.url, { origin: 'http://evil.example' });
    expect(foreign.status).toBe(403);
    expect(foreign.body).toContain('Origin `http://evil.example`');
    const allowed = await discover(server.url, { origin: 'http://app.example:8080' });
    expect(allowed.status).toBe(200);
    expect(allowed.body).toContain('supportedVersions');

    const port = new URL(server.url).port;
    const rebound = await discover(server.url, { host: `attacker.example:${port}` });
    expect(rebound.status).toBe(403);
    expect(rebound.body).toContain('Host header `attacker.example');
    expect((await discover(server.url, { host: `localhost:${port}` })).status).toBe(200);
    // The public name a reverse proxy passes on, once allowed.
    expect((await discover(server.url, { host: 'mcp.example.com' })).status).toBe(200);
  });

  it('answers an oversized body (413), a body that is not JSON and headers that contradict it (400) clearly, and keeps serving', async () => {
    server = await startServe(world, ['-c', 'multienv.max_message_mb=1']);
    const big = await raw(server.url, {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: Buffer.alloc(2 * 1024 * 1024, 'x'),
    });
    expect(big.status).toBe(413);
    expect(big.body).toContain('over the limit of 1048576 bytes (1 MiB, multienv.max_message_mb)');
    const notJson = await raw(server.url, { headers: { 'content-type': 'application/json' }, body: '{"jsonrpc": "2.0",' });
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.body)).toMatchObject({ error: { code: -32700, message: expect.stringContaining('the request body is not JSON') } });
    // The 2026-07-28 mirror headers must agree with the body.
    const mismatched = await discover(server.url, { 'mcp-protocol-version': '2025-11-25' });
    expect(mismatched.status).toBe(400);
    expect(JSON.parse(mismatched.body)).toMatchObject({ id: 1, error: { code: -32020, message: expect.stringContaining('MCP-Protocol-Version header (2025-11-25)') } });
    // Neither a session's request nor a modern one: the answer says what each era sends.
    const stray = await raw(server.url, {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list', params: {} }),
    });
    expect(stray.status).toBe(400);
    expect(stray.body).toContain('a 2025-11-25 client sends initialize first; a 2026-07-28 request carries its protocol version in params._meta');
    expect((await raw(server.url, { method: 'GET', headers: { accept: 'text/event-stream' } })).status).toBe(405);
    const elsewhere = await raw(server.url.replace(/\/mcp$/, '/other'), { body: '{}' });
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.body).toContain('MCP is served at /mcp');
    expect((await discover(server.url)).status).toBe(200);
  });

  it('streams progress through a plain reverse proxy, in both eras', async () => {
    server = await startServe(world);
    const proxy = await startReverseProxy(server.url);
    closers.push(() => proxy.close());

    const legacy = await legacyClient(proxy.url);
    closers.push(() => legacy.client.close());
    steps.push(say('through the proxy'));
    const progress: unknown[] = [];
    const first = await legacy.call('codex', { prompt: 'hello', cwd: world.work.path }, { onprogress: (note) => progress.push(note) });
    expect(first.structuredContent).toEqual({ threadId: threadIdOf(first), content: 'through the proxy' });
    expect(progress).toEqual(expect.arrayContaining([expect.objectContaining({ message: expect.stringContaining('turn started on thread') })]));

    const modern = await modernClient(proxy.url);
    closers.push(() => modern.close());
    steps.push(say('modern through the proxy'));
    const modernProgress: unknown[] = [];
    const second = await modern.callTool({ name: 'codex', arguments: { prompt: 'hi', cwd: world.work.path } }, { onprogress: (note) => modernProgress.push(note) });
    expect(second.structuredContent).toEqual({ threadId: threadIdOf(second), content: 'modern through the proxy' });
    expect(modernProgress.length).toBeGreaterThan(0);
    expect(proxy.forwarded()).toBeGreaterThan(2);
  });

  it('bounds the 2025-11-25 sessions open at once (clear 503), frees one on DELETE, and expires idle ones', async () => {
    server = await startServe(world, ['--max-sessions', '1', '--session-idle-sec', '1']);
    const first = new StreamableHTTPClientTransport(new URL(server.url));
    const one = await connectTestClient(first);
    const refused = await raw(server.url, {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    expect(refused.status).toBe(503);
    expect(refused.body).toContain('too many MCP sessions open (the bound is 1)');

    // DELETE ends the session; its place is free at once.
    await first.terminateSession();
    await one.client.close();
    const two = await connectTestClient(new StreamableHTTPClientTransport(new URL(server.url)));
    const sessionId = (two.client.transport as StreamableHTTPClientTransport | undefined)?.sessionId;
    expect(sessionId).toBeDefined();
    // The client goes without ending its session (its GET stream closes, no DELETE): a second
    // later with nothing asked, the session expires and its id is unknown.
    await two.client.close();
    await waitFor(() => /MCP session closed[^\n]*no request for 1000 ms/.test(server?.stderr() ?? ''), 'the idle session to expire');
    const expired = await raw(server.url, {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId ?? '', 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }),
    });
    expect(expired.status).toBe(404);
    expect(expired.body).toContain(`no MCP session ${sessionId ?? ''} (it ended or expired)`);
  });

  it('on SIGTERM interrupts the running turn, records it, and exits', async () => {
    server = await startServe(world);
    const mcp = await legacyClient(server.url);
    closers.push(() => mcp.client.close().catch(() => undefined));
    const never = gate();
    steps.push(hold(never.promise, say('never sent')));
    const call = mcp.call('codex', { prompt: 'long', cwd: world.work.path }).catch((error: unknown) => error);
    await waitFor(() => world.model.requests.length > 0, 'the turn to reach the model');
    const exited = new Promise<number | null>((resolve) => server?.child.once('exit', resolve));
    server.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const answer = await call;
    never.open();
    // The call was answered before the server went: the turn interrupted, on its thread.
    expect(answer).toMatchObject({ isError: true, content: [{ type: 'text', text: expect.stringContaining('The turn was interrupted') }] });
    const records = await storedRecords(world.home.path, threadIdOf(answer as { structuredContent?: unknown }));
    expect(JSON.stringify(records)).toContain('interrupted');
  });
});
