/**
 * DNSBL/DNSWL scoring (Postfix's postscreen_dnsbl.c). postscreen_dnsbl_sites lists
 * `domain[=filter][*weight]`; each domain is asked once per client (by the dnsblog service:
 * actors/dnsblog), and every site entry of that domain whose filter matches one of the A
 * records adds its weight (negative weights allowlist). The name shown in the reply is the
 * highest-weighted listing domain, through postscreen_dnsbl_reply_map when one is set.
 *
 * The score's TTL: the smallest TTL of the answers that count against the client when it is
 * listed (fail), else of those that count for it (pass), clamped to postscreen_dnsbl_min_ttl
 * … postscreen_dnsbl_max_ttl. No TTL known (-1) becomes the minimum.
 */
import { isIP } from 'node:net';

export interface DnsblSite {
  domain: string;
  /** The filter as written (d.d.d.d with [n;m..k] sets), or null for any reply. */
  filter: string | null;
  octets: ((n: number) => boolean)[] | null;
  weight: number;
}

/** One domain's answer from dnsblog: the A records (empty: not listed) and their TTL (-1 unknown). */
export interface DnsblAnswer { addrs: string[]; ttl: number }

function parseOctet(text: string, site: string): (n: number) => boolean {
  const num = (t: string): number => {
    if (!/^\d{1,3}$/.test(t) || Number(t) > 255) throw new Error(`bad DNSBL filter syntax: "${site}": bad octet value: ${t}`);
    return Number(t);
  };
  if (!text.startsWith('[')) {
    const n = num(text);
    return (v) => v === n;
  }
  if (!text.endsWith(']')) throw new Error(`bad DNSBL filter syntax: "${site}": missing "]"`);
  const parts = text.slice(1, -1).split(';').map((p) => {
    const r = /^(\d+)\.\.(\d+)$/.exec(p);
    if (r) {
      const lo = num(r[1]!), hi = num(r[2]!);
      if (lo > hi) throw new Error(`bad DNSBL filter syntax: "${site}": bad range: ${p}`);
      return (v: number) => v >= lo && v <= hi;
    }
    const n = num(p);
    return (v: number) => v === n;
  });
  return (v) => parts.some((p) => p(v));
}

/** Parses postscreen_dnsbl_sites; throws Postfix's fatal texts. */
export function parseDnsblSites(value: string): DnsblSite[] {
  const out: DnsblSite[] = [];
  for (const site of value.split(/[\s,]+/).filter(Boolean)) {
    let rest = site;
    let weight = 1;
    const star = rest.indexOf('*');
    if (star >= 0) {
      const w = rest.slice(star + 1);
      if (!/^[+-]?\d+$/.test(w)) throw new Error(`bad DNSBL weight factor "${w}" in "${site}"`);
      weight = Number(w);
      rest = rest.slice(0, star);
    }
    let filter: string | null = null;
    let octets: DnsblSite['octets'] = null;
    const eq = rest.indexOf('=');
    if (eq >= 0) {
      filter = rest.slice(eq + 1);
      rest = rest.slice(0, eq);
      // Octets are separated by dots outside brackets ("127.0.0.[1..3]").
      const parts = filter.match(/\[[^\]]*\]|[^.]+/g) ?? [];
      if (parts.length !== 4 || parts.join('.').length !== filter.length) throw new Error(`bad DNSBL filter syntax: "${filter}": expected four octets`);
      octets = parts.map((p) => parseOctet(p, filter!));
    }
    if (!/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(rest)) {
      throw new Error(`bad DNSBL domain name "${rest}" in "${site}"`);
    }
    out.push({ domain: rest.toLowerCase().replace(/\.$/, ''), filter, octets, weight });
  }
  return out;
}

/** The distinct domains to ask, in the order first named. */
export function dnsblDomains(sites: DnsblSite[]): string[] {
  return [...new Set(sites.map((s) => s.domain))];
}

function matches(site: DnsblSite, addrs: string[]): boolean {
  if (site.octets === null) return true;
  return addrs.some((a) => {
    const o = a.split('.').map(Number);
    return o.length === 4 && site.octets!.every((f, i) => f(o[i]!));
  });
}

export interface DnsblScore { score: number; name: string | null; ttl: number }

/**
 * The client's score from the answers per domain (a domain missing from `answers` did not
 * answer in time: it counts as not listed, without a TTL).
 */
export function dnsblScore(sites: DnsblSite[], answers: Map<string, DnsblAnswer>, replyName: (domain: string) => string, minTtl: number, maxTtl: number): DnsblScore {
  let score = 0;
  let name: string | null = null;
  let nameWeight = 0;
  let failTtl = -1, passTtl = -1;
  const lower = (cur: number, ttl: number) => (ttl >= 0 && (cur < 0 || cur > ttl) ? ttl : cur);
  for (const site of sites) {
    const a = answers.get(site.domain);
    if (!a) continue;
    if (a.addrs.length > 0) {
      if (matches(site, a.addrs)) {
        if (name === null || nameWeight < site.weight) {
          name = replyName(site.domain);
          nameWeight = site.weight;
        }
        score += site.weight;
      }
      if (site.weight > 0) failTtl = lower(failTtl, a.ttl);
      else passTtl = lower(passTtl, a.ttl);
    } else if (site.weight > 0) passTtl = lower(passTtl, a.ttl);
    else failTtl = lower(failTtl, a.ttl);
  }
  let ttl = score > 0 ? failTtl : passTtl;
  if (ttl < minTtl) ttl = minTtl;
  if (ttl > maxTtl) ttl = maxTtl;
  return { score, name, ttl };
}

/** The DNS name a DNSBL is asked for an address: reversed octets (IPv4) or nibbles (IPv6), then the domain. */
export function dnsblQueryName(addr: string, domain: string): string {
  if (isIP(addr) === 4) return `${addr.split('.').reverse().join('.')}.${domain}`;
  // Expand "::" and write all 32 nibbles, lowest first.
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const nibbles = groups.map((g) => g.padStart(4, '0')).join('').split('');
  return `${nibbles.reverse().join('.')}.${domain}`;
}
