/**
 * The server's environment variable that, set to `0`, makes commands start through Node.js's
 * `child_process` even when the native starter is built (read by the CLI). Apart from the starter
 * (`piped-start.ts`), so that the commands that read it do not load the spawn code to learn its name:
 * the MCP server makes its local exec-server, and loads that code, only when first needed.
 */
export const NATIVE_SPAWN_ENV = 'CODEX_MULTIENV_NATIVE_SPAWN';
