/**
 * Postfix's global TLS library settings, as Node's secure-context options:
 *
 *   TLS_LIBRARY_PARAMS                the three parameters, declared (src/config/declared.ts):
 *                                     the smtp and lmtp agents spread them into theirs and pass
 *                                     the values; smtpd passes its configuration
 *   keyExchangeGroups(from, warn)     tls_eecdh_auto_curves + tls_ffdhe_auto_groups → ecdhCurve
 *                                     (OpenSSL's group list), with Postfix's fall-backs
 *                                     (tls_dh.c tls_auto_groups)
 *   sslOptions(from, warn)            tls_ssl_options → secureOptions, plus the
 *                                     SSL_OP_NO_RENEGOTIATION Postfix always sets (tls_misc.c)
 *
 * smtpd_tls_eecdh_grade is not read here: Postfix ≥ 3.6 ignores its value and always behaves
 * as "auto", that is, as these group lists say.
 */
import { constants } from 'node:crypto';
import * as tls from 'node:tls';
import type { Config } from '../config/index.js';
import { valuesOf, type ParamSpec, type Params } from '../config/declared.js';

export const TLS_LIBRARY_PARAMS = {
  'tls_eecdh_auto_curves': 'str', 'tls_ffdhe_auto_groups': 'str', 'tls_ssl_options': 'str',
} as const satisfies ParamSpec;
type TlsLibrary = Params<typeof TLS_LIBRARY_PARAMS>;

/** Postfix's defaults, for the fall-back after a list with no usable group. */
const DEFAULT_EECDH = 'X25519 X448 prime256v1 secp521r1 secp384r1';
const DEFAULT_FFDHE = 'ffdhe2048 ffdhe3072';

const known = new Map<string, boolean>();

/** Whether this OpenSSL can offer the group (Postfix tries each on a throw-away context). */
function usable(group: string): boolean {
  let ok = known.get(group);
  if (ok === undefined) {
    try {
      tls.createSecureContext({ ecdhCurve: group });
      ok = true;
    } catch {
      ok = false;
    }
    known.set(group, ok);
  }
  return ok;
}

/**
 * The groups for Node's ecdhCurve, or undefined for OpenSSL's own defaults (both lists empty,
 * or nothing usable even in Postfix's defaults).
 */
export function keyExchangeGroups(from: Config | TlsLibrary, warn: (text: string) => void): string | undefined {
  const v = valuesOf(from, TLS_LIBRARY_PARAMS, 'tls');
  let eecdh = v.tls_eecdh_auto_curves.trim();
  let ffdhe = v.tls_ffdhe_auto_groups.trim();
  if (!eecdh && !ffdhe) return undefined;
  for (let origin = 'configured'; ;) {
    const names = `${eecdh} ${ffdhe}`.split(/[\s,]+/).filter(Boolean);
    if (names.length === 0) warn(`no ${origin} key exchange group - OpenSSL requires at least one`);
    else {
      const groups: string[] = [];
      for (const g of names) {
        if (usable(g)) groups.push(g);
        // Node cannot tell "unknown to OpenSSL" from "known but not implemented": both are named.
        else warn(`ignoring unknown key exchange group "${g}"`);
      }
      if (groups.length > 0) return [...new Set(groups)].join(':');
      warn(`none of the ${origin} key exchange groups are supported`);
    }
    if (origin === 'configured' && (eecdh !== DEFAULT_EECDH || ffdhe !== DEFAULT_FFDHE)) {
      warn('using Postfix default key exchange groups instead');
      origin = 'Postfix default';
      eecdh = DEFAULT_EECDH;
      ffdhe = DEFAULT_FFDHE;
      continue;
    }
    warn('using OpenSSL default key exchange groups instead');
    return undefined;
  }
}

/**
 * tls_ssl_options: the names Postfix knows (any case), or hexadecimal numbers. OpenSSL's
 * ENABLE_MIDDLEBOX_COMPAT is on by default, so naming it changes nothing.
 */
const SSL_OP: Record<string, number> = {
  legacy_server_connect: constants.SSL_OP_LEGACY_SERVER_CONNECT,
  no_ticket: constants.SSL_OP_NO_TICKET,
  no_compression: constants.SSL_OP_NO_COMPRESSION,
  no_renegotiation: constants.SSL_OP_NO_RENEGOTIATION,
  no_session_resumption_on_renegotiation: constants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
  prioritize_chacha: constants.SSL_OP_PRIORITIZE_CHACHA,
  enable_middlebox_compat: 0,
};

/** Bits Postfix manages through other parameters (and SSL_OP_ALL): a number cannot set them. */
const MANAGED = constants.SSL_OP_ALL | constants.SSL_OP_CIPHER_SERVER_PREFERENCE | (1 << 7) /* IGNORE_UNEXPECTED_EOF */
  | constants.SSL_OP_NO_SSLv2 | constants.SSL_OP_NO_SSLv3 | constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1
  | constants.SSL_OP_NO_TLSv1_2 | constants.SSL_OP_NO_TLSv1_3;

/** secureOptions for tls_ssl_options; unknown words get Postfix's warning and are skipped. */
export function sslOptions(from: Config | TlsLibrary, warn: (text: string) => void): number {
  const value = valuesOf(from, TLS_LIBRARY_PARAMS, 'tls').tls_ssl_options;
  // Postfix never lets a client renegotiate in the middle of an SMTP session.
  let bits = constants.SSL_OP_NO_RENEGOTIATION;
  for (const word of value.split(/[\s,]+/).filter(Boolean)) {
    const name = word.toLowerCase();
    if (Object.hasOwn(SSL_OP, name)) bits |= SSL_OP[name]!;
    else if (/^0x[0-9a-f]+$/i.test(word) || /^[0-9]+$/.test(word)) bits |= Number(word) & ~MANAGED;
    else warn(`unknown tls_ssl_options value "${word}" in "${value}"`);
  }
  // The 32-bit mask Node takes.
  return bits >>> 0;
}
