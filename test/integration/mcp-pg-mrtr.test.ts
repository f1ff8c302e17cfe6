// A modern call's approvals (MRTR, without the tasks extension) across instances on one
// PostgreSQL database (issues 16 + 17): two built `codex-multienv serve` processes on loopback
// HTTP share a throwaway cluster, driven by raw 2026-07-28 requests. The call on A answers
// `input_required`; the client's retry reaches B, which verifies the requestState with the key
// the instances share through the database, records the answers (A is woken through NOTIFY and
// applies them with the usual rules) and follows the turn to its result or its next approval.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setUpMcpWorld, tearDownMcpWorld, type McpTestWorld } from '../helpers/mcp.js';
import { type ListeningProcess } from '../helpers/process.js';
import { exec, isRecord, say, type Json } from '../helpers/steps.js';
import { modernHttpRequest } from '../helpers/modern-http.js';
import type { FakeStep } from '../../tools/fake-responses-server.js';
import { startServeInstance, useSharedCluster } from '../helpers/pg-instances.js';

const META = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } },
  'io.modelcontextprotocol/clientInfo': { name: 'pg-mrtr-test', version: '1.0.0' },
};

const shared = useSharedCluster('cmx-pg-mrtr-');
let requestIds = 0;

/** One modern request to `server`; resolves with its answer (a result or an error). */
async function request(server: ListeningProcess, method: string, params: Json): Promise<Json> {
  requestIds += 1;
  return modernHttpRequest(server.url, requestIds, method, params, META);
}

/** The result of an answer, failing the test on an error answer. */
function resultOf(answer: Json): Json {
  if (!isRecord(answer.result)) throw new Error(`expected a result, got ${JSON.stringify(answer).slice(0, 500)}`);
  return answer.result;
}

const inputKeys = (result: Json): string[] => Object.keys(isRecord(result.inputRequests) ? result.inputRequests : {});
const APPROVE = { action: 'accept', content: { decision: 'approve' } };

describe('MRTR approvals across serve instances on one PostgreSQL database', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let url: string;
  const servers: ListeningProcess[] = [];

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-pg-mrtr', () => steps.shift() ?? say('script exhausted'));
    url = await shared.freshDatabase('mrtr');
  });
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.stop();
    await tearDownMcpWorld(world, undefined);
  });

  async function instance(): Promise<ListeningProcess> {
    const server = await startServeInstance(world, url);
    servers.push(server);
    return server;
  }

  /** The `codex` call's params; a retry repeats them (its requestState is bound to them). */
  const codexCall = (prompt: string): Json => ({ name: 'codex', arguments: { prompt, cwd: world.work.path, 'approval-policy': 'untrusted', waitMs: 60_000 } });

  it('continues on B a call that A answered input_required: B records the approval, A runs the command once, B answers the result', async () => {
    const [a, b] = [await instance(), await instance()];
    steps.push(exec('echo ran >> once.txt', {}, 'call-once'), say('ran after B approved'));
    const call = codexCall('ask, then run');
    const asked = resultOf(await request(a, 'tools/call', call));
    expect(asked.resultType).toBe('input_required');
    const [key] = inputKeys(asked);
    expect(isRecord(asked.inputRequests) && asked.inputRequests[key!]).toMatchObject({
      method: 'elicitation/create',
      params: { mode: 'form', message: expect.stringContaining('echo ran >> once.txt') },
    });

    const done = resultOf(await request(b, 'tools/call', { ...call, inputResponses: { [key!]: APPROVE }, requestState: asked.requestState }));
    expect(done).toMatchObject({ resultType: 'complete', structuredContent: { content: 'ran after B approved' } });
    expect(isRecord(done.structuredContent) && typeof done.structuredContent.threadId).toBe('string');
    expect(readFileSync(join(world.work.path, 'once.txt'), 'utf8')).toBe('ran\n');

    // The same state again, on either instance: its approval was answered, so it continues nothing.
    for (const server of [a, b]) {
      const replay = await request(server, 'tools/call', { ...call, inputResponses: { [key!]: APPROVE }, requestState: asked.requestState });
      expect(replay.error).toMatchObject({ code: -32602 });
    }
    expect(readFileSync(join(world.work.path, 'once.txt'), 'utf8')).toBe('ran\n');
  });

  it('takes a decline and a garbage answer on B as denials, answers the next approval on B, and refuses a replayed earlier round', async () => {
    const [a, b] = [await instance(), await instance()];
    steps.push(exec('touch declined.txt', {}, 'call-1'), exec('touch garbage.txt', {}, 'call-2'), say('nothing ran'));
    const call = codexCall('ask twice');
    const first = resultOf(await request(a, 'tools/call', call));
    expect(first.resultType).toBe('input_required');
    const [firstKey] = inputKeys(first);

    // The decline, on B: the turn goes on to its second approval, which B answers input_required with.
    const second = resultOf(await request(b, 'tools/call', { ...call, inputResponses: { [firstKey!]: { action: 'decline' } }, requestState: first.requestState }));
    expect(second.resultType).toBe('input_required');
    const [secondKey] = inputKeys(second);
    expect(secondKey).not.toBe(firstKey);
    expect(isRecord(second.inputRequests) && second.inputRequests[secondKey!]).toMatchObject({ params: { message: expect.stringContaining('touch garbage.txt') } });

    // The first round's state, replayed on B to approve the second command: refused, nothing approved.
    const replay = await request(b, 'tools/call', { ...call, inputResponses: { [secondKey!]: APPROVE }, requestState: first.requestState });
    expect(replay.error).toEqual({ code: -32602, message: expect.stringContaining('no longer wait') });

    // A garbage answer is no approval.
    const done = resultOf(
      await request(b, 'tools/call', { ...call, inputResponses: { [secondKey!]: { action: 'accept', content: { decision: 'yes please' } } }, requestState: second.requestState }),
    );
    expect(done).toMatchObject({ resultType: 'complete', structuredContent: { content: 'nothing ran' } });
    expect(JSON.stringify(world.model.requests[1]?.body)).toContain('the user declined');
    expect(existsSync(join(world.work.path, 'declined.txt'))).toBe(false);
    expect(existsSync(join(world.work.path, 'garbage.txt'))).toBe(false);
  });
});
