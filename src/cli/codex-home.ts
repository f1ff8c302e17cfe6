import { homedir } from 'node:os';
import { join } from 'node:path';

// A module of its own, importing nothing of the server: the relay (mcp-relay.ts) reads the
// configuration's file too, and each module it loads delays a client's start.

/** `$CODEX_HOME`, or `~/.codex`. */
export function codexHome(env: NodeJS.ProcessEnv): string {
  const value = env.CODEX_HOME?.trim();
  return value !== undefined && value.length > 0 ? value : join(homedir(), '.codex');
}
