// Approvals of the codex engine: the real Codex 0.169.0 (`codex app-server` from the pinned
// @openai/codex) asks before it acts, our server asks the MCP client through `elicitation/create`
// (the real SDK client), and only a clear approval lets the action happen. The scripted fake model
// makes the tool calls; its requests must come from Codex itself.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { functionCallOutputs, type FakeStep, type RecordedRequest } from '../../tools/fake-responses-server.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, writeMcpConfig, type ElicitationAnswer, type McpHarness, type McpTestWorld } from '../helpers/mcp.js';
import { REPO_ROOT } from '../helpers/process.js';
import { exec, patch, say, type Json } from '../helpers/steps.js';

const APPROVE = { action: 'accept', content: { decision: 'approve' } };

/** Keeps Codex off the network (plugins sync, analytics) and makes codex the engine of new threads. */
const CODEX_EXTRA = ['[features]', 'plugins = false', '[analytics]', 'enabled = false', '[multienv]', 'engine = "codex"'].join('\n');

/** Codex waits for a required MCP server before the turn, so its tools are offered from the first request. */
const FIXTURE_SERVER = [
  '[mcp_servers.fixture]',
  `command = ${JSON.stringify(process.execPath)}`,
  `args = ${JSON.stringify([join(REPO_ROOT, 'tools', 'mcp-fixture-server.js')])}`,
  'required = true',
].join('\n');

/** The request came from the real Codex 0.169.0 (its user agent and turn metadata), not from our agent. */
function fromCodex(request: RecordedRequest): boolean {
  return /^codex-multienv\/0\.169\.0 /.test(request.headers['user-agent'] ?? '') && request.headers['x-codex-turn-metadata'] !== undefined;
}

describe('approvals on the codex engine (real codex app-server 0.169.0)', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('codex-approvals', () => steps.shift() ?? say('script exhausted'));
    await writeMcpConfig(world.home.path, world.model.url, '');
    const config = await readFile(join(world.home.path, 'config.toml'), 'utf8');
    await writeFile(
      join(world.home.path, 'config.toml'),
      `${config.replace('[model_providers.fake]', '[model_providers.fake]\nname = "fake"\nwire_api = "responses"')}\n${CODEX_EXTRA}\n${FIXTURE_SERVER}\n`,
    );
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  /** Runs one turn whose command needs approval; says whether the command ran and what the model was told. */
  async function commandTurn(answer: ElicitationAnswer | undefined): Promise<{ ran: boolean; asked: Json[]; told: string }> {
    const asked: Json[] = [];
    mcp = await startMcp(
      world.home.path,
      answer === undefined
        ? {}
        : {
            answer: (params) => {
              asked.push(params);
              return answer(params);
            },
          },
    );
    steps.push(exec('touch approved.txt', {}, 'call-touch'), say('done'));
    const result = await mcp.call('codex', { prompt: 'make the file', cwd: world.work.path, 'approval-policy': 'untrusted' });
    expect(result.isError).toBeFalsy();
    expect(world.model.requests.every(fromCodex)).toBe(true);
    return { ran: existsSync(join(world.work.path, 'approved.txt')), asked, told: JSON.stringify(functionCallOutputs(world.model.requests[1]!)) };
  }

  it.each([
    ['an answer that is not a clear choice', () => ({ action: 'accept', content: { decision: 'yes please' } })],
    ['an answer of the wrong shape', () => 'approve'],
  ])('declines the command on %s', async (_name, answer) => {
    const { ran, asked, told } = await commandTurn(answer);
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ codex_elicitation: 'exec-approval', codex_environment_id: 'local' });
    expect(ran).toBe(false);
    expect(told).toMatch(/reject/i);
  });

  it('declines the command when the client cannot be asked (no elicitation capability)', async () => {
    const { ran, told } = await commandTurn(undefined);
    expect(ran).toBe(false);
    expect(told).toMatch(/reject/i);
  });

  it('asks before Codex changes files and applies the patch once approved', async () => {
    const asked: Json[] = [];
    mcp = await startMcp(world.home.path, {
      answer: (params) => {
        asked.push(params);
        return APPROVE;
      },
    });
    steps.push(patch(['*** Begin Patch', '*** Add File: patched.txt', '+approved change', '*** End Patch', ''].join('\n')), say('patched'));
    const result = await mcp.call('codex', { prompt: 'patch it', cwd: world.work.path, sandbox: 'read-only', 'approval-policy': 'on-request' });
    expect(result.structuredContent).toMatchObject({ content: 'patched' });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ codex_elicitation: 'patch-approval' });
    expect(Object.keys(asked[0]!.codex_changes as Json)).toEqual([join(world.work.path, 'patched.txt')]);
    expect(await readFile(join(world.work.path, 'patched.txt'), 'utf8')).toBe('approved change\n');
  });

  it.each([
    ['approved', APPROVE, true],
    ['declined', { action: 'decline' }, false],
  ] as const)("asks before Codex calls one of its MCP servers' tools (%s)", async (_name, answer, runs) => {
    const asked: Json[] = [];
    mcp = await startMcp(world.home.path, {
      answer: (params) => {
        asked.push(params);
        return answer;
      },
    });
    steps.push({ kind: 'output', items: [{ type: 'function_call', namespace: 'mcp__fixture', name: 'write_note', arguments: { text: 'hello' } }] }, say('noted'));
    const result = await mcp.call('codex', { prompt: 'note it', cwd: world.work.path, 'approval-policy': 'untrusted' });
    expect(result.structuredContent).toMatchObject({ content: 'noted' });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({
      codex_elicitation: 'mcp-tool-call-approval',
      codex_mcp_server: 'fixture',
      codex_mcp_tool: 'write_note',
      codex_mcp_arguments: { text: 'hello' },
    });
    const told = JSON.stringify(functionCallOutputs(world.model.requests[1]!));
    if (runs) expect(told).toContain('noted: hello');
    else expect(told).not.toContain('noted: hello');
    expect(world.model.requests.every(fromCodex)).toBe(true);
  });

  it.each([
    ['approved', APPROVE, 'turn'],
    ['approved for the session', { action: 'accept', content: { decision: 'approve_for_session' } }, 'session'],
    ['declined', { action: 'decline' }, undefined],
  ] as const)('asks before Codex grants the model more permissions (%s)', async (_name, answer, scope) => {
    const config = await readFile(join(world.home.path, 'config.toml'), 'utf8');
    await writeFile(join(world.home.path, 'config.toml'), config.replace('[features]', '[features]\nrequest_permissions_tool = true'));
    const asked: Json[] = [];
    mcp = await startMcp(world.home.path, {
      answer: (params) => {
        asked.push(params);
        return answer;
      },
    });
    const outside = join(world.work.path, 'outside');
    steps.push(
      {
        kind: 'output',
        items: [
          {
            type: 'function_call',
            name: 'request_permissions',
            arguments: { reason: 'to write there', permissions: { file_system: { write: [outside] }, network: { enabled: true } } },
          },
        ],
      },
      say('asked'),
    );
    const result = await mcp.call('codex', { prompt: 'ask for more', cwd: world.work.path, 'approval-policy': 'on-request' });
    expect(result.structuredContent).toMatchObject({ content: 'asked' });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ codex_elicitation: 'permissions-approval', codex_environment_id: 'local', codex_permissions: [`write ${outside}`, 'network access'] });
    const told = z.string().parse(functionCallOutputs(world.model.requests[1]!)[0]?.output);
    if (scope === undefined) expect(JSON.parse(told)).toMatchObject({ permissions: { file_system: null, network: null } });
    else expect(JSON.parse(told)).toEqual({ permissions: { file_system: { write: [outside] }, network: { enabled: true } }, scope });
    expect(world.model.requests.every(fromCodex)).toBe(true);
  });
});
