/**
 * Renders delivery status notifications as Postfix's bounce(8) composes them (RFC 3464
 * multipart/report): a human-readable part from one of four templates (failure, delay, success,
 * verify — each with its postmaster variant), the message/delivery-status part with one block
 * per recipient, and the original message or its headers. Pure: no I/O, so tests call it directly.
 */
import { mailDate } from '../../src/time/mail-date.js';
import type { NoticeRequest } from '../protocol.js';
import type { StatusRecord } from '../../src/queue/types.js';

export interface NoticeSettings {
  myhostname: string;
  /** Qualifies MAILER-DAEMON in From: (Postfix's cleanup appends @$myorigin). */
  myorigin: string;
  mailName: string;
  /** smtputf8_enable: Postfix then sends every notice as 8bit, its text part as utf-8. */
  smtputf8Enable: boolean;
  /** delay_warning_time and maximal_queue_lifetime in seconds, for the delay template. */
  delayWarningTime: number;
  maximalQueueLifetime: number;
}

interface Template {
  subject: string;
  postmasterSubject: string;
  body: (s: NoticeSettings) => string[];
  /** Failure and delay notices return the "Undelivered Message" (bounce_notify_util.c). */
  undelivered: boolean;
}

const ASSISTANCE = [
  'For further assistance, please send mail to postmaster.',
  '',
  'If you do so, please include this problem report. You can',
  'delete your own text from the attached returned message.',
];

const TEMPLATES: Record<NoticeRequest['kind'], Template> = {
  failure: {
    subject: 'Undelivered Mail Returned to Sender',
    postmasterSubject: 'Postmaster Copy: Undelivered Mail',
    body: (s) => [
      `This is the mail system at host ${s.myhostname}.`,
      '',
      "I'm sorry to have to inform you that your message could not",
      "be delivered to one or more recipients. It's attached below.",
      '',
      ...ASSISTANCE,
      '',
      '                   The mail system',
    ],
    undelivered: true,
  },
  delay: {
    subject: 'Delayed Mail (still being retried)',
    postmasterSubject: 'Postmaster Warning: Delayed Mail',
    body: (s) => [
      `This is the mail system at host ${s.myhostname}.`,
      '',
      '####################################################################',
      '# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #',
      '####################################################################',
      '',
      `Your message could not be delivered for more than ${units(s.delayWarningTime, 3600)} hour(s).`,
      `It will be retried until it is ${units(s.maximalQueueLifetime, 86400)} day(s) old.`,
      '',
      ...ASSISTANCE,
      '',
      '                   The mail system',
    ],
    undelivered: true,
  },
  success: {
    subject: 'Successful Mail Delivery Report',
    postmasterSubject: 'Successful Mail Delivery Report',
    body: (s) => [
      `This is the mail system at host ${s.myhostname}.`,
      '',
      'Your message was successfully delivered to the destination(s)',
      'listed below. If the message was delivered to mailbox you will',
      'receive no further notifications. Otherwise you may still receive',
      'notifications of mail delivery errors from other systems.',
      '',
      '                   The mail system',
    ],
    undelivered: false,
  },
  verify: {
    subject: 'Mail Delivery Status Report',
    postmasterSubject: 'Mail Delivery Status Report',
    body: (s) => [
      `This is the mail system at host ${s.myhostname}.`,
      '',
      'Enclosed is the mail delivery report that you requested.',
      '',
      '                   The mail system',
    ],
    undelivered: false,
  },
};

/** A duration in whole units (Postfix divides the template's *_hours / *_days values down: 1s is "0 hour(s)"). */
function units(seconds: number, unit: number): number {
  return Math.floor(seconds / unit);
}

/**
 * Postfix's line_wrap(text, 79, 4) as bounce_print_wrap() uses it for the recipients' lines and
 * the Remote-MTA and Diagnostic-Code fields: words are kept whole, a line ends before the word
 * that would take it past 79 columns, and the continuation lines are indented by 4.
 */
export function wrapLine(text: string, width = 79, indent = 4): string[] {
  const out: string[] = [];
  let curIndent = 0;
  let curLen = width;
  let start = 0;
  let word = 0;
  const trimEnd = (t: string) => t.replace(/[ \t]+$/, '');
  while (word >= 0) {
    const sp = text.slice(word).search(/[ \t]/);
    const nextSpace = sp < 0 ? text.length : word + sp;
    if (word > start && nextSpace - start > curLen) {
      out.push(' '.repeat(curIndent) + trimEnd(text.slice(start, word)));
      while (word < text.length && (text[word] === ' ' || text[word] === '\t')) word++;
      if (start === 0) {
        curIndent += indent;
        curLen -= indent;
      }
      start = word;
    }
    word = nextSpace < text.length ? nextSpace + 1 : -1;
  }
  out.push(' '.repeat(curIndent) + trimEnd(text.slice(start)));
  return out;
}

/** mail_name as an RFC 822 atom, for X-<mail_name>-… (Postfix replaces the specials with "-"). */
function atom(name: string): string {
  return name.replace(/[ \t\r\n()<>@,;:\\".[\]]/g, '-');
}

const isUtf8Address = (a: string) => /[^\x00-\x7f]/.test(a);

/** Remote-MTA and Diagnostic-Code from a reason in Postfix's words ("host h[a] said: 550 … (in reply to …)"). */
export function remoteParts(record: Pick<StatusRecord, 'reason' | 'relay'>): { remoteMta?: string; diagnostic?: string } {
  const out: { remoteMta?: string; diagnostic?: string } = {};
  const host = /^host (\S+?)\[/.exec(record.reason) ?? /^(\S+?)\[/.exec(record.relay === 'none' ? '' : record.relay);
  if (host) out.remoteMta = `dns; ${host[1]}`;
  const said = / said: (.*?)(?: \(in reply to .*\))?$/.exec(record.reason);
  if (said) out.diagnostic = `smtp; ${said[1]}`;
  else if (/^\d{3}[ -]/.test(record.reason) && host) out.diagnostic = `smtp; ${record.reason}`;
  return out;
}

/**
 * The Status field: the recorded code, except that a failure is never reported with 2.x.y and a
 * success never with 4/5.x.y. An expired message's failure keeps its 4.x.y (as Postfix's do: the
 * last temporary error is what went wrong).
 */
function reportStatus(kind: NoticeRequest['kind'], r: StatusRecord): string {
  if (r.action === 'failed' && r.dsn.startsWith('2')) return '5.0.0';
  if (r.action === 'delayed' && !r.dsn.startsWith('4')) return '4.0.0';
  if ((kind === 'success' || r.action === 'delivered' || r.action === 'relayed' || r.action === 'expanded') && !r.dsn.startsWith('2')) return '2.0.0';
  return r.dsn;
}

export function renderNotice(req: NoticeRequest, s: NoticeSettings, now = Date.now()): Buffer {
  const t = TEMPLATES[req.kind];
  const boundary = `${req.queueId}.${Math.floor(now / 1000)}/${s.myhostname}`;
  const mailName = atom(s.mailName);
  const original = Buffer.from(req.original.buffer, req.original.byteOffset, req.original.byteLength);
  // The MIME encoding as bounce_notify_util.c picks it: 8bit whenever smtputf8_enable is on,
  // else the original's BODY= (7BIT, 8BITMIME). Postactor does not keep BODY=, so it is always
  // Postfix's "none" then (a client that sent no BODY=): no Content-Transfer-Encoding at all.
  const eightBit = s.smtputf8Enable;
  const utf8 = req.smtputf8 === true;
  // The null sender is named MAILER-DAEMON@$myhostname (X-…-Sender, Return-Path), as Postfix's bounce names it.
  const sender = req.sender || `MAILER-DAEMON@${s.myhostname}`;
  const lines: string[] = [];
  const push = (...l: string[]) => lines.push(...l);
  // post_mail() writes Date: first; cleanup puts its Received: above it and Message-Id: below.
  push(
    `Date: ${mailDate(now)}`,
    `From: Mail Delivery System <MAILER-DAEMON@${s.myorigin}>`,
    `Subject: ${req.postmaster ? t.postmasterSubject : t.subject}`,
    `To: ${req.to}`,
    `Auto-Submitted: ${req.postmaster ? 'auto-generated' : 'auto-replied'}`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    `\tboundary="${boundary}"`,
    ...(eightBit ? ['Content-Transfer-Encoding: 8bit'] : []),
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Description: Notification',
    `Content-Type: text/plain; charset=${eightBit ? 'utf-8' : 'us-ascii'}`,
    ...(eightBit ? ['Content-Transfer-Encoding: 8bit'] : []),
    '',
  );
  // The postmaster's copy has no boiler-plate text, only the recipients' lines (bounce_notify_service.c).
  if (!req.postmaster) push(...t.body(s));
  // The trace log's reasons (success and verify notices) name the relay, as Postfix's trace_append():
  // "delivery via RELAY: …" unless the relay is "none".
  const reasonOf = (r: StatusRecord) =>
    (req.kind === 'success' || req.kind === 'verify') && r.relay && r.relay !== 'none' ? `delivery via ${r.relay}: ${r.reason}` : r.reason;
  for (const r of req.records) {
    // Postfix names the original recipient that cleanup or an alias rewrote (bounce_notify_util.c).
    const orig = r.original ? ` (expanded from <${r.original}>)` : '';
    push('', ...wrapLine(`<${r.address}>${orig}: ${reasonOf(r)}`));
  }
  push(
    '',
    `--${boundary}`,
    'Content-Description: Delivery report',
    `Content-Type: message/${utf8 ? 'global-' : ''}delivery-status`,
    ...(eightBit && utf8 ? ['Content-Transfer-Encoding: 8bit'] : []),
    '',
    `Reporting-MTA: dns; ${s.myhostname}`,
  );
  if (req.envId) push(`Original-Envelope-Id: ${req.envId}`);
  push(`X-${mailName}-Queue-ID: ${req.queueId}`);
  push(`X-${mailName}-Sender: ${utf8 && isUtf8Address(sender) ? 'utf-8' : 'rfc822'}; ${sender}`);
  if (req.arrival > 0) push(`Arrival-Date: ${mailDate(req.arrival)}`);
  for (const r of req.records) {
    push('', `Final-Recipient: ${utf8 && isUtf8Address(r.address) ? 'utf-8' : 'rfc822'}; ${r.address}`);
    // As bounce_notify_util.c: the DSN ORCPT as stored ("rfc822;a@b"), else the original recipient.
    if (r.orcpt) push(`Original-Recipient: ${r.orcpt}`);
    else if (r.original) push(`Original-Recipient: ${utf8 && isUtf8Address(r.original) ? 'utf-8' : 'rfc822'}; ${r.original}`);
    push(`Action: ${req.kind === 'failure' ? 'failed' : r.action}`, `Status: ${reportStatus(req.kind, r)}`);
    const { remoteMta, diagnostic } = remoteParts(r);
    if (remoteMta) push(...wrapLine(`Remote-MTA: ${remoteMta}`));
    push(...wrapLine(`Diagnostic-Code: ${diagnostic ?? `X-${mailName}; ${reasonOf(r)}`}`));
    if (req.kind === 'delay' && req.willRetryUntil) push(`Will-Retry-Until: ${mailDate(req.willRetryUntil)}`);
  }
  push(
    '',
    `--${boundary}`,
    `Content-Description: ${t.undelivered ? 'Undelivered ' : ''}${req.headersOnly ? 'Message Headers' : 'Message'}`,
    `Content-Type: ${utf8 ? (req.headersOnly ? 'message/global-headers' : 'message/global') : (req.headersOnly ? 'text/rfc822-headers' : 'message/rfc822')}`,
    ...(eightBit ? ['Content-Transfer-Encoding: 8bit'] : []),
    '',
    // Postfix's cleanup removed Return-Path:; bounce puts one back for header_checks.
    `Return-Path: <${sender}>`,
  );
  const head = Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
  // Headers only: up to the end of the header section, without the blank line after it.
  const returned = req.headersOnly ? withoutBlankEnd(original) : original;
  const needsEol = returned.length > 0 && returned[returned.length - 1] !== 0x0a;
  const tail = Buffer.from(`${needsEol ? '\r\n' : ''}\r\n--${boundary}--\r\n`, 'utf8');
  return Buffer.concat([head, returned, tail]);
}

/** The header section without the empty line that ends it. */
function withoutBlankEnd(headers: Buffer): Buffer {
  let end = headers.length;
  if (headers.subarray(end - 4, end).toString('latin1') === '\r\n\r\n') end -= 2;
  else if (headers.subarray(end - 2, end).toString('latin1') === '\n\n') end -= 1;
  return headers.subarray(0, end);
}
