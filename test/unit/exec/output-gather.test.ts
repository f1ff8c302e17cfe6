import { describe, expect, test } from '@jest/globals';
import { OutputGather } from '../../../src/exec/output-gather.js';

/** A gather with the given window, and what it emitted. */
function gather(windowMs: number): { gather: OutputGather; emitted: string[] } {
  const emitted: string[] = [];
  const made = new OutputGather(
    (stream, data) => emitted.push(`${stream}:${data.toString()}`),
    () => undefined,
    windowMs,
  );
  return { gather: made, emitted };
}

describe('OutputGather', () => {
  test('holds output that comes within the window after an event, and lets it out as one event on close', () => {
    const { gather: made, emitted } = gather(600_000);
    made.add('stdout', Buffer.from('a'), true);
    made.add('stdout', Buffer.from('b'), true);
    made.add('stdout', Buffer.from('c'), true);
    expect(emitted).toEqual(['stdout:a']);
    expect(made.heldBytes).toBe(2);
    made.close();
    expect(emitted).toEqual(['stdout:a', 'stdout:bc']);
  });

  test('with no window (0, a client in this process), every piece goes out at once as its own event', () => {
    const { gather: made, emitted } = gather(0);
    made.add('stdout', Buffer.from('a'), true);
    made.add('stderr', Buffer.from('b'), true);
    made.add('stdout', Buffer.from('c'), true);
    expect(emitted).toEqual(['stdout:a', 'stderr:b', 'stdout:c']);
    expect(made.heldBytes).toBe(0);
    made.close();
  });

  test('output that may not be gathered (a terminal) opens no window', () => {
    const { gather: made, emitted } = gather(600_000);
    made.add('pty', Buffer.from('a'), false);
    made.add('pty', Buffer.from('b'), false);
    expect(emitted).toEqual(['pty:a', 'pty:b']);
  });
});
