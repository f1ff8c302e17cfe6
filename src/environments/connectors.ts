import type { ExecConnector } from '../exec/client.js';
import type { ExecServer } from '../exec/server.js';
import { sharedConnector } from '../exec/shared-connector.js';
import { spawnChildTransport } from '../transport/child.js';
import { createMemoryPair } from '../transport/memory.js';
import type { Logger } from '../util/logger.js';
import { LocalExecServer } from './local-server.js';

/** Default bound on a websocket connect + upgrade (as Codex: 10 s). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** A websocket exec-server; the bearer token, when given, goes in `Authorization`. */
export function websocketConnector(url: string, options: { authBearerToken?: string; connectTimeoutMs?: number } = {}): ExecConnector {
  const headers = options.authBearerToken === undefined ? undefined : { authorization: `Bearer ${options.authBearerToken}` };
  return {
    label: url,
    resumable: true,
    connect: async (signal) => {
      // Loaded with the first connection (node:http comes with it): a server with only local environments never needs it.
      const { connectWebSocket } = await import('../transport/websocket.js');
      const transport = await connectWebSocket(url, { headers, timeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, signal });
      return transport;
    },
  };
}

/**
 * An exec-server spoken to over the stdio of a command (`ssh host codex exec-server --listen
 * stdio`, …). The command serves one connection, so every connection made here (this server's
 * client and the relay's clients) shares the one it started: see {@link sharedConnector}.
 */
export function stdioConnector(command: { program: string; args: readonly string[]; env: NodeJS.ProcessEnv; cwd?: string }, logger?: Logger): ExecConnector {
  return sharedConnector(
    {
      label: `stdio:${[command.program, ...command.args].join(' ')}`,
      resumable: false,
      connect: () => spawnChildTransport(command, { logger }),
    },
    logger,
  );
}

/**
 * The in-process exec-server: the same handlers as a remote one, over a memory pair that hands
 * bytes fields (command output, file contents) over as Buffers, with no base64 or JSON between.
 * A {@link LocalExecServer} is made at the first connection.
 */
export function localConnector(server: ExecServer | LocalExecServer): ExecConnector {
  return {
    label: 'local',
    resumable: false,
    connect: async () => {
      const target = server instanceof LocalExecServer ? await server.get() : server;
      const [clientSide, serverSide] = createMemoryPair('local', { values: true });
      target.serve(serverSide, { resumable: false });
      return clientSide;
    },
  };
}
