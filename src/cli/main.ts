#!/usr/bin/env node
import { LocalError } from '../util/errors.js';
import { PACKAGE_VERSION } from './runtime.js';

const HELP = `codex-multienv ${PACKAGE_VERSION}: Codex-style coding sessions across many environments, as MCP tools

usage:
  codex-multienv [-c key=value]... [--profile NAME]                         serve MCP over stdio (tools codex, codex-reply, environment/add, environment/list)
  codex-multienv exec-server [--listen ws://IP:PORT | stdio] [auth flags]   serve the exec-server protocol
  codex-multienv environments [--json]                                     check the configured environments
  codex-multienv doctor [--json] [-c key=value]... [--profile NAME]         check config, environments, sandbox and model provider
  codex-multienv --version | --help
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    // Each command loads only its own modules, which keeps start-up short.
    case 'exec-server':
      return (await import('./exec-server-command.js')).runExecServer(rest, process.env);
    case 'environments':
      return (await import('./environments-command.js')).runEnvironments(rest, process.env);
    case 'doctor':
      return (await import('./doctor-command.js')).runDoctor(rest, process.env);
    case '--version':
    case '-V':
      process.stdout.write(`${PACKAGE_VERSION}\n`);
      return 0;
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP);
      return 0;
    case undefined:
      return (await import('./mcp-command.js')).runMcpServer([], process.env);
    default:
      if (command.startsWith('-')) return (await import('./mcp-command.js')).runMcpServer(argv, process.env);
      process.stderr.write(`unknown command \`${command ?? ''}\`\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const message = error instanceof LocalError || error instanceof Error ? error.message : String(error);
    process.stderr.write(`error: ${message}\n`);
    process.exitCode = 2;
  },
);
