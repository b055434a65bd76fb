/**
 * Restrictions on the client's TLS certificate (smtpd_check.c):
 *
 *   permit_tls_clientcerts       PERMIT when the certificate's fingerprint, or its public key's,
 *                                is a key of relay_clientcerts (the CA need not be trusted)
 *   permit_tls_all_clientcerts   PERMIT any certificate that is trusted (smtpd_tls_CAfile/_CApath)
 *   reject_plaintext_session     $plaintext_reject_code 4.7.1 for a session without TLS
 *   check_ccert_access table     access(5) lookup of the certificate fingerprint, then of the
 *                                public-key fingerprint; replies name the certificate's
 *                                CommonName: "<cn>: Client certificate rejected: …"
 *
 * Fingerprints are smtpd_tls_fingerprint_digest in Postfix's form ("AB:CD:…"; fixed-key tables
 * fold case, as Postfix's do). Without a certificate they say DUNNO, and with
 * smtpd_tls_ask_ccert = no Postfix's warning explains why none was ever presented.
 */
import { TableError, type LookupResult } from '../../maps/index.js';
import { tableResult, type AccessSettings } from './access.js';
import type { PolicyTable } from './tables.js';
import { DUNNO, PERMIT, dsnFor, reject, rejected, type Action, type PolicyRequest, type Restriction } from './types.js';

function key(table: PolicyTable, k: string): string {
  return table.kind !== 'pattern' && table.foldsCase !== false ? k.toLowerCase() : k;
}

async function find(tables: PolicyTable[], k: string): Promise<LookupResult> {
  for (const t of tables) {
    const r = await t.lookup(key(t, k));
    if (r.found) return r;
  }
  return { found: false };
}

function notAsked(name: string): Action {
  return { kind: 'warning', warning: `${name} is requested, but "smtpd_tls_ask_ccert = no"` };
}

/** permit_tls_clientcerts (all = false) and permit_tls_all_clientcerts (all = true). */
export function permitClientCerts(all: boolean, relayClientCerts: PolicyTable[], askCcert: boolean): Restriction {
  const name = all ? 'permit_tls_all_clientcerts' : 'permit_tls_clientcerts';
  return async (r: PolicyRequest) => {
    if (!r.tls) return DUNNO;
    const c = r.tls.ccert;
    if (c?.trusted && all) return PERMIT;
    if (!c) return askCcert ? DUNNO : notAsked(name);
    for (const fp of [c.fingerprint, c.pkeyFingerprint]) {
      try {
        if ((await find(relayClientCerts, fp)).found) return PERMIT;
      } catch (e) {
        if (!(e instanceof TableError)) throw e;
        return {
          kind: 'error',
          reply: rejected(451, '4.3.0', r, 'client', 'Temporary lookup failure'),
          warning: `relay_clientcerts: lookup error for fingerprint '${c.fingerprint}', pkey fingerprint ${c.pkeyFingerprint}`,
        };
      }
    }
    return DUNNO;
  };
}

/** check_ccert_access type:table: the certificate fingerprint, then the public-key fingerprint. */
export function checkCcertAccess(table: PolicyTable, askCcert: boolean, s: AccessSettings): Restriction {
  return async (r: PolicyRequest) => {
    const c = r.tls?.ccert;
    // As Postfix: the warning comes whether or not the session is encrypted.
    if (!c) return askCcert ? DUNNO : notAsked('check_ccert_access');
    for (const fp of [c.fingerprint, c.pkeyFingerprint]) {
      let value: LookupResult;
      try {
        value = await table.lookup(key(table, fp));
      } catch (e) {
        if (!(e instanceof TableError)) throw e;
        return {
          kind: 'error',
          reply: rejected(451, '4.3.0', r, 'ccert', 'Temporary lookup failure'),
          warning: `${table.spec}: table lookup problem: ${e.message}`,
        };
      }
      if (!value.found) continue;
      const action = tableResult(value.value, table.spec, fp, r, 'ccert', s);
      if (action.kind !== 'dunno') return action;
    }
    return DUNNO;
  };
}

/**
 * reject_plaintext_session: "$plaintext_reject_code 4.7.1 Session encryption is required" for a
 * session without TLS (smtpd_check.c reject_plaintext_session).
 */
export function rejectPlaintextSession(code: number): Restriction {
  return (r: PolicyRequest) => (r.tls ? DUNNO : reject({ code, dsn: dsnFor(code, '4.7.1'), text: 'Session encryption is required' }));
}
