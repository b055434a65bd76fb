/**
 * The source address of the smtp and lmtp clients' TCP connections (Postfix's smtp_connect.c):
 *
 *   smtp_bind_address / smtp_bind_address6 (lmtp_… for lmtp): an IP address ("[…]" allowed)
 *   to bind IPv4 / IPv6 connections to; Postfix's default is empty (the kernel chooses).
 *   When the one for a family is empty and inet_interfaces (filtered by inet_protocols) has
 *   exactly one address of that family, and it is not a loopback address, connections of that
 *   family bind to it, so mail "appears to come from the right machine address" (virtual
 *   hosting). Host names in inet_interfaces are not resolved here (they do not count).
 *   smtp_bind_address_enforce = yes: a failed bind defers the delivery ("4.4.0 server
 *   configuration error") instead of connecting from the kernel's choice with a warning.
 */
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { ParamSpec, Params } from '../config/declared.js';
import { canonicalIp } from '../address/interfaces.js';
import { familyAllowed, parseInetProtocols } from '../address/inet-protocols.js';

export interface SourceAddresses {
  /** For IPv4 destinations. */
  v4?: string;
  /** For IPv6 destinations. */
  v6?: string;
  /** Where each came from, for warnings ("smtp_bind_address", "inet_interfaces"). */
  v4From?: string;
  v6From?: string;
  enforce: boolean;
}

function isLoopback(a: string): boolean {
  return a === '::1' || a.startsWith('127.');
}

/** inet_interfaces' IP addresses of one family (own_inet_addr_list, less host names). */
function interfaceAddresses(inetProtocols: string, inetInterfaces: string[], family: 4 | 6): string[] {
  const protocols = parseInetProtocols(inetProtocols);
  if (typeof protocols === 'string' || !familyAllowed(protocols, family)) return [];
  const value = inetInterfaces.length === 1 ? inetInterfaces[0]! : '';
  const out = new Set<string>();
  if (value.toLowerCase() === 'all' || value === 'loopback-only') {
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if ((a.family === 'IPv6' ? 6 : 4) !== family) continue;
        if (value === 'loopback-only' && !isLoopback(a.address)) continue;
        out.add(canonicalIp(a.address) ?? a.address);
      }
    }
  } else {
    for (const item of inetInterfaces) {
      const ip = canonicalIp(item.replace(/^\[(.*)\]$/, '$1'));
      if (ip !== null && isIP(ip) === family) out.add(ip);
    }
  }
  return [...out];
}

const PARAMS = {
  smtp: { v4: 'smtp_bind_address', v6: 'smtp_bind_address6', enforce: 'smtp_bind_address_enforce' },
  lmtp: { v4: 'lmtp_bind_address', v6: 'lmtp_bind_address6', enforce: 'lmtp_bind_address_enforce' },
} as const;

/** What the smtp client reads for its source address, declared (src/config/declared.ts). */
export const SMTP_BIND_PARAMS = {
  'smtp_bind_address': 'str', 'smtp_bind_address6': 'str', 'smtp_bind_address_enforce': 'bool',
  'inet_protocols': 'str', 'inet_interfaces': 'list',
} as const satisfies ParamSpec;

/** The lmtp client's: its own lmtp_ names. */
export const LMTP_BIND_PARAMS = {
  'lmtp_bind_address': 'str', 'lmtp_bind_address6': 'str', 'lmtp_bind_address_enforce': 'bool',
  'inet_protocols': 'str', 'inet_interfaces': 'list',
} as const satisfies ParamSpec;

/** Which client, with the values it declared. */
export type BindParams =
  | { prefix: 'smtp'; params: Params<typeof SMTP_BIND_PARAMS> }
  | { prefix: 'lmtp'; params: Params<typeof LMTP_BIND_PARAMS> };

/**
 * The source addresses for the smtp or the lmtp client (its own parameters); a text naming
 * the parameter when one is not an IP address of its family.
 */
export function sourceAddresses(a: BindParams): SourceAddresses | string {
  const names = PARAMS[a.prefix];
  const v = a.prefix === 'smtp'
    ? { v4: a.params.smtp_bind_address, v6: a.params.smtp_bind_address6, enforce: a.params.smtp_bind_address_enforce }
    : { v4: a.params.lmtp_bind_address, v6: a.params.lmtp_bind_address6, enforce: a.params.lmtp_bind_address_enforce };
  const out: SourceAddresses = { enforce: v.enforce };
  for (const [family, name] of [[4, names.v4], [6, names.v6]] as const) {
    const raw = (family === 4 ? v.v4 : v.v6).trim();
    const key = family === 4 ? 'v4' : 'v6';
    if (raw !== '') {
      const bracketed = /^\[(.*)\]$/.exec(raw);
      if (raw.startsWith('[') && !bracketed) return `malformed ${name} parameter: ${raw}`;
      const ip = canonicalIp(bracketed ? bracketed[1]! : raw);
      if (ip === null || isIP(ip) !== family) return `bad ${name} parameter: ${raw}: not an IPv${family} address`;
      out[key] = ip;
      out[`${key}From`] = name;
      continue;
    }
    const own = interfaceAddresses(a.params.inet_protocols, a.params.inet_interfaces, family);
    if (own.length === 1 && !isLoopback(own[0]!)) {
      out[key] = own[0]!;
      out[`${key}From`] = 'inet_interfaces';
    }
  }
  return out;
}
