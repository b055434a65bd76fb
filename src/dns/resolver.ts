/**
 * Nexthop resolution for the smtp delivery agent (Postfix's smtp_addr.c / dns_lookup.c):
 * a nexthop becomes the ordered list of {host, addr, port} to try.
 *
 *   - MX records sorted by preference, equal preferences shuffled (load spreading, as
 *     Postfix does); each MX host expanded to its addresses, IPv4 first. An MX host
 *     without addresses is skipped; when none is left the result is a temporary 4.4.3.
 *   - No MX (NODATA): the A/AAAA records of the domain itself.
 *   - Null MX (RFC 7505, a single "." MX): permanent 5.1.10.
 *   - NXDOMAIN: permanent 5.1.2. SERVFAIL, REFUSED, timeouts: temporary 4.4.3.
 *   - "[host]" and "[host]:port" skip the MX lookup; IP literals and the name "localhost"
 *     never touch DNS, so "[127.0.0.1]:2626" works without a name server.
 *
 * Results, positive and negative, are cached per nexthop for cacheTtlMs (default 60 s),
 * and concurrent lookups of one nexthop share a single query, so the delivery hot path
 * does not query DNS per message. The returned hosts arrays are shared: read-only.
 *
 * Which name servers: by default the system's (/etc/resolv.conf). To point Postactor at
 * another resolver (a local cache, or a test server), set
 *
 *   POSTACTOR_DNS_SERVERS=127.0.0.1:5353,[::1]:53
 *
 * and pass `servers: resolverServersFromEnv()` to NextHopResolver.
 *
 * txt(name) looks up TXT records on the same name servers (MTA-STS's _mta-sts.<domain>); it is
 * not cached here: its caller keeps what it derives from the answer.
 */

import { promises as dnsp } from 'node:dns';

import { parseNexthop } from './nexthop.js';

export { parseNexthop, type Nexthop } from './nexthop.js';

export interface Resolved { host: string; addr: string; port: number; preference: number }

export type ResolveResult =
  /** mx: the hosts came from MX records (the smtp client's loop check applies only then). */
  | { ok: true; hosts: Resolved[]; mx?: boolean }
  | { ok: false; temporary: boolean; dsn: string; reason: string };

export interface NextHopResolverOptions {
  /** Name servers as "ip" or "ip:port" ("[v6]:port"); default: the system's. */
  servers?: string[];
  /** Per-query timeout in ms (default 2000). */
  timeoutMs?: number;
  /** Tries per server (default 2). */
  tries?: number;
  /** How long results stay cached, positive and negative (default 60000 ms). */
  cacheTtlMs?: number;
  /** Most nexthops cached at once (default 10000); the oldest entry goes first. */
  cacheSize?: number;
  /**
   * smtp_host_lookup: how host names become addresses — 'dns' (A/AAAA queries), 'native'
   * (getaddrinfo: /etc/hosts, nsswitch), or both in the given order (default ['dns']).
   */
  hostLookup?: ('dns' | 'native')[];
  /** disable_dns_lookups = yes: no MX lookups, host addresses by native lookup only. */
  disableDns?: boolean;
}

/** Parses smtp_host_lookup ("dns", "native", "dns, native"); throws on anything else. */
export function parseHostLookup(value: string): ('dns' | 'native')[] {
  const items = value.split(/[\s,+]+/).filter((s) => s !== '');
  const out: ('dns' | 'native')[] = [];
  for (const i of items) {
    if (i !== 'dns' && i !== 'native') throw new Error(`smtp_host_lookup: unknown lookup mechanism "${i}" (use dns, native or both)`);
    if (!out.includes(i)) out.push(i);
  }
  if (out.length === 0) throw new Error('smtp_host_lookup: empty value (use dns, native or both)');
  return out;
}

/** Name servers from POSTACTOR_DNS_SERVERS (comma-separated "ip:port"), or undefined. */
export function resolverServersFromEnv(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const v = env['POSTACTOR_DNS_SERVERS'];
  if (!v) return undefined;
  const list = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  return list.length > 0 ? list : undefined;
}

/** Outcome of one lookup: records, NODATA, NXDOMAIN or a temporary failure. */
export type Lookup<T> = { kind: 'ok'; records: T[] } | { kind: 'nodata' } | { kind: 'nxdomain' } | { kind: 'temp' };

const LOCALHOST: readonly string[] = ['127.0.0.1', '::1'];

function classify(err: unknown): 'nodata' | 'nxdomain' | 'temp' {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === dnsp.NODATA) return 'nodata';
  if (code === dnsp.NOTFOUND) return 'nxdomain';
  return 'temp';
}

function notFound(name: string, type: string, what: Lookup<unknown>['kind']): ResolveResult {
  const base = `Host or domain name not found. Name service error for name=${name} type=${type}: `;
  if (what === 'temp') return { ok: false, temporary: true, dsn: '4.4.3', reason: `${base}Host not found, try again` };
  if (what === 'nodata') return { ok: false, temporary: false, dsn: '5.1.2', reason: `${base}Host found but no data record of requested type` };
  return { ok: false, temporary: false, dsn: '5.1.2', reason: `${base}Host not found` };
}

function shuffleInPlace<T>(a: T[], from: number, to: number): void {
  for (let i = to - 1; i > from; i--) {
    const j = from + Math.floor(Math.random() * (i - from + 1));
    const t = a[i]!; a[i] = a[j]!; a[j] = t;
  }
}

interface CacheEntry { expires: number; result: Promise<ResolveResult>; ties: boolean }

/**
 * A copy of `hosts` with MX hosts of equal preference in a new random order (each host
 * keeps its addresses together), so a cached MX list still spreads the load.
 */
function reshuffle(hosts: Resolved[]): Resolved[] {
  const groups: Resolved[][] = [];
  for (const h of hosts) {
    const g = groups[groups.length - 1];
    if (g && g[0]!.host === h.host && g[0]!.preference === h.preference) g.push(h);
    else groups.push([h]);
  }
  for (let i = 0; i < groups.length;) {
    let j = i + 1;
    while (j < groups.length && groups[j]![0]!.preference === groups[i]![0]!.preference) j++;
    if (j - i > 1) shuffleInPlace(groups, i, j);
    i = j;
  }
  return groups.flat();
}

function hasTies(hosts: Resolved[]): boolean {
  for (let i = 1; i < hosts.length; i++) {
    if (hosts[i]!.preference === hosts[i - 1]!.preference && hosts[i]!.host !== hosts[i - 1]!.host) return true;
  }
  return false;
}

export class NextHopResolver {
  private readonly resolver: dnsp.Resolver;
  private readonly ttl: number;
  private readonly cacheSize: number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly hostLookup: ('dns' | 'native')[];
  private readonly disableDns: boolean;

  constructor(opts: NextHopResolverOptions = {}) {
    this.disableDns = opts.disableDns ?? false;
    this.hostLookup = this.disableDns ? ['native'] : opts.hostLookup ?? ['dns'];
    this.resolver = new dnsp.Resolver({ timeout: opts.timeoutMs ?? 2000, tries: opts.tries ?? 2 });
    if (opts.servers && opts.servers.length > 0) this.resolver.setServers(opts.servers);
    this.ttl = opts.cacheTtlMs ?? 60000;
    this.cacheSize = opts.cacheSize ?? 10000;
  }

  resolve(nexthop: string, defaultPort = 25): Promise<ResolveResult> {
    const key = defaultPort === 25 ? nexthop : `${nexthop}\0${defaultPort}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.expires > now) {
      return hit.ties ? hit.result.then((r) => (r.ok ? { ...r, hosts: reshuffle(r.hosts) } : r)) : hit.result;
    }
    if (hit) this.cache.delete(key);
    const result = this.lookup(nexthop, defaultPort);
    if (this.ttl > 0) {
      if (this.cache.size >= this.cacheSize) {
        const oldest = this.cache.keys().next();
        if (!oldest.done) this.cache.delete(oldest.value);
      }
      const entry: CacheEntry = { expires: now + this.ttl, result, ties: false };
      this.cache.set(key, entry);
      void result.then((r) => { entry.ties = r.ok && hasTies(r.hosts); });
    }
    return result;
  }

  /**
   * The TXT records of `name`, each record's character strings joined into one text (as
   * RFC 7208 and RFC 8461 read a record split into 255-byte strings).
   */
  async txt(name: string): Promise<Lookup<string>> {
    try {
      const records = await this.resolver.resolveTxt(name);
      return records.length > 0 ? { kind: 'ok', records: records.map((chunks) => chunks.join('')) } : { kind: 'nodata' };
    } catch (e) {
      return { kind: classify(e) };
    }
  }

  /** Forgets cached results (all, or one nexthop). */
  flush(nexthop?: string): void {
    if (nexthop === undefined) this.cache.clear();
    else for (const k of this.cache.keys()) if (k === nexthop || k.startsWith(`${nexthop}\0`)) this.cache.delete(k);
  }

  private async lookup(nexthop: string, defaultPort: number): Promise<ResolveResult> {
    const nh = parseNexthop(nexthop, defaultPort);
    if (!nh) return { ok: false, temporary: false, dsn: '5.1.2', reason: `malformed nexthop: "${nexthop}"` };
    if (nh.ipVersion !== 0) return { ok: true, hosts: [{ host: nh.name, addr: nh.name, port: nh.port, preference: 0 }] };
    if (nh.noMx) {
      const a = await this.addresses(nh.name);
      if (a.kind !== 'ok') return notFound(nh.name, a.kind === 'nodata' ? 'AAAA' : 'A', a.kind);
      return { ok: true, hosts: a.records.map((addr) => ({ host: nh.name, addr, port: nh.port, preference: 0 })) };
    }
    if (this.disableDns) {
      const a = await this.addresses(nh.name);
      if (a.kind !== 'ok') return notFound(nh.name, 'A', a.kind);
      return { ok: true, hosts: a.records.map((addr) => ({ host: nh.name, addr, port: nh.port, preference: 0 })) };
    }
    return this.mxLookup(nh.name, nh.port);
  }

  private async mxLookup(domain: string, port: number): Promise<ResolveResult> {
    let mx: { exchange: string; priority: number }[];
    try {
      mx = await this.resolver.resolveMx(domain);
    } catch (e) {
      const kind = classify(e);
      if (kind !== 'nodata') return notFound(domain, 'MX', kind);
      mx = [];
    }
    if (mx.length === 0) {
      const a = await this.addresses(domain);
      if (a.kind !== 'ok') return notFound(domain, a.kind === 'nodata' ? 'AAAA' : 'A', a.kind);
      return { ok: true, hosts: a.records.map((addr) => ({ host: domain, addr, port, preference: 0 })) };
    }
    if (mx.length === 1 && (mx[0]!.exchange === '' || mx[0]!.exchange === '.')) {
      return { ok: false, temporary: false, dsn: '5.1.10', reason: `Host or domain name not found. Name service error for name=${domain} type=MX: domain does not accept mail (nullMX)` };
    }
    mx.sort((x, y) => x.priority - y.priority);
    for (let i = 0; i < mx.length;) {
      let j = i + 1;
      while (j < mx.length && mx[j]!.priority === mx[i]!.priority) j++;
      if (j - i > 1) shuffleInPlace(mx, i, j);
      i = j;
    }
    const expanded = await Promise.all(mx.map((m) => this.addresses(m.exchange.replace(/\.$/, ''))));
    const hosts: Resolved[] = [];
    let lastMiss: { name: string; kind: Lookup<unknown>['kind'] } | null = null;
    for (let i = 0; i < mx.length; i++) {
      const a = expanded[i]!;
      const name = mx[i]!.exchange.replace(/\.$/, '');
      if (a.kind !== 'ok') { lastMiss = { name, kind: a.kind }; continue; }
      for (const addr of a.records) hosts.push({ host: name, addr, port, preference: mx[i]!.priority });
    }
    if (hosts.length > 0) return { ok: true, hosts, mx: true };
    // Every MX host lacks an address: temporary, as Postfix treats a broken MX list.
    const miss = lastMiss!;
    const base = `Host or domain name not found. Name service error for name=${miss.name} type=A: `;
    return { ok: false, temporary: true, dsn: '4.4.3', reason: `${base}${miss.kind === 'temp' ? 'Host not found, try again' : 'Host not found'}` };
  }

  /** The addresses of `name` by the smtp_host_lookup mechanisms in order: the first that finds any. */
  private async addresses(name: string): Promise<Lookup<string>> {
    if (name.toLowerCase() === 'localhost') return { kind: 'ok', records: LOCALHOST.slice() };
    let last: Lookup<string> = { kind: 'nxdomain' };
    for (const how of this.hostLookup) {
      last = how === 'dns' ? await this.dnsAddresses(name) : await nativeAddresses(name);
      if (last.kind === 'ok') return last;
    }
    return last;
  }

  /** A then AAAA records of `name` (both queried at once); IPv4 addresses first. */
  private async dnsAddresses(name: string): Promise<Lookup<string>> {
    const [v4, v6] = await Promise.all([
      this.resolver.resolve4(name).then((r): Lookup<string> => ({ kind: 'ok', records: r }), (e) => ({ kind: classify(e) })),
      this.resolver.resolve6(name).then((r): Lookup<string> => ({ kind: 'ok', records: r }), (e) => ({ kind: classify(e) })),
    ]);
    const records: string[] = [];
    if (v4.kind === 'ok') records.push(...v4.records);
    if (v6.kind === 'ok') records.push(...v6.records);
    if (records.length > 0) return { kind: 'ok', records };
    if (v4.kind === 'temp' || v6.kind === 'temp') return { kind: 'temp' };
    if (v4.kind === 'nxdomain' || v6.kind === 'nxdomain') return { kind: 'nxdomain' };
    return { kind: 'nodata' };
  }
}

/** getaddrinfo (dns.lookup): /etc/hosts and the system's name service; IPv4 first. */
async function nativeAddresses(name: string): Promise<Lookup<string>> {
  try {
    const list = await dnsp.lookup(name, { all: true });
    const records = [...list.filter((a) => a.family === 4), ...list.filter((a) => a.family === 6)].map((a) => a.address);
    return records.length > 0 ? { kind: 'ok', records } : { kind: 'nodata' };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND') return { kind: 'nxdomain' };
    if (code === 'ENODATA') return { kind: 'nodata' };
    return { kind: 'temp' };
  }
}
