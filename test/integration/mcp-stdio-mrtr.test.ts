// A modern call's approval (MRTR, without tasks) answered through another stdio server process
// sharing the threads folder: the call on A answers `input_required`; the retry sent to B verifies
// with the folder's shared key (`.secret-request-state`, 0600), B records the answer, A is woken
// through the folder (its `.answer` notice) and runs the command, and B answers the result.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serverEnv, setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { CLI } from '../helpers/process.js';
import { rawStdio, type RawPeer } from '../helpers/raw-peer.js';
import { exec, isRecord, say, type Json } from '../helpers/steps.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';

const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } },
  'io.modelcontextprotocol/clientInfo': { name: 'stdio-mrtr-test', version: '1.0.0' },
};

/** Sends `tools/call` with `params` to `peer` and resolves with its answer (messages of other ids are passed over). */
async function call(peer: RawPeer, id: number, params: Json): Promise<Json> {
  peer.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { _meta: META, ...params } }));
  for (;;) {
    const message = await peer.next(60_000);
    if (message.id === id) return message;
  }
}

describe('MRTR approvals across two stdio processes on one threads folder', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  const peers: (RawPeer & { exitCode: Promise<number | null> })[] = [];

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-stdio-mrtr', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    for (const peer of peers.splice(0)) await peer.close();
    await tearDownMcpWorld(world, undefined);
  });

  it('takes on B the approval a call on A asked, runs the command once on A, and answers the result on B', async () => {
    const env = serverEnv(world.home.path, { HOME: world.home.path, SHELL: '/bin/sh' });
    const [a, b] = [rawStdio(process.execPath, [CLI], env), rawStdio(process.execPath, [CLI], env)];
    peers.push(a, b);
    steps.push(exec('echo ran >> once.txt', {}, 'call-once'), say('ran after B approved'));
    const params = { name: 'codex', arguments: { prompt: 'ask, then run', cwd: world.work.path, 'approval-policy': 'untrusted', waitMs: 60_000 } };
    const asked = await call(a, 1, params);
    const first = isRecord(asked.result) ? asked.result : {};
    expect(first.resultType).toBe('input_required');
    const [key] = Object.keys(isRecord(first.inputRequests) ? first.inputRequests : {});

    const done = await call(b, 2, { ...params, inputResponses: { [key!]: { action: 'accept', content: { decision: 'approve' } } }, requestState: first.requestState });
    expect(done.result).toMatchObject({ resultType: 'complete', structuredContent: { content: 'ran after B approved' } });
    expect(readFileSync(join(world.work.path, 'once.txt'), 'utf8')).toBe('ran\n');
  });
});
