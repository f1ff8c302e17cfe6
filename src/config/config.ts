/**
 * Codex's `config.toml`, its `-c key=value` overrides, `[profiles.NAME]`, and the `codex` MCP
 * tool's per-call `config` object, resolved into one typed {@link EffectiveConfig}.
 *
 * Every source is a {@link ConfigLayer} (layers.ts, overrides.ts). Layers merge lowest first
 * (tables merge, arrays and scalars replace), the selected profile overlays the result, explicit
 * per-call arguments overlay that (Codex's `ConfigOverrides`), and {@link ConfigTomlSchema}
 * validates and fills defaults. The merge remembers which layer set each key, so an error names
 * the source and the key the user wrote (`/h/.codex/config.toml: approval_policy: …`,
 * `-c: model_providers.fake.wire_api: …`).
 *
 * Unknown keys never fail: a user's existing Codex config must work here, so each unknown key is
 * a warning. Pure: no environment, no file reads.
 */
import { isAbsolute, join } from 'node:path';
import type { ConfigLayer } from './layers.js';
import { BUILT_IN_MODEL_PROVIDERS } from './model-providers.js';
import { ConfigTomlSchema, PATH_KEYS, ProfileSelectionSchema, type EffectiveConfig } from './settings.js';
import { isTable, ownValue, plainTable, setOwn, toPlain, type Table } from './toml.js';
import { checkValue, formatKeyPath, unknownKeys, type IssuePlace, type KeyPath } from './validation.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/** Source name of the built-in defaults in errors (only reachable if a user layer breaks them). */
const BUILT_IN_SOURCE = 'built-in defaults';

/** Top-level key prefixes accepted without a warning (Codex's experimental knobs). */
const ACCEPTED_KEY_PREFIXES = ['experimental_'] as const;

// ---------------------------------------------------------------------------------------------
// Merging with provenance

/** Which layer set a key, and the key as that layer wrote it (a profile key keeps its prefix). */
interface Origin {
  source: string;
  key: readonly string[];
}

function isKeyPath(path: KeyPath): path is readonly string[] {
  return path.every((segment) => typeof segment === 'string');
}

class Provenance {
  private readonly origins = new Map<string, Origin>();

  set(path: readonly string[], origin: Origin): void {
    this.origins.set(JSON.stringify(path), origin);
  }

  /** The origin of the longest recorded prefix of `path`, and how much of `path` it covers. */
  find(path: KeyPath): { origin: Origin; length: number } | undefined {
    for (let length = path.length; length > 0; length--) {
      const prefix = path.slice(0, length);
      if (!isKeyPath(prefix)) continue;
      const origin = this.origins.get(JSON.stringify(prefix));
      if (origin !== undefined) return { origin, length };
    }
    return undefined;
  }

  /** Where an issue at `path` of the merged table is: the layer that set it, and the key it wrote. */
  place(path: KeyPath): IssuePlace {
    const found = this.find(path);
    if (found === undefined) return { source: 'config', path };
    return { source: found.origin.source, path: [...found.origin.key, ...path.slice(found.length)] };
  }
}

/**
 * Deep-merges `source` into `target` and records where every key came from. `originOf` gives the
 * origin of a path inside `source`.
 */
function mergeWithOrigins(
  target: Table,
  source: Table,
  path: readonly string[],
  provenance: Provenance,
  originOf: (relative: readonly string[]) => Origin,
  relative: readonly string[] = [],
): void {
  for (const [key, value] of Object.entries(source)) {
    const keyPath = [...path, key];
    const keyRelative = [...relative, key];
    provenance.set(keyPath, originOf(keyRelative));
    const existing = ownValue(target, key);
    if (isTable(value)) {
      const child = isTable(existing) ? existing : {};
      if (child !== existing) setOwn(target, key, child);
      mergeWithOrigins(child, value, keyPath, provenance, originOf, keyRelative);
    } else {
      setOwn(target, key, toPlain(value));
    }
  }
}

/** Merges a layer, its relative paths resolved against its directory first. */
function mergeLayer(target: Table, configLayer: ConfigLayer, provenance: Provenance): void {
  const { source } = configLayer;
  const values = configLayer.baseDir === undefined ? configLayer.values : withAbsolutePaths(configLayer.values, configLayer.baseDir);
  mergeWithOrigins(target, values, [], provenance, (key) => ({ source, key }));
}

/**
 * A copy of `values` with the relative paths of {@link PATH_KEYS}, at the top and in every
 * profile, joined to `baseDir`, as Codex resolves them against the directory of the file.
 */
function withAbsolutePaths(values: Table, baseDir: string): Table {
  const copy = plainTable(values);
  const resolve = (item: unknown): unknown => (typeof item === 'string' && !isAbsolute(item) ? join(baseDir, item) : item);
  const profiles = ownValue(copy, 'profiles');
  const roots = [copy, ...(isTable(profiles) ? Object.values(profiles).filter(isTable) : [])];
  for (const root of roots) {
    for (const path of PATH_KEYS) {
      const parent = path.slice(0, -1).reduce<unknown>((node, key) => (isTable(node) ? ownValue(node, key) : undefined), root);
      const key = path.at(-1);
      if (!isTable(parent) || key === undefined || !Object.hasOwn(parent, key)) continue;
      const value = ownValue(parent, key);
      setOwn(parent, key, Array.isArray(value) ? value.map(resolve) : resolve(value));
    }
  }
  return copy;
}

/** Defaults that are values of keys a user may also set: the `openai` provider, `threads_dir`. */
function builtInLayer(codexHome: string): ConfigLayer {
  return {
    source: BUILT_IN_SOURCE,
    values: { model_providers: BUILT_IN_MODEL_PROVIDERS, multienv: { threads_dir: join(codexHome, 'multienv', 'threads') } },
  };
}

// ---------------------------------------------------------------------------------------------
// Resolution

/** Options of {@link resolveConfig}. */
export interface ResolveConfigOptions {
  /** Layers, lowest precedence first: config.toml, then `-c`, then the per-call `config`. */
  layers: readonly ConfigLayer[];
  /** Profile to apply; wins over the `profile` key. */
  profile?: string;
  /** Absolute `CODEX_HOME`; `threads_dir` defaults under it. */
  codexHome: string;
  /**
   * Layers applied after the profile, lowest first, as Codex applies its `ConfigOverrides` (the
   * `codex` tool's `model`, `approval-policy`, `sandbox`, … arguments; see {@link toolArgumentsLayer}).
   * @default []
   */
  overrides?: readonly ConfigLayer[];
}

/** What {@link resolveConfig} returns. */
export interface ResolvedConfig {
  config: EffectiveConfig;
  /** One line per unknown key: `<source>: unknown config key \`a.b\` ignored`. */
  warnings: string[];
  /** The keys the applied `[profiles.NAME]` table sets, as written there (undefined without a profile). */
  profileValues: Record<string, unknown> | undefined;
}

/** The unknown keys of a layer: a profile holds top-level keys; `experimental_*` ones are Codex's. */
function unknownKeyWarnings(configLayer: ConfigLayer): string[] {
  const paths = unknownKeys(ConfigTomlSchema, configLayer.values, {
    schemaAt: (path) => (path.length === 2 && path[0] === 'profiles' ? ConfigTomlSchema : undefined),
    accepted: (path) => {
      const topLevel = path.length === 1 || (path.length === 3 && path[0] === 'profiles');
      return topLevel && ACCEPTED_KEY_PREFIXES.some((prefix) => path.at(-1)?.startsWith(prefix) === true);
    },
  });
  return paths.map((path) => `${configLayer.source}: unknown config key \`${formatKeyPath(path)}\` ignored`);
}

/**
 * Merges the layers, applies the selected profile and the overrides, validates known keys and
 * fills defaults.
 *
 * The profile is `options.profile`, else the merged `profile` key; its `[profiles.NAME]` table
 * overlays the top-level keys (so, as in Codex, a profile's `model` wins over `-c model=…`, and
 * `-c profiles.NAME.model=…` changes the profile). Path-valued keys resolve a relative path
 * against the directory of the layer that set it ({@link ConfigLayer.baseDir}).
 * @throws LocalError `INVALID_CONFIG`: `<source>: <key>: <problem>` for every invalid known key
 * (joined with `; `), or an unknown profile listing the known ones.
 */
export function resolveConfig(options: ResolveConfigOptions): ResolvedConfig {
  const provenance = new Provenance();
  const merged: Table = {};
  for (const configLayer of [builtInLayer(options.codexHome), ...options.layers]) mergeLayer(merged, configLayer, provenance);
  const locate = (path: KeyPath): IssuePlace => provenance.place(path);

  const selection = checkValue(ProfileSelectionSchema, merged, { locate });
  const profile = options.profile ?? selection.profile;
  let profileValues: Record<string, unknown> | undefined;
  if (profile !== undefined) {
    const table = selection.profiles !== undefined && Object.hasOwn(selection.profiles, profile) ? selection.profiles[profile] : undefined;
    if (table === undefined) {
      const names = Object.keys(selection.profiles ?? {}).sort();
      const known = names.length === 0 ? 'no profiles are defined' : `known profiles: ${names.join(', ')}`;
      const message = `config profile \`${profile}\` not found; ${known}`;
      if (options.profile !== undefined) throw new LocalError(LocalErrorCode.InvalidConfig, message);
      const { source, path } = locate(['profile']);
      throw new LocalError(LocalErrorCode.InvalidConfig, `${source ?? 'config'}: ${formatKeyPath(path)}: ${message}`);
    }
    const overlay: Table = {};
    for (const [key, value] of Object.entries(table)) if (key !== 'profile' && key !== 'profiles') setOwn(overlay, key, value);
    profileValues = overlay;
    mergeWithOrigins(merged, overlay, [], provenance, (key) => {
      const full = ['profiles', profile, ...key];
      return { source: provenance.find(full)?.origin.source ?? 'config', key: full };
    });
    // The schema's `profile` is the profile applied, which the option may have chosen.
    setOwn(merged, 'profile', profile);
  }
  for (const configLayer of options.overrides ?? []) mergeLayer(merged, configLayer, provenance);

  const warnings = [...options.layers, ...(options.overrides ?? [])].flatMap(unknownKeyWarnings);
  return { config: checkValue(ConfigTomlSchema, merged, { locate }), warnings, profileValues };
}
