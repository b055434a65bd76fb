/**
 * Restrictions that ask DNS: reject_unknown_sender_domain, reject_unknown_recipient_domain,
 * reject_unknown_helo_hostname, reject_rbl_client, reject_rhsbl_client, reject_rhsbl_sender,
 * reject_rhsbl_helo, reject_rhsbl_recipient, permit_dnswl_client.
 *
 * Name servers: POSTACTOR_DNS_SERVERS (as the smtp client), else the system's. A temporary DNS
 * failure never rejects: unknown_*_tempfail_action (defer_if_permit by default) for the
 * "unknown" checks, and "not listed" for the DNS lists, as Postfix does.
 */
import { promises as dnsp } from 'node:dns';
import { isIP } from 'node:net';

import { resolverServersFromEnv } from '../../dns/resolver.js';
import { addressLiteral } from './hostname.js';
import { DUNNO, PERMIT, rejected, type Action, type PolicyRequest, type Restriction } from './types.js';

type Found = 'found' | 'notfound' | 'temp';

export class PolicyDns {
  private readonly resolver: dnsp.Resolver;

  constructor(servers = resolverServersFromEnv(), timeoutMs = 2000) {
    this.resolver = new dnsp.Resolver({ timeout: timeoutMs, tries: 2 });
    if (servers) this.resolver.setServers(servers);
  }

  private async query(f: () => Promise<unknown[]>): Promise<Found> {
    try {
      return (await f()).length > 0 ? 'found' : 'notfound';
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === dnsp.NOTFOUND || code === dnsp.NODATA ? 'notfound' : 'temp';
    }
  }

  /** Postfix's reject_unknown_*: a name with an MX, A or AAAA record exists. */
  async hasMailOrHost(name: string, withMx: boolean): Promise<Found> {
    const kinds = [
      ...(withMx ? [() => this.resolver.resolveMx(name)] : []),
      () => this.resolver.resolve4(name),
      () => this.resolver.resolve6(name),
    ];
    let temp = false;
    for (const k of kinds) {
      const r = await this.query(k);
      if (r === 'found') return 'found';
      if (r === 'temp') temp = true;
    }
    return temp ? 'temp' : 'notfound';
  }

  /** A records of a DNS list query; null when not listed or on failure. */
  async listed(name: string): Promise<string[] | null> {
    try {
      const a = await this.resolver.resolve4(name);
      return a.length > 0 ? a : null;
    } catch {
      return null;
    }
  }

  /**
   * The MX or NS hosts of a domain (check_*_{mx,ns}_access). `notfound` covers NXDOMAIN and
   * NODATA alike, as Postfix's dns_lookup; `error` is the resolver's words for a failure.
   */
  async servers(domain: string, type: 'mx' | 'ns'): Promise<{ status: 'ok'; hosts: string[] } | { status: 'nullmx' | 'notfound' } | { status: 'error'; error: string }> {
    if (type === 'mx') {
      const mx = await this.mxList(domain);
      if ('error' in mx) return { status: 'error', error: mx.error };
      if (mx.nullMx) return { status: 'nullmx' };
      return mx.hosts.length === 0 ? { status: 'notfound' } : { status: 'ok', hosts: mx.hosts.map((m) => m.exchange) };
    }
    try {
      return { status: 'ok', hosts: await this.resolver.resolveNs(domain) };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === dnsp.NOTFOUND || code === dnsp.NODATA) return { status: 'notfound' };
      return { status: 'error', error: dnsError(code) };
    }
  }

  /**
   * A domain's MX hosts by preference: none for NXDOMAIN, NODATA or a null MX (`nullMx` tells
   * which); `temporary` when the answer may come later.
   */
  async mxList(domain: string): Promise<{ hosts: { exchange: string; priority: number }[]; nullMx: boolean } | { error: string; temporary: boolean }> {
    try {
      const mx = (await this.resolver.resolveMx(domain)).sort((a, b) => a.priority - b.priority);
      // RFC 7505: a single MX with the root as exchange says "no mail here".
      const nullMx = mx.length === 1 && (mx[0]!.exchange === '' || mx[0]!.exchange === '.');
      return { hosts: nullMx ? [] : mx, nullMx };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === dnsp.NOTFOUND || code === dnsp.NODATA) return { hosts: [], nullMx: false };
      const error = dnsError(code);
      return { error, temporary: error === 'Host not found, try again' };
    }
  }

  /**
   * A host's addresses in the families asked for (IPv4 first), as getaddrinfo would give them to
   * Postfix's check_server_access, or the error it would name.
   */
  async addresses(host: string, ipv4: boolean, ipv6: boolean): Promise<{ addrs: string[] } | { error: string }> {
    const addrs: string[] = [];
    const codes: (string | undefined)[] = [];
    for (const [want, f] of [[ipv4, () => this.resolver.resolve4(host)], [ipv6, () => this.resolver.resolve6(host)]] as const) {
      if (!want) continue;
      try {
        addrs.push(...(await f()));
      } catch (e) {
        codes.push((e as NodeJS.ErrnoException).code);
      }
    }
    if (addrs.length > 0) return { addrs };
    // getaddrinfo's texts (glibc): no such name, a name without addresses, a failure to ask.
    if (codes.length > 0 && codes.every((c) => c === dnsp.NOTFOUND)) return { error: 'Name or service not known' };
    if (codes.every((c) => c === dnsp.NOTFOUND || c === dnsp.NODATA)) return { error: 'No address associated with hostname' };
    return { error: 'Temporary failure in name resolution' };
  }

  /** The TXT record of a listing (the reason in the reply), or ''. */
  async reason(name: string): Promise<string> {
    try {
      const txt = await this.resolver.resolveTxt(name);
      return txt.length > 0 ? txt[0]!.join('') : '';
    } catch {
      return '';
    }
  }
}

/** Postfix's dns_strerror() words for what Node's resolver reports. */
function dnsError(code: string | undefined): string {
  switch (code) {
    case dnsp.SERVFAIL:
    case dnsp.TIMEOUT:
    case dnsp.CONNREFUSED:
      return 'Host not found, try again';
    default:
      return 'Non-recoverable error';
  }
}

export interface DnsSettings {
  unknownAddressCode: number;
  unknownHostnameCode: number;
  /** unknown_address_tempfail_action / unknown_helo_hostname_tempfail_action: defer or defer_if_permit. */
  addressTempfail: 'defer' | 'defer_if_permit';
  heloTempfail: 'defer' | 'defer_if_permit';
  rblCode: number;
}

function domainOfAddress(a: string): string {
  const at = a.lastIndexOf('@');
  return at < 0 ? '' : a.slice(at + 1).replace(/\.$/, '');
}

function tempfail(action: 'defer' | 'defer_if_permit', reply: ReturnType<typeof rejected>): Action {
  return action === 'defer' ? { kind: 'reject', reply } : { kind: 'defer_if_permit', reply };
}

/** reject_unknown_sender_domain / reject_unknown_recipient_domain. */
export function unknownAddressDomain(which: 'sender' | 'recipient', dns: PolicyDns, s: DnsSettings): Restriction {
  const dsn = which === 'sender' ? '4.1.8' : '4.1.2';
  return async (r) => {
    const a = which === 'sender' ? r.sender : r.recipient;
    if (!a) return DUNNO; // no address yet, or the null sender
    const domain = domainOfAddress(a);
    if (!domain || addressLiteral(domain) !== null) return DUNNO;
    const found = await dns.hasMailOrHost(domain, true);
    if (found === 'found') return DUNNO;
    if (found === 'temp') return tempfail(s.addressTempfail, rejected(450, dsn, r, which, 'Domain not found'));
    return { kind: 'reject', reply: rejected(s.unknownAddressCode, dsn, r, which, 'Domain not found') };
  };
}

/** reject_unknown_helo_hostname: the HELO name has neither an A nor an MX record. */
export function unknownHelo(dns: PolicyDns, s: DnsSettings): Restriction {
  return async (r) => {
    if (!r.helo || addressLiteral(r.helo) !== null) return DUNNO;
    const found = await dns.hasMailOrHost(r.helo.replace(/\.$/, ''), true);
    if (found === 'found') return DUNNO;
    if (found === 'temp') return tempfail(s.heloTempfail, rejected(450, '4.7.1', r, 'helo', 'Host not found'));
    return { kind: 'reject', reply: rejected(s.unknownHostnameCode, '4.7.1', r, 'helo', 'Host not found') };
  };
}

/** "zone" or "zone=127.0.0.2": the zone and the A record that counts (any, by default). */
export function parseDnsList(arg: string): { zone: string; match: string | null } | string {
  const eq = arg.indexOf('=');
  const zone = (eq < 0 ? arg : arg.slice(0, eq)).replace(/\.$/, '');
  const match = eq < 0 ? null : arg.slice(eq + 1);
  if (!zone || zone.includes('{')) return `bad DNS list "${arg}"`;
  if (match !== null && isIP(match) !== 4) return `not supported: DNS list reply filter "${match}" in "${arg}" (only one address, d.d.d.d)`;
  return { zone, match };
}

/** 1.2.3.4 → 4.3.2.1; 2001:db8::1 → the 32 nibbles, reversed. */
export function reverseAddress(addr: string): string | null {
  let a = addr;
  if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) a = a.slice(7);
  if (isIP(a) === 4) return a.split('.').reverse().join('.');
  if (isIP(a) !== 6) return null;
  const [head, tail] = a.includes('::') ? a.split('::') as [string, string] : [a, ''];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('').split('').reverse().join('.');
}

type ListKind = 'rbl_client' | 'rhsbl_client' | 'rhsbl_reverse_client' | 'rhsbl_sender' | 'rhsbl_helo' | 'rhsbl_recipient';

/** What a DNS list query is about: the name to prepend to the zone, and the reply's words. */
function listSubject(kind: ListKind, r: PolicyRequest): { query: string; what: string; cls: string } | null {
  switch (kind) {
    case 'rbl_client': {
      const rev = reverseAddress(r.clientAddr);
      return rev ? { query: rev, what: r.clientAddr.replace(/^::ffff:/, ''), cls: 'Client host' } : null;
    }
    case 'rhsbl_client':
      return r.clientName && r.clientName !== 'unknown' ? { query: r.clientName, what: r.clientName, cls: 'Client host' } : null;
    // The PTR name, confirmed or not.
    case 'rhsbl_reverse_client': {
      const name = r.reverseClientName ?? r.clientName;
      return name && name !== 'unknown' ? { query: name, what: name, cls: 'Unverified Client host' } : null;
    }
    case 'rhsbl_helo':
      return r.helo && addressLiteral(r.helo) === null ? { query: r.helo, what: r.helo, cls: 'Helo command' } : null;
    case 'rhsbl_sender': {
      const d = r.sender ? domainOfAddress(r.sender) : '';
      return d && addressLiteral(d) === null ? { query: d, what: d, cls: 'Sender address' } : null;
    }
    case 'rhsbl_recipient': {
      const d = r.recipient ? domainOfAddress(r.recipient) : '';
      return d && addressLiteral(d) === null ? { query: d, what: d, cls: 'Recipient address' } : null;
    }
  }
}

async function lookupList(dns: PolicyDns, kind: ListKind, r: PolicyRequest, zone: string, match: string | null) {
  const subject = listSubject(kind, r);
  if (!subject) return null;
  const name = `${subject.query}.${zone}`;
  const a = await dns.listed(name);
  if (!a || (match !== null && !a.includes(match))) return null;
  return { name, subject };
}

/**
 * reject_rbl_client and the reject_rhsbl_* family; the reply is Postfix's default_rbl_reply:
 * "554 5.7.1 Service unavailable; Client host [1.2.3.4] blocked using zone; reason".
 */
export function dnsBlockList(kind: ListKind, zone: string, match: string | null, dns: PolicyDns, s: DnsSettings): Restriction {
  return async (r) => {
    const hit = await lookupList(dns, kind, r, zone, match);
    if (!hit) return DUNNO;
    const reason = await dns.reason(hit.name);
    const text = `Service unavailable; ${hit.subject.cls} [${hit.subject.what}] blocked using ${zone}${reason ? `; ${reason}` : ''}`;
    return { kind: 'reject', reply: { code: s.rblCode, dsn: `${Math.floor(s.rblCode / 100)}.7.1`, text } };
  };
}

/** permit_dnswl_client: PERMIT when the client address is listed; permit_rhswl_client: its (verified) name. */
export function dnsAllowList(zone: string, match: string | null, dns: PolicyDns, by: 'address' | 'name' = 'address'): Restriction {
  return async (r) => ((await lookupList(dns, by === 'address' ? 'rbl_client' : 'rhsbl_client', r, zone, match)) ? PERMIT : DUNNO);
}
