/**
 * bench/relay --tls: one self-signed key and certificate (made with openssl) for every TLS
 * endpoint of the run — the MTAs' smtpd and the sink — and the main.cf lines that turn
 * STARTTLS on in both directions, the same for Postactor and Postfix: smtpd offers it
 * (`smtpd_tls_security_level = may`), the client uses it when offered
 * (`smtp_tls_security_level = may`, certificates not verified, as Postfix's `may`).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface BenchTls {
  keyFile: string;
  certFile: string;
  key: string;
  cert: string;
}

export function benchCertificate(): BenchTls {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-tls-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '7', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  return { keyFile, certFile, key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
}

export function tlsMainCf(t: BenchTls): string {
  return [
    'smtpd_tls_security_level = may',
    `smtpd_tls_cert_file = ${t.certFile}`,
    `smtpd_tls_key_file = ${t.keyFile}`,
    'smtp_tls_security_level = may',
    '',
  ].join('\n');
}
