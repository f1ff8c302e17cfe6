import type { ApprovalRequest } from '../../../src/agent/approvals.js';
import { ApprovalGate, RequestStateCodec, approvalDigest, type RequestStateBinding } from '../../../src/mcp/input-required.js';

const request: ApprovalRequest = { kind: 'exec', threadId: 't', callId: 'c', environmentId: 'local', cwd: '/tmp/ws', command: ['touch', 'x'] };

/** What a state is issued for: `call-1`, round 1, `codex` with `args`, one approval asked. */
const binding = (args: Record<string, unknown>, principal?: string): RequestStateBinding => ({
  call: 'call-1',
  round: 1,
  tool: 'codex',
  args,
  principal,
  approvals: { 'approval-1': approvalDigest(request) },
});

describe('RequestStateCodec', () => {
  it('opens what it sealed for the same tool, arguments (whatever the order of their keys) and client, with its round and approvals', () => {
    const codec = new RequestStateCodec();
    const state = codec.seal(binding({ prompt: 'p', cwd: '/w' }), 60_000);
    expect(codec.open(state, { tool: 'codex', args: { cwd: '/w', prompt: 'p' }, principal: undefined })).toEqual({
      call: 'call-1',
      round: 1,
      approvals: { 'approval-1': approvalDigest(request) },
    });
  });

  it('refuses a state sealed under another key (another server process), an altered one, another request’s, and an expired one', () => {
    let now = 1_000;
    const codec = new RequestStateCodec({ now: () => now });
    const args = { prompt: 'p' };
    const retry = { tool: 'codex', args, principal: undefined };
    const state = codec.seal(binding(args), 5_000);
    expect(() => new RequestStateCodec().open(state, retry)).toThrow('failed verification');
    const [body, mac] = state.split('.');
    const payload = JSON.parse(Buffer.from(body!, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = `${Buffer.from(JSON.stringify({ ...payload, call: 'call-2' })).toString('base64url')}.${mac}`;
    expect(() => codec.open(forged, retry)).toThrow('failed verification');
    expect(() => codec.open(state, { ...retry, tool: 'codex-reply' })).toThrow('belongs to another request');
    expect(() => codec.open(state, { ...retry, args: { prompt: 'q' } })).toThrow('belongs to another request');
    expect(() => codec.open('not-a-state', retry)).toThrow('not one this server issued');
    now = 6_000;
    expect(() => codec.open(state, retry)).toThrow('expired');
  });

  it('binds the client a transport names: another client, or none, cannot use the state', () => {
    const codec = new RequestStateCodec();
    const args = { prompt: 'p' };
    const alice = codec.seal(binding(args, 'alice'), 60_000);
    expect(codec.open(alice, { tool: 'codex', args, principal: 'alice' }).call).toBe('call-1');
    expect(() => codec.open(alice, { tool: 'codex', args, principal: 'bob' })).toThrow('issued to another client');
    expect(() => codec.open(alice, { tool: 'codex', args, principal: undefined })).toThrow('issued to another client');
    const nobody = codec.seal(binding(args), 60_000);
    expect(() => codec.open(nobody, { tool: 'codex', args, principal: 'none' })).toThrow('issued to another client');
  });
});

describe('ApprovalGate', () => {
  it('offers a waiting approval as an elicitation form and approves only on a clear approval', async () => {
    const gate = new ApprovalGate({ timeoutMs: 60_000, canElicit: true });
    const decided = gate.request(request, new AbortController().signal);
    await gate.whenParked();
    const requests = gate.inputRequests();
    const keys = Object.keys(requests);
    expect(keys).toHaveLength(1);
    expect(requests[keys[0]!]).toEqual({ method: 'elicitation/create', params: expect.objectContaining({ mode: 'form', message: expect.stringContaining('touch x') }) });
    const asked = gate.bindings();
    expect(asked).toEqual({ [keys[0]!]: approvalDigest(request) });
    await gate.answer({ unknown: { action: 'accept', content: { decision: 'approve' } } }, asked);
    expect(Object.keys(gate.inputRequests())).toEqual(keys);
    await gate.answer({ [keys[0]!]: { action: 'accept', content: { decision: 'approve' } } }, asked);
    await expect(decided).resolves.toEqual({ decision: 'approved' });
  });

  it('answers only the approvals the state asked: not one raised since, nor another request under an asked key', async () => {
    const gate = new ApprovalGate({ timeoutMs: 60_000, canElicit: true });
    const approve = { action: 'accept', content: { decision: 'approve' } };
    const first = gate.request(request, new AbortController().signal);
    const asked = gate.bindings();
    // Raised after the state was issued: the client was never shown it.
    const second = gate.request({ ...request, callId: 'c2', command: ['rm', '-rf', 'x'] }, new AbortController().signal);
    const [firstKey, secondKey] = Object.keys(gate.inputRequests());
    await gate.answer({ [firstKey!]: approve, [secondKey!]: approve }, asked);
    await expect(first).resolves.toEqual({ decision: 'approved' });
    // Bound under its own key to another request's digest: not answered either.
    await gate.answer({ [secondKey!]: approve }, { [secondKey!]: approvalDigest(request) });
    expect(Object.keys(gate.bindings())).toEqual([secondKey]);
    await gate.answer({ [secondKey!]: { action: 'decline' } }, gate.bindings());
    await expect(second).resolves.toEqual(expect.objectContaining({ decision: 'denied' }));
  });

  it('denies an unclear answer, an unanswered approval when its time is up, and everything for a client without forms', async () => {
    const gate = new ApprovalGate({ timeoutMs: 60_000, canElicit: true });
    const unclear = gate.request(request, new AbortController().signal);
    await gate.answer({ [Object.keys(gate.inputRequests())[0]!]: { action: 'accept', content: { decision: 'yes please' } } }, gate.bindings());
    await expect(unclear).resolves.toEqual(expect.objectContaining({ decision: 'denied' }));

    const quick = new ApprovalGate({ timeoutMs: 1, canElicit: true });
    await expect(quick.request(request, new AbortController().signal)).resolves.toEqual({ decision: 'denied', reason: expect.stringContaining('no answer') });

    const formless = new ApprovalGate({ timeoutMs: 60_000, canElicit: false });
    await expect(formless.request(request, new AbortController().signal)).resolves.toEqual(expect.objectContaining({ decision: 'denied' }));
  });

  it('aborts with the turn, and denies what waits (and what comes later) once closed', async () => {
    const gate = new ApprovalGate({ timeoutMs: 60_000, canElicit: true });
    const turn = new AbortController();
    const aborted = gate.request(request, turn.signal);
    turn.abort();
    await expect(aborted).resolves.toEqual(expect.objectContaining({ decision: 'abort' }));
    const waiting = gate.request(request, new AbortController().signal);
    gate.close('the client went away');
    await expect(waiting).resolves.toEqual({ decision: 'denied', reason: 'the client went away' });
    await expect(gate.request(request, new AbortController().signal)).resolves.toEqual({ decision: 'denied', reason: 'the client went away' });
  });
});
