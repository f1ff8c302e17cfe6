import { readFileSync, statSync } from 'node:fs';
import { nodeExtraCertificates, NoProxy, parseCaBundle, parseProxyVariable, type CaBundle, type NetworkSettings, type ProxySetting } from '../transport/network.js';
import type { HttpExchange } from '../model/http-exchange.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';

/** The largest CA bundle read (a system bundle of every public root is ~250 KB). */
export const MAX_CA_BUNDLE_BYTES = 16 * 1024 * 1024;

/** Variables whose PEM bundle is trusted besides the bundled roots, the first one set winning (as in Codex). */
export const CA_VARIABLES = ['CODEX_CA_CERTIFICATE', 'SSL_CERT_FILE'] as const;

/** Every variable {@link networkSettings} reads; tests clear them to be independent of the machine. */
export const NETWORK_VARIABLES = [
  'HTTPS_PROXY',
  'https_proxy',
  'HTTP_PROXY',
  'http_proxy',
  'ALL_PROXY',
  'all_proxy',
  'NO_PROXY',
  'no_proxy',
  ...CA_VARIABLES,
  'NODE_EXTRA_CA_CERTS',
] as const;

/** The first of `names` present in `env` (even empty, as Codex reads them), with its name. */
function firstPresent(env: NodeJS.ProcessEnv, names: readonly string[]): { variable: string; value: string } | undefined {
  for (const variable of names) {
    const value = env[variable];
    if (value !== undefined) return { variable, value };
  }
  return undefined;
}

/** The proxy of one scheme: its own variables, else `ALL_PROXY`; an empty value counts as none. */
function proxyFor(env: NodeJS.ProcessEnv, names: readonly string[]): ProxySetting | undefined {
  for (const found of [firstPresent(env, names), firstPresent(env, ['ALL_PROXY', 'all_proxy'])]) {
    if (found !== undefined && found.value.trim().length > 0) return parseProxyVariable(found.variable, found.value);
  }
  return undefined;
}

/** A file system error's reason without the path it repeats (`ENOENT: no such file or directory`). */
function ioReason(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'message' in error && typeof error.message === 'string') return error.message.replace(/, \w+ '[^']*'$/, '');
  return errorMessage(error);
}

/** A PEM bundle's text; a regular file of at most {@link MAX_CA_BUNDLE_BYTES} (a device or a pipe could be endless). */
function readBundle(path: string): string {
  const stats = statSync(path);
  if (!stats.isFile()) throw new Error('not a regular file');
  if (stats.size > MAX_CA_BUNDLE_BYTES) throw new Error(`larger than ${MAX_CA_BUNDLE_BYTES} bytes`);
  return readFileSync(path, 'latin1');
}

/** The extra roots: `CODEX_CA_CERTIFICATE`, else `SSL_CERT_FILE` (empty values count as unset). */
function caBundle(env: NodeJS.ProcessEnv): CaBundle | undefined {
  for (const variable of CA_VARIABLES) {
    const path = env[variable];
    if (path === undefined || path.length === 0) continue;
    let pem: string;
    try {
      pem = readBundle(path);
    } catch (error) {
      throw new LocalError(
        LocalErrorCode.InvalidConfig,
        `cannot read the CA certificate file ${path} named by ${variable}: ${ioReason(error)}; point ${variable} at a PEM file, or unset it to use the default roots`,
      );
    }
    return parseCaBundle(variable, path, pem);
  }
  return undefined;
}

/**
 * The certificates of `NODE_EXTRA_CA_CERTS`, which Node.js adds to its default roots: a context
 * with extra roots must keep them. A file Node.js could not use is skipped here too (Node.js has
 * warned about it at start-up).
 */
function nodeExtraRoots(env: NodeJS.ProcessEnv): string[] | undefined {
  const path = env.NODE_EXTRA_CA_CERTS;
  if (path === undefined || path.length === 0) return undefined;
  try {
    return nodeExtraCertificates(readBundle(path));
  } catch {
    return undefined;
  }
}

/**
 * How this process reaches HTTP servers, from its environment as Codex reads it: `HTTPS_PROXY` /
 * `https_proxy` for https URLs and `HTTP_PROXY` / `http_proxy` for http ones (the upper-case name
 * first), each falling back to `ALL_PROXY` / `all_proxy`; `NO_PROXY` / `no_proxy`; the PEM
 * bundle of `CODEX_CA_CERTIFICATE`, else `SSL_CERT_FILE` (with `NODE_EXTRA_CA_CERTS` kept beside
 * it). Never throws: a bundle that cannot be
 * used becomes `error`, which every request then reports (the server keeps running).
 */
export function networkSettings(env: NodeJS.ProcessEnv): NetworkSettings {
  const settings: NetworkSettings = {};
  const httpsProxy = proxyFor(env, ['HTTPS_PROXY', 'https_proxy']);
  const httpProxy = proxyFor(env, ['HTTP_PROXY', 'http_proxy']);
  const noProxy = firstPresent(env, ['NO_PROXY', 'no_proxy']);
  if (httpsProxy !== undefined) settings.httpsProxy = httpsProxy;
  if (httpProxy !== undefined) settings.httpProxy = httpProxy;
  if (noProxy !== undefined) settings.noProxy = new NoProxy(noProxy.variable, noProxy.value);
  try {
    const ca = caBundle(env);
    if (ca !== undefined) settings.ca = ca;
  } catch (error) {
    settings.error = errorMessage(error);
  }
  if (settings.ca !== undefined) {
    const extra = nodeExtraRoots(env);
    if (extra !== undefined) settings.nodeExtraCertificates = extra;
  }
  return settings;
}

/** The process's HTTP client for model requests and HTTP MCP servers: one pool of connections. */
export interface LazyHttp {
  /** A fetch over the exchange, for HTTP MCP servers. */
  fetch: typeof fetch;
  /** The exchange, for the model client. */
  exchange: () => Promise<HttpExchange>;
}

/**
 * The process's HTTP exchange (see `model/http-exchange.ts`) and a fetch over it, made on the
 * first request: their modules (node:http, node:https, TLS, zlib) then load, not while the server
 * starts.
 */
export function lazyHttp(network: NetworkSettings): LazyHttp {
  let made: Promise<{ exchange: HttpExchange; fetch: typeof fetch }> | undefined;
  const make = (): Promise<{ exchange: HttpExchange; fetch: typeof fetch }> =>
    (made ??= (async () => {
      // One after the other: under jest's VM modules, two imports in flight that reach one module
      // fail it (`request for 'node:zlib' is not in cache`).
      const { HttpExchange } = await import('../model/http-exchange.js');
      const { createHttpFetch } = await import('../model/http-fetch.js');
      const exchange = new HttpExchange({ network });
      return { exchange, fetch: createHttpFetch({ exchange }) };
    })());
  return {
    fetch: async (input, init) => (await make()).fetch(input, init),
    exchange: async () => (await make()).exchange,
  };
}
