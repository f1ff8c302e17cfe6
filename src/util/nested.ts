/**
 * The marker that keeps sessions from starting this server inside themselves. Users who replace
 * `codex mcp-server` with this server register it in `$CODEX_HOME/config.toml`, the same file
 * whose `[mcp_servers]` this server's sessions load; without a marker every thread would start a
 * nested copy of the server and offer the model its own `codex` tool. Here (not in cli/) because
 * both environments/, which starts the servers, and cli/, which refuses to serve, need it.
 */

/** The variable every stdio MCP server a session starts receives. */
export const NESTED_ENV_VAR = 'CODEX_MULTIENV_NESTED';

/** Its value as sessions set it: this server, started with it, refuses to serve MCP. */
export const NESTED_MARK = '1';

/** The value an `[mcp_servers]` entry sets in its `env` to start this server inside sessions on purpose. */
export const NESTED_ALLOW = 'allow';

/**
 * What the refusing server writes on stderr; the parent session reports it (the end of the
 * server's stderr is part of the failure reason the model and the status tools see).
 */
export const NESTED_REFUSAL = [
  `codex-multienv refuses to serve MCP here: it was started as an MCP server by a session of codex-multienv (${NESTED_ENV_VAR}=${NESTED_MARK}),`,
  'usually because the [mcp_servers] of config.toml lists this server, so every session would start another copy of it.',
  'Fix: give this server its own CODEX_HOME (one whose config.toml does not list it), or set `enabled = false` on that entry.',
  `To allow it on purpose: \`env = { ${NESTED_ENV_VAR} = "${NESTED_ALLOW}" }\` in that entry.`,
].join(' ');
