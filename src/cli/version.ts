import { readFileSync } from 'node:fs';

/**
 * This package's version, read once from package.json. In a module of its own, importing nothing
 * else: the relay (main.ts) shows it in `--help` and must not load the server's modules to do so.
 */
export const PACKAGE_VERSION: string = (() => {
  try {
    const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && 'version' in parsed && typeof parsed.version === 'string') return parsed.version;
  } catch {
    // Fall through.
  }
  return '0.0.0';
})();

/** The `User-Agent` of this package's model requests. */
export const USER_AGENT = `codex-multienv-mcp/${PACKAGE_VERSION}`;
