import { X509Certificate } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import type * as TunnelAgentModule from 'https-proxy-agent';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { CA_HINT, type NetworkSettings, type ProxySetting } from './network.js';

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
