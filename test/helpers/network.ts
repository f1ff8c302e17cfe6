import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NETWORK_VARIABLES } from '../../src/cli/network.js';

/** A private CA and a server certificate it signed, for `localhost` and `127.0.0.1`. */
export interface TestCertificates {
  /** The CA's certificate (PEM file): what `CODEX_CA_CERTIFICATE` points at. */
  caPath: string;
  caPem: string;
  /** The server's key and certificate (PEM). */
  key: string;
  cert: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    throw new Error(`openssl ${args[0] ?? ''} failed (the TLS tests need the openssl command; CI installs it): ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Makes a throwaway CA and a server certificate in `dir` with the `openssl` command (Node.js can
 * sign nothing itself). P-256 keys, valid for a day; nothing outside `dir` is touched.
 */
export function makeTestCertificates(dir: string, name = 'test'): TestCertificates {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${name}-ca.key`,
      '-out',
      `${name}-ca.pem`,
      '-days',
      '1',
      '-subj',
      `/CN=${name} test CA`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  openssl(['req', ...ec, '-keyout', `${name}-server.key`, '-out', `${name}-server.csr`, '-subj', '/CN=localhost'], dir);
  writeFileSync(
    join(dir, `${name}-server.ext`),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}-server.csr`,
      '-CA',
      `${name}-ca.pem`,
      '-CAkey',
      `${name}-ca.key`,
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      `${name}-server.ext`,
      '-out',
      `${name}-server.pem`,
    ],
    dir,
  );
  return {
    caPath: join(dir, `${name}-ca.pem`),
    caPem: readFileSync(join(dir, `${name}-ca.pem`), 'utf8'),
    key: readFileSync(join(dir, `${name}-server.key`), 'utf8'),
    cert: readFileSync(join(dir, `${name}-server.pem`), 'utf8'),
  };
}

/**
 * `env` without the machine's own proxy and CA variables (every one the server reads), then
 * `set` on top: a test that starts a server process decides these itself.
 */
export function networkEnv(env: NodeJS.ProcessEnv, set: Record<string, string> = {}): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = { ...env };
  for (const name of NETWORK_VARIABLES) delete result[name];
  return { ...result, ...set };
}

/**
 * `[program, args]` to run `program args…` in a network namespace of its own (bubblewrap, the
 * rest of the machine as it is): a test of a refusal to listen on a non-loopback address never
 * binds a real one, even when the refusal is broken.
 */
export function inPrivateNetwork(program: string, args: string[]): [string, string[]] {
  return ['bwrap', ['--unshare-net', '--dev-bind', '/', '/', '--die-with-parent', '--', program, ...args]];
}
