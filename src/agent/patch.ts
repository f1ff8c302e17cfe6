/**
 * The `apply_patch` language (Codex's patch format), pure: parsing, applying update chunks to a
 * file's text, and a unified diff for approvals. No I/O; the tool does the reading and writing.
 */

const BEGIN_PATCH = '*** Begin Patch';
const END_PATCH = '*** End Patch';
const ENVIRONMENT_ID = '*** Environment ID:';
const ADD_FILE = '*** Add File:';
const DELETE_FILE = '*** Delete File:';
const UPDATE_FILE = '*** Update File:';
const MOVE_TO = '*** Move to:';
const END_OF_FILE = '*** End of File';
const EXPECTED_HUNK = "expected '*** Add File: ', '*** Delete File: ' or '*** Update File: '";

/** One change block of an `*** Update File:` hunk. */
export interface UpdateChunk {
  /** The text of an `@@ <context>` header: a line just before the change that narrows the search. */
  context: string | undefined;
  /** Lines the file has now (context and removed lines), in order. */
  oldLines: string[];
  /** Lines the file will have (context and added lines), in order. */
  newLines: string[];
  /** `*** End of File`: the old lines must be the last lines of the file. */
  isEndOfFile: boolean;
}

/** One file operation of a patch; paths are as the model wrote them. */
export type PatchHunk =
  { type: 'add'; path: string; contents: string } | { type: 'delete'; path: string } | { type: 'update'; path: string; movePath: string | undefined; chunks: UpdateChunk[] };

/** A parsed patch. */
export interface ParsedPatch {
  /** From `*** Environment ID: <id>`; undefined for the primary environment. */
  environmentId: string | undefined;
  hunks: PatchHunk[];
}

/** The patch text does not follow the grammar. The message starts with `line N: `. */
export class PatchParseError extends Error {
  override readonly name = 'PatchParseError';

  constructor(
    /** 1-based line of the input where parsing failed. */
    readonly line: number,
    detail: string,
  ) {
    super(`line ${line}: ${detail}`);
  }
}

/** The patch is well formed but does not fit the files (lines not found, missing file, …). */
export class PatchApplyError extends Error {
  override readonly name = 'PatchApplyError';
}

/** Quotes a line for an error message, shortened so a runaway line cannot flood the model. */
function quote(line: string): string {
  return `'${line.length > 200 ? `${line.slice(0, 200)}…` : line}'`;
}

/** The text after a marker (`*** Add File:`), trimmed; undefined when the line is not that marker. */
function afterMarker(trimmed: string, marker: string): string | undefined {
  return trimmed.startsWith(marker) ? trimmed.slice(marker.length).trim() : undefined;
}

/** `<<EOF`, `<<'EOF'`, `<<"EOF"` (optionally after `apply_patch`): the tag, or undefined. */
function heredocTag(trimmed: string): string | undefined {
  const match = /^(?:apply_patch\s+)?<<-?\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\1$/.exec(trimmed);
  return match?.[2];
}

/**
 * Parses patch text. Lenient where Codex is: surrounding blank lines and whitespace around markers,
 * a heredoc wrapper (`<<'EOF'` … `EOF`), CRLF line endings, no final newline, blank lines between
 * hunks and change blocks, and `@@ -1,3 +1,3 @@` headers from unified diffs (taken as a bare `@@`).
 * @throws PatchParseError naming the line and what was expected there.
 */
export function parsePatch(text: string): ParsedPatch {
  const lines = text.split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  const isBlank = (index: number): boolean => (lines[index] ?? '').trim() === '';
  let first = 0;
  let last = lines.length - 1;
  const trim = (): void => {
    while (first <= last && isBlank(first)) first += 1;
    while (last >= first && isBlank(last)) last -= 1;
  };
  trim();
  if (first > last) throw new PatchParseError(1, `expected '${BEGIN_PATCH}', got an empty patch`);
  const tag = heredocTag((lines[first] ?? '').trim());
  if (tag !== undefined && last > first && (lines[last] ?? '').trim() === tag) {
    first += 1;
    last -= 1;
    trim();
    if (first > last) throw new PatchParseError(first + 1, `expected '${BEGIN_PATCH}', got an empty patch`);
  }
  const line = (index: number): string => lines[index] ?? '';
  if (line(first).trim() !== BEGIN_PATCH) throw new PatchParseError(first + 1, `expected '${BEGIN_PATCH}', got ${quote(line(first))}`);
  if (first === last || line(last).trim() !== END_PATCH) {
    throw new PatchParseError(last + 1, `expected '${END_PATCH}' as the last line, got ${first === last ? 'end of input' : quote(line(last))}`);
  }

  // The body lies strictly between the Begin and End markers, as in Codex, so an indented
  // `*** End Patch` can never be read as a context line.
  const end = last;
  let i = first + 1;
  let environmentId: string | undefined;
  const envValue = afterMarker(line(i).trim(), ENVIRONMENT_ID);
  if (envValue !== undefined && i < end) {
    if (envValue === '') throw new PatchParseError(i + 1, `expected an environment id after '${ENVIRONMENT_ID} '`);
    environmentId = envValue;
    i += 1;
  }

  const hunks: PatchHunk[] = [];
  while (i < end) {
    const trimmed = line(i).trim();
    if (trimmed === '') {
      i += 1;
      continue;
    }
    const header = i;
    const addPath = afterMarker(trimmed, ADD_FILE);
    const deletePath = afterMarker(trimmed, DELETE_FILE);
    const updatePath = afterMarker(trimmed, UPDATE_FILE);
    const requirePath = (path: string, marker: string): string => {
      if (path === '') throw new PatchParseError(header + 1, `expected a file path after '${marker} '`);
      return path;
    };
    if (addPath !== undefined) {
      const path = requirePath(addPath, ADD_FILE);
      i += 1;
      let contents = '';
      while (i < end && line(i).startsWith('+')) {
        contents += `${line(i).slice(1)}\n`;
        i += 1;
      }
      hunks.push({ type: 'add', path, contents });
    } else if (deletePath !== undefined) {
      hunks.push({ type: 'delete', path: requirePath(deletePath, DELETE_FILE) });
      i += 1;
    } else if (updatePath !== undefined) {
      const path = requirePath(updatePath, UPDATE_FILE);
      i += 1;
      let movePath: string | undefined;
      const moveValue = i < end ? afterMarker(line(i).trim(), MOVE_TO) : undefined;
      if (moveValue !== undefined) {
        movePath = requirePath(moveValue, MOVE_TO);
        i += 1;
      }
      const chunks: UpdateChunk[] = [];
      while (i < end) {
        if (isBlank(i)) {
          i += 1;
          continue;
        }
        // The next hunk (Codex: any line starting with '*'; an indented hunk header too).
        const next = line(i).trim();
        if ((line(i).startsWith('*') && next !== END_OF_FILE) || [ADD_FILE, DELETE_FILE, UPDATE_FILE].some((m) => next.startsWith(m))) break;
        i = parseChunk(lines, i, end, chunks);
      }
      // A pure rename has no change block; anything else must change something.
      if (chunks.length === 0 && movePath === undefined) {
        throw new PatchParseError(i + 1, `expected a change block ('@@' or ' ', '+', '-' lines) for '${path}', got ${i < end ? quote(line(i)) : `'${END_PATCH}'`}`);
      }
      hunks.push({ type: 'update', path, movePath, chunks });
    } else if (afterMarker(trimmed, ENVIRONMENT_ID) !== undefined) {
      throw new PatchParseError(i + 1, `'${ENVIRONMENT_ID} ' may only appear right after '${BEGIN_PATCH}'`);
    } else {
      throw new PatchParseError(i + 1, `${EXPECTED_HUNK}, got ${quote(line(i))}`);
    }
  }
  if (hunks.length === 0) throw new PatchParseError(end + 1, `${EXPECTED_HUNK}, got '${END_PATCH}'`);
  return { environmentId, hunks };
}

/** Parses one change block starting at `start`; appends it to `chunks` and returns the next index. */
function parseChunk(lines: readonly string[], start: number, end: number, chunks: UpdateChunk[]): number {
  let i = start;
  const first = lines[i] ?? '';
  let context: string | undefined;
  const header = first.trim();
  if (header === '@@' || /^@@ -\d+(,\d+)? \+\d+(,\d+)? @@$/.test(header)) {
    i += 1;
  } else if (header.startsWith('@@ ')) {
    context = first.trimStart().slice(3);
    // A unified-diff header with the function after it (`@@ -1,2 +1,2 @@ def f():`) keeps the function.
    const unified = /^-\d+(,\d+)? \+\d+(,\d+)? @@ ?(.*)$/.exec(context);
    if (unified !== null) context = unified[3] === '' ? undefined : unified[3];
    i += 1;
  } else if (chunks.length > 0) {
    throw new PatchParseError(i + 1, `expected '@@' to start the next change block, got ${quote(first)}`);
  }
  const chunk: UpdateChunk = { context, oldLines: [], newLines: [], isEndOfFile: false };
  let count = 0;
  while (i < end) {
    const text = lines[i] ?? '';
    if (text.trim() === END_OF_FILE) {
      if (count === 0) break;
      chunk.isEndOfFile = true;
      i += 1;
      break;
    }
    const kind = text[0];
    if (text.startsWith('\\ ')) {
      // `\ No newline at end of file`, copied from a unified diff: not a line of the file.
      i += 1;
      continue;
    }
    if (text === '') {
      // An empty line inside a block is an empty context line (the model dropped the space).
      chunk.oldLines.push('');
      chunk.newLines.push('');
    } else if (kind === ' ') {
      chunk.oldLines.push(text.slice(1));
      chunk.newLines.push(text.slice(1));
    } else if (kind === '-') {
      chunk.oldLines.push(text.slice(1));
    } else if (kind === '+') {
      chunk.newLines.push(text.slice(1));
    } else if (count === 0) {
      throw new PatchParseError(i + 1, `expected a ' ', '+' or '-' line, got ${quote(text)}`);
    } else {
      break;
    }
    count += 1;
    i += 1;
  }
  if (count === 0) throw new PatchParseError(i + 1, `expected a ' ', '+' or '-' line, got ${i < end ? quote(lines[i] ?? '') : `'${END_PATCH}'`}`);
  chunks.push(chunk);
  return i;
}

/** Typographic punctuation a model may have written in place of the ASCII the file holds. */
const PUNCTUATION: Record<string, string> = {
  '\u2010': '-',
  '\u2011': '-',
  '\u2012': '-',
  '\u2013': '-',
  '\u2014': '-',
  '\u2015': '-',
  '\u2212': '-',
  '\u2018': "'",
  '\u2019': "'",
  '\u201A': "'",
  '\u201B': "'",
  '\u201C': '"',
  '\u201D': '"',
  '\u201E': '"',
  '\u201F': '"',
  '\u00A0': ' ',
  '\u2002': ' ',
  '\u2003': ' ',
  '\u2004': ' ',
  '\u2005': ' ',
  '\u2006': ' ',
  '\u2007': ' ',
  '\u2008': ' ',
  '\u2009': ' ',
  '\u200A': ' ',
  '\u202F': ' ',
  '\u205F': ' ',
  '\u3000': ' ',
};
const PUNCTUATION_RE = new RegExp(`[${Object.keys(PUNCTUATION).join('')}]`, 'g');

function normalisePunctuation(line: string): string {
  return line.trim().replace(PUNCTUATION_RE, (c) => PUNCTUATION[c] ?? c);
}

/** Successively looser line comparisons, tried in order over the whole search range. */
const MATCHERS: readonly ((a: string, b: string) => boolean)[] = [
  (a, b) => a === b,
  (a, b) => a.trimEnd() === b.trimEnd(),
  (a, b) => a.trim() === b.trim(),
  (a, b) => normalisePunctuation(a) === normalisePunctuation(b),
];

/**
 * Where `pattern` occurs in `lines` at or after `start` (only at the very end when `endOfFile`),
 * trying each matcher over the whole range before loosening; -1 when it does not occur.
 */
function seekSequence(lines: readonly string[], pattern: readonly string[], start: number, endOfFile: boolean): number {
  if (pattern.length === 0) return start;
  if (pattern.length > lines.length) return -1;
  const lastStart = lines.length - pattern.length;
  const from = endOfFile ? lastStart : start;
  for (const same of MATCHERS) {
    for (let at = from; at <= lastStart; at += 1) {
      let ok = true;
      for (let k = 0; k < pattern.length && ok; k += 1) ok = same(lines[at + k] ?? '', pattern[k] ?? '');
      if (ok) return at;
    }
  }
  return -1;
}

/**
 * Applies the change blocks of one `*** Update File:` hunk to a file's text, as Codex does: each
 * block's old lines are searched after the previous block (exact, then ignoring trailing
 * whitespace, then surrounding whitespace, then typographic punctuation); an `@@ context` line is
 * found first and the search continues after it; `*** End of File` anchors at the end. The file's
 * line ending (CRLF when it dominates) and its final-newline state are kept.
 * @param path names the file in error messages.
 * @throws PatchApplyError `Failed to find expected lines in <path>:\n<lines>` (or the context).
 */
export function computeUpdate(original: string, chunks: readonly UpdateChunk[], path: string): string {
  const crlf = (original.match(/\r\n/g) ?? []).length;
  const lf = (original.match(/\n/g) ?? []).length - crlf;
  const eol = crlf > 0 && crlf >= lf ? '\r\n' : '\n';
  const text = eol === '\r\n' ? original.replace(/\r\n/g, '\n') : original;
  // An empty file gains a final newline; otherwise keep whatever the file had.
  const finalNewline = text === '' || text.endsWith('\n');
  const lines = text === '' ? [] : text.split('\n');
  if (text.endsWith('\n')) lines.pop();

  const replacements: { start: number; remove: number; insert: string[] }[] = [];
  let cursor = 0;
  for (const chunk of chunks) {
    if (chunk.context !== undefined) {
      const at = seekSequence(lines, [chunk.context], cursor, false);
      if (at < 0) throw new PatchApplyError(`Failed to find context '${chunk.context}' in ${path}`);
      cursor = at + 1;
    }
    if (chunk.oldLines.length === 0) {
      // Only additions: right after the context line when there is one, else at the end.
      const at = chunk.context !== undefined && !chunk.isEndOfFile ? cursor : lines.length;
      replacements.push({ start: at, remove: 0, insert: chunk.newLines });
      continue;
    }
    let pattern = chunk.oldLines;
    let insert = chunk.newLines;
    let at = seekSequence(lines, pattern, cursor, chunk.isEndOfFile);
    // A trailing empty line in the block usually stands for the file's final newline.
    if (at < 0 && pattern[pattern.length - 1] === '') {
      pattern = pattern.slice(0, -1);
      if (insert[insert.length - 1] === '') insert = insert.slice(0, -1);
      at = seekSequence(lines, pattern, cursor, chunk.isEndOfFile);
    }
    if (at < 0) throw new PatchApplyError(`Failed to find expected lines in ${path}:\n${chunk.oldLines.join('\n')}`);
    replacements.push({ start: at, remove: pattern.length, insert });
    cursor = at + pattern.length;
  }
  // Stable sort, applied from the end so earlier indices stay valid.
  replacements.sort((a, b) => a.start - b.start);
  for (let k = replacements.length - 1; k >= 0; k -= 1) {
    const r = replacements[k];
    if (r !== undefined) lines.splice(r.start, r.remove, ...r.insert);
  }
  if (lines.length === 0) return '';
  return lines.join(eol) + (finalNewline ? eol : '');
}

/** Edits beyond this many make the diff fall back to "replace the changed middle". */
const MAX_DIFF_EDITS = 2000;

type DiffOp = { kind: 'equal' | 'delete' | 'insert'; line: string };

/** Splits text into lines that keep their terminator, so a missing final newline is a difference. */
function splitKeepingEol(text: string): string[] {
  return text === '' ? [] : text.split(/(?<=\n)/);
}

/** Myers' diff of two line arrays; falls back to delete-all/insert-all past {@link MAX_DIFF_EDITS}. */
function diffLines(a: readonly string[], b: readonly string[]): DiffOp[] {
  // Common prefix and suffix first: patches usually touch a small middle.
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head += 1;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail += 1;
  const ops: DiffOp[] = a.slice(0, head).map((line) => ({ kind: 'equal', line }));
  const midA = a.slice(head, a.length - tail);
  const midB = b.slice(head, b.length - tail);
  ops.push(...myers(midA, midB));
  ops.push(...a.slice(a.length - tail).map((line): DiffOp => ({ kind: 'equal', line })));
  return ops;
}

function myers(a: readonly string[], b: readonly string[]): DiffOp[] {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, MAX_DIFF_EDITS);
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  // trace[d] holds v[-(d+1) … d+1] as it was before round d.
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= max && found < 0; d += 1) {
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && (v[offset + k - 1] ?? 0) < (v[offset + k + 1] ?? 0)) ? (v[offset + k + 1] ?? 0) : (v[offset + k - 1] ?? 0) + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x += 1;
        y += 1;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
  }
  if (found < 0) return [...a.map((line): DiffOp => ({ kind: 'delete', line })), ...b.map((line): DiffOp => ({ kind: 'insert', line }))];
  const reversed: DiffOp[] = [];
  let x = n;
  let y = m;
  for (let d = found; d >= 0; d -= 1) {
    const snapshot = trace[d] ?? new Int32Array(0);
    const at = (k: number): number => snapshot[k + d + 1] ?? 0;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      reversed.push({ kind: 'equal', line: a[x - 1] ?? '' });
      x -= 1;
      y -= 1;
    }
    if (d > 0) {
      if (x === prevX) reversed.push({ kind: 'insert', line: b[prevY] ?? '' });
      else reversed.push({ kind: 'delete', line: a[prevX] ?? '' });
    }
    x = prevX;
    y = prevY;
  }
  return reversed.reverse();
}

/**
 * A unified diff of two texts: only `@@ -a,b +c,d @@` hunks (no `---`/`+++` header), with
 * `context` lines around changes and `\ No newline at end of file` where a side lacks one.
 * Empty when the texts are equal.
 */
export function unifiedDiff(oldText: string, newText: string, context = 3): string {
  const ops = diffLines(splitKeepingEol(oldText), splitKeepingEol(newText));
  const changed = ops.map((op, index) => (op.kind === 'equal' ? -1 : index)).filter((index) => index >= 0);
  if (changed.length === 0) return '';
  // Positions (0-based) in each side where op `index` starts.
  const oldAt: number[] = [];
  const newAt: number[] = [];
  let oa = 0;
  let na = 0;
  for (const op of ops) {
    oldAt.push(oa);
    newAt.push(na);
    if (op.kind !== 'insert') oa += 1;
    if (op.kind !== 'delete') na += 1;
  }
  let out = '';
  let g = 0;
  while (g < changed.length) {
    const firstChange = changed[g] ?? 0;
    let lastChange = firstChange;
    while (g + 1 < changed.length && (changed[g + 1] ?? 0) - lastChange <= 2 * context + 1) {
      g += 1;
      lastChange = changed[g] ?? lastChange;
    }
    g += 1;
    const from = Math.max(0, firstChange - context);
    const to = Math.min(ops.length - 1, lastChange + context);
    let oldCount = 0;
    let newCount = 0;
    let body = '';
    for (let index = from; index <= to; index += 1) {
      const op = ops[index];
      if (op === undefined) continue;
      if (op.kind !== 'insert') oldCount += 1;
      if (op.kind !== 'delete') newCount += 1;
      const sign = op.kind === 'equal' ? ' ' : op.kind === 'delete' ? '-' : '+';
      const terminated = op.line.endsWith('\n');
      body += `${sign}${terminated ? op.line.slice(0, -1) : op.line}\n`;
      if (!terminated) body += '\\ No newline at end of file\n';
    }
    const oldStart = (oldAt[from] ?? 0) + (oldCount > 0 ? 1 : 0);
    const newStart = (newAt[from] ?? 0) + (newCount > 0 ? 1 : 0);
    out += `@@ -${oldStart},${oldCount} +${newStart},${newCount} @@\n${body}`;
  }
  return out;
}
