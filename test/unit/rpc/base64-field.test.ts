import { withBase64Bytes, withBytes } from '../../../src/rpc/base64-field.js';

/** `value` as JSON.stringify writes it once every Uint8Array in it is replaced by its base64. */
function reference(value: unknown): string {
  const toBase64 = (item: unknown): unknown => {
    if (item instanceof Uint8Array) return Buffer.from(item).toString('base64');
    if (Array.isArray(item)) return item.map(toBase64);
    if (typeof item === 'object' && item !== null && !(item instanceof Date)) {
      return Object.fromEntries(Object.entries(item).map(([key, field]) => [key, toBase64(field)]));
    }
    return item;
  };
  return JSON.stringify(toBase64(value));
}

describe('messages with bytes fields', () => {
  const big = Buffer.alloc(200_000, 7);
  const cases: [string, object][] = [
    ['one field', { processId: 'p', seq: 1, stream: 'stdout', chunk: Buffer.from('hi') }],
    [
      'a process/read result',
      {
        chunks: [
          { seq: 1, stream: 'stdout', chunk: Buffer.from([0, 255]) },
          { seq: 2, stream: 'stderr', chunk: big },
        ],
        nextSeq: 3,
        exitCode: null,
      },
    ],
    ['what JSON leaves out or writes as null', { a: undefined, b: [undefined, () => 1], c: new Date(0), d: 'é"\\\n', e: new Uint8Array([1, 2, 3]), f: {} }],
    ['no bytes at all', { nested: { list: [1, 'two', null, true] } }],
    [
      'numbers, keys and strings that need counting with care',
      { n: [-0, -12, 0, 9, 10, 99_999_999, 1.5, 1e21, Number.NaN, -Infinity, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, false], 'ké"y\n': 'x\u0001😀', '': [] },
    ],
  ];

  it.each(cases)('encode as JSON.stringify would with base64 for the bytes (%s)', (_name, value) => {
    const message = withBytes(value);
    const encoded = message.encode('{"id":3,"result":', '}');
    expect(encoded.toString('utf8')).toBe(`{"id":3,"result":${reference(value)}}`);
    expect(message.byteLength('{"id":3,"result":', '}')).toBe(encoded.length);
    expect(message.framed('{"id":3,"result":', '}').encode().equals(encoded)).toBe(true);
  });

  it('keep the field order of withBase64Bytes (fields, the bytes, then after)', () => {
    const message = withBase64Bytes({ seq: 4 }, 'chunk', Buffer.from('abc'), { eof: true });
    expect(message.encode('', '').toString()).toBe('{"seq":4,"chunk":"YWJj","eof":true}');
  });

  it('as a value: the envelope the text spells, the body in its slot, the bytes shared', () => {
    const chunk = Buffer.from('shared');
    const body = { seq: 1, chunk };
    const value = withBytes(body).framed('{"method":"process/output","params":', '}').toValue();
    expect(value).toEqual({ method: 'process/output', params: body });
    expect((value as { params: { chunk: Buffer } }).params.chunk).toBe(chunk);
    const result = withBytes(body).framed('{"id":"r-1","result":', '}').toValue();
    expect(result).toEqual({ id: 'r-1', result: body });
  });

  it('as a value: bytes whose buffer the sender reuses once encoded are copied before it is told', () => {
    const scratch = Buffer.from('file contents');
    const events: string[] = [];
    const message = withBase64Bytes({}, 'dataBase64', scratch, {}, { encoded: () => events.push('encoded'), sent: () => events.push('sent') });
    const value = message.framed('{"id":1,"result":', '}').toValue() as { result: { dataBase64: Buffer } };
    expect(events).toEqual(['encoded']);
    scratch.fill(0);
    expect(value.result.dataBase64.toString()).toBe('file contents');
    message.settle();
    expect(events).toEqual(['encoded', 'sent']);
  });
});
