/**
 * The smtp/lmtp client's XFORWARD (`smtp_send_xforward_command`, `lmtp_send_xforward_command`;
 * Postfix's smtp_proto.c): when the next hop announces XFORWARD — an after-queue content filter
 * on its way back into the MTA — the client says, before MAIL FROM, where the message first came
 * from, so the filter's return smtpd logs the original client ("orig_client=…") and its queue
 * ID ("orig_queue_id=…") instead of only the filter's address.
 *
 * As Postfix: two commands, "XFORWARD NAME= ADDR= PORT=" and "XFORWARD PROTO= HELO= IDENT=
 * SOURCE=", each with only the attributes the server announced and that are known (a client
 * name, address, port or protocol of "unknown" is left out); a command with nothing to say is
 * not sent; values are xtext. Local submissions have no client attributes, so only IDENT and
 * SOURCE go. A non-2xx reply is logged as a warning and the delivery goes on.
 */
import type { MessageMeta } from '../queue/types.js';

/** What one delivery forwards (from the queue file: qmgr puts it in the delivery request). */
export interface XforwardAttrs {
  name?: string;
  addr?: string;
  port?: string;
  proto?: string;
  helo?: string;
  /** The queue ID at the first MTA: forwarded IDENT, else this message's queue ID. */
  ident: string;
  source: 'LOCAL' | 'REMOTE';
}

/** The XFORWARD attributes of a queued message: the forwarded client if it came with one, else its own client. */
export function xforwardAttrs(meta: Pick<MessageMeta, 'queueId' | 'client'>): XforwardAttrs {
  const c = meta.client;
  const f = c?.forwarded;
  const source = f?.source ?? (!c || c.rewriteLocal ? 'LOCAL' : 'REMOTE');
  const ident = f?.ident ?? meta.queueId;
  if (f?.forwardedClient) {
    return { name: f.name, addr: f.addr, port: f.port, proto: f.protocol, ...(f.helo !== undefined ? { helo: f.helo } : {}), ident, source };
  }
  if (!c || c.protocol === 'LOCAL') return { ident, source };
  return { name: c.name, addr: c.addr, port: String(c.port), proto: c.protocol, ...(c.helo ? { helo: c.helo } : {}), ident, source };
}

/** The XFORWARD keyword of an EHLO reply line, or null for another line. */
export function xforwardKeywords(line: string): Set<string> | null {
  const words = line.toUpperCase().split(/\s+/);
  return words[0] === 'XFORWARD' ? new Set(words.slice(1)) : null;
}

/** The commands to send before MAIL FROM, each with the name Postfix's warnings give it. */
export function xforwardCommands(offered: ReadonlySet<string>, a: XforwardAttrs): { line: string; what: string }[] {
  const known = (v: string | undefined): v is string => v !== undefined && v !== '' && v.toLowerCase() !== 'unknown';
  const avail = (v: string | undefined): v is string => v !== undefined;
  const part = (name: string, value: string | undefined, ok: (v: string | undefined) => v is string) => (offered.has(name) && ok(value) ? ` ${name}=${xtextQuote(value)}` : '');
  const out: { line: string; what: string }[] = [];
  const nameAddr = part('NAME', a.name, known) + part('ADDR', a.addr, known) + part('PORT', a.port, known);
  if (nameAddr) out.push({ line: `XFORWARD${nameAddr}`, what: 'XFORWARD name/address command' });
  const protoHelo = part('PROTO', a.proto, known) + part('HELO', a.helo, avail) + part('IDENT', a.ident, avail) + part('SOURCE', a.source, avail);
  if (protoHelo) out.push({ line: `XFORWARD${protoHelo}`, what: 'XFORWARD helo/protocol command' });
  return out;
}

/** Postfix's xtext_quote() ('+', '=' and bytes outside 33..126 as "+XX"); here, not from client.ts, so qmgr need not load the client. */
function xtextQuote(value: string): string {
  let out = '';
  for (const ch of Buffer.from(value, 'utf8')) {
    out += ch < 33 || ch > 126 || ch === 0x2b || ch === 0x3d ? `+${ch.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(ch);
  }
  return out;
}
