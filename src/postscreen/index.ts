/**
 * postscreen: Postfix's postscreen(8), the screen in front of smtpd (master.cf
 * "smtp inet … postscreen" with "smtpd pass … smtpd").
 *
 * Where it runs: in the threads of the smtpd pass service, one instance per thread. Postfix's
 * postscreen hands a client's socket to an smtpd process over a UNIX-domain socket; a
 * worker thread cannot hand a socket to another thread, and an fd number alone would leave
 * two owners of one socket. So each smtpd thread of the pass service listens on postscreen's
 * addresses itself (SO_REUSEPORT, as the smtpd listeners do), runs the screen on each
 * connection here, and a client that passes is given to the same thread's smtp-server as if
 * it had just connected (its 'connection' event): same socket, no copy, nothing the client
 * can notice except the "220-" teaser line that Postfix sends too. What Postfix's single
 * postscreen process shares, the threads share through memory and the queue store: the
 * per-client connection counts (a table in a SharedArrayBuffer, src/anvil/table.ts) and
 * the cache (LMDB, cache.ts).
 *
 * psc_endpt_lookup_done's order: CONNECT log, connection count limit, the permanent
 * allow/deny list, the cache (PASS OLD), then the tests before the greeting (early.ts), the
 * deep tests (smtpd.ts), and the conclusion (state.ts).
 */
import type * as net from 'node:net';
import { isIP } from 'node:net';
import type { Config } from '../config/index.js';
import { queueDirectory } from '../config/index.js';
import { maillog } from '../log/maillog.js';
import { openTable } from '../maps/index.js';
import { QueueStore } from '../queue/store.js';
import type { AnvilTable } from '../anvil/table.js';
import { clientKey } from '../anvil/table.js';
import type { DnsblReply, DnsblRequest } from './protocol.js';
import { evalAccessList } from './access.js';
import { readProxyHeader, type Endpoints } from './haproxy.js';
import { PostscreenCache } from './cache.js';
import { dnsblDomains, type DnsblAnswer } from './dnsbl.js';
import { earlyTests } from './early.js';
import { postscreenSettings, type PostscreenSettings } from './settings.js';
import { smtpdTests } from './smtpd.js';
import { Session, type SessionContext } from './state.js';
import { anyFail, deepTodo, earlyTodo, parseTests, todoTests } from './tests.js';

export { postscreenSettings } from './settings.js';
export type { Endpoints } from './haproxy.js';

const log = maillog('postscreen');

export interface PostscreenOptions {
  /** main.cf with the postscreen line's -o overrides. */
  config: Config;
  /** The shared per-client connection counts of this postscreen service (null: not counted). */
  counts: AnvilTable | null;
  /** How many sessions this postscreen service holds, all its threads together (one Int32). */
  sessions: Int32Array | null;
  /** A request to another service (dnsblog). */
  request: (service: string, body: unknown) => Promise<unknown>;
  /** Gives a passed client to this thread's smtpd (endpoints: the client as postscreen saw it, through a proxy too). */
  handOff: (socket: net.Socket, endpoints: Endpoints) => void;
  /** This thread runs the cache cleanup (one thread does). */
  cleanup: boolean;
}

export class Postscreen {
  private constructor(
    readonly settings: PostscreenSettings,
    private readonly opts: PostscreenOptions,
    private readonly cache: PostscreenCache | null,
    private readonly replyNames: Map<string, string>,
  ) {}

  static async create(opts: PostscreenOptions): Promise<Postscreen> {
    const settings = postscreenSettings(opts.config);
    // postscreen_dnsbl_reply_map: the DNSBL name shown to clients (secret list names stay secret).
    const replyNames = new Map<string, string>();
    if (settings.dnsblReplyMap) {
      const table = openTable(settings.dnsblReplyMap, { configDirectory: opts.config.configDirectory ?? '.' });
      for (const d of dnsblDomains(settings.dnsblSites)) {
        const r = await table.lookup(d);
        if (r.found) replyNames.set(d, r.value.trim());
      }
    }
    const cache = settings.cache ? new PostscreenCache(QueueStore.open(queueDirectory(opts.config)), settings, opts.config.get('postscreen_cache_map')) : null;
    if (cache && opts.cleanup) cache.startCleanup((t) => log.info(t));
    return new Postscreen(settings, opts, cache, replyNames);
  }

  close(): void {
    this.cache?.stop();
  }

  /** A new connection on postscreen's port. */
  accept(socket: net.Socket): void {
    // Errors end the session through 'close'; smtp-server adds its own handler after the hand-off.
    socket.on('error', () => undefined);
    if (this.settings.upstreamProxy === 'haproxy') {
      void readProxyHeader(socket, this.settings.upstreamProxyTimeout, (w) => log.warn(w)).then((ep) => {
        if (ep) return this.connect(socket, ep);
        if (!socket.destroyed) socket.end('421 4.3.2 No system resources\r\n');
        setTimeout(() => socket.destroy(), 2000).unref();
      });
      return;
    }
    const unmapped = (a: string) => (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a);
    this.connect(socket, {
      clientAddr: unmapped(socket.remoteAddress ?? ''), clientPort: socket.remotePort ?? 0,
      serverAddr: unmapped(socket.localAddress ?? ''), serverPort: socket.localPort ?? 0,
    });
  }

  /** psc_endpt_lookup_done: the client's endpoints are known. */
  private connect(socket: net.Socket, ep: Endpoints): void {
    const addr = ep.clientAddr;
    log.info(`CONNECT from [${addr}]:${ep.clientPort} to [${ep.serverAddr}]:${ep.serverPort}`);
    const settings = this.settings;
    const key = this.opts.counts ? clientKey(addr, 32, 128) : null;
    const count = key ? this.opts.counts!.connect(key)?.count ?? 1 : 1;
    const sessions = this.opts.sessions;
    const held = sessions ? Atomics.add(sessions, 0, 1) + 1 : 1;
    let released = false;
    const ctx: SessionContext = {
      settings,
      log,
      cacheUpdate: (a, entry) => this.cache?.update(a, entry, (w) => log.warn(w)),
      handOff: this.opts.handOff,
      release: () => {
        if (released) return;
        released = true;
        if (key) this.opts.counts!.disconnect(key);
        if (sessions) Atomics.sub(sessions, 0, 1);
      },
    };
    const s = new Session(ctx, socket, ep);
    if (settings.connectionLimit > 0 && count > settings.connectionLimit) {
      log.info(`NOQUEUE: reject: CONNECT from ${s.who}: too many connections`);
      return s.drop('421 4.7.0 Error: too many connections\r\n');
    }
    void this.screen(s, count, held).catch((err: Error) => {
      log.warn(`postscreen: ${s.who}: ${err.message}`);
      s.drop('421 4.3.2 Service currently unavailable\r\n');
    });
  }

  private async screen(s: Session, count: number, held: number): Promise<void> {
    const settings = this.settings;
    const st = s.st;
    // The permanent allow/deny list comes first.
    const verdict = await evalAccessList(settings.access, s.addr, (w) => log.warn(w));
    if (s.socket.destroyed) return s.hangupEvent();
    if (verdict === 'reject') {
      log.info(`${settings.respectful ? 'DENY' : 'BLACK'}LISTED ${s.who}`);
      st.denylisted = true;
      switch (settings.denylistAction) {
        case 'drop': return s.drop('521 5.3.2 Service currently unavailable\r\n');
        case 'enforce': s.enforce('550 5.3.2 Service currently unavailable\r\n'); break;
        case 'ignore': st.denylisted = false; break;
      }
    } else if (verdict === 'permit') {
      log.info(`${settings.respectful ? 'ALLOW' : 'WHITE'}LISTED ${s.who}`);
      return s.conclude();
    }
    // The temporary allowlist: every enabled test still valid ⇒ PASS OLD. Another session of
    // this client in progress shares the cached results (Postfix keeps one record per client
    // address), but only the first session logs the verdict.
    const now = Math.floor(Date.now() / 1000);
    const entry = !anyFail(st) ? this.cache?.lookup(s.addr) : undefined;
    if (entry !== undefined) {
      parseTests(settings, st, entry, now);
      if (!st.todo.some(Boolean)) {
        if (count === 1) log.info(`PASS OLD ${s.who}`);
        return s.conclude();
      }
    } else {
      todoTests(settings, st, now);
    }
    // A client on an address that may not allowlist (a backup MX) can talk, but never passes.
    if (!settings.allowlistInterfaces(s.endpoints.serverAddr)) {
      st.vetoed = true;
      s.noforward = true;
      log.info(`${settings.respectful ? 'ALLOW' : 'WHITE'}LIST VETO ${s.who}`);
    }
    // postscreen_pre_queue_limit: no more sessions under test than this (this one included).
    if (settings.preQueueLimit > 0 && held >= settings.preQueueLimit) {
      log.info(`reject: connect from ${s.who}: all screening ports busy`);
      return s.drop('421 4.3.2 All screening ports are busy\r\n');
    }
    if (earlyTodo(st)) {
      earlyTests(s, {
        dnsblLookup: (a, onAnswer) => this.dnsblLookup(a, onAnswer),
        replyName: (d) => this.replyNames.get(d) ?? d,
        smtpdTests,
      });
    } else if (deepTodo(st) || s.noforward) smtpdTests(s);
    else s.conclude();
  }

  /** Sends one request per DNSBL domain to dnsblog; returns how many answers to expect. */
  private dnsblLookup(addr: string, onAnswer: (domain: string, answer: DnsblAnswer) => void): number {
    const domains = dnsblDomains(this.settings.dnsblSites);
    const timeout = this.settings.dnsblTimeout * 1000;
    for (const domain of domains) {
      const req: DnsblRequest = { addr, domain };
      let timer: NodeJS.Timeout | null = null;
      const late = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), timeout); });
      void Promise.race([this.opts.request(this.settings.dnsblogService, req) as Promise<DnsblReply>, late]).then((r) => {
        if (timer) clearTimeout(timer);
        if (r === null) return log.warn(`dnsblog reply timeout ${this.settings.dnsblTimeout}s for ${domain}`);
        onAnswer(domain, { addrs: r.addrs, ttl: r.ttl });
      }, (err: Error) => {
        if (timer) clearTimeout(timer);
        log.warn(`connect to ${this.settings.dnsblogService} service: ${err.message}`);
      });
    }
    return domains.length;
  }
}
