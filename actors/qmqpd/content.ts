/**
 * The message content as qmqpd hands it to cleanup: its own Received header first (Postfix's
 * qmqpd writes it; cleanup adds none for QMQP), then the QMQP message with its LF lines made
 * CRLF (the queue holds messages as smtpd receives them). As Postfix's qmqpd_write_content():
 * a leading UNIX "From " line becomes "X-Mailbox-Line: From …", and content that starts with
 * white space gets an empty line first, so it is not read as part of the Received header.
 */
import { mailDate } from '../../src/time/mail-date.js';
import { quoteLocal } from '../../src/address/quote.js';

export interface ReceivedFacts {
  clientName: string;
  clientAddr: string;
  myhostname: string;
  mailName: string;
  queueId: string;
  recipients: readonly string[];
  arrival: number;
}

/**
 * Postfix's qmqpd Received header. The recipient is named only when there is one (naming
 * several would reveal Bcc recipients); the address in brackets is the RFC 2821 form
 * (IPv6:… for IPv6).
 */
export function qmqpReceivedHeader(r: ReceivedFacts): string {
  const rfcAddr = r.clientAddr.includes(':') ? `IPv6:${r.clientAddr}` : r.clientAddr;
  let h = `Received: from ${r.clientName} (${r.clientName} [${rfcAddr}])\r\n`;
  if (r.recipients.length === 1) {
    h += `\tby ${r.myhostname} (${r.mailName}) with QMQP id ${r.queueId}\r\n`;
    h += `\tfor <${quoteLocal(r.recipients[0]!)}>; ${mailDate(r.arrival)}\r\n`;
  } else {
    h += `\tby ${r.myhostname} (${r.mailName}) with QMQP\r\n`;
    h += `\tid ${r.queueId}; ${mailDate(r.arrival)}\r\n`;
  }
  return h;
}

const FROM_LINE = /^>*From /;

/** Received header + the message, CRLF lines, as one owned buffer (transferable to cleanup). */
export function queueContent(received: string, message: Buffer): Uint8Array {
  // QMQP lines end in LF; a CRLF already there stays one line end.
  let body = Buffer.from(message.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
  let prefix = received;
  const firstEnd = body.indexOf('\r\n');
  const first = body.subarray(0, firstEnd < 0 ? body.length : firstEnd).toString('latin1');
  if (FROM_LINE.test(first)) {
    prefix += `X-Mailbox-Line: ${first}\r\n`;
    body = firstEnd < 0 ? Buffer.alloc(0) : body.subarray(firstEnd + 2);
  }
  if (body.length > 0 && (body[0] === 0x20 || body[0] === 0x09)) prefix += '\r\n';
  const head = Buffer.from(prefix, 'latin1');
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}
