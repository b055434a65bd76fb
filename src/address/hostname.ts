/**
 * Postfix's valid_hostname() and valid_mailhost_literal() (util/valid_hostname.c,
 * global/valid_mailhost_addr.c): the syntax checks smtpd's restrictions, XCLIENT/XFORWARD and
 * ETRN / postqueue -s apply to a name before using it. No DNS.
 */
import { isIP } from 'node:net';

/** valid_hostname(): letters, digits, '-' and '_', labels of 1..63, at most 255, not all numeric. */
export function validHostname(name: string): boolean {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > 255) return false;
  const labels = n.split('.');
  for (const l of labels) {
    if (l.length === 0 || l.length > 63) return false;
    if (!/^[A-Za-z0-9_-]+$/.test(l)) return false;
    if (l.startsWith('-') || l.endsWith('-')) return false;
  }
  // An all-numeric name is an IP address in disguise, not a host name.
  return !labels.every((l) => /^\d+$/.test(l));
}

/** valid_mailhost_literal(): "[1.2.3.4]" or "[IPv6:…]". */
export function validMailhostLiteral(s: string): boolean {
  const m = /^\[(.*)\]$/.exec(s);
  if (!m) return false;
  const inner = m[1]!;
  return /^ipv6:/i.test(inner) ? isIP(inner.slice(5)) === 6 : isIP(inner) === 4;
}
