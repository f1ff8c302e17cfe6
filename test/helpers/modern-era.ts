// Driving the real ModernEra in unit tests: a tool that asks one approval, and one `tools/call`
// of the 2026-07-28 era sent to it, resolved with its answer.
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { ModernEra } from '../../src/mcp/modern-era.js';
import { defineTool } from '../../src/mcp/tools.js';
import { isRecord, type Json } from './steps.js';

/** A tool that asks the caller's approver to run `touch x` and says what was decided. */
export const askingTool = defineTool({
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

/** Sends `tools/call` of `name` (with form elicitation declared) as `principal`; resolves with the answer to `id`. */
export function modernCall(era: ModernEra, id: number, name: string, options: { principal?: string; params?: Json } = {}): Promise<Json> {
  return new Promise((resolve) => {
    const message: JSONRPCMessage = {
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: {
        _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } },
        name,
        arguments: {},
        ...options.params,
      },
    };
    era.handle(
      message,
      (answer) => {
        if (isRecord(answer) && 'id' in answer && answer.id === id) resolve(answer);
        return Promise.resolve();
      },
      options.principal,
    );
  });
}
