/**
 * smtp: the SMTP/LMTP-less delivery agent (Postfix's smtp(8)), a pool. One task is one
 * delivery: one message, a batch of its recipients, one nexthop. The agent reads the content
 * from the queue store itself (only IDs travel between actors), finds the next-hop hosts (MX or
 * [host]:port), speaks ESMTP through a per-worker connection cache, and logs Postfix's
 * "to=<…>, relay=…, delay=…, delays=…, dsn=…, status=…" line per recipient. What goes out is
 * the stored content through smtp_*_checks and smtp_generic_maps (src/smtp/outgoing.ts).
 */
import { NextHopResolver, parseHostLookup, parseNexthop, resolverServersFromEnv, type Resolved } from '../../src/dns/resolver.js';
import { canonicalIp, ownAddresses } from '../../src/address/interfaces.js';
import { outgoingContent } from '../../src/smtp/outgoing.js';
import { genericMaps, MAPPING_FAILURE, mapEnvelope, SMTP_GENERIC_PARAMS, type GenericMaps } from '../../src/smtp/generic.js';
import { HeaderBodyChecks, SMTP_HBC_PARAMS } from '../../src/content/header-body-checks.js';
import type { Logger } from '../../src/log/maillog.js';
import type { QueueStore } from '../../src/queue/store.js';
import { SmtpClient, type DeliveryResult } from '../../src/smtp/client.js';
import { sourceAddresses, SMTP_BIND_PARAMS } from '../../src/smtp/bind-address.js';
import { defineService, type ServiceContext } from '../../src/runtime/service.js';
import meta from './meta.js';
import { smtpSasl, SMTP_SASL_PARAMS, type SmtpSasl } from '../../src/smtp/sasl-config.js';
import type { DeliveryReply, DeliveryRequest, RecipientOutcome } from '../protocol.js';
import { formatDelays, smtpEnvelope, StatusLog } from '../../src/delivery/log.js';
import { agentTls, requestTls, SMTP_AGENT_TLS_PARAMS, type AgentTls } from '../../src/smtp/agent-tls.js';
import { applyMtaSts, stsAgent, stsTls } from './mta-sts.js';
import type { MtaSts } from '../../src/mta-sts/index.js';
import { agentContent, corruptReply } from '../../src/delivery/content.js';
import { bounceOrDefer, SOFT_BOUNCE_PARAMS } from '../../src/delivery/soft-bounce.js';

interface State {
  /** SMTP AUTH to next hops (smtp_sasl_*), null when off. */
  sasl: SmtpSasl | null;
  store: QueueStore;
  client: SmtpClient;
  resolver: NextHopResolver;
  /** MTA-STS (smtp_tls_mta_sts), null when off. */
  sts: MtaSts | null;
  log: Logger;
  tls: AgentTls;
  service: string;
  /** For MX loop detection: $myhostname and the addresses of inet_interfaces / proxy_interfaces. */
  myhostname: string;
  own: Set<string>;
  /** smtp_generic_maps, when set. */
  generic: GenericMaps | null;
  /** smtp_header_checks, smtp_mime_header_checks, smtp_nested_header_checks, smtp_body_checks, when one is set. */
  checks: HeaderBodyChecks | null;
  /** soft_bounce: a bounce is kept as a deferral (src/delivery/soft-bounce.ts). */
  softBounce: boolean;
}

/**
 * What smtp reads, once per thread with the registry's types (src/runtime/service.ts): its own
 * parameters, and those of the shared client code it uses (TLS, SASL, source address), which
 * that code declares beside itself.
 */
const PARAMS = {
  ...SMTP_AGENT_TLS_PARAMS,
  ...SMTP_SASL_PARAMS,
  ...SMTP_BIND_PARAMS,
  ...SMTP_HBC_PARAMS,
  ...SMTP_GENERIC_PARAMS,
  ...SOFT_BOUNCE_PARAMS,
  'smtp_host_lookup': 'str',
  'disable_dns_lookups': 'bool',
  'smtp_helo_name': 'str',
  'smtp_connect_timeout': 'time',
  'smtp_helo_timeout': 'time',
  'smtp_mail_timeout': 'time',
  'smtp_rcpt_timeout': 'time',
  'smtp_data_init_timeout': 'time',
  'smtp_data_xfer_timeout': 'time',
  'smtp_data_done_timeout': 'time',
  'smtp_quit_timeout': 'time',
  'smtp_skip_quit_response': 'bool',
  'smtp_connection_cache_time_limit': 'time',
  'smtp_connection_reuse_count_limit': 'int',
  'smtp_connection_reuse_time_limit': 'time',
  'smtp_line_length_limit': 'int',
  'smtp_send_xforward_command': 'bool',
  'myhostname': 'str',
  'proxy_interfaces': 'list',
} as const;

function init(ctx: ServiceContext<typeof PARAMS>): State {
  const { config, log, params: p } = ctx;
  const ms = (seconds: number) => seconds * 1000;
  const sasl = smtpSasl({ prefix: 'smtp', params: p }, config.configDirectory);
  const bind = sourceAddresses({ prefix: 'smtp', params: p });
  if (typeof bind === 'string') throw new Error(bind);
  const tls = agentTls({ prefix: 'smtp', params: p }, config.configDirectory, log);
  const store = ctx.store;
  const resolver = new NextHopResolver({
    servers: resolverServersFromEnv(),
    hostLookup: parseHostLookup(p.smtp_host_lookup),
    disableDns: p.disable_dns_lookups,
  });
  return {
    store,
    client: new SmtpClient({
      heloName: p.smtp_helo_name,
      connectTimeout: ms(p.smtp_connect_timeout),
      heloTimeout: ms(p.smtp_helo_timeout),
      mailTimeout: ms(p.smtp_mail_timeout),
      rcptTimeout: ms(p.smtp_rcpt_timeout),
      dataInitTimeout: ms(p.smtp_data_init_timeout),
      dataXferTimeout: ms(p.smtp_data_xfer_timeout),
      dataDoneTimeout: ms(p.smtp_data_done_timeout),
      quitTimeout: ms(p.smtp_quit_timeout),
      skipQuitResponse: p.smtp_skip_quit_response,
      idleTimeout: ms(p.smtp_connection_cache_time_limit),
      reuseLimit: p.smtp_connection_reuse_count_limit,
      reuseTimeLimit: ms(p.smtp_connection_reuse_time_limit),
      bind,
      lineLengthLimit: p.smtp_line_length_limit,
      onWarning: (text) => log.warn(text),
      sendXforward: p.smtp_send_xforward_command,
      softBounce: p.soft_bounce,
      ...(sasl ? { sasl: sasl.settings } : {}),
      ...tls.client,
    }),
    sasl,
    resolver,
    sts: stsAgent(p, store, resolver, log),
    log,
    tls,
    service: ctx.service,
    myhostname: p.myhostname.toLowerCase(),
    own: ownAddresses(p.inet_interfaces, p.proxy_interfaces),
    generic: genericMaps({ prefix: 'smtp', params: p }),
    checks: HeaderBodyChecks.create({ prefix: 'smtp', params: p }, log, config.configDirectory ?? undefined),
    softBounce: p.soft_bounce,
  };
}

async function deliver(s: State, req: DeliveryRequest): Promise<DeliveryReply> {
  const started = Date.now();
  const read = agentContent(s.store, req);
  if ('damaged' in read) return corruptReply(req, read.damaged); // nothing goes out: qmgr sets it aside
  const content = 'content' in read ? read.content : undefined;
  if (!content) {
    // Deleted meanwhile (postsuper -d): nothing to deliver, nothing to report as delivered.
    return { queueId: req.queueId, ...logAll(s, req, req.recipients.map((r): RecipientOutcome => ({ index: r.index, status: 'deferred', dsn: '4.3.0', reason: 'queue file vanished', relay: 'none' })), started, { connect: 0, transmit: 0 }) };
  }
  let resolved = withoutSelf(s, req.nexthop, await s.resolver.resolve(req.nexthop));
  // MTA-STS may drop MX hosts (or all of them: 4.7.5), and an enforce policy raises TLS to
  // level secure for the MX host names.
  let requireSecure = false;
  if (s.sts !== null) ({ resolved, requireSecure } = await applyMtaSts(s.sts, req.queueId, req.nexthop, resolved, s.log));
  if (!resolved.ok) {
    const logged = logAll(s, req, req.recipients.map((r): RecipientOutcome => ({ index: r.index, status: resolved.temporary ? 'deferred' : 'bounced', dsn: resolved.dsn, reason: resolved.reason, relay: 'none' })), started, { connect: 0, transmit: 0 });
    return { queueId: req.queueId, ...logged, ...(resolved.temporary ? { siteFailure: resolved.reason } : {}) };
  }
  let tls = await requestTls(s.tls, req, req.nexthop, parseNexthop(req.nexthop)?.name ?? req.nexthop);
  if (requireSecure) tls = stsTls(tls, s.tls.settings);
  const env = smtpEnvelope(req, content.length);
  if (s.generic && !(await mapEnvelope(s.generic, env, 'smtp', s.log))) {
    return { queueId: req.queueId, ...logAll(s, req, req.recipients.map((r): RecipientOutcome => ({ index: r.index, ...MAPPING_FAILURE })), started, { connect: 0, transmit: 0 }) };
  }
  env.queueId = req.queueId;
  if (s.sasl) env.credentials = s.sasl.credentials(req.sender, req.nexthop);
  const result = await s.client.deliver(resolved.hosts.map((h) => ({ host: h.host, addr: h.addr, port: h.port })), env, outgoingContent({ checks: s.checks, generic: s.generic, prefix: 'smtp', log: s.log }, req.queueId, content), tls);
  const logged = logAll(s, req, outcomesOf(req, result), started, result.timings);
  // A failed handshake at level may does not count against the destination (SMTP_NOTHROTTLE).
  const throttle = result.kind === 'site-failure' && !result.noThrottle;
  return { queueId: req.queueId, ...logged, ...(throttle ? { siteFailure: result.reason ?? 'site failure' } : {}) };
}

/**
 * MX loop detection (Postfix's smtp_addr.c): when an MX host is this machine — its name is
 * $myhostname or its address is one of our interface addresses — only MX hosts more preferred
 * than ourselves are used; with none left the mail would loop: bounce 5.4.6 "mail for DOMAIN
 * loops back to myself".
 */
function withoutSelf(s: State, nexthop: string, r: Awaited<ReturnType<NextHopResolver['resolve']>>): typeof r {
  if (!r.ok || !r.mx) return r;
  const isSelf = (h: Resolved) => h.host.toLowerCase() === s.myhostname || s.own.has(canonicalIp(h.addr) ?? h.addr);
  let best = Infinity;
  for (const h of r.hosts) if (isSelf(h) && h.preference < best) best = h.preference;
  if (best === Infinity) return r;
  const hosts = r.hosts.filter((h) => h.preference < best);
  if (hosts.length > 0) return { ...r, hosts };
  const domain = parseNexthop(nexthop)?.name ?? nexthop;
  return { ok: false, temporary: false, dsn: '5.4.6', reason: `mail for ${domain} loops back to myself` };
}

/** One outcome per recipient, in Postfix's words. */
function outcomesOf(req: DeliveryRequest, first: DeliveryResult): RecipientOutcome[] {
  return req.recipients.map((r, i): RecipientOutcome => {
    const rr = first.recipients[i]!;
    // A recipient kept for a later host (soft_bounce) has that attempt's host and outcome.
    const result = rr.via ? { ...rr.via, recipients: first.recipients } : first;
    // No connection was made (Postfix: "relay=none" with "connect to …"): there is no relay to name.
    const connected = result.remoteAddr && !(result.kind === 'site-failure' && result.reason?.startsWith('connect to '));
    const relay = connected ? `${result.remoteHost}[${result.remoteAddr}]:${result.remotePort}` : 'none';
    const reply = rr.reply;
    const code = reply.code;
    const dsn = reply.enhanced ?? `${Math.floor(code / 100)}.0.0`;
    const replyText = `${code}${reply.enhanced ? ' ' + reply.enhanced : ''} ${reply.text}`.trim();
    if (rr.ok && result.kind === 'sent') {
      // DSN action of a success (Postfix's smtp_rcpt_done): "relayed", or — when the next hop
      // announced DSN and got NOTIFY — "passed": it sends any success notice, not us.
      const action = result.dsn ? 'passed' : 'relayed';
      if (req.verify) return { index: r.index, status: 'sent', dsn, reason: replyText, relay, action };
      return { index: r.index, status: 'sent', dsn, reason: result.queuedAs ? `250 ${result.queuedAs}` : replyText, relay, action };
    }
    const status = code >= 500 ? 'bounced' : 'deferred';
    const reason = result.kind === 'site-failure' || result.local
      ? result.reason ?? replyText
      : `host ${result.remoteHost}[${result.remoteAddr}] said: ${replyText}${inReplyTo(rr, result)}`;
    return { index: r.index, status, dsn: code >= 500 && dsn.startsWith('4') ? '5' + dsn.slice(1) : dsn, reason, relay };
  });
}

function inReplyTo(rr: { ok: boolean }, result: DeliveryResult): string {
  if (result.kind === 'message-failure') return rr.ok ? ' (in reply to end of DATA command)' : ' (in reply to MAIL FROM command)';
  return ' (in reply to RCPT TO command)';
}

/**
 * Logs each outcome (a bounce kept as a deferral under soft_bounce; a probe's lines are held for
 * qmgr: src/delivery/log.ts StatusLog) and returns them as logged.
 */
function logAll(s: State, req: DeliveryRequest, given: RecipientOutcome[], started: number, timings: { connect: number; transmit: number }): Pick<DeliveryReply, 'outcomes' | 'probeLines'> {
  const now = Date.now();
  const delays = formatDelays(req.arrival, req.activated, started, timings, now);
  const outcomes = given.map((o) => bounceOrDefer(o, s.softBounce, req.verify));
  const lines = new StatusLog(s.log, req.queueId, req);
  for (const o of outcomes) {
    const recipient = req.recipients.find((r) => r.index === o.index)!;
    lines.line(recipient, o, delays);
  }
  return { outcomes, ...lines.reply() };
}

export default defineService({
  ...meta,
  params: PARAMS,
  setup: init,
  handle: deliver,
});
