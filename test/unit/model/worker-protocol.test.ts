// The model worker's messages as each thread reads them: the hand checks of the per-request and
// per-chunk messages agree with the schemas on what they accept and what they return, and a
// malformed message is refused with the schema's account of what is wrong.

import { FromWorkerSchema, readFromWorker, readToWorker, ToWorkerSchema } from '../../../src/model/worker-protocol.js';

const output = [{ type: 'message', id: 'msg_1', role: 'assistant', content: [{ type: 'output_text', text: 'hi' }] }];
const summary = { model: 'gpt-test', inputItems: 3, tools: 2 };
const settings = { baseUrl: 'http://127.0.0.1:1/v1', apiKey: 'sk-test', headers: { 'x-a': 'b' } };

const fromWorker: unknown[] = [
  { type: 'delta', id: 1, text: 'chunk' },
  { type: 'done', id: 2, response: { id: 'resp_1', output } },
  { type: 'done', id: 3, response: { id: 'resp_2', output: [], usage: { inputTokens: 1, outputTokens: 2, totalTokens: 3 } } },
  { type: 'failed', id: 4, error: { kind: 'connection', message: 'refused' } },
  { type: 'retry', id: 5, attempt: 1, delayMs: 10, error: { kind: 'api', message: 'm', status: 500, apiMessage: 'boom' } },
  { type: 'pong' },
  { type: 'ready' },
];

const toWorker: unknown[] = [{ type: 'respond', id: 1, settings, body: '{}', summary, textDeltas: true, retries: false }, { type: 'abort', id: 1 }, { type: 'ping' }];

describe('model worker messages', () => {
  it('reads every message the worker posts as its schema parses it', () => {
    for (const message of fromWorker) expect(readFromWorker(message)).toEqual({ ok: true, message: FromWorkerSchema.parse(message) });
  });

  it('reads every message the main thread posts as its schema parses it; settings are left to the host', () => {
    for (const message of toWorker) expect(readToWorker(message)).toEqual({ ok: true, message: ToWorkerSchema.parse(message) });
  });

  it.each([
    ['a delta without text', { type: 'delta', id: 1 }, 'text'],
    ['a delta with a text number', { type: 'delta', id: 1, text: 5 }, 'text'],
    ['a done without output', { type: 'done', id: 1, response: { id: 'r' } }, 'output'],
    ['a done whose output is not an array', { type: 'done', id: 1, response: { id: 'r', output: {} } }, 'output'],
    ['a done with a bad usage', { type: 'done', id: 1, response: { id: 'r', output, usage: { inputTokens: 'x', outputTokens: 1, totalTokens: 1 } } }, 'inputTokens'],
    ['a done with an infinite usage', { type: 'done', id: 1, response: { id: 'r', output, usage: { inputTokens: Infinity, outputTokens: 1, totalTokens: 1 } } }, 'inputTokens'],
    ['a message without an id', { type: 'delta', text: 'x' }, 'id'],
    ['an unknown type', { type: 'what', id: 1 }, 'type'],
    ['no object', 'done', ''],
  ])('refuses %s from the worker, saying what is wrong', (_, message, where) => {
    const read = readFromWorker(message);
    expect(read.ok).toBe(false);
    if (!read.ok) expect(read.error).toContain(where);
    expect(FromWorkerSchema.safeParse(message).success).toBe(false);
  });

  it.each([
    ['a respond without a body', { type: 'respond', id: 1, settings, summary, textDeltas: true, retries: true }, 'body'],
    ['a respond whose settings are no object', { type: 'respond', id: 1, settings: 'x', body: '{}', summary, textDeltas: true, retries: true }, 'settings'],
    [
      'a respond with a bad summary',
      { type: 'respond', id: 1, settings, body: '{}', summary: { model: 'm', inputItems: '1', tools: 0 }, textDeltas: true, retries: true },
      'inputItems',
    ],
    ['a respond without its flags', { type: 'respond', id: 1, settings, body: '{}', summary }, 'textDeltas'],
    ['an abort without an id', { type: 'abort' }, 'id'],
  ])('refuses %s from the main thread, saying what is wrong', (_, message, where) => {
    const read = readToWorker(message);
    expect(read.ok).toBe(false);
    if (!read.ok) expect(read.error).toContain(where);
    expect(ToWorkerSchema.safeParse(message).success).toBe(false);
  });
});
