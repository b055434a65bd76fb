/**
 * bounce: renders non-delivery notifications (a piscina pool; qmgr submits the result through
 * cleanup like any other mail). This is the simple RFC 3464 report of the walking skeleton —
 * the full bounce / defer / trace service (delay and success notices, DSN, templates) is issue 4.
 */
import { workerData } from 'piscina';
import { configFromJSON, type ConfigJSON } from '../../src/config/index.js';
import type { ActorWorkerData } from '../../src/runtime/wire.js';
import { rfc2822Date } from '../cleanup/headers.js';
import type { BounceReply, BounceRequest } from '../protocol.js';

let settings: { myhostname: string; mailName: string } | null = null;

function init(): { myhostname: string; mailName: string } {
  const config = configFromJSON((workerData as ActorWorkerData<ConfigJSON>).config);
  return { myhostname: config.get('myhostname'), mailName: config.get('mail_name') };
}

export default function render(req: BounceRequest): BounceReply {
  const s = (settings ??= init());
  const boundary = `${req.queueId}.${Date.now()}/${s.myhostname}`;
  const now = Date.now();
  const lines: string[] = [];
  const push = (...l: string[]) => lines.push(...l);
  push(
    `From: MAILER-DAEMON@${s.myhostname} (Mail Delivery System)`,
    'Subject: Undelivered Mail Returned to Sender',
    `To: ${req.sender}`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;`,
    `\tboundary="${boundary}"`,
    'Content-Transfer-Encoding: 8bit',
    `Date: ${rfc2822Date(now)}`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Description: Notification',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `This is the mail system at host ${s.myhostname}.`,
    '',
    "I'm sorry to have to inform you that your message could not",
    'be delivered to one or more recipients. It\'s attached below.',
    '',
    'For further assistance, please send mail to postmaster.',
    '',
    'If you do so, please include this problem report. You can',
    'delete your own text from the attached returned message.',
    '',
    `                   The ${s.mailName} program`,
    '',
  );
  for (const f of req.failed) push(`<${f.address}>: ${f.reason}`, '');
  push(
    `--${boundary}`,
    'Content-Description: Delivery report',
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${s.myhostname}`,
    `X-Postactor-Queue-ID: ${req.queueId}`,
    `X-Postactor-Sender: rfc822; ${req.sender}`,
    `Arrival-Date: ${rfc2822Date(req.arrival)}`,
    '',
  );
  for (const f of req.failed) {
    push(`Final-Recipient: rfc822; ${f.address}`);
    if (f.orcpt) push(`Original-Recipient: ${f.orcpt}`);
    push('Action: failed', `Status: ${f.dsn.startsWith('2') ? '5.0.0' : f.dsn}`);
    const remote = /^host (\S+)\[/.exec(f.reason);
    if (remote) push(`Remote-MTA: dns; ${remote[1]}`);
    const said = / said: (.*?)(?: \(in reply to .*\))?$/.exec(f.reason);
    push(said ? `Diagnostic-Code: smtp; ${said[1]}` : `Diagnostic-Code: X-Postactor; ${f.reason}`, '');
  }
  push(
    `--${boundary}`,
    `Content-Description: ${req.headersOnly ? 'Undelivered Message Headers' : 'Undelivered Message'}`,
    `Content-Type: ${req.headersOnly ? 'text/rfc822-headers' : 'message/rfc822'}`,
    'Content-Transfer-Encoding: 8bit',
    '',
  );
  const head = Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
  const original = Buffer.from(req.original.buffer, req.original.byteOffset, req.original.byteLength);
  const needsEol = original.length > 0 && original[original.length - 1] !== 0x0a;
  const tail = Buffer.from(`${needsEol ? '\r\n' : ''}\r\n--${boundary}--\r\n`, 'utf8');
  const content = Buffer.concat([head, original, tail]);
  return { content: new Uint8Array(content.buffer, content.byteOffset, content.byteLength) };
}
