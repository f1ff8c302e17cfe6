/**
 * The commands that run the server's modules, each loading its own when called. tools/bundle.js
 * makes this module, with all it loads, one CommonJS script (dist/cli/commands.cjs) that main.ts
 * runs with V8's code cache (code-cache.ts); the rest of main.js (help, version, the relay in
 * front of the MCP worker) loads none of it.
 */
import type { McpServerIo } from './mcp-command.js';

/** `codex-multienv [--foreground]`: the MCP server in this process. */
export async function runMcpServer(argv: string[], env: NodeJS.ProcessEnv, io?: McpServerIo): Promise<number> {
  return (await import('./mcp-command.js')).runMcpServer(argv, env, io);
}

/** `codex-multienv mcp-worker`: the MCP server behind the relay. */
export async function runMcpWorker(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await import('./mcp-command.js')).runMcpWorker(argv, env);
}

/** `codex-multienv exec-server`. */
export async function runExecServer(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await import('./exec-server-command.js')).runExecServer(argv, env);
}

/** `codex-multienv serve`: the MCP server over Streamable HTTP. */
export async function runServe(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await import('./serve-command.js')).runServe(argv, env);
}

/** `codex-multienv environments`. */
export async function runEnvironments(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await import('./environments-command.js')).runEnvironments(argv, env);
}

/** `codex-multienv doctor`. */
export async function runDoctor(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await import('./doctor-command.js')).runDoctor(argv, env);
}
