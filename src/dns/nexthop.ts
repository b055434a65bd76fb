/**
 * Nexthop syntax, as in Postfix's transport(5) and relayhost:
 *
 *   example.com          MX lookup (A/AAAA of example.com when it has no MX), port 25
 *   example.com:2525     the same on port 2525
 *   [mail.example.com]   no MX lookup: the A/AAAA records of mail.example.com
 *   [192.0.2.1]:2626     an IP literal, used as is (also [::1], [ipv6:::1])
 *
 * The port may be a number or a service name (known_tcp_ports, then /etc/services: services.ts).
 */

import { isIP } from 'node:net';
import { servicePort } from '../net/services.js';

export interface Nexthop {
  /** Host or domain name, or an IP literal (without brackets and "ipv6:" prefix). */
  name: string;
  port: number;
  /** True when the name was bracketed, or is an IP literal: no MX lookup. */
  noMx: boolean;
  /** 4 or 6 when name is an IP literal, else 0. */
  ipVersion: 0 | 4 | 6;
}

function parsePort(s: string): number | null {
  if (s.length > 0 && !/^\d+$/.test(s)) return servicePort(s);
  if (s.length === 0 || s.length > 5) return null;
  for (let i = 0; i < s.length; i++) { const c = s.charCodeAt(i); if (c < 48 || c > 57) return null; }
  const n = Number(s);
  return n > 0 && n <= 65535 ? n : null;
}

/** Parses a nexthop; returns null when it is malformed. */
export function parseNexthop(nexthop: string, defaultPort = 25): Nexthop | null {
  const s = nexthop.trim();
  let name: string;
  let port = defaultPort;
  let noMx = false;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return null;
    name = s.slice(1, close);
    if (name.toLowerCase().startsWith('ipv6:')) name = name.slice(5);
    const rest = s.slice(close + 1);
    if (rest.length > 0) {
      if (rest.charCodeAt(0) !== 58) return null;
      const p = parsePort(rest.slice(1));
      if (p === null) return null;
      port = p;
    }
    noMx = true;
  } else if (isIP(s) !== 0) {
    name = s;
  } else {
    const colon = s.lastIndexOf(':');
    name = colon < 0 ? s : s.slice(0, colon);
    if (colon >= 0) {
      const p = parsePort(s.slice(colon + 1));
      if (p === null) return null;
      port = p;
    }
  }
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0) return null;
  const v = isIP(name);
  return { name, port, noMx: noMx || v !== 0, ipVersion: v === 4 ? 4 : v === 6 ? 6 : 0 };
}
