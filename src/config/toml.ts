/**
 * The one TOML reader of this package, and the few operations on the tables it gives. Codex 0.169
 * reads `config.toml` and `environments.toml` as TOML 1.1 (multi-line inline tables with trailing
 * commas, the `\e` and `\xHH` escapes, times without seconds), so a file the real Codex loads must
 * load here too; smol-toml implements 1.1.
 */
import { parse, TomlError } from 'smol-toml';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** What smol-toml puts before the reason in every syntax error. */
const MESSAGE_PREFIX = 'Invalid TOML document: ';

/** A TOML table: string keys, values as {@link parseToml} gives them. */
export type Table = Record<string, unknown>;

/**
 * Parses a TOML document into nested tables (null-prototype objects; a key such as `__proto__`
 * is an own property). Integers stay numbers while they are exact and become bigints beyond
 * 2^53, as Codex reads them as 64-bit integers; datetimes are `Date`s.
 * @param source the file path (or other name) that errors start with.
 * @throws LocalError `INVALID_CONFIG`: `<source>: TOML syntax error at line L, column C: <reason>`,
 * with 1-based line and column as Codex reports them.
 */
export function parseToml(text: string, source: string): Table {
  try {
    return parse(text, { integersAsBigInt: 'asNeeded' });
  } catch (error) {
    if (error instanceof TomlError) {
      // The message is "Invalid TOML document: <reason>\n\n<excerpt>"; the excerpt repeats the
      // file, which line and column already point into.
      const first = error.message.split('\n')[0] ?? '';
      const reason = first.startsWith(MESSAGE_PREFIX) ? first.slice(MESSAGE_PREFIX.length) : first;
      return invalid(`${source}: TOML syntax error at line ${error.line}, column ${error.column}: ${reason}`, error);
    }
    return invalid(`${source}: failed to parse TOML: ${errorMessage(error)}`, error);
  }
}

function invalid(message: string, cause: unknown): never {
  throw new LocalError(LocalErrorCode.InvalidConfig, message, { cause });
}

/** Whether a TOML (or JSON) value is a table: an object that is neither an array nor a datetime. */
export function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** A table's own value at `key`: never an inherited one such as `__proto__`. */
export function ownValue(table: Table, key: string): unknown {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** Sets an own property, so a key named `__proto__` is data and never a prototype. */
export function setOwn(table: Table, key: string, value: unknown): void {
  Object.defineProperty(table, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A deep copy with plain objects (TOML gives null-prototype ones); dates and bigints kept. */
export function toPlain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toPlain);
  return isTable(value) ? plainTable(value) : value;
}

/** {@link toPlain} for a table. */
export function plainTable(table: Table): Table {
  const copy: Table = {};
  for (const [key, item] of Object.entries(table)) setOwn(copy, key, toPlain(item));
  return copy;
}

/** Merges `value` into `table` at `path`: tables merge, anything else replaces. */
export function setPath(table: Table, path: readonly string[], value: unknown): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  const existing = ownValue(table, head);
  if (rest.length === 0) {
    if (isTable(existing) && isTable(value)) {
      for (const [key, item] of Object.entries(value)) setPath(existing, [key], item);
    } else {
      setOwn(table, head, toPlain(value));
    }
    return;
  }
  const child = isTable(existing) ? existing : {};
  if (child !== existing) setOwn(table, head, child);
  setPath(child, rest, value);
}
