/**
 * Syntax restrictions on names and addresses (no DNS): reject_invalid_helo_hostname,
 * reject_non_fqdn_helo_hostname, reject_non_fqdn_sender, reject_non_fqdn_recipient.
 * Codes: invalid_hostname_reject_code (501), non_fqdn_reject_code (504), as Postfix. The reply
 * names what the restriction tests, whatever list it sits in ("Helo command rejected").
 */
import { isIP } from 'node:net';

import { validHostname } from '../../address/hostname.js';
import { DUNNO, dsnFor, rejected, type Restriction } from './types.js';

export { validHostname };

/** "[1.2.3.4]" or "[IPv6:…]": an address literal, or null. */
export function addressLiteral(name: string): string | null {
  const m = /^\[(?:ipv6:)?([^\]]+)\]$/i.exec(name);
  return m && isIP(m[1]!) ? m[1]! : null;
}

function fqdnHost(name: string): boolean {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return validHostname(n) && n.includes('.');
}

export function invalidHelo(code: number): Restriction {
  return (r) => {
    if (!r.helo) return DUNNO;
    if (addressLiteral(r.helo) !== null || validHostname(r.helo)) return DUNNO;
    return { kind: 'reject', reply: rejected(code, '5.5.2', r, 'helo', 'Invalid name') };
  };
}

export function nonFqdnHelo(code: number): Restriction {
  return (r) => {
    if (!r.helo) return DUNNO;
    if (addressLiteral(r.helo) !== null || fqdnHost(r.helo)) return DUNNO;
    return { kind: 'reject', reply: rejected(code, '5.5.2', r, 'helo', 'need fully-qualified hostname') };
  };
}

export function nonFqdnAddress(which: 'sender' | 'recipient', code: number): Restriction {
  return (r) => {
    const a = which === 'sender' ? r.sender : r.recipient;
    if (a === null || a === '') return DUNNO;
    const at = a.lastIndexOf('@');
    const domain = at < 0 ? '' : a.slice(at + 1);
    if (domain && (addressLiteral(domain) !== null || fqdnHost(domain))) return DUNNO;
    return { kind: 'reject', reply: rejected(code, '5.5.2', r, which, 'need fully-qualified address') };
  };
}


/**
 * reject_unknown_client_hostname: the client has no forward-confirmed name (no PTR record, or a
 * PTR name that does not resolve back to the address); reject_unknown_reverse_client_hostname:
 * it has no PTR name at all. A temporary lookup failure is always 450 (smtpd_check.c).
 */
export function unknownClient(which: 'verified' | 'reverse', code: number): Restriction {
  return (r) => {
    const status = (which === 'verified' ? r.clientNameStatus : r.reverseClientNameStatus) ?? 'ok';
    if (status === 'ok') return DUNNO;
    const permanent = which === 'verified' ? status === 'perm' || status === 'forged' : status === 'perm';
    const c = permanent ? code : 450;
    // RFC 7372's 4.7.25 for the name that does not resolve back; Postfix keeps 4.7.1 for the PTR.
    const dsn = dsnFor(c, which === 'verified' ? '4.7.25' : '4.7.1');
    const what = which === 'verified' ? 'hostname' : 'reverse hostname';
    return { kind: 'reject', reply: { code: c, dsn, text: `Client host rejected: cannot find your ${what}, [${r.clientAddr}]` } };
  };
}
