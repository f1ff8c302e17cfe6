/**
 * The rules for one remote environment, as codex-cli 0.169.0 applies them to an environments.toml
 * entry (exec-server.md §12): id, url or program, the fields that need one of them, timeouts, the
 * bearer token's destination. Messages are Codex's own. Independent of any file, so a runtime
 * registration (`environment/add`) gets the same rules; environments.ts applies them to the file.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { isAbsolute, join, normalize } from 'node:path';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** Id of the built-in environment that is this machine. Reserved in environments.toml. */
export const LOCAL_ENVIRONMENT_ID = 'local';

/** Longest accepted environment id, in characters. */
export const MAX_ENVIRONMENT_ID_LENGTH = 64;

/** Codex's connect timeout for a websocket environment when `connect_timeout_sec` is unset. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Codex's `initialize` timeout for any environment when `initialize_timeout_sec` is unset. */
export const DEFAULT_INITIALIZE_TIMEOUT_MS = 10_000;

/** Codex's message when a bearer token would be sent where it could be read on the way; it does not name the field (`auth_bearer_token`). */
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
 * @throws LocalError `INSECURE_DESTINATION`: `exec-server WebSocket headers require wss:// or a loopback destination`.
 */
export function checkBearerTokenAllowed(url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url.trim());
  } catch {
    parsed = undefined;
  }
  if (parsed?.protocol === 'wss:' || (parsed?.protocol === 'ws:' && isLoopbackHost(parsed.hostname))) return;
  throw new LocalError(LocalErrorCode.InsecureDestination, BEARER_TOKEN_DESTINATION_MESSAGE);
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
 * @throws LocalError `INVALID_ARGUMENT` with Codex's message; `INSECURE_DESTINATION` for a bearer token that a `ws://` url would send off this host.
 */
export function buildEnvironmentSpec(entry: EnvironmentEntry, options: BuildEnvironmentSpecOptions = {}): EnvironmentSpec {
  const { id } = entry;
  const connectTimeoutMs = entry.connectTimeoutSec === undefined ? undefined : secondsToMilliseconds(entry.connectTimeoutSec);
  const initializeTimeoutMs = entry.initializeTimeoutSec === undefined ? undefined : secondsToMilliseconds(entry.initializeTimeoutSec);
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
