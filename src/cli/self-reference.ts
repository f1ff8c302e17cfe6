/**
 * `[mcp_servers]` entries that launch this server itself. Users who replace `codex mcp-server`
 * with this server register it in Codex's config.toml, which is also where this server's sessions
 * find their MCP servers: every thread would start a nested copy and offer the model its own
 * `codex` tool. The common launch forms are recognised here and left out of sessions; anything
 * else (a wrapper script, a remote host) is caught by the marker of util/nested.ts, with which a
 * nested copy refuses to serve.
 */
import { accessSync, constants, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import type { McpServerConfig } from '../config/mcp-servers.js';
import type { Logger } from '../util/logger.js';
import { parseJsonAs } from '../util/json.js';
import { NESTED_ALLOW, NESTED_ENV_VAR } from '../util/nested.js';

/** The npm package of this server. */
const PACKAGE_NAME = 'codex-multienv-mcp';
/** Its command (package.json `bin`). */
const BIN_NAME = 'codex-multienv';
/** First arguments with which our CLI does something other than serving MCP, though they start with `-` (see main.ts). */
const NON_SERVING_FLAGS = new Set(['--version', '-V', '--help', '-h']);
/** npx / npm exec options that take a value as the next argument. */
const NPX_VALUE_OPTIONS = new Set(['--package', '-p', '--call', '-c', '--workspace', '-w']);
/** Bound on the remembered decisions (a call's `config` argument can add entries). */
const MAX_REMEMBERED = 256;

const PackageJsonSchema = z.looseObject({ name: z.string() });

/** What the check needs to know about this process and its host. */
export interface SelfReferenceHost {
  /** This server's CLI script, symlinks resolved. */
  scriptPath: string;
  /** The node binary running it, symlinks resolved. */
  nodePath: string;
  /** `PATH`, to resolve a command without a slash as the executor would on this host. */
  pathEnv: string | undefined;
  /** Where an entry's relative paths are resolved when its `cwd` is not absolute: the default thread cwd. */
  cwd: string;
}

/** An entry left out of sessions, and how it launches this server. */
export interface SelfReference {
  server: string;
  /** For people: `node /…/dist/cli/main.js runs this server's script`. */
  how: string;
}

/** Drops entries from a call's `[mcp_servers]`. */
export type McpServersFilter = (servers: McpServerConfig[]) => McpServerConfig[];

/** This process as a {@link SelfReferenceHost}, or undefined when its script is unknown. */
export function currentSelfReferenceHost(env: NodeJS.ProcessEnv): SelfReferenceHost | undefined {
  const script = process.argv[1];
  const scriptPath = script === undefined ? undefined : realPath(script);
  if (scriptPath === undefined) return undefined;
  return { scriptPath, nodePath: realPath(process.execPath) ?? process.execPath, pathEnv: env.PATH, cwd: process.cwd() };
}

/**
 * How `server` launches this server, or undefined when it does not (or is disabled, is not a
 * stdio server, or sets `CODEX_MULTIENV_NESTED = "allow"`). Recognised: a command that resolves
 * (through `PATH`, symlinks followed) to this server's script or to the CLI of another copy of
 * the package, or is named `codex-multienv`; `node` (or this node binary) with an argument that
 * resolves to one; `npx` / `npm exec` of the package or its command. In each case only when the
 * arguments that reach our CLI serve MCP (no subcommand such as `exec-server`).
 */
export function findSelfReference(server: McpServerConfig, host: SelfReferenceHost): string | undefined {
  const transport = server.transport;
  if (!server.enabled || transport.type !== 'stdio') return undefined;
  if (transport.env[NESTED_ENV_VAR] === NESTED_ALLOW) return undefined;
  const base = transport.cwd === undefined ? host.cwd : resolve(host.cwd, transport.cwd);
  const { command, args } = transport;
  const shown = [command, ...args].join(' ');
  const name = basename(command);
  if (name === 'npx') return npxTarget(args) ? `${shown} runs this server's package` : undefined;
  if (name === 'npm') {
    const [verb, ...rest] = args;
    return (verb === 'exec' || verb === 'x') && npxTarget(rest) ? `${shown} runs this server's package` : undefined;
  }
  const resolved = resolveCommand(command, base, host.pathEnv);
  if ((resolved !== undefined && isOurScript(resolved, host)) || name === BIN_NAME) {
    return servesMcp(args) ? `${shown} runs this server's command` : undefined;
  }
  if (/^node(js)?$/.test(name) || resolved === host.nodePath) {
    const index = args.findIndex((arg) => !arg.startsWith('-') && isOurScript(realPath(resolve(base, arg)), host));
    return index !== -1 && servesMcp(args.slice(index + 1)) ? `${shown} runs this server's script` : undefined;
  }
  return undefined;
}

/** The enabled entries that launch this server, with how. */
export function findSelfReferences(servers: readonly McpServerConfig[], host: SelfReferenceHost): SelfReference[] {
  return servers.flatMap((server) => {
    const how = findSelfReference(server, host);
    return how === undefined ? [] : [{ server: server.name, how }];
  });
}

/** The warning for an entry left out of sessions: what, why, and the two ways out. */
export function selfReferenceWarning(reference: SelfReference): string {
  return (
    `mcp_servers.${reference.server} is left out of sessions: it launches this server itself (${reference.how}), so every session would start a nested copy. ` +
    `Fix: give this server its own CODEX_HOME (one whose config.toml does not list it), or set \`enabled = false\` on mcp_servers.${reference.server}; ` +
    `to start it inside sessions on purpose, set \`env = { ${NESTED_ENV_VAR} = "${NESTED_ALLOW}" }\` in it.`
  );
}

/**
 * A filter for each call's `[mcp_servers]`: drops the entries that launch this server and warns
 * once per entry (the same entry comes back with every call), not on every call. Without a host
 * (the script is unknown) it keeps every entry; the marker still stops a nested copy.
 */
export function selfReferenceFilter(host: SelfReferenceHost | undefined, logger: Logger): McpServersFilter {
  const decided = new Map<string, string | undefined>();
  return (servers) => {
    if (host === undefined) return servers;
    return servers.filter((server) => {
      const key = JSON.stringify([server.name, server.enabled, server.transport]);
      if (!decided.has(key)) {
        if (decided.size >= MAX_REMEMBERED) decided.clear();
        const how = findSelfReference(server, host);
        decided.set(key, how);
        if (how !== undefined) logger.warn(selfReferenceWarning({ server: server.name, how }));
      }
      return decided.get(key) === undefined;
    });
  };
}

/** Whether arguments given to our CLI make it serve MCP, as main.ts dispatches them. */
function servesMcp(argv: readonly string[]): boolean {
  const first = argv[0];
  return first === undefined || (first.startsWith('-') && !NON_SERVING_FLAGS.has(first));
}

/** Whether `npx` arguments (or `npm exec`'s after `exec`) run this server's package serving MCP. */
function npxTarget(args: readonly string[]): boolean {
  const packages: string[] = [];
  let index = 0;
  for (; index < args.length; index++) {
    const arg = args[index] ?? '';
    if (arg === '--') {
      index++;
      break;
    }
    if (!arg.startsWith('-')) break;
    const [option, inline] = arg.split('=', 2);
    if (option !== undefined && NPX_VALUE_OPTIONS.has(option)) {
      const value = inline ?? args[++index];
      if ((option === '--package' || option === '-p') && value !== undefined) packages.push(value);
    }
  }
  const target = args[index];
  if (target === undefined) return false;
  const targetName = packageName(target);
  const ours = targetName === PACKAGE_NAME || targetName === BIN_NAME;
  // `--package other-pkg codex-multienv`: the command comes from another package.
  const fromOtherPackage = packages.length > 0 && !packages.some((spec) => packageName(spec) === PACKAGE_NAME);
  return ours && !fromOtherPackage && servesMcp(args.slice(index + 1));
}

/** `name@version` → `name` (an unscoped spec; ours is unscoped). */
function packageName(spec: string): string {
  const at = spec.indexOf('@', 1);
  return at === -1 ? spec : spec.slice(0, at);
}

/** Our script, or the CLI of another copy of this package (a global install, the npx cache). */
function isOurScript(path: string | undefined, host: SelfReferenceHost): boolean {
  if (path === undefined) return false;
  if (path === host.scriptPath) return true;
  if (basename(path) !== 'main.js' || basename(dirname(path)) !== 'cli' || basename(dirname(dirname(path))) !== 'dist') return false;
  try {
    return parseJsonAs(PackageJsonSchema, readFileSync(join(dirname(dirname(dirname(path))), 'package.json'), 'utf8')).value?.name === PACKAGE_NAME;
  } catch {
    return false;
  }
}

/** A command as the executor finds it: a path when it has a slash, else the first executable file on `PATH`; symlinks resolved. */
export function resolveCommand(command: string, base: string, pathEnv: string | undefined): string | undefined {
  if (command.includes('/')) return realPath(isAbsolute(command) ? command : resolve(base, command));
  for (const dir of (pathEnv ?? '').split(delimiter)) {
    if (dir.length === 0) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return realPath(candidate);
    } catch {
      // Not here; the next folder.
    }
  }
  return undefined;
}

function realPath(path: string): string | undefined {
  try {
    // The system's realpath(3): one call, where Node's own walks the path with an lstat per part.
    return realpathSync.native(path);
  } catch {
    return undefined;
  }
}
