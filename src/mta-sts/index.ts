/**
 * MTA-STS (RFC 8461) for the smtp client: which policy applies to a next-hop domain.
 *
 *   new MtaSts(options)        one per smtp worker thread; policies are shared through the cache
 *   sts.policyFor(domain)      { mode: enforce | testing, mx[] } or null (no policy, mode none)
 *   mxMatches(policy, host)    whether an MX host name is allowed by the policy's mx patterns
 *
 * Discovery, as RFC 8461 §3 and §5.1 describe it: the _mta-sts.<domain> TXT record names the
 * policy's id. A cached policy (the queue store's mta-sts database: shared by every thread,
 * kept across restarts) with that id and within its max_age is used as it is; a new or
 * changed id, or no valid cached policy, fetches https://mta-sts.<domain>/.well-known/mta-sts.txt
 * and caches the result. When there is no usable record or the fetch fails (bad certificate,
 * no answer, a malformed policy), a cached policy still within its max_age is used; without
 * one the domain has no policy and mail goes as if MTA-STS did not exist. A fetched policy in
 * mode "none" replaces the cached one (that is how a domain withdraws its policy).
 *
 * The TXT answer is trusted for `recheckMs` in memory (default 60 s, the resolver's cache
 * time), and concurrent deliveries to one domain share one discovery, so the delivery hot path
 * does not query DNS per message.
 */

import type { NextHopResolver } from '../dns/resolver.js';
import type { StsPolicyRecord } from '../queue/types.js';
import { fetchStsPolicy, policyUrl } from './fetch.js';
import { parseStsPolicy, stsRecordId, type StsMode } from './policy.js';

export { mxMatches, parseStsPolicy, stsRecordId, type StsPolicy, type StsMode } from './policy.js';
export { fetchStsPolicy, policyUrl } from './fetch.js';

/** Where policies are cached (the queue store). */
export interface StsCache {
  stsPolicy(domain: string): StsPolicyRecord | undefined;
  putStsPolicy(domain: string, policy: StsPolicyRecord): Promise<void>;
}

export interface MtaStsOptions {
  resolver: NextHopResolver;
  cache: StsCache;
  /** HTTPS port of the policy host: 443 except in tests (POSTACTOR_MTA_STS_PORT). */
  port?: number;
  /** CAs trusted for the policy host (PEM); default: Node's. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Deadline of one policy fetch, ms (default 20000). */
  timeoutMs?: number;
  /** How long a discovery result is reused without asking DNS again, ms (default 60000). */
  recheckMs?: number;
  /** Gets a text for each record, fetch or policy that is wrong (the caller logs "warning:"). */
  warn: (text: string) => void;
  now?: () => number;
}

/** The policy a delivery applies: enforce or testing (mode none is "no policy"). */
export interface AppliedStsPolicy {
  mode: Exclude<StsMode, 'none'>;
  mx: string[];
  /** The TXT id it was fetched under (for log lines). */
  id: string;
}

interface Discovery { until: number; result: Promise<StsPolicyRecord | null> }

export class MtaSts {
  private readonly recent = new Map<string, Discovery>();
  private readonly now: () => number;

  constructor(private readonly o: MtaStsOptions) {
    this.now = o.now ?? Date.now;
  }

  async policyFor(domainName: string): Promise<AppliedStsPolicy | null> {
    const domain = domainName.toLowerCase().replace(/\.$/, '');
    const now = this.now();
    let d = this.recent.get(domain);
    if (d === undefined || d.until <= now) {
      d = { until: now + (this.o.recheckMs ?? 60000), result: this.discover(domain) };
      this.recent.set(domain, d);
      if (this.recent.size > 10000) this.recent.delete(this.recent.keys().next().value!);
    }
    const rec = await d.result;
    if (rec === null || rec.mode === 'none' || !this.valid(rec)) return null;
    return { mode: rec.mode, mx: rec.mx, id: rec.id };
  }

  /** Within its max_age. */
  private valid(rec: StsPolicyRecord | undefined): rec is StsPolicyRecord {
    return rec !== undefined && this.now() < rec.fetched + rec.maxAge * 1000;
  }

  private async discover(domain: string): Promise<StsPolicyRecord | null> {
    const stored = this.o.cache.stsPolicy(domain);
    const cached = this.valid(stored) ? stored : null;
    const id = await this.recordId(domain);
    // No live record: a cached policy still counts until its max_age (RFC 8461 §5.1).
    if (id === null) return cached;
    if (cached !== null && cached.id === id) return cached;
    const url = policyUrl(domain, this.o.port);
    const fallback = cached !== null ? `using the cached policy (id ${cached.id})` : 'no policy';
    const hosts = await this.o.resolver.resolve(`[mta-sts.${domain}]`, this.o.port ?? 443);
    if (!hosts.ok) {
      this.o.warn(`MTA-STS policy for ${domain}: ${url}: ${hosts.reason}; ${fallback}`);
      return cached;
    }
    const fetched = await fetchStsPolicy(domain, {
      addresses: hosts.hosts.map((h) => h.addr),
      ...(this.o.port !== undefined ? { port: this.o.port } : {}),
      ...(this.o.ca !== undefined ? { ca: this.o.ca } : {}),
      ...(this.o.timeoutMs !== undefined ? { timeoutMs: this.o.timeoutMs } : {}),
    });
    if (!fetched.ok) {
      this.o.warn(`MTA-STS policy for ${domain}: ${url}: ${fetched.error}; ${fallback}`);
      return cached;
    }
    const policy = parseStsPolicy(fetched.text);
    if ('error' in policy) {
      this.o.warn(`MTA-STS policy for ${domain}: ${url}: ${policy.error}; ${fallback}`);
      return cached;
    }
    const rec: StsPolicyRecord = { id, mode: policy.mode, mx: policy.mx, maxAge: policy.maxAge, fetched: this.now() };
    await this.o.cache.putStsPolicy(domain, rec);
    return rec;
  }

  /** The id of the domain's _mta-sts TXT record; null when there is none usable. */
  private async recordId(domain: string): Promise<string | null> {
    const txt = await this.o.resolver.txt(`_mta-sts.${domain}`);
    if (txt.kind !== 'ok') return null; // NXDOMAIN, NODATA, or a failing name server
    const r = stsRecordId(txt.records);
    if ('id' in r) return r.id;
    // Other TXT records at that name are not ours to judge; a broken STS record is worth a word.
    if (txt.records.some((t) => t.startsWith('v=STSv1'))) this.o.warn(`MTA-STS policy for ${domain}: _mta-sts.${domain}: ${r.error}`);
    return null;
  }
}
