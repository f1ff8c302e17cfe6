// The MCP server composed in the test's own process, as the CLI composes it (startMcpServer), with
// a real SDK client over the SDK's in-memory transport pair. A source edit is visible without a
// build, and no process starts per test. What only a process has (the relay, stdio framing and the
// message bound, signals, draining after the client left, a kill) stays with `startMcp`.
import { realpathSync } from 'node:fs';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { startMcpServer, type McpServerStartOptions } from '../../src/cli/mcp-command.js';
import { serveOver } from '../../src/mcp/server.js';
import { stderrLogger } from '../../src/cli/runtime.js';
import type { SelfReferenceHost } from '../../src/cli/self-reference.js';
import { connectTestClient, serverEnv, type ElicitationAnswer, type McpHarness } from './mcp.js';
import { CLI, waitFor } from './process.js';

/** Options of {@link startInProcessMcp}: those of `startMcp` that do not need a process. */
export interface InProcessMcpOptions {
  /** Answers `elicitation/create`; without it the client declares no elicitation capability. */
  answer?: ElicitationAnswer;
  /** Variables on top of the test environment (see `serverEnv`); `undefined` removes one. @default {} */
  env?: NodeJS.ProcessEnv;
  /** The server's command line (`-c key=value`, `--profile`, `--portable-tool-names`, …). @default [] */
  args?: string[];
  /** The server's working directory. @default process.cwd() */
  cwd?: string;
  /** Builds the thread ownership (see `startMcpServer`). @default lease files beside the thread files */
  ownership?: McpServerStartOptions['ownership'];
}

/** The message as the other side reads it off a wire: JSON, so `undefined` fields and shared references do not survive. */
function overTheWire(message: JSONRPCMessage): JSONRPCMessage {
  return JSON.parse(JSON.stringify(message)) as JSONRPCMessage;
}

/** The SDK's linked in-memory pair, each message copied through JSON as a real transport would. */
function jsonLinkedPair(): [InMemoryTransport, InMemoryTransport] {
  const pair = InMemoryTransport.createLinkedPair();
  for (const transport of pair) {
    const send = transport.send.bind(transport);
    transport.send = (message, options) => send(overTheWire(message), options);
  }
  return pair;
}

/** The built CLI's script as the CLI would see itself, so `[mcp_servers]` entries launching it are recognised. */
function cliSelfReference(env: NodeJS.ProcessEnv, cwd: string): SelfReferenceHost {
  const real = (path: string): string => {
    try {
      return realpathSync(path);
    } catch {
      // Not built: an entry cannot launch it either.
      return path;
    }
  };
  return { scriptPath: real(CLI), nodePath: real(process.execPath), pathEnv: env.PATH, cwd };
}

/**
 * Composes the server with `codexHome` in this process and connects a client. The surface is
 * `startMcp`'s: `stderr()` is the server's log, `pid` and `workerPid()` are this process.
 * `close()` ends the client, interrupts and records the turns still running, and closes threads,
 * environments (and the exec-servers they started) and the thread store; a restart is `close()`
 * and a new harness on the same `codexHome`.
 */
export async function startInProcessMcp(codexHome: string, options: InProcessMcpOptions = {}): Promise<McpHarness> {
  const env = serverEnv(codexHome, options.env);
  const cwd = options.cwd ?? process.cwd();
  let log = '';
  const started = await startMcpServer({
    argv: options.args ?? [],
    env,
    cwd,
    logger: (level) => stderrLogger(level, env, (line) => (log += line)),
    selfReference: cliSelfReference(env, cwd),
    ownership: options.ownership,
  });
  const [clientTransport, serverTransport] = jsonLinkedPair();
  try {
    await serveOver(started.server, serverTransport);
    started.ready();
    const connected = await connectTestClient(clientTransport, options.answer);
    let closing: Promise<void> | undefined;
    return {
      ...connected,
      stderr: () => log,
      waitForStderr: (pattern, what) => waitFor(() => pattern.test(log), `${what} in the server's log`),
      pid: process.pid,
      workerPid: () => Promise.resolve(process.pid),
      close: () =>
        (closing ??= (async () => {
          await connected.client.close();
          await started.close();
        })()),
    };
  } catch (error) {
    await started.close();
    throw error;
  }
}
