import { fileURLToPath, pathToFileURL } from 'node:url';
import { RpcError } from '../rpc/errors.js';

/**
 * Converts a protocol path (a `file://` URI) to a native absolute path, with the errors the Codex
 * exec-server gives: a native path or garbage is -32602, a URI with a host is -32600.
 */
export function uriToPath(uri: string): string {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw RpcError.invalidParams('invalid URI: relative URL without a base');
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme !== 'file') throw RpcError.invalidParams(`unsupported path URI scheme \`${scheme}\``);
  if (url.hostname !== '' && url.hostname !== 'localhost') {
    throw RpcError.invalidRequest(`'${uri}' is invalid on '${process.platform === 'darwin' ? 'macos' : process.platform}'`);
  }
  url.hostname = '';
  return fileURLToPath(url);
}

/** Converts a native absolute path to a percent-encoded `file://` URI. */
export function pathToUri(path: string): string {
  return pathToFileURL(path).href;
}
