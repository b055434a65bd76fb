/**
 * Client certificates in smtpd, as Postfix's TLS library asks for and judges them (tls_server.c,
 * tls_verify.c, tls_fprint.c, tls_certkey.c):
 *
 *   ccertSettings(p, enforce, warn)        smtpd_tls_ask_ccert, smtpd_tls_req_ccert (effective only
 *                                          when TLS is required, else Postfix's warning), the CAs of
 *                                          smtpd_tls_CAfile / _CApath, smtpd_tls_ccert_verifydepth
 *                                          and smtpd_tls_fingerprint_digest
 *   peerCert(socket, settings)             what the client presented: CN, issuer CN, fingerprints,
 *                                          trusted or not (and why not)
 *   peerCertLine / verifyFailureLine       Postfix's "subject_CN=…" and "certificate verification
 *                                          failed for …" log lines
 *
 * The server asks with OpenSSL's SSL_VERIFY_PEER and never fails the handshake over the answer,
 * as Postfix: whether a missing or untrusted certificate matters is decided after it (the
 * smtpd_tls_req_ccert abort, the permit_tls_clientcerts / check_ccert_access restrictions).
 * Without smtpd_tls_CAfile and _CApath nothing is trusted (tls_append_default_CA = no).
 *
 * Differences that Node imposes: the CertificateRequest names every CA of smtpd_tls_CAfile and
 * smtpd_tls_CApath (Postfix names only those of the CAfile), and CApath is read as a directory
 * of PEM files at start-up (OpenSSL looks hashed names up as it needs them).
 */
import { getHashes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type * as tls from 'node:tls';
import type { Params } from '../config/declared.js';
import type { ClientCertInfo } from '../queue/types.js';
import { fingerprint, spki } from '../tls/fingerprint.js';

export interface CcertSettings {
  /** A certificate is requested (smtpd_tls_ask_ccert, or an effective smtpd_tls_req_ccert). */
  ask: boolean;
  /** smtpd_tls_ask_ccert as set: the Received line and the restrictions' warnings follow it. */
  askParam: boolean;
  /** smtpd_tls_req_ccert with TLS required: no trusted certificate, no session. */
  require: boolean;
  /** Trust anchors (PEM); empty: nothing is trusted. */
  ca: string[];
  verifyDepth: number;
  /** smtpd_tls_fingerprint_digest, as Node names it. */
  digest: string;
}

/** A presented certificate, with why it is not trusted (Node's verify error code) when it is not. */
export interface PeerCert extends ClientCertInfo {
  error: string | null;
  /** The issuer as X509_NAME_oneline prints it: "/CN=Example CA". */
  issuerLine: string;
}

/** What the client-certificate settings read (with smtpd's TLS set: tls.ts SMTPD_TLS_PARAMS). */
export const CCERT_PARAMS = {
  'smtpd_tls_ask_ccert': 'bool',
  'smtpd_tls_req_ccert': 'bool',
  'smtpd_tls_fingerprint_digest': 'str',
  'smtpd_tls_CAfile': 'str',
  'smtpd_tls_CApath': 'str',
  'smtpd_tls_ccert_verifydepth': 'int',
} as const;

/** The settings, from the values read; null after Postfix's warnings when TLS must be disabled (bad digest, unreadable CAs). */
export function ccertSettings(p: Params<typeof CCERT_PARAMS>, enforce: boolean, warn: (text: string) => void, info: (text: string) => void): CcertSettings | null {
  const askParam = p.smtpd_tls_ask_ccert;
  const req = p.smtpd_tls_req_ccert;
  // As Postfix: a certificate can be required only where TLS is, or plaintext would walk past it.
  if (req && !enforce) warn("Can't require client certs unless TLS is required");
  const require = req && enforce;
  const digestName = p.smtpd_tls_fingerprint_digest.trim();
  const digest = digestName.toLowerCase();
  if (!getHashes().includes(digest)) {
    warn(`Digest algorithm "${digestName}" not found`);
    warn('disabling TLS support');
    return null;
  }
  const CAfile = p.smtpd_tls_CAfile.trim();
  const CApath = p.smtpd_tls_CApath.trim();
  const ca: string[] = [];
  try {
    if (CAfile) ca.push(...pemCerts(readFileSync(CAfile, 'utf8')));
    if (CApath) {
      for (const name of readdirSync(CApath).sort()) {
        const file = join(CApath, name);
        if (statSync(file).isFile()) ca.push(...pemCerts(readFileSync(file, 'utf8')));
      }
    }
    if ((CAfile || CApath) && ca.length === 0) throw new Error('no certificates');
  } catch {
    const where = [CAfile ? `CAfile="${CAfile}"` : '', CApath ? `CApath="${CApath}"` : ''].filter(Boolean).join(', ');
    info(`cannot load Certification Authority data, ${where}: disabling TLS support`);
    return null;
  }
  return {
    ask: askParam || require,
    askParam,
    require,
    ca,
    verifyDepth: p.smtpd_tls_ccert_verifydepth,
    digest,
  };
}

function pemCerts(text: string): string[] {
  return text.match(/-----BEGIN (?:TRUSTED )?CERTIFICATE-----[\s\S]+?-----END (?:TRUSTED )?CERTIFICATE-----/g) ?? [];
}

/** Postfix's fingerprint format: upper-case hex pairs joined by colons. */
export { fingerprint } from '../tls/fingerprint.js';

/** The client's certificate after the handshake, or null when it presented none. */
export function peerCert(socket: tls.TLSSocket, s: CcertSettings): PeerCert | null {
  const cert = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | Record<string, never>;
  if (!cert || !('raw' in cert) || !cert.raw) return null;
  let error: string | null = socket.authorized ? null : String(socket.authorizationError ?? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  if (error === null) {
    // smtpd_tls_ccert_verifydepth: Postfix gives OpenSSL verifydepth + 1, which OpenSSL (≥ 1.1)
    // counts as the intermediate CAs between the leaf and the trust anchor.
    let depth = 0;
    const seen = new Set<string>([cert.fingerprint256]);
    for (let c = cert.issuerCertificate; c && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
      seen.add(c.fingerprint256);
      depth++;
    }
    if (depth - 1 > s.verifyDepth + 1) error = 'CERT_CHAIN_TOO_LONG';
  }
  return {
    cn: first(cert.subject?.CN),
    issuer: first(cert.issuer?.CN) || first(cert.issuer?.O),
    trusted: error === null,
    fingerprint: fingerprint(cert.raw, s.digest),
    pkeyFingerprint: fingerprint(spki(cert.raw), s.digest),
    error,
    issuerLine: oneline(cert.issuer),
  };
}


function first(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v[0] : v) ?? '';
}

/** X509_NAME_oneline: "/C=DE/O=Example/CN=Example CA". */
function oneline(name: tls.Certificate | undefined): string {
  if (!name) return '<unknown>';
  return Object.entries(name).map(([k, v]) => `/${k}=${Array.isArray(v) ? v.join(`/${k}=`) : String(v)}`).join('');
}

/** Postfix's line at smtpd_tls_loglevel ≥ 2 (TLS_LOG_VERBOSE): who the certificate names. */
export function peerCertLine(namaddr: string, p: PeerCert): string {
  return `${namaddr}: subject_CN=${p.cn}, issuer=${p.issuer}, fingerprint=${p.fingerprint}, pkey_fingerprint=${p.pkeyFingerprint}`;
}

/** Postfix's tls_log_verify_error for a client certificate that is not trusted. */
export function verifyFailureLine(namaddr: string, p: PeerCert, verifyDepth: number): string {
  switch (p.error) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT': return `certificate verification failed for ${namaddr}: self-signed certificate`;
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
      return `certificate verification failed for ${namaddr}: untrusted issuer ${p.issuerLine}`;
    case 'CERT_NOT_YET_VALID': return `client certificate verification failed for ${namaddr}: certificate not yet valid`;
    case 'CERT_HAS_EXPIRED': return `client certificate verification failed for ${namaddr}: certificate has expired`;
    case 'INVALID_PURPOSE': return `certificate verification failed for ${namaddr}: not designated for use as a client certificate`;
    case 'CERT_CHAIN_TOO_LONG': return `certificate verification failed for ${namaddr}: certificate chain longer than limit(${verifyDepth + 1})`;
    case 'CERT_UNTRUSTED': return `certificate verification failed for ${namaddr}: not trusted by local or TLSA policy`;
    default: return `client certificate verification failed for ${namaddr}: ${p.error ?? 'unknown error'}`;
  }
}

/** What the policy delegation protocol gets: subject and issuer only when trusted (xtext). */
export function ccertAttributes(c: ClientCertInfo | undefined): [string, string][] {
  const coded = (cn: string) => (c?.trusted && cn ? xtext(cn) : '');
  return [
    ['ccert_subject', coded(c?.cn ?? '')],
    ['ccert_issuer', coded(c?.issuer ?? '')],
    ['ccert_fingerprint', c?.fingerprint ?? ''],
    ['ccert_pubkey_fingerprint', c?.pkeyFingerprint ?? ''],
  ];
}

/** Postfix's xtext_quote: "+XX" for '+', '=' and anything outside printable ASCII. */
function xtext(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    out += b < 33 || b > 126 || b === 0x2b || b === 0x3d ? `+${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}
