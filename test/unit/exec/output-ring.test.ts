import { OutputRing } from '../../../src/exec/output-ring.js';

/** The ring's contents as `seq:text` pairs, oldest first. */
function contents(ring: OutputRing): string[] {
  return ring.chunks.map((chunk) => `${chunk.seq}:${ring.read(chunk).toString()}`);
}

describe('OutputRing', () => {
  it('keeps the newest chunks within the limit, and the newest alone when it is larger', () => {
    const ring = new OutputRing(10);
    ring.push(1, 'stdout', Buffer.from('aaaa'));
    ring.push(2, 'stderr', Buffer.from('bbbb'));
    expect(contents(ring)).toEqual(['1:aaaa', '2:bbbb']);
    ring.push(3, 'stdout', Buffer.from('cccc'));
    expect(contents(ring)).toEqual(['2:bbbb', '3:cccc']);
    expect(ring.chunks.map((chunk) => chunk.stream)).toEqual(['stderr', 'stdout']);
    ring.push(4, 'stdout', Buffer.from('a chunk over the limit'));
    expect(contents(ring)).toEqual(['4:a chunk over the limit']);
    ring.push(5, 'stdout', Buffer.from('e'));
    expect(contents(ring)).toEqual(['5:e']);
    expect(ring.bytes).toBe(1);
  });

  it('returns copies: what was read stays as it was while the ring is written over', () => {
    const ring = new OutputRing(8);
    ring.push(1, 'stdout', Buffer.from('12345678'));
    const first = ring.read(ring.chunks[0]!);
    for (let seq = 2; seq < 10; seq++) ring.push(seq, 'stdout', Buffer.from('zzzz'));
    expect(first.toString()).toBe('12345678');
  });

  it('holds exactly what a list of the newest chunks would, whatever the chunk sizes and wrap-arounds', () => {
    // A deterministic mix of sizes around the limit and the growth steps of the buffer.
    let state = 7;
    const next = (): number => (state = (state * 1103515245 + 12345) % 2147483648);
    for (const limit of [1, 100, 20_000, 70_000]) {
      const ring = new OutputRing(limit);
      const model: { seq: number; data: Buffer }[] = [];
      for (let seq = 1; seq <= 400; seq++) {
        const size = next() % (next() % 4 === 0 ? 3 * limit + 2 : 5000);
        const data = Buffer.alloc(size, seq % 251);
        if (size > 0) data[0] = seq % 256;
        ring.push(seq, 'stdout', data);
        model.push({ seq, data });
        let total = model.reduce((sum, chunk) => sum + chunk.data.length, 0);
        while (total > limit && model.length > 1) total -= model.shift()!.data.length;
      }
      expect(ring.chunks.map((chunk) => chunk.seq)).toEqual(model.map((chunk) => chunk.seq));
      for (const [index, chunk] of ring.chunks.entries()) expect(ring.read(chunk).equals(model[index]!.data)).toBe(true);
    }
  });

  it('forgets everything on clear', () => {
    const ring = new OutputRing(100);
    ring.push(1, 'pty', Buffer.from('x'));
    ring.clear();
    expect(ring.chunks).toEqual([]);
    expect(ring.bytes).toBe(0);
    ring.push(2, 'pty', Buffer.from('y'));
    expect(contents(ring)).toEqual(['2:y']);
  });
});
