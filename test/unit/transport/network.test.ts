// Parsing of the network variables' values: NO_PROXY matching as Codex matches it, proxy URLs,
// and PEM bundles (made with openssl in a temp folder).

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describeNetwork, NoProxy, parseCaBundle, parseProxyVariable } from '../../../src/transport/network.js';
import { LocalError } from '../../../src/util/errors.js';
import { makeTestCertificates, type TestCertificates } from '../../helpers/network.js';
import { tempDir } from '../../helpers/process.js';

describe('NoProxy', () => {
  it('matches a domain and its subdomains, with or without a leading dot', () => {
    const list = new NoProxy('NO_PROXY', ' .foo.bar, bar.baz ,Corp.Example');
    expect(['foo.bar', 'www.foo.bar', 'bar.baz', 'a.b.bar.baz', 'corp.example', 'x.corp.example'].filter((host) => !list.matches(host))).toEqual([]);
    expect(['notfoo.bar', 'notbar.baz', 'baz', 'bar.baz.evil', 'example'].filter((host) => list.matches(host))).toEqual([]);
  });

  it('matches addresses and CIDR blocks, IPv4 and IPv6 (URL hostnames keep their brackets)', () => {
    const list = new NoProxy('no_proxy', '127.0.0.1,10.42.1.1/24,::1,2001:db8::/32');
    expect(['127.0.0.1', '10.42.1.200', '[::1]', '[2001:db8:a::1]'].filter((host) => !list.matches(host))).toEqual([]);
    expect(['127.0.0.2', '10.42.2.1', '[::2]', '[2001:db9::1]', 'localhost'].filter((host) => list.matches(host))).toEqual([]);
  });

  it('`*` matches every host; an entry with a port or an empty list matches none', () => {
    expect(new NoProxy('NO_PROXY', '*').matches('anything.example')).toBe(true);
    expect(new NoProxy('NO_PROXY', 'localhost:8080').matches('localhost')).toBe(false);
    expect(new NoProxy('NO_PROXY', '').matches('localhost')).toBe(false);
  });
});

describe('parseProxyVariable', () => {
  it('reads http and https proxies, a value without a scheme as http, and drops any path', () => {
    expect(parseProxyVariable('HTTPS_PROXY', 'http://proxy.corp:3128/')).toEqual({ variable: 'HTTPS_PROXY', url: new URL('http://proxy.corp:3128/') });
    expect(parseProxyVariable('HTTP_PROXY', 'proxy.corp:8080')).toEqual({ variable: 'HTTP_PROXY', url: new URL('http://proxy.corp:8080/') });
    expect(parseProxyVariable('ALL_PROXY', 'https://user:p%40ss@proxy.corp/some/path?x')).toEqual({ variable: 'ALL_PROXY', url: new URL('https://user:p%40ss@proxy.corp/') });
  });

  it('says, naming the variable and hiding credentials, why a value cannot be used', () => {
    expect(parseProxyVariable('ALL_PROXY', 'socks5://127.0.0.1:1080')).toEqual({
      variable: 'ALL_PROXY',
      error: expect.stringMatching(/^ALL_PROXY names a socks5 proxy, which this server cannot use/),
    });
    const broken = parseProxyVariable('HTTPS_PROXY', 'http://user:secret@[nope');
    expect(broken).toEqual({ variable: 'HTTPS_PROXY', error: expect.stringContaining('HTTPS_PROXY is not a proxy URL') });
    expect(JSON.stringify(broken)).not.toContain('secret');
  });
});

describe('parseCaBundle', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let first: TestCertificates;
  let second: TestCertificates;

  beforeAll(async () => {
    dir = await tempDir('ca-bundle-');
    first = makeTestCertificates(dir.path, 'one');
    second = makeTestCertificates(dir.path, 'two');
  });
  afterAll(() => dir.cleanup());

  const fingerprint = (certificate: string): string => new X509Certificate(certificate.startsWith('-----') ? certificate : Buffer.from(certificate, 'base64')).fingerprint256;

  it('reads every certificate of a bundle, skipping comments, keys and CRLs', () => {
    const pem = ['# corporate roots', first.caPem, first.key, second.caPem, '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n'].join('\n');
    const bundle = parseCaBundle('SSL_CERT_FILE', '/etc/bundle.pem', pem);
    expect(bundle.certificates.map(fingerprint)).toEqual([fingerprint(first.caPem), fingerprint(second.caPem)]);
    expect(bundle).toMatchObject({ variable: 'SSL_CERT_FILE', path: '/etc/bundle.pem' });
  });

  it("reads OpenSSL's TRUSTED CERTIFICATE blocks, dropping their trust settings", () => {
    const trusted = execFileSync('openssl', ['x509', '-in', first.caPath, '-trustout', '-addtrust', 'serverAuth'], { encoding: 'utf8' });
    expect(trusted).toContain('BEGIN TRUSTED CERTIFICATE');
    expect(parseCaBundle('CODEX_CA_CERTIFICATE', 'roots.pem', trusted).certificates.map(fingerprint)).toEqual([fingerprint(first.caPem)]);
  });

  it('refuses a file without certificates, or with a broken one, naming the variable and the path', () => {
    const refusal = (pem: string): unknown => {
      try {
        parseCaBundle('CODEX_CA_CERTIFICATE', '/x/roots.pem', pem);
        return undefined;
      } catch (error) {
        return error;
      }
    };
    expect(refusal(first.key)).toEqual(
      expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringMatching(/^no certificates in \/x\/roots\.pem \(named by CODEX_CA_CERTIFICATE\)/) }),
    );
    const broken = `${second.caPem}-----BEGIN CERTIFICATE-----\nTUlJQm9n\n-----END CERTIFICATE-----\n`;
    expect(refusal(broken)).toBeInstanceOf(LocalError);
    expect(refusal(broken)).toMatchObject({ message: expect.stringMatching(/^certificate #2 in \/x\/roots\.pem \(named by CODEX_CA_CERTIFICATE\) is not a DER certificate/) });
  });

  it('is described with its path, variable and count', () => {
    const bundle = parseCaBundle('SSL_CERT_FILE', join(dir.path, 'one-ca.pem'), readFileSync(join(dir.path, 'one-ca.pem'), 'utf8'));
    const proxy = parseProxyVariable('HTTPS_PROXY', 'http://user:secret@127.0.0.1:3128');
    const text = describeNetwork({ httpsProxy: proxy, noProxy: new NoProxy('NO_PROXY', 'localhost,.corp'), ca: bundle });
    expect(text).toBe(
      `https via http://127.0.0.1:3128 (HTTPS_PROXY); direct to localhost,.corp (NO_PROXY); trusting 1 certificate from ${bundle.path} (SSL_CERT_FILE) besides the bundled roots`,
    );
    expect(describeNetwork({})).toBe('no proxy; bundled roots');
    const socks = parseProxyVariable('ALL_PROXY', 'socks5://127.0.0.1:1080');
    expect(describeNetwork({ httpsProxy: socks, httpProxy: socks })).toBe(
      'https and http: ALL_PROXY names a socks5 proxy, which this server cannot use; set it to an http:// or https:// proxy; bundled roots',
    );
  });
});
