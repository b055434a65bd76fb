/**
 * Recipient → (transport, nexthop), the walking-skeleton form of trivial-rewrite's resolve:
 * the address class picks the transport (local for mydestination, relay for relay_domains,
 * default_transport otherwise); a "transport:nexthop" value sets the nexthop; relayhost is the
 * nexthop of relayed mail when set, else the recipient's domain (MX lookup). transport_maps,
 * virtual domains and relocated_maps come with issue 3.
 */
import type { Config } from '../../src/config/index.js';
import { DomainList, domainOf } from '../../src/address/domain.js';

export interface Route {
  transport: string;
  nexthop: string;
  /** Destination key: one queue per transport and nexthop. */
  key: string;
}

export class Resolver {
  private readonly local: DomainList;
  private readonly relay: DomainList;
  private readonly myhostname: string;
  private readonly relayhost: string;
  private readonly localTransport: [string, string];
  private readonly relayTransport: [string, string];
  private readonly defaultTransport: [string, string];
  private readonly cache = new Map<string, Route>();

  constructor(config: Config) {
    this.local = new DomainList(config.getList('mydestination'), false);
    this.relay = new DomainList(config.getList('relay_domains'), true);
    this.myhostname = config.get('myhostname');
    this.relayhost = config.get('relayhost').trim();
    this.localTransport = split(config.get('local_transport'));
    this.relayTransport = split(config.get('relay_transport'));
    this.defaultTransport = split(config.get('default_transport'));
  }

  route(recipient: string): Route {
    const domain = domainOf(recipient) || this.myhostname;
    let hit = this.cache.get(domain);
    if (hit) return hit;
    let transport: string;
    let nexthop: string;
    if (this.local.has(domain)) {
      [transport, nexthop] = this.localTransport;
      nexthop ||= this.myhostname;
    } else {
      [transport, nexthop] = this.relay.has(domain) ? this.relayTransport : this.defaultTransport;
      nexthop ||= this.relayhost || domain;
    }
    hit = { transport, nexthop, key: `${transport}:${nexthop}` };
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(domain, hit);
    return hit;
  }
}

/** "smtp:[host]:25" → ["smtp", "[host]:25"]; "smtp" → ["smtp", ""]. */
function split(value: string): [string, string] {
  const i = value.indexOf(':');
  return i < 0 ? [value.trim(), ''] : [value.slice(0, i).trim(), value.slice(i + 1).trim()];
}
