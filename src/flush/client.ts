/**
 * The flush service's client (Postfix's flush_clnt.c), shared by its users: qmgr tells `add` for
 * each deferred recipient, smtpd asks `send_site` for ETRN, master for postqueue -s and
 * sendmail -qR. As in Postfix, the client first matches the destination against its own
 * fast_flush_domains (a service's -o overrides apply), so an ineligible destination never costs
 * a request; the service checks again with its own settings. Any failure to reach the service
 * is FLUSH_STAT_FAIL ('fail'), never an exception.
 */
import type { Config } from '../config/index.js';
import { valuesOf, type Params } from '../config/declared.js';
import { DomainList } from '../address/domain.js';
import type { FlushReply, FlushRequest, FlushStatus } from './protocol.js';

export type { FlushStatus } from './protocol.js';

/** How a client reaches a service: (service name, request body) → reply. */
export type ServiceRequester = (service: string, body: unknown) => Promise<unknown>;

/** What the client reads (its users spread these into theirs; given a configuration, it reads them itself). */
export const FLUSH_CLIENT_PARAMS = {
  'fast_flush_domains': 'list',
  'parent_domain_matches_subdomains': 'list',
  'flush_service_name': 'str',
} as const;
type FlushClientParams = Params<typeof FLUSH_CLIENT_PARAMS>;

/** fast_flush_domains as Postfix's domain_list reads it (parent_domain_matches_subdomains names it by default). */
export function fastFlushDomains(from: Config | FlushClientParams): DomainList {
  const p = valuesOf(from, FLUSH_CLIENT_PARAMS, 'flush');
  return new DomainList(p.fast_flush_domains, p.parent_domain_matches_subdomains.includes('fast_flush_domains'));
}

/** fast_flush_domains, or null when one of its files or tables cannot be opened (checkConfig reports it). */
export function fastFlushDomainsOrNull(from: Config | FlushClientParams): DomainList | null {
  try {
    return fastFlushDomains(from);
  } catch {
    return null;
  }
}

/** Why fast_flush_domains cannot be used (a file or table that does not open), one line each. */
export function fastFlushDomainsProblems(from: Config | FlushClientParams): string[] {
  return DomainList.unsupported(valuesOf(from, FLUSH_CLIENT_PARAMS, 'flush').fast_flush_domains).map((p) => `fast_flush_domains: ${p}`);
}

export class FlushClient {
  private readonly domains: DomainList | null;
  readonly service: string;
  private readonly empty: boolean;

  constructor(from: Config | FlushClientParams, private readonly request: ServiceRequester) {
    const p = valuesOf(from, FLUSH_CLIENT_PARAMS, 'flush');
    this.domains = fastFlushDomainsOrNull(p);
    this.empty = p.fast_flush_domains.length === 0;
    this.service = p.flush_service_name.trim();
  }

  /** Whether the destination is eligible (deny) or the list could not be read (fail), before asking. */
  private async eligible(site: string): Promise<FlushStatus | null> {
    if (this.empty) return 'deny';
    if (!this.domains) return 'fail';
    try {
      return (await this.domains.has(site)) ? null : 'deny';
    } catch {
      return 'fail';
    }
  }

  /** flush_add: the message is queued (deferred) for the site. */
  async add(site: string, queueId: string): Promise<FlushStatus> {
    return (await this.eligible(site)) ?? this.call({ op: 'add', site, queueId });
  }

  /** flush_send_site: deliver the site's deferred mail now. */
  async sendSite(site: string): Promise<FlushStatus> {
    return (await this.eligible(site)) ?? this.call({ op: 'send_site', site });
  }

  private async call(body: FlushRequest): Promise<FlushStatus> {
    try {
      const reply = (await this.request(this.service, body)) as FlushReply;
      return reply?.status ?? 'fail';
    } catch {
      return 'fail';
    }
  }
}
