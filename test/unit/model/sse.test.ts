// The Server-Sent Events decoder: the format's rules, whatever the chunking.

import { SseDecoder, type SseEvent } from '../../../src/model/sse.js';

const encoder = new TextEncoder();

/** Decodes `text` fed in chunks of `size` bytes (0: all at once). */
function decode(text: string, size = 0): SseEvent[] {
  const bytes = encoder.encode(text);
  const decoder = new SseDecoder();
  const events: SseEvent[] = [];
  const step = size === 0 ? bytes.length : size;
  for (let i = 0; i < bytes.length; i += step) events.push(...decoder.push(bytes.subarray(i, i + step)));
  events.push(...decoder.end());
  return events;
}

const STREAM = [
  ': a comment',
  'event: response.created',
  'data: {"type":"response.created"}',
  '',
  'data: first line',
  'data:second line',
  'data',
  '',
  'event: ping',
  '',
  'event: response.output_text.delta',
  'data: {"delta":"héllo ✓"}',
  'ignored-field: x',
  '',
  '',
].join('\n');

const EXPECTED: SseEvent[] = [
  { event: 'response.created', data: '{"type":"response.created"}' },
  { event: null, data: 'first line\nsecond line\n' },
  { event: 'response.output_text.delta', data: '{"delta":"héllo ✓"}' },
];

describe('SseDecoder', () => {
  it('dispatches events at blank lines, joins data lines, and skips comments, unknown fields and events without data', () => {
    expect(decode(STREAM)).toEqual(EXPECTED);
  });

  it.each([
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ])('accepts %s line ends', (_name, newline) => {
    expect(decode(STREAM.replace(/\n/g, newline))).toEqual(EXPECTED);
  });

  it.each([1, 2, 3, 7])('gives the same events whatever the chunk size (%i bytes, splitting CRLFs and UTF-8 characters)', (size) => {
    expect(decode(STREAM, size)).toEqual(EXPECTED);
    expect(decode(STREAM.replace(/\n/g, '\r\n'), size)).toEqual(EXPECTED);
    expect(decode(STREAM.replace(/\n/g, '\r'), size)).toEqual(EXPECTED);
  });

  it('drops an event the stream ended in the middle of', () => {
    expect(decode('data: complete\n\ndata: cut off')).toEqual([{ event: null, data: 'complete' }]);
    expect(decode('data: complete\n\ndata: cut off\n')).toEqual([{ event: null, data: 'complete' }]);
  });

  it('ignores id and retry fields, valid or not: a model stream is never resumed', () => {
    expect(decode('id: 7\nretry: 1000\ndata: a\n\nretry: soon\nid\ndata: b\n\n')).toEqual([
      { event: null, data: 'a' },
      { event: null, data: 'b' },
    ]);
  });

  it('skips a byte order mark at the start of the stream, also when it arrives split', () => {
    for (const size of [0, 1, 2]) expect(decode('\uFEFFdata: a\n\n', size)).toEqual([{ event: null, data: 'a' }]);
  });

  it('dispatches an event whose closing CR is the last byte of the stream', () => {
    // The CR could have been the first half of a CRLF until the stream ended.
    expect(decode('data: a\r\r')).toEqual([{ event: null, data: 'a' }]);
    expect(decode('data: a\r')).toEqual([]);
  });

  it('gives a megabyte event whole, whatever the chunk size', () => {
    const big = `{"arguments":"${'x'.repeat(1 << 20)}"}`;
    for (const size of [256, 16 * 1024]) {
      expect(decode(`event: response.output_item.done\r\ndata: ${big}\r\n\r\ndata: next\n\n`, size)).toEqual([
        { event: 'response.output_item.done', data: big },
        { event: null, data: 'next' },
      ]);
    }
  });
});
