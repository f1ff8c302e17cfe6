#!/usr/bin/env node
import { NESTED_ENV_VAR, NESTED_MARK, NESTED_REFUSAL } from '../util/nested.js';
import type { Commands } from './load-commands.js';
// In main.js itself, not a chunk loaded after it: the relay is what a client starts, and each
// module the relay loads before it spawns the worker delays the whole start.
import { runMcpRelay, shouldDetach } from './mcp-relay.js';
import { PACKAGE_VERSION } from './version.js';

const HELP = `codex-multienv ${PACKAGE_VERSION}: Codex-style coding sessions across many environments, as MCP tools

usage:
  codex-multienv [-c key=value]... [--profile NAME] [--foreground]          serve MCP over stdio (tools codex, codex-reply, environment/add, ...);
                                                                           turns run in a detached worker that outlives this process (--foreground: in this one)
  codex-multienv serve --listen http://IP:PORT [auth flags] [-c key=value]...
                                                                           serve MCP over Streamable HTTP at /mcp (port 0: a free port)
  codex-multienv exec-server [--listen ws://IP:PORT | stdio] [auth flags]   serve the exec-server protocol
  codex-multienv environments [--json]                                     check the configured environments
  codex-multienv doctor [--json] [-c key=value]... [--profile NAME]         check config, environments, sandbox and model provider
  codex-multienv --version | --help
`;

/** The MCP server: behind a relay (turns outlive the client's process) unless it must stay in this process. */
async function serveMcp(argv: string[]): Promise<number> {
  // Before the relay and the heavy modules: a session of this server started us as one of its MCP
  // servers (see util/nested.ts), and nesting would only multiply sessions.
  if (process.env[NESTED_ENV_VAR] === NESTED_MARK) {
    process.stderr.write(`${NESTED_REFUSAL}\n`);
    return 2;
  }
  const script = process.argv[1];
  if (script !== undefined && shouldDetach(argv)) return runMcpRelay(script, argv, process.env, PACKAGE_VERSION);
  return (await commands()).runMcpServer(argv, process.env);
}

/** The commands that load the server's modules (not needed for help, the version or the relay). */
async function commands(): Promise<Commands> {
  return (await import('./load-commands.js')).loadCommands(process.env);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    // Each command loads only its own modules, which keeps start-up short.
    case 'exec-server':
      return (await commands()).runExecServer(rest, process.env);
    case 'serve':
      return (await commands()).runServe(rest, process.env);
    case 'environments':
      return (await commands()).runEnvironments(rest, process.env);
    case 'doctor':
      return (await commands()).runDoctor(rest, process.env);
    case '--version':
    case '-V':
      process.stdout.write(`${PACKAGE_VERSION}\n`);
      return 0;
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP);
      return 0;
    case 'mcp-worker':
      return (await commands()).runMcpWorker(rest, process.env);
    case undefined:
      return serveMcp([]);
    default:
      if (command.startsWith('-')) return serveMcp(argv);
      process.stderr.write(`unknown command \`${command ?? ''}\`\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // LocalError is an Error too: main.js loads no module for it.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`error: ${message}\n`);
    process.exitCode = 2;
  },
);
