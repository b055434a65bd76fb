/**
 * Header work of cleanup: find the end of the header section, note which headers are present,
 * count Received hops, and build the headers cleanup adds (Received, Message-ID, Date, From), in
 * Postfix's formats. Works on raw bytes: a 1 KiB message costs a few microseconds.
 */
import type { TlsInfo } from '../../src/queue/types.js';
import { mailDate } from '../../src/time/mail-date.js';

export interface HeaderScan {
  /** Offset where added headers go: the end of the header section (before the blank line). */
  end: number;
  /** True if a blank line separates headers and body (otherwise one must be inserted). */
  hasSeparator: boolean;
  present: Set<string>;
  received: number;
  messageId: string | null;
  /** Line ending the message uses: CRLF (smtpd) or LF. */
  eol: string;
}

const COLON = 0x3a;
const LF = 0x0a;
const CR = 0x0d;

/** Scans the header section of a message (RFC 5322 field names, folded lines). */
export function scanHeaders(msg: Uint8Array): HeaderScan {
  const present = new Set<string>();
  let received = 0;
  let messageId: string | null = null;
  let pos = 0;
  let eol = '\r\n';
  let first = true;
  let inHeader = false;
  while (pos < msg.length) {
    let lineEnd = msg.indexOf(LF, pos);
    if (lineEnd < 0) lineEnd = msg.length;
    const contentEnd = lineEnd > pos && msg[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
    if (first) {
      eol = contentEnd === lineEnd && lineEnd < msg.length ? '\n' : '\r\n';
      first = false;
    }
    if (contentEnd === pos) return { end: pos, hasSeparator: true, present, received, messageId, eol };
    const c = msg[pos]!;
    if ((c === 0x20 || c === 0x09) && inHeader) {
      pos = lineEnd + 1;
      continue;
    }
    // A field name: printable ASCII except ':' then ':'.
    let i = pos;
    while (i < contentEnd && msg[i]! > 0x20 && msg[i]! < 0x7f && msg[i] !== COLON) i++;
    if (i === pos || i >= contentEnd || msg[i] !== COLON) return { end: pos, hasSeparator: false, present, received, messageId, eol };
    inHeader = true;
    const name = Buffer.from(msg.buffer, msg.byteOffset + pos, i - pos).toString('latin1').toLowerCase();
    present.add(name);
    if (name === 'received') received++;
    else if (name === 'message-id' && messageId === null) {
      messageId = Buffer.from(msg.buffer, msg.byteOffset + i + 1, contentEnd - i - 1).toString('latin1').trim();
    }
    pos = lineEnd + 1;
  }
  return { end: msg.length, hasSeparator: false, present, received, messageId, eol };
}

export interface ReceivedInfo {
  helo: string;
  clientName: string;
  clientAddr: string;
  protocol: string;
  myhostname: string;
  mailName: string;
  queueId: string;
  /** The single recipient, or undefined when there are several (Postfix names one only). */
  recipient?: string;
  date: number;
  /** The smtpd TLS session: "with ESMTPS", and with smtpd_tls_received_header its "(using …)" lines. */
  tls?: TlsInfo;
  /** The SASL login of an ESMTP client: the protocol becomes ESMTPA (RFC 3848). */
  saslUsername?: string;
  /** Put "(Authenticated sender: user)" in (smtpd_sasl_authenticated_header). */
  authenticatedHeader?: boolean;
}

/** Postfix smtpd's Received header (three folded lines). */
export function receivedHeader(r: ReceivedInfo, eol: string): string {
  const addr = r.clientAddr.includes(':') ? `IPv6:${r.clientAddr}` : r.clientAddr;
  // Without HELO/EHLO the client's name stands in for the HELO name, as in Postfix's smtpd.
  const from = `from ${r.helo || r.clientName} (${r.clientName} [${addr}])`;
  // As Postfix folds it: "for <rcpt>; date" on the third line with one recipient, else the
  // date alone on the third line.
  const tail = r.recipient ? `${eol}\tfor <${r.recipient}>; ${mailDate(r.date)}` : `;${eol}\t${mailDate(r.date)}`;
  // RFC 3848 is defined for ESMTP only: ESMTPS, ESMTPA, ESMTPSA (whatever
  // smtpd_tls_received_header says).
  const protocol = r.protocol === 'ESMTP' ? `${r.protocol}${r.tls ? 'S' : ''}${r.saslUsername ? 'A' : ''}` : r.protocol;
  const tls = r.tls?.received ? tlsLines(r.tls, eol) : '';
  const auth = r.authenticatedHeader && r.saslUsername ? `\t(Authenticated sender: ${commentSafe(r.saslUsername)})${eol}` : '';
  return `Received: ${from}${eol}${tls}${auth}\tby ${r.myhostname} (${r.mailName}) with ${protocol} id ${r.queueId}${tail}${eol}`;
}

/** smtpd_tls_received_header = yes: Postfix's "(using …)" block and its client-certificate line. */
function tlsLines(t: TlsInfo, eol: string): string {
  const using = `\t(using ${t.protocol} with cipher ${t.cipher} (${t.usebits}/${t.algbits} bits)`;
  // Without a key-exchange name (which Node does not give a server), the signature goes on a line of its own.
  const head = t.signature ? `${using}${eol}\t${t.signature})` : `${using})`;
  const ccert = t.ccert
    ? `(Client CN "${commentSafe(t.ccert.cn)}", Issuer "${commentSafe(t.ccert.issuer)}" (${t.ccert.trusted ? 'verified OK' : 'not verified'}))`
    : t.ccertAsked ? '(Client did not present a certificate)' : '(No client certificate requested)';
  return `${head}${eol}\t${ccert}${eol}`;
}

/**
 * Postfix's comment_sanitize(): text inside a Received comment is printable ASCII, without
 * backslashes or unbalanced parentheses.
 */
export function commentSafe(text: string): string {
  let depth = 0;
  let out = '';
  for (const ch of text) {
    if (!/^[\x20-\x7e]$/.test(ch) || ch === '\\') out += '?';
    else if (ch === '(') { depth++; out += ch; }
    else if (ch === ')') {
      if (depth > 0) { depth--; out += ch; } else out += '?';
    } else out += ch;
  }
  return out + ')'.repeat(depth);
}

/**
 * Removes the named header fields (lowercase names, with their folded lines) from the header
 * section msg[0:end]. Postfix's cleanup drops Bcc, Resent-Bcc, Return-Path and Content-Length
 * (header_opts HDR_OPT_DROP). Returns the message and the new end of the header section.
 */
export function dropHeaders(msg: Uint8Array, end: number, names: ReadonlySet<string>): { msg: Uint8Array; end: number } {
  const keep: [number, number][] = [];
  let pos = 0;
  let dropping = false;
  let runStart = 0;
  while (pos < end) {
    let lineEnd = msg.indexOf(LF, pos);
    lineEnd = lineEnd < 0 || lineEnd >= end ? end : lineEnd + 1;
    const c = msg[pos]!;
    if (!(c === 0x20 || c === 0x09)) {
      let i = pos;
      while (i < lineEnd && msg[i] !== COLON) i++;
      const name = Buffer.from(msg.buffer, msg.byteOffset + pos, i - pos).toString('latin1').toLowerCase();
      const drop = names.has(name);
      if (drop && !dropping) keep.push([runStart, pos]);
      if (!drop && dropping) runStart = pos;
      dropping = drop;
    }
    pos = lineEnd;
  }
  if (keep.length === 0 && !dropping) return { msg, end };
  if (!dropping) keep.push([runStart, end]);
  const kept = keep.reduce((n, [a, b]) => n + b - a, 0);
  const out = new Uint8Array(kept + msg.length - end);
  let o = 0;
  for (const [a, b] of keep) {
    out.set(msg.subarray(a, b), o);
    o += b - a;
  }
  out.set(msg.subarray(end), o);
  return { msg: out, end: kept };
}
