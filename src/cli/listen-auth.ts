import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { AuthDecision } from '../transport/websocket.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * What the servers that listen on a network address share (the exec-server's websocket, the MCP
 * server over HTTP): the bearer token check, the allowed origins, and the rule that a
 * non-loopback address needs a token.
 */

/**
 * Parses an `--allow-origin` value into the form browsers send in `Origin`: scheme, host and port
 * only, lower case, default port dropped (`https://App.example:443/` → `https://app.example`).
 */
export function parseAllowedOrigin(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value.trim());
  } catch {
    url = undefined;
  }
  const bare = url !== undefined && url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
  if (url === undefined || !bare || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new LocalError(
      LocalErrorCode.InvalidArgument,
      `--allow-origin \`${value}\` is not an origin; expected scheme, host and optional port, e.g. \`https://app.example.com\` or \`http://localhost:3000\``,
    );
  }
  return url.origin;
}

/** True for 127.0.0.0/8 and ::1. */
export function isLoopbackIp(host: string): boolean {
  return host === '::1' || /^127\./.test(host);
}

/**
 * Builds the bearer token check: a constant-time comparison of SHA-256 digests.
 * @param what names the token in refusals (`websocket`, `MCP`).
 */
export function capabilityTokenAuth(expectedSha256: Buffer, what: string): (authorization: string | undefined) => AuthDecision {
  return (authorization) => {
    if (authorization === undefined) return { ok: false, message: `missing ${what} bearer token` };
    const match = /^bearer\s+(.+)$/i.exec(authorization.trim());
    if (match?.[1] === undefined) return { ok: false, message: 'invalid authorization header' };
    const digest = createHash('sha256').update(match[1].trim(), 'utf8').digest();
    return timingSafeEqual(digest, expectedSha256) ? { ok: true } : { ok: false, message: `invalid ${what} bearer token` };
  };
}

/** Where the expected token comes from: a file holding it, or its SHA-256 digest in hex, each named by its flag for errors. */
export interface TokenSource {
  file?: { flag: string; path: string };
  sha256?: { flag: string; hex: string };
}

/**
 * The SHA-256 digest of the expected bearer token, from a file (the token, trimmed) or given in
 * hex; undefined when neither is set.
 * @throws LocalError when both are set, the file is empty, or the hex is not 64 digits.
 */
export async function tokenDigest(source: TokenSource): Promise<Buffer | undefined> {
  const { file, sha256 } = source;
  if (file !== undefined && sha256 !== undefined) throw new LocalError(LocalErrorCode.InvalidArgument, `give one of ${file.flag} or ${sha256.flag}, not both`);
  if (file !== undefined) {
    const token = (await readFile(file.path, 'utf8')).trim();
    if (token.length === 0) throw new LocalError(LocalErrorCode.InvalidArgument, `token file ${file.path} is empty`);
    return createHash('sha256').update(token, 'utf8').digest();
  }
  if (sha256 === undefined) return undefined;
  const hex = sha256.hex.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new LocalError(LocalErrorCode.InvalidArgument, `${sha256.flag} must be 64 hexadecimal characters`);
  return Buffer.from(hex, 'hex');
}
