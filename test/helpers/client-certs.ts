/**
 * Client certificates for TLS tests, made by openssl in a directory (EC P-256 keys, so it takes
 * milliseconds; valid for two days from now): certificates signed by the CA that test-ca.ts's
 * makeTestCertificates left there (ca.pem, ca.key), below intermediate CAs, self-signed ones,
 * and the fingerprints Postfix computes for them.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCert {
  cert: string;
  key: string;
  /** key + certificate in one file (smtpd_tls_chain_files, tls_server_sni_maps). */
  chain: string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function run(dir: string, ...args: string[]): string {
  return execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function withChain(dir: string, name: string): TestCert {
  const c = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`), chain: join(dir, `${name}-chain.pem`) };
  writeFileSync(c.chain, readFileSync(c.key, 'utf8') + readFileSync(c.cert, 'utf8'));
  return c;
}

/** A certificate for CN=cn signed by the test CA in dir (server and client use). */
export function signedCert(dir: string, name: string, cn: string): TestCert {
  run(dir, 'req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${cn}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  run(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  return withChain(dir, name);
}

/** A self-signed certificate for CN=cn. */
export function selfSignedCert(dir: string, name: string, cn: string): TestCert {
  run(dir, 'req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`);
  return withChain(dir, name);
}

/** `openssl x509 -fingerprint -sha256`: Postfix's form, "AB:CD:…". */
export function certFingerprint(cert: string): string {
  const out = run('/', 'x509', '-in', cert, '-noout', '-fingerprint', '-sha256');
  return out.trim().slice(out.indexOf('=') + 1).toUpperCase();
}

/** SHA-256 of the certificate's public key (DER SubjectPublicKeyInfo), in Postfix's form. */
export function pubkeyFingerprint(cert: string): string {
  const out = execFileSync('sh', ['-c', 'openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -c', 'sh', cert], { encoding: 'utf8' });
  return out.trim().slice(out.indexOf('=') + 1).trim().toUpperCase();
}

/**
 * A certificate for CN=cn below `levels` intermediate CAs under the test CA in dir; `intermediates`
 * is the file a client sends them in (nearest first: s_client -cert_chain).
 */
export function deepCert(dir: string, name: string, cn: string, levels: number): TestCert & { intermediates: string } {
  writeFileSync(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n');
  let issuer = 'ca';
  const chain: string[] = [];
  for (let i = 1; i <= levels; i++) {
    const int = `${name}-int${i}`;
    run(dir, 'req', ...EC, '-keyout', `${int}.key`, '-out', `${int}.csr`, '-subj', `/CN=${name} Intermediate ${i}`);
    run(dir, 'x509', '-req', '-in', `${int}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`, '-CAcreateserial', '-out', `${int}.pem`, '-days', '2', '-extfile', 'ca.ext');
    chain.unshift(readFileSync(join(dir, `${int}.pem`), 'utf8'));
    issuer = int;
  }
  run(dir, 'req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  run(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2');
  const intermediates = join(dir, `${name}-intermediates.pem`);
  writeFileSync(intermediates, chain.join(''));
  return { ...withChain(dir, name), intermediates };
}
