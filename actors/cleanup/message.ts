/**
 * The message header stages of cleanup (Postfix's cleanup_message.c, header part):
 *   - reading the header section: stray CRs (cleanup_replace_stray_cr_lf), header_size_limit,
 *     and the Received hop count (hopcount_limit; none at all is refused too);
 *   - the headers cleanup adds: smtpd's Received, post_mail's Received of mail the system makes
 *     itself (notices, probes), and the missing Message-Id, Date, From (and the
 *     undisclosed-recipients header of a local submission) for local clients or always;
 *   - one logical header at a time: header_checks / mime_header_checks, the removal of Bcc,
 *     Resent-Bcc, Return-Path and Content-Length, and address rewriting in the header rewrite
 *     context (canonical maps and masquerading of header classes).
 * The header section is handled as a byte string (one char per byte, latin1).
 */
import type { CleanupRequest } from '../protocol.js';
import { maillog } from '../../src/log/maillog.js';
import { mailDate } from '../../src/time/mail-date.js';
import { formatPhrase } from '../../src/maildrop/address.js';
import { applyAction } from './act.js';
import { checkInput, checkTables, DROPPED_HEADERS, parseAction, RECIPIENT_HEADERS, rewriteAddressList, SENDER_HEADERS, splitHeaderFields } from './checks.js';
import { limitHeaderSize } from './header-limit.js';
import { dropHeaders, receivedHeader, scanHeaders, type HeaderScan } from './headers.js';
import { canonicalize, masqueradeClass } from './mappings.js';
import { MIME_HEADERS } from '../../src/content/mime.js';
import { rewriteAddress, type RewriteSettings } from '../../src/rewrite/rewrite.js';
import type { CleanupSettings, Tables } from './settings.js';
import { filtering, type Failure, type Verdict } from './state.js';

const log = maillog('cleanup');

/**
 * The content with each CR that is not followed by LF replaced by a space (a copy only when
 * needed). Searched as a Buffer: its indexOf is native (memchr), about three times faster per
 * line than the typed array's.
 */
export function replaceStrayCr(content: Uint8Array): Uint8Array {
  const bytes = Buffer.isBuffer(content) ? content : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  let i = bytes.indexOf(0x0d);
  if (i < 0) return content;
  let copy: Uint8Array | null = null;
  for (; i >= 0; i = bytes.indexOf(0x0d, i + 1)) {
    if (bytes[i + 1] === 0x0a) continue;
    copy ??= Uint8Array.from(content);
    copy[i] = 0x20;
  }
  return copy ?? content;
}

/**
 * The content as cleanup reads it, and its header section: stray CRs replaced, headers longer
 * than header_size_limit cut; a message with hopcount_limit Received headers (its own included) is refused.
 */
export function readMessage(s: Pick<CleanupSettings, 'replaceStrayCr' | 'headerSizeLimit' | 'hopLimit'>, request: CleanupRequest): Failure | { content: Uint8Array; scan: HeaderScan } {
  // cleanup_replace_stray_cr_lf (Postfix ≥ 3.8.5): a CR that does not end a line becomes a space,
  // so "Subject: s\rX-Injected: yes" cannot be read as two headers further on.
  let original = s.replaceStrayCr ? replaceStrayCr(request.content) : request.content;
  let scan = scanHeaders(original);
  // header_size_limit: a longer header is kept cut at the limit (header-limit.ts).
  const limited = limitHeaderSize(original, scan.end, s.headerSizeLimit);
  if (limited) {
    original = limited;
    scan = scanHeaders(original);
  }
  // Postfix counts every Received header cleanup sees, smtpd's own and post_mail's included
  // (they wrote it ahead of the message; here cleanup adds it: addedHeaders), and refuses at
  // hopcount_limit.
  const hops = scan.received + (ownReceived(request) ? 1 : 0);
  if (hops >= s.hopLimit) {
    log.warn(`${request.queueId}: message rejected: hopcount exceeded`);
    return { ok: false, code: 554, dsn: '5.4.0', text: 'Error: too many hops' };
  }
  // Postfix's consistency check (cleanup_header_done_callback): every way into cleanup writes a
  // Received header (smtpd, qmqpd, pickup, post_mail), and the milter client's header
  // suppression counts on it; a message without one is refused as CLEANUP_STAT_BAD, which
  // smtpd words "451 4.3.0 Error: internal error 1".
  if (hops < 1) {
    log.warn(`${request.queueId}: message rejected: no Received: header`);
    return { ok: false, code: 451, dsn: '4.3.0', text: 'Error: internal error 1' };
  }
  return { content: original, scan };
}

/** The Received header that cleanup adds itself: smtpd's, and post_mail's for the mail the system makes (origin bounce). */
function ownReceived(request: CleanupRequest): boolean {
  return (request.origin === 'smtpd' && request.client !== undefined) || request.origin === 'bounce';
}

/**
 * The local header rewrite context: a network client that local_header_rewrite_clients names
 * (or one without client information). qmqpd's messages are a network client's, as smtpd's.
 */
export function isLocalClient(s: Pick<CleanupSettings, 'rewriteClients'>, request: CleanupRequest): boolean {
  const network = request.origin === 'smtpd' || request.origin === 'qmqpd';
  return network && (request.client ? s.rewriteClients(request.client) : true);
}

/** What cleanup adds to the header section (as byte strings), and the message's Message-ID. */
export interface AddedHeaders {
  /** smtpd's Received header, first in the header section. */
  received: string;
  /** The missing headers, at the end of the header section. */
  added: string;
  /** The line that ends a header section that had no blank line before the body. */
  separator: string;
  messageId: string | null;
}

/** The headers cleanup adds to this message: `localClient` from isLocalClient(). */
export function addedHeaders(s: Pick<CleanupSettings, 'alwaysAdd' | 'myhostname' | 'mailName' | 'undisclosedRecipientsHeader' | 'remoteHeaderRewriteDomain'>, request: CleanupRequest, original: Uint8Array, scan: HeaderScan, localClient: boolean): AddedHeaders {
  // Headers Postfix adds at the end of the header section, in a header rewrite context (local
  // clients; the others too when remote_header_rewrite_domain is set) or always.
  // qmqpd's messages are a network client's, as smtpd's (qmqpd wrote their Received header itself).
  const network = request.origin === 'smtpd' || request.origin === 'qmqpd';
  const remoteContext = s.remoteHeaderRewriteDomain !== '';
  const addMissing = network && (s.alwaysAdd || localClient || remoteContext);
  let added = '';
  let messageId = scan.messageId;
  if (request.origin === 'pickup') {
    // -G (rewrite context remote) adds no headers, unless always_add_missing_headers or
    // remote_header_rewrite_domain.
    if (request.local?.rewriteContext !== 'remote' || s.alwaysAdd || remoteContext) {
      const local = localMissingHeaders(s, request, scan.present, scan.eol);
      added = local.added;
      messageId = local.messageId ?? messageId;
    }
  } else if (addMissing || request.origin === 'bounce') {
    // The same headers as for a local submission (Postfix's cleanup_header_done_callback does
    // not tell them apart): Resent- versions of a resent message, and undisclosed_recipients_header.
    const local = localMissingHeaders(s, request, scan.present, scan.eol);
    added = local.added;
    messageId = local.messageId ?? messageId;
  }
  // Mail the system makes itself (notices, probes) starts with post_mail's Received header, as
  // Postfix's post_mail_init() writes it: "Received: by $myhostname ($mail_name)" + "\tid QID; date".
  const received = request.origin === 'bounce'
    ? `Received: by ${s.myhostname} (${s.mailName})${scan.eol}\tid ${request.queueId}; ${mailDate(request.arrival)}${scan.eol}`
    : request.client && request.origin === 'smtpd'
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
  return { received: bytes(received), added: bytes(added), separator, messageId };
}

/** Missing headers of a local submission, Postfix style (Resent- versions when the message is resent). */
function localMissingHeaders(s: Pick<CleanupSettings, 'myhostname' | 'undisclosedRecipientsHeader'>, request: CleanupRequest, present: Set<string>, eol: string): { added: string; messageId: string | null } {
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
    // As Postfix: text that is not "name: value" is not added, and said so.
    if (/^[\x21-\x39\x3b-\x7e]+[ \t]*:/.test(s.undisclosedRecipientsHeader)) added += `${s.undisclosedRecipientsHeader}${eol}`;
    else log.warn(`bad undisclosed_recipients_header header text "${s.undisclosedRecipientsHeader}" -- need "headername: headervalue"`);
  }
  return { added, messageId };
}

/** Which of the header stages run for this message. */
export interface HeaderOptions {
  /** Address mappings are on (not receive_override_options = no_address_mappings). */
  mapOK: boolean;
  /** Header and body checks are on (not no_header_body_checks, not a bounce). */
  checksOK: boolean;
  /** The local header rewrite context (isLocalClient()). */
  localClient: boolean;
}

/**
 * The new content: the Received header, the header section through header_checks, Bcc removal
 * and address rewriting, the added headers at its end, then the body as it came. A REJECT or
 * DEFER of header_checks is returned as the failure.
 */
export async function headerSection(s: Pick<CleanupSettings, 'headerSizeLimit' | 'remoteHeaderRewriteDomain' | 'rewrite'>, t: Tables, request: CleanupRequest, verdict: Verdict, original: Uint8Array, scan: HeaderScan, add: AddedHeaders, o: HeaderOptions, warn: (text: string) => void): Promise<Failure | { content: Uint8Array }> {
  const m = t.mappings;
  const { received, added, separator } = add;
  // Header rewriting happens for local clients (local_header_rewrite_clients, local submissions),
  // or for everyone when remote_header_rewrite_domain is set (Postfix's header rewrite context).
  const context = request.origin === 'bounce' ? null : headerRewriteContext(s, request, o.localClient);
  // In that context each address of a sender or recipient header is rewritten as trivial-rewrite
  // does ("user" → "user@$myorigin", append_dot_mydomain, …), then mapped (canonical, masquerading).
  const mapping = o.mapOK && t.headerMapping;
  const headerRewrite = context !== null;
  // Primary headers: MIME headers (Content-*, MIME-Version) to mime_header_checks, the others
  // to header_checks (Postfix's cleanup_header_callback()).
  const headerChecks = o.checksOK && (t.headerChecks.length > 0 || t.mimeHeaderChecks.length > 0);
  if (!headerChecks && !headerRewrite) {
    const dropped = dropHeaders(original, scan.end, DROPPED_HEADERS);
    return { content: splice(dropped.msg, dropped.end, received, added + separator) };
  }
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
      raw = raw.slice(0, colon) + await rewriteAddressList(raw.slice(colon), async (a) => {
        const r = rewriteAddress(a, 'local', context);
        return mapping ? masqueradeClass(m, await canonicalize(m, r, cls, warn), cls) : r;
      });
    }
    out += raw;
  }
  return { content: joinParts(out, original.subarray(scan.end), added + separator) };
}

/**
 * The trivial-rewrite settings of the header rewrite context, or null outside it: local clients
 * and local submissions get the local context (append_at_myorigin, append_dot_mydomain); others,
 * and "sendmail -G", the remote context, which appends remote_header_rewrite_domain where the
 * local context appends $myorigin and $mydomain (none when it is empty: Postfix's rewrite.c).
 */
function headerRewriteContext(s: Pick<CleanupSettings, 'remoteHeaderRewriteDomain' | 'rewrite'>, request: CleanupRequest, localClient: boolean): RewriteSettings | null {
  const local = request.origin === 'pickup' ? request.local?.rewriteContext !== 'remote' : localClient;
  if (local) return s.rewrite;
  const domain = s.remoteHeaderRewriteDomain;
  return domain === '' ? null : { ...s.rewrite, myorigin: domain, mydomain: domain };
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
