/**
 * Sources of configuration as {@link ConfigLayer}s: Codex's `config.toml`, and the `codex` MCP
 * tool's explicit arguments that are settings under another name. `-c key=value` and the tool's
 * `config` object are in overrides.ts. Layers are merged and validated by {@link resolveConfig}.
 * Pure: no environment, no file reads.
 */
import { dirname, isAbsolute } from 'node:path';
import { parseToml, plainTable, setOwn, type Table } from './toml.js';

/** Name of Codex's configuration file inside `CODEX_HOME`. */
export const CONFIG_FILE_NAME = 'config.toml';

/** One source of configuration: a raw nested table and where it came from. */
export interface ConfigLayer {
  /** Names the layer in warnings and errors: a file path, `-c`, `config argument`. */
  source: string;
  /** The raw nested table, as TOML or JSON gives it (keys in snake_case, as in config.toml). */
  values: Record<string, unknown>;
  /**
   * Directory that relative paths in this layer (`writable_roots`, `threads_dir`,
   * `model_instructions_file`) resolve against. Without it a relative path is an error.
   */
  baseDir?: string;
}

/** Options of {@link parseConfigToml}. */
export interface ParseConfigTomlOptions {
  /**
   * Directory relative paths in the file resolve against, as Codex resolves them against the
   * directory of the config file (`CODEX_HOME`).
   * @default the directory of `source` when `source` is an absolute path, otherwise none
   */
  baseDir?: string;
}

/** Options of layers built from overrides ({@link overridesLayer}, {@link dottedObjectLayer}). */
export interface LayerOptions {
  /**
   * Directory relative paths resolve against. Codex resolves `-c` paths against the process's
   * working directory, which only `cli/` may read, so it must pass it here.
   * @default none: relative paths are an error
   */
  baseDir?: string;
}

/** A layer of `values`, with the directory of `options` when there is one. */
export function configLayer(source: string, values: Table, options: LayerOptions = {}): ConfigLayer {
  return options.baseDir === undefined ? { source, values } : { source, values, baseDir: options.baseDir };
}

/**
 * Parses a config.toml. Only the syntax is checked here; {@link resolveConfig} validates keys.
 * @param source the file path, named in errors and warnings.
 * @throws LocalError `INVALID_CONFIG`: `<source>: TOML syntax error at line L, column C: <reason>`.
 */
export function parseConfigToml(text: string, source: string, options: ParseConfigTomlOptions = {}): ConfigLayer {
  const baseDir = options.baseDir ?? (isAbsolute(source) ? dirname(source) : undefined);
  return configLayer(source, plainTable(parseToml(text, source)), baseDir === undefined ? {} : { baseDir });
}

/** The `codex` tool arguments that are config settings under another name. */
export interface CodexToolConfigArguments {
  model?: string;
  'approval-policy'?: string;
  sandbox?: string;
  'base-instructions'?: string;
  'developer-instructions'?: string;
  'compact-prompt'?: string;
}

const TOOL_ARGUMENT_KEYS = {
  model: 'model',
  'approval-policy': 'approval_policy',
  sandbox: 'sandbox_mode',
  'base-instructions': 'base_instructions',
  'developer-instructions': 'developer_instructions',
  'compact-prompt': 'compact_prompt',
} as const satisfies Record<keyof CodexToolConfigArguments, string>;

/**
 * Builds the layer of the `codex` tool's explicit arguments (`model`, `approval-policy`,
 * `sandbox`, …) under their config.toml names. Pass it in {@link ResolveConfigOptions.overrides}:
 * like Codex's `ConfigOverrides` these win over the selected profile. `cwd` and `profile` are not
 * config settings and are not taken.
 */
export function toolArgumentsLayer(source: string, args: Readonly<CodexToolConfigArguments>): ConfigLayer {
  const values: Table = {};
  for (const [argument, key] of Object.entries(TOOL_ARGUMENT_KEYS)) {
    const value = args[argument as keyof CodexToolConfigArguments];
    if (value !== undefined) setOwn(values, key, value);
  }
  return { source, values };
}
