/**
 * A test certificate authority made with openssl in a directory: ca.pem (the CA, to trust)
 * and server.key / server.pem, a certificate it signs for the given DNS names. EC keys, so it
 * takes milliseconds; valid for two days from now (no test depends on the date beyond that).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCertificates {
  /** The CA certificate (PEM), and its file. */
  ca: Buffer;
  caFile: string;
  /** The server's key and certificate (PEM). */
  key: Buffer;
  cert: Buffer;
}

export function makeTestCertificates(dir: string, names: readonly string[]): TestCertificates {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Postactor Test CA');
  run('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${names[0]}`);
  writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
  const pem = (f: string) => readFileSync(join(dir, f));
  return { ca: pem('ca.pem'), caFile: join(dir, 'ca.pem'), key: pem('server.key'), cert: pem('server.pem') };
}
