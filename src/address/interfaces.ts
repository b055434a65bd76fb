/**
 * This host's own addresses as Postfix's resolver and smtp client see them: the addresses of
 * inet_interfaces ("all": every interface address; "loopback-only": 127.0.0.1 and ::1; else the
 * listed IP addresses, "localhost" meaning the loopback pair) plus proxy_interfaces. Used for
 * "[ip]" address literals that name this host (local delivery) and for MX loop detection.
 * Host names other than "localhost" in these lists are not resolved here (Postfix resolves them
 * at start-up); they simply do not match.
 */
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/** Canonical text of an IP address (IPv6 compressed, lower case, no zone); null if not an IP. */
export function canonicalIp(text: string): string | null {
  let s = text.trim();
  if (s.toLowerCase().startsWith('ipv6:')) s = s.slice(5);
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  const v = isIP(s);
  if (v === 4) return s;
  if (v === 6) {
    try {
      return new URL(`http://[${s}]/`).hostname.slice(1, -1);
    } catch {
      return null;
    }
  }
  return null;
}

/** The addresses of inet_interfaces and proxy_interfaces, canonical. */
export function ownAddresses(inetInterfaces: string[], proxyInterfaces: string[] = []): Set<string> {
  const out = new Set<string>();
  const add = (a: string) => {
    const c = canonicalIp(a);
    if (c) out.add(c);
  };
  for (const item of [...inetInterfaces, ...proxyInterfaces]) {
    const i = item.toLowerCase();
    if (i === 'all') {
      for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) add(a.address);
    } else if (i === 'loopback-only' || i === 'localhost') {
      add('127.0.0.1');
      add('::1');
    } else add(i.replace(/^\[|\]$/g, ''));
  }
  return out;
}

/** "[192.0.2.1]" / "[IPv6:2001:db8::1]" → the canonical IP inside; null for a domain name. */
export function literalAddress(domain: string): string | null {
  if (!domain.startsWith('[') || !domain.endsWith(']')) return null;
  return canonicalIp(domain.slice(1, -1));
}
