/**
 * `$CODEX_HOME/environments.toml` and `CODEX_EXEC_SERVER_URL`, as codex-cli 0.169.0 reads them
 * (exec-server.md §12–13). Messages are Codex's own, checked against the 0.169.0 binary, so a
 * user can search for them; the file wrapper adds where: file, entry index, id and field.
 *
 * Validation runs in Codex's two phases. First the shape (serde in Codex): keys in document
 * order, the first unknown key or wrong type wins, a missing `id` is reported after the entry's
 * keys. Then the meaning, entry by entry (id, cross-field rules, url or program), then
 * duplicates, then `default`. Hand-written rather than zod because the order and the wording of
 * the first error are part of the contract.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { isAbsolute, join, normalize } from 'node:path';
import { parseToml } from './toml.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** Name of the environments file inside `CODEX_HOME`. */
export const ENVIRONMENTS_FILE_NAME = 'environments.toml';

/** Id of the built-in environment that is this machine. Reserved in environments.toml. */
export const LOCAL_ENVIRONMENT_ID = 'local';

/** Id Codex gives the environment named by `CODEX_EXEC_SERVER_URL`. */
export const REMOTE_ENVIRONMENT_ID = 'remote';

/** The variable that names a single remote exec-server when there is no environments.toml. */
export const EXEC_SERVER_URL_VARIABLE = 'CODEX_EXEC_SERVER_URL';

/** Longest accepted environment id, in characters. */
export const MAX_ENVIRONMENT_ID_LENGTH = 64;

/** Codex's connect timeout for a websocket environment when `connect_timeout_sec` is unset. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Codex's `initialize` timeout for any environment when `initialize_timeout_sec` is unset. */
export const DEFAULT_INITIALIZE_TIMEOUT_MS = 10_000;

const TOP_LEVEL_KEYS = ['default', 'include_local', 'environments'] as const;
const ENTRY_KEYS = [
  'id',
  'skills',
  'url',
  'auth_bearer_token',
  'program',
  'args',
  'env',
  'cwd',
  'connect_timeout_sec',
  'initialize_timeout_sec',
  // Ours, not Codex's: the permission profile commands and writes in this environment get.
  'permissions',
] as const;
const SKILLS_KEYS = ['required'] as const;

const BEARER_TOKEN_DESTINATION_MESSAGE = 'exec-server WebSocket headers require wss:// or a loopback destination';

/** A remote environment reached over a websocket. */
export interface WebsocketEnvironmentSpec {
  kind: 'websocket';
  id: string;
  /** Trimmed; starts with `ws://` or `wss://`. */
  url: string;
  /** Sent as `authorization: Bearer <token>`; only with `wss://` or a loopback `ws://` url. */
  authBearerToken?: string;
  /** @default DEFAULT_CONNECT_TIMEOUT_MS when absent */
  connectTimeoutMs?: number;
  /** @default DEFAULT_INITIALIZE_TIMEOUT_MS when absent */
  initializeTimeoutMs?: number;
  /** Skills that must be available in this environment (`skills.required`). */
  requiredSkills?: string[];
  /** Name of the permission profile for this environment (`permissions`; our extension). */
  permissions?: string;
}

/** A remote environment reached over the stdio of a spawned command (`ssh …`, `docker exec -i …`). */
export interface StdioEnvironmentSpec {
  kind: 'stdio';
  id: string;
  /** Trimmed, non-empty. */
  program: string;
  args: string[];
  /** Added on top of our own environment when spawning. */
  env: Record<string, string>;
  /** Absolute; a relative `cwd` in the file is resolved against `CODEX_HOME`. */
  cwd?: string;
  /** @default DEFAULT_INITIALIZE_TIMEOUT_MS when absent */
  initializeTimeoutMs?: number;
  /** Skills that must be available in this environment (`skills.required`). */
  requiredSkills?: string[];
  /** Name of the permission profile for this environment (`permissions`; our extension). */
  permissions?: string;
}

/** One configured remote environment. */
export type EnvironmentSpec = WebsocketEnvironmentSpec | StdioEnvironmentSpec;

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

/**
 * One environment as written (environments.toml entry or a runtime registration), before the
 * cross-field rules are applied by {@link buildEnvironmentSpec}.
 */
export interface EnvironmentEntry {
  id: string;
  url?: string;
  authBearerToken?: string;
  program?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Float seconds ≥ 0. */
  connectTimeoutSec?: number;
  /** Float seconds ≥ 0. */
  initializeTimeoutSec?: number;
  requiredSkills?: string[];
  /** A permission profile name (`[permissions.NAME]` or a built-in such as `:read-only`). */
  permissions?: string;
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

/** Options of {@link buildEnvironmentSpec}. */
export interface BuildEnvironmentSpecOptions {
  /** Directory a relative `cwd` resolves against; without it a relative `cwd` is an error. */
  baseDir?: string;
}

function invalid(message: string): LocalError {
  return new LocalError(LocalErrorCode.InvalidArgument, message);
}

/**
 * Checks an environment id with Codex's rules, in Codex's order: not empty, no surrounding
 * whitespace, not reserved (`local` exactly, `none` in any case), at most 64 characters, only
 * ASCII letters, digits, `-` and `_`.
 * @throws LocalError `INVALID_ARGUMENT` with Codex's message.
 */
export function validateEnvironmentId(id: string): void {
  const trimmed = id.trim();
  if (trimmed === '') throw invalid('environment id cannot be empty');
  if (trimmed !== id) throw invalid(`environment id \`${id}\` must not contain surrounding whitespace`);
  // codex-cli 0.169.0 reserves `local` case-sensitively (`LOCAL` is accepted) and `none` in any case.
  if (id === LOCAL_ENVIRONMENT_ID || id.toLowerCase() === 'none') throw invalid(`environment id \`${id}\` is reserved`);
  if (id.length > MAX_ENVIRONMENT_ID_LENGTH) {
    throw invalid(`environment id \`${id}\` cannot be longer than ${MAX_ENVIRONMENT_ID_LENGTH} characters`);
  }
  if (!/^[A-Za-z0-9_-]+$/.test(id)) {
    throw invalid(`environment id \`${id}\` must contain only ASCII letters, numbers, '-' or '_'`);
  }
}

/**
 * Trims a websocket url and checks it is non-empty, `ws://` or `wss://`, and parseable.
 * @returns the trimmed url.
 * @throws LocalError `INVALID_ARGUMENT` with Codex's message.
 */
export function validateWebsocketUrl(url: string): string {
  const trimmed = url.trim();
  if (trimmed === '') throw invalid('environment url cannot be empty');
  if (!trimmed.startsWith('ws://') && !trimmed.startsWith('wss://')) {
    throw invalid(`environment url \`${trimmed}\` must use ws:// or wss://`);
  }
  try {
    new URL(trimmed);
  } catch (error) {
    throw invalid(`environment url \`${trimmed}\` is invalid: ${errorMessage(error)}`);
  }
  return trimmed;
}

/**
 * Whether a host name is a loopback destination: `localhost` (any case), 127.0.0.0/8 or `::1`.
 * Accepts what `URL.hostname` gives (IPv6 in brackets) or a bare address; `foo.localhost`,
 * `localhost.` and `::ffff:127.0.0.1` are not loopback, as in Codex.
 */
export function isLoopbackHost(host: string): boolean {
  let bare = host.trim();
  if (bare.startsWith('[') && bare.endsWith(']')) bare = bare.slice(1, -1);
  if (bare === '' || /[/\\@?#\s]/.test(bare)) return false;
  if (!isIPv6(bare) && bare.includes(':')) return false;
  let hostname: string;
  try {
    // Canonicalise the way the websocket client will: case, short IPv4 forms, IPv6 zero runs.
    hostname = new URL(`ws://${isIPv6(bare) ? `[${bare}]` : bare}/`).hostname;
  } catch {
    return false;
  }
  if (hostname === 'localhost' || hostname === '[::1]') return true;
  return isIPv4(hostname) && hostname.startsWith('127.');
}

/**
 * Checks that a bearer token may be sent to this url: `wss://`, or `ws://` to a loopback host.
 * @throws LocalError `INVALID_ARGUMENT`: `exec-server WebSocket headers require wss:// or a loopback destination`.
 */
export function checkBearerTokenAllowed(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    throw invalid(BEARER_TOKEN_DESTINATION_MESSAGE);
  }
  if (parsed.protocol === 'wss:') return;
  if (parsed.protocol === 'ws:' && isLoopbackHost(parsed.hostname)) return;
  throw invalid(BEARER_TOKEN_DESTINATION_MESSAGE);
}

/**
 * Converts float seconds to whole milliseconds with the checks of Rust's
 * `Duration::try_from_secs_f64` (which Codex uses for `*_timeout_sec`).
 * @throws LocalError `INVALID_ARGUMENT` on a negative, NaN, infinite or too large value.
 */
export function secondsToMilliseconds(seconds: number): number {
  if (Number.isNaN(seconds)) throw invalid('cannot convert float seconds to Duration: value is either too big or NaN');
  if (seconds < 0) throw invalid('cannot convert float seconds to Duration: value is negative');
  if (!Number.isFinite(seconds) || seconds >= 2 ** 64) {
    throw invalid('cannot convert float seconds to Duration: value is either too big or NaN');
  }
  // `+ 0` turns -0 (accepted, as by Rust) into 0.
  return Math.round(seconds * 1000) + 0;
}

/** A profile name must be non-empty; whether it exists is checked where profiles are known. */
function validatePermissionsName(id: string, name: string): string {
  const trimmed = name.trim();
  if (trimmed === '') throw invalid(`environment \`${id}\` permissions cannot be empty`);
  return trimmed;
}

/**
 * Applies Codex's rules for one environment, in Codex's order: id, `args`/`env`/`cwd` need
 * `program`, `auth_bearer_token` and `connect_timeout_sec` need `url`, then exactly one of `url`
 * (trimmed, ws/wss, parseable, token destination) or `program` (trimmed, non-empty, `cwd`
 * resolved against `baseDir`). Independent of any file, so runtime registration reuses it.
 * @throws LocalError `INVALID_ARGUMENT` with Codex's message.
 */
export function buildEnvironmentSpec(entry: EnvironmentEntry, options: BuildEnvironmentSpecOptions = {}): EnvironmentSpec {
  const { id } = entry;
  const connectTimeoutMs = entry.connectTimeoutSec === undefined ? undefined : secondsToMilliseconds(entry.connectTimeoutSec);
  const initializeTimeoutMs =
    entry.initializeTimeoutSec === undefined ? undefined : secondsToMilliseconds(entry.initializeTimeoutSec);
  validateEnvironmentId(id);
  if (entry.program === undefined && (entry.args !== undefined || entry.env !== undefined || entry.cwd !== undefined)) {
    throw invalid(`environment \`${id}\` args, env, and cwd require program`);
  }
  if (entry.url === undefined && entry.authBearerToken !== undefined) {
    throw invalid(`environment \`${id}\` auth_bearer_token requires url`);
  }
  if (entry.url === undefined && connectTimeoutMs !== undefined) {
    throw invalid(`environment \`${id}\` connect_timeout_sec requires url`);
  }
  const common = {
    ...(initializeTimeoutMs === undefined ? {} : { initializeTimeoutMs }),
    ...(entry.requiredSkills === undefined ? {} : { requiredSkills: [...entry.requiredSkills] }),
    ...(entry.permissions === undefined ? {} : { permissions: validatePermissionsName(id, entry.permissions) }),
  };
  if (entry.url !== undefined && entry.program === undefined) {
    const url = validateWebsocketUrl(entry.url);
    if (entry.authBearerToken !== undefined) checkBearerTokenAllowed(url);
    return {
      kind: 'websocket',
      id,
      url,
      ...(entry.authBearerToken === undefined ? {} : { authBearerToken: entry.authBearerToken }),
      ...(connectTimeoutMs === undefined ? {} : { connectTimeoutMs }),
      ...common,
    };
  }
  if (entry.program !== undefined && entry.url === undefined) {
    const program = entry.program.trim();
    if (program === '') throw invalid(`environment \`${id}\` program cannot be empty`);
    const cwd = entry.cwd === undefined ? undefined : resolveCwd(id, entry.cwd, options.baseDir);
    return {
      kind: 'stdio',
      id,
      program,
      args: [...(entry.args ?? [])],
      env: { ...(entry.env ?? {}) },
      ...(cwd === undefined ? {} : { cwd }),
      ...common,
    };
  }
  throw invalid(`environment \`${id}\` must set exactly one of url or program`);
}

function resolveCwd(id: string, cwd: string, baseDir: string | undefined): string {
  if (isAbsolute(cwd)) return normalize(cwd);
  if (baseDir === undefined) throw invalid(`environment \`${id}\` cwd must be absolute`);
  return join(baseDir, cwd);
}

// ---------------------------------------------------------------------------------------------
// environments.toml

type TomlTable = Record<string, unknown>;

function isTable(value: unknown): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** Names a TOML value the way serde does in `invalid type: …` messages. */
function describeValue(value: unknown): string {
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
}

function unknownFieldMessage(key: string, expected: readonly string[]): string {
  const names = expected.map((name) => `\`${name}\``);
  const list = names.length === 1 ? (names[0] ?? '') : `one of ${names.join(', ')}`;
  return `unknown field \`${key}\`, expected ${list}`;
}

function keySegment(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? `.${key}` : `.${JSON.stringify(key)}`;
}

/** Where in the file an error is: `environments[1].args (id \`a\`)`, or a top-level key. */
interface Place {
  index?: number;
  id?: string;
  field?: string;
}

class FileErrors {
  constructor(private readonly file: string) {}

  at(place: Place, message: string, cause?: unknown): LocalError {
    let where = '';
    if (place.index !== undefined) {
      where = `environments[${place.index}]${place.field ?? ''}`;
      if (place.id !== undefined && place.id.trim() !== '') where += ` (id \`${place.id}\`)`;
    } else if (place.field !== undefined) {
      where = place.field;
    }
    const text = where === '' ? `${this.file}: ${message}` : `${this.file}: ${where}: ${message}`;
    return new LocalError(LocalErrorCode.InvalidConfig, text, cause === undefined ? undefined : { cause });
  }
}

/** Reads one value of an entry with serde's type rules; `place.field` names it in errors. */
class ShapeReader {
  constructor(
    private readonly errors: FileErrors,
    private readonly place: Place,
  ) {}

  private fail(field: string, message: string): LocalError {
    return this.errors.at({ ...this.place, field: `${this.place.field ?? ''}${field}` }, message);
  }

  string(value: unknown, field: string, expected = 'a string'): string {
    if (typeof value !== 'string') throw this.fail(field, `invalid type: ${describeValue(value)}, expected ${expected}`);
    return value;
  }

  boolean(value: unknown, field: string): boolean {
    if (typeof value !== 'boolean') throw this.fail(field, `invalid type: ${describeValue(value)}, expected a boolean`);
    return value;
  }

  strings(value: unknown, field: string): string[] {
    if (!Array.isArray(value)) throw this.fail(field, `invalid type: ${describeValue(value)}, expected a sequence`);
    return value.map((item: unknown, index) => this.string(item, `${field}[${index}]`));
  }

  stringMap(value: unknown, field: string): Record<string, string> {
    if (!isTable(value)) throw this.fail(field, `invalid type: ${describeValue(value)}, expected a map`);
    const result: Record<string, string> = {};
    for (const [key, item] of Object.entries(value)) result[key] = this.string(item, `${field}${keySegment(key)}`);
    return result;
  }

  seconds(value: unknown, field: string): number {
    if (typeof value !== 'number' && typeof value !== 'bigint') {
      throw this.fail(field, `invalid type: ${describeValue(value)}, expected f64`);
    }
    const seconds = Number(value);
    try {
      secondsToMilliseconds(seconds);
    } catch (error) {
      throw this.fail(field, errorMessage(error));
    }
    return seconds;
  }

  skills(value: unknown, field: string): string[] {
    if (!isTable(value)) throw this.fail(field, `invalid type: ${describeValue(value)}, expected struct ScopedSkillsConfig`);
    let required: string[] = [];
    for (const [key, item] of Object.entries(value)) {
      if (key !== 'required') throw this.fail(field, unknownFieldMessage(key, SKILLS_KEYS));
      required = this.strings(item, `${field}.required`);
    }
    return required;
  }
}

/** Phase one for an entry: keys and types, in document order, as serde does. */
function readEntry(raw: unknown, index: number, errors: FileErrors): EnvironmentEntry {
  if (!isTable(raw)) {
    throw errors.at({ index }, `invalid type: ${describeValue(raw)}, expected struct EnvironmentToml`);
  }
  const place: Place = { index, ...(typeof raw.id === 'string' ? { id: raw.id } : {}) };
  const read = new ShapeReader(errors, place);
  const entry: Partial<EnvironmentEntry> = {};
  for (const [key, value] of Object.entries(raw)) {
    switch (key) {
      case 'id':
        entry.id = read.string(value, '.id');
        break;
      case 'skills':
        entry.requiredSkills = read.skills(value, '.skills');
        break;
      case 'url':
        entry.url = read.string(value, '.url');
        break;
      case 'auth_bearer_token':
        entry.authBearerToken = read.string(value, '.auth_bearer_token');
        break;
      case 'program':
        entry.program = read.string(value, '.program');
        break;
      case 'args':
        entry.args = read.strings(value, '.args');
        break;
      case 'env':
        entry.env = read.stringMap(value, '.env');
        break;
      case 'cwd':
        entry.cwd = read.string(value, '.cwd', 'path string');
        break;
      case 'connect_timeout_sec':
        entry.connectTimeoutSec = read.seconds(value, '.connect_timeout_sec');
        break;
      case 'initialize_timeout_sec':
        entry.initializeTimeoutSec = read.seconds(value, '.initialize_timeout_sec');
        break;
      case 'permissions':
        entry.permissions = read.string(value, '.permissions');
        break;
      default:
        throw errors.at(place, unknownFieldMessage(key, ENTRY_KEYS));
    }
  }
  const { id } = entry;
  if (id === undefined) throw errors.at(place, 'missing field `id`');
  return { ...entry, id };
}

/**
 * Parses and validates an environments.toml with every rule of codex-cli 0.169.0.
 * Errors read `<file>: environments[<i>] (id \`<id>\`): <Codex's message>`, with the field
 * appended to the entry (`environments[0].args`) when Codex's message does not name it, and
 * `<file>: <message>` for top-level errors.
 * @throws LocalError `INVALID_CONFIG`.
 */
export function parseEnvironmentsToml(text: string, options: ParseEnvironmentsOptions): EnvironmentsFile {
  const errors = new FileErrors(options.file);
  const root = parseToml(text, options.file);
  const top = new ShapeReader(errors, {});

  let defaultValue: string | undefined;
  let includeLocal = true;
  const entries: EnvironmentEntry[] = [];
  for (const [key, value] of Object.entries(root)) {
    switch (key) {
      case 'default':
        defaultValue = top.string(value, 'default');
        break;
      case 'include_local':
        includeLocal = top.boolean(value, 'include_local');
        break;
      case 'environments':
        if (!Array.isArray(value)) {
          throw errors.at({ field: 'environments' }, `invalid type: ${describeValue(value)}, expected a sequence`);
        }
        value.forEach((raw: unknown, index) => entries.push(readEntry(raw, index, errors)));
        break;
      default:
        throw errors.at({}, unknownFieldMessage(key, TOP_LEVEL_KEYS));
    }
  }

  const ids = new Set<string>(includeLocal ? [LOCAL_ENVIRONMENT_ID] : []);
  const environments = entries.map((entry, index) => {
    let spec: EnvironmentSpec;
    try {
      spec = buildEnvironmentSpec(entry, { baseDir: options.codexHome });
    } catch (error) {
      if (!(error instanceof LocalError)) throw error;
      // The one Codex message that does not say which field it is about.
      const field = error.message === BEARER_TOKEN_DESTINATION_MESSAGE ? '.auth_bearer_token' : undefined;
      throw errors.at({ index, id: entry.id, ...(field === undefined ? {} : { field }) }, error.message, error);
    }
    if (ids.has(spec.id)) throw errors.at({ index, id: spec.id }, `environment id \`${spec.id}\` is duplicated`);
    ids.add(spec.id);
    return spec;
  });

  return { includeLocal, defaultId: resolveDefault(defaultValue, includeLocal, ids, errors), environments };
}

function resolveDefault(
  value: string | undefined,
  includeLocal: boolean,
  ids: ReadonlySet<string>,
  errors: FileErrors,
): string | null {
  if (value === undefined) return includeLocal ? LOCAL_ENVIRONMENT_ID : null;
  const id = value.trim();
  if (id === '') throw errors.at({}, 'default environment id cannot be empty');
  if (id.toLowerCase() === 'none') return null;
  if (!ids.has(id)) throw errors.at({}, `default environment \`${id}\` is not configured`);
  return id;
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
