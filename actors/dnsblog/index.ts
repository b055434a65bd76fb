/**
 * dnsblog: Postfix's dnsblog(8), the DNS list lookup service postscreen asks (a pool,
 * master.cf "dnsblog unix - - y - 0 dnsblog"). One request = one client address and one DNSBL
 * domain; the answer is the A records found and the lowest TTL, -1 when none is known. A
 * listing is logged "addr <addr> listed by domain <domain> as <a.b.c.d>", a lookup error
 * "warning: dnsblog_query: lookup error for DNS query <name>: <why>" (and counts as not
 * listed, as in Postfix).
 *
 * Name servers: POSTACTOR_DNS_SERVERS (as the smtp client and smtpd's reject_rbl_client),
 * else the system's. dnsblog_reply_delay delays each answer (Postfix's testing aid).
 */
import { promises as dnsp } from 'node:dns';
import { resolverServersFromEnv } from '../../src/dns/resolver.js';
import { maillog } from '../../src/log/maillog.js';
import { defineService } from '../../src/runtime/service.js';
import meta from './meta.js';
import { dnsblQueryName } from '../../src/postscreen/dnsbl.js';
import type { DnsblRequest, DnsblReply } from '../protocol.js';

const log = maillog('dnsblog');
let delayMs = 0;

export default defineService({
  ...meta,
  params: { 'dnsblog_reply_delay': 'time' },
  setup({ params }): dnsp.Resolver {
    delayMs = params.dnsblog_reply_delay * 1000;
    const r = new dnsp.Resolver({ timeout: 5000, tries: 2 });
    const servers = resolverServersFromEnv();
    if (servers) r.setServers(servers);
    return r;
  },
  handle: dnsblog,
});

async function dnsblog(r: dnsp.Resolver, req: DnsblRequest): Promise<DnsblReply> {
  const name = dnsblQueryName(req.addr, req.domain);
  const reply: DnsblReply = { addr: req.addr, domain: req.domain, addrs: [], ttl: -1 };
  try {
    const found = await r.resolve4(name, { ttl: true });
    for (const a of found) {
      log.info(`addr ${req.addr} listed by domain ${req.domain} as ${a.address}`);
      reply.addrs.push(a.address);
      if (reply.ttl < 0 || reply.ttl > a.ttl) reply.ttl = a.ttl;
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Node does not hand over the SOA of a negative answer, so its TTL stays unknown (-1).
    if (code !== dnsp.NOTFOUND && code !== dnsp.NODATA) log.warn(`dnsblog_query: lookup error for DNS query ${name}: ${code ?? (e as Error).message}`);
  }
  if (delayMs > 0) await new Promise((res) => setTimeout(res, delayMs));
  return reply;
}
