import type { FakeStep } from '../../tools/fake-responses-server.js';

/** A JSON object as tests read it off the wire. */
export type Json = Record<string, unknown>;

/** True for a plain (non-array) object. */
export const isRecord = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The fake model answers with a message. */
export const say = (text: string): FakeStep => ({ kind: 'output', items: [{ type: 'message', text }] });

/** The fake model calls `exec_command` with `cmd` (and other arguments), optionally with a fixed call id. */
export const exec = (cmd: string, extra: Json = {}, callId?: string): FakeStep => ({
  kind: 'output',
  items: [{ type: 'function_call', name: 'exec_command', arguments: { cmd, ...extra }, ...(callId === undefined ? {} : { callId }) }],
});

/** The fake model calls `apply_patch` with `input`. */
export const patch = (input: string): FakeStep => ({ kind: 'output', items: [{ type: 'custom_tool_call', name: 'apply_patch', input }] });

/** The fake model holds its answer until `release` resolves, then answers with `then`. */
export const hold = (release: Promise<void>, then: FakeStep): FakeStep => ({ kind: 'hold', release, then });

/** A promise the test opens. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
