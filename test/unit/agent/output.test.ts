import { formatExecOutput, OutputCapture, truncateForModel } from '../../../src/agent/output.js';

describe('truncateForModel', () => {
  it('keeps text within the budget unchanged and counts ceil(bytes / 4) tokens', () => {
    expect(truncateForModel('hello\n', 10)).toEqual({ text: 'hello\n', originalTokens: 2, truncated: false });
    expect(truncateForModel('', 0)).toEqual({ text: '', originalTokens: 0, truncated: false });
    expect(truncateForModel('12345678', 2)).toEqual({ text: '12345678', originalTokens: 2, truncated: false });
  });

  it('keeps the head and the tail, half the budget each, around a marker line', () => {
    const text = 'a'.repeat(100) + 'b'.repeat(100);
    const result = truncateForModel(text, 10);
    expect(result.truncated).toBe(true);
    expect(result.originalTokens).toBe(50);
    expect(result.text).toBe(`${'a'.repeat(20)}\n…40 tokens truncated…\n${'b'.repeat(20)}`);
  });

  it('does not add a newline before the marker when the head ends a line', () => {
    const lines = Array.from({ length: 40 }, (_, i) => `line${String(i).padStart(2, '0')}\n`).join('');
    const result = truncateForModel(lines, 7);
    expect(result.text).toBe('line00\nline01\n…63 tokens truncated…\nline38\nline39\n');
  });

  it('never splits a UTF-8 character', () => {
    const text = 'é'.repeat(100);
    for (const maxTokens of [1, 2, 3, 5, 7, 11]) {
      const result = truncateForModel(text, maxTokens);
      expect(result.text).not.toContain('\uFFFD');
      const [head = '', tail = ''] = result.text.split(/\n?…\d+ tokens truncated…\n/);
      expect(head).toMatch(/^é*$/);
      expect(tail).toMatch(/^é*$/);
      expect(Buffer.byteLength(head) + Buffer.byteLength(tail)).toBeLessThanOrEqual(maxTokens * 4);
      const removed = 200 - Buffer.byteLength(head) - Buffer.byteLength(tail);
      expect(result.text).toContain(`…${Math.ceil(removed / 4)} tokens truncated…`);
    }
    const emoji = truncateForModel('😀'.repeat(50), 3);
    expect(emoji.text).toBe('😀\n…48 tokens truncated…\n😀');
  });

  it('keeps only the marker with a zero budget', () => {
    expect(truncateForModel('abcdefgh', 0)).toEqual({ text: '…2 tokens truncated…\n', originalTokens: 2, truncated: true });
  });
});

describe('OutputCapture', () => {
  it('renders exactly as truncateForModel when everything was retained', () => {
    const capture = new OutputCapture(10);
    capture.push(Buffer.from('a'.repeat(30)));
    capture.push(Buffer.from('b'.repeat(10)));
    expect(capture.render(10)).toEqual(truncateForModel('a'.repeat(30) + 'b'.repeat(10), 10));
  });

  it('bounds memory on long output and still reports the whole count with head and tail', () => {
    const capture = new OutputCapture(4);
    capture.push(Buffer.from('HEAD'));
    for (let i = 0; i < 1000; i++) capture.push(Buffer.from('x'.repeat(100)));
    capture.push(Buffer.from('TAIL'));
    expect(capture.totalBytes).toBe(100_008);
    const result = capture.render(4);
    expect(result.truncated).toBe(true);
    expect(result.originalTokens).toBe(25_002);
    expect(result.text).toBe('HEADxxxx\n…24998 tokens truncated…\nxxxxTAIL');
  });

  it('decodes a character split across chunks, and replaces invalid bytes', () => {
    const capture = new OutputCapture(100);
    const bytes = Buffer.from('é', 'utf8');
    capture.push(bytes.subarray(0, 1));
    capture.push(Buffer.concat([bytes.subarray(1), Buffer.from([0xff]), Buffer.from('\r\n')]));
    expect(capture.render(100).text).toBe('é\uFFFD\r\n');
  });
});

describe('formatExecOutput', () => {
  it("renders an exited process in Codex's shape", () => {
    expect(formatExecOutput({ chunkId: '89d8cb', wallTimeMs: 150.9, exitCode: 0, output: 'hi there\n', maxTokens: 100 })).toBe(
      'Chunk ID: 89d8cb\nWall time: 0.1509 seconds\nProcess exited with code 0\nOriginal token count: 3\nOutput:\nhi there\n',
    );
  });

  it('renders a running process with its session id, and truncated output', () => {
    expect(formatExecOutput({ chunkId: 'abcdef', wallTimeMs: 10_000, sessionId: 3, output: 'x'.repeat(40), maxTokens: 2 })).toBe(
      'Chunk ID: abcdef\nWall time: 10.0000 seconds\nProcess running with session ID 3\nOriginal token count: 10\nOutput:\nxxxx\n…8 tokens truncated…\nxxxx',
    );
  });
});
