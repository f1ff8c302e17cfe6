/**
 * The one path from TOML to typed values for every file of `config/`: {@link parseTomlFile} reads
 * the text with {@link parseToml}, {@link checkValue} validates a value with a zod schema (one
 * schema per type), and every issue is said one way: `<file>: <key path>: <problem>`, where the
 * problem says what was expected and what was found.
 *
 * The phrases come from a {@link Wording}: ours for config.toml (`expected a string, got 5`), and
 * serde's for environments.toml (`invalid type: integer \`5\`, expected a string`), because there
 * the messages are Codex's own and users search for them. Pure: no environment, no file reads.
 */
import { z } from 'zod';
import { isTable, parseToml, setOwn } from './toml.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/** A path into a TOML value: table keys and array indexes. */
export type KeyPath = readonly PropertyKey[];

/** How a {@link checkValue} issue is phrased. */
export interface Wording {
  /** A value as found: `"yes"`, `5`, `a table`. */
  found(value: unknown): string;
  /** What zod's type names (`string`, `int`, `object`, …) expect, in words. */
  names: Readonly<Record<string, string>>;
  /** A value of the wrong type. */
  mismatch(expected: string, found: string): string;
  /** A required key that is absent. */
  missing(key: string): string;
  /** Whether a missing key is reported at the table holding it rather than at the key. */
  missingAtTable: boolean;
  /** Keys a closed table does not have; `known` are the keys it has, in schema order. */
  unknown(keys: readonly string[], known: readonly string[]): string;
}

function quoted(name: string): string {
  return `\`${name}\``;
}

/** Our wording: `expected a string, got 5`. */
export const PLAIN_WORDING: Wording = {
  found(value) {
    if (value === undefined) return 'nothing';
    if (value === null) return 'null';
    if (typeof value === 'string') return JSON.stringify(value);
    if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
    if (value instanceof Date) return `datetime ${value.toISOString()}`;
    if (Array.isArray(value)) return 'an array';
    return 'a table';
  },
  names: { string: 'a string', number: 'a number', int: 'an integer', boolean: 'a boolean', array: 'an array', object: 'a table', record: 'a table' },
  mismatch: (expected, found) => `expected ${expected}, got ${found}`,
  missing: () => 'missing required key',
  missingAtTable: false,
  unknown: (keys, known) => `unknown key${keys.length === 1 ? '' : 's'} ${keys.map(quoted).join(', ')}; known keys: ${known.map(quoted).join(', ')}`,
};

/** serde's wording, as Codex prints it: `invalid type: integer \`5\`, expected a string`. */
export const SERDE_WORDING: Wording = {
  found(value) {
    if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
    if (typeof value === 'boolean') return `boolean \`${value}\``;
    if (typeof value === 'bigint') return `integer \`${value}\``;
    if (typeof value === 'number') {
      if (Number.isInteger(value)) return `integer \`${value}\``;
      const text = Number.isNaN(value) ? 'NaN' : value === Infinity ? 'inf' : value === -Infinity ? '-inf' : String(value);
      return `floating point \`${text}\``;
    }
    if (value instanceof Date) return `datetime \`${value.toISOString()}\``;
    if (Array.isArray(value)) return 'sequence';
    return 'map';
  },
  names: { string: 'a string', boolean: 'a boolean', array: 'a sequence', object: 'a map', record: 'a map' },
  mismatch: (expected, found) => `invalid type: ${found}, expected ${expected}`,
  missing: (key) => `missing field ${quoted(key)}`,
  missingAtTable: true,
  // serde stops at the first unknown field.
  unknown: (keys, known) => `unknown field ${quoted(keys[0] ?? '')}, expected ${known.length === 1 ? quoted(known[0] ?? '') : `one of ${known.map(quoted).join(', ')}`}`,
};

/** What a schema expects, when its type name does not say it (`struct EnvironmentToml`, `path string`). */
const expectedNames = z.registry<{ expected: string }>();

/**
 * Names what `schema` expects in type errors, for a `z.custom` type guard or where the wording's
 * name for the zod type is not the one to show.
 */
export function expecting<T extends z.core.$ZodType>(schema: T, expected: string): T {
  expectedNames.add(schema, { expected });
  return schema;
}

/**
 * A table schema that refuses a datetime, which zod's object type would take (a TOML datetime is a
 * `Date`, an object like any other to zod).
 */
export function tomlTable<T extends z.ZodObject>(object: T): z.ZodPreprocess<T> {
  return z.preprocess((value, ctx) => {
    if (!(value instanceof Date)) return value;
    ctx.issues.push({ code: 'invalid_type', expected: 'object', input: value, inst: object });
    return z.NEVER;
  }, object);
}

/** The one key zod leaves out of every table it outputs (assigning it would set a prototype). */
const PROTO_KEY = '__proto__';

/**
 * A table of strings whose keys are data (environment variables, HTTP headers, query parameters),
 * where any name is allowed: `z.record(z.string(), z.string())`, except that a key named
 * `__proto__` is kept as an own key of the output (zod's record drops it without a word).
 */
export function stringTable(): z.ZodType<Record<string, string>> {
  return z.unknown().transform((input, ctx) => {
    if (!isTable(input)) {
      ctx.issues.push({ code: 'invalid_type', expected: 'record', input });
      return z.NEVER;
    }
    const output: Record<string, string> = {};
    for (const [key, value] of Object.entries(input)) {
      if (typeof value === 'string') setOwn(output, key, value);
      else ctx.issues.push({ code: 'invalid_type', expected: 'string', input: value, path: [key] });
    }
    return output;
  });
}

/**
 * `schema` for a table whose keys name things (providers, profiles, servers, paths), refusing a
 * key named `__proto__` by its path: zod would drop it without a word, and it names nothing.
 */
export function refuseProtoKey<T extends z.ZodType>(schema: T): z.ZodPreprocess<T> {
  return z.preprocess((value, ctx) => {
    if (isTable(value) && Object.hasOwn(value, PROTO_KEY)) {
      ctx.issues.push({ code: 'custom', input: value, path: [PROTO_KEY], message: `the key \`${PROTO_KEY}\` is not allowed here; choose another name` });
      return z.NEVER;
    }
    return value;
  }, schema);
}

/**
 * A key path as people read it: `mcp_servers.docs.args[1]`. A key is quoted only where the dotted
 * form would be ambiguous (empty, or holding a dot, a quote, a bracket or white space).
 */
export function formatKeyPath(path: KeyPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') {
      text += `[${segment}]`;
      continue;
    }
    const name = String(segment);
    const part = name !== '' && !/[\s\p{C}."'[\]]/u.test(name) ? name : JSON.stringify(name);
    text += text === '' ? part : `.${part}`;
  }
  return text;
}

/** Where an issue is: the file or layer, and the key path inside it. */
export interface IssuePlace {
  source: string | undefined;
  path: KeyPath;
}

/** Options of {@link checkValue}. */
export interface CheckOptions {
  /** Names the file or layer at the start of every message. @default none: messages start with the key path */
  source?: string;
  /** Key path of the checked value in its file (`['mcp_servers']`); issue paths continue it. @default [] */
  at?: KeyPath;
  /**
   * Where an issue at `path` (relative to the checked value) is, for a value merged from several
   * sources (config layers).
   * @default `source`, and `at` followed by `path`
   */
  locate?: (path: KeyPath) => IssuePlace;
  /** @default PLAIN_WORDING */
  wording?: Wording;
  /**
   * `all`: every issue, joined with `; `. `first`: only the first in document order, as serde
   * stops at the first error (a missing key counts after the other keys of its table).
   * @default 'all'
   */
  report?: 'all' | 'first';
  /**
   * Words after an issue's key path that say which table it is in (environments.toml's
   * `(id \`a\`)`); `path` is relative to `root`, the checked value.
   * @default none
   */
  label?: (path: KeyPath, root: unknown) => string | undefined;
}

/**
 * Validates `value` with `schema`.
 * @throws LocalError `INVALID_CONFIG`: `<source>: <key path>: <problem>` for each issue reported.
 */
export function checkValue<T extends z.ZodType>(schema: T, value: unknown, options: CheckOptions = {}): z.output<T> {
  const wording = options.wording ?? PLAIN_WORDING;
  // Interpreted (`jitless`): a config is checked a few times (at start-up, once per thread's
  // settings), and zod's compiled parser of a schema this large costs more to generate than it
  // saves over so few parses (~half the config's share of a cold start).
  const result = schema.safeParse(value, { error: (issue) => wordIssue(issue, wording), reportInput: true, jitless: true });
  if (result.success) return result.data;
  const issues = result.error.issues.flatMap(matchedBranch);
  const reported = options.report === 'first' ? firstInDocument(issues, value) : issues;
  const lines = reported.map((issue) => issueLine(issue, value, wording, options));
  throw new LocalError(LocalErrorCode.InvalidConfig, lines.join('; '));
}

/**
 * Parses a TOML file and validates it with `schema`.
 * @param source the file path; every message starts with it.
 * @throws LocalError `INVALID_CONFIG` on a syntax error ({@link parseToml}) or an invalid value.
 */
export function parseTomlFile<T extends z.ZodType>(schema: T, text: string, source: string, options: Omit<CheckOptions, 'source'> = {}): z.output<T> {
  return checkValue(schema, parseToml(text, source), { ...options, source });
}

/** The message of a raw issue, as the error map of every parse. */
function wordIssue(issue: z.core.$ZodRawIssue, wording: Wording): string | undefined {
  const found = (): string => wording.found(issue.input);
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return wording.missing(String(issue.path?.at(-1) ?? ''));
      return wording.mismatch(nameOf(issue.inst) ?? wording.names[issue.expected] ?? issue.expected, found());
    case 'custom': {
      // A `z.custom` type guard named with `expecting`.
      const expected = nameOf(issue.inst);
      return expected === undefined ? undefined : wording.mismatch(expected, found());
    }
    case 'invalid_value': {
      const values = issue.values.map(String);
      return values.length === 1 ? `expected ${values[0] ?? ''}, got ${found()}` : `expected one of ${values.join(', ')}, got ${found()}`;
    }
    case 'too_small':
      if (issue.origin === 'string' && Number(issue.minimum) === 1) return 'must not be empty';
      return `expected ${issue.inclusive === false ? 'more than' : 'at least'} ${String(issue.minimum)}, got ${found()}`;
    case 'too_big':
      return `expected ${issue.inclusive === false ? 'less than' : 'at most'} ${String(issue.maximum)}, got ${found()}`;
    case 'unrecognized_keys':
      return wording.unknown(issue.keys, issue.inst instanceof z.ZodObject ? Object.keys(issue.inst.shape) : []);
    case 'invalid_key':
      return issue.issues[0]?.message;
    case 'invalid_union': {
      // Reported as is only when no option had the type of the value (see `matchedBranch`).
      const names = issue.errors.flatMap((branch) => (branch[0]?.code === 'invalid_type' ? [wording.names[branch[0].expected] ?? branch[0].expected] : []));
      return names.length === 0 ? undefined : wording.mismatch(names.join(' or '), found());
    }
    default:
      return undefined;
  }
}

function nameOf(inst: z.core.$ZodType | z.core.$ZodCheck | undefined): string | undefined {
  return inst instanceof z.core.$ZodType ? expectedNames.get(inst)?.expected : undefined;
}

/**
 * A union's issues as those of the one option that had the type of the value (a table of sub-paths
 * with a bad entry is reported at that entry), or the union's own issue when none or several had.
 */
function matchedBranch(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== 'invalid_union') return [issue];
  const typed = issue.errors.filter((branch) => !(branch.length === 1 && branch[0]?.code === 'invalid_type' && branch[0].path.length === 0));
  const [only] = typed;
  if (typed.length !== 1 || only === undefined) return [issue];
  return only.flatMap((inner) => matchedBranch({ ...inner, path: [...issue.path, ...inner.path] }));
}

/** Whether an issue is a required key that is absent. */
function isMissingKey(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'invalid_type' && issue.input === undefined;
}

/** The key path an issue is reported at, relative to the checked value. */
function issuePath(issue: z.core.$ZodIssue, wording: Wording): KeyPath {
  return wording.missingAtTable && isMissingKey(issue) ? issue.path.slice(0, -1) : issue.path;
}

function issueLine(issue: z.core.$ZodIssue, root: unknown, wording: Wording, options: CheckOptions): string {
  const path = issuePath(issue, wording);
  const place = options.locate?.(path) ?? { source: options.source, path: [...(options.at ?? []), ...path] };
  const where = `${formatKeyPath(place.path)}${options.label?.(path, root) ?? ''}`;
  return [place.source, where, issue.message].filter((part) => part !== undefined && part !== '').join(': ');
}

/**
 * The issue serde would meet first reading `root` in document order: an unknown key where it
 * stands, a missing key after the other keys of its table.
 */
function firstInDocument(issues: readonly z.core.$ZodIssue[], root: unknown): z.core.$ZodIssue[] {
  let first: { issue: z.core.$ZodIssue; order: number[] } | undefined;
  for (const issue of issues) {
    const path = issue.code === 'unrecognized_keys' ? [...issue.path, ...issue.keys.slice(0, 1)] : issue.path;
    const order = documentOrder(root, path);
    if (first === undefined || compareOrders(order, first.order) < 0) first = { issue, order };
  }
  return first === undefined ? [] : [first.issue];
}

/** Positions of each segment of `path` in `root`: array indexes, and key indexes in document order. */
function documentOrder(root: unknown, path: KeyPath): number[] {
  const order: number[] = [];
  let node = root;
  for (const segment of path) {
    if (Array.isArray(node) && typeof segment === 'number') {
      order.push(segment);
      node = node[segment];
    } else if (isTable(node) && typeof segment === 'string') {
      const keys = Object.keys(node);
      const index = keys.indexOf(segment);
      order.push(index === -1 ? keys.length : index);
      node = index === -1 ? undefined : node[segment];
    } else {
      order.push(Number.MAX_SAFE_INTEGER);
      node = undefined;
    }
  }
  return order;
}

function compareOrders(a: readonly number[], b: readonly number[]): number {
  for (let index = 0; index < Math.min(a.length, b.length); index++) {
    const difference = (a[index] ?? 0) - (b[index] ?? 0);
    if (difference !== 0) return difference;
  }
  return a.length - b.length;
}

// ---------------------------------------------------------------------------------------------
// Unknown keys

type SchemaNode = z.core.$ZodType;

/** Strips optional, default, prefault, preprocess and transform wrappers down to the shape they read. */
function baseSchema(schema: SchemaNode): SchemaNode {
  let node = schema;
  for (;;) {
    if (node instanceof z.ZodOptional || node instanceof z.ZodDefault || node instanceof z.ZodPrefault) node = node.unwrap();
    else if (node instanceof z.ZodPipe) node = node.in instanceof z.core.$ZodTransform ? node.out : node.in;
    else return node;
  }
}

/** Options of {@link unknownKeys}. */
export interface UnknownKeyOptions {
  /** Whether an unknown key at `path` is accepted without a report. @default none is */
  accepted?: (path: readonly string[]) => boolean;
  /**
   * The schema the table at `path` is read with, when it is not the one its parent gives
   * (config.toml's `[profiles.NAME]` hold top-level keys).
   * @default the parent's
   */
  schemaAt?: (path: readonly string[]) => SchemaNode | undefined;
}

/**
 * The key paths of `table` that `schema` does not know, for warnings: a user's file with keys of a
 * newer Codex must still load. Known tables are walked; a table with a catch-all (`z.looseObject`)
 * takes any key; a record takes any key and its tables are walked with its value schema.
 */
export function unknownKeys(schema: SchemaNode, table: unknown, options: UnknownKeyOptions = {}): string[][] {
  const found: string[][] = [];
  const walk = (node: SchemaNode, value: unknown, path: readonly string[]): void => {
    if (!isTable(value)) return;
    const base = baseSchema(options.schemaAt?.(path) ?? node);
    if (base instanceof z.ZodRecord) {
      for (const [key, item] of Object.entries(value)) walk(base.valueType, item, [...path, key]);
      return;
    }
    if (!(base instanceof z.ZodObject)) return;
    const shape: Record<string, SchemaNode> = base.shape;
    const { catchall } = base._zod.def;
    for (const [key, item] of Object.entries(value)) {
      const field = Object.hasOwn(shape, key) ? shape[key] : catchall;
      if (field !== undefined) walk(field, item, [...path, key]);
      else if (options.accepted?.([...path, key]) !== true) found.push([...path, key]);
    }
  };
  walk(schema, table, []);
  return found;
}
