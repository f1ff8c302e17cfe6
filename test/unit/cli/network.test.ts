// Which variables decide the network settings, in Codex's order, and what an unusable CA file does.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { networkSettings } from '../../../src/cli/network.js';
import { describeNetwork } from '../../../src/transport/network.js';
import { makeTestCertificates, type TestCertificates } from '../../helpers/network.js';
import { tempDir } from '../../helpers/process.js';

describe('networkSettings', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let certs: TestCertificates;

  beforeAll(async () => {
    dir = await tempDir('net-settings-');
    certs = makeTestCertificates(dir.path);
  });
  afterAll(() => dir.cleanup());

  it('is direct with the bundled roots when nothing is set', () => {
    expect(networkSettings({ PATH: '/usr/bin' })).toEqual({});
  });

  it('takes the upper-case variable first, and ALL_PROXY for a scheme without its own', () => {
    const settings = networkSettings({ HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:2', all_proxy: 'http://all:3', no_proxy: 'localhost' });
    expect(settings.httpsProxy).toEqual({ variable: 'HTTPS_PROXY', url: new URL('http://upper:1') });
    expect(settings.httpProxy).toEqual({ variable: 'all_proxy', url: new URL('http://all:3') });
    expect(settings.noProxy?.variable).toBe('no_proxy');
  });

  it('an empty proxy variable hides the other case and falls back to ALL_PROXY, as in Codex', () => {
    expect(networkSettings({ HTTPS_PROXY: '', https_proxy: 'http://lower:2' }).httpsProxy).toBeUndefined();
    expect(networkSettings({ HTTPS_PROXY: '', ALL_PROXY: 'http://all:3' }).httpsProxy).toEqual({ variable: 'ALL_PROXY', url: new URL('http://all:3') });
  });

  it('CODEX_CA_CERTIFICATE wins over SSL_CERT_FILE; an empty value counts as unset', () => {
    const missing = join(dir.path, 'missing.pem');
    expect(networkSettings({ CODEX_CA_CERTIFICATE: certs.caPath, SSL_CERT_FILE: missing }).ca).toMatchObject({ variable: 'CODEX_CA_CERTIFICATE', path: certs.caPath });
    expect(networkSettings({ CODEX_CA_CERTIFICATE: '', SSL_CERT_FILE: certs.caPath }).ca).toMatchObject({ variable: 'SSL_CERT_FILE', path: certs.caPath });
  });

  it('keeps the roots of NODE_EXTRA_CA_CERTS beside the extra CA (Node.js trusts them by default)', () => {
    const other = makeTestCertificates(dir.path, 'other');
    expect(networkSettings({ SSL_CERT_FILE: certs.caPath, NODE_EXTRA_CA_CERTS: other.caPath }).nodeExtraCertificates).toHaveLength(1);
    expect(networkSettings({ NODE_EXTRA_CA_CERTS: other.caPath }).nodeExtraCertificates).toBeUndefined();
    expect(networkSettings({ SSL_CERT_FILE: certs.caPath, NODE_EXTRA_CA_CERTS: join(dir.path, 'missing.pem') })).not.toHaveProperty('error');
  });

  it('a CA file that cannot be used becomes an error naming the variable and the path', async () => {
    const missing = join(dir.path, 'missing.pem');
    const settings = networkSettings({ SSL_CERT_FILE: missing, HTTPS_PROXY: 'http://127.0.0.1:9' });
    expect(settings.error).toMatch(new RegExp(`^cannot read the CA certificate file ${missing} named by SSL_CERT_FILE: ENOENT`));
    expect(describeNetwork(settings)).toContain(settings.error);
    const empty = join(dir.path, 'empty.pem');
    await writeFile(empty, 'not a certificate\n');
    expect(networkSettings({ CODEX_CA_CERTIFICATE: empty }).error).toMatch(new RegExp(`^no certificates in ${empty} \\(named by CODEX_CA_CERTIFICATE\\)`));
    expect(networkSettings({ SSL_CERT_FILE: dir.path }).error).toBe(
      `cannot read the CA certificate file ${dir.path} named by SSL_CERT_FILE: not a regular file; point SSL_CERT_FILE at a PEM file, or unset it to use the default roots`,
    );
  });
});
