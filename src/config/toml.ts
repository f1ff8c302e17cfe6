/**
 * The one TOML reader of this package. Codex 0.169 reads `config.toml` and `environments.toml`
 * as TOML 1.1 (multi-line inline tables with trailing commas, the `\e` and `\xHH` escapes, times
 * without seconds), so a file the real Codex loads must load here too; smol-toml implements 1.1.
 */
import { parse, TomlError } from 'smol-toml';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** What smol-toml puts before the reason in every syntax error. */
const MESSAGE_PREFIX = 'Invalid TOML document: ';

/**
 * Parses a TOML document into nested tables (null-prototype objects; a key such as `__proto__`
 * is an own property). Integers stay numbers while they are exact and become bigints beyond
 * 2^53, as Codex reads them as 64-bit integers; datetimes are `Date`s.
 * @param source the file path (or other name) that errors start with.
 * @throws LocalError `INVALID_CONFIG`: `<source>: TOML syntax error at line L, column C: <reason>`,
 * with 1-based line and column as Codex reports them.
 */
export function parseToml(text: string, source: string): Record<string, unknown> {
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
