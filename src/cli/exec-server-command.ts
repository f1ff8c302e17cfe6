import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { NATIVE_SPAWN_ENV } from '../exec/native-spawn-env.js';
import { ExecServer } from '../exec/server.js';
import { StreamTransport } from '../transport/stream.js';
import { listenWebSocket } from '../transport/websocket.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { capabilityTokenAuth, isLoopbackIp, parseAllowedOrigin, tokenDigest } from './listen-auth.js';
import { networkSettings } from './network.js';
import { hostFacts, stderrLogger } from './runtime.js';

const USAGE = `usage: codex-multienv exec-server [--listen ws://IP:PORT | stdio]
                                  [--ws-auth capability-token (--ws-token-file PATH | --ws-token-sha256 HEX)]
                                  [--allow-origin ORIGIN]...
                                  [--session-retention-sec N] [--max-processes N] [--log-level LEVEL]`;

/** Parses `--listen`: `ws://IP:PORT` or `stdio` / `stdio://`. */
export function parseListen(value: string): { kind: 'stdio' } | { kind: 'ws'; host: string; port: number } {
  if (value === 'stdio' || value === 'stdio://') return { kind: 'stdio' };
  const match = /^ws:\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(value);
  const host = match?.[1]?.replace(/^\[|\]$/g, '');
  const port = Number(match?.[2]);
  if (host === undefined || isIP(host) === 0 || !Number.isInteger(port) || port > 65535) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `unsupported --listen URL \`${value}\`; expected \`ws://IP:PORT\` or \`stdio\``);
  }
  return { kind: 'ws', host, port };
}

async function execServerTokenDigest(values: { 'ws-auth'?: string; 'ws-token-file'?: string; 'ws-token-sha256'?: string }): Promise<Buffer | undefined> {
  const mode = values['ws-auth'];
  if (mode === undefined) {
    if (values['ws-token-file'] !== undefined || values['ws-token-sha256'] !== undefined) {
      throw new LocalError(LocalErrorCode.InvalidArgument, '--ws-token-file and --ws-token-sha256 require --ws-auth capability-token');
    }
    return undefined;
  }
  if (mode !== 'capability-token') throw new LocalError(LocalErrorCode.InvalidArgument, `unsupported --ws-auth mode \`${mode}\`; supported: capability-token`);
  if ((values['ws-token-file'] === undefined) === (values['ws-token-sha256'] === undefined)) {
    throw new LocalError(LocalErrorCode.InvalidArgument, '--ws-auth capability-token needs exactly one of --ws-token-file or --ws-token-sha256');
  }
  return tokenDigest({
    ...(values['ws-token-file'] === undefined ? {} : { file: { flag: '--ws-token-file', path: values['ws-token-file'] } }),
    ...(values['ws-token-sha256'] === undefined ? {} : { sha256: { flag: '--ws-token-sha256', hex: values['ws-token-sha256'] } }),
  });
}

function positiveNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number < 0) throw new LocalError(LocalErrorCode.InvalidArgument, `${flag} must be a non-negative number, got \`${value}\``);
  return number;
}

/** `codex-multienv exec-server`: serves the exec-server protocol until stdin closes or a signal. */
export async function runExecServer(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: 'ws://127.0.0.1:0' },
      'ws-auth': { type: 'string' },
      'ws-token-file': { type: 'string' },
      'ws-token-sha256': { type: 'string' },
      'allow-origin': { type: 'string', multiple: true },
      'session-retention-sec': { type: 'string' },
      'max-processes': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const logger = stderrLogger(values['log-level'], env);
  const listen = parseListen(values.listen);
  const retentionSec = positiveNumber(values['session-retention-sec'], '--session-retention-sec');
  const maxProcesses = positiveNumber(values['max-processes'], '--max-processes');
  const server = new ExecServer({
    env,
    network: networkSettings(env),
    host: hostFacts(env),
    logger: logger.child('exec-server'),
    sessionRetentionMs: retentionSec === undefined ? undefined : retentionSec * 1000,
    maxProcessesPerSession: maxProcesses,
    nativeStarter: env[NATIVE_SPAWN_ENV] !== '0',
  });

  if (listen.kind === 'stdio') {
    const transport = new StreamTransport(process.stdin, process.stdout, 'stdio');
    const connection = server.serve(transport, { resumable: false });
    // Undefined when this server closed the connection itself: the client broke the protocol
    // (e.g. an unexpected notification). Then, as Codex does, the process exits too.
    const reason = await connection.closed;
    if (reason === undefined) logger.warn('stdio exec-server exiting: it closed the connection after a protocol violation by the client');
    else logger.debug('stdio exec-server exiting', { reason: reason.message });
    await server.close();
    // The connection no longer reads stdin, but an open stdin would keep this process alive.
    process.stdin.destroy();
    return 0;
  }

  const allowedOrigins = (values['allow-origin'] ?? []).map(parseAllowedOrigin);
  const digest = await execServerTokenDigest(values);
  if (digest === undefined && !isLoopbackIp(listen.host)) {
    throw new LocalError(
      LocalErrorCode.InvalidArgument,
      `refusing to listen on non-loopback address ${listen.host} without authentication; add --ws-auth capability-token with --ws-token-file or --ws-token-sha256`,
    );
  }
  const listener = await listenWebSocket({
    host: listen.host,
    port: listen.port,
    authorize: digest === undefined ? undefined : capabilityTokenAuth(digest, 'websocket'),
    allowedOrigins,
    onConnection: (transport) => server.serve(transport, { resumable: true }),
  });
  process.stdout.write(`${listener.url}\n`);
  logger.info('exec-server listening', { url: listener.url, auth: digest === undefined ? 'none' : 'capability-token', allowedOrigins });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    if (env.CODEX_EXEC_SERVER_EXIT_ON_STDIN_CLOSE === '1') process.stdin.once('end', resolve).resume();
  });
  await listener.close();
  await server.close();
  return 0;
}
