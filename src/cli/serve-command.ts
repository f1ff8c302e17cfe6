import { isIP } from 'node:net';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { listenMcpHttp } from '../mcp/http-server.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { capabilityTokenAuth, isLoopbackIp, parseAllowedOrigin, tokenDigest } from './listen-auth.js';
import { MCP_SERVER_ARGS } from './mcp-args.js';
import { startMcpServer } from './mcp-command.js';
import { stderrLogger } from './runtime.js';
import { currentSelfReferenceHost } from './self-reference.js';

/** `serve`'s own options; the rest are the MCP server's (see MCP_SERVER_ARGS). */
const SERVE_ARGS = {
  listen: { type: 'string' },
  'auth-token-file': { type: 'string' },
  'auth-token-sha256': { type: 'string' },
  'allow-origin': { type: 'string', multiple: true },
  'allow-host': { type: 'string', multiple: true },
  'max-sessions': { type: 'string' },
  'session-idle-sec': { type: 'string' },
  'keep-alive-sec': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

/** Parses `--listen http://HOST:PORT` (an IP address, `[v6]`, or `localhost`; port 0 picks a free one). */
export function parseHttpListen(value: string): { host: string; port: number } {
  const match = /^http:\/\/(\[[^\]]+\]|[^:/[\]]+):(\d+)\/?$/.exec(value.trim());
  const named = match?.[1]?.replace(/^\[|\]$/g, '');
  // `localhost` may resolve to either loopback address; the one bound is the one printed.
  const host = named === 'localhost' ? '127.0.0.1' : named;
  const port = Number(match?.[2]);
  if (host === undefined || isIP(host) === 0 || !Number.isInteger(port) || port > 65535) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `unsupported --listen URL \`${value}\`; expected \`http://IP:PORT\` (e.g. http://127.0.0.1:0 for a free port)`);
  }
  return { host, port };
}

/** Parses an `--allow-host` value: a bare host name or IP address (no scheme, port or path), lower case. */
export function parseAllowedHost(value: string): string {
  const name = value.trim().toLowerCase();
  if (!/^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$/.test(name) && isIP(name) !== 4) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `--allow-host \`${value}\` is not a host name; expected a bare name such as \`mcp.example.com\` (no scheme or port)`);
  }
  return name;
}

/** A whole number of at least 1 given to `flag`, or undefined when not given. */
function positiveInteger(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new LocalError(LocalErrorCode.InvalidArgument, `${flag} must be a whole number of at least 1, got \`${value}\``);
  return number;
}

/**
 * Parses the command line with `serve`'s options and the MCP server's at once (so an unknown one
 * is reported as such), and gives back the MCP server's as they were written, for it to parse.
 */
function splitArgs(argv: string[]) {
  const { values, tokens } = parseArgs({ args: argv, options: { ...MCP_SERVER_ARGS, ...SERVE_ARGS }, strict: true, tokens: true });
  const rest: string[] = [];
  for (const token of tokens) {
    if (token.kind !== 'option' || token.name in SERVE_ARGS) continue;
    rest.push(...argv.slice(token.index, token.index + (token.value !== undefined && !token.inlineValue ? 2 : 1)));
  }
  return { serve: values, rest };
}

/**
 * `codex-multienv serve --listen http://HOST:PORT`: the MCP server over Streamable HTTP at
 * `/mcp`, in both eras, for any number of clients sharing one set of threads and environments
 * (see mcp/http-server.ts). Prints the endpoint's URL as the first line on stdout; stops on
 * SIGTERM/SIGINT, interrupting and recording the turns still running, as the stdio server does.
 */
export async function runServe(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { serve, rest } = splitArgs(argv);
  if (serve.listen === undefined) throw new LocalError(LocalErrorCode.InvalidArgument, 'serve needs --listen http://IP:PORT (port 0 picks a free port)');
  const listen = parseHttpListen(serve.listen);
  const allowedOrigins = (serve['allow-origin'] ?? []).map(parseAllowedOrigin);
  const allowedHosts = (serve['allow-host'] ?? []).map(parseAllowedHost);
  const digest = await tokenDigest({
    ...(serve['auth-token-file'] === undefined ? {} : { file: { flag: '--auth-token-file', path: serve['auth-token-file'] } }),
    ...(serve['auth-token-sha256'] === undefined ? {} : { sha256: { flag: '--auth-token-sha256', hex: serve['auth-token-sha256'] } }),
  });
  const maxSessions = positiveInteger(serve['max-sessions'], '--max-sessions');
  const idleSec = positiveInteger(serve['session-idle-sec'], '--session-idle-sec');
  const keepAliveSec = positiveInteger(serve['keep-alive-sec'], '--keep-alive-sec');
  const loopback = isLoopbackIp(listen.host);
  // Before anything is started or bound: the MCP tools run commands on this machine.
  if (digest === undefined && !loopback) {
    throw new LocalError(
      LocalErrorCode.InvalidArgument,
      `refusing to serve MCP on non-loopback address ${listen.host} without authentication; add --auth-token-file PATH or --auth-token-sha256 HEX`,
    );
  }
  const started = await startMcpServer({ argv: rest, env, cwd: process.cwd(), logger: (level) => stderrLogger(level, env), selfReference: currentSelfReferenceHost(env) });
  const { limits, logger } = started;
  let listener;
  try {
    listener = await listenMcpHttp({
      host: listen.host,
      port: listen.port,
      loopback,
      createFace: started.createFace,
      modern: started.server.modern,
      ...(digest === undefined ? {} : { authorize: capabilityTokenAuth(digest, 'MCP') }),
      allowedOrigins,
      allowedHosts,
      maxMessageBytes: limits.maxMessageBytes,
      ...(maxSessions === undefined ? {} : { maxSessions }),
      ...(idleSec === undefined ? {} : { sessionIdleMs: idleSec * 1000 }),
      ...(keepAliveSec === undefined ? {} : { keepAliveMs: keepAliveSec * 1000 }),
      logger: logger.child('http'),
    });
  } catch (error) {
    await started.close();
    throw error;
  }
  process.stdout.write(`${listener.url}\n`);
  logger.info('MCP listening over Streamable HTTP', { url: listener.url, auth: digest === undefined ? 'none' : 'bearer token', allowedOrigins });
  started.ready();
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  // Turns first, while their calls can still be answered ("interrupted"); then the clients.
  await started.close();
  await listener.close();
  return 0;
}
