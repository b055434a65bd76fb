/**
 * TLS security policy of the smtp and lmtp clients (Postfix's smtp_tls_policy.c, tls_level.c).
 *
 *   SMTP_TLS_PARAMS, LMTP_TLS_PARAMS       the smtp_tls_* (lmtp_tls_*) parameters, declared
 *   smtpTlsSettings(p), lmtpTlsSettings(p) the settings from their values
 *   tlsPolicy(settings, tables, dest)      the policy for one next-hop destination:
 *                                          smtp_tls_policy_maps, else the global level
 *
 * The global level is smtp_tls_security_level, or, when that is empty, the obsolete
 * smtp_enforce_tls (verify with smtp_tls_enforce_peername = yes, else encrypt) and
 * smtp_use_tls (may), as Postfix's global_tls_level(). A policy table entry replaces it for a
 * destination: the key is the next hop verbatim ("[host]:port", "host:port", "domain"), and
 * only a bare domain falls back to its parents as ".parent.domain" (each key in every table
 * before the next key, as Postfix's maps_find).
 *
 * A bad entry (unknown level, bad attribute, repeated attribute) logs a warning and gives the
 * "invalid" policy: delivery defers with 4.7.0 "client TLS configuration problem" after the
 * greeting, as Postfix does; a broken table defers the same way.
 */

import type { ParamSpec, Params } from '../config/declared.js';
import { domainKeys } from '../maps/index.js';
import type { LookupTable } from '../maps/index.js';

/** Postfix's levels, in its order (tls_level.c); halfdane is internal and never configured. */
export const LEVELS = ['none', 'may', 'encrypt', 'fingerprint', 'dane', 'dane-only', 'verify', 'secure'] as const;
export type TlsLevel = typeof LEVELS[number];

const RANK: Record<TlsLevel, number> = { none: 0, may: 1, encrypt: 2, fingerprint: 3, dane: 5, 'dane-only': 6, verify: 7, secure: 8 };

/** TLS is required (no plaintext delivery): level above may. */
export function tlsRequired(level: TlsLevel): boolean { return RANK[level] > RANK.may; }
/** The certificate must match (CA and name, or fingerprint): level above encrypt. */
export function mustMatch(level: TlsLevel): boolean { return RANK[level] > RANK.encrypt; }

export function parseLevel(word: string): TlsLevel | null {
  const w = word.toLowerCase();
  return (LEVELS as readonly string[]).includes(w) ? (w as TlsLevel) : null;
}

export interface TlsSettings {
  /** "smtp" or "lmtp": the parameter prefix, for messages. */
  prefix: 'smtp' | 'lmtp';
  level: TlsLevel;
  /** Set when the main.cf level is not a level (checked at start-up). */
  badLevel?: string;
  policyMaps: string[];
  protocols: string;
  mandatoryProtocols: string;
  ciphers: string;
  mandatoryCiphers: string;
  excludeCiphers: string;
  mandatoryExcludeCiphers: string;
  verifyCertMatch: string;
  secureCertMatch: string;
  fingerprintCertMatch: string;
  fingerprintDigest: string;
  CAfile: string;
  CApath: string;
  certFile: string;
  keyFile: string;
  loglevel: number;
  noteStarttlsOffer: boolean;
  wrappermode: boolean;
  /** Seconds (smtp_starttls_timeout). */
  starttlsTimeout: number;
  servername: string;
  /** smtp_tls_connection_reuse: a TLS connection may carry more than one delivery. */
  connectionReuse: boolean;
}

function globalLevel(levelText: string, enforce: boolean, peername: boolean, use: boolean): { level: TlsLevel; bad?: string } {
  const t = levelText.trim();
  if (t !== '') {
    const l = parseLevel(t);
    return l === null ? { level: 'none', bad: t } : { level: l };
  }
  if (enforce) return { level: peername ? 'verify' : 'encrypt' };
  return { level: use ? 'may' : 'none' };
}

function loglevel(v: string): number {
  const n = Number.parseInt(v.trim(), 10);
  if (Number.isFinite(n)) return n;
  return /^(routine|summary)/i.test(v.trim()) ? 1 : 0;
}

/**
 * The smtp client's TLS parameters, as the smtp service declares them (src/config/declared.ts):
 * the smtp agent spreads these into its own, the lmtp agent the lmtp_tls_* ones (below).
 */
export const SMTP_TLS_PARAMS = {
  'smtp_tls_security_level': 'str', 'smtp_enforce_tls': 'bool',
  'smtp_tls_enforce_peername': 'bool', 'smtp_use_tls': 'bool', 'smtp_tls_policy_maps': 'list',
  'smtp_tls_protocols': 'str', 'smtp_tls_mandatory_protocols': 'str', 'smtp_tls_ciphers': 'str',
  'smtp_tls_mandatory_ciphers': 'str', 'smtp_tls_exclude_ciphers': 'str',
  'smtp_tls_mandatory_exclude_ciphers': 'str', 'smtp_tls_verify_cert_match': 'str',
  'smtp_tls_secure_cert_match': 'str', 'smtp_tls_fingerprint_cert_match': 'str',
  'smtp_tls_fingerprint_digest': 'str', 'smtp_tls_CAfile': 'str', 'smtp_tls_CApath': 'str',
  'smtp_tls_cert_file': 'str', 'smtp_tls_key_file': 'str', 'smtp_tls_loglevel': 'str',
  'smtp_tls_note_starttls_offer': 'bool', 'smtp_tls_wrappermode': 'bool',
  'smtp_starttls_timeout': 'time', 'smtp_tls_servername': 'str',
  'smtp_tls_connection_reuse': 'bool',
} as const satisfies ParamSpec;

/** The lmtp client's: the same parameters by their lmtp_ names. */
export const LMTP_TLS_PARAMS = {
  'lmtp_tls_security_level': 'str', 'lmtp_enforce_tls': 'bool',
  'lmtp_tls_enforce_peername': 'bool', 'lmtp_use_tls': 'bool', 'lmtp_tls_policy_maps': 'list',
  'lmtp_tls_protocols': 'str', 'lmtp_tls_mandatory_protocols': 'str', 'lmtp_tls_ciphers': 'str',
  'lmtp_tls_mandatory_ciphers': 'str', 'lmtp_tls_exclude_ciphers': 'str',
  'lmtp_tls_mandatory_exclude_ciphers': 'str', 'lmtp_tls_verify_cert_match': 'str',
  'lmtp_tls_secure_cert_match': 'str', 'lmtp_tls_fingerprint_cert_match': 'str',
  'lmtp_tls_fingerprint_digest': 'str', 'lmtp_tls_CAfile': 'str', 'lmtp_tls_CApath': 'str',
  'lmtp_tls_cert_file': 'str', 'lmtp_tls_key_file': 'str', 'lmtp_tls_loglevel': 'str',
  'lmtp_tls_note_starttls_offer': 'bool', 'lmtp_tls_wrappermode': 'bool',
  'lmtp_starttls_timeout': 'time', 'lmtp_tls_servername': 'str',
  'lmtp_tls_connection_reuse': 'bool',
} as const satisfies ParamSpec;

/** The smtp client's TLS settings from its declared parameters. */
export function smtpTlsSettings(p: Params<typeof SMTP_TLS_PARAMS>): TlsSettings {
  const g = globalLevel(p.smtp_tls_security_level, p.smtp_enforce_tls, p.smtp_tls_enforce_peername, p.smtp_use_tls);
  return {
    prefix: 'smtp',
    level: g.level,
    ...(g.bad !== undefined ? { badLevel: g.bad } : {}),
    policyMaps: p.smtp_tls_policy_maps,
    protocols: p.smtp_tls_protocols,
    mandatoryProtocols: p.smtp_tls_mandatory_protocols,
    ciphers: p.smtp_tls_ciphers,
    mandatoryCiphers: p.smtp_tls_mandatory_ciphers,
    excludeCiphers: p.smtp_tls_exclude_ciphers,
    mandatoryExcludeCiphers: p.smtp_tls_mandatory_exclude_ciphers,
    verifyCertMatch: p.smtp_tls_verify_cert_match,
    secureCertMatch: p.smtp_tls_secure_cert_match,
    fingerprintCertMatch: p.smtp_tls_fingerprint_cert_match,
    fingerprintDigest: p.smtp_tls_fingerprint_digest,
    CAfile: p.smtp_tls_CAfile,
    CApath: p.smtp_tls_CApath,
    certFile: p.smtp_tls_cert_file,
    keyFile: p.smtp_tls_key_file,
    loglevel: loglevel(p.smtp_tls_loglevel),
    noteStarttlsOffer: p.smtp_tls_note_starttls_offer,
    wrappermode: p.smtp_tls_wrappermode,
    starttlsTimeout: p.smtp_starttls_timeout,
    servername: p.smtp_tls_servername,
    connectionReuse: p.smtp_tls_connection_reuse,
  };
}

/** The lmtp client's TLS settings from its declared parameters. */
export function lmtpTlsSettings(p: Params<typeof LMTP_TLS_PARAMS>): TlsSettings {
  const g = globalLevel(p.lmtp_tls_security_level, p.lmtp_enforce_tls, p.lmtp_tls_enforce_peername, p.lmtp_use_tls);
  return {
    prefix: 'lmtp',
    level: g.level,
    ...(g.bad !== undefined ? { badLevel: g.bad } : {}),
    policyMaps: p.lmtp_tls_policy_maps,
    protocols: p.lmtp_tls_protocols,
    mandatoryProtocols: p.lmtp_tls_mandatory_protocols,
    ciphers: p.lmtp_tls_ciphers,
    mandatoryCiphers: p.lmtp_tls_mandatory_ciphers,
    excludeCiphers: p.lmtp_tls_exclude_ciphers,
    mandatoryExcludeCiphers: p.lmtp_tls_mandatory_exclude_ciphers,
    verifyCertMatch: p.lmtp_tls_verify_cert_match,
    secureCertMatch: p.lmtp_tls_secure_cert_match,
    fingerprintCertMatch: p.lmtp_tls_fingerprint_cert_match,
    fingerprintDigest: p.lmtp_tls_fingerprint_digest,
    CAfile: p.lmtp_tls_CAfile,
    CApath: p.lmtp_tls_CApath,
    certFile: p.lmtp_tls_cert_file,
    keyFile: p.lmtp_tls_key_file,
    loglevel: loglevel(p.lmtp_tls_loglevel),
    noteStarttlsOffer: p.lmtp_tls_note_starttls_offer,
    wrappermode: p.lmtp_tls_wrappermode,
    starttlsTimeout: p.lmtp_starttls_timeout,
    servername: p.lmtp_tls_servername,
    connectionReuse: p.lmtp_tls_connection_reuse,
  };
}

/** The TLS policy of one delivery (Postfix's SMTP_TLS_POLICY). */
export type TlsPolicy =
  | { level: 'invalid'; why: string }
  | {
      level: TlsLevel;
      /** Postfix protocol list ("!SSLv2, !SSLv3", ">=TLSv1.2"). */
      protocols: string;
      /** Cipher grade (medium, high, …) and exclusions (OpenSSL names). */
      grade: string;
      exclude: string[];
      /** Name patterns (verify/secure) or digests (fingerprint). */
      match: string[];
      servername: string;
      /** Park the TLS connection for the next delivery (smtp_tls_connection_reuse, connection_reuse=). */
      reuse: boolean;
    };

/** The attributes Postfix accepts in a policy entry. */
const ONCE = new Set(['ciphers', 'protocols', 'exclude', 'servername']);

/**
 * Parses one policy table value ("secure match=.example.net:example.net protocols=>=TLSv1.2").
 * Returns the policy, or a warning text (Postfix's) when the entry is invalid.
 */
export function parsePolicyEntry(s: TlsSettings, value: string, where: string): TlsPolicy | { warning: string } {
  const words = value.split(/[\s,]+/).filter(Boolean);
  if (words.length === 0) return { warning: `${where}: invalid empty policy` };
  const level = parseLevel(words[0]!);
  if (level === null) return { warning: `${where}: invalid security level "${words[0]}"` };
  const p = defaults(s, level);
  if (p.level === 'invalid') return p;
  if (level === 'none') return p; // attributes are ignored (with a warning each, below)
  const seen = new Set<string>();
  let match: string[] | null = null;
  for (const tok of words.slice(1)) {
    const eq = tok.indexOf('=');
    if (eq <= 0) return { warning: `${where}: malformed attribute/value pair "${tok}": missing '=' after attribute name` };
    const name = tok.slice(0, eq).toLowerCase();
    const val = tok.slice(eq + 1);
    if (ONCE.has(name)) {
      if (seen.has(name)) return { warning: `${where}: attribute "${name}" is specified multiple times` };
      seen.add(name);
    }
    switch (name) {
      case 'ciphers':
        if (val === '') return { warning: `${where}: attribute "${name}" has empty value` };
        p.grade = val;
        break;
      case 'protocols': p.protocols = val; break;
      case 'exclude': p.exclude = val.split(/[\s,:]+/).filter(Boolean); break;
      case 'servername': p.servername = val; break;
      case 'match':
        if (val === '') return { warning: `${where}: attribute "${name}" has empty value` };
        if (!mustMatch(level) || level === 'dane' || level === 'dane-only') {
          return { warning: `${where}: attribute "${name}" invalid at security level "${level}"` };
        }
        match = [...(match ?? []), ...val.split(level === 'fingerprint' ? '|' : ':').filter(Boolean)];
        break;
      case 'connection_reuse':
        if (!/^(yes|no)$/i.test(val)) return { warning: `${where}: attribute "${name}" has bad value: "${val}"` };
        p.reuse = val.toLowerCase() === 'yes';
        break;
      default:
        return { warning: `${where}: invalid attribute name: "${name}"` };
    }
  }
  if (match !== null) p.match = match;
  return p;
}

/** The policy of a level with the main.cf protocols, ciphers and match lists. */
export function defaults(s: TlsSettings, level: TlsLevel): TlsPolicy {
  const mandatory = level !== 'may';
  const exclude = [s.excludeCiphers, mandatory ? s.mandatoryExcludeCiphers : ''].join(' ').split(/[\s,:]+/).filter(Boolean);
  let match: string[] = [];
  if (level === 'verify') match = s.verifyCertMatch.split(/[\s,:]+/).filter(Boolean);
  else if (level === 'secure') match = s.secureCertMatch.split(/[\s,:]+/).filter(Boolean);
  else if (level === 'fingerprint') {
    match = s.fingerprintCertMatch.split(/[\s,]+/).filter(Boolean);
    if (match.length === 0) return { level: 'invalid', why: 'configured at fingerprint security level, but with no fingerprints to match.' };
  }
  return {
    level,
    protocols: mandatory ? s.mandatoryProtocols : s.protocols,
    grade: mandatory ? s.mandatoryCiphers : s.ciphers,
    exclude,
    match,
    servername: s.servername,
    reuse: s.connectionReuse,
  };
}

/**
 * The policy for a destination: the first policy table entry for its key (then for ".parent"
 * keys of a bare domain), else the global level. `warn` gets Postfix's warnings about bad
 * entries and table errors; those make the policy "invalid" (delivery defers).
 */
export async function tlsPolicy(s: TlsSettings, tables: readonly LookupTable[], dest: string, warn: (text: string) => void): Promise<TlsPolicy> {
  if (tables.length > 0) {
    // Every table for a key before the next key (Postfix's maps_find per key).
    const keys = /^[A-Za-z0-9_.-]+$/.test(dest) && !dest.startsWith('.')
      ? domainKeys(dest.toLowerCase(), { parentMatch: true, parentStyle: 'dot' })
      : [dest];
    for (const key of keys) {
      for (const t of tables) {
        let value: string;
        try {
          const r = await t.lookup(key);
          if (!r.found) continue;
          value = r.value;
        } catch (e) {
          warn(`${t.spec}, next-hop destination "${dest}": policy table lookup error: ${(e as Error).message}`);
          return { level: 'invalid', why: 'policy table lookup error' };
        }
        const where = `${t.spec}, next-hop destination "${dest}"`;
        const p = parsePolicyEntry(s, value, where);
        if ('warning' in p) { warn(p.warning); return { level: 'invalid', why: p.warning }; }
        if (p.level === 'none') {
          for (const a of value.split(/[\s,]+/).filter(Boolean).slice(1)) warn(`${where}: ignoring attribute "${a}" with TLS disabled`);
        }
        return p;
      }
    }
  }
  return defaults(s, s.level);
}

/** TLS versions Node speaks, lowest first. */
const VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export type TlsVersion = typeof VERSIONS[number];

/**
 * Postfix's protocol list ("!SSLv2, !SSLv3", "TLSv1.2:TLSv1.3", ">=TLSv1.2", "<=TLSv1.2") as
 * Node's minVersion/maxVersion (holes in an exclusion list widen to the range, as with
 * OpenSSL's min/max). SSLv2/SSLv3 are never spoken anyway. null: the list is malformed.
 */
export function protocolRange(list: string): { min: TlsVersion; max: TlsVersion } | null {
  let min = 0;
  let max = VERSIONS.length - 1;
  const included = new Set<number>();
  const excluded = new Set<number>();
  for (const word of list.split(/[\s,:]+/).filter(Boolean)) {
    const m = /^(>=|<=|!)?(.+)$/.exec(word)!;
    const name = m[2]!;
    if (/^SSLv[23]$/i.test(name)) { if (m[1] === '>=' || m[1] === '<=') { /* below all */ } continue; }
    const i = VERSIONS.findIndex((v) => v.toLowerCase() === name.toLowerCase());
    if (i < 0) return null;
    if (m[1] === '>=') min = Math.max(min, i);
    else if (m[1] === '<=') max = Math.min(max, i);
    else if (m[1] === '!') excluded.add(i);
    else included.add(i);
  }
  let allowed = VERSIONS.map((_, i) => i).filter((i) => i >= min && i <= max && !excluded.has(i));
  if (included.size > 0) allowed = allowed.filter((i) => included.has(i));
  if (allowed.length === 0) return null;
  return { min: VERSIONS[allowed[0]!]!, max: VERSIONS[allowed[allowed.length - 1]!]! };
}
