/**
 * The message as pipe(8) hands it to the command (Postfix's mail_copy): optional envelope
 * lines first — F "From sender  date", R "Return-Path: <sender>", O "X-Original-To: rcpt",
 * D "Delivered-To: rcpt" — then the content with each line ended by eol= (default "\n"),
 * "." doubled at line start with flag ".", "From " quoted as ">From " with flag ">", and a
 * blank line added at the end with flag B.
 * pipe(8), local(8) and virtual(8) all write messages this way, so it lives here, as Postfix's
 * mail_copy.c lives in src/global.
 */
import { quoteLocal } from '../address/quote.js';

export interface CopyOptions {
  flags: Set<string>;
  eol: string;
  /** Envelope sender; '' is the null sender. */
  sender: string;
  originalRecipient: string;
  deliveredTo: string;
  now: Date;
}

/**
 * enable_original_recipient: without it, no X-Original-To (mail_copy.c reads Postfix's global
 * var_enable_orcpt). A global of the agent's thread as in Postfix, set once at its start-up.
 */
let originalRecipientHeader = true;
export function setEnableOriginalRecipient(on: boolean): void {
  originalRecipientHeader = on;
}

/** asctime()'s first 24 characters, e.g. "Wed Nov 25 02:07:33 2026" (local time). */
function asctime(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${d.getFullYear()}`;
}

/** "From " at the start of a line, as bytes. */
const FROM = Buffer.from('From ', 'latin1');

/**
 * The copy in one buffer: a first pass over the lines measures it, a second copies each line
 * into place — no Buffer per line (a delivery agent copies every message it delivers, and the
 * garbage of a buffer per line cost more than the copying).
 */
export function mailCopy(content: Uint8Array, o: CopyOptions): Buffer {
  const src = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const eol = Buffer.from(o.eol, 'latin1');
  const heads: Buffer[] = [];
  const head = (s: string) => heads.push(Buffer.from(s, 'utf8'), eol);
  const sender = o.sender ? quoteLocal(o.sender) : '';
  if (o.flags.has('F')) head(`From ${sender || 'MAILER-DAEMON'}  ${asctime(o.now)}`);
  if (o.flags.has('R')) head(`Return-Path: <${sender}>`);
  if (o.flags.has('O') && originalRecipientHeader && o.originalRecipient) head(`X-Original-To: ${quoteLocal(o.originalRecipient)}`);
  if (o.flags.has('D')) head(`Delivered-To: ${quoteLocal(o.deliveredTo)}`);
  const dot = o.flags.has('.');
  const from = o.flags.has('>');
  const blank = o.flags.has('B');
  // Each line: [start, end without CR LF, prefix byte or -1].
  const lines: number[] = [];
  let size = heads.reduce((n, b) => n + b.length, 0) + (blank ? eol.length : 0);
  let pos = 0;
  while (pos < src.length) {
    let nl = src.indexOf(10, pos);
    const end = nl < 0 ? src.length : nl;
    const lineEnd = end > pos && src[end - 1] === 13 ? end - 1 : end;
    const prefix = dot && src[pos] === 0x2e ? 0x2e : from && lineEnd - pos >= 5 && src.compare(FROM, 0, 5, pos, pos + 5) === 0 ? 0x3e : -1;
    lines.push(pos, lineEnd, prefix);
    size += lineEnd - pos + eol.length + (prefix >= 0 ? 1 : 0);
    if (nl < 0) nl = src.length;
    pos = nl + 1;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const b of heads) at += b.copy(out, at);
  for (let k = 0; k < lines.length; k += 3) {
    if (lines[k + 2]! >= 0) out[at++] = lines[k + 2]!;
    at += src.copy(out, at, lines[k]!, lines[k + 1]!);
    at += eol.copy(out, at);
  }
  if (blank) at += eol.copy(out, at);
  return out;
}
