import type { ApprovalRequest } from '../../../src/agent/approvals.js';
import { ApprovalGate, RequestStateCodec, argumentsDigest } from '../../../src/mcp/input-required.js';

const request: ApprovalRequest = { kind: 'exec', threadId: 't', callId: 'c', environmentId: 'local', cwd: '/tmp/ws', command: ['touch', 'x'] };

describe('RequestStateCodec', () => {
  it('opens what it sealed for the same tool and arguments, whatever the order of their keys', () => {
    const codec = new RequestStateCodec();
    const state = codec.seal({ call: 'call-1', tool: 'codex', args: argumentsDigest({ prompt: 'p', cwd: '/w' }) }, 60_000);
    expect(codec.open(state, 'codex', { cwd: '/w', prompt: 'p' }).call).toBe('call-1');
  });

  it('refuses a state sealed under another key (another server process), an altered one, another request’s, and an expired one', () => {
    let now = 1_000;
    const codec = new RequestStateCodec({ now: () => now });
    const args = { prompt: 'p' };
    const state = codec.seal({ call: 'call-1', tool: 'codex', args: argumentsDigest(args) }, 5_000);
    expect(() => new RequestStateCodec().open(state, 'codex', args)).toThrow('failed verification');
    const [body, mac] = state.split('.');
    const forged = `${Buffer.from(JSON.stringify({ v: 1, call: 'call-2', tool: 'codex', args: argumentsDigest(args), expires: 10_000 })).toString('base64url')}.${mac}`;
    expect(body).not.toBe(forged.split('.')[0]);
    expect(() => codec.open(forged, 'codex', args)).toThrow('failed verification');
    expect(() => codec.open(state, 'codex-reply', args)).toThrow('belongs to another request');
    expect(() => codec.open(state, 'codex', { prompt: 'q' })).toThrow('belongs to another request');
    expect(() => codec.open('not-a-state', 'codex', args)).toThrow('not one this server issued');
    now = 6_000;
    expect(() => codec.open(state, 'codex', args)).toThrow('expired');
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
    gate.answer({ unknown: { action: 'accept', content: { decision: 'approve' } } });
    expect(Object.keys(gate.inputRequests())).toEqual(keys);
    gate.answer({ [keys[0]!]: { action: 'accept', content: { decision: 'approve' } } });
    await expect(decided).resolves.toEqual({ decision: 'approved' });
  });

  it('denies an unclear answer, an unanswered approval when its time is up, and everything for a client without forms', async () => {
    const gate = new ApprovalGate({ timeoutMs: 60_000, canElicit: true });
    const unclear = gate.request(request, new AbortController().signal);
    gate.answer({ [Object.keys(gate.inputRequests())[0]!]: { action: 'accept', content: { decision: 'yes please' } } });
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
