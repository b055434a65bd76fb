/**
 * TLS in smtpd: STARTTLS and wrapper mode as Postfix's smtpd does them, on smtp-server's TLS.
 *
 *   smtpdTls(p, warn)        the service's TLS settings (level, certificates, protocols,
 *                            ciphers); certificate problems are warned about as Postfix's
 *                            tls library does, and leave `context` null: STARTTLS is still
 *                            announced and answers "454 4.7.0 TLS not available due to local
 *                            problem", as Postfix's does
 *   serverOptions(tls)       the SMTPServer options that carry them
 *   installTls()             patches smtp-server's connection class (once per thread):
 *                            STARTTLS with Postfix's replies and smtpd_starttls_timeout
 *   tlsCommand               a check of smtpd's command table (after the dialect's counters,
 *                            so that they see its replies): at level encrypt "530 5.7.0 Must
 *                            issue a STARTTLS command first" for every command but HELO, EHLO,
 *                            XCLIENT, STARTTLS, NOOP and QUIT
 *   tlsSummary(socket)       what was negotiated (and the client's certificate, ccert.ts), for
 *                            the log line, the Received header and the restrictions
 *   establishedLine(…)       "Anonymous|Trusted|Untrusted TLS connection established from
 *                            host[addr] [to sni-name]: …"
 *
 * The context also carries the client-certificate CAs (ccert.ts), smtpd_tls_dh1024_param_file,
 * and the OpenSSL settings shared with Postfix's other TLS users (src/tls/openssl-options.ts:
 * tls_eecdh_auto_curves, tls_ffdhe_auto_groups, tls_ssl_options). tls_server_sni_maps is in
 * sni.ts. With smtpd_tls_req_ccert, the command after a handshake without a trusted certificate
 * is answered "421 4.7.1 <myhostname> Error: …" (index.ts decides, tlsCommand replies).
 *
 * What smtp-server already does the way Postfix does (smtp-server ≥ 3.21, checked by
 * test/e2e-smtpd-tls.test.ts): the plaintext a client pipelined after STARTTLS is thrown away,
 * never run inside the TLS session (the CVE-2011-0411 defence), and the HELO/EHLO name, any
 * MAIL transaction and the recipients are forgotten after the handshake.
 *
 * Not available from Node's server-side API: the key-exchange group and the signature digest
 * (SSL_get_peer_tmp_key / SSL_get_signature_nid), so the log line and the Received header stop
 * after "server-signature RSA-PSS (2048 bits)" where Postfix adds "key-exchange X25519" and
 * "server-digest SHA256". The cipher grades set the TLSv1.2-and-older cipher list only; the
 * TLSv1.3 suites stay OpenSSL's defaults, as with Postfix (whose grades do not touch them either).
 */
import { readFileSync } from 'node:fs';
import * as crypto from 'node:crypto';
import * as tls from 'node:tls';
import type { Config } from '../config/index.js';
import { valuesOf, type Params } from '../config/declared.js';
import type { TlsInfo } from '../queue/types.js';
import { keyExchangeGroups, sslOptions, TLS_LIBRARY_PARAMS } from '../tls/openssl-options.js';
import { CCERT_PARAMS, ccertSettings, peerCert, type CcertSettings, type PeerCert } from './ccert.js';
import type { Command } from './command.js';

export type TlsLevel = 'none' | 'may' | 'encrypt';

export interface SmtpdTls {
  /** STARTTLS is announced and accepted (Postfix's var_smtpd_use_tls). */
  use: boolean;
  /** smtpd_discard_ehlo_keywords names starttls: not announced, and answered 502. */
  discarded: boolean;
  /** TLS is required before mail (level encrypt, or wrapper mode). */
  enforce: boolean;
  /** smtpd_tls_wrappermode: the handshake comes first, then the 220 greeting. */
  wrapper: boolean;
  /** The secure-context options, or null: no usable certificate (STARTTLS answers 454). */
  context: tls.SecureContextOptions | null;
  loglevel: number;
  receivedHeader: boolean;
  /** smtpd_starttls_timeout, ms. */
  starttlsTimeout: number;
  /** Client certificates (null when TLS is off or unusable). */
  ccert: CcertSettings | null;
}

/** What a TLS session negotiated (stored with the message for the Received header). */
export type TlsSummary = TlsInfo;

/**
 * What smtpd's TLS reads (smtpd declares these with its own: actors/smtpd/index.ts), with the
 * client certificates' set (ccert.ts) and the TLS library options (src/tls/openssl-options.ts).
 * tls_server_sni_maps is actors/smtpd/sni.ts's.
 */
export const SMTPD_TLS_PARAMS = {
  ...TLS_LIBRARY_PARAMS,
  ...CCERT_PARAMS,
  'smtpd_tls_security_level': 'str',
  'smtpd_enforce_tls': 'bool',
  'smtpd_use_tls': 'bool',
  'smtpd_tls_wrappermode': 'bool',
  'smtpd_discard_ehlo_keywords': 'list',
  'smtpd_tls_loglevel': 'str',
  'smtpd_tls_received_header': 'bool',
  'smtpd_starttls_timeout': 'time',
  'smtpd_tls_protocols': 'str',
  'smtpd_tls_mandatory_protocols': 'str',
  'smtpd_tls_session_cache_timeout': 'time',
  'tls_preempt_cipherlist': 'bool',
  'smtpd_tls_dh1024_param_file': 'str',
  'smtpd_tls_chain_files': 'list',
  'smtpd_tls_cert_file': 'str',
  'smtpd_tls_key_file': 'str',
  'smtpd_tls_eccert_file': 'str',
  'smtpd_tls_eckey_file': 'str',
  'smtpd_tls_ciphers': 'str',
  'smtpd_tls_mandatory_ciphers': 'str',
  'tls_high_cipherlist': 'str',
  'tls_medium_cipherlist': 'str',
  'tls_null_cipherlist': 'str',
  'smtpd_tls_exclude_ciphers': 'list',
  'smtpd_tls_mandatory_exclude_ciphers': 'list',
} as const;
type SmtpdTlsParams = Params<typeof SMTPD_TLS_PARAMS>;

/** Postfix's tls_level_lookup for smtpd: fingerprint/verify/secure are encrypt with a warning. */
function levelOf(p: SmtpdTlsParams, warn: (text: string) => void): TlsLevel {
  const level = p.smtpd_tls_security_level.trim().toLowerCase();
  switch (level) {
    case '':
      // The obsolete switches decide when the level is empty.
      if (p.smtpd_enforce_tls) return 'encrypt';
      return p.smtpd_use_tls ? 'may' : 'none';
    case 'none': case 'may': case 'encrypt':
      return level;
    case 'fingerprint': case 'verify': case 'secure':
      warn(`smtpd_tls_security_level: unsupported TLS level "${level}", using "encrypt"`);
      return 'encrypt';
    default:
      throw new Error(`Invalid TLS level "${level}"`);
  }
}

/** What is wrong with the service's TLS level ("Invalid TLS level …"), or null: for postactor check. */
export function smtpdTlsProblem(from: Config | SmtpdTlsParams): string | null {
  const p = valuesOf(from, SMTPD_TLS_PARAMS, 'smtpd');
  try {
    levelOf(p, () => undefined);
    return null;
  } catch (err) {
    return `smtpd_tls_security_level = ${p.smtpd_tls_security_level}: ${(err as Error).message}`;
  }
}

/** TLS is required (level encrypt, or wrapper mode): Postfix then forces smtpd_tls_auth_only on. */
export function smtpdTlsEnforced(from: Config | SmtpdTlsParams): boolean {
  const p = valuesOf(from, SMTPD_TLS_PARAMS, 'smtpd');
  if (p.smtpd_tls_wrappermode) return true;
  try {
    return levelOf(p, () => undefined) === 'encrypt';
  } catch {
    return false;
  }
}

/**
 * The service's TLS settings, from the values smtpd read (or read here from a configuration).
 * Certificates are read here, so a reload re-reads them.
 */
export function smtpdTls(from: Config | SmtpdTlsParams, warn: (text: string) => void, info: (text: string) => void = () => undefined): SmtpdTls {
  const p = valuesOf(from, SMTPD_TLS_PARAMS, 'smtpd');
  const wrapper = p.smtpd_tls_wrappermode;
  // As Postfix: the level is ignored in wrapper mode, which always requires TLS.
  const level = wrapper ? 'encrypt' : levelOf(p, warn);
  const use = level !== 'none';
  const enforce = level === 'encrypt';
  const settings: SmtpdTls = {
    use,
    discarded: p.smtpd_discard_ehlo_keywords.some((k) => k.toLowerCase() === 'starttls'),
    enforce,
    wrapper,
    context: null,
    loglevel: Number.parseInt(p.smtpd_tls_loglevel, 10) || 0,
    receivedHeader: p.smtpd_tls_received_header,
    starttlsTimeout: p.smtpd_starttls_timeout * 1000,
    ccert: null,
  };
  if (!use) return settings;
  const ccert = ccertSettings(p, enforce, warn, info);
  if (ccert === null) return settings;
  const certs = loadCertificates(p, warn);
  if (certs === null) return settings;
  const protocols = enforce ? p.smtpd_tls_mandatory_protocols : p.smtpd_tls_protocols;
  const versions = protocolRange(protocols);
  if (versions === null) {
    warn(`Invalid TLS protocol list "${protocols}": disabling TLS support`);
    return settings;
  }
  const ciphers = cipherList(p, enforce, ccert.ask, warn);
  if (ciphers === null) return settings;
  const dhparam = dhParameters(p, warn);
  const groups = keyExchangeGroups(p, warn);
  let secureOptions = sslOptions(p, warn);
  // smtpd_tls_session_cache_timeout: 0 turns session tickets off; otherwise Postfix makes a
  // session live twice as long, as long as its ticket keys decrypt (tls_server.c).
  const lifetime = p.smtpd_tls_session_cache_timeout;
  if (lifetime === 0) secureOptions = (secureOptions | crypto.constants.SSL_OP_NO_TICKET) >>> 0;
  const context: tls.SecureContextOptions = {
    key: certs.keys,
    cert: certs.certs,
    minVersion: versions.min,
    maxVersion: versions.max,
    ciphers,
    honorCipherOrder: p.tls_preempt_cipherlist,
    secureOptions,
    // The client-certificate trust anchors; an empty list trusts nothing (not Node's roots).
    ca: ccert.ca,
    dhparam,
    ...(groups ? { ecdhCurve: groups } : {}),
    ...(lifetime === 0 ? {} : { sessionTimeout: 2 * lifetime }),
  };
  try {
    tls.createSecureContext(context);
  } catch (err) {
    warn(`TLS library problem: ${(err as Error).message}`);
    return settings;
  }
  settings.context = context;
  settings.ccert = ccert;
  return settings;
}

/**
 * smtpd_tls_dh1024_param_file: DH parameters for the TLSv1.2 DHE ciphers. Empty: a built-in
 * 2048-bit group (Postfix's own; here OpenSSL's, chosen by key size as "auto").
 */
function dhParameters(p: SmtpdTlsParams, warn: (text: string) => void): string | Buffer {
  const file = p.smtpd_tls_dh1024_param_file.trim();
  if (!file || file === 'auto') return 'auto';
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    warn(`error opening DH parameter file "${file}": ${osError(err)} -- using compiled-in defaults`);
    return 'auto';
  }
  try {
    tls.createSecureContext({ dhparam: pem });
  } catch {
    warn(`error decoding DH parameters from file "${file}" -- using compiled-in defaults`);
    return 'auto';
  }
  return pem;
}

/** The keys and certificate chains, one per algorithm; null (after warnings) when unusable. */
function loadCertificates(p: SmtpdTlsParams, warn: (text: string) => void): { keys: string[]; certs: string[] } | null {
  const chainFiles = p.smtpd_tls_chain_files;
  const certFile = p.smtpd_tls_cert_file.trim();
  const ecCertFile = p.smtpd_tls_eccert_file.trim();
  if (chainFiles.length > 0) {
    if (certFile || ecCertFile) {
      // Postfix's text, with its double spaces.
      warn('Both smtpd_tls_chain_files and one or more of the legacy  smtpd_tls_cert_file, smtpd_tls_eccert_file or smtpd_tls_dcert_file are non-empty; the legacy  parameters will be ignored');
    }
    return loadChainFiles(chainFiles, warn);
  }
  if (!certFile && !ecCertFile) {
    warn("No server certs available. TLS won't be enabled");
    return null;
  }
  const keys: string[] = [];
  const certs: string[] = [];
  for (const [type, cert, key] of [['RSA', certFile, p.smtpd_tls_key_file.trim()], ['ECDSA', ecCertFile, p.smtpd_tls_eckey_file.trim()]] as const) {
    if (!cert) continue;
    const pair = loadPair(type, cert, key || cert, warn);
    if (pair === null) return null;
    keys.push(pair.key);
    certs.push(pair.cert);
  }
  return { keys, certs };
}

/** One legacy cert_file/key_file pair, checked as Postfix's tls_certkey.c does. */
function loadPair(type: string, certFile: string, keyFile: string, warn: (text: string) => void): { key: string; cert: string } | null {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(certFile, 'utf8');
    new crypto.X509Certificate(cert);
  } catch (err) {
    warn(`cannot get ${type} certificate from file "${certFile}": disabling TLS support`);
    warn(`TLS library problem: ${libraryProblem(err)}`);
    return null;
  }
  let privateKey: crypto.KeyObject;
  try {
    key = readFileSync(keyFile, 'utf8');
    privateKey = crypto.createPrivateKey(key);
  } catch (err) {
    warn(`cannot get ${type} private key from file "${keyFile}": disabling TLS support`);
    warn(`TLS library problem: ${libraryProblem(err)}`);
    return null;
  }
  if (!new crypto.X509Certificate(cert).checkPrivateKey(privateKey)) {
    warn(`${type} private key in ${keyFile} does not match public key in ${certFile}: disabling TLS support`);
    return null;
  }
  return { key, cert };
}

const PEM = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** smtpd_tls_chain_files: each file holds a key, then its certificate and chain (more may follow). */
function loadChainFiles(files: string[], warn: (text: string) => void): { keys: string[]; certs: string[] } | null {
  const keys: string[] = [];
  const certs: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      warn(`error opening chain file: ${file}: ${osError(err)}`);
      return null;
    }
    const chains = chainFromText(text, file, warn);
    if (chains === null) return null;
    keys.push(...chains.keys);
    certs.push(...chains.certs);
  }
  return { keys, certs };
}

/**
 * The keys and chains in PEM text (a chain file, or the files an SNI table names): each key
 * first, then its certificate and chain; null after Postfix's warning when the order is wrong.
 */
export function chainFromText(text: string, file: string, warn: (text: string) => void): { keys: string[]; certs: string[] } | null {
  const keys: string[] = [];
  const certs: string[] = [];
  const objects = [...text.matchAll(PEM)].map((m) => ({ type: m[1]!, pem: m[0] }));
  if (objects.length === 0) {
    warn(`No PEM data in ${file}`);
    return null;
  }
  let chain: string[] | null = null;
  const close = (): boolean => {
    if (chain === null) return true;
    if (chain.length === 0) {
      warn(`No certs for key at index ${keys.length - 1} in ${file}`);
      return false;
    }
    certs.push(chain.join('\n'));
    const i = keys.length - 1;
    try {
      if (!new crypto.X509Certificate(certs[i]!).checkPrivateKey(crypto.createPrivateKey(keys[i]!))) {
        warn(`key at index ${i} in ${file} does not match next certificate`);
        return false;
      }
    } catch (err) {
      warn(`error loading private keys and certificates from: ${file}: ${libraryProblem(err)}`);
      return false;
    }
    return true;
  };
  for (const o of objects) {
    if (o.type.endsWith('PRIVATE KEY')) {
      if (!close()) return null;
      keys.push(o.pem);
      chain = [];
    } else if (o.type === 'CERTIFICATE') {
      if (chain === null) {
        warn(`error loading chain from ${file}: key not first`);
        return null;
      }
      chain.push(o.pem);
    } else {
      warn(`loading ${file}: ignoring PEM type: ${o.type}`);
    }
  }
  if (chain === null) {
    warn(`No private key found in ${file}`);
    return null;
  }
  if (!close()) return null;
  return { keys, certs };
}

export function osError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'No such file or directory';
  if (code === 'EACCES') return 'Permission denied';
  return (err as Error).message;
}

function libraryProblem(err: unknown): string {
  return (err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EACCES' ? osError(err) : (err as Error).message;
}

const VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
type Version = (typeof VERSIONS)[number];
const HEX: Record<string, Version | 'SSLv3'> = { '0300': 'SSLv3', '0301': 'TLSv1', '0302': 'TLSv1.1', '0303': 'TLSv1.2', '0304': 'TLSv1.3' };

/**
 * smtpd_tls_protocols / _mandatory_protocols as Node's minVersion/maxVersion: ">=TLSv1.2",
 * "<=TLSv1.3", hex "0303", or the legacy "!SSLv2, !SSLv3" / "TLSv1.2, TLSv1.3" lists. Node
 * has a range only, so a hole (TLSv1 and TLSv1.2 but not TLSv1.1) becomes the range above it.
 * Null when the list is invalid (Postfix then disables TLS).
 */
export function protocolRange(list: string): { min: Version; max: Version } | null {
  let floor = 0;
  let ceiling = VERSIONS.length - 1;
  const include = new Set<number>();
  const exclude = new Set<number>();
  const indexOf = (name: string): number | null => {
    const n: string = HEX[name.toLowerCase().padStart(4, '0')] ?? name;
    if (n === 'SSLv2' || n === 'SSLv3') return -1; // known to Postfix, never offered by Node
    const i = VERSIONS.findIndex((v) => v.toLowerCase() === n.toLowerCase());
    return i >= 0 ? i : null;
  };
  for (const tok of list.split(/[\s,:]+/).filter(Boolean)) {
    if (tok.startsWith('>=') || tok.startsWith('<=')) {
      const name = tok.slice(2);
      if (name.toLowerCase() === 'none') continue;
      const i = indexOf(name);
      if (i === null) return null;
      if (tok.startsWith('>=')) floor = Math.max(floor, i);
      else ceiling = Math.min(ceiling, i);
    } else if (tok.startsWith('!')) {
      const i = indexOf(tok.slice(1));
      if (i === null) return null;
      if (i >= 0) exclude.add(i);
    } else {
      const i = indexOf(tok);
      if (i === null) return null;
      if (i >= 0) include.add(i);
    }
  }
  const allowed: number[] = [];
  for (let i = floor; i <= ceiling; i++) if (!exclude.has(i) && (include.size === 0 || include.has(i))) allowed.push(i);
  if (allowed.length === 0) return null;
  // The highest contiguous run: never allow a version the list excludes.
  let lo = allowed[allowed.length - 1]!;
  while (allowed.includes(lo - 1)) lo--;
  return { min: VERSIONS[lo]!, max: VERSIONS[allowed[allowed.length - 1]!]! };
}

/** Postfix's tls_set_ciphers: the grade's cipherlist, then ":!x" per exclusion. */
function cipherList(p: SmtpdTlsParams, enforce: boolean, askCcert: boolean, warn: (text: string) => void): string | null {
  const grade = (enforce ? p.smtpd_tls_mandatory_ciphers : p.smtpd_tls_ciphers).trim().toLowerCase();
  let list: string;
  switch (grade) {
    case 'high': list = p.tls_high_cipherlist; break;
    case 'medium': case 'low': case 'export': list = p.tls_medium_cipherlist; break;
    case 'null': list = p.tls_null_cipherlist; break;
    default:
      warn(`invalid cipher grade: "${grade}"`);
      return null;
  }
  // Anonymous ciphers cannot carry a client certificate: Postfix excludes them when it asks for one.
  const exclusions = [...p.smtpd_tls_exclude_ciphers, ...(enforce ? p.smtpd_tls_mandatory_exclude_ciphers : []), ...(askCcert ? ['aNULL'] : [])];
  for (const tok of exclusions.flatMap((e) => e.split(':')).filter(Boolean)) {
    if ('!+-@'.includes(tok[0]!)) {
      warn(`invalid unary '!+-@' in cipher exclusion: ${tok}`);
      return null;
    }
    list += `:!${tok}`;
  }
  return list.trim();
}

/** The SMTPServer options for these settings (TLS context, wrapper mode, our settings). */
export function serverOptions(t: SmtpdTls, ticketKeys: Buffer | undefined, sni?: (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void): Record<string, unknown> {
  return {
    // Wrapper mode without a usable certificate: the listener drops each connection
    // (index.ts), as Postfix's smtpd does; never smtp-server's built-in test certificate.
    secure: t.wrapper && t.context !== null,
    ...(t.context ?? {}),
    ...(t.context && ticketKeys ? { ticketKeys } : {}),
    // A client certificate is asked for, never required by the handshake itself: what a missing
    // or untrusted one means is decided afterwards (smtpd_tls_req_ccert, the restrictions).
    ...(t.ccert?.ask ? { requestCert: true, rejectUnauthorized: false } : {}),
    ...(t.context && sni ? { SNICallback: sni } : {}),
    postactorTls: t,
  };
}

/**
 * Wrapper mode: smtp-server times the handshake with its idle timeout (smtpd_timeout); make it
 * smtpd_starttls_timeout, as Postfix's. The library's own timeout handler stays in charge.
 */
export function timeWrapperHandshake(server: object, t: SmtpdTls): void {
  const s = server as { _upgrade?: (socket: object, cb: unknown) => void; _pendingSockets?: Map<object, { setTimeout?(ms: number): void }> };
  const upgrade = s._upgrade;
  if (!t.wrapper || typeof upgrade !== 'function') return;
  s._upgrade = function (this: typeof s, socket: object, cb: unknown) {
    upgrade.call(this, socket, cb);
    const secure = this._pendingSockets?.get(socket);
    if (secure && secure !== socket) secure.setTimeout?.(t.starttlsTimeout);
  };
}

/** A connection as the patches see it (smtp-server's SMTPConnection, not exported). */
type Conn = {
  _server: { options: { postactorTls?: SmtpdTls } };
  _socket: { destroyed: boolean; destroy(): void };
  _upgrading: boolean;
  _ready: boolean;
  secure: boolean;
  session: { paStarttlsTimer?: NodeJS.Timeout };
  send(code: number, text: string, context?: unknown): void;
  upgrade(callback: () => void): void;
};

/** Commands Postfix allows before STARTTLS at level encrypt (SMTPD_CMD_FLAG_PRE_TLS). */
const PRE_TLS = new Set(['HELO', 'EHLO', 'XCLIENT', 'STARTTLS', 'NOOP', 'QUIT']);
/** Postfix's other commands (unknown ones stay "command not recognized"). */
const KNOWN = new Set(['XFORWARD', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'VRFY', 'ETRN']);

let installed = false;

/** Patches smtp-server's connection prototype (once per thread). */
export function installTls(proto: Record<string, unknown>): void {
  if (installed) return;
  installed = true;
  const p = proto as Record<string, unknown> & ThisType<Conn>;

  p.handler_STARTTLS = function (this: Conn, command: Buffer | string, callback: () => void) {
    const t = this._server.options.postactorTls;
    if (String(command).trim().split(/\s+/).length > 1) this.send(501, '5.5.4 Syntax: STARTTLS');
    else if (this.secure) this.send(554, '5.5.1 Error: TLS already active');
    else if (!t?.use || t.discarded) this.send(502, '5.5.1 Error: command not implemented');
    else if (t.context === null) this.send(454, '4.7.0 TLS not available due to local problem');
    else {
      this.send(220, '2.0.0 Ready to start TLS');
      // upgrade() retires the command parser with whatever plaintext it still holds.
      this.upgrade(callback);
      const timer = setTimeout(() => {
        if (this._upgrading && !this._socket.destroyed) this._socket.destroy();
      }, t.starttlsTimeout);
      timer.unref();
      this.session.paStarttlsTimer = timer;
      return;
    }
    callback();
  };

  // A STARTTLS handshake that fails: Postfix's lines (through the server's postactorTlsFailed)
  // instead of smtp-server's error event.
  const onError = p._onError as (this: Conn, err: Error) => void;
  p._onError = function (this: Conn, err: Error) {
    const failed = (this._server.options as { postactorTlsFailed?: (session: object, err: Error) => void }).postactorTlsFailed;
    if (!this._upgrading || !failed) return onError.call(this, err);
    const session = this.session as Conn['session'] & { paTlsFailed?: boolean; paCounters?: Record<string, [number, number]> };
    if (session.paTlsFailed) return;
    session.paTlsFailed = true;
    clearTimeout(session.paStarttlsTimer);
    // Postfix counts STARTTLS as successful only once the handshake is done ("starttls=0/1").
    const counter = session.paCounters?.['starttls'];
    if (counter && counter[0] > 0) counter[0]--;
    failed(this.session, err);
    (this as unknown as { close(): void }).close();
  };
}

/**
 * The command table's last check (actors/smtpd/commands.ts, after the dialect's counters): with
 * smtpd_tls_req_ccert and no trusted certificate, the command after the handshake is read, not
 * run, and answered 421 (Postfix's smtpd_start_tls), then the connection closes; at level
 * encrypt, "530 5.7.0 Must issue a STARTTLS command first".
 */
export function tlsCommand(conn: object, cmd: Command): boolean {
  const c = conn as Conn & { _paCommand?: string | null };
  const abort = (c.session as { paCcertAbort?: string }).paCcertAbort;
  if (abort !== undefined) {
    // Read, not run: the dialect's counter for it is taken back (Postfix never counts it).
    const counters = (c.session as { paCounters?: Record<string, [number, number]> }).paCounters;
    const counter = c._paCommand ? counters?.[c._paCommand] : undefined;
    if (counter && --counter[1] === 0) delete counters![c._paCommand!];
    c._paCommand = null;
    c.send(421, abort);
    return true;
  }
  const t = c._server.options.postactorTls;
  if (t?.enforce && !c.secure && !c._upgrading && c._ready) {
    const name = cmd.verb;
    if (KNOWN.has(name) && !PRE_TLS.has(name)) {
      c.send(530, '5.7.0 Must issue a STARTTLS command first');
      setImmediate(cmd.done);
      return true;
    }
  }
  return false;
}

/**
 * Postfix's lines for a failed handshake, in order: "SSL_accept error from host[addr]: -1" and
 * the library problem (or ": lost connection" when the client went away), then "lost
 * connection after STARTTLS (CONNECT in wrapper mode) from host[addr]".
 */
export function handshakeFailure(err: Error & { code?: string; meta?: { message?: string } }, namaddr: string, where: string): ['info' | 'warn', string][] {
  const library = /SSL routines|error:[0-9A-F]{8}:/.test(err.meta?.message ?? err.message) ? (err.meta?.message ?? err.message) : null;
  const lines: ['info' | 'warn', string][] = library === null
    ? [['info', `SSL_accept error from ${namaddr}: lost connection`]]
    : [['info', `SSL_accept error from ${namaddr}: -1`], ['warn', `TLS library problem: ${library.trim().replace(/^[0-9A-F]+:error:/, 'error:')}`]];
  lines.push(['info', `lost connection after ${where} from ${namaddr}`]);
  return lines;
}

/** Bits of the symmetric cipher (OpenSSL's SSL_CIPHER_get_bits), from its name. */
function cipherBits(name: string): number {
  if (/CHACHA20|AES_?256|AES256|CAMELLIA256|ARIA256/.test(name)) return 256;
  if (/AES_?128|AES128|CAMELLIA128|ARIA128|SM4/.test(name)) return 128;
  if (/3DES|DES-CBC3/.test(name)) return 168;
  return 0;
}

/** What this session negotiated, and the client's certificate when it was asked for. */
export function tlsSummary(socket: tls.TLSSocket, t: SmtpdTls): TlsSummary & { peer?: PeerCert } {
  const cipher = socket.getCipher();
  const protocol = socket.getProtocol() ?? cipher.version;
  const bits = cipherBits(cipher.name);
  let signature = '';
  // Postfix reports the signature for TLSv1.3 full handshakes only. Only the log line and the
  // Received header show it, and getCertificate() parses the certificate anew each time (half a
  // millisecond per session), so it is asked only when one of them will.
  if ((t.loglevel >= 1 || t.receivedHeader) && protocol === 'TLSv1.3' && !socket.isSessionReused()) {
    const local = socket.getCertificate() as (tls.PeerCertificate & { asn1Curve?: string; bits?: number }) | null;
    if (local?.asn1Curve) signature = ` server-signature ECDSA (${local.asn1Curve})`;
    else if (local?.bits) signature = ` server-signature RSA-PSS (${local.bits} bits)`;
  }
  const peer = t.ccert?.ask ? peerCert(socket, t.ccert) : null;
  return {
    protocol, cipher: cipher.name, usebits: bits, algbits: bits, signature, received: t.receivedHeader,
    ...(t.ccert?.askParam ? { ccertAsked: true } : {}),
    ...(peer ? { peer, ccert: { cn: peer.cn, issuer: peer.issuer, trusted: peer.trusted, fingerprint: peer.fingerprint, pkeyFingerprint: peer.pkeyFingerprint } } : {}),
  };
}

/**
 * Postfix's tls_log_summary line for smtpd: Anonymous (no client certificate), Trusted or
 * Untrusted (never Verified: a server does not check a client's name); "to name" when
 * tls_server_sni_maps matched the name the client asked for.
 */
export function establishedLine(s: TlsSummary, namaddr: string): string {
  const kind = !s.ccert ? 'Anonymous' : s.ccert.trusted ? 'Trusted' : 'Untrusted';
  return `${kind} TLS connection established from ${namaddr}${s.sni ? ` to ${s.sni}` : ''}: ${s.protocol} with cipher ${s.cipher} (${s.usebits}/${s.algbits} bits)${s.signature}`;
}
