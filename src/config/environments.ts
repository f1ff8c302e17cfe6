/**
 * `$CODEX_HOME/environments.toml` and `CODEX_EXEC_SERVER_URL`, as codex-cli 0.169.0 reads them
 * (exec-server.md §12–13). Messages are Codex's own, checked against the 0.169.0 binary, so a
 * user can search for them; the file wrapper adds where: file, entry index, id and field.
 *
 * Validation runs in Codex's two phases, both in one zod schema: first the shape (serde in Codex,
 * worded as serde words it), then the meaning, entry by entry, with the rules of
 * {@link buildEnvironmentSpec}. Only the first error is reported, as Codex stops at it.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { LOCAL_ENVIRONMENT_ID, buildEnvironmentSpec, secondsToMilliseconds, type EnvironmentEntry, type EnvironmentSpec } from './environment-spec.js';
import { isTable, ownValue } from './toml.js';
import { SERDE_WORDING, expecting, parseTomlFile, stringTable, tomlTable, type KeyPath } from './validation.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** Name of the environments file inside `CODEX_HOME`. */
export const ENVIRONMENTS_FILE_NAME = 'environments.toml';

/** Id Codex gives the environment named by `CODEX_EXEC_SERVER_URL`. */
export const REMOTE_ENVIRONMENT_ID = 'remote';

/** The variable that names a single remote exec-server when there is no environments.toml. */
export const EXEC_SERVER_URL_VARIABLE = 'CODEX_EXEC_SERVER_URL';

/** The environments a session starts with, and which one new threads use by default. */
export interface EnvironmentsFile {
  /** Whether the built-in `local` environment exists. */
  includeLocal: boolean;
  /** Default environment for new threads; `null` means no default. */
  defaultId: string | null;
  /** Remote environments, in file order. Never contains `local`. */
  environments: EnvironmentSpec[];
}

/** {@link EnvironmentsFile} plus where it came from. */
export interface EnvironmentsConfig extends EnvironmentsFile {
  /** The environments.toml path, `CODEX_EXEC_SERVER_URL`, or `default`. */
  source: string;
}

/** Options of {@link parseEnvironmentsToml}. */
export interface ParseEnvironmentsOptions {
  /** Path of the file, used in error messages. */
  file: string;
  /** Absolute `CODEX_HOME`; relative `cwd` values resolve against it. */
  codexHome: string;
}

/** Options of {@link loadEnvironmentsConfig}. */
export interface LoadEnvironmentsOptions {
  /** Absolute `CODEX_HOME`. */
  codexHome: string;
  /** The value of `CODEX_EXEC_SERVER_URL`, if set. */
  execServerUrl: string | undefined;
  /** Reads a UTF-8 file; resolves `undefined` when it does not exist. */
  readFile: (path: string) => Promise<string | undefined>;
}

// ---------------------------------------------------------------------------------------------
// environments.toml

/** `skills`: serde's `ScopedSkillsConfig`. */
const SkillsTomlSchema = tomlTable(expecting(z.strictObject({ required: z.array(z.string()).optional() }), 'struct ScopedSkillsConfig'));

/** `*_timeout_sec`: float (or integer) seconds that Rust's `Duration::try_from_secs_f64` takes. */
const SecondsTomlSchema = expecting(
  z.custom<number | bigint>((value) => typeof value === 'number' || typeof value === 'bigint'),
  'f64',
).transform((value, ctx) => {
  const seconds = Number(value);
  try {
    secondsToMilliseconds(seconds);
  } catch (error) {
    ctx.issues.push({ code: 'custom', input: value, message: errorMessage(error) });
    return z.NEVER;
  }
  return seconds;
});

/** One `[[environments]]` entry: serde's `EnvironmentToml`, keys in Codex's order (its error lists them so). */
const EnvironmentTomlSchema = tomlTable(
  expecting(
    z.strictObject({
      id: z.string(),
      skills: SkillsTomlSchema.optional(),
      url: z.string().optional(),
      auth_bearer_token: z.string().optional(),
      program: z.string().optional(),
      args: z.array(z.string()).optional(),
      env: stringTable().optional(),
      cwd: expecting(z.string(), 'path string').optional(),
      connect_timeout_sec: SecondsTomlSchema.optional(),
      initialize_timeout_sec: SecondsTomlSchema.optional(),
      // Ours, not Codex's: the permission profile commands and writes in this environment get.
      permissions: z.string().optional(),
    }),
    'struct EnvironmentToml',
  ),
).transform((raw): EnvironmentEntry => {
  const entry: EnvironmentEntry = { id: raw.id };
  if (raw.skills !== undefined) entry.requiredSkills = raw.skills.required ?? [];
  if (raw.url !== undefined) entry.url = raw.url;
  if (raw.auth_bearer_token !== undefined) entry.authBearerToken = raw.auth_bearer_token;
  if (raw.program !== undefined) entry.program = raw.program;
  if (raw.args !== undefined) entry.args = raw.args;
  if (raw.env !== undefined) entry.env = raw.env;
  if (raw.cwd !== undefined) entry.cwd = raw.cwd;
  if (raw.connect_timeout_sec !== undefined) entry.connectTimeoutSec = raw.connect_timeout_sec;
  if (raw.initialize_timeout_sec !== undefined) entry.initializeTimeoutSec = raw.initialize_timeout_sec;
  if (raw.permissions !== undefined) entry.permissions = raw.permissions;
  return entry;
});

/** The whole file, phase one: keys and types (serde in Codex). */
const EnvironmentsTomlSchema = z.strictObject({
  default: z.string().optional(),
  include_local: z.boolean().optional(),
  environments: z.array(EnvironmentTomlSchema).optional(),
});

type EnvironmentsToml = z.output<typeof EnvironmentsTomlSchema>;

/** `environments[<i>] (id \`<id>\`)`: the id of the entry an issue is in, when it has a usable one. */
function entryLabel(path: KeyPath, root: unknown): string | undefined {
  const [key, index] = path;
  if (key !== 'environments' || typeof index !== 'number' || !isTable(root)) return undefined;
  const entries = ownValue(root, 'environments');
  const entry: unknown = Array.isArray(entries) ? entries[index] : undefined;
  const id = isTable(entry) ? ownValue(entry, 'id') : undefined;
  return typeof id === 'string' && id.trim() !== '' ? ` (id \`${id}\`)` : undefined;
}

/**
 * Phase two, once every entry has its shape: entry by entry (id, cross-field rules, url or program),
 * then duplicates, then `default`. The first problem is the one reported, as in Codex.
 */
function applyRules(file: EnvironmentsToml, codexHome: string, ctx: z.RefinementCtx): EnvironmentsFile {
  const fail = (path: (string | number)[], message: string): never => {
    ctx.issues.push({ code: 'custom', input: file, path, message });
    return z.NEVER;
  };
  const includeLocal = file.include_local ?? true;
  const ids = new Set<string>(includeLocal ? [LOCAL_ENVIRONMENT_ID] : []);
  const environments: EnvironmentSpec[] = [];
  for (const [index, entry] of (file.environments ?? []).entries()) {
    let spec: EnvironmentSpec;
    try {
      spec = buildEnvironmentSpec(entry, { baseDir: codexHome });
    } catch (error) {
      if (!(error instanceof LocalError)) throw error;
      // The one Codex message that does not say which field it is about, placed at that field.
      return fail(['environments', index, ...(error.code === LocalErrorCode.InsecureDestination ? ['auth_bearer_token'] : [])], error.message);
    }
    if (ids.has(spec.id)) return fail(['environments', index], `environment id \`${spec.id}\` is duplicated`);
    ids.add(spec.id);
    environments.push(spec);
  }
  if (file.default === undefined) return { includeLocal, defaultId: includeLocal ? LOCAL_ENVIRONMENT_ID : null, environments };
  const id = file.default.trim();
  if (id === '') return fail([], 'default environment id cannot be empty');
  if (id.toLowerCase() === 'none') return { includeLocal, defaultId: null, environments };
  if (!ids.has(id)) return fail([], `default environment \`${id}\` is not configured`);
  return { includeLocal, defaultId: id, environments };
}

/**
 * Parses and validates an environments.toml with every rule of codex-cli 0.169.0, in Codex's two
 * phases: first the shape (keys in document order, the first unknown key or wrong type wins, a
 * missing `id` counts after the entry's keys), then the meaning ({@link applyRules}).
 * Errors read `<file>: environments[<i>] (id \`<id>\`): <Codex's message>`, with the field
 * appended to the entry (`environments[0].args`) when Codex's message does not name it, and
 * `<file>: <message>` for top-level errors.
 * @throws LocalError `INVALID_CONFIG`.
 */
export function parseEnvironmentsToml(text: string, options: ParseEnvironmentsOptions): EnvironmentsFile {
  // An unknown key does not stop zod as it stops serde, so the rules wait for a clean shape.
  const schema = EnvironmentsTomlSchema.transform((file, ctx) => (ctx.issues.length > 0 ? z.NEVER : applyRules(file, options.codexHome, ctx)));
  return parseTomlFile(schema, text, options.file, { wording: SERDE_WORDING, report: 'first', label: entryLabel });
}

// ---------------------------------------------------------------------------------------------
// CODEX_EXEC_SERVER_URL and the choice between the two

/**
 * Codex's environments when there is no environments.toml, from `CODEX_EXEC_SERVER_URL`
 * (trimmed): unset or empty → `local` only; `none` (any case) → no environment at all; anything
 * else → only `remote` at that url. A url that is not ws/wss is kept, as Codex keeps a `remote`
 * that cannot connect; connecting to it fails later with a clear error.
 */
export function environmentsFromExecServerUrl(value: string | undefined): EnvironmentsFile {
  const url = value?.trim() ?? '';
  if (url === '') return { includeLocal: true, defaultId: LOCAL_ENVIRONMENT_ID, environments: [] };
  if (url.toLowerCase() === 'none') return { includeLocal: false, defaultId: null, environments: [] };
  return {
    includeLocal: false,
    defaultId: REMOTE_ENVIRONMENT_ID,
    environments: [{ kind: 'websocket', id: REMOTE_ENVIRONMENT_ID, url }],
  };
}

/**
 * Loads the session's environments as Codex does: `<codexHome>/environments.toml` when it exists
 * (it replaces `CODEX_EXEC_SERVER_URL` entirely), otherwise the variable.
 * @throws LocalError `INVALID_CONFIG` when the file cannot be read or is invalid.
 */
export async function loadEnvironmentsConfig(options: LoadEnvironmentsOptions): Promise<EnvironmentsConfig> {
  const file = join(options.codexHome, ENVIRONMENTS_FILE_NAME);
  let text: string | undefined;
  try {
    text = await options.readFile(file);
  } catch (error) {
    throw new LocalError(LocalErrorCode.InvalidConfig, `${file}: failed to read environment config: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  if (text !== undefined) return { ...parseEnvironmentsToml(text, { file, codexHome: options.codexHome }), source: file };
  const source = (options.execServerUrl?.trim() ?? '') === '' ? 'default' : EXEC_SERVER_URL_VARIABLE;
  return { ...environmentsFromExecServerUrl(options.execServerUrl), source };
}
