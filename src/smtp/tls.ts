/**
 * The client side of TLS for the smtp and lmtp clients (Postfix's tls_client.c, tls_verify.c
 * and tls_misc.c's summary line), on node:tls.
 *
 *   new TlsEngine(options)            trust anchors (smtp_tls_CAfile / _CApath), client
 *                                     certificate (smtp_tls_cert_file / _key_file), logging
 *   engine.start(socket, peer, policy) the handshake on a connected socket (after STARTTLS,
 *                                     or at once in wrapper mode); resolves with the TLS
 *                                     socket and whether the certificate matched the policy
 *
 * Trust: only the configured CAs. Postfix's default is no CA file, and then no certificate is
 * trusted (tls_append_default_CA = no): Node's bundled roots are never used.
 *
 * Classification, as Postfix logs it: Untrusted (chain not verified), Trusted (chain verified,
 * no name required or none matched), Verified (the name — or the fingerprint — matched as the
 * level requires). Names are matched here, not by Node (which checks against "localhost" when
 * given a socket): DNS subjectAltNames, else the CN; "nexthop", "dot-nexthop", "hostname",
 * "name" and ".name" (any subdomain) as in smtp_tls_secure_cert_match; "*.example.com" in a
 * certificate stands for one label (no partial wildcards, RFC 6125).
 *
 * Sessions: with smtp_tls_session_cache_database set, the last session per peer and policy is
 * offered on the next handshake by any smtp thread (tls-sessions.ts: shared by the threads, as
 * tlsmgr shares Postfix's cache). Node skips its own checks on resumption; ours run either way
 * (the peer certificate comes back with the session), so a resumed session is held to the same
 * policy.
 */

import { metrics } from '../metrics/thread.js';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type * as net from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';

import { mustMatch, protocolRange, type TlsPolicy } from './tls-policy.js';
import { fingerprint, spki } from '../tls/fingerprint.js';
import type { TlsSessionCache } from './tls-sessions.js';

export interface TlsEngineOptions {
  CAfile: string;
  CApath: string;
  certFile: string;
  keyFile: string;
  loglevel: number;
  fingerprintDigest: string;
  /** ms for the handshake (smtp_starttls_timeout). */
  timeout: number;
  /** Sessions offered again on the next handshake (smtp_tls_session_cache_database); null: none. */
  sessions: TlsSessionCache | null;
  /** tls_eecdh_auto_curves + tls_ffdhe_auto_groups (src/tls/openssl-options.ts); undefined: OpenSSL's. */
  groups?: string | undefined;
  /** tls_ssl_options as OpenSSL option bits. */
  secureOptions?: number;
  info: (text: string) => void;
  warn: (text: string) => void;
}

/** Who we talk to: for names in checks and log lines. */
export interface TlsPeer {
  host: string;
  addr: string;
  port: number;
  /** The next-hop domain (no brackets, no port): "nexthop" in match lists. */
  nexthop: string;
  /** host[addr]:port as Postfix's namaddr. */
  namaddr: string;
}

export type Started =
  | { ok: true; socket: tls.TLSSocket; matched: boolean }
  | { ok: false };

/** PEM certificates in a file. */
function pemCerts(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

export class TlsEngine {
  /** Trust anchors; empty: nothing is trusted (Postfix without CAfile/CApath). */
  private readonly ca: string[] = [];
  private readonly cert?: Buffer;
  private readonly key?: Buffer;
  /** Why TLS cannot be started at all (unreadable files), or null. */
  readonly unavailable: string | null = null;
  private readonly sessions: TlsSessionCache | null;
  /** OpenSSL contexts by protocol range and cipher list (context()). */
  private readonly contexts = new Map<string, tls.SecureContext>();

  constructor(private readonly o: TlsEngineOptions) {
    this.sessions = o.sessions;
    try {
      if (o.CAfile !== '') this.ca.push(...pemCerts(readFileSync(o.CAfile, 'utf8')));
      if (o.CApath !== '') {
        for (const name of readdirSync(o.CApath)) {
          const p = join(o.CApath, name);
          if (statSync(p).isFile()) this.ca.push(...pemCerts(readFileSync(p, 'utf8')));
        }
      }
      if (o.certFile !== '') {
        this.cert = readFileSync(o.certFile);
        this.key = readFileSync(o.keyFile || o.certFile);
      }
    } catch (e) {
      this.unavailable = (e as Error).message;
      o.warn(`cannot load TLS client certificates or Certification Authority data: ${(e as Error).message}: disabling TLS support`);
    }
  }

  /**
   * The OpenSSL context of a protocol range and cipher list, made once and kept: building one
   * (trust anchors, client certificate and key parsed anew, cipher list compiled) cost more per
   * delivery than the rest of the client's handshake work. The settings are fixed for the
   * engine's life (a reload makes a new engine), so a context is reused only for identical
   * options; sessions are never resumed through it (Node's contexts keep no client sessions:
   * only the `session` offered below, from smtp_tls_session_cache_database, is).
   */
  private context(range: { min: tls.SecureVersion; max: tls.SecureVersion }, cipherList: string | undefined): tls.SecureContext {
    const id = `${range.min}|${range.max}|${cipherList ?? ''}`;
    let ctx = this.contexts.get(id);
    if (ctx === undefined) {
      ctx = tls.createSecureContext({
        ca: this.ca,
        minVersion: range.min,
        maxVersion: range.max,
        ...(cipherList ? { ciphers: cipherList } : {}),
        ...(this.cert ? { cert: this.cert, key: this.key! } : {}),
        ...(this.o.groups !== undefined ? { ecdhCurve: this.o.groups } : {}),
        ...(this.o.secureOptions !== undefined ? { secureOptions: this.o.secureOptions } : {}),
      });
      // Bounded: policy tables name few distinct protocol/cipher combinations.
      if (this.contexts.size >= 64) this.contexts.clear();
      this.contexts.set(id, ctx);
    }
    return ctx;
  }

  /** The TLS handshake on `socket` under `policy` (not 'invalid', not 'none'). */
  async start(socket: net.Socket, peer: TlsPeer, policy: Exclude<TlsPolicy, { level: 'invalid' }>): Promise<Started> {
    const range = protocolRange(policy.protocols);
    if (range === null) {
      this.o.warn(`${peer.namaddr}: Invalid TLS protocol list "${policy.protocols}": aborting TLS session`);
      return { ok: false };
    }
    const key = `${peer.nexthop}|${peer.host}|${peer.namaddr}|${policy.level}|${policy.match.join(':')}|${policy.protocols}|${policy.grade}`;
    const sni = policy.servername === 'hostname' ? peer.host : policy.servername === 'nexthop' ? peer.nexthop : policy.servername;
    const session = this.sessions?.get(key);
    let pending: Buffer | null = null;
    let keep = false;
    let s: tls.TLSSocket;
    try {
      s = tls.connect({
        socket,
        secureContext: this.context(range, ciphers(policy.grade, policy.exclude)),
        rejectUnauthorized: false,
        checkServerIdentity: () => undefined, // names are checked below, per policy
        ...(sni !== '' ? { servername: sni } : {}),
        ...(session ? { session } : {}),
      });
      // A 'session' listener makes Node serialize every ticket the server sends: only with a cache.
      if (this.sessions) s.on('session', (session: Buffer) => { if (keep) this.sessions?.set(key, session); else pending = session; });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timeout')), this.o.timeout);
        s.once('secureConnect', () => { clearTimeout(timer); s.removeListener('error', onError); resolve(); });
        const onError = (e: Error) => { clearTimeout(timer); reject(e); };
        s.once('error', onError);
      });
    } catch (e) {
      // The peer is in an unknown state: this connection is finished.
      this.sessions?.delete(key);
      socket.destroy();
      this.o.info(`SSL_connect error to ${peer.namaddr}: ${(e as Error).message === 'timeout' ? 'timeout' : '-1'}`);
      if ((e as Error).message !== 'timeout') this.o.warn(`TLS library problem: ${(e as Error).message}`);
      return { ok: false };
    }
    // The peer's certificate as an object (a parse and a copy of every field) only when a check
    // or a log line needs it: not at level may with smtp_tls_loglevel 0.
    const needCert = policy.level === 'fingerprint' || mustMatch(policy.level) || this.o.loglevel >= 1;
    const cert = needCert ? s.getPeerCertificate() : ({} as tls.PeerCertificate);
    const present = cert !== null && Object.keys(cert).length > 0;
    const trusted = present && s.authorized;
    let matched = false;
    if (policy.level === 'fingerprint') matched = present && fingerprintMatches(cert, policy.match, this.o.fingerprintDigest);
    else if (mustMatch(policy.level)) matched = trusted && nameMatches(cert, policy.match.map((m) => reference(m, peer)));
    const secured = matched && mustMatch(policy.level);
    if (mustMatch(policy.level) && !matched) {
      // Postfix logs why at every log level when the level requires a match.
      const err = present ? (s.authorizationError as unknown as string | null) : null;
      this.o.info(verifyFailure(peer.namaddr, present, trusted, err, cert));
    }
    if (this.o.loglevel >= 1) this.o.info(summary(s, peer, !present ? 'Anonymous' : secured ? 'Verified' : trusted ? 'Trusted' : 'Untrusted', cert));
    metrics().smtpTls.inc({ protocol: s.getProtocol() ?? '', cipher: s.getCipher().name });
    if (!mustMatch(policy.level) || matched) {
      keep = true;
      if (pending) this.sessions?.set(key, pending);
    } else {
      this.sessions?.delete(key);
    }
    return { ok: true, socket: s, matched };
  }
}

/** OpenSSL cipher list for a Postfix grade plus exclusions; undefined: Node's default. */
function ciphers(grade: string, exclude: string[]): string | undefined {
  const base = grade.toLowerCase() === 'high' ? 'HIGH:!aNULL:!eNULL' : exclude.length > 0 ? tls.DEFAULT_CIPHERS : undefined;
  if (base === undefined) return undefined;
  return [base, ...exclude.map((x) => `!${x}`)].join(':');
}

/** A match-list word as a reference name: "nexthop", "dot-nexthop", "hostname" or literal. */
function reference(word: string, peer: TlsPeer): string {
  const w = word.toLowerCase();
  if (w === 'nexthop') return peer.nexthop.toLowerCase();
  if (w === 'dot-nexthop') return `.${peer.nexthop.toLowerCase()}`;
  if (w === 'hostname') return peer.host.toLowerCase();
  return w;
}

/** The certificate's DNS names: subjectAltName DNS entries, else the subject CN. */
function certNames(cert: tls.PeerCertificate): string[] {
  const sans = (cert.subjectaltname ?? '').split(/,\s*/).filter((x) => x.startsWith('DNS:')).map((x) => x.slice(4).toLowerCase());
  if (sans.length > 0) return sans;
  const cn = cert.subject?.CN;
  return cn ? [String(cn).toLowerCase()] : [];
}

function nameMatches(cert: tls.PeerCertificate, refs: string[]): boolean {
  const names = certNames(cert);
  for (const ref of refs) {
    if (ref === '' || ref === '.') continue;
    for (const name of names) {
      if (ref.startsWith('.')) {
        // Any subdomain of ref; a wildcard name stands for a label of one.
        if (name.endsWith(ref) && name.length > ref.length) return true;
      } else if (name === ref) {
        return true;
      } else if (name.startsWith('*.')) {
        const dot = ref.indexOf('.');
        if (dot > 0 && ref.slice(dot) === name.slice(1)) return true;
      }
    }
  }
  return false;
}

function fingerprintMatches(cert: tls.PeerCertificate, match: string[], digest: string): boolean {
  const norm = (s: string) => s.replace(/:/g, '').toUpperCase();
  const want = new Set(match.map(norm));
  const alg = digest.toLowerCase() || 'sha256';
  // Postfix digests the certificate's DER and its DER SubjectPublicKeyInfo (src/tls/fingerprint.ts).
  return want.has(norm(fingerprint(cert.raw, alg))) || want.has(norm(fingerprint(spki(cert.raw), alg)));
}

/** Postfix's tls_log_verify_error texts for what Node reports. */
function verifyFailure(namaddr: string, present: boolean, trusted: boolean, code: string | null, cert: tls.PeerCertificate): string {
  if (!present) return `server certificate verification failed for ${namaddr}: num=50:application verification failure`;
  if (trusted) return `server certificate verification failed for ${namaddr}: num=62:hostname mismatch`;
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT': return `certificate verification failed for ${namaddr}: self-signed certificate`;
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
      return `certificate verification failed for ${namaddr}: untrusted issuer ${oneline(cert.issuer)}`;
    case 'CERT_NOT_YET_VALID': return `server certificate verification failed for ${namaddr}: certificate not yet valid`;
    case 'CERT_HAS_EXPIRED': return `server certificate verification failed for ${namaddr}: certificate has expired`;
    case 'CERT_UNTRUSTED': return `certificate verification failed for ${namaddr}: not trusted by local or TLSA policy`;
    default: return `server certificate verification failed for ${namaddr}: ${code ?? 'unknown error'}`;
  }
}

/** X509_NAME_oneline: "/C=DE/O=Example/CN=Example CA". */
function oneline(name: tls.Certificate | undefined): string {
  if (!name) return '<unknown>';
  return Object.entries(name).map(([k, v]) => `/${k}=${Array.isArray(v) ? v.join(`/${k}=`) : String(v)}`).join('');
}

/** Cipher strength from its name (Node does not report bits). */
function cipherBits(name: string): number {
  if (/AES_?256|AES256|CHACHA20|CAMELLIA256|ARIA256/i.test(name)) return 256;
  if (/AES_?128|AES128|CAMELLIA128|ARIA128/i.test(name)) return 128;
  if (/3DES|DES-CBC3/i.test(name)) return 112;
  return 0;
}

/**
 * Postfix's tls_log_summary line: "Untrusted TLS connection established to
 * host[addr]:port: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange
 * X25519 server-signature RSA-PSS (2048 bits)". The key-exchange and signature details are
 * TLSv1.3-only, as in Postfix; Node does not expose the server's signature digest, so
 * "server-digest" is left out.
 */
function summary(s: tls.TLSSocket, peer: TlsPeer, kind: string, cert: tls.PeerCertificate): string {
  const c = s.getCipher();
  const version = s.getProtocol() ?? c.version;
  const bits = cipherBits(c.name);
  let text = `${kind} TLS connection established to ${peer.namaddr}: ${version} with cipher ${c.name} (${bits}/${bits} bits)`;
  if (version !== 'TLSv1.3') return text;
  const kex = s.getEphemeralKeyInfo() as { type?: string; name?: string; size?: number } | null;
  if (kex && kex.type === 'ECDH' && kex.name) text += /^X(25519|448)$/i.test(kex.name) ? ` key-exchange ${kex.name}` : ` key-exchange ECDHE (${kex.name})`;
  else if (kex && kex.type === 'DH' && kex.size) text += ` key-exchange DHE (${kex.size} bits)`;
  if (!s.isSessionReused() && cert?.raw) {
    try {
      const pk = new X509Certificate(cert.raw).publicKey;
      const d = pk.asymmetricKeyDetails ?? {};
      if (pk.asymmetricKeyType === 'rsa') text += ` server-signature RSA-PSS (${d.modulusLength} bits)`;
      else if (pk.asymmetricKeyType === 'ec') text += ` server-signature ECDSA (${d.namedCurve})`;
      else if (pk.asymmetricKeyType) text += ` server-signature ${pk.asymmetricKeyType.toUpperCase()}`;
    } catch { /* no signature detail */ }
  }
  return text;
}

