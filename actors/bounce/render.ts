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
  mailName: string;
  /** delay_warning_time and maximal_queue_lifetime in seconds, for the delay template. */
  delayWarningTime: number;
  maximalQueueLifetime: number;
}

interface Template {
  subject: string;
  postmasterSubject: string;
  body: (s: NoticeSettings) => string[];
  /** Content-Description of the returned message (full / headers). */
  original: [full: string, headers: string];
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
      `                   The ${s.mailName} program`,
    ],
    original: ['Undelivered Message', 'Undelivered Message Headers'],
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
      `                   The ${s.mailName} program`,
    ],
    original: ['Delayed Message', 'Delayed Message Headers'],
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
      `                   The ${s.mailName} program`,
    ],
    original: ['Delivered Message', 'Delivered Message Headers'],
  },
  verify: {
    subject: 'Mail Delivery Status Report',
    postmasterSubject: 'Mail Delivery Status Report',
    body: (s) => [
      `This is the mail system at host ${s.myhostname}.`,
      '',
      'Enclosed is the mail delivery report that you requested.',
      '',
      `                   The ${s.mailName} program`,
    ],
    original: ['Message', 'Message Headers'],
  },
};

/** A duration in whole units (Postfix rounds the template's *_hours / *_days values down, at least 1). */
function units(seconds: number, unit: number): number {
  return Math.max(1, Math.floor(seconds / unit));
}

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
  const boundary = `${req.queueId}.${now}/${s.myhostname}`;
  const lines: string[] = [];
  const push = (...l: string[]) => lines.push(...l);
  push(
    `From: MAILER-DAEMON@${s.myhostname} (Mail Delivery System)`,
    `Subject: ${req.postmaster ? t.postmasterSubject : t.subject}`,
    `To: ${req.to}`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    `\tboundary="${boundary}"`,
    'Content-Transfer-Encoding: 8bit',
    `Date: ${mailDate(now)}`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Description: Notification',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    ...t.body(s),
    '',
  );
  for (const r of req.records) {
    // Postfix names the original recipient that cleanup or an alias rewrote (bounce_notify_util.c).
    const orig = r.original ? ` (expanded from <${r.original}>)` : '';
    push(`<${r.address}>${orig}: ${r.reason}`, '');
  }
  push(
    `--${boundary}`,
    'Content-Description: Delivery report',
    'Content-Type: message/delivery-status',
    '',
  );
  if (req.envId) push(`Original-Envelope-Id: ${req.envId}`);
  push(
    `Reporting-MTA: dns; ${s.myhostname}`,
    `X-Postactor-Queue-ID: ${req.queueId}`,
    `X-Postactor-Sender: rfc822; ${req.sender}`,
    `Arrival-Date: ${mailDate(req.arrival)}`,
    '',
  );
  for (const r of req.records) {
    push(`Final-Recipient: rfc822; ${r.address}`);
    // As bounce_notify_util.c: the DSN ORCPT as stored ("rfc822;a@b"), else the original recipient.
    if (r.orcpt) push(`Original-Recipient: ${r.orcpt}`);
    else if (r.original) push(`Original-Recipient: rfc822; ${r.original}`);
    push(`Action: ${r.action}`, `Status: ${reportStatus(req.kind, r)}`);
    const { remoteMta, diagnostic } = remoteParts(r);
    if (remoteMta) push(`Remote-MTA: ${remoteMta}`);
    push(`Diagnostic-Code: ${diagnostic ?? `X-Postactor; ${r.reason}`}`);
    if (r.action === 'delayed' && req.willRetryUntil) push(`Will-Retry-Until: ${mailDate(req.willRetryUntil)}`);
    push('');
  }
  push(
    `--${boundary}`,
    `Content-Description: ${req.headersOnly ? t.original[1] : t.original[0]}`,
    `Content-Type: ${req.headersOnly ? 'text/rfc822-headers' : 'message/rfc822'}`,
    'Content-Transfer-Encoding: 8bit',
    '',
  );
  const head = Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
  const original = Buffer.from(req.original.buffer, req.original.byteOffset, req.original.byteLength);
  const needsEol = original.length > 0 && original[original.length - 1] !== 0x0a;
  const tail = Buffer.from(`${needsEol ? '\r\n' : ''}\r\n--${boundary}--\r\n`, 'utf8');
  return Buffer.concat([head, original, tail]);
}
