/**
 * bench/relay --tls: one self-signed key and certificate (made with openssl) for every TLS
 * endpoint of the run — the MTAs' smtpd and the sink — and the main.cf lines that turn
 * STARTTLS on in both directions, the same for Postactor and Postfix: smtpd offers it
 * (`smtpd_tls_security_level = may`), the client uses it when offered
 * (`smtp_tls_security_level = may`, certificates not verified, as Postfix's `may`). --tls-cert
 * ecdsa makes the key a P-256 one instead of RSA-2048 (the same for both MTAs and the sink).
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

export function benchCertificate(kind: 'rsa' | 'ecdsa' = 'rsa'): BenchTls {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-tls-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  const alg = kind === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  execFileSync('openssl', ['req', '-x509', ...alg, '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', '7', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  return { keyFile, certFile, key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
}

/**
 * The TLS lines of both MTAs' main.cf. Everything else stays at Postfix's defaults on both sides:
 * smtpd issues session tickets (smtpd_tls_session_cache_timeout = 3600s; Postfix's tlsmgr and
 * Postactor's shared ticket keys), no server-side session cache database, and the client keeps no
 * sessions (smtp_tls_session_cache_database empty) and no TLS connections
 * (smtp_tls_connection_reuse = no). `clientCache` (--tls-cache) gives both clients the session
 * cache that Debian's shipped main.cf sets, so their handshakes with the sink resume: Postfix's
 * through tlsmgr's btree file in its data_directory, Postactor's shared by its smtp threads in
 * memory (the file name is not used).
 */
export function tlsMainCf(t: BenchTls, clientCache = false): string {
  return [
    'smtpd_tls_security_level = may',
    `smtpd_tls_cert_file = ${t.certFile}`,
    `smtpd_tls_key_file = ${t.keyFile}`,
    'smtp_tls_security_level = may',
    ...(clientCache ? ['smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache'] : []),
    '',
  ].join('\n');
}
