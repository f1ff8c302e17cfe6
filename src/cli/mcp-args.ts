import type { ParseArgsConfig } from 'node:util';

/**
 * The command-line options of the MCP server (stdio, and `serve` beside its own). In a module of
 * its own, importing nothing: the relay (mcp-relay.ts) checks the command line with it before it
 * answers a client for the worker.
 */
export const MCP_SERVER_ARGS = {
  config: { type: 'string', short: 'c', multiple: true },
  profile: { type: 'string', short: 'p' },
  'log-level': { type: 'string' },
  'portable-tool-names': { type: 'boolean' },
  foreground: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];
