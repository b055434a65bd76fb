/**
 * qmgr's address resolver client: recipient → (transport, nexthop) by a request to the
 * `rewrite` service (trivial-rewrite, actors/trivial-rewrite/) through the router, with a cache
 * (LRU + TTL, emptied when a table behind the results changes on disk).
 *
 * The request carries the message's envelope sender, as Postfix's qmgr asks
 * resolve_clnt_query_from(): with sender_dependent_relayhost_maps or
 * sender_dependent_default_transport_maps configured the answer depends on it, and the cache is
 * keyed by (sender, recipient); without them by the recipient alone, so that the common case
 * keeps one entry per recipient however many senders write to it.
 *
 * When master.cf has no trivial-rewrite service, qmgr resolves in-process with the same pure
 * module (and logs that once). A busy rewrite pool is also answered in-process (same module,
 * same answer); any other failure of the service is a temporary "address resolver failure".
 */
import type { Config } from '../../src/config/index.js';
import { readParams, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { ServiceError } from '../../src/runtime/wire.js';
import { ResolveCache, tableFiles } from '../../src/rewrite/cache.js';
import { rewriteService, TrivialRewrite } from '../../src/rewrite/settings.js';
import { resolveService, type ResolveReply, type RewriteRequest } from '../protocol.js';

/** The parameters that make a resolve depend on the envelope sender. */
const SENDER_MAPS = ['sender_dependent_relayhost_maps', 'sender_dependent_default_transport_maps',
  'address_verify_sender_dependent_relayhost_maps', 'address_verify_sender_dependent_default_transport_maps'];

export interface Route {
  transport: string;
  nexthop: string;
  /** Destination key: one queue per transport and nexthop. */
  key: string;
  /** The address to deliver to. */
  recipient: string;
  /** Set when the recipient cannot be delivered: bounce (5xx) or defer (4xx) without a delivery. */
  error?: { dsn: string; text: string };
}

/**
 * What the resolver client reads itself (with the rest of qmgr's: manager.ts QMGR_PARAMS). The
 * sender-dependent maps and the table files are the rewrite service's parameters, read from its
 * configuration (main.cf with its -o overrides), and the in-process fallback reads what
 * trivial-rewrite declares (src/rewrite/settings.ts).
 */
export const RESOLVE_PARAMS = {
  'double_bounce_sender': 'str',
  'myorigin': 'str',
} as const;

export class Resolver {
  private readonly service: string | null;
  private local: TrivialRewrite | null = null;
  private readonly cache: ResolveCache<Route>;
  /** double_bounce_sender@$myorigin and master.cf's discard service: mail to it is dropped. */
  private readonly doubleBounce: string;
  private readonly discard: string | null;
  /** The resolve answer depends on the sender: the cache keys on it too. */
  private readonly senderDependent: boolean;

  constructor(private readonly config: Config, private readonly actor: Actor, private readonly log: Logger, p: Params<typeof RESOLVE_PARAMS> = readParams(config, RESOLVE_PARAMS, 'qmgr')) {
    const service = rewriteService(config);
    this.service = service?.name ?? null;
    this.discard = config.services.find((s) => s.command === 'discard')?.name ?? null;
    this.doubleBounce = `${p.double_bounce_sender}@${p.myorigin}`.toLowerCase();
    if (!this.service) log.info('no trivial-rewrite service in master.cf: qmgr resolves addresses in-process');
    // What the rewrite service reads: main.cf with its master.cf -o overrides.
    const rewrite = service && Object.keys(service.overrides).length > 0 ? config.withOverrides(service.overrides) : config;
    this.senderDependent = SENDER_MAPS.some((p) => rewrite.getList(p).length > 0);
    this.cache = new ResolveCache(tableFiles(rewrite, ['transport_maps', 'relocated_maps', 'address_verify_transport_maps', ...SENDER_MAPS]));
  }

  /** The route of one recipient of a message from `sender` ('' for the null sender). */
  async route(address: string, sender: string, probe = false): Promise<Route> {
    // A newline cannot occur in an envelope address: the pair key is unambiguous. Probes
    // (address_verify_* routing) have their own keys.
    const key = (probe ? 'verify\n' : '') + (this.senderDependent ? `${sender}\n${address}` : address);
    const hit = this.cache.get(key);
    if (hit) return hit;
    let reply: ResolveReply;
    try {
      reply = await this.resolve(address, sender, probe);
    } catch (err) {
      this.log.warn(`address resolver failure for <${address}>: ${(err as Error)?.message ?? err}`);
      return { transport: 'error', nexthop: '', key: 'error:', recipient: address, error: { dsn: '4.3.0', text: 'address resolver failure' } };
    }
    const { transport, nexthop, recipient, flags } = reply;
    if (this.discard && reply.class === 'local' && recipient.toLowerCase() === this.doubleBounce) {
      // Postfix's qmgr drops mail to the double-bounce address (it ends bounce loops), through
      // the discard agent, so that it needs no local delivery.
      return { transport: this.discard, nexthop: recipient, key: `${this.discard}:${recipient}`, recipient };
    }
    const route: Route = { transport, nexthop, key: `${transport}:${nexthop}`, recipient };
    if (flags.error) {
      route.error = { dsn: flags.error.dsn, text: flags.error.text };
      if (flags.warning) this.log.warn(`${flags.warning}: address resolver failure for <${address}>`);
      if (flags.error.dsn.startsWith('4')) return route; // temporary: not cached
    } else if (flags.warning) {
      this.log.warn(flags.warning); // e.g. "…: ignoring null lookup result for …"
    }
    this.cache.set(key, route);
    return route;
  }

  private resolve(address: string, sender: string, probe: boolean): Promise<ResolveReply> {
    const req: RewriteRequest = { op: 'resolve', sender, address, ...(probe ? { verify: true } : {}) };
    if (!this.service) return this.inProcess(req);
    return resolveService.call(this.actor, req, this.service).catch((err: unknown) => {
      if (err instanceof ServiceError && err.code === 'BUSY') return this.inProcess(req);
      throw err;
    });
  }

  private inProcess(req: RewriteRequest & { op: 'resolve' }): Promise<ResolveReply> {
    this.local ??= new TrivialRewrite(this.config);
    return this.local.handle(req) as Promise<ResolveReply>;
  }
}
