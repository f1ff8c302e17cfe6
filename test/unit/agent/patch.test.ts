import { computeUpdate, parsePatch, PatchApplyError, PatchParseError, unifiedDiff, type PatchHunk, type UpdateChunk } from '../../../src/agent/patch.js';

const patch = (...lines: string[]): string => `${lines.join('\n')}\n`;

/** The chunks of a patch's single update hunk. */
function chunksOf(text: string): UpdateChunk[] {
  const hunk = parsePatch(text).hunks[0];
  if (hunk?.type !== 'update') throw new Error('expected an update hunk');
  return hunk.chunks;
}

function parseError(text: string): PatchParseError {
  try {
    parsePatch(text);
  } catch (error) {
    if (error instanceof PatchParseError) return error;
    throw error;
  }
  throw new Error('expected a parse error');
}

describe('parsePatch', () => {
  it('parses every hunk kind', () => {
    const parsed = parsePatch(
      patch(
        '*** Begin Patch',
        '*** Add File: new.txt',
        '+hello',
        '+',
        '+world',
        '*** Delete File: old.txt',
        '*** Update File: src/a.ts',
        '@@ function f() {',
        ' const a = 1;',
        '-const b = 2;',
        '+const b = 3;',
        '*** End Patch',
      ),
    );
    expect(parsed.environmentId).toBeUndefined();
    expect(parsed.hunks).toEqual<PatchHunk[]>([
      { type: 'add', path: 'new.txt', contents: 'hello\n\nworld\n' },
      { type: 'delete', path: 'old.txt' },
      {
        type: 'update',
        path: 'src/a.ts',
        movePath: undefined,
        chunks: [{ context: 'function f() {', oldLines: ['const a = 1;', 'const b = 2;'], newLines: ['const a = 1;', 'const b = 3;'], isEndOfFile: false }],
      },
    ]);
  });

  it('reads the environment id right after Begin Patch', () => {
    const parsed = parsePatch(patch('*** Begin Patch', '*** Environment ID: remote-1', '*** Delete File: x', '*** End Patch'));
    expect(parsed.environmentId).toBe('remote-1');
    expect(parsed.hunks).toEqual([{ type: 'delete', path: 'x' }]);
  });

  it('rejects an environment id anywhere else, or an empty one', () => {
    expect(parseError(patch('*** Begin Patch', '*** Delete File: x', '*** Environment ID: b', '*** End Patch')).message).toBe(
      "line 3: '*** Environment ID: ' may only appear right after '*** Begin Patch'",
    );
    expect(parseError(patch('*** Begin Patch', '*** Environment ID: ', '*** Delete File: x', '*** End Patch')).message).toBe(
      "line 2: expected an environment id after '*** Environment ID: '",
    );
  });

  it('accepts a heredoc wrapper, surrounding blank lines and whitespace around markers', () => {
    const expected = [{ type: 'add', path: 'a.txt', contents: 'x\n' }];
    expect(parsePatch("<<'EOF'\n*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch\nEOF\n").hunks).toEqual(expected);
    expect(parsePatch('<<EOF\n*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch\nEOF').hunks).toEqual(expected);
    expect(parsePatch('apply_patch <<"PATCH"\n*** Begin Patch\n*** Add File: a.txt\n+x\n*** End Patch\nPATCH\n').hunks).toEqual(expected);
    expect(parsePatch('\n\n  *** Begin Patch  \n  *** Add File: a.txt  \n+x\n\n *** End Patch \n\n').hunks).toEqual(expected);
  });

  it('accepts CRLF input and a missing final newline', () => {
    const parsed = parsePatch('*** Begin Patch\r\n*** Update File: a.txt\r\n@@\r\n-one\r\n+two\r\n*** End Patch');
    expect(parsed.hunks).toEqual([
      { type: 'update', path: 'a.txt', movePath: undefined, chunks: [{ context: undefined, oldLines: ['one'], newLines: ['two'], isEndOfFile: false }] },
    ]);
  });

  it('parses a move, with and without changes', () => {
    expect(parsePatch(patch('*** Begin Patch', '*** Update File: a.txt', '*** Move to: dir/b.txt', '@@', '-x', '+y', '*** End Patch')).hunks).toEqual([
      { type: 'update', path: 'a.txt', movePath: 'dir/b.txt', chunks: [{ context: undefined, oldLines: ['x'], newLines: ['y'], isEndOfFile: false }] },
    ]);
    expect(parsePatch(patch('*** Begin Patch', '*** Update File: a.txt', '*** Move to: b.txt', '*** End Patch')).hunks).toEqual([
      { type: 'update', path: 'a.txt', movePath: 'b.txt', chunks: [] },
    ]);
  });

  it('parses several change blocks, a first block without @@, blank separators and End of File', () => {
    const chunks = chunksOf(
      patch('*** Begin Patch', '*** Update File: a.txt', ' a', '-b', '+B', '', '@@ def g():', '-c', '+C', '@@', ' y', '+z', '*** End of File', '*** End Patch'),
    );
    expect(chunks).toEqual<UpdateChunk[]>([
      { context: undefined, oldLines: ['a', 'b', ''], newLines: ['a', 'B', ''], isEndOfFile: false },
      { context: 'def g():', oldLines: ['c'], newLines: ['C'], isEndOfFile: false },
      { context: undefined, oldLines: ['y'], newLines: ['y', 'z'], isEndOfFile: true },
    ]);
  });

  it('takes unified-diff headers as bare @@ (keeping a trailing function name as context)', () => {
    expect(chunksOf(patch('*** Begin Patch', '*** Update File: a', '@@ -1,2 +1,2 @@', '-x', '+y', '*** End Patch'))[0]?.context).toBeUndefined();
    expect(chunksOf(patch('*** Begin Patch', '*** Update File: a', '@@ -4,2 +4,2 @@ def f():', '-x', '+y', '*** End Patch'))[0]?.context).toBe('def f():');
  });

  it('keeps marker-like text inside added lines and context lines', () => {
    const parsed = parsePatch(patch('*** Begin Patch', '*** Add File: a', '+*** End Patch', '+@@', '*** Update File: b', ' *** End Patch', '+x', '*** End Patch'));
    expect(parsed.hunks[0]).toEqual({ type: 'add', path: 'a', contents: '*** End Patch\n@@\n' });
    expect(parsed.hunks[1]).toMatchObject({ chunks: [{ oldLines: ['*** End Patch'], newLines: ['*** End Patch', 'x'] }] });
  });

  it('reports the line and what was expected', () => {
    expect(parseError(patch('*** Begin Patch', '*** Add File: a', 'foo', '*** End Patch')).message).toBe(
      "line 3: expected '*** Add File: ', '*** Delete File: ' or '*** Update File: ', got 'foo'",
    );
    const error = parseError(patch('hello', '*** End Patch'));
    expect(error.line).toBe(1);
    expect(error.message).toBe("line 1: expected '*** Begin Patch', got 'hello'");
    expect(parseError(patch('*** Begin Patch', '*** Delete File: a')).message).toBe("line 2: expected '*** End Patch' as the last line, got '*** Delete File: a'");
    expect(parseError('*** Begin Patch').message).toBe("line 1: expected '*** End Patch' as the last line, got end of input");
    expect(parseError('   \n').message).toBe("line 1: expected '*** Begin Patch', got an empty patch");
    expect(parseError(patch('*** Begin Patch', '*** End Patch')).message).toBe(
      "line 2: expected '*** Add File: ', '*** Delete File: ' or '*** Update File: ', got '*** End Patch'",
    );
    expect(parseError(patch('*** Begin Patch', '*** Update File: a', '*** Delete File: b', '*** End Patch')).message).toBe(
      "line 3: expected a change block ('@@' or ' ', '+', '-' lines) for 'a', got '*** Delete File: b'",
    );
    expect(parseError(patch('*** Begin Patch', '*** Update File: a', '@@', '-x', 'oops', '*** End Patch')).message).toBe(
      "line 5: expected '@@' to start the next change block, got 'oops'",
    );
    expect(parseError(patch('*** Begin Patch', '*** Update File: a', '@@', 'oops', '*** End Patch')).message).toBe("line 4: expected a ' ', '+' or '-' line, got 'oops'");
    expect(parseError(patch('*** Begin Patch', '*** Add File: ', '+x', '*** End Patch')).message).toBe("line 2: expected a file path after '*** Add File: '");
  });

  it('counts lines of the original input, heredoc and leading blank lines included', () => {
    expect(parseError("\n<<'EOF'\n*** Begin Patch\n*** Add File: a\nbad\n*** End Patch\nEOF\n").line).toBe(5);
  });
});

describe('computeUpdate', () => {
  const update = (original: string, ...body: string[]): string =>
    computeUpdate(original, chunksOf(patch('*** Begin Patch', '*** Update File: f.txt', ...body, '*** End Patch')), 'f.txt');

  it('replaces, inserts and deletes lines', () => {
    expect(update('a\nb\nc\n', '@@', ' a', '-b', '+B', ' c')).toBe('a\nB\nc\n');
    expect(update('a\nb\nc\n', '@@', ' a', '+a2', ' b')).toBe('a\na2\nb\nc\n');
    expect(update('a\nb\nc\n', '@@', ' a', '-b', ' c')).toBe('a\nc\n');
  });

  it('applies several blocks in order, each searched after the previous one', () => {
    expect(update('x\nsame\nx\nsame\n', '@@', ' x', '-same', '+one', '@@', ' x', '-same', '+two')).toBe('x\none\nx\ntwo\n');
  });

  it('narrows the search with @@ context lines', () => {
    const original = 'def f():\n    return 1\n\ndef g():\n    return 1\n';
    expect(update(original, '@@ def g():', '-    return 1', '+    return 2')).toBe('def f():\n    return 1\n\ndef g():\n    return 2\n');
    expect(update(original, '@@ def g():', '+    # g')).toBe('def f():\n    return 1\n\ndef g():\n    # g\n    return 1\n');
  });

  it('anchors End of File blocks at the end', () => {
    expect(update('x\ny\nx\n', '@@', '-x', '+z', '*** End of File')).toBe('x\ny\nz\n');
    expect(update('a\n', '@@', ' a', '+b', '*** End of File')).toBe('a\nb\n');
  });

  it('matches ignoring trailing whitespace, then surrounding whitespace, then typographic punctuation', () => {
    expect(update('a  \nb\n', '@@', '-a', '+A')).toBe('A\nb\n');
    expect(update('    a\nb\n', '@@', '-a', '+A')).toBe('A\nb\n');
    expect(update('x = "a – b" \u2018q\u2019\u00A0z\n', '@@', '-x = "a - b" \'q\' z', '+y')).toBe('y\n');
    expect(update('say \u201Chi\u201D\n', '@@', '-say "hi"', '+ok')).toBe('ok\n');
  });

  it('prefers an exact match later in the file over a fuzzy one earlier', () => {
    expect(update('a \na\n', '@@', '-a', '+b')).toBe('a \nb\n');
  });

  it('keeps CRLF line endings and the final-newline state', () => {
    expect(update('a\r\nb\r\n', '@@', '-a', '+A')).toBe('A\r\nb\r\n');
    expect(update('a\nb', '@@', ' a', '-b', '+B')).toBe('a\nB');
    expect(update('a\r\nb', '@@', ' a', '+c')).toBe('a\r\nc\r\nb');
    expect(update('', '+first')).toBe('first\n');
  });

  it('drops a trailing empty block line that stands for the final newline', () => {
    expect(update('a\nb\n', '@@', ' a', '-b', '+c', '')).toBe('a\nc\n');
  });

  it('fails with the lines it could not find', () => {
    const failing = (): string => update('a\nb\n', '@@', ' a', '-nope', '+x');
    expect(failing).toThrow(PatchApplyError);
    expect(failing).toThrow('Failed to find expected lines in f.txt:\na\nnope');
    expect(() => update('a\n', '@@ class Missing', '-a', '+b')).toThrow("Failed to find context 'class Missing' in f.txt");
  });
});

describe('unifiedDiff', () => {
  it('is empty for equal texts', () => {
    expect(unifiedDiff('a\nb\n', 'a\nb\n')).toBe('');
  });

  it('writes hunks with three lines of context', () => {
    const before = Array.from({ length: 20 }, (_, i) => `l${i + 1}`).join('\n') + '\n';
    const after = before.replace('l5\n', 'L5\n').replace('l18\n', 'L18\nnew\n');
    expect(unifiedDiff(before, after)).toBe(
      ['@@ -2,7 +2,7 @@', ' l2', ' l3', ' l4', '-l5', '+L5', ' l6', ' l7', ' l8', '@@ -15,6 +15,7 @@', ' l15', ' l16', ' l17', '-l18', '+L18', '+new', ' l19', ' l20', ''].join(
        '\n',
      ),
    );
  });

  it('merges nearby changes, and marks a missing final newline', () => {
    expect(unifiedDiff('a\nb\nc\n', 'a\nB\nc')).toBe('@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n+c\n\\ No newline at end of file\n');
    expect(unifiedDiff('', 'x\n')).toBe('@@ -0,0 +1,1 @@\n+x\n');
    expect(unifiedDiff('x\n', '')).toBe('@@ -1,1 +0,0 @@\n-x\n');
  });
});
