/**
 * cleanup: the only writer of new queue entries (a piscina pool, one task per message).
 * It adds the headers Postfix's cleanup adds, writes envelope + content into the incoming queue
 * in one LMDB transaction, waits until that commit is on disk, tells qmgr, and replies — after
 * which smtpd may say "250 Ok: queued".
 */
import { limitHeaderSize } from './header-limit.js';
import { metrics } from '../../src/metrics/thread.js';
import type { Config } from '../../src/config/index.js';
import { maillog } from '../../src/log/maillog.js';
import type { MessageMeta, QueueStore } from '../../src/queue/store.js';
import { tell } from '../../src/runtime/mailbox.js';
import { flowOf, type MailFlow } from '../../src/runtime/flow.js';
import { buildNetworks, type NetworkList } from '../../src/net/networks.js';
import { defineService, type ServiceContext } from '../../src/runtime/service.js';
import type { CleanupReply, CleanupRequest, QmgrMessage } from '../protocol.js';
import { dropHeaders, receivedHeader, scanHeaders } from './headers.js';
import { mailDate } from '../../src/time/mail-date.js';
import { formatPhrase } from '../../src/maildrop/address.js';
import { openTable, type LookupTable } from '../../src/maps/index.js';
import { splitTableList, canonicalize, dedupe, expandVirtual, loadMappings, MapList, MappingFailure, masqueradeClass, splitResults, type Mappings } from './mappings.js';
import { CleanupMilters } from './milter.js';
import { smtputf8Flags, smtputf8Settings, type Smtputf8Settings } from './smtputf8.js';
import { checkInput, checkTables, DROPPED_HEADERS, logForm, parseAction, RECIPIENT_HEADERS, rewriteAddressList, SENDER_HEADERS, splitHeaderFields, type CheckAction } from './checks.js';
import { MIME_HEADERS, walkMime, type MimeLimits } from './mime.js';

const log = maillog('cleanup');

/** The content with each CR that is not followed by LF replaced by a space (a copy only when needed). */
export function replaceStrayCr(content: Uint8Array): Uint8Array {
  let i = content.indexOf(0x0d);
  if (i < 0) return content;
  let copy: Uint8Array | null = null;
  for (; i >= 0; i = content.indexOf(0x0d, i + 1)) {
    if (content[i + 1] === 0x0a) continue;
    copy ??= Uint8Array.from(content);
    copy[i] = 0x20;
  }
  return copy ?? content;
}


interface State {
  config: Config;
  store: QueueStore;
  instance: string;
  /** in_flow_delay (ms) and the flow tokens qmgr produces (src/runtime/flow.ts). */
  inFlowDelay: number;
  flow: MailFlow | null;
  myhostname: string;
  mailName: string;
  hopLimit: number;
  /** cleanup_replace_stray_cr_lf. */
  replaceStrayCr: boolean;
  alwaysAdd: boolean;
  /** Clients whose messages get missing headers (local_header_rewrite_clients). */
  rewriteClients: (client: { addr: string; saslUsername?: string }) => boolean;
  /** Local submissions (origin 'pickup'): append_at_myorigin and friends. */
  myorigin: string;
  appendAtMyorigin: boolean;
  emptyAddressRecipient: string;
  undisclosedRecipientsHeader: string;
  /** Tables of the address mappings and content checks; `broken` when one failed to load. */
  tables: Tables | { broken: string };
  /** receive_override_options (main.cf: cleanup is one shared service here). */
  noAddressMappings: boolean;
  noHeaderBodyChecks: boolean;
  remoteHeaderRewriteDomain: string;

  headerSizeLimit: number;
  bodyChecksSizeLimit: number;
  /** disable_mime_input_processing, and mime_nesting_limit / mime_boundary_length_limit. */
  disableMime: boolean;
  mimeLimits: MimeLimits;
  smtputf8: Smtputf8Settings;
  /** non_smtpd_milters (local submissions). */
  milters: CleanupMilters | null;
}

interface Tables {
  mappings: Mappings;
  /** header_checks: the primary message headers that are not MIME headers. */
  headerChecks: LookupTable[];
  /** mime_header_checks: MIME headers anywhere, and every header of a multipart part. */
  mimeHeaderChecks: LookupTable[];
  /** nested_header_checks: the non-MIME headers of an attached message/rfc822. */
  nestedHeaderChecks: LookupTable[];
  bodyChecks: LookupTable[];
  /** milter_header_checks: for the header fields milters added or changed. */
  milterHeaderChecks: LookupTable[];
  /** Some table maps header addresses (canonical or masquerading for a header class). */
  headerMapping: boolean;
}

function loadTables(config: Config): Tables | { broken: string } {
  try {
    const dir = config.get('config_directory') || undefined;
    const open = (name: string) => splitTableList(config.get(name)).map((spec) => openTable(spec, dir ? { configDirectory: dir } : {}));
    const mappings = loadMappings(config, dir);
    const headerClass = (maps: MapList, classes: ReadonlySet<string>) => !maps.empty && (classes.has('header_sender') || classes.has('header_recipient'));
    const headerMapping = headerClass(mappings.senderCanonical, mappings.senderCanonicalClasses)
      || headerClass(mappings.recipientCanonical, mappings.recipientCanonicalClasses)
      || headerClass(mappings.canonical, mappings.canonicalClasses)
      || (mappings.masqueradeDomains.length > 0 && (mappings.masqueradeClasses.has('header_sender') || mappings.masqueradeClasses.has('header_recipient')));
    return {
      mappings, headerChecks: open('header_checks'), bodyChecks: open('body_checks'),
      mimeHeaderChecks: open('mime_header_checks'), nestedHeaderChecks: open('nested_header_checks'),
      milterHeaderChecks: open('milter_header_checks'), headerMapping,
    };
  } catch (err) {
    log.warn(`cleanup tables: ${(err as Error).message}`);
    return { broken: (err as Error).message };
  }
}

let state: State | null = null;

function init(ctx: ServiceContext): State {
  const { config, data } = ctx;
  return {
    config,
    store: ctx.store,
    instance: data.instance,
    inFlowDelay: config.getTime('in_flow_delay') * 1000,
    flow: flowOf(data),
    myhostname: config.get('myhostname'),
    mailName: config.get('mail_name'),
    hopLimit: config.getInt('hopcount_limit'),
    replaceStrayCr: config.getBool('cleanup_replace_stray_cr_lf'),

    alwaysAdd: config.getBool('always_add_missing_headers'),
    rewriteClients: rewriteClientMatcher(config),
    myorigin: config.get('myorigin'),
    appendAtMyorigin: config.getBool('append_at_myorigin'),
    emptyAddressRecipient: config.get('empty_address_recipient'),
    // Postfix >= 2.8: empty by default (no "To: undisclosed-recipients:;" is added).
    undisclosedRecipientsHeader: config.raw('undisclosed_recipients_header') ?? '',
    tables: loadTables(config),
    ...receiveOverrides(config),
    remoteHeaderRewriteDomain: config.get('remote_header_rewrite_domain').trim(),
    headerSizeLimit: config.getInt('header_size_limit'),
    bodyChecksSizeLimit: config.getInt('body_checks_size_limit'),
    disableMime: config.getBool('disable_mime_input_processing'),
    mimeLimits: { nesting: config.getInt('mime_nesting_limit'), boundaryLength: config.getInt('mime_boundary_length_limit') },
    smtputf8: smtputf8Settings(config.getBool('smtputf8_enable'), config.getList('smtputf8_autodetect_classes'), (t) => log.warn(t)),
    milters: CleanupMilters.from(config, log),
  };
}

/** receive_override_options: the options Postactor honours; others fail loudly (logged, not ignored silently). */
function receiveOverrides(config: Config): { noAddressMappings: boolean; noHeaderBodyChecks: boolean } {
  const opts = new Set(config.getList('receive_override_options'));
  for (const o of opts) {
    if (o !== 'no_address_mappings' && o !== 'no_header_body_checks' && o !== 'no_unknown_recipient_checks' && o !== 'no_milters') {
      log.warn(`receive_override_options: not supported: "${o}"`);
    }
  }
  return { noAddressMappings: opts.has('no_address_mappings'), noHeaderBodyChecks: opts.has('no_header_body_checks') };
}

/** local_header_rewrite_clients: permit_inet_interfaces, permit_mynetworks, permit (issue 3 adds tables). */
function rewriteClientMatcher(config: Config): (client: { addr: string; saslUsername?: string }) => boolean {
  const tests: ((addr: string, saslUsername: string | undefined) => boolean)[] = [];
  for (const item of config.getList('local_header_rewrite_clients')) {
    if (item === 'permit') tests.push(() => true);
    else if (item === 'permit_inet_interfaces') {
      const own: NetworkList = buildNetworks('', 'host').networks;
      tests.push((a) => own.has(a));
    } else if (item === 'permit_mynetworks') {
      const nets = buildNetworks(config.get('mynetworks'), config.get('mynetworks_style')).networks;
      tests.push((a) => nets.has(a));
    } else if (item === 'permit_sasl_authenticated') {
      tests.push((_a, user) => user !== undefined);
    } else {
      log.warn(`local_header_rewrite_clients: not supported: "${item}" (ignored)`);
    }
  }
  return (c) => tests.some((t) => t(c.addr, c.saslUsername));
}

/** Headers Postfix's cleanup removes from local submissions (HDR_OPT_DROP). */
const DROPPED = new Set(['bcc', 'resent-bcc', 'return-path', 'content-length']);

/**
 * A local submission (pickup): qualify envelope addresses as trivial-rewrite does in the local
 * context (append_at_myorigin; the empty recipient becomes $empty_address_recipient) and drop
 * Bcc/Resent-Bcc/Return-Path/Content-Length, before the common path below.
 */
function localSubmission(s: State, request: CleanupRequest): CleanupRequest {
  const qualify = (a: string) => (a && s.appendAtMyorigin && !a.includes('@') ? `${a}@${s.myorigin}` : a);
  const scan = scanHeaders(request.content);
  const dropped = dropHeaders(request.content, scan.end, DROPPED);
  return {
    ...request,
    sender: qualify(request.sender),
    recipients: request.recipients.map((r) => ({ ...r, address: qualify(r.address || s.emptyAddressRecipient) })),
    content: dropped.msg,
  };
}

/** Missing headers of a local submission, Postfix style (Resent- versions when the message is resent). */
function localMissingHeaders(s: State, request: CleanupRequest, present: Set<string>, eol: string): { added: string; messageId: string | null } {
  const resent = [...present].some((n) => n.startsWith('resent-')) ? 'Resent-' : '';
  const has = (n: string) => present.has((resent + n).toLowerCase());
  let added = '';
  let messageId: string | null = null;
  if (!has('message-id')) {
    messageId = `<${request.queueId}@${s.myhostname}>`;
    added += `${resent}Message-Id: ${messageId}${eol}`;
  }
  if (!has('date')) added += `${resent}Date: ${mailDate(request.arrival)}${eol}`;
  if (!has('from')) {
    const addr = request.sender || 'MAILER-DAEMON';
    const name = request.local?.fullName;
    added += request.sender && name ? `${resent}From: ${formatPhrase(name)} <${addr}>${eol}` : `${resent}From: ${addr}${eol}`;
  }
  if (!present.has('to') && !present.has('cc') && !present.has('resent-to') && !present.has('resent-cc') && s.undisclosedRecipientsHeader) {
    added += `${s.undisclosedRecipientsHeader}${eol}`;
  }
  return { added, messageId };
}

/** What the checks decided for the whole message. */
interface Verdict {
  hold: boolean;
  discard: boolean;
  redirect: string | null;
  filter: string | null;
  bcc: string[];
}

type Failure = { ok: false; code: number; dsn: string; text: string };

/** Checks still run: DISCARD and REDIRECT end them for the message (Postfix clears CLEANUP_FLAG_FILTER). */
const filtering = (v: Verdict) => !v.discard && v.redirect === null;

const WRITE_ERROR: Failure = { ok: false, code: 451, dsn: '4.3.0', text: 'Error: queue file write error' };

/** "ID: action: header X from client; from=<s> to=<r> proto=P helo=<h>: text", as Postfix's cleanup logs it. */
function actionLog(request: CleanupRequest, action: string, cls: string, input: string, text: string): string {
  const c = request.client;
  const remote = request.origin === 'smtpd' || request.origin === 'qmqpd';
  const origin = c && remote ? `${c.name}[${c.addr}]` : 'local';
  const rcpt = request.recipients[0]?.address;
  let line = `${request.queueId}: ${action}: ${cls} ${logForm(input)} from ${origin}; from=<${request.sender}>`;
  if (rcpt !== undefined) line += ` to=<${rcpt}>`;
  // qmqpd has no HELO name, so no helo=<> (as Postfix's cleanup logs only what it was given).
  if (c && remote) line += ` proto=${c.protocol}${request.origin === 'smtpd' ? ` helo=<${c.helo}>` : ''}`;
  return text ? `${line}: ${text}` : line;
}

/**
 * Applies one check action. Returns a failure (REJECT, DEFER), or how the input changes:
 * 'keep', 'drop' (IGNORE) or replacement / prepended text.
 */
function applyAction(request: CleanupRequest, verdict: Verdict, action: CheckAction, cls: string, input: string, map = `${cls}_checks`): Failure | { replace?: string; prepend?: string; drop?: boolean } {
  switch (action.kind) {
    case 'dunno': return {};
    case 'reject':
      log.info(actionLog(request, 'reject', cls, input, `${action.dsn} ${action.text}`));
      return { ok: false, code: action.dsn.startsWith('4') ? 451 : 550, dsn: action.dsn, text: action.text };
    case 'defer':
      log.info(actionLog(request, 'reject', cls, input, `${action.dsn} ${action.text}`));
      return { ok: false, code: 451, dsn: action.dsn, text: action.text };
    case 'warn': log.info(actionLog(request, 'warning', cls, input, action.text)); return {};
    case 'info': log.info(actionLog(request, 'info', cls, input, action.text)); return {};
    case 'hold':
      log.info(actionLog(request, 'hold', cls, input, action.text));
      verdict.hold = true;
      return {};
    case 'discard':
      log.info(actionLog(request, 'discard', cls, input, action.text));
      verdict.discard = true;
      return {};
    case 'redirect':
      log.info(actionLog(request, 'redirect', cls, input, action.address));
      verdict.redirect = action.address;
      return {};
    case 'filter':
      log.info(actionLog(request, 'filter', cls, input, action.nexthop));
      verdict.filter = action.nexthop;
      return {};
    case 'bcc':
      verdict.bcc.push(...splitResults(action.address));
      return {};
    case 'prepend': return { prepend: action.text };
    case 'replace': return { replace: action.text };
    case 'ignore': return { drop: true };
    case 'unknown':
      log.warn(`${request.queueId}: unknown command in ${map} map: ${action.value}`);
      return {};
  }
}

export default defineService({
  name: 'cleanup',
  kind: 'pool',
  concurrency: 256,
  // The one pool kept warm: smtpd waits for its reply before it answers the client's end of
  // DATA, so a thread start there would be a client's wait (actors/master/services.ts).
  minThreads: 1,
  params: {},
  setup: (ctx) => (state = init(ctx)),
  handle: (_s, incoming: CleanupRequest) => cleanup(incoming),
});

async function cleanup(incoming: CleanupRequest): Promise<CleanupReply> {
  const reply = await cleanupMessage(incoming);
  if (reply.ok) metrics().cleanupMessages.inc();
  else metrics().cleanupRejects.inc();
  return reply;
}

async function cleanupMessage(incoming: CleanupRequest): Promise<CleanupReply> {
  const s = state!; // set by the service's setup (defineService above) before its first request
  // in_flow_delay (Postfix's mail_flow): each message takes a token that qmgr gives back as it
  // takes mail out of incoming; with none left, input is ahead of delivery, and this message
  // waits in_flow_delay first — slowed, never refused. qmgr's own notices do not wait.
  if (s.flow && s.inFlowDelay > 0 && incoming.origin !== 'bounce' && !s.flow.get(1)) {
    await new Promise((r) => setTimeout(r, s.inFlowDelay));
  }
  const request0 = incoming.origin === 'pickup' ? localSubmission(s, incoming) : incoming;
  // cleanup_replace_stray_cr_lf (Postfix ≥ 3.8.5): a CR that does not end a line becomes a space,
  // so "Subject: s\rX-Injected: yes" cannot be read as two headers further on.
  let original = s.replaceStrayCr ? replaceStrayCr(request0.content) : request0.content;
  let scan = scanHeaders(original);
  // header_size_limit: a longer header is kept cut at the limit (header-limit.ts).
  const limited = limitHeaderSize(original, scan.end, s.headerSizeLimit);
  if (limited) {
    original = limited;
    scan = scanHeaders(original);
  }
  if (scan.received > s.hopLimit) {
    log.info(`${request0.queueId}: reject: header Received: too many hops; from=<${request0.sender}>`);
    return { ok: false, code: 554, dsn: '5.4.0', text: 'Error: too many hops' };
  }
  if ('broken' in s.tables) {
    log.warn(`${request0.queueId}: table lookup problem -- message not accepted, try again later: ${s.tables.broken}`);
    return WRITE_ERROR;
  }
  const t = s.tables;
  const warn = (text: string) => log.warn(`${request0.queueId}: ${text}`);
  try {
    const reply = await processMessage(s, t, request0, original, scan, warn);
    // A local submission that a check or a milter rejects for good is returned to its sender
    // (Postfix's pickup asks cleanup to bounce: there is no SMTP client to tell).
    if (!reply.ok && reply.code >= 500 && request0.origin === 'pickup') return await bounceLocal(s, request0, original, reply);
    return reply;
  } catch (err) {
    if (err instanceof MappingFailure) {
      warn(err.log);
      return { ok: false, code: err.code, dsn: err.dsn, text: err.text };
    }
    if ((err as Error).name === 'TableError') {
      warn(`table lookup problem -- message not accepted, try again later: ${(err as Error).message}`);
      return WRITE_ERROR;
    }
    throw err;
  }
}

async function processMessage(s: State, t: Tables, request0: CleanupRequest, original: Uint8Array, scan: ReturnType<typeof scanHeaders>, warn: (text: string) => void): Promise<CleanupReply> {
  const mapOK = !s.noAddressMappings;
  const checksOK = !s.noHeaderBodyChecks && request0.origin !== 'bounce';
  const m = t.mappings;

  // 1-2. Canonical mapping and masquerading of the envelope.
  let request = request0;
  if (mapOK) {
    const sender = masqueradeClass(m, await canonicalize(m, request0.sender, 'envelope_sender', warn), 'envelope_sender');
    const recipients = [];
    for (const r of request0.recipients) {
      const a = masqueradeClass(m, await canonicalize(m, r.address, 'envelope_recipient', warn), 'envelope_recipient');
      recipients.push(a === r.address ? r : { ...r, address: a });
    }
    request = { ...request0, sender, recipients };
  }

  // Headers Postfix adds at the end of the header section, for local clients (or always).
  // qmqpd's messages are a network client's, as smtpd's (qmqpd wrote their Received header itself).
  const network = request.origin === 'smtpd' || request.origin === 'qmqpd';
  const localClient = network && (request.client ? s.rewriteClients(request.client) : true);
  const addMissing = network && (s.alwaysAdd || localClient);
  let added = '';
  let messageId = scan.messageId;
  if (request.origin === 'pickup') {
    // -G (rewrite context remote) adds no headers, unless always_add_missing_headers.
    if (request.local?.rewriteContext !== 'remote' || s.alwaysAdd) {
      const local = localMissingHeaders(s, request, scan.present, scan.eol);
      added = local.added;
      messageId = local.messageId ?? messageId;
    }
  } else if (addMissing || request.origin === 'bounce') {
    if (!scan.present.has('message-id')) {
      messageId = `<${request.queueId}@${s.myhostname}>`;
      added += `Message-Id: ${messageId}${scan.eol}`;
    }
    if (!scan.present.has('date')) added += `Date: ${mailDate(request.arrival)}${scan.eol}`;
    if (!scan.present.has('from')) added += `From: ${request.sender || 'MAILER-DAEMON'}${scan.eol}`;
  }
  let received = request.client && request.origin === 'smtpd'
    ? receivedHeader({
        helo: request.client.helo,
        clientName: request.client.name,
        clientAddr: request.client.addr,
        protocol: request.client.protocol,
        myhostname: s.myhostname,
        mailName: s.mailName,
        queueId: request.queueId,
        recipient: request.recipients.length === 1 ? request.recipients[0]!.address : undefined,
        date: request.arrival,
        ...(request.client.tls ? { tls: request.client.tls } : {}),
        ...(request.client.saslUsername ? { saslUsername: request.client.saslUsername, authenticatedHeader: request.client.authenticatedHeader === true } : {}),
      }, scan.eol)
    : '';
  const separator = scan.hasSeparator || scan.end === original.length ? '' : scan.eol;
  // The header section is handled as a byte string (one char per byte, latin1): the headers added
  // here go into it as their UTF-8 bytes, so "for <ü@example.com>" is written in UTF-8.
  received = bytes(received);
  added = bytes(added);

  // Header rewriting happens for local clients (local_header_rewrite_clients, local submissions),
  // or for everyone when remote_header_rewrite_domain is set (Postfix's header rewrite context).
  const headerRewrite = mapOK && t.headerMapping && request.origin !== 'bounce'
    && (request.origin === 'pickup' || localClient || s.remoteHeaderRewriteDomain !== '');
  const verdict: Verdict = { hold: request.hold === true, discard: false, redirect: null, filter: null, bcc: [] };
  let content: Uint8Array;
  // Primary headers: MIME headers (Content-*, MIME-Version) to mime_header_checks, the others
  // to header_checks (Postfix's cleanup_header_callback()).
  const headerChecks = checksOK && (t.headerChecks.length > 0 || t.mimeHeaderChecks.length > 0);
  if (headerChecks || headerRewrite) {
    // 5-6. One logical header at a time: header_checks, Bcc removal, address rewriting.
    const section = received + Buffer.from(original.buffer, original.byteOffset, scan.end).toString('latin1');
    let out = '';
    for (const field of splitHeaderFields(section)) {
      let raw = field.raw;
      const mime = MIME_HEADERS.has(field.name);
      const tables = mime ? t.mimeHeaderChecks : t.headerChecks;
      if (headerChecks && tables.length > 0 && filtering(verdict)) {
        const input = checkInput(raw, s.headerSizeLimit);
        const value = await checkTables(tables, input);
        if (value !== null) {
          const r = applyAction(request, verdict, parseAction(value), 'header', input, mime ? 'mime_header_checks' : 'header_checks');
          if ('ok' in r) return r;
          if (r.prepend) out += bytes(r.prepend) + scan.eol;
          if (r.drop) continue;
          if (r.replace !== undefined) raw = bytes(r.replace) + scan.eol;
        }
      }
      const name = raw === field.raw ? field.name : raw.slice(0, Math.max(0, raw.indexOf(':'))).toLowerCase();
      if (DROPPED_HEADERS.has(name)) continue;
      if (headerRewrite && (SENDER_HEADERS.has(name) || RECIPIENT_HEADERS.has(name))) {
        const colon = raw.indexOf(':') + 1;
        const sender = SENDER_HEADERS.has(name);
        const cls = sender ? 'header_sender' : 'header_recipient';
        raw = raw.slice(0, colon) + await rewriteAddressList(raw.slice(colon), async (a) => masqueradeClass(m, await canonicalize(m, a, cls, warn), cls));
      }
      out += raw;
    }
    content = joinParts(out, original.subarray(scan.end), added + separator);
  } else {
    const dropped = dropHeaders(original, scan.end, DROPPED_HEADERS);
    content = splice(dropped.msg, dropped.end, received, added + separator);
  }

  // The body, MIME part by MIME part: part headers to mime_header_checks / nested_header_checks,
  // body lines to body_checks (at most body_checks_size_limit bytes of each body segment).
  const partHeaders = !s.disableMime && (t.mimeHeaderChecks.length > 0 || t.nestedHeaderChecks.length > 0);
  if (checksOK && (t.bodyChecks.length > 0 || partHeaders)) {
    const r = await contentChecks(s, t, request, verdict, content, scan.eol);
    if ('ok' in r) return r;
    content = r.content;
  }

  // non_smtpd_milters: local submissions through the milters, after cleanup's own header and
  // body work (actors/cleanup/milter.ts); their envelope edits apply before BCC and aliases.
  if (request.origin === 'pickup' && s.milters && !verdict.discard) {
    const r = await s.milters.inspect({
      queueId: request.queueId, sender: request.sender, recipients: request.recipients, content,
      ...(request.ret ? { ret: request.ret } : {}), ...(request.envId ? { envId: request.envId } : {}),
    });
    if (r.kind === 'discard') return { ok: true, queueId: request.queueId, size: content.length };
    if (r.kind === 'reject') return { ok: false, code: r.code, dsn: r.dsn, text: r.text };
    content = r.content;
    request = { ...request, sender: r.sender, recipients: r.recipients, ...(r.ret ? { ret: r.ret } : {}), ...(r.envId ? { envId: r.envId } : {}) };
    if (r.hold) verdict.hold = true;
    if (r.milterHeaders.length) request = { ...request, milterHeaders: r.milterHeaders };
  }
  // milter_header_checks: the header fields milters produced, with header_checks' actions
  // (Postfix: not PREPEND; REPLACE and IGNORE cannot change a field already written either).
  if (request.milterHeaders?.length && t.milterHeaderChecks.length > 0 && !verdict.discard) {
    for (const field of request.milterHeaders) {
      const input = checkInput(field, s.headerSizeLimit);
      const value = await checkTables(t.milterHeaderChecks, input);
      if (value === null) continue;
      const action = parseAction(value);
      if (action.kind === 'prepend' || action.kind === 'replace' || action.kind === 'ignore') {
        warn(`milter_header_checks: action ${action.kind.toUpperCase()} is not supported for milter headers: ${logForm(input)}`);
        continue;
      }
      const r = applyAction(request, verdict, action, 'header', input);
      if ('ok' in r) return r;
      if (verdict.discard) break;
    }
  }

  // 3. Automatic BCC (new mail only), BCC actions; 4. virtual aliases; REDIRECT; duplicates.
  let recipients = request.recipients.map((r) => ({ address: r.address, ...(r.orcpt ? { orcpt: r.orcpt } : {}), ...(r.notify ? { notify: r.notify } : {}) }));
  const bcc: string[] = [...verdict.bcc];
  if (mapOK && request.origin !== 'bounce') {
    if (m.alwaysBcc) bcc.push(m.alwaysBcc);
    if (!m.senderBcc.empty && request.sender) {
      const v = await lookupOrFail(m.senderBcc, request.sender);
      if (v !== null) bcc.push(...splitResults(v));
    }
    if (!m.recipientBcc.empty) {
      for (const r of request.recipients) {
        const v = await lookupOrFail(m.recipientBcc, r.address);
        if (v !== null) bcc.push(...splitResults(v));
      }
    }
  }
  recipients.push(...bcc.map((address) => ({ address })));
  if (mapOK && !m.virtualAlias.empty) {
    const expanded: typeof recipients = [];
    for (const r of recipients) {
      for (const address of await expandVirtual(m, r.address)) expanded.push({ ...r, address });
    }
    recipients = expanded;
  }
  if (verdict.redirect) recipients = [{ address: verdict.redirect }];
  recipients = dedupe(recipients, m.duplicateFilterLimit);

  // content_filter (from the receiving smtpd or pickup) applies to all its mail; FILTER overrides it.
  if (!verdict.filter && request.contentFilter) verdict.filter = request.contentFilter;
  if (verdict.discard) {
    // Accepted, then dropped (the discard: line was logged by the check).
    return { ok: true, queueId: request.queueId, size: content.length };
  }
  const smtputf8 = smtputf8Flags(s.smtputf8, request, recipients, content, scanHeaders(content).end);
  const meta: MessageMeta = {
    queueId: request.queueId,
    queue: verdict.hold ? 'hold' : 'incoming',
    arrival: request.arrival,
    sender: request.sender,
    recipients: recipients.map((r) => ({ ...r, done: false })),
    size: content.length,
    nextAttempt: 0,
    attempts: 0,
    ...(messageId ? { messageId } : {}),
    // rewriteLocal: the rewrite context an XFORWARD passes on (SOURCE=LOCAL / REMOTE).
    ...(request.client ? { client: localClient ? { ...request.client, rewriteLocal: true } : request.client } : {}),
    ...(request.envId ? { envId: request.envId } : {}),
    ...(request.ret ? { ret: request.ret } : {}),
    ...(request.trace ? { trace: request.trace } : {}),
    ...(verdict.filter ? { filter: verdict.filter } : {}),
    ...(smtputf8 ? { smtputf8 } : {}),
  };
  try {
    await s.store.enqueue(meta, content);
  } catch (err) {
    // Postfix's cleanup: "ID: write queue file: No space left on device", and 451 4.3.0. The
    // commit failed as a whole: nothing of the message is in the store.
    log.warn(`${request.queueId}: write queue file: ${(err as Error).message}`);
    return WRITE_ERROR;
  }
  if (messageId) log.info(`${request.queueId}: message-id=${messageId}`);
  if (!verdict.hold) tell(s.instance, 'qmgr', { type: 'queued', queueId: request.queueId } satisfies QmgrMessage);
  else if (s.flow && s.inFlowDelay > 0 && request.origin !== 'bounce') s.flow.put(1); // not for incoming: the token goes back
  return { ok: true, queueId: request.queueId, size: content.length };
}

/**
 * Queues a rejected local submission with every recipient routed to error(8) with the reject's
 * status and text, so qmgr bounces it to the sender with the usual notice and log lines.
 */
async function bounceLocal(s: State, request: CleanupRequest, content: Uint8Array, failure: Failure): Promise<CleanupReply> {
  const meta: MessageMeta = {
    queueId: request.queueId,
    queue: 'incoming',
    arrival: request.arrival,
    sender: request.sender,
    recipients: request.recipients.map((r) => ({ ...r, done: false })),
    size: content.length,
    nextAttempt: 0,
    attempts: 0,
    filter: `error:${failure.dsn} ${failure.text}`,
    ...(request.envId ? { envId: request.envId } : {}),
    ...(request.ret ? { ret: request.ret } : {}),
  };
  try {
    await s.store.enqueue(meta, content);
  } catch (err) {
    log.warn(`${request.queueId}: queue file write error: ${(err as Error).message}`);
    return WRITE_ERROR;
  }
  tell(s.instance, 'qmgr', { type: 'queued', queueId: request.queueId } satisfies QmgrMessage);
  return { ok: true, queueId: request.queueId, size: content.length };
}

async function lookupOrFail(maps: MapList, address: string): Promise<string | null> {
  try {
    return await maps.lookup(address);
  } catch (err) {
    throw new MappingFailure(`${maps.title} map lookup problem for ${address} -- message not accepted, try again later: ${(err as Error).message}`, 451, '4.3.0', 'Error: queue file write error');
  }
}

/**
 * The content checks after the primary headers (Postfix's mime_state callbacks in cleanup): the
 * headers of each multipart part and attached message through mime_header_checks or
 * nested_header_checks, each body line through body_checks; rebuilds the content only when
 * something changed.
 */
async function contentChecks(s: State, t: Tables, request: CleanupRequest, verdict: Verdict, content: Uint8Array, eol: string): Promise<Failure | { content: Uint8Array }> {
  const buf = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const parts: Buffer[] = [];
  let copied = 0;
  const edit = (start: number, end: number, r: { replace?: string; prepend?: string; drop?: boolean }) => {
    if (r.prepend === undefined && !r.drop && r.replace === undefined) return;
    parts.push(buf.subarray(copied, start));
    if (r.prepend !== undefined) parts.push(Buffer.from(r.prepend + eol, 'utf8'));
    if (r.replace !== undefined) parts.push(Buffer.from(r.replace + eol, 'utf8'));
    else if (!r.drop) parts.push(buf.subarray(start, end));
    copied = end;
  };
  for (const ev of walkMime(content, s.mimeLimits, s.disableMime)) {
    if (!filtering(verdict)) break;
    if (ev.kind === 'header') {
      if (ev.cls === 'primary') continue; // done with the header section above
      // A MIME header, or any header of a multipart part: mime_header_checks; the other
      // headers of an attached message: nested_header_checks.
      const mime = MIME_HEADERS.has(ev.name) || ev.cls === 'multipart';
      const tables = mime ? t.mimeHeaderChecks : t.nestedHeaderChecks;
      if (tables.length === 0) continue;
      const input = checkInput(buf.subarray(ev.start, ev.end).toString('latin1'), s.headerSizeLimit);
      const value = await checkTables(tables, input);
      if (value === null) continue;
      const r = applyAction(request, verdict, parseAction(value), 'header', input, mime ? 'mime_header_checks' : 'nested_header_checks');
      if ('ok' in r) return r;
      edit(ev.start, ev.end, r);
      continue;
    }
    if (t.bodyChecks.length === 0 || (s.bodyChecksSizeLimit > 0 && ev.offset >= s.bodyChecksSizeLimit)) {
      // Without MIME processing the body is one segment: nothing after this is checked.
      if (s.disableMime) break;
      continue;
    }
    const line = buf.subarray(ev.start, ev.end).toString('utf8').replace(/\r?\n$/, '');
    const value = await checkTables(t.bodyChecks, line);
    if (value === null) continue;
    const r = applyAction(request, verdict, parseAction(value), 'body', line);
    if ('ok' in r) return r;
    edit(ev.start, ev.end, r);
  }
  if (parts.length === 0) return { content };
  parts.push(buf.subarray(copied));
  return { content: Buffer.concat(parts) };
}

/** A string's UTF-8 bytes as a byte string (one char per byte), the form of the header section here. */
function bytes(s: string): string {
  return /[^\x00-\x7f]/.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

/** header section (latin1) + added + body, in one allocation. */
function joinParts(headers: string, body: Uint8Array, insert: string): Buffer {
  const h = Buffer.byteLength(headers, 'latin1');
  const ins = Buffer.byteLength(insert, 'latin1');
  const out = Buffer.allocUnsafeSlow(h + ins + body.length);
  out.write(headers, 0, 'latin1');
  out.write(insert, h, 'latin1');
  out.set(body, h + ins);
  return out;
}

/** prefix + msg[0:at] + insert + msg[at:], in one allocation. */
function splice(msg: Uint8Array, at: number, prefix: string, insert: string): Buffer {
  if (!prefix && !insert) return Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  const p = Buffer.from(prefix, 'latin1');
  const ins = Buffer.from(insert, 'latin1');
  const out = Buffer.allocUnsafeSlow(p.length + msg.length + ins.length);
  p.copy(out, 0);
  out.set(msg.subarray(0, at), p.length);
  ins.copy(out, p.length + at);
  out.set(msg.subarray(at), p.length + at + ins.length);
  return out;
}
