/**
 * lmtp: Postfix's lmtp(8), the smtp client in LMTP mode, a pool. It delivers to a
 * mailbox store (Dovecot, Cyrus) over TCP or a UNIX-domain socket:
 *
 *   mailbox_transport = lmtp:unix:private/dovecot-lmtp
 *   default_transport = lmtp:inet:127.0.0.1:24
 *
 * LHLO instead of EHLO, then after DATA one reply per accepted recipient: each recipient gets
 * its own outcome (the store may take one user and refuse another). Connections are cached per
 * worker and reused, as with smtp. Timeouts are the lmtp_*_timeout parameters
 * (lmtp_connect_timeout = 0: no limit beyond the kernel's).
 *
 * Log: "relay=127.0.0.1[127.0.0.1]:24" over TCP, "relay=$myhostname[path]" over a socket; a
 * sent recipient shows the store's reply ("250 2.0.0 <u@d> … Saved").
 */
import { queueDirectory } from '../../src/config/index.js';
import { NextHopResolver, resolverServersFromEnv } from '../../src/dns/resolver.js';
import { replyToString } from '../../src/smtp/reply.js';
import { SmtpClient, type DeliveryResult, type SmtpHost } from '../../src/smtp/client.js';
import { HeaderBodyChecks, LMTP_HBC_PARAMS } from '../../src/content/header-body-checks.js';
import { outgoingContent } from '../../src/smtp/outgoing.js';
import { genericMaps, LMTP_GENERIC_PARAMS, MAPPING_FAILURE, mapEnvelope, type GenericMaps } from '../../src/smtp/generic.js';
import { LMTP_BIND_PARAMS, sourceAddresses } from '../../src/smtp/bind-address.js';
import type { DeliveryReply, DeliveryRequest, RecipientOutcome } from '../protocol.js';
import { every, report, type AgentContext } from '../../src/delivery/agent.js';
import { parseLmtpNexthop } from './nexthop.js';
import { smtpEnvelope } from '../../src/delivery/log.js';
import { LMTP_SASL_PARAMS, smtpSasl, type SmtpSasl } from '../../src/smtp/sasl-config.js';
import { agentTls, LMTP_AGENT_TLS_PARAMS, requestTls, type AgentTls } from '../../src/smtp/agent-tls.js';
import { defineService, type Params } from '../../src/runtime/service.js';
import meta from './meta.js';
import { agentContent, corruptReply } from '../../src/delivery/content.js';
import { SOFT_BOUNCE_PARAMS } from '../../src/delivery/soft-bounce.js';

interface State {
  /** SMTP AUTH to next hops (smtp_sasl_*), null when off. */
  sasl: SmtpSasl | null;
  ctx: AgentContext;
  client: SmtpClient;
  resolver: NextHopResolver;
  myhostname: string;
  queueDir: string;
  assumeFinal: boolean;
  tls: AgentTls;
  /** lmtp_header_checks, lmtp_mime_header_checks, lmtp_nested_header_checks, lmtp_body_checks, when one is set. */
  checks: HeaderBodyChecks | null;
  /** lmtp_generic_maps, when set. */
  generic: GenericMaps | null;
}

/** No limit for a 0 timeout (setTimeout's largest delay). */
const NO_LIMIT = 2_147_483_647;

/**
 * What lmtp reads, once per thread with the registry's types (src/runtime/service.ts): the
 * smtp client code's parameters by their lmtp_ names (Postfix's lmtp is smtp in LMTP mode, with
 * a parameter set of its own), and its own.
 */
const PARAMS = {
  ...LMTP_AGENT_TLS_PARAMS,
  ...LMTP_SASL_PARAMS,
  ...LMTP_BIND_PARAMS,
  ...LMTP_HBC_PARAMS,
  ...LMTP_GENERIC_PARAMS,
  ...SOFT_BOUNCE_PARAMS,
  'lmtp_lhlo_name': 'str',
  'lmtp_connect_timeout': 'time',
  'lmtp_lhlo_timeout': 'time',
  'lmtp_mail_timeout': 'time',
  'lmtp_rcpt_timeout': 'time',
  'lmtp_data_init_timeout': 'time',
  'lmtp_data_xfer_timeout': 'time',
  'lmtp_data_done_timeout': 'time',
  'lmtp_quit_timeout': 'time',
  'lmtp_skip_quit_response': 'bool',
  'lmtp_send_xforward_command': 'bool',
  'lmtp_assume_final': 'bool',
  'myhostname': 'str',
} as const;

function init(ctx: AgentContext & { params: Params<typeof PARAMS> }): State {
  const { config, params: p } = ctx;
  const ms = (seconds: number) => seconds * 1000 || NO_LIMIT;
  // lmtp_bind_address, lmtp_bind_address6 (TCP next hops only).
  const bind = sourceAddresses({ prefix: 'lmtp', params: p });
  if (typeof bind === 'string') throw new Error(bind);
  const sasl = smtpSasl({ prefix: 'lmtp', params: p }, config.configDirectory);
  const tls = agentTls({ prefix: 'lmtp', params: p }, config.configDirectory, ctx.log);
  return {
    ctx,
    sasl,
    client: new SmtpClient({
      lmtp: true,
      heloName: p.lmtp_lhlo_name,
      connectTimeout: ms(p.lmtp_connect_timeout),
      heloTimeout: ms(p.lmtp_lhlo_timeout),
      mailTimeout: ms(p.lmtp_mail_timeout),
      rcptTimeout: ms(p.lmtp_rcpt_timeout),
      dataInitTimeout: ms(p.lmtp_data_init_timeout),
      dataXferTimeout: ms(p.lmtp_data_xfer_timeout),
      dataDoneTimeout: ms(p.lmtp_data_done_timeout),
      quitTimeout: ms(p.lmtp_quit_timeout),
      skipQuitResponse: p.lmtp_skip_quit_response,
      bind,
      onWarning: (text) => ctx.log.warn(text),
      sendXforward: p.lmtp_send_xforward_command,
      softBounce: p.soft_bounce,
      ...(sasl ? { sasl: sasl.settings } : {}),
      ...tls.client,
    }),
    resolver: new NextHopResolver({ servers: resolverServersFromEnv() }),
    myhostname: p.myhostname,
    queueDir: queueDirectory(config),
    assumeFinal: p.lmtp_assume_final,
    tls,
    checks: HeaderBodyChecks.create({ prefix: 'lmtp', params: p }, ctx.log, config.configDirectory ?? undefined),
    generic: genericMaps({ prefix: 'lmtp', params: p }),
  };
}

async function deliver(s: State, req: DeliveryRequest): Promise<DeliveryReply> {
  const { ctx } = s;
  const started = Date.now();
  const read = agentContent(ctx.store, req);
  if ('damaged' in read) return corruptReply(req, read.damaged); // nothing goes out: qmgr sets it aside
  const content = 'content' in read ? read.content : undefined;
  if (!content) return report(ctx, req, every(req, { status: 'deferred', dsn: '4.3.0', reason: 'queue file vanished', relay: 'none' }), started);

  const target = parseLmtpNexthop(req.nexthop, s.queueDir);
  if (typeof target === 'string') {
    ctx.log.warn(`${req.queueId}: ${target}`);
    return report(ctx, req, every(req, { status: 'deferred', dsn: '4.3.5', reason: 'mail system configuration error', relay: 'none' }), started);
  }
  let hosts: SmtpHost[];
  // The policy table key: the next hop without "inet:"; a socket is looked up by its path.
  const dest = target.kind === 'unix' ? target.path : req.nexthop.replace(/^inet:/, '');
  const tls = await requestTls(s.tls, req, dest, target.kind === 'unix' ? s.myhostname : target.name);
  if (target.kind === 'unix') {
    hosts = [{ host: s.myhostname, addr: target.display, port: 0, path: target.path }];
  } else {
    const resolved = await s.resolver.resolve(target.bracketed);
    if (!resolved.ok) {
      const o = { status: resolved.temporary ? 'deferred' : 'bounced', dsn: resolved.dsn, reason: resolved.reason, relay: 'none' } as const;
      return report(ctx, req, every(req, o), started, undefined, resolved.temporary ? resolved.reason : undefined);
    }
    hosts = resolved.hosts.map((h) => ({ host: h.host, addr: h.addr, port: h.port }));
  }
  const env = smtpEnvelope(req, content.length);
  if (s.generic && !(await mapEnvelope(s.generic, env, 'lmtp', ctx.log))) return report(ctx, req, every(req, MAPPING_FAILURE), started);
  if (s.sasl) env.credentials = s.sasl.credentials(req.sender, req.nexthop);
  const result = await s.client.deliver(hosts, env, outgoingContent({ checks: s.checks, generic: s.generic, prefix: 'lmtp', log: s.ctx.log }, req.queueId, content), tls);
  const throttle = result.kind === 'site-failure' && !result.noThrottle;
  return report(ctx, req, outcomesOf(req, result, s.assumeFinal), started, result.timings, throttle ? result.reason ?? 'site failure' : undefined);
}

/** One outcome per recipient from its own reply (RCPT rejection, or its reply after DATA). */
function outcomesOf(req: DeliveryRequest, first: DeliveryResult, assumeFinal: boolean): RecipientOutcome[] {
  return req.recipients.map((r, i): RecipientOutcome => {
    const rr = first.recipients[i]!;
    // A recipient kept for a later host (soft_bounce) has that attempt's host and outcome.
    const result = rr.via ?? first;
    const connected = result.remoteAddr && !(result.kind === 'site-failure' && result.reason?.startsWith('connect to '));
    const relay = !connected ? 'none' : result.remotePort ? `${result.remoteHost}[${result.remoteAddr}]:${result.remotePort}` : `${result.remoteHost}[${result.remoteAddr}]`;
    const reply = rr.reply;
    const dsn = reply.enhanced ?? `${Math.floor(reply.code / 100)}.0.0`;
    // DSN action (Postfix's smtp_rcpt_done in LMTP mode): a server with DSN notifies itself
    // ("passed"); without, "relayed" — or "delivered" with lmtp_assume_final = yes.
    const action = result.dsn ? 'passed' : assumeFinal ? 'delivered' : 'relayed';
    if (rr.ok && result.kind === 'sent') return { index: r.index, status: 'sent', dsn, reason: replyToString(reply), relay, action };
    const status = reply.code >= 500 ? 'bounced' : 'deferred';
    const reason = result.kind !== 'sent'
      ? result.reason ?? replyToString(reply)
      : `host ${result.remoteHost}[${result.remoteAddr}] said: ${replyToString(reply)} (in reply to ${rr.afterData ? 'end of DATA' : 'RCPT TO'} command)`;
    const d = reply.code >= 500 && dsn.startsWith('4') ? '5' + dsn.slice(1) : reply.code < 500 && dsn.startsWith('5') ? '4' + dsn.slice(1) : dsn;
    return { index: r.index, status, dsn: d, reason, relay };
  });
}

export default defineService({
  ...meta,
  params: PARAMS,
  setup: init,
  handle: deliver,
});
