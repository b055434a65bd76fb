/**
 * smtpd: the SMTP server actor. Each worker of the `inet` service listens on the same addresses
 * (one socket per address the master chose from the service name, inet_interfaces and
 * inet_protocols: actors/master/listen.ts) with SO_REUSEPORT, so the kernel spreads connections
 * over the workers. A session is checked
 * against the smtpd restrictions at RCPT time, and its message goes to cleanup; the client gets
 * "250 2.0.0 Ok: queued as ID" only once cleanup's transaction is on disk.
 */
import { randomBytes } from 'node:crypto';
import { metrics } from '../../src/metrics/thread.js';
import * as net from 'node:net';
import { join } from 'node:path';
import type * as tls from 'node:tls';
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { SMTPServer, smtpConnectionPrototype, smtpStreamPrototype } from './engine.js';
import { configFromJSON, queueDirectory, type ConfigJSON } from '../../src/config/index.js';
import { maillog } from '../../src/log/maillog.js';
import { newQueueId } from '../../src/queue/qid.js';
import { defineService, type ServiceContext } from '../../src/runtime/service.js';
import meta from './meta.js';
import { ServiceError, WARM_REQUEST } from '../../src/runtime/wire.js';
import type { ClientInfo } from '../../src/queue/types.js';
import { cleanupService, type CleanupReply, type CleanupRequest } from '../protocol.js';
import { countersOf, formatCounters, installDialect, type Dialect } from './dialect.js';
import { establishedLine, handshakeFailure, installTls, serverOptions, SMTPD_TLS_PARAMS, smtpdTls, timeWrapperHandshake, tlsSummary, type TlsSummary } from '../../src/smtpd/tls.js';
import { peerCertLine, verifyFailureLine } from '../../src/smtpd/ccert.js';
import { SniMaps, SNI_PARAMS } from './sni.js';
import { POLICY_PARAMS, SmtpdPolicy, type Delegated, type PolicyRequest, type Verdict, type Where } from '../../src/smtpd/policy.js';
import { VERIFY_SENDER_PARAMS, VerifySender } from '../../src/verify/sender.js';
import { QueueSpace } from './queue-space.js';
import { asWritten, unsupportedMailOption, unsupportedRcptOption } from './parameters.js';
import { installPolicyHooks } from './restrictions/hooks.js';
import { peerIdentity, peerName, type PeerStatus } from '../../src/net/peername.js';
import { parseForbiddenCommands } from '../../src/smtpd/forbidden.js';
import { installSasl, saslLogin, SmtpdSasl } from './sasl.js';
import { installLimits, LIMIT_PARAMS, limitsFrom } from './limits.js';
import { SmtpdMilters, SMTPD_MILTER_PARAMS, type MilterContext, type MilterRefusal } from './milter.js';
import { editRecipients } from '../../src/milter/content.js';
import type { EnvelopeEdits } from '../../src/milter/message.js';
import type { ListenAddress } from '../../src/net/listen.js';
import { anvilOf } from '../../src/anvil/table.js';
import { ANVIL_PARAMS, installAnvilHandlers, refuseWrapperHandshakes, SmtpdAnvil } from '../../src/smtpd/anvil.js';
import { Spool } from './spool.js';
import { installLineReader } from './line-reader.js';
import { illPipelining } from './pipelining.js';
import { installCommands } from './commands.js';
import { installSyntax } from './syntax.js';
import { BARE_NEWLINE_PARAMS, bareLfNoted, bareNewlineFrom, contentRefusal, installBareNewline, whatsup } from './bare-newline.js';
import { gateSessions, localCounter, raiseOpenFileLimit, SESSION_PARAMS, sessionBudgetOf } from './sessions.js';
import { AnvilTable } from '../../src/anvil/table.js';
import { Postscreen, type Endpoints } from '../../src/postscreen/index.js';
import { readProxyHeader } from '../../src/postscreen/haproxy.js';
import { handleShutdown } from './shutdown.js';
import { installBdat, installChunkReader } from './bdat.js';
import { installXclient, type XclientAttrs } from './xclient.js';
import { clientLineTail, forwardedOf, installXforward } from './xforward.js';
import { AUTHORIZED_HOSTS_PARAMS, authorizedHosts, type Reply } from '../../src/smtpd/xattrs.js';
import { installEtrn, type EtrnHooks } from './etrn.js';
import { FLUSH_CLIENT_PARAMS, FlushClient } from '../../src/flush/client.js';
import { CHAT_PARAMS, chatSettings, installChat, sessionMacros } from './chat.js';
import { ByteBudget } from '../../src/runtime/byte-budget.js';
import { rewriteService } from '../../src/rewrite/settings.js';

const log = maillog('smtpd');
/**
 * The content budget of one smtpd thread (src/runtime/byte-budget.ts): 32 MiB of messages between
 * end of DATA and cleanup's answer, counted for messages of CONTENT_BUDGET_FROM bytes or more
 * (smaller ones are no memory risk, and skip the wait's cost).
 */
const CONTENT_BUDGET_BYTES = 32 * 1024 * 1024;
const CONTENT_BUDGET_FROM = 256 * 1024;

/**
 * What smtpd reads, once per thread with the registry's types: this module's parameters, and
 * the sets its helpers declare beside themselves (limits, bare newlines, the chat, milters, the
 * session budget, SNI, anvil, the restrictions with resolving, SASL and TLS, the XCLIENT and
 * XFORWARD hosts, the flush client, the probe sender, the milter settings and macros). Still
 * read from the configuration by name: the restriction classes, whose names are the
 * configuration's own (src/smtpd/policy.ts), and postscreen's (another service's, in front of
 * smtpd).
 */
const SMTPD_PARAMS = {
  ...LIMIT_PARAMS,
  ...BARE_NEWLINE_PARAMS,
  ...CHAT_PARAMS,
  ...SMTPD_MILTER_PARAMS,
  ...SESSION_PARAMS,
  ...SNI_PARAMS,
  ...ANVIL_PARAMS,
  ...POLICY_PARAMS,
  ...SMTPD_TLS_PARAMS,
  ...AUTHORIZED_HOSTS_PARAMS,
  ...FLUSH_CLIENT_PARAMS,
  ...VERIFY_SENDER_PARAMS,
  'message_size_limit': 'size',
  'queue_minfree': 'size',
  'content_filter': 'str',
  'queue_directory': 'str',
  'in_flow_delay': 'time',
  'smtpd_peername_lookup': 'bool',
  'smtpd_discard_ehlo_keywords': 'list',
  'smtpd_banner': 'str',
  'disable_vrfy_command': 'bool',
  'smtputf8_enable': 'bool',
  'smtpd_helo_required': 'bool',
  'smtpd_recipient_limit': 'int',
  'strict_rfc821_envelopes': 'bool',
  'smtpd_forbid_unauth_pipelining': 'bool',
  'smtpd_forbidden_commands': 'str',
  'smtpd_upstream_proxy_protocol': 'str',
  'smtpd_upstream_proxy_timeout': 'time',
} as const;

interface SessionState {
  /** `client.name` is the forward-confirmed name (or "unknown"). */
  client: ClientInfo;
  /** The reverse (PTR) name and how each name was found (smtpd_peer.c's *_name_status). */
  peer: { reverseName: string; nameStatus: PeerStatus; reverseStatus: PeerStatus };
  queueId: string | null;
  /** The envelope object the queue ID belongs to (smtp-server makes a new one per transaction). */
  envelope: unknown;
  /**
   * Access-policy effects on the current transaction (DISCARD, PREPEND, HOLD, FILTER, REDIRECT,
   * BCC), for the envelope object `effectsFor` (only the current envelope's are ever asked for:
   * one slot, not a WeakMap per session).
   */
  effects: Effects | null;
  effectsFor: object | null;
  /** The AUTH= parameter of MAIL FROM, for the envelope object `saslSenderFor`. */
  saslSender: string | undefined;
  saslSenderFor: object | null;
}

interface Effects { discard: string | null; prepend: string[]; delegated: Delegated; instance: string }

let instances = 0;

const states = new WeakMap<SMTPServerSession, SessionState>();

async function main(ctx: ServiceContext<typeof SMTPD_PARAMS>): Promise<{ server: SMTPServer }> {
  installTls(smtpConnectionPrototype());
  await installDialect();
  // Around dialect.ts's reply writer: the reject footer and the transcript see the final reply.
  installChat(smtpConnectionPrototype());
  installLimits(smtpConnectionPrototype());
  installAnvilHandlers(smtpConnectionPrototype());
  await installPolicyHooks();
  await installSasl();
  // CHUNKING, XCLIENT, XFORWARD (after sasl.ts: the EHLO keywords of xclient.ts go first).
  installBdat(smtpConnectionPrototype());
  installXclient(smtpConnectionPrototype());
  installXforward(smtpConnectionPrototype());
  installEtrn(smtpConnectionPrototype());
  // The line reader and the bare-newline reading modes.
  installLineReader(smtpStreamPrototype());
  installChunkReader(smtpStreamPrototype()); // BDAT's chunks, around the line reader
  installSyntax(smtpConnectionPrototype());
  installBareNewline(smtpConnectionPrototype(), smtpStreamPrototype());
  // Every command line: the checks of chat, bare-newline, pipelining, syntax, limits, dialect
  // and tls, in that order, then smtp-server's handlers (commands.ts).
  installCommands(smtpConnectionPrototype());
  let server: SMTPServer | null = null;
  const { actor, config, params: p } = ctx;
  const { addresses, ticketKeys, anvil: anvilBuffer, postscreen: postscreenData } = actor.data.extra as {
    addresses: ListenAddress[]; ticketKeys?: Uint8Array; anvil?: SharedArrayBuffer;
    /** Behind postscreen (a pass service): postscreen's configuration and its shared connection counts. */
    postscreen?: { config: ConfigJSON; counts: SharedArrayBuffer; sessions: SharedArrayBuffer };
  };
  // anvil: the per-client limits, counted in the table master shares with every smtpd thread.
  const anvilTable = anvilOf(anvilBuffer);
  const anvil = anvilTable ? new SmtpdAnvil(config, anvilTable, p) : null;
  // TLS: certificates are read now, so a reload (new smtpd threads) re-reads them.
  const tlsSettings = smtpdTls(p, (w) => log.warn(w), (i) => log.info(i));
  // tls_server_sni_maps: per-name chains share the default context's settings and ticket keys.
  const sniMaps = tlsSettings.context && p.tls_server_sni_maps.length > 0
    ? new SniMaps(config, p, { ...tlsSettings.context, ...(ticketKeys ? { ticketKeys: Buffer.from(ticketKeys) } : {}) }, (w) => log.warn(w))
    : null;
  const policy = new SmtpdPolicy(config, undefined, p);
  policy.useVerifyService((service, body) => actor.request(service, body));
  // Our own probe sender as a recipient (a probe of this site coming back) skips the recipient
  // restrictions, as Postfix's smtpd does (valid_verify_sender_addr): else a timeout or a UCE
  // block could make two sites cache each other's probes as undeliverable.
  let verifySender: VerifySender | null = null;
  try {
    verifySender = new VerifySender(p);
  } catch { /* a bad address_verify_sender: checkConfig refuses it where a verify service runs */ }
  const namaddr = (session: object): string => {
    const c = states.get(session as SMTPServerSession)?.client;
    return c ? `${c.name}[${c.addr}]` : 'unknown';
  };
  const sasl = policy.sasl.enabled ? new SmtpdSasl(policy.sasl, namaddr) : null;
  const hostname = p.myhostname;
  const sizeLimit = p.message_size_limit;
  const queueSpace = new QueueSpace(queueDirectory(config), p.queue_minfree, sizeLimit);
  const contentFilter = p.content_filter.trim();
  const spoolDir = join(p.queue_directory, 'smtpd');
  // Bytes of content this thread holds between end of DATA and cleanup's answer: a burst of
  // large messages ending together waits its turn instead of multiplying memory (byte-budget.ts).
  const contentBudget = new ByteBudget(CONTENT_BUDGET_BYTES);
  const bareNewline = bareNewlineFrom(config, p);
  const inFlowDelay = p.in_flow_delay * 1000;
  const peernameLookup = p.smtpd_peername_lookup;
  // smtpd_discard_ehlo_keywords: EHLO keywords not announced (and, for DSN, not accepted).
  const discardEhlo = new Set(p.smtpd_discard_ehlo_keywords.map((k) => k.toLowerCase()));
  const dialect: Dialect = {
    hostname,
    banner: p.smtpd_banner,
    vrfyDisabled: p.disable_vrfy_command,
    smtputf8: p.smtputf8_enable,
    smtputf8Offered: p.smtputf8_enable && !discardEhlo.has('smtputf8'),
    sizeLimit,
    ehloKeywords: [
      'PIPELINING',
      ...(sizeLimit > 0 ? [`SIZE ${sizeLimit}`] : ['SIZE']),
      ...(p.disable_vrfy_command ? [] : ['VRFY']),
      'ETRN',
      ...(tlsSettings.use ? ['STARTTLS'] : []),
      'ENHANCEDSTATUSCODES',
      '8BITMIME',
      'DSN',
      ...(p.smtputf8_enable ? ['SMTPUTF8'] : []),
      'CHUNKING',
    ].filter((k) => !discardEhlo.has(k.split(' ')[0]!.toLowerCase())),
  };

  const smtputf8Offered = p.smtputf8_enable && !discardEhlo.has('smtputf8');
  // XCLIENT and XFORWARD: for the clients these lists name (XCLIENT: the current client, which
  // XCLIENT changes; XFORWARD: the host that connected, as Postfix decides it once).
  const xclientHosts = authorizedHosts(p, 'smtpd_authorized_xclient_hosts');
  const xforwardHosts = authorizedHosts(p, 'smtpd_authorized_xforward_hosts');
  const clientIn = (hosts: typeof xclientHosts, session: object) => hosts !== null && hosts.has(states.get(session as SMTPServerSession)?.client.addr ?? '');
  const refuse = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });
  const protocolOf = (session: SMTPServerSession): 'SMTP' | 'ESMTP' => (session.transmissionType?.startsWith('E') ? 'ESMTP' : 'SMTP');
  const effectsOf = (state: SessionState, session: SMTPServerSession): Effects => {
    const env = session.envelope as object;
    if (state.effectsFor === env && state.effects) return state.effects;
    state.effectsFor = env;
    return (state.effects = { discard: null, prepend: [], delegated: { hold: false, filter: null, redirect: null, bcc: [] }, instance: `${process.pid}.${++instances}` });
  };
  const saslSenderOf = (state: SessionState, session: SMTPServerSession): string | undefined => (state.saslSenderFor === session.envelope ? state.saslSender : undefined);
  /** The policy's view of a session at one point of the dialogue. */
  const policyRequest = (session: SMTPServerSession, where: Where, recipient: string | null): PolicyRequest => {
    const state = states.get(session)!;
    const effects = effectsOf(state, session);
    const rcpts = session.envelope.rcptTo;
    const login = saslLogin(session);
    return {
      saslMethod: login?.method ?? null,
      saslUsername: login?.username ?? null,
      saslSender: saslSenderOf(state, session) ?? null,
      clientAddr: state.client.addr,
      clientName: state.client.name,
      reverseClientName: state.peer.reverseName,
      clientNameStatus: state.peer.nameStatus,
      reverseClientNameStatus: state.peer.reverseStatus,
      helo: session.hostNameAppearsAs ?? '',
      sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
      // At DATA and after it, Postfix knows "the" recipient only when there is exactly one.
      recipient: recipient ?? ((where === 'DATA' || where === 'END-OF-MESSAGE') && rcpts.length === 1 ? rcpts[0]!.address : null),
      recipientCount: rcpts.length,
      protocol: protocolOf(session),
      queueId: state.envelope === session.envelope ? state.queueId : null,
      where,
      instance: effects.instance,
      ...(effects.delegated.hold ? { held: true } : {}),
      ...(illPipelining(session) ? { illPipelining: true } : {}),
      ...((session as { paTls?: TlsSummary }).paTls ? { tls: (session as { paTls?: TlsSummary }).paTls! } : {}),
    };
  };
  /**
   * Folds a verdict's DISCARD / PREPEND and the actions for cleanup (HOLD, FILTER, REDIRECT, BCC:
   * the last FILTER and REDIRECT win, as Postfix keeps one of each) into the transaction; the
   * error to answer, or null.
   */
  const apply = (verdict: Verdict, state: SessionState, session: SMTPServerSession): Error | null => {
    if (!verdict.ok) return refuse(verdict.code, verdict.text);
    const e = effectsOf(state, session);
    if (verdict.discard !== null) e.discard = verdict.discard;
    e.prepend.push(...verdict.prepend);
    const d = verdict.delegated;
    if (d) {
      if (d.hold) e.delegated.hold = true;
      if (d.filter !== null) e.delegated.filter = d.filter;
      if (d.redirect !== null) e.delegated.redirect = d.redirect;
      e.delegated.bcc.push(...d.bcc);
    }
    return null;
  };
  // smtpd_milters: one conversation per session, in this thread (actors/smtpd/milter.ts).
  const milters = SmtpdMilters.from(config, p, log);
  // The reject footer and the postmaster's session transcripts (chat.ts).
  const chat = chatSettings(p, {
    session: (session: object) => {
      const s = session as SMTPServerSession & { paRecipient?: { envelope: unknown; address: string } };
      const c = states.get(s)?.client ?? { name: 'unknown', addr: s.remoteAddress, port: s.remotePort };
      const from = s.envelope?.mailFrom;
      return {
        namaddr: `${c.name}[${c.addr}]`,
        macros: sessionMacros({
          hostname, name: c.name, addr: c.addr, port: c.port, helo: s.hostNameAppearsAs ?? '',
          sender: from ? from.address : null,
          recipient: s.paRecipient && s.paRecipient.envelope === s.envelope ? s.paRecipient.address : null,
        }),
      };
    },
    submit: (request, contentOf) => submit(request, async () => contentOf()),
    warn: (t) => log.warn(t),
  });
  const milterContext = (session: SMTPServerSession, recipient: string | null): MilterContext => {
    const state = states.get(session)!;
    const tlsInfo = (session as { paTls?: TlsSummary }).paTls;
    return {
      client: state.client,
      localAddr: session.localAddress,
      localPort: session.localPort,
      helo: session.hostNameAppearsAs ?? '',
      protocol: protocolOf(session),
      sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
      recipient,
      recipients: session.envelope.rcptTo.map((r) => r.address),
      queueId: state.envelope === session.envelope ? state.queueId : null,
      login: saslLogin(session),
      ...(tlsInfo ? { tls: tlsInfo } : {}),
    };
  };
  const milterError = (r: MilterRefusal): Error => refuse(r.code, r.text);
  const policyFailed = (err: Error): Error => {
    log.warn(`smtpd access policy: ${err.message}`);
    return refuse(451, '4.3.5 Server configuration error');
  };
  /**
   * XCLIENT: the session now speaks for another client. The milters hear a new connection, and
   * with smtpd_delay_reject = no the client restrictions answer the new greeting.
   */
  const xclientApply = async (session: SMTPServerSession, attrs: XclientAttrs): Promise<Reply | null> => {
    const state = states.get(session);
    if (!state) return null;
    // XCLIENT NAME sets the reverse name too when it names a host (smtpd.c).
    if (attrs.name !== undefined) {
      state.peer = attrs.nameStatus === 'ok'
        ? { reverseName: attrs.name, nameStatus: 'ok', reverseStatus: 'ok' }
        : { ...state.peer, nameStatus: attrs.nameStatus ?? 'perm' };
    }
    if (attrs.reverseName !== undefined) state.peer = { ...state.peer, reverseName: attrs.reverseName, reverseStatus: attrs.reverseStatus ?? 'perm' };
    state.client = {
      ...state.client,
      ...(attrs.name !== undefined ? { name: attrs.name } : {}),
      ...(attrs.addr !== undefined ? { addr: attrs.addr } : {}),
      ...(attrs.port !== undefined ? { port: attrs.port } : {}),
    };
    state.queueId = null;
    state.envelope = null;
    const asReply = (err: Error | null): Reply | null => (err ? { code: (err as Error & { responseCode: number }).responseCode, text: err.message } : null);
    if (milters) {
      milters.close(session);
      const r = await milters.connect(session, milterContext(session, null));
      if (r) return { code: r.code, text: r.text };
    }
    if (policy.delayReject || !policy.has('client')) return null;
    try {
      return asReply(apply(await policy.checkClient({ ...policyRequest(session, 'CONNECT', null), sender: null, helo: '' }), state, session));
    } catch (err) {
      return asReply(policyFailed(err as Error));
    }
  };

  // ETRN (etrn.ts): smtpd_etrn_restrictions, then the flush service's send_site.
  const flushClient = new FlushClient(p, (service, body) => actor.request(service, body));
  const etrnHooks: EtrnHooks = {
    heloRequired: p.smtpd_helo_required,
    check: async (session, domain) => {
      const s = session as SMTPServerSession;
      if (!states.get(s)) return null;
      const v = await policy.checkEtrn({ ...policyRequest(s, 'ETRN', null), etrnDomain: domain });
      return v.ok ? null : { code: v.code, text: v.text };
    },
    sendSite: (site) => flushClient.sendSite(site),
    namaddr,
    warn: (text) => log.warn(text),
  };
  server = new SMTPServer({
    name: hostname,
    heloResponse: '%s',
    logger: false,
    // AUTH is always known, as in a Postfix built with SASL: sasl.ts answers it; so is
    // STARTTLS (tls.ts answers it, 502 when TLS is off).
    disabledCommands: [],
    ...serverOptions(tlsSettings, ticketKeys ? Buffer.from(ticketKeys) : undefined, sniMaps?.enabled ? sniMaps.callback : undefined),
    authOptional: true,
    hideDSN: discardEhlo.has('dsn'),
    // strict_rfc821_envelopes = no (Postfix's default): the address is taken as Postfix's
    // extract_addr takes it (a local part of any length, "a.@x", "a..b@x"); smtp-server's
    // strict checks (RFC 5321's dot-atom and path length) only with = yes.
    lenientAddressParsing: !p.strict_rfc821_envelopes,
    hideENHANCEDSTATUSCODES: true,
    hideSMTPUTF8: !p.smtputf8_enable,
    disableReverseLookup: true,
    size: sizeLimit > 0 ? sizeLimit : undefined,
    maxRecipients: p.smtpd_recipient_limit,
    socketTimeout: p.smtpd_timeout * 1000,
    closeTimeout: 5000,
    ...({
      // CHUNKING (bdat.ts), XCLIENT (xclient.ts), XFORWARD (xforward.ts).
      postactorBdat: {
        enabled: !discardEhlo.has('chunking'),
        sizeLimit,
        namaddr,
        queueId: (session: SMTPServerSession) => {
          const state = states.get(session);
          return state && state.envelope === session.envelope ? state.queueId : null;
        },
      },
      postactorXclient: {
        allowed: (session: object) => clientIn(xclientHosts, session),
        announce: (session: object) => !discardEhlo.has('xclient') && clientIn(xclientHosts, session),
        apply: xclientApply,
      },
      postactorXforward: {
        allowed: (addr: string) => xforwardHosts !== null && xforwardHosts.has(addr),
        announce: (addr: string) => !discardEhlo.has('xforward') && xforwardHosts !== null && xforwardHosts.has(addr),
      },
    } as object),
    ...({ postactorEtrn: etrnHooks } as object),
    ...({ postactorChat: chat } as object),
    ...({ postactorSyntax: { strict: p.strict_rfc821_envelopes, heloRequired: p.smtpd_helo_required }, postactorPipelining: { forbid: p.smtpd_forbid_unauth_pipelining }, postactorBareNewline: bareNewline, postactorDialect: dialect, postactorSasl: sasl ?? undefined, postactorLimits: limitsFrom(p, namaddr), postactorForbidden: { commands: parseForbiddenCommands(p.smtpd_forbidden_commands), namaddr } } as object),
    ...({
      // smtpd_milters hear unknown commands (Postfix: milter_unknown_event).
      ...(milters ? {
        postactorUnknownCommand: async (session: SMTPServerSession, line: string) => {
          if (!states.get(session)) return null;
          const r = await milters.unknown(session, milterContext(session, null), line);
          return r ? { code: r.code, text: r.text } : null;
        },
      } : {}),
      // smtpd_client_auth_rate_limit, asked by sasl.ts's AUTH handler.
      postactorAuthRate: (session: SMTPServerSession) => {
        const over = anvil?.auth(session, session.remoteAddress, namaddr(session));
        if (over) log.warn(over.warning);
        return over ?? null;
      },
      // smtpd_client_new_tls_session_rate_limit before a STARTTLS handshake.
      postactorStarttlsRate: (session: SMTPServerSession) => {
        const over = anvil?.starttls(session, namaddr(session));
        if (over) log.warn(over.warning);
        return over ?? null;
      },
      // smtpd_client_recipient_rate_limit at VRFY too.
      postactorVrfyRate: (session: SMTPServerSession) => {
        const over = anvil?.rcpt(session, session.remoteAddress, namaddr(session));
        if (over) log.warn(over.warning);
        return over ?? null;
      },
    } as object),
    ...({
      postactorPolicyHooks: {
        helo: (!policy.delayReject && policy.has('helo')) || milters ? async (session: SMTPServerSession, name: string, command: 'HELO' | 'EHLO') => {
          const state = states.get(session);
          if (!state) return null;
          if (!policy.delayReject && policy.has('helo')) {
            const r = { ...policyRequest(session, command, null), helo: name.toLowerCase(), sender: null, protocol: command === 'EHLO' ? 'ESMTP' as const : 'SMTP' as const };
            const v = await policy.checkHelo(r);
            if (!v.ok) return { code: v.code, text: v.text };
          }
          if (!milters) return null;
          return milters.helo(session, { ...milterContext(session, null), helo: name, protocol: command === 'EHLO' ? 'ESMTP' : 'SMTP', sender: null });
        } : undefined,
        data: policy.has('data') || milters ? async (session: SMTPServerSession) => {
          const state = states.get(session);
          if (!state) return null;
          if (policy.has('data')) {
            const v = await policy.checkData(policyRequest(session, 'DATA', null));
            const err = apply(v, state, session);
            if (err) return { code: (err as Error & { responseCode: number }).responseCode, text: err.message };
          }
          return milters ? milters.data(session, milterContext(session, null)) : null;
        } : undefined,
      },
    } as object),

    onConnect(session, callback) {
      // Counted now, so that a client gone before its name is known is still uncounted on close.
      const overLimit = anvil?.connect(session, session.remoteAddress) ?? null;
      void peerIdentity(session.remoteAddress, peernameLookup).then((id) => {
        const name = id.name;
        if (id.warning) log.warn(id.warning);
        const client: ClientInfo = { name, addr: session.remoteAddress, port: session.remotePort, helo: '', protocol: 'SMTP' };
        const peer = { reverseName: id.reverseName, nameStatus: id.nameStatus, reverseStatus: id.reverseStatus };
        const state: SessionState = { client, peer, queueId: null, envelope: null, effects: null, effectsFor: null, saslSender: undefined, saslSenderFor: null };
        states.set(session, state);
        log.info(`connect from ${name}[${session.remoteAddress}]`);
        metrics().smtpdConnects.inc();
        metrics().smtpdSessions.inc();
        if (overLimit) {
          const r = overLimit(`${name}[${session.remoteAddress}]`);
          log.warn(r.warning);
          return callback(refuse(r.code, r.text));
        }
        if (milters) {
          return void milters.connect(session, milterContext(session, null)).then((r) => {
            if (r) return callback(milterError(r));
            if (policy.delayReject || !policy.has('client')) return callback();
            policy.checkClient({ ...policyRequest(session, 'CONNECT', null), sender: null, helo: '' }).then(
              (v) => callback(apply(v, state, session) ?? undefined),
              (err: Error) => callback(policyFailed(err)),
            );
          });
        }
        // smtpd_delay_reject = no: the client restrictions answer the greeting.
        if (policy.delayReject || !policy.has('client')) return callback();
        policy.checkClient({ ...policyRequest(session, 'CONNECT', null), sender: null, helo: '' }).then(
          (v) => callback(apply(v, state, session) ?? undefined),
          (err: Error) => callback(policyFailed(err)),
        );
      });
    },

    ...({
      // A STARTTLS handshake that failed (the connection closes after this).
      postactorTlsFailed: (session: SMTPServerSession, err: Error) => {
        const state = states.get(session);
        if (!state) return;
        for (const [level, text] of handshakeFailure(err, `${state.client.name}[${state.client.addr}]`, 'STARTTLS')) log[level](text);
        metrics().smtpdTlsFailures.inc();
      },
    } as object),

    onSecure(socket, session, callback) {
      clearTimeout((session as { paStarttlsTimer?: NodeJS.Timeout }).paStarttlsTimer);
      const tlsSocket = socket as tls.TLSSocket;
      const { peer, ...summary } = tlsSummary(tlsSocket, tlsSettings);
      const state = states.get(session);
      const who = state ? `${state.client.name}[${state.client.addr}]` : 'unknown';
      // In the order Postfix's TLS library logs them: SNI, the certificate, its verification, the summary.
      const servername = (tlsSocket as { servername?: string | false }).servername;
      if (sniMaps && typeof servername === 'string' && servername) {
        const outcome = sniMaps.outcome(servername);
        if (outcome === 'matched') summary.sni = servername;
        else if (outcome === 'unmatched') log.info(`TLS SNI ${servername} from ${who} not matched, using default chain`);
        else if (outcome === 'invalid') log.warn(`TLS SNI from ${who} is invalid: ${servername}`);
      }
      const ccert = tlsSettings.ccert;
      if (peer && tlsSettings.loglevel >= 2) log.info(peerCertLine(who, peer));
      // Postfix explains an untrusted certificate when it requires a trusted one.
      if (peer && !peer.trusted && ccert?.require) log.info(verifyFailureLine(who, peer, ccert.verifyDepth));
      (session as { paTls?: TlsSummary }).paTls = summary;
      if (tlsSettings.loglevel >= 1) log.info(establishedLine(summary, who));
      metrics().smtpdTls.inc({ protocol: tlsSocket.getProtocol() ?? '', cipher: tlsSocket.getCipher()?.name ?? '' });
      // A new (not resumed) TLS session counts against smtpd_client_new_tls_session_rate_limit
      // (Postfix checks it before the client certificate requirement).
      const overTls = tlsSocket.isSessionReused() ? null : anvil?.newTls(session, namaddr(session));
      if (overTls) {
        log.warn(overTls.warning);
        return callback(refuse(overTls.code, overTls.text));
      }
      if (ccert?.require && !peer?.trusted) {
        const why = peer ? 'Client certificate not trusted' : 'No client certificate presented';
        log.info(`NOQUEUE: abort: TLS from ${who}: ${why}`);
        const text = `4.7.1 ${hostname} Error: ${why}`;
        // Wrapper mode answers at once; after STARTTLS the next command is read first.
        if (tlsSettings.wrapper) return callback(refuse(421, text));
        (session as { paCcertAbort?: string }).paCcertAbort = text;
      }
      callback();
    },

    onMailFrom(address, session, mailCallback) {
      // The milters hear MAIL FROM after the sender restrictions passed.
      const callback = (err?: Error | null): void => {
        if (err) return mailCallback(err);
        // smtpd_check_queue, after the sender restrictions as in Postfix.
        const full = queueSpace.check(() => ({ ...policyRequest(session, 'MAIL', null), sender: address.address }));
        if (full) {
          log.warn(full.warning);
          log.info(full.reject);
          return mailCallback(refuse(full.code, full.text));
        }
        if (!milters) return mailCallback();
        const args = Object.entries((address.args || {}) as Record<string, string | boolean>).map(([k, v]) => (v === true ? k : `${k}=${v}`));
        void milters.mail(session, { ...milterContext(session, null), sender: address.address }, args)
          .then((r) => mailCallback(r ? milterError(r) : undefined));
      };
      // MAIL FROM:<…> AUTH=<…> (RFC 4954): kept for the log; "<>" means none.
      const args = address.args as Record<string, string | boolean> | false;
      const unknownOption = unsupportedMailOption(args, smtputf8Offered);
      if (unknownOption !== null) return callback(refuse(555, `5.5.4 Unsupported option: ${asWritten((session as { paCommandLine?: string }).paCommandLine, unknownOption)}`));
      const auth = args ? args['AUTH'] : undefined;
      if (typeof auth === 'string' && auth !== '<>') {
        const st = states.get(session)!;
        st.saslSender = auth.replace(/[^\x20-\x7e]/g, '?');
        st.saslSenderFor = session.envelope;
      }
      const overMail = anvil?.mail(session, session.remoteAddress, namaddr(session));
      if (overMail) {
        log.warn(overMail.warning);
        return callback(refuse(overMail.code, overMail.text));
      }
      // smtpd_delay_reject = no: the sender restrictions answer MAIL FROM.
      if (policy.delayReject || !policy.has('sender')) return callback();
      const state = states.get(session)!;
      policy.checkSender({ ...policyRequest(session, 'MAIL', null), sender: address.address }).then(
        (v) => callback(apply(v, state, session) ?? undefined),
        (err: Error) => callback(policyFailed(err)),
      );
    },

    onRcptTo(address: SMTPServerAddress, session, callback) {
      const state = states.get(session)!;
      // $recipient in the reject footer: the recipient of this RCPT, until the transaction ends.
      (session as { paRecipient?: object }).paRecipient = { envelope: session.envelope, address: address.address };
      const unknownOption = unsupportedRcptOption(address.args as Record<string, string | boolean> | false);
      if (unknownOption !== null) return callback(refuse(555, `5.5.4 Unsupported option: ${asWritten((session as { paCommandLine?: string }).paCommandLine, unknownOption)}`));
      const overRcpt = anvil?.rcpt(session, session.remoteAddress, namaddr(session));
      if (overRcpt) {
        log.warn(overRcpt.warning);
        return callback(refuse(overRcpt.code, overRcpt.text));
      }
      const accept = () => {
        if (state.envelope !== session.envelope) {
          state.envelope = session.envelope;
          state.queueId = newQueueId();
          const login = saslLogin(session);
          const saslSender = saslSenderOf(state, session);
          log.info(`${state.queueId}: client=${state.client.name}[${state.client.addr}]`
            + (login ? `, sasl_method=${login.method}, sasl_username=${login.username}` : '')
            + (saslSender !== undefined ? `, sasl_sender=${saslSender}` : '')
            + clientLineTail(forwardedOf(session)));
          warmCleanup();
        }
        callback();
      };
      // A transaction that will be discarded accepts every recipient unchecked, as Postfix does.
      if (effectsOf(state, session).discard !== null) return accept();
      const probeRecipient = verifySender !== null && verifySender.valid(address.address) !== null;
      const verdict: Promise<Verdict> = probeRecipient
        ? Promise.resolve({ ok: true, discard: null, prepend: [], delegated: null })
        : policy.checkRecipient(policyRequest(session, 'RCPT', address.address));
      verdict.then((v) => {
        const err = apply(v, state, session);
        if (err) return callback(err);
        if (!milters) return accept();
        // The milters hear RCPT TO after the recipient restrictions passed.
        const args = Object.entries((address.args || {}) as Record<string, string | boolean>).map(([k, v]) => (v === true ? k : `${k}=${v}`));
        void milters.rcpt(session, milterContext(session, address.address), args).then((r) => (r ? callback(milterError(r)) : accept()));
      }, (err: Error) => callback(policyFailed(err)));
    },

    onData(stream: SMTPServerDataStream, session, callback) {
      const state = states.get(session)!;
      // The content as it arrives: memory up to a small threshold, then a spool file (spool.ts).
      const spool = new Spool(spoolDir, sizeLimit);
      let failed = false;
      /** Gives back this message's share of the content budget (once it holds one). */
      let giveBack = (): void => undefined;
      spool.on('error', (err: Error) => {
        failed = true;
        log.warn(`${state.queueId}: spool file write error: ${err.message}`);
      });
      stream.on('error', () => { void spool.release(); /* the client went away; nothing was acknowledged */ });
      stream.pipe(spool);
      spool.on('finish', () => {
        const total = spool.total;
        if (stream.sizeExceeded || (sizeLimit > 0 && total > sizeLimit)) {
          void spool.release();
          log.info(`${state.queueId}: reject: END-OF-MESSAGE from ${state.client.name}[${state.client.addr}]: 552 5.3.4 Message size exceeds fixed limit; proto=ESMTP helo=<${session.hostNameAppearsAs}>`);
          metrics().smtpdRejects.inc({ code: '552', stage: 'END-OF-MESSAGE', reason: 'message_size_limit' });
          return callback(refuse(552, '5.3.4 Message size exceeds fixed limit'));
        }
        // smtpd_forbid_bare_newline = reject: a bare LF in the content, refused now (Postfix's
        // delayed reject), nothing queued.
        const bare = contentRefusal(session, bareNewline);
        if (bare) {
          void spool.release();
          log.info(whatsup(session as never, state.queueId, 'END-OF-MESSAGE', `${state.client.name}[${state.client.addr}]`, 'bare <LF> received'));
          return callback(refuse(bare.code, bare.text));
        }
        if (failed) {
          void spool.release();
          return callback(refuse(451, '4.3.0 Error: queue file write error'));
        }
        // A large message waits for its share of the thread's content budget (byte-budget.ts)
        // before it is read back from its spool file and handed on.
        const held = total >= CONTENT_BUDGET_FROM ? contentBudget.acquire(total) : null;
        void (held ?? Promise.resolve(null)).then((release) => {
          if (release) giveBack = release;
          return endOfData(total);
        }).then(async (err) => {
          if (err) return finish(err);
          const effects = effectsOf(state, session);
          // DISCARD: claim delivery, queue nothing (the action was logged when it matched).
          if (effects.discard !== null) return finish(null, `2.0.0 Ok: queued as ${state.queueId}`);
          if (!milters) return queue(effects);
          // End of message through the milters, before the 250: their verdict answers the client.
          const whole = Buffer.from((await spool.content()).buffer);
          return milters.content(session, milterContext(session, null), whole).then((r) => {
            if (r.kind === 'refuse') return finish(milterError(r.refusal));
            if (r.kind === 'discard') return finish(null, `2.0.0 Ok: queued as ${state.queueId}`);
            spool.replace(r.content);
            return queue(effects, { env: r.env, hold: r.hold, milterHeaders: r.milterHeaders ?? [] });
          });
        }).catch((e: Error) => {
          log.warn(`${state.queueId}: spool file read error: ${e.message}`);
          finish(refuse(451, '4.3.0 Error: queue file write error'));
        });
      });

      function finish(err: Error | null, text?: string): void {
        void spool.release();
        giveBack();
        callback(err, text);
      }

      /** smtpd_end_of_data_restrictions: the error to answer, or null. */
      async function endOfData(size: number): Promise<Error | null> {
        if (!policy.has('end_of_data')) return null;
        try {
          return apply(await policy.checkEndOfData({ ...policyRequest(session, 'END-OF-MESSAGE', null), size }), state, session);
        } catch (err) {
          return policyFailed(err as Error);
        }
      }

      async function queue(effects: Effects, edited?: { env: EnvelopeEdits | null; hold: boolean; milterHeaders: string[] }): Promise<void> {
        // PREPEND headers first, then the message. An owned ArrayBuffer, so it can be
        // transferred to cleanup instead of copied.
        const head = Buffer.from(effects.prepend.map((h) => `${h}\r\n`).join(''), 'utf8');
        // Read again from the spool for a retry after BUSY (the first copy is transferred away).
        const content = await spool.content(head);
        const login = saslLogin(session);
        const tlsInfo = (session as { paTls?: TlsSummary }).paTls;
        const forwarded = forwardedOf(session);
        const client: ClientInfo = {
          ...state.client,
          helo: session.hostNameAppearsAs ?? '',
          protocol: protocolOf(session),
          ...(tlsInfo ? { tls: tlsInfo } : {}),
          ...(login ? { saslMethod: login.method, saslUsername: login.username } : {}),
          ...(login && sasl?.settings.authenticatedHeader ? { authenticatedHeader: true } : {}),
          ...(forwarded ? { forwarded } : {}),
        };
        const request: CleanupRequest = {
          queueId: state.queueId!,
          sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          recipients: session.envelope.rcptTo.map((r) => ({ address: r.address, ...dsnOf(r) })),
          content,
          client,
          arrival: Date.now(),
          origin: 'smtpd',
          // An access FILTER overrides the service's content_filter (cleanup's header_checks
          // FILTER overrides both); REDIRECT and BCC are applied by cleanup, HOLD below.
          ...(effects.delegated.filter ?? contentFilter ? { contentFilter: effects.delegated.filter ?? contentFilter } : {}),
          ...(effects.delegated.redirect !== null ? { redirect: effects.delegated.redirect } : {}),
          ...(effects.delegated.bcc.length ? { bcc: effects.delegated.bcc } : {}),
          ...envelopeDsnOf(session),
          // MAIL FROM … SMTPUTF8, heard only while SMTPUTF8 is announced (Postfix: smtputf8_enable
          // and not in smtpd_discard_ehlo_keywords).
          ...(smtputf8Offered && (session.envelope as { smtpUtf8?: boolean }).smtpUtf8 ? { smtputf8: true } : {}),
        };
        if (edited?.env) {
          // The milters' envelope edits: a recipient kept keeps its DSN settings.
          const env = edited.env;
          if (env.sender !== null) request.sender = env.sender;
          if (env.ret) request.ret = env.ret;
          if (env.envId) request.envId = env.envId;
          request.recipients = editRecipients(request.recipients, env);
        }
        if (edited?.hold || effects.delegated.hold) request.hold = true;
        if (edited?.milterHeaders.length) request.milterHeaders = edited.milterHeaders;
        const reply = await submit(request, () => spool.content(head));
        void spool.release();
        if (reply.ok) {
          metrics().smtpdMessages.inc({ sasl_method: login?.method ?? '' });
          return finish(null, `2.0.0 Ok: queued as ${reply.queueId}`);
        }
        log.warn(`${request.queueId}: cleanup: ${reply.code} ${reply.dsn} ${reply.text}`);
        finish(refuse(reply.code, `${reply.dsn} ${reply.text}`));
      }
    },

    onClose(session) {
      milters?.close(session);
      anvil?.disconnect(session);
      const state = states.get(session);
      if (!state) return;
      log.info(`disconnect from ${state.client.name}[${state.client.addr}] ${formatCounters(countersOf(session))}${bareLfNoted(session) ? ' notes=bare_lf' : ''}`);
      metrics().smtpdDisconnects.inc();
      metrics().smtpdSessions.dec();
    },
  });

  /**
   * Hands a message to cleanup; when its mailbox is full, waits in_flow_delay once (push back).
   * The content is transferred, so after any answer, BUSY included, its buffer belongs to
   * another thread (Node 24 throws on slicing it): a retry sends a new one, made by `contentOf`.
   */
  /**
   * Where Postfix's smtpd opens its cleanup stream (the first accepted recipient): cleanup's pool
   * has no thread after max_idle without mail (memory), and the one this starts is ready by the
   * end of DATA instead of making the client wait for it. A pool with a thread ignores it; at
   * most one a second per thread (a thread idles out only after max_idle).
   */
  let warmedAt = 0;
  /**
   * The address resolver (trivial-rewrite) too: Postfix's smtpd connects to it for its first
   * recipient (resolve_clnt), so the daemon runs by the time qmgr asks. This smtpd resolves
   * in-process and only qmgr asks the service, after cleanup: warmed here, its thread starts
   * beside cleanup's instead of after it (bench/delivery's first messages waited for cleanup's,
   * then rewrite's, then the agent's start, one after another).
   */
  const resolver = rewriteService(ctx.config)?.name;
  function warmCleanup(): void {
    const now = Date.now();
    if (now - warmedAt < 1000) return;
    warmedAt = now;
    actor.send('cleanup', WARM_REQUEST);
    if (resolver) actor.send(resolver, WARM_REQUEST);
  }

  async function submit(request: CleanupRequest, contentOf: () => Promise<Uint8Array>): Promise<CleanupReply> {
    for (let attempt = 0; ; attempt++) {
      try {
        const body = attempt === 0 ? request : { ...request, content: await contentOf() };
        return await cleanupService.call(actor, body);
      } catch (err) {
        if (err instanceof ServiceError && err.code === 'BUSY' && attempt === 0) {
          await new Promise((r) => setTimeout(r, inFlowDelay || 1000));
          continue;
        }
        return { ok: false, code: 451, dsn: '4.3.0', text: 'Error: queue file write error' };
      }
    }
  }

  timeWrapperHandshake(server, tlsSettings);
  if (tlsSettings.wrapper && anvil) {
    refuseWrapperHandshakes(server, (socket) => {
      const addr = socket.remoteAddress ?? '';
      if (!anvil.wrapperRefused(addr)) return false;
      void peerName(addr, peernameLookup).then((name) => {
        log.info(`connect from ${name}[${addr}]`);
        log.warn(`Refusing TLS service request from ${name}[${addr}] for service ${anvil.serviceName}`);
        log.info(`disconnect from ${name}[${addr}] commands=0`);
        metrics().smtpdConnects.inc();
        metrics().smtpdDisconnects.inc();
      });
      return true;
    });
  }
  server.on('error', (err: Error & { meta?: { stage?: string; remoteAddress?: string; message?: string } }) => {
    // A wrapper-mode handshake that failed: no session was made, so no "connect from" either.
    const addr = err.meta?.remoteAddress;
    if (tlsSettings.wrapper && err.meta?.stage === 'connect' && addr !== undefined) {
      void peerName(addr, peernameLookup).then((name) => {
        log.info(`connect from ${name}[${addr}]`);
        for (const [level, text] of handshakeFailure(err, `${name}[${addr}]`, 'CONNECT')) log[level](text);
        log.info(`disconnect from ${name}[${addr}] commands=0`);
        // As logged: a connection and its end, without a session.
        metrics().smtpdConnects.inc();
        metrics().smtpdDisconnects.inc();
        metrics().smtpdTlsFailures.inc();
      });
      return;
    }
    // A listener that cannot bind is the start-up's fatal "bind … port …" below, logged once.
    if ((err as NodeJS.ErrnoException).syscall === 'listen') return;
    log.warn(`smtpd: ${err.message}`);
  });
  // The first address uses smtp-server's own listener; each further one is a plain listener
  // that hands its connections to it (its 'connection' handler runs the SMTP session).
  const primary = server.server as net.Server;
  if (tlsSettings.wrapper && tlsSettings.context === null) {
    // Wrapper mode without a usable certificate: Postfix's smtpd drops each connection.
    primary.removeAllListeners('connection');
    primary.on('connection', (socket: net.Socket) => {
      const addr = socket.remoteAddress ?? '';
      socket.destroy();
      void peerName(addr, peernameLookup).then((name) => log.warn(`Wrapper-mode request dropped from ${name}[${addr}] for service ${p.service_name}. TLS context initialization failed. For details see earlier warnings in your logs.`));
    });
  }
  // The total session limit and the open-file reserve (sessions.ts).
  const budget = sessionBudgetOf(config, p, raiseOpenFileLimit());
  const gate = gateSessions(primary, {
    limit: budget.limit,
    parkable: budget.parkable,
    // A client over the limit waits at most as long as a session may stay silent.
    waitMs: p.smtpd_timeout * 1000,
    counter: anvilTable ?? localCounter(),
    service: p.service_name,
    endpoint: p.service_name,
    plaintext: !tlsSettings.wrapper,
  });
  /** A session on a socket whose endpoints someone else read (postscreen, a PROXY header). */
  // Such sessions count against the session limit too (and wait for a place like any other).
  const handOff = (socket: net.Socket, ep: Endpoints) => gate.admit(socket, () => (server as unknown as { connect(s: net.Socket, o: object): void }).connect(socket, {
    id: randomBytes(10).toString('hex'),
    remoteAddress: ep.clientAddr, remotePort: ep.clientPort, localAddress: ep.serverAddr, localPort: ep.serverPort,
  }));
  // Behind postscreen the addresses are postscreen's: every connection is screened first, and
  // a client that passes is given to smtp-server as a new connection (actors/postscreen).
  const postscreen = postscreenData ? await Postscreen.create({
    config: configFromJSON(postscreenData.config),
    counts: new AnvilTable(postscreenData.counts),
    sessions: new Int32Array(postscreenData.sessions),
    request: (service, body) => actor.request(service, body),
    // As Postfix's postscreen passes the client's endpoints with the socket, smtp-server gets
    // them as a PROXY-aware listener would give them (they differ behind haproxy).
    handOff: (socket, ep) => handOff(socket, ep),
    cleanup: actor.data.index === 0,
  }) : null;
  // smtpd_upstream_proxy_protocol = haproxy: the client's endpoints come from the PROXY header.
  const upstreamProxy = p.smtpd_upstream_proxy_protocol.trim();
  if (postscreen && upstreamProxy !== '') log.warn('ignoring non-empty smtpd_upstream_proxy_protocol setting behind postscreen');
  const proxied = upstreamProxy === 'haproxy' && !postscreen ? (socket: net.Socket) => {
    socket.on('error', () => undefined);
    void readProxyHeader(socket, p.smtpd_upstream_proxy_timeout, (w) => log.warn(w)).then((ep) => {
      if (!ep) {
        if (!socket.destroyed) socket.end(`421 4.3.0 ${hostname} Server local error\r\n`);
        setTimeout(() => socket.destroy(), 2000).unref();
        return;
      }
      handOff(socket, ep);
    });
  } : null;
  const listeners = addresses.map((_, i) => (i === 0 && !postscreen && !proxied ? primary
    : net.createServer(postscreen ? (socket) => postscreen.accept(socket) : proxied ?? ((socket) => primary.emit('connection', socket)))));
  await Promise.all(addresses.map((a, i) => new Promise<void>((resolve, reject) => {
    const s = listeners[i]!;
    s.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`bind ${a.host} port ${a.port}: ${e.code === 'EADDRINUSE' ? 'Address already in use' : e.message}`)));
    s.listen({ host: a.host, port: a.port, reusePort: true, backlog: 1024, ...(a.ipv6Only ? { ipv6Only: true } : {}) }, () => resolve());
  })));
  // Retired by a reload: the sessions finish here; stopped: they get a grace period (shutdown.ts).
  handleShutdown(server, listeners, () => ctx.exit(0), () => gate.parked());
  return { server };
}

export default defineService({
  ...meta,
  maxInFlight: 2048,
  // Its sessions get a grace period at a stop, and finish at their pace after a reload (shutdown.ts).
  stopsItself: true,
  fatalStack: false,
  params: SMTPD_PARAMS,
  setup: main,
  control: {
    status: (s) => ({ connections: (s?.server as unknown as { connections: Set<unknown> } | undefined)?.connections.size ?? 0 }),
  },
});

/** A recipient's DSN NOTIFY and ORCPT as smtp-server parsed them (xtext already decoded). */
function dsnOf(r: { dsn?: { notify?: string[]; orcpt?: string } }): { notify?: string[]; orcpt?: string } {
  const out: { notify?: string[]; orcpt?: string } = {};
  if (r.dsn?.notify?.length) out.notify = r.dsn.notify.map((n) => n.toUpperCase());
  if (r.dsn?.orcpt) out.orcpt = r.dsn.orcpt;
  return out;
}

/** The message's DSN RET and ENVID. */
function envelopeDsnOf(session: SMTPServerSession): { ret?: 'FULL' | 'HDRS'; envId?: string } {
  const dsn = (session.envelope as { dsn?: { ret?: string | null; envid?: string | null } }).dsn;
  const out: { ret?: 'FULL' | 'HDRS'; envId?: string } = {};
  if (dsn?.ret === 'FULL' || dsn?.ret === 'HDRS') out.ret = dsn.ret;
  if (dsn?.envid) out.envId = dsn.envid;
  return out;
}
