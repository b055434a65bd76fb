/**
 * Reads a delivery status notification back with mailparser (an independent MIME parser) and
 * splits its message/delivery-status part into the per-message block and one block per recipient
 * (RFC 3464 §2.1: blocks separated by blank lines, header-style fields, folded lines joined).
 */
import { simpleParser, type ParsedMail } from 'mailparser';

export interface ParsedDsn {
  mail: ParsedMail;
  subject: string;
  /** The human-readable part. */
  text: string;
  /** Field names lower-cased. */
  perMessage: Map<string, string>;
  recipients: Map<string, string>[];
  /** The returned message part: its content type and bytes (undefined when there is none). */
  original?: { contentType: string; content: Buffer };
}

export function dsnFields(text: string): Map<string, string>[] {
  const blocks: Map<string, string>[] = [];
  for (const block of text.replace(/\r\n/g, '\n').split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last: string | null = null;
    for (const line of block.split('\n')) {
      if (/^[ \t]/.test(line) && last) {
        fields.set(last, `${fields.get(last)} ${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields.set(last, m[2]!);
    }
    if (fields.size) blocks.push(fields);
  }
  return blocks;
}

export async function parseDsn(raw: Buffer): Promise<ParsedDsn> {
  const mail = await simpleParser(raw, { keepDeliveryStatus: true } as Parameters<typeof simpleParser>[1]);
  // message/global-delivery-status when the original requested SMTPUTF8 (RFC 6533), as Postfix's.
  const status = mail.attachments.find((a) => a.contentType === 'message/delivery-status' || a.contentType === 'message/global-delivery-status');
  if (!status) throw new Error('no message/delivery-status part');
  const [perMessage, ...recipients] = dsnFields(status.content.toString('utf8'));
  const orig = mail.attachments.find((a) => ['message/rfc822', 'text/rfc822-headers', 'message/global', 'message/global-headers'].includes(a.contentType));
  return {
    mail,
    subject: mail.subject ?? '',
    text: mail.text ?? '',
    perMessage: perMessage ?? new Map(),
    recipients,
    ...(orig ? { original: { contentType: orig.contentType, content: orig.content } } : {}),
  };
}
