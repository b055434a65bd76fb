/**
 * XFORWARD (Postfix's XFORWARD_README; smtpd.c xforward_cmd): a client listed in
 * `smtpd_authorized_xforward_hosts` — typically the smtp client of a content filter's return
 * path — passes on where the mail it is about to send first came from. Unlike XCLIENT it changes
 * no access decision: the forwarded values are for the log ("client=localhost[127.0.0.1],
 * orig_queue_id=ID, orig_client=name[addr]"), the queue file (so the next XFORWARD, from our
 * smtp client, passes them on again) and nothing else; the Received header still names the host
 * that connected, as Postfix's does. They hold for one transaction: RSET, HELO/EHLO and the end
 * of the message forget them.
 *
 * Attributes: NAME ADDR PORT PROTO HELO IDENT SOURCE, each may be "[UNAVAILABLE]".
 */
import type { ForwardedClient } from '../../src/queue/types.js';
import { attributes, neuter, normalizeAddress, UNAVAILABLE, validHostname, validPort, type Reply } from '../../src/smtpd/xattrs.js';

/** What the XFORWARD handler needs from smtpd (index.ts). */
export interface XforwardHooks {
  /**
   * The host that connected (`addr`; not a client named by XCLIENT: Postfix decides this once
   * per connection) is in smtpd_authorized_xforward_hosts.
   */
  allowed(addr: string): boolean;
  /** EHLO announces XFORWARD: allowed, and not in smtpd_discard_ehlo_keywords. */
  announce(addr: string): boolean;
}

/** Postfix's smtpd_xforward_preset(): what is not forwarded reads "unknown". */
function preset(): ForwardedClient {
  return { name: 'unknown', addr: 'unknown', port: 'unknown', protocol: 'unknown' };
}

/** Whether any client attribute (NAME ADDR PORT PROTO HELO) was forwarded, and NAME/ADDR/PORT. */
interface Flags { client: boolean; namaddr: boolean }

/** Applies XFORWARD's arguments to `into` (a copy); the updated record or the reply for the first bad one. */
export function parseXforward(args: string[], into: ForwardedClient | null): { attrs: ForwardedClient; flags: Flags } | Reply {
  const list = attributes(args);
  if (!Array.isArray(list)) return list;
  const out: ForwardedClient = { ...(into ?? preset()) };
  const flags: Flags = { client: false, namaddr: false };
  const bad = (name: string, value: string): Reply => ({ code: 501, text: `5.5.4 Bad ${name} syntax: ${value}` });
  for (const { name, value } of list) {
    const unavailable = value === UNAVAILABLE;
    switch (name) {
      case 'NAME':
        if (unavailable) out.name = 'unknown';
        else if (!validHostname(neuter(value))) return bad(name, neuter(value));
        else out.name = neuter(value);
        flags.client = flags.namaddr = true;
        break;
      case 'ADDR': {
        if (unavailable) { out.addr = 'unknown'; flags.client = flags.namaddr = true; break; }
        const addr = normalizeAddress(neuter(value));
        if (addr === null) return bad(name, neuter(value));
        out.addr = addr;
        flags.client = flags.namaddr = true;
        break;
      }
      case 'PORT':
        if (unavailable) out.port = 'unknown';
        else if (!validPort(value)) return bad(name, value);
        else out.port = value;
        flags.client = flags.namaddr = true;
        break;
      case 'HELO':
        if (unavailable) delete out.helo;
        else out.helo = neuter(value);
        flags.client = true;
        break;
      case 'PROTO':
        if (unavailable) out.protocol = 'unknown';
        else if (value.length > 64) return bad(name, value);
        else out.protocol = neuter(value);
        flags.client = true;
        break;
      case 'IDENT':
        if (unavailable) delete out.ident;
        else out.ident = neuter(value);
        break;
      case 'SOURCE': {
        const v = unavailable ? 'LOCAL' : value.toUpperCase();
        if (v !== 'LOCAL' && v !== 'REMOTE') return bad(name, value);
        out.source = v;
        break;
      }
      default:
        return { code: 501, text: `5.5.4 Bad XFORWARD attribute name: ${name}` };
    }
  }
  return { attrs: out, flags };
}

/** The forwarded client as Postfix's log names it: name[addr] (name alone without an address). */
export function forwardedNamaddr(f: ForwardedClient): string {
  return f.addr !== 'unknown' ? `${f.name}[${f.addr}]` : f.name;
}

/** The ", orig_queue_id=…, orig_client=…" tail of the "client=" log line. */
export function clientLineTail(f: ForwardedClient | undefined): string {
  if (!f) return '';
  return (f.ident !== undefined ? `, orig_queue_id=${f.ident}` : '') + (f.forwardedClient ? `, orig_client=${forwardedNamaddr(f)}` : '');
}

type Handler = (this: Conn, command: Buffer | string, callback: () => void) => void;
type Conn = {
  _server: { options: { postactorXforward?: XforwardHooks } };
  session: { envelope: object & { mailFrom: unknown } } & object;
  /** smtp-server's address of the host that connected (XCLIENT changes remoteAddress only). */
  _originalRemoteAddress: string;
  send(code: number, data: unknown, context?: unknown): void;
};

/** The forwarded attributes of a session's current transaction (keyed by its envelope object). */
const forwarded = new WeakMap<object, ForwardedClient>();

/** What XFORWARD said for the session's current transaction, if anything. */
export function forwardedOf(session: { envelope: object }): ForwardedClient | undefined {
  return forwarded.get(session.envelope);
}

let installed = false;

/** Patches smtp-server's XFORWARD handler (once per thread). */
export function installXforward(proto: Record<string, unknown>): void {
  if (installed) return;
  installed = true;
  proto.handler_XFORWARD = function (this: Conn, command: Buffer | string, callback: () => void) {
    const reply = (code: number, text: string) => {
      this.send(code, text);
      callback();
    };
    const args = String(command).trim().split(/\s+/).slice(1);
    if (this.session.envelope.mailFrom) return reply(503, '5.5.1 Error: MAIL transaction in progress');
    if (args.length < 1) return reply(501, '5.5.4 Syntax: XFORWARD attribute=value...');
    if (!this._server.options.postactorXforward?.allowed(this._originalRemoteAddress)) return reply(550, '5.7.0 Error: insufficient authorization');
    const envelope = this.session.envelope;
    const r = parseXforward(args, forwarded.get(envelope) ?? null);
    if ('code' in r) return reply(r.code, r.text);
    if (r.flags.client) r.attrs.forwardedClient = true;
    forwarded.set(envelope, r.attrs);
    reply(250, '2.0.0 Ok');
  } satisfies Handler;
}

/** The EHLO keyword (Postfix's order of attributes). */
export const XFORWARD_KEYWORD = 'XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT';
