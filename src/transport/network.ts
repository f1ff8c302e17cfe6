import { BlockList, isIP } from 'node:net';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * How outgoing HTTP leaves this process: through a proxy or not (the `HTTPS_PROXY`, `HTTP_PROXY`,
 * `ALL_PROXY` and `NO_PROXY` variables, read as Codex reads them), and which roots TLS trusts
 * (Node.js's bundled roots, plus a PEM bundle from `CODEX_CA_CERTIFICATE` or `SSL_CERT_FILE`).
 * `cli/` reads the variables and the bundle; everything here is pure parsing. The agents that
 * follow these settings are in http-routes.ts, apart so that a start-up, which reads the settings,
 * does not load node:http, node:https and TLS with them.
 */

/** A proxy named by a variable, or why its value cannot be used. */
export type ProxySetting =
  | {
      /** The variable it came from, e.g. `HTTPS_PROXY`. */
      variable: string;
      /** An `http:` or `https:` URL; credentials in it are sent as `Proxy-Authorization: Basic`. */
      url: URL;
    }
  | { variable: string; error: string };

/** Extra trusted roots read from a PEM bundle. */
export interface CaBundle {
  /** `CODEX_CA_CERTIFICATE` or `SSL_CERT_FILE`. */
  variable: string;
  path: string;
  /** The certificates, as base64 DER (no line breaks). */
  certificates: string[];
}

/** Everything that decides how a request leaves this process. */
export interface NetworkSettings {
  /** The proxy of `http:` URLs. @default none */
  httpProxy?: ProxySetting;
  /** The proxy of `https:` URLs. @default none */
  httpsProxy?: ProxySetting;
  /** Hosts reached without a proxy. @default none */
  noProxy?: NoProxy;
  /** Roots trusted on top of Node.js's bundled ones. @default none */
  ca?: CaBundle;
  /**
   * What Node.js adds to its roots itself (`NODE_EXTRA_CA_CERTS`), as base64 DER, kept when `ca`
   * makes a context of our own (which would otherwise trust only the bundled roots and `ca`).
   * @default none
   */
  nodeExtraCertificates?: string[];
  /**
   * Why no request can be sent as configured (a CA bundle that cannot be read); every request
   * fails with it, as Codex fails to build its HTTP client. @default none
   */
  error?: string;
}

/** Proxy URL schemes we can speak (SOCKS is not among them). */
const PROXY_SCHEMES = new Set(['http:', 'https:']);

/**
 * A proxy variable's value as a proxy URL. As Codex: a value without a scheme means `http://`, a
 * path is ignored. Unlike Codex, which silently goes direct, a value we cannot use is an error
 * that names the variable, so a misspelt proxy is not mistaken for a network failure.
 */
export function parseProxyVariable(variable: string, value: string): ProxySetting {
  const trimmed = value.trim();
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { variable, error: `${variable} is not a proxy URL: ${JSON.stringify(redactedValue(value))}; set it to http://host:port` };
  }
  if (!PROXY_SCHEMES.has(url.protocol)) {
    return { variable, error: `${variable} names a ${url.protocol.slice(0, -1)} proxy, which this server cannot use; set it to an http:// or https:// proxy` };
  }
  if (url.hostname.length === 0) return { variable, error: `${variable} has no host: ${JSON.stringify(redactedValue(value))}` };
  url.pathname = '/';
  url.search = '';
  url.hash = '';
  return { variable, url };
}

/** A proxy for messages and logs: its URL without credentials, and the variable it came from. */
export function describeProxy(proxy: ProxySetting & { url: URL }): string {
  const shown = new URL(proxy.url.href);
  shown.username = '';
  shown.password = '';
  return `${shown.origin} (${proxy.variable})`;
}

/** The value with any `user:password@` replaced, for messages. */
function redactedValue(value: string): string {
  return value.replace(/\/\/[^/@]*@/, '//***@').replace(/^[^/@]*@/, '***@');
}

/**
 * The hosts of `NO_PROXY`, matched as Codex (hyper-util) matches them: entries separated by
 * commas; an IP address or CIDR block matches addresses in it; `*` matches every host; any other
 * entry is a domain that matches itself and its subdomains, with or without a leading dot. A port
 * in an entry makes it match nothing, as there.
 */
export class NoProxy {
  /** The variable it came from (`NO_PROXY` or `no_proxy`). */
  readonly variable: string;
  /** The entries as written, for messages. */
  readonly entries: readonly string[];
  readonly #addresses = new BlockList();
  readonly #domains: string[] = [];
  readonly #all: boolean;

  constructor(variable: string, value: string) {
    this.variable = variable;
    this.entries = value
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry.length > 0);
    let all = false;
    for (const entry of this.entries) {
      if (entry === '*') all = true;
      else if (!this.#addAddress(entry)) this.#domains.push(entry.toLowerCase());
    }
    this.#all = all;
  }

  /** True when requests to `hostname` (as `URL.hostname` gives it) go direct. */
  matches(hostname: string): boolean {
    if (this.#all) return true;
    const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
    const family = isIP(host);
    if (family !== 0) return this.#addresses.check(host, family === 6 ? 'ipv6' : 'ipv4');
    const name = host.toLowerCase();
    return this.#domains.some((domain) => {
      const bare = domain.startsWith('.') ? domain.slice(1) : domain;
      return name === bare || name.endsWith(`.${bare}`);
    });
  }

  /** Adds an address or CIDR entry; false when the entry is neither (a domain). */
  #addAddress(entry: string): boolean {
    const slash = entry.indexOf('/');
    const address = slash === -1 ? entry : entry.slice(0, slash);
    const family = isIP(address);
    if (family === 0) return false;
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (slash === -1) {
      this.#addresses.addAddress(address, type);
      return true;
    }
    const prefixText = entry.slice(slash + 1);
    const prefix = Number(prefixText);
    if (!/^\d+$/.test(prefixText) || prefix > (family === 6 ? 128 : 32)) return false;
    this.#addresses.addSubnet(address, prefix, type);
    return true;
  }
}

/** What to do about a CA bundle that cannot be used (Codex's advice); http-routes.ts says it too. */
export const CA_HINT = 'point it at a PEM file holding one or more CERTIFICATE blocks, or unset it to use the default roots';

/** Labels of the PEM blocks that are certificates (OpenSSL writes the second with trust settings after the certificate). */
const CERTIFICATE_LABELS = new Set(['CERTIFICATE', 'TRUSTED CERTIFICATE']);

/**
 * The certificates of a PEM text as base64 DER, in order: every `CERTIFICATE` block, and
 * OpenSSL's `TRUSTED CERTIFICATE` blocks with their trust settings dropped; other blocks (CRLs,
 * keys) skipped. A block that is not one DER SEQUENCE is `undefined` in its place. Cheap (this
 * runs at start-up, on bundles of a few hundred certificates): the certificates are not parsed.
 */
function pemCertificates(pem: string): (string | undefined)[] {
  const found: (string | undefined)[] = [];
  for (let at = pem.indexOf('-----BEGIN '); at !== -1; at = pem.indexOf('-----BEGIN ', at)) {
    const labelEnd = pem.indexOf('-----', at + 11);
    if (labelEnd === -1) break;
    const label = pem.slice(at + 11, labelEnd);
    const endMarker = `-----END ${label}-----`;
    const end = pem.indexOf(endMarker, labelEnd + 5);
    if (end === -1) break;
    at = end + endMarker.length;
    if (!CERTIFICATE_LABELS.has(label)) continue;
    const body = pem.slice(labelEnd + 5, end).replace(/\s+/g, '');
    if (label === 'CERTIFICATE') {
      // The header in the first bytes tells the length the whole body must have.
      const length = derElementLength(Buffer.from(body.slice(0, 12), 'base64'));
      found.push(length !== undefined && length === Buffer.byteLength(body, 'base64') ? body : undefined);
    } else {
      const der = Buffer.from(body, 'base64');
      const length = derElementLength(der);
      found.push(length !== undefined && length <= der.length ? der.subarray(0, length).toString('base64') : undefined);
    }
  }
  return found;
}

/**
 * The certificates of a PEM bundle, as Codex reads `CODEX_CA_CERTIFICATE` / `SSL_CERT_FILE`:
 * every `CERTIFICATE` block, OpenSSL's `TRUSTED CERTIFICATE` blocks too (their trust settings
 * dropped), CRLs and other blocks skipped. Only split and checked for shape here (this runs at
 * start-up); each certificate is parsed when the first request needs the roots.
 * @throws LocalError (`INVALID_CONFIG`) naming the variable and path when a block is not a
 * certificate or there is none.
 */
export function parseCaBundle(variable: string, path: string, pem: string): CaBundle {
  const found = pemCertificates(pem);
  if (found.length === 0) throw new LocalError(LocalErrorCode.InvalidConfig, `no certificates in ${path} (named by ${variable}); ${CA_HINT}`);
  const certificates: string[] = [];
  for (const [index, base64] of found.entries()) {
    if (base64 === undefined)
      throw new LocalError(LocalErrorCode.InvalidConfig, `certificate #${index + 1} in ${path} (named by ${variable}) is not a DER certificate; ${CA_HINT}`);
    certificates.push(base64);
  }
  return { variable, path, certificates };
}

/** The certificates of `NODE_EXTRA_CA_CERTS` (Node.js has loaded them already; blocks it could not use are skipped here too). */
export function nodeExtraCertificates(pem: string): string[] {
  return pemCertificates(pem).filter((base64) => base64 !== undefined);
}

/**
 * The length of the DER element `der` starts with (header and content), from its header alone;
 * undefined when it is not a SEQUENCE or its length field is broken. Four length octets cover
 * any certificate; DER forbids the indefinite form.
 */
function derElementLength(der: Buffer): number | undefined {
  const first = der[1];
  if (der[0] !== 0x30 || first === undefined) return undefined;
  if ((first & 0x80) === 0) return 2 + first;
  const octets = first & 0x7f;
  if (octets === 0 || octets > 4 || der.length < 2 + octets) return undefined;
  return 2 + octets + der.readUIntBE(2, octets);
}

/** The settings in one line, for logs and `doctor`: proxies, exclusions, extra roots. */
export function describeNetwork(settings: NetworkSettings): string {
  const parts: string[] = [];
  const { httpsProxy, httpProxy } = settings;
  const proxyPart = (schemes: string, proxy: ProxySetting): string => ('error' in proxy ? `${schemes}: ${proxy.error}` : `${schemes} via ${describeProxy(proxy)}`);
  if (httpsProxy === undefined && httpProxy === undefined) parts.push('no proxy');
  // Both from one variable (ALL_PROXY) are said once.
  else if (httpsProxy !== undefined && httpProxy !== undefined && httpsProxy.variable === httpProxy.variable) parts.push(proxyPart('https and http', httpsProxy));
  else {
    if (httpsProxy !== undefined) parts.push(proxyPart('https', httpsProxy));
    if (httpProxy !== undefined) parts.push(proxyPart('http', httpProxy));
  }
  if (settings.noProxy !== undefined && (httpsProxy !== undefined || httpProxy !== undefined)) {
    parts.push(settings.noProxy.entries.length === 0 ? `${settings.noProxy.variable} empty` : `direct to ${settings.noProxy.entries.join(',')} (${settings.noProxy.variable})`);
  }
  if (settings.error !== undefined) parts.push(settings.error);
  else if (settings.ca !== undefined) {
    const count = settings.ca.certificates.length;
    parts.push(`trusting ${count} certificate${count === 1 ? '' : 's'} from ${settings.ca.path} (${settings.ca.variable}) besides the bundled roots`);
  } else parts.push('bundled roots');
  return parts.join('; ');
}
