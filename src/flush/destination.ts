/**
 * What a flush request may name (Postfix's checks in smtpd's etrn_cmd and in postqueue -s): a
 * host name (valid_hostname: labels of letters, digits, "-" and "_", not all numeric), or an
 * address literal (valid_mailhost_literal: "[1.2.3.4]" or "[IPv6:…]").
 */
import { isIP } from 'node:net';

/** Postfix's valid_hostname(). */
export function validHostname(name: string): boolean {
  if (name.length === 0 || name.length > 255) return false;
  const labels = name.replace(/\.$/, '').split('.');
  for (const label of labels) {
    if (label.length === 0 || label.length > 63) return false;
    if (!/^[A-Za-z0-9_-]+$/.test(label) || label.startsWith('-') || label.endsWith('-')) return false;
  }
  return !/^[\d.]+$/.test(name);
}

/** Postfix's valid_mailhost_literal(): "[1.2.3.4]" or "[IPv6:…]". */
export function validMailhostLiteral(s: string): boolean {
  const m = /^\[(.*)\]$/.exec(s);
  if (!m) return false;
  const inner = m[1]!;
  return /^ipv6:/i.test(inner) ? isIP(inner.slice(5)) === 6 : isIP(inner) === 4;
}

/** A destination a flush request may name. */
export function validDestination(site: string): boolean {
  return site.startsWith('[') ? validMailhostLiteral(site) : validHostname(site);
}
