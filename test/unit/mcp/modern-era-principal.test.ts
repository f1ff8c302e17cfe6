// The per-client principal a transport names (`ModernEra.handle`'s third argument; an HTTP
// transport supplies an authenticated client id): a call's `requestState` continues it only for
// that client. Driven through the real ModernEra and a real tool that asks one approval.
import { ModernEra } from '../../../src/mcp/modern-era.js';
import { toolTable } from '../../../src/mcp/tools.js';
import { askingTool, modernCall } from '../../helpers/modern-era.js';
import { isRecord, type Json } from '../../helpers/steps.js';

describe('a requestState under a principal', () => {
  let era: ModernEra;
  /** Sends `tools/call` of `ask` as `principal` and resolves with its answer. */
  const call = (id: number, principal: string | undefined, extra: Json = {}): Promise<Json> =>
    modernCall(era, id, 'ask', { ...(principal === undefined ? {} : { principal }), params: extra });

  beforeEach(() => {
    era = new ModernEra({ tools: toolTable([askingTool]), serverInfo: { name: 'test', version: '1' }, approvalTimeoutMs: 60_000 });
  });
  afterEach(() => era.close());

  it('continues the call only for the client that started it', async () => {
    const first = await call(1, 'alice');
    const result = isRecord(first.result) ? first.result : {};
    expect(result.resultType).toBe('input_required');
    const [key] = Object.keys(isRecord(result.inputRequests) ? result.inputRequests : {});
    const retry = { inputResponses: { [key!]: { action: 'accept', content: { decision: 'approve' } } }, requestState: String(result.requestState) };

    for (const [id, other] of [
      [2, 'bob'],
      [3, undefined],
    ] as const) {
      const refused = await call(id, other, retry);
      expect(refused.error).toEqual({ code: -32602, message: 'tools/call: requestState was issued to another client' });
    }
    const answered = await call(4, 'alice', retry);
    expect(isRecord(answered.result) && answered.result.structuredContent).toEqual({ decision: 'approved' });
  });
});
