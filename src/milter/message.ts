/**
 * A message as milters see and edit it: the header fields (name, and the value after the colon
 * with folded lines joined by "\n") and the body (CRLF lines). Edits are applied as Postfix's
 * cleanup applies them (cleanup_milter.c): add appends at the end of the headers, insert puts
 * the field before the index-th one (0 = first), change and delete address the index-th field
 * of that name (1-based, names compared without case), an empty value deletes. A value that
 * does not start with white space gets one space after the colon.
 */
import type { Edit } from './milter.js';

export interface MilterMessage {
  headers: [string, string][];
  body: Buffer;
}

/** Splits CRLF content into header fields and the body (the blank separator line is dropped). */
export function parseMessage(content: Uint8Array): MilterMessage {
  const buf = Buffer.from(content.buffer, content.byteOffset, content.length);
  const headers: [string, string][] = [];
  let pos = 0;
  let current: [string, string] | null = null;
  while (pos < buf.length) {
    let end = buf.indexOf('\n', pos);
    if (end < 0) end = buf.length;
    const line = buf.toString('latin1', pos, end).replace(/\r$/, '');
    if (line === '') { pos = end + 1; break; }
    if ((line[0] === ' ' || line[0] === '\t') && current) current[1] += `\n${line}`;
    else {
      const colon = line.indexOf(':');
      if (colon <= 0 || /[\s]/.test(line.slice(0, colon).trimEnd()) ) break; // not a header: the body starts here
      current = [line.slice(0, colon).trimEnd(), line.slice(colon + 1)];
      headers.push(current);
    }
    pos = end + 1;
  }
  return { headers, body: buf.subarray(Math.min(pos, buf.length)) };
}

/** Header fields and body back to CRLF content. */
export function formatMessage(m: MilterMessage): Buffer {
  const head = m.headers.map(([n, v]) => `${n}:${v.replace(/\r?\n/g, '\r\n')}\r\n`).join('');
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), m.body]);
}

const spaced = (v: string): string => (/^[ \t]/.test(v) ? v : ` ${v}`);

/** Envelope edits collected while the header/body edits are applied. */
export interface EnvelopeEdits {
  sender: string | null;
  /** RET= and ENVID= of a change-sender request (the only ESMTP arguments Postfix keeps there). */
  ret?: 'FULL' | 'HDRS';
  envId?: string;
  add: AddedRecipient[];
  del: string[];
  quarantine: string | null;
}

/** A recipient a milter added, with the DSN settings of its ESMTP arguments (NOTIFY=, ORCPT=). */
export interface AddedRecipient { recipient: string; args: string; notify?: string[]; orcpt?: string }

const NOTIFY = new Set(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);

/** xtext (RFC 3461): "+XX" stands for one byte. */
function xtextDecode(v: string): string | null {
  if (/\+(?![0-9A-F]{2})/.test(v)) return null;
  const out = v.replace(/\+([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  return /^[\x21-\x7e]*$/.test(out) ? out : null;
}

/**
 * SMFI_CHGFROM's ESMTP arguments, as Postfix's cleanup_chg_from takes them: RET= and ENVID=,
 * anything else (or a bad value) ignored with a warning.
 */
function senderArgs(args: string, env: EnvelopeEdits, warn: (t: string) => void): void {
  for (const arg of args.split(' ').filter(Boolean)) {
    const upper = arg.toUpperCase();
    if (upper.startsWith('RET=') && (upper.slice(4) === 'FULL' || upper.slice(4) === 'HDRS')) env.ret = upper.slice(4) as 'FULL' | 'HDRS';
    else if (upper.startsWith('ENVID=') && xtextDecode(arg.slice(6)) !== null) env.envId = xtextDecode(arg.slice(6))!;
    else warn(`Ignoring bad ESMTP parameter "${arg}" in SMFI_CHGFROM request`);
  }
}

/** SMFI_ADDRCPT_PAR's ESMTP arguments, as cleanup_add_rcpt_par: NOTIFY= and ORCPT=, others ignored. */
function recipientArgs(args: string, r: AddedRecipient, warn: (t: string) => void): void {
  for (const arg of args.split(' ').filter(Boolean)) {
    const upper = arg.toUpperCase();
    if (upper.startsWith('NOTIFY=')) {
      const list = upper.slice(7).split(',');
      const ok = r.notify === undefined && list.every((n) => NOTIFY.has(n)) && (!list.includes('NEVER') || list.length === 1);
      if (ok) r.notify = list;
      else warn(`Bad NOTIFY parameter from Milter or header/body_checks: "${arg.slice(0, 100)}"`);
    } else if (upper.startsWith('ORCPT=')) {
      const v = arg.slice(6);
      const semi = v.indexOf(';');
      const decoded = semi > 0 ? xtextDecode(v.slice(semi + 1)) : null;
      if (r.orcpt === undefined && decoded !== null) r.orcpt = `${v.slice(0, semi)};${decoded}`;
      else warn(`Bad ORCPT parameter from Milter or header/body_checks: "${arg.slice(0, 100)}"`);
    } else {
      warn(`ignoring ESMTP argument from Milter or header/body_checks: "${arg.slice(0, 100)}"`);
    }
  }
}

/** Applies one milter's edits to the message (in place) and collects the envelope edits. */
export function applyEdits(m: MilterMessage, edits: Edit[], env: EnvelopeEdits, warn: (t: string) => void = () => undefined): void {
  for (const e of edits) {
    switch (e.op) {
      case 'addheader': m.headers.push([e.name, spaced(e.value)]); break;
      case 'insheader': m.headers.splice(Math.min(e.index, m.headers.length), 0, [e.name, spaced(e.value)]); break;
      case 'chgheader': {
        let n = 0;
        const i = m.headers.findIndex(([name]) => name.toLowerCase() === e.name.toLowerCase() && ++n === e.index);
        if (e.value === '') { if (i >= 0) m.headers.splice(i, 1); }
        else if (i >= 0) m.headers[i] = [m.headers[i]![0], spaced(e.value)];
        else m.headers.push([e.name, spaced(e.value)]); // Postfix: a missing field is added
        break;
      }
      case 'chgfrom': env.sender = bare(e.sender); senderArgs(e.args, env, warn); break;
      case 'addrcpt': {
        const r: AddedRecipient = { recipient: bare(e.recipient), args: e.args };
        recipientArgs(e.args, r, warn);
        env.add.push(r);
        break;
      }
      case 'delrcpt': env.del.push(bare(e.recipient)); break;
      case 'replbody': m.body = e.body; break;
      case 'quarantine': env.quarantine = e.reason; break;
    }
  }
}

/** "<a@b>" → "a@b". */
function bare(addr: string): string {
  const a = addr.trim();
  return a.startsWith('<') && a.endsWith('>') ? a.slice(1, -1) : a;
}
