/**
 * The flush service's client (Postfix's flush_clnt.c), shared by its users: qmgr tells `add` for
 * each deferred recipient, smtpd asks `send_site` for ETRN, master for postqueue -s and
 * sendmail -qR. As in Postfix, the client first matches the destination against its own
 * fast_flush_domains (a service's -o overrides apply), so an ineligible destination never costs
 * a request; the service checks again with its own settings. Any failure to reach the service
 * is FLUSH_STAT_FAIL ('fail'), never an exception.
 */
import type { Config } from '../config/index.js';
import { DomainList } from '../address/domain.js';
import type { FlushReply, FlushRequest, FlushStatus } from './protocol.js';

export type { FlushStatus } from './protocol.js';

/** How a client reaches a service: (service name, request body) → reply. */
export type ServiceRequester = (service: string, body: unknown) => Promise<unknown>;

/** fast_flush_domains as Postfix's domain_list reads it (parent_domain_matches_subdomains names it by default). */
export function fastFlushDomains(config: Config): DomainList {
  return new DomainList(config.getList('fast_flush_domains'), config.getList('parent_domain_matches_subdomains').includes('fast_flush_domains'));
}

/** fast_flush_domains, or null when one of its files or tables cannot be opened (checkConfig reports it). */
export function fastFlushDomainsOrNull(config: Config): DomainList | null {
  try {
    return fastFlushDomains(config);
  } catch {
    return null;
  }
}

/** Why fast_flush_domains cannot be used (a file or table that does not open), one line each. */
export function fastFlushDomainsProblems(config: Config): string[] {
  return DomainList.unsupported(config.getList('fast_flush_domains')).map((p) => `fast_flush_domains: ${p}`);
}

export class FlushClient {
  private readonly domains: DomainList | null;
  readonly service: string;
  private readonly empty: boolean;

  constructor(config: Config, private readonly request: ServiceRequester) {
    this.domains = fastFlushDomainsOrNull(config);
    this.empty = config.getList('fast_flush_domains').length === 0;
    this.service = config.get('flush_service_name').trim();
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
