import { X509Certificate } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { BlockList, isIP } from 'node:net';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import type * as TunnelAgentModule from 'https-proxy-agent';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * How outgoing HTTP leaves this process: through a proxy or not (the `HTTPS_PROXY`, `HTTP_PROXY`,
 * `ALL_PROXY` and `NO_PROXY` variables, read as Codex reads them), and which roots TLS trusts
 * (Node.js's bundled roots, plus a PEM bundle from `CODEX_CA_CERTIFICATE` or `SSL_CERT_FILE`).
 * `cli/` reads the variables and the bundle; everything here is pure parsing plus the agents.
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

/** What to do about a CA bundle that cannot be used (Codex's advice). */
const CA_HINT = 'point it at a PEM file holding one or more CERTIFICATE blocks, or unset it to use the default roots';

/** Labels of the PEM blocks that are certificates (OpenSSL writes the second with trust settings after the certificate). */
const CERTIFICATE_LABELS = new Set(['CERTIFICATE', 'TRUSTED CERTIFICATE']);

let bundledRoots: ReadonlySet<string> | undefined;

/** Node.js's bundled roots as base64 DER: trusted already, and known to be good. */
function bundled(): ReadonlySet<string> {
  bundledRoots ??= new Set(rootCertificates.map((pem) => pem.replace(/-----[A-Z ]+-----|\s/g, '')));
  return bundledRoots;
}

/** A certificate (base64 DER) as one PEM block. */
function certificatePem(base64: string): string {
  return `-----BEGIN CERTIFICATE-----\n${(base64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END CERTIFICATE-----\n`;
}

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

/** A request on its way: the `ClientRequest`, and the proxy it goes through, if any. */
export interface RoutedRequest {
  request: ClientRequest;
  proxy: (ProxySetting & { url: URL }) | undefined;
}

/** Options of {@link HttpRoutes}. */
export interface HttpRoutesOptions {
  /** Idle keep-alive connections are closed after this long. */
  keepAliveMs: number;
}

/** The tunnelling agent's class (https-proxy-agent), loaded on first use: it costs start-up time. */
type TunnelAgentClass = typeof TunnelAgentModule.HttpsProxyAgent;
let tunnelAgentLoading: Promise<TunnelAgentClass> | undefined;

/**
 * Opens `node:http(s)` requests the configured way, with keep-alive agents shared by every
 * request: direct, through a proxy (`CONNECT` tunnels for `https:` URLs, absolute-form requests
 * for `http:` ones), trusting the extra roots. Agents are made on first use, and the secure
 * context with the extra roots once: a context per connection would parse every root again.
 */
export class HttpRoutes {
  readonly #settings: NetworkSettings;
  readonly #keepAliveMs: number;
  /** The secure context of the extra roots (none: Node's default), once made. */
  #roots: { context: SecureContext | undefined } | undefined;
  /** Why the extra roots cannot be used, once found out; every request then fails with it. */
  #caError: string | undefined;
  readonly #direct: { http?: HttpAgent; https?: HttpsAgent } = {};
  readonly #viaProxy = new Map<string, HttpAgent>();

  constructor(settings: NetworkSettings, options: HttpRoutesOptions) {
    this.#settings = settings;
    this.#keepAliveMs = options.keepAliveMs;
  }

  /**
   * Starts a request to `target` (`http:` or `https:`); the caller writes the body and ends it.
   * Rejects with a LocalError (`INVALID_CONFIG`) naming the variable when the settings cannot be
   * used for this URL (an unreadable CA bundle, a proxy value that is not a URL).
   */
  async request(target: URL, options: { method: string; headers: OutgoingHttpHeaders | readonly string[] }): Promise<RoutedRequest> {
    const unusable = this.#settings.error ?? this.#caError;
    if (unusable !== undefined) throw new LocalError(LocalErrorCode.InvalidConfig, unusable);
    const secure = target.protocol === 'https:';
    const proxy = this.#proxyFor(target, secure);
    if (proxy === undefined) {
      const agent = secure ? (this.#direct.https ??= new HttpsAgent(this.#agentOptions())) : (this.#direct.http ??= new HttpAgent(this.#agentOptions()));
      return { request: (secure ? httpsRequest : httpRequest)(target, { ...options, agent }), proxy };
    }
    if (secure) return { request: httpsRequest(target, { ...options, agent: await this.#tunnelAgent(proxy.url) }), proxy };
    // A plain-HTTP request goes to the proxy itself, naming the whole URL (RFC 9112 absolute-form).
    const authorization = proxyAuthorization(proxy.url);
    const headers = forwardHeaders(options.headers, target, authorization);
    const viaTls = proxy.url.protocol === 'https:';
    const request = (viaTls ? httpsRequest : httpRequest)({
      host: proxy.url.hostname.replace(/^\[|\]$/g, ''),
      port: proxy.url.port === '' ? (viaTls ? 443 : 80) : Number(proxy.url.port),
      path: target.href.replace(/#.*$/, ''),
      method: options.method,
      headers,
      agent: this.#forwardAgent(proxy.url),
    });
    return { request, proxy };
  }

  /** Destroys every agent made so far with their sockets, idle or busy; a later request makes new ones. */
  destroy(): void {
    for (const agent of [this.#direct.http, this.#direct.https, ...this.#viaProxy.values()]) agent?.destroy();
    this.#direct.http = undefined;
    this.#direct.https = undefined;
    this.#viaProxy.clear();
  }

  /** The proxy `target` goes through: none for `NO_PROXY` hosts. */
  #proxyFor(target: URL, secure: boolean): (ProxySetting & { url: URL }) | undefined {
    const setting = secure ? this.#settings.httpsProxy : this.#settings.httpProxy;
    if (setting === undefined || this.#settings.noProxy?.matches(target.hostname) === true) return undefined;
    if ('error' in setting) throw new LocalError(LocalErrorCode.InvalidConfig, setting.error);
    return setting;
  }

  #agentOptions(): { keepAlive: true; timeout: number; secureContext?: SecureContext } {
    const secureContext = this.#context();
    return secureContext === undefined ? { keepAlive: true, timeout: this.#keepAliveMs } : { keepAlive: true, timeout: this.#keepAliveMs, secureContext };
  }

  /**
   * Node.js's roots (bundled and `NODE_EXTRA_CA_CERTS`) plus the extra ones; undefined (Node's
   * default context, which has the same roots) when the bundle adds nothing to the bundled roots,
   * as a system bundle may not. Made on first use: parsing a few hundred roots takes a while.
   * @throws LocalError naming the variable and path when a certificate cannot be parsed (OpenSSL
   * would skip it without a word, and the server it is for would then not be trusted).
   */
  #context(): SecureContext | undefined {
    if (this.#roots === undefined) {
      const ca = this.#settings.ca;
      const known = bundled();
      const extra = (ca?.certificates ?? []).filter((base64) => !known.has(base64));
      let context: SecureContext | undefined;
      if (ca !== undefined && extra.length > 0) {
        for (const base64 of extra) {
          try {
            new X509Certificate(Buffer.from(base64, 'base64'));
          } catch (error) {
            this.#caError = `a certificate in ${ca.path} (named by ${ca.variable}) cannot be read: ${error instanceof Error ? error.message : String(error)}; ${CA_HINT}`;
            throw new LocalError(LocalErrorCode.InvalidConfig, this.#caError);
          }
        }
        // Listed once each: a system bundle repeats NODE_EXTRA_CA_CERTS, often the same file.
        const nodeExtra = (this.#settings.nodeExtraCertificates ?? []).filter((base64) => !known.has(base64));
        context = createSecureContext({ ca: [...rootCertificates, ...[...new Set([...nodeExtra, ...extra])].map(certificatePem)] });
      }
      this.#roots = { context };
    }
    return this.#roots.context;
  }

  /** The agent of `CONNECT` tunnels through `proxy`; the extra roots serve the proxy's TLS and the target's. */
  async #tunnelAgent(proxy: URL): Promise<HttpAgent> {
    const key = `tunnel ${proxy.href}`;
    let agent = this.#viaProxy.get(key);
    if (agent === undefined) {
      tunnelAgentLoading ??= import('https-proxy-agent').then((module) => module.HttpsProxyAgent);
      const TunnelAgent = await tunnelAgentLoading;
      // Another request may have made it while this one waited for the module.
      agent = this.#viaProxy.get(key);
      if (agent === undefined) {
        const tunnel = new TunnelAgent(proxy, this.#agentOptions());
        // It keeps the options for the proxy connection only, and empties the ones http.Agent merges
        // into every request: put back the idle timeout and the roots the target's TLS must use.
        Object.assign(tunnel.options, this.#agentOptions());
        // Said once: left unset, every request reads them through agent-base's guess, which
        // builds a stack trace each time (~0.6 ms of CPU per request).
        tunnel.protocol = 'https:';
        tunnel.defaultPort = 443;
        agent = tunnel;
        this.#viaProxy.set(key, agent);
      }
    }
    return agent;
  }

  /** The agent of plain-HTTP requests sent to `proxy` (over TLS for an `https:` proxy). */
  #forwardAgent(proxy: URL): HttpAgent {
    const key = `forward ${proxy.href}`;
    let agent = this.#viaProxy.get(key);
    if (agent === undefined) {
      agent = proxy.protocol === 'https:' ? new HttpsAgent(this.#agentOptions()) : new HttpAgent(this.#agentOptions());
      this.#viaProxy.set(key, agent);
    }
    return agent;
  }
}

/**
 * The headers of a plain-HTTP request sent to a proxy: `host` naming the target, and the proxy's
 * credentials. Raw (array) headers keep their order and repeats, and get `host` only when they
 * have none (node adds nothing to raw headers).
 */
function forwardHeaders(headers: OutgoingHttpHeaders | readonly string[], target: URL, authorization: string | undefined): OutgoingHttpHeaders | string[] {
  if (!isRawHeaders(headers)) return { ...headers, host: target.host, ...(authorization === undefined ? {} : { 'proxy-authorization': authorization }) };
  const raw = [...headers];
  if (!raw.some((item, index) => index % 2 === 0 && item.toLowerCase() === 'host')) raw.unshift('host', target.host);
  if (authorization !== undefined) raw.push('proxy-authorization', authorization);
  return raw;
}

function isRawHeaders(headers: OutgoingHttpHeaders | readonly string[]): headers is readonly string[] {
  return Array.isArray(headers);
}

/** `Basic` credentials from the proxy URL's user and password, as curl and reqwest send them. */
function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === '' && proxy.password === '') return undefined;
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return `Basic ${Buffer.from(credentials).toString('base64')}`;
}
