// Approvals end to end: our server composed in-process, the SDK client answering
// `elicitation/create`, the fake model asking for commands and patches. Only a clear approval may let anything run.
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { functionCallOutputs, type FakeResponsesServer, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, startMcp, tearDownMcpWorld, textOf, type ElicitationAnswer, type McpHarness, threadIdOf } from '../helpers/mcp.js';
import { CLI, startOurWsExecServer, type ListeningProcess } from '../helpers/process.js';
import { exec, isRecord, patch, say, type Json } from '../helpers/steps.js';

const APPROVE = { action: 'accept', content: { decision: 'approve' } };
const APPROVE_FOR_SESSION = { action: 'accept', content: { decision: 'approve_for_session' } };
const DENY = { action: 'accept', content: { decision: 'deny' } };

/** The params of every `elicitation/create` the server sent, from the raw message log. */
function elicitations(mcp: McpHarness): Json[] {
  return mcp.received.filter((m): m is Json => isRecord(m) && m.method === 'elicitation/create').map((m) => (isRecord(m.params) ? m.params : {}));
}

/** The JSON-RPC id of the n-th `tools/call` the client sent. */
function toolCallId(mcp: McpHarness, n = 0): string | number {
  const calls = mcp.sent.filter((m): m is Json => isRecord(m) && m.method === 'tools/call');
  const id = calls[n]?.id;
  if (typeof id !== 'string' && typeof id !== 'number') throw new Error(`no tools/call #${n} was sent`);
  return id;
}

/** The outputs the model was sent in request `index` (as text). */
function outputsAt(model: FakeResponsesServer, index: number): string[] {
  const request = model.requests[index];
  if (request === undefined) throw new Error(`the model received no request #${index} (got ${model.requests.length})`);
  return functionCallOutputs(request).map((o) => String(o.output));
}

describe('approvals through elicitation, end to end', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  let model: FakeResponsesServer;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  const untrusted = (prompt: string, extra: Json = {}): Json => ({ prompt, cwd: work.path, 'approval-policy': 'untrusted', ...extra });
  /** Records every elicitation and answers with `reply`. */
  const recording =
    (asked: Json[], reply: ElicitationAnswer): ElicitationAnswer =>
    (params) => {
      asked.push(params);
      return reply(params);
    };

  beforeEach(async () => {
    steps = [];
    ({ home, work, model } = await setUpMcpWorld('mcp-appr', () => steps.shift() ?? say('script exhausted')));
  });
  afterEach(async () => {
    await tearDownMcpWorld({ home, work, model }, mcp);
    mcp = undefined;
  });

  it('asks in form mode with a flat enum schema and the old vendor fields, and runs the command once approved', async () => {
    const asked: Json[] = [];
    mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => APPROVE) });
    steps.push(exec('touch approved.txt', {}, 'call-touch'), say('touched'));
    const result = await mcp.call('codex', untrusted('make the file'));

    expect(result.isError).toBeFalsy();
    const threadId = threadIdOf(result);
    expect(result.structuredContent).toEqual({ threadId, content: 'touched' });
    expect(textOf(result)).toBe('touched');
    expect(existsSync(join(work.path, 'approved.txt'))).toBe(true);
    expect(outputsAt(model, 1)[0]).toMatch(/Process exited with code 0/);

    expect(asked).toHaveLength(1);
    const params = asked[0]!;
    // The handler saw the raw request: nothing was stripped on the way.
    expect(elicitations(mcp)).toEqual([params]);
    expect(params.mode).toBe('form');
    expect(params.message).toEqual(expect.stringContaining('touch approved.txt'));
    expect(params.message).toEqual(expect.stringContaining('`local`'));
    expect(params.message).toEqual(expect.stringContaining(work.path));
    expect(params.requestedSchema).toEqual({
      type: 'object',
      properties: { decision: expect.objectContaining({ type: 'string', enum: ['approve', 'approve_for_session', 'deny'] }) },
      required: ['decision'],
    });
    // Flat: MCP forms allow only primitive properties.
    const properties = (params.requestedSchema as { properties: Record<string, { type: string }> }).properties;
    for (const property of Object.values(properties)) expect(['string', 'number', 'integer', 'boolean']).toContain(property.type);
    expect(params).toMatchObject({
      threadId,
      codex_elicitation: 'exec-approval',
      codex_call_id: 'call-touch',
      codex_cwd: work.path,
      codex_environment_id: 'local',
      codex_mcp_tool_call_id: String(toolCallId(mcp)),
    });
    expect(params.codex_command).toEqual([expect.any(String), '-c', 'touch approved.txt']);
  });

  it.each([
    ['decline', { action: 'decline' }],
    ['cancel', { action: 'cancel' }],
    ['an explicit deny', DENY],
  ])('%s: nothing runs, the model reads the rejection, the call ends normally', async (_name, answer) => {
    mcp = await startInProcessMcp(home.path, { answer: () => answer });
    steps.push(exec('touch refused.txt'), say('understood'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toEqual({ threadId: threadIdOf(result), content: 'understood' });
    expect(existsSync(join(work.path, 'refused.txt'))).toBe(false);
    expect(outputsAt(model, 1)).toEqual([expect.stringMatching(/exec_command was rejected/)]);
    expect(elicitations(mcp)).toHaveLength(1);
  });

  it('understands the old `{decision: "approved"}` answer', async () => {
    mcp = await startInProcessMcp(home.path, { answer: () => ({ decision: 'approved' }) });
    steps.push(exec('touch legacy.txt'), say('done'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.structuredContent).toMatchObject({ content: 'done' });
    expect(existsSync(join(work.path, 'legacy.txt'))).toBe(true);
  });

  it('passes the old `{decision: {denied: {rejection}}}` text to the model', async () => {
    mcp = await startInProcessMcp(home.path, { answer: () => ({ decision: { denied: { rejection: 'not now' } } }) });
    steps.push(exec('touch legacy.txt'), say('ok'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.isError).toBeFalsy();
    expect(existsSync(join(work.path, 'legacy.txt'))).toBe(false);
    expect(outputsAt(model, 1)).toEqual([expect.stringContaining('not now')]);
  });

  it('ends the turn as interrupted on the old `{decision: "abort"}`, running nothing', async () => {
    mcp = await startInProcessMcp(home.path, { answer: () => ({ decision: 'abort' }) });
    steps.push(exec('touch aborted.txt'), say('must not be asked for'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.isError).toBe(true);
    const threadId = threadIdOf(result);
    expect(result.structuredContent).toEqual({ threadId, content: expect.stringMatching(/interrupted/) });
    expect(textOf(result)).toMatch(/interrupted/);
    expect(existsSync(join(work.path, 'aborted.txt'))).toBe(false);
    expect(model.requests).toHaveLength(1);
  });

  it.each<[string, ElicitationAnswer]>([
    ['accept without content', () => ({ action: 'accept' })],
    ['accept with an unknown choice', () => ({ action: 'accept', content: { decision: 'yes please' } })],
    ['an empty object', () => ({})],
    [
      'a JSON-RPC error',
      () => {
        throw new Error('the user interface crashed');
      },
    ],
  ])('denies on an unclear answer (%s): nothing runs', async (_name, answer) => {
    mcp = await startInProcessMcp(home.path, { answer });
    steps.push(exec('touch unclear.txt'), say('fine'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ content: 'fine' });
    expect(existsSync(join(work.path, 'unclear.txt'))).toBe(false);
    expect(outputsAt(model, 1)).toEqual([expect.stringMatching(/exec_command was rejected/)]);
  });

  it('denies answers that only look like approvals (issue 12: odd amendments, an invalid action beside an old-style approval), and honours a well-formed amendment', async () => {
    const answers: unknown[] = [
      { decision: { approved_execpolicy_amendment: null } },
      { decision: { approved_execpolicy_amendment: {} } },
      { decision: { approved_execpolicy_amendment: { proposed_execpolicy_amendment: [] } } },
      { decision: { approved_execpolicy_amendment: { proposed_execpolicy_amendment: ['touch'] }, extra: 1 } },
      { action: 'bogus', decision: 'approved' },
      { action: 'accept', content: { decision: 'approve' }, decision: 'denied' },
    ];
    const queue = [...answers, { decision: { approved_execpolicy_amendment: { proposed_execpolicy_amendment: ['touch'] } } }];
    mcp = await startInProcessMcp(home.path, { answer: () => queue.shift() });
    for (const [index, answer] of answers.entries()) {
      steps.push(exec(`touch looks-approved-${index}.txt`), say(`turn ${index}`));
      const before = model.requests.length;
      const result = await mcp.call('codex', untrusted('make the file'));
      expect(textOf(result)).toBe(`turn ${index}`);
      expect(existsSync(join(work.path, `looks-approved-${index}.txt`))).toBe(false);
      const [output] = outputsAt(model, before + 1);
      expect({ answer, output }).toEqual({ answer, output: expect.stringMatching(/exec_command was rejected[\s\S]*not a clear choice/) });
    }
    steps.push(exec('touch amended.txt'), say('amended'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(textOf(result)).toBe('amended');
    expect(existsSync(join(work.path, 'amended.txt'))).toBe(true);
    expect(queue).toEqual([]);
  });

  it('denies on a bare string answer (a JSON-RPC result that is not an object) because of the answer, not after the approval timeout', async () => {
    // 0.153 turned a bare "denied" into Denied at once. A 10 s approval timeout bounds the test; the
    // denial must come from the answer itself, so the model must not read "timed out". The built
    // CLI: our stdio transport turns such a result into an error (the SDK's transports drop it).
    mcp = await startMcp(home.path, { answer: () => 'approved', args: ['-c', 'multienv.approval_timeout_sec=10'] });
    steps.push(exec('touch unclear.txt'), say('fine'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.isError).toBeFalsy();
    expect(existsSync(join(work.path, 'unclear.txt'))).toBe(false);
    const [output] = outputsAt(model, 1);
    expect(output).toMatch(/exec_command was rejected/);
    expect(output).not.toMatch(/timed out/i);
  });

  it('denies when the client cannot show elicitations, saying so, and runs nothing', async () => {
    mcp = await startInProcessMcp(home.path);
    steps.push(exec('touch nobody-asked.txt'), say('no client ui'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ content: 'no client ui' });
    expect(existsSync(join(work.path, 'nobody-asked.txt'))).toBe(false);
    expect(outputsAt(model, 1)).toEqual([expect.stringMatching(/rejected[\s\S]*cannot show approval requests/)]);
    expect(elicitations(mcp)).toHaveLength(0);
  });

  it('remembers approve_for_session per environment: same command, environment and cwd is not asked again; another environment is', async () => {
    const box: ListeningProcess = await startOurWsExecServer();
    try {
      const asked: Json[] = [];
      mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => APPROVE_FOR_SESSION) });
      const added = await mcp.call('environment/add', { environmentId: 'box', url: box.url });
      expect(added.isError).toBeFalsy();
      const environments = [
        { id: 'local', cwd: work.path },
        { id: 'box', cwd: work.path },
      ];
      const file = join(work.path, 'session.txt');

      steps.push(exec('touch session.txt'), say('turn one'));
      const first = await mcp.call('codex', untrusted('touch it', { environments }));
      const threadId = threadIdOf(first);
      expect(first.structuredContent).toEqual({ threadId, content: 'turn one' });
      expect(existsSync(file)).toBe(true);
      expect(asked).toHaveLength(1);
      expect(asked[0]).toMatchObject({ codex_environment_id: 'local', codex_cwd: work.path });

      await rm(file);
      steps.push(exec('touch session.txt'), say('turn two'));
      const second = await mcp.call('codex-reply', { threadId, prompt: 'again, same place' });
      expect(second.structuredContent).toEqual({ threadId, content: 'turn two' });
      expect(existsSync(file)).toBe(true);
      expect(asked).toHaveLength(1);

      await rm(file);
      steps.push(exec('touch session.txt', { environment_id: 'box' }), say('turn three'));
      const third = await mcp.call('codex-reply', { threadId, prompt: 'now on the box' });
      expect(third.structuredContent).toEqual({ threadId, content: 'turn three' });
      expect(existsSync(file)).toBe(true);
      expect(asked).toHaveLength(2);
      // Same argv and cwd: only the environment differs, and that is enough to ask again.
      expect(asked[1]).toMatchObject({ codex_environment_id: 'box', codex_cwd: work.path, codex_command: asked[0]!.codex_command });
      expect(asked[1]!.message).toEqual(expect.stringContaining('`box`'));

      // Both are now remembered.
      steps.push(exec('touch session.txt', { environment_id: 'box' }), exec('touch session.txt', { environment_id: 'local' }), say('turn four'));
      const fourth = await mcp.call('codex-reply', { threadId, prompt: 'both again' });
      expect(fourth.structuredContent).toEqual({ threadId, content: 'turn four' });
      expect(asked).toHaveLength(2);
    } finally {
      await box.stop();
    }
  });

  it('does not ask for known-safe commands under untrusted', async () => {
    const asked: Json[] = [];
    mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => DENY) });
    await writeFile(join(work.path, 'readme.txt'), 'hello from readme\n');
    steps.push(exec('ls'), exec('cat readme.txt'), exec('touch new.txt'), say('looked'));
    const result = await mcp.call('codex', untrusted('look around'));
    expect(result.structuredContent).toMatchObject({ content: 'looked' });
    // Only the unsafe one was asked (this answerer would have denied the others too).
    expect(asked).toHaveLength(1);
    expect(asked[0]!.codex_command).toEqual([expect.any(String), '-c', 'touch new.txt']);
    const outputs = outputsAt(model, 3);
    expect(outputs[0]).toMatch(/Process exited with code 0[\s\S]*readme\.txt/);
    expect(outputs[1]).toMatch(/Process exited with code 0[\s\S]*hello from readme/);
    expect(outputs[2]).toMatch(/exec_command was rejected/);
    expect(existsSync(join(work.path, 'new.txt'))).toBe(false);
  });

  it('on-request asks only for commands the model escalates, showing its justification', async () => {
    const asked: Json[] = [];
    mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => APPROVE) });
    steps.push(
      exec('touch plain.txt'),
      exec('touch escalated.txt', { sandbox_permissions: 'require_escalated', justification: 'needs to write outside the workspace' }),
      say('both'),
    );
    const result = await mcp.call('codex', { prompt: 'two files', cwd: work.path, 'approval-policy': 'on-request' });
    expect(result.structuredContent).toMatchObject({ content: 'both' });
    expect(existsSync(join(work.path, 'plain.txt'))).toBe(true);
    expect(existsSync(join(work.path, 'escalated.txt'))).toBe(true);
    expect(asked).toHaveLength(1);
    expect(asked[0]!.codex_command).toEqual([expect.any(String), '-c', 'touch escalated.txt']);
    expect(asked[0]!.message).toEqual(expect.stringContaining('needs to write outside the workspace'));
  });

  it('asks for a patch under untrusted with codex_changes; a denial writes nothing', async () => {
    const asked: Json[] = [];
    mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => DENY) });
    steps.push(patch('*** Begin Patch\n*** Add File: patched.txt\n+hello\n*** End Patch\n'), say('no patch then'));
    const result = await mcp.call('codex', untrusted('write a file'));
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ content: 'no patch then' });
    expect(existsSync(join(work.path, 'patched.txt'))).toBe(false);
    expect(outputsAt(model, 1)).toEqual([expect.stringMatching(/apply_patch was rejected/)]);
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({
      mode: 'form',
      threadId: threadIdOf(result),
      codex_elicitation: 'patch-approval',
      codex_environment_id: 'local',
      codex_mcp_tool_call_id: String(toolCallId(mcp)),
      codex_changes: { [join(work.path, 'patched.txt')]: { type: 'add', content: 'hello\n' } },
    });
    expect(Object.keys(asked[0]!.codex_changes as Json)).toHaveLength(1);
  });

  it('applies a patch once approved', async () => {
    mcp = await startInProcessMcp(home.path, { answer: () => APPROVE });
    steps.push(patch('*** Begin Patch\n*** Add File: patched.txt\n+hello\n*** End Patch\n'), say('patched'));
    const result = await mcp.call('codex', untrusted('write a file'));
    expect(result.structuredContent).toMatchObject({ content: 'patched' });
    expect(existsSync(join(work.path, 'patched.txt'))).toBe(true);
    expect(outputsAt(model, 1)).toEqual([expect.stringMatching(/^Success/)]);
  });

  it('denies an approval nobody answers once multienv.approval_timeout_sec passes, and the call returns', async () => {
    const asked: Json[] = [];
    mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => new Promise<never>(() => undefined)), args: ['-c', 'multienv.approval_timeout_sec=0.5'] });
    steps.push(exec('touch late.txt'), say('gave up waiting'));
    const result = await mcp.call('codex', untrusted('make the file'));
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ content: 'gave up waiting' });
    expect(asked).toHaveLength(1);
    expect(existsSync(join(work.path, 'late.txt'))).toBe(false);
    expect(outputsAt(model, 1)).toEqual([expect.stringMatching(/rejected[\s\S]*timed out/i)]);
  });

  describe('environment/add with a program', () => {
    const program = process.execPath;
    const programArgs = [CLI, 'exec-server', '--listen', 'stdio'];
    const listedIds = async (harness: McpHarness): Promise<string[]> => {
      const list = await harness.call('environment/list', {});
      return (list.structuredContent as { environments: { id: string }[] }).environments.map((e) => e.id);
    };

    it('asks first; a denial is an error and registers nothing', async () => {
      const asked: Json[] = [];
      mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => ({ action: 'decline' })) });
      const result = await mcp.call('environment/add', { id: 'piped', program, args: programArgs });
      expect(result.isError).toBe(true);
      expect(textOf(result)).toMatch(/needs approval/);
      expect(asked).toHaveLength(1);
      expect(asked[0]).toMatchObject({ mode: 'form', codex_elicitation: 'exec-approval', codex_environment_id: 'piped', codex_command: [program, ...programArgs] });
      expect(asked[0]!.message).toEqual(expect.stringContaining('piped'));
      expect(await listedIds(mcp)).not.toContain('piped');
    });

    it('checks every argument before asking: a call that would fail anyway is an error naming the problem, and nobody is asked', async () => {
      const asked: Json[] = [];
      mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => APPROVE) });
      const cases: [Json, RegExp][] = [
        [{ id: 'both', url: 'ws://127.0.0.1:9', program, args: programArgs }, /`both` must set exactly one of url or program/],
        [{ id: 'both-alias', execServerUrl: 'ws://127.0.0.1:9', program }, /must set exactly one of url or program/],
        [{ id: 'relative', program, cwd: 'not/absolute' }, /`relative` cwd must be absolute/],
        [{ id: 'local', program }, /reserved/],
        [{ id: 'no spaces', program }, /must contain only ASCII letters, numbers/],
        [{ id: 'blank', program: '   ' }, /`blank` program cannot be empty/],
        [{ id: 'token', program, authBearerToken: 'secret' }, /`token` auth_bearer_token requires url/],
        [{ id: 'profile', program, permissions: 'no-such-profile' }, /permissions: .*no-such-profile/],
      ];
      for (const [args, problem] of cases) {
        const result = await mcp.call('environment/add', args);
        expect({ args, isError: result.isError, text: textOf(result) }).toEqual({ args, isError: true, text: expect.stringMatching(problem) });
      }
      expect(asked).toHaveLength(0);
      expect(elicitations(mcp)).toHaveLength(0);
      const ids = await listedIds(mcp);
      for (const [args] of cases) if (args.id !== 'local') expect(ids).not.toContain(args.id);
    });

    it('registers the environment once approved, and it works', async () => {
      const asked: Json[] = [];
      mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => APPROVE) });
      const result = await mcp.call('environment/add', { id: 'piped', program, args: programArgs });
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toMatchObject({ environment: { id: 'piped' } });
      expect(asked).toHaveLength(1);
      expect(await listedIds(mcp)).toContain('piped');
      steps.push(exec('echo through-stdio'), say('ran'));
      const turn = await mcp.call('codex', { prompt: 'use it', environments: [{ id: 'piped', cwd: work.path }] });
      expect(turn.structuredContent).toMatchObject({ content: 'ran' });
      expect(outputsAt(model, 1)[0]).toMatch(/through-stdio/);
    });

    it('does not ask with multienv.allow_runtime_program_environments=true', async () => {
      const asked: Json[] = [];
      mcp = await startInProcessMcp(home.path, { answer: recording(asked, () => DENY), args: ['-c', 'multienv.allow_runtime_program_environments=true'] });
      const result = await mcp.call('environment/add', { id: 'piped', program, args: programArgs });
      expect(result.isError).toBeFalsy();
      expect(asked).toHaveLength(0);
      expect(elicitations(mcp)).toHaveLength(0);
      expect(await listedIds(mcp)).toContain('piped');
    });
  });
});
