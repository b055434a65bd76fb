/**
 * A message of Postactor's store written out as a Postfix queue file (record format:
 * src/queue/record.ts), so that `postcat -q ID` shows it as Postfix's postcat shows a queue
 * file, through the same renderer and with the same flags (-o offsets, -d types, -v).
 *
 * The records are those cleanup writes for the same message: the size record (content size,
 * data offset, recipient count, fixed-width so Postfix could update it in place), arrival time,
 * create_time, the client's log_* attributes, sender, DSN records, recipients (D once done),
 * then the message as text records (a line longer than line_length_limit's default 2048 in L
 * pieces, as cleanup cuts it), the extracted segment's marker and the end marker.
 *
 * `maildropQueueFileOf` does the same for a file of Postactor's maildrop (its own format,
 * src/maildrop/format.ts): the records Postfix's postdrop writes for the same submission —
 * no size record, arrival time, full name, sender, rewrite context, DSN records, recipients,
 * the text, the markers.
 */
import type { MaildropEnvelope } from '../maildrop/format.js';
import { recPut, REC } from './record.js';
import type { MessageMeta } from './types.js';

const NOTIFY_BITS: Record<string, number> = { NEVER: 1, SUCCESS: 2, FAILURE: 4, DELAY: 8 };
const LINE_PIECE = 2048;

/** Message text as text records: one N per line, a longer line as L pieces first. */
function textRecords(content: Buffer): Buffer[] {
  const text: Buffer[] = [];
  const lines = content.toString('latin1').replace(/\r\n/g, '\n').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    let rest = line;
    while (rest.length > LINE_PIECE) {
      text.push(recPut(REC.CONT, rest.slice(0, LINE_PIECE)));
      rest = rest.slice(LINE_PIECE);
    }
    text.push(recPut(REC.NORM, rest));
  }
  return text;
}

const notifyBits = (notify: readonly string[]) => String(notify.reduce((m, k) => m | (NOTIFY_BITS[k.toUpperCase()] ?? 0), 0));

export function maildropQueueFileOf(e: MaildropEnvelope, message: Buffer): Buffer {
  const recs: Buffer[] = [recPut(REC.TIME, `${Math.floor(e.arrival / 1000)} ${(e.arrival % 1000) * 1000}`)];
  if (e.fullName) recs.push(recPut(REC.FULL, e.fullName));
  recs.push(recPut(REC.FROM, e.sender));
  recs.push(recPut(REC.ATTR, `rewrite_context=${e.rewriteContext}`));
  if (e.envId) recs.push(recPut(REC.DSN_ENVID, e.envId));
  if (e.ret) recs.push(recPut(REC.DSN_RET, String(e.ret === 'FULL' ? 1 : 2)));
  for (const r of e.recipients) {
    if (e.notify?.length) recs.push(recPut(REC.DSN_NOTIFY, notifyBits(e.notify)));
    recs.push(recPut(REC.RCPT, r));
  }
  return Buffer.concat([...recs, recPut(REC.MESG, ''), ...textRecords(message), recPut(REC.XTRA, ''), recPut(REC.END, '')]);
}

export function queueFileOf(meta: MessageMeta, content: Buffer): Buffer {
  const env: Buffer[] = [];
  const arrival = Math.floor(meta.arrival / 1000);
  env.push(recPut(REC.TIME, `${arrival} ${(meta.arrival % 1000) * 1000}`));
  env.push(recPut(REC.ATTR, `create_time=${arrival}`));
  if (meta.client) {
    const c = meta.client;
    env.push(recPut(REC.ATTR, `log_client_name=${c.name}`));
    env.push(recPut(REC.ATTR, `log_client_address=${c.addr}`));
    env.push(recPut(REC.ATTR, `log_client_port=${c.port}`));
    env.push(recPut(REC.ATTR, `log_message_origin=${c.name}[${c.addr}]`));
    env.push(recPut(REC.ATTR, `log_helo_name=${c.helo}`));
    env.push(recPut(REC.ATTR, `log_protocol_name=${c.protocol}`));
  }
  env.push(recPut(REC.FROM, meta.sender));
  if (meta.envId) env.push(recPut(REC.DSN_ENVID, meta.envId));
  if (meta.ret) env.push(recPut(REC.DSN_RET, String(meta.ret === 'FULL' ? 1 : 2)));
  for (const r of meta.recipients) {
    if (r.orcpt) env.push(recPut(REC.DSN_ORCPT, r.orcpt));
    if (r.notify?.length) env.push(recPut(REC.DSN_NOTIFY, notifyBits(r.notify)));
    // Postfix's cleanup writes the original recipient before every recipient record.
    env.push(recPut(REC.ORCP, r.original ?? r.address));
    env.push(recPut(r.done ? REC.DONE : REC.RCPT, r.address));
  }
  env.push(recPut(REC.MESG, ''));

  const text = textRecords(content);
  const tail = [recPut(REC.XTRA, ''), recPut(REC.END, '')];

  const sizeLen = 2 + 6 * 15 + 5; // type, one length byte, six "%15ld" fields
  const dataOffset = sizeLen + env.reduce((n, b) => n + b.length, 0);
  const dataSize = text.reduce((n, b) => n + b.length, 0);
  const fields = [dataSize, dataOffset, meta.recipients.length, 0, meta.size, 0].map((n) => String(n).padStart(15, ' ')).join(' ');
  return Buffer.concat([recPut(REC.SIZE, fields), ...env, ...text, ...tail]);
}
