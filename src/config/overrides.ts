/**
 * Overrides with dotted keys, as {@link ConfigLayer}s: Codex's `-c key=value` command-line option
 * and the `codex` tool's `config` object (`{"model_providers.fake.base_url": "http://…"}`).
 * Pure: no environment, no file reads.
 */
import { configLayer, type ConfigLayer, type LayerOptions } from './layers.js';
import { isTable, ownValue, parseToml, setPath, toPlain, type Table } from './toml.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/** One `-c key=value`: the dotted key split into segments, and the parsed value. */
export interface ConfigOverride {
  path: string[];
  value: unknown;
}

/** Index of the first `=` outside a quoted key segment, or -1. */
function keyValueSplit(arg: string): number {
  let quote: string | undefined;
  for (let index = 0; index < arg.length; index++) {
    const char = arg[index];
    if (quote !== undefined) {
      if (char === '\\' && quote === '"') index++;
      else if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if (char === '=') {
      return index;
    }
  }
  return -1;
}

/**
 * Splits a dotted key. TOML key syntax when it parses (`mcp_servers."my.server".command`),
 * otherwise a plain split on `.` as Codex does.
 */
function parseKeyPath(key: string): string[] {
  try {
    let node: unknown = parseToml(`${key} = true`, '-c');
    const path: string[] = [];
    while (isTable(node)) {
      const keys = Object.keys(node);
      const only = keys[0];
      if (keys.length !== 1 || only === undefined) break;
      path.push(only);
      node = ownValue(node, only);
    }
    if (node === true && path.length > 0) return path;
  } catch {
    // Not TOML key syntax: fall through to Codex's plain split.
  }
  return key.split('.');
}

/** Codex's `-c` value rule: a TOML value when it parses, else the trimmed text without quotes. */
function parseOverrideValue(raw: string): unknown {
  try {
    const table = parseToml(`_x_ = ${raw}`, '-c');
    // A value with a newline could smuggle in other keys; that is not one value.
    if (Object.keys(table).length === 1 && '_x_' in table) return toPlain(table._x_);
  } catch {
    // Not a TOML value: use the raw text.
  }
  return raw.trim().replace(/^["']+|["']+$/g, '');
}

function invalidOverride(message: string): LocalError {
  return new LocalError(LocalErrorCode.InvalidConfig, message);
}

/**
 * Parses one `-c key=value` as Codex does: the key is dotted (quoted segments allowed), the value
 * is a TOML value (`"o3"`, `false`, `["/a"]`, `{a=1}`) or, when it is not valid TOML, the raw
 * string (`model=o3` → `"o3"`).
 * @throws LocalError `INVALID_CONFIG` on a missing `=` or an empty key (Codex's messages).
 */
export function parseOverride(arg: string): ConfigOverride {
  const split = keyValueSplit(arg);
  if (split < 0) throw invalidOverride(`-c: Invalid override (missing '='): ${arg}`);
  const key = arg.slice(0, split).trim();
  if (key === '') throw invalidOverride(`-c: Empty key in override: ${arg}`);
  return { path: parseKeyPath(key), value: parseOverrideValue(arg.slice(split + 1)) };
}

/**
 * Builds the layer of `-c` overrides, in command-line order (a later one wins).
 * @param source named in errors and warnings, normally `-c`.
 */
export function overridesLayer(source: string, entries: readonly ConfigOverride[], options: LayerOptions = {}): ConfigLayer {
  const values: Table = {};
  for (const entry of entries) setPath(values, entry.path, entry.value);
  return configLayer(source, values, options);
}

/**
 * Builds a layer from an object whose keys may be dotted (`{"model_providers.fake.base_url":
 * "http://…", "sandbox_mode": "danger-full-access"}`), as the `codex` tool's `config` argument.
 * @param source named in errors and warnings, normally `config argument`.
 */
export function dottedObjectLayer(source: string, object: Readonly<Record<string, unknown>>, options: LayerOptions = {}): ConfigLayer {
  const values: Table = {};
  for (const [key, value] of Object.entries(object)) setPath(values, parseKeyPath(key), value);
  return configLayer(source, values, options);
}
