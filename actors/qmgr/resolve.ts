/**
 * qmgr's address resolver client: recipient → (transport, nexthop) by a request to the
 * `rewrite` service (trivial-rewrite, actors/trivial-rewrite/) through the router, with a cache
 * (LRU + TTL, emptied when transport_maps / relocated_maps change on disk).
 *
 * When master.cf has no trivial-rewrite service, qmgr resolves in-process with the same pure
 * module (and logs that once). A busy rewrite pool is also answered in-process (same module,
 * same answer); any other failure of the service is a temporary "address resolver failure".
 */
import type { Config } from '../../src/config/index.js';
import type { Logger } from '../../src/log/maillog.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { ServiceError } from '../../src/runtime/wire.js';
import { ResolveCache, tableFiles } from '../trivial-rewrite/cache.js';
import { TrivialRewrite } from '../trivial-rewrite/settings.js';
import type { ResolveReply, RewriteRequest } from '../protocol.js';

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

export class Resolver {
  private readonly service: string | null;
  private local: TrivialRewrite | null = null;
  private readonly cache: ResolveCache<Route>;
  /** double_bounce_sender@$myorigin and master.cf's discard service: mail to it is dropped. */
  private readonly doubleBounce: string;
  private readonly discard: string | null;

  constructor(private readonly config: Config, private readonly actor: Actor, private readonly log: Logger) {
    this.service = config.services.find((s) => s.command === 'trivial-rewrite')?.name ?? null;
    this.discard = config.services.find((s) => s.command === 'discard')?.name ?? null;
    this.doubleBounce = `${config.get('double_bounce_sender')}@${config.get('myorigin')}`.toLowerCase();
    if (!this.service) log.info('no trivial-rewrite service in master.cf: qmgr resolves addresses in-process');
    this.cache = new ResolveCache(tableFiles(config, ['transport_maps', 'relocated_maps']));
  }

  async route(address: string): Promise<Route> {
    const hit = this.cache.get(address);
    if (hit) return hit;
    let reply: ResolveReply;
    try {
      reply = await this.resolve(address);
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
    }
    this.cache.set(address, route);
    return route;
  }

  private resolve(address: string): Promise<ResolveReply> {
    const req: RewriteRequest = { op: 'resolve', address };
    if (!this.service) return this.inProcess(req);
    return this.actor.request<ResolveReply>(this.service, req).catch((err: unknown) => {
      if (err instanceof ServiceError && err.code === 'BUSY') return this.inProcess(req);
      throw err;
    });
  }

  private inProcess(req: RewriteRequest & { op: 'resolve' }): Promise<ResolveReply> {
    this.local ??= new TrivialRewrite(this.config);
    return this.local.handle(req) as Promise<ResolveReply>;
  }
}
