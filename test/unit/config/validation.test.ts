import { z } from 'zod';
import { PLAIN_WORDING, SERDE_WORDING, checkValue, expecting, formatKeyPath, parseTomlFile, tomlTable, unknownKeys, type CheckOptions } from '../../../src/config/validation.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';

/** The INVALID_CONFIG message `checkValue` throws. */
function problem(schema: z.ZodType, value: unknown, options: CheckOptions = {}): string {
  try {
    checkValue(schema, value, options);
  } catch (error) {
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.InvalidConfig);
    return (error as LocalError).message;
  }
  throw new Error('expected an error');
}

describe('formatKeyPath', () => {
  it('joins keys with dots and indexes with brackets', () => {
    expect(formatKeyPath(['mcp_servers', 'docs', 'args', 1])).toBe('mcp_servers.docs.args[1]');
    expect(formatKeyPath([])).toBe('');
  });

  it('quotes a key only where the dotted form would be ambiguous', () => {
    expect(formatKeyPath(['permissions', 'a', 'filesystem', '/srv/x', ':workspace_roots'])).toBe('permissions.a.filesystem./srv/x.:workspace_roots');
    expect(formatKeyPath(['mcp_servers', 'my server', 'a.b', '', 'say "hi"', 'x[0]'])).toBe('mcp_servers."my server"."a.b".""."say \\"hi\\""."x[0]"');
    expect(formatKeyPath(['env', 'A\u0000B'])).toBe('env."A\\u0000B"');
  });
});

describe('checkValue', () => {
  const Table = z.object({ name: z.string(), count: z.int().min(1).optional(), tags: z.array(z.string()).optional() });

  it('returns the parsed value', () => {
    expect(checkValue(Table, { name: 'x', count: 2 })).toEqual({ name: 'x', count: 2 });
  });

  it('names the source, the key path under `at` and what was expected and found, for every issue', () => {
    expect(problem(Table, { name: 5, count: 0, tags: ['a', null] }, { source: '/f.toml', at: ['t'] })).toBe(
      '/f.toml: t.name: expected a string, got 5; /f.toml: t.count: expected at least 1, got 0; /f.toml: t.tags[1]: expected a string, got null',
    );
    expect(problem(Table, {}, { at: ['t'] })).toBe('t.name: missing required key');
    expect(problem(Table, 3, { source: '/f.toml' })).toBe('/f.toml: expected a table, got 3');
  });

  it("words serde's way, reporting only the first issue in document order, a missing key last in its table", () => {
    const Strict = z.strictObject({ id: z.string(), url: z.string().optional(), cwd: expecting(z.string(), 'path string').optional() });
    const serde: CheckOptions = { source: 'f', wording: SERDE_WORDING, report: 'first' };
    expect(problem(Strict, { url: 5, bogus: 1 }, serde)).toBe('f: url: invalid type: integer `5`, expected a string');
    expect(problem(Strict, { bogus: 1, url: 5 }, serde)).toBe('f: unknown field `bogus`, expected one of `id`, `url`, `cwd`');
    expect(problem(Strict, { url: 'u' }, serde)).toBe('f: missing field `id`');
    expect(problem(Strict, { id: 'a', cwd: 1.5 }, serde)).toBe('f: cwd: invalid type: floating point `1.5`, expected path string');
  });

  it('reports a union at the entry of the one option that had the type of the value', () => {
    const Access = z.string().pipe(z.enum(['read', 'write']));
    const Rules = z.record(z.string(), z.union([Access, z.record(z.string(), Access)]));
    expect(problem(Rules, { '/x': 'exec' })).toBe('/x: expected one of read, write, got "exec"');
    expect(problem(Rules, { ':root': { src: 'exec' } })).toBe(':root.src: expected one of read, write, got "exec"');
    expect(problem(Rules, { '/x': 5 })).toBe('/x: expected a string or a table, got 5');
  });

  it('places each issue where `locate` says and adds what `label` says', () => {
    const options: CheckOptions = {
      locate: (path) => ({ source: 'layer', path: ['renamed', ...path] }),
      label: (path, root) => (path.length > 0 ? ` (of ${JSON.stringify(root)})` : undefined),
    };
    expect(problem(z.object({ a: z.boolean() }), { a: 1 }, options)).toBe('layer: renamed.a (of {"a":1}): expected a boolean, got 1');
  });
});

describe('tomlTable', () => {
  it("refuses a datetime, which zod's object type takes", () => {
    const date = new Date('1979-05-27T00:00:00Z');
    expect(z.object({}).safeParse(date).success).toBe(true);
    const Named = tomlTable(expecting(z.object({}), 'struct Named'));
    expect(problem(z.object({ t: Named }), { t: date })).toBe('t: expected struct Named, got datetime 1979-05-27T00:00:00.000Z');
    expect(problem(z.object({ t: tomlTable(z.object({})) }), { t: date }, { wording: SERDE_WORDING })).toBe('t: invalid type: datetime `1979-05-27T00:00:00.000Z`, expected a map');
    expect(checkValue(tomlTable(z.object({ a: z.int() })), { a: 1 })).toEqual({ a: 1 });
  });
});

describe('parseTomlFile', () => {
  it('parses, validates, and names the file in syntax and value errors', () => {
    const Schema = z.object({ a: z.int() });
    expect(parseTomlFile(Schema, 'a = 1', '/f.toml')).toEqual({ a: 1 });
    expect(() => parseTomlFile(Schema, 'a = "x"', '/f.toml')).toThrow('/f.toml: a: expected a number, got "x"');
    expect(() => parseTomlFile(Schema, 'a = ', '/f.toml')).toThrow(/^\/f\.toml: TOML syntax error at line 1, column 5: /);
  });
});

describe('unknownKeys', () => {
  const Schema = z.object({
    known: z.object({ inner: z.string() }).optional(),
    open: z.looseObject({ a: z.string() }).optional(),
    rest: z
      .object({ fixed: z.int() })
      .catchall(z.object({ x: z.int() }))
      .optional(),
    map: z
      .record(
        z.string(),
        z.object({ v: z.int() }).transform((raw) => raw.v),
      )
      .optional(),
    raw: z.unknown().optional(),
  });

  it('finds keys a table does not know, walking known tables, records and catch-alls', () => {
    const table = {
      top: 1,
      known: { inner: 'x', extra: 1 },
      open: { anything: { goes: 1 } },
      rest: { fixed: 1, other: { x: 1, y: 2 } },
      map: { a: { v: 1, w: 2 } },
      raw: { whatever: 1 },
    };
    expect(unknownKeys(Schema, table)).toEqual([['top'], ['known', 'extra'], ['rest', 'other', 'y'], ['map', 'a', 'w']]);
  });

  it('skips accepted keys and reads a table with another schema where told', () => {
    const table = { experimental_x: 1, known: { inner: 'x', extra: 1 } };
    expect(unknownKeys(Schema, table, { accepted: (path) => path.at(-1)?.startsWith('experimental_') === true })).toEqual([['known', 'extra']]);
    expect(unknownKeys(Schema, table, { schemaAt: (path) => (path[0] === 'known' ? z.looseObject({}) : undefined) })).toEqual([['experimental_x']]);
  });
});

describe('wordings', () => {
  it('describe found values their own way', () => {
    const values: unknown[] = ['s', 5, 1.5, 2n ** 60n, true, new Date(0), [1], { a: 1 }, null, undefined, NaN, -Infinity];
    expect(values.map((value) => PLAIN_WORDING.found(value))).toEqual([
      '"s"',
      '5',
      '1.5',
      '1152921504606846976',
      'true',
      'datetime 1970-01-01T00:00:00.000Z',
      'an array',
      'a table',
      'null',
      'nothing',
      'NaN',
      '-Infinity',
    ]);
    expect(values.slice(0, 8).map((value) => SERDE_WORDING.found(value))).toEqual([
      'string "s"',
      'integer `5`',
      'floating point `1.5`',
      'integer `1152921504606846976`',
      'boolean `true`',
      'datetime `1970-01-01T00:00:00.000Z`',
      'sequence',
      'map',
    ]);
  });
});
