/** postscreen's DNSBL lookups through dnsblog, declared once (actors/protocol.ts re-exports them). */

/** postscreen (in an smtpd thread) → dnsblog: is this client address listed by this DNS list? */
export interface DnsblRequest {
  addr: string;
  domain: string;
}

/** dnsblog's answer: the A records found (none: not listed) and their lowest TTL (-1: unknown). */
export interface DnsblReply {
  addr: string;
  domain: string;
  addrs: string[];
  ttl: number;
}
