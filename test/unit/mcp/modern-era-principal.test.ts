// The per-client principal a transport names (`ModernEra.handle`'s third argument; an HTTP
// transport supplies an authenticated client id): a call's `requestState` continues it only for
// that client. Driven through the real ModernEra and a real tool that asks one approval.
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ModernEra } from '../../../src/mcp/modern-era.js';
import { defineTool, toolTable } from '../../../src/mcp/tools.js';

type Json = Record<string, unknown>;
const isRecord = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A tool that asks the caller's approver to run `touch x` and says what was decided. */
const asking = defineTool({
  name: 'ask',
  title: 'Ask',
  description: 'Asks one approval.',
  input: z.object({}),
  output: z.object({ decision: z.string() }),
  run: async (_args, extra) => {
    if (extra.approver === undefined) throw new Error('no approver');
    const { decision } = await extra.approver.request({ kind: 'exec', threadId: 't', callId: 'c', environmentId: 'local', cwd: '/', command: ['touch', 'x'] }, extra.signal);
    return { content: [{ type: 'text', text: decision }], structuredContent: { decision } };
  },
});

describe('a requestState under a principal', () => {
  let era: ModernEra;
  const answers = new Map<unknown, (message: Json) => void>();

  /** Sends `tools/call` of `ask` as `principal` and resolves with its answer. */
  const call = (id: number, principal: string | undefined, extra: Json = {}): Promise<Json> =>
    new Promise((resolve) => {
      answers.set(id, resolve);
      const message: JSONRPCMessage = {
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: {
          _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } },
          name: 'ask',
          arguments: {},
          ...extra,
        },
      };
      era.handle(
        message,
        (answer) => {
          if (isRecord(answer) && 'id' in answer) answers.get(answer.id)?.(answer);
          return Promise.resolve();
        },
        principal,
      );
    });

  beforeEach(() => {
    era = new ModernEra({ tools: toolTable([asking]), serverInfo: { name: 'test', version: '1' }, approvalTimeoutMs: 60_000 });
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
