/**
 * XCLIENT (Postfix's XCLIENT_README; smtpd.c xclient_cmd): a client listed in
 * `smtpd_authorized_xclient_hosts` — a proxy, a test tool — says whom it speaks for, and smtpd
 * goes back to the greeting as if that client had connected: the name, address and port it
 * gave are the session's from now on (logs, restrictions, Received, the disconnect line), the
 * HELO name and login are reset unless given, the milters hear a new connection, and with
 * smtpd_delay_reject = no the client restrictions answer the new "220" greeting.
 *
 * Attributes: NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT (and REVERSE_NAME), each may be
 * "[UNAVAILABLE]" (NAME also "[TEMPUNAVAIL]"). Replies as Postfix's: "503 5.5.1 Error: MAIL
 * transaction in progress", "501 5.5.4 Syntax: XCLIENT attribute=value...", "550 5.7.0 Error:
 * insufficient authorization", "501 5.5.4 Bad NAME syntax: …", "501 5.5.4 Bad XCLIENT
 * attribute name: …". Once the client is no longer an authorized one (XCLIENT ADDR= another
 * host), XCLIENT and XFORWARD are refused and not announced, as Postfix re-checks the list.
 */
import type { PeerStatus } from '../../src/net/peername.js';
import { attributes, neuter, normalizeAddress, TEMPUNAVAIL, UNAVAILABLE, validHostname, validPort, type Reply } from '../../src/smtpd/xattrs.js';
import { XFORWARD_KEYWORD, type XforwardHooks } from './xforward.js';

/** The new client's attributes; absent = not given, null = given as unavailable. */
export interface XclientAttrs {
  name?: string;
  /** How NAME was given: a host name, [UNAVAILABLE] (perm) or [TEMPUNAVAIL] (temp). */
  nameStatus?: PeerStatus;
  reverseName?: string;
  reverseStatus?: PeerStatus;
  addr?: string;
  port?: number;
  helo?: string | null;
  proto?: 'SMTP' | 'ESMTP';
  login?: string | null;
  destAddr?: string;
  destPort?: number;
}

/** What the XCLIENT handler needs from smtpd (index.ts). */
export interface XclientHooks {
  /** The session's (current) client is in smtpd_authorized_xclient_hosts. */
  allowed(session: object): boolean;
  /** EHLO announces XCLIENT: allowed, and not in smtpd_discard_ehlo_keywords. */
  announce(session: object): boolean;
  /** Takes the new client and runs the connect-time checks; the refusal to answer instead of 220, or null. */
  apply(session: object, attrs: XclientAttrs): Promise<Reply | null>;
}

/** Parses XCLIENT's arguments as Postfix does; the attributes or the reply for the first bad one. */
export function parseXclient(args: string[]): XclientAttrs | Reply {
  const list = attributes(args);
  if (!Array.isArray(list)) return list;
  const out: XclientAttrs = {};
  const bad = (name: string, value: string): Reply => ({ code: 501, text: `5.5.4 Bad ${name} syntax: ${value}` });
  for (const { name, value } of list) {
    const unavailable = value === UNAVAILABLE;
    switch (name) {
      case 'NAME':
      case 'REVERSE_NAME':
        if (unavailable || value === TEMPUNAVAIL) {
          const status: PeerStatus = unavailable ? 'perm' : 'temp';
          if (name === 'NAME') { out.name = 'unknown'; out.nameStatus = status; }
          else { out.reverseName = 'unknown'; out.reverseStatus = status; }
        } else if (!validHostname(value)) return bad(name, value);
        else if (name === 'NAME') { out.name = value; out.nameStatus = 'ok'; }
        else { out.reverseName = value; out.reverseStatus = 'ok'; }
        break;
      case 'ADDR': {
        if (unavailable) { out.addr = 'unknown'; break; }
        const addr = normalizeAddress(neuter(value));
        if (addr === null) return bad(name, neuter(value));
        out.addr = addr;
        break;
      }
      case 'PORT':
        if (unavailable) { out.port = 0; break; }
        if (!validPort(value)) return bad(name, value);
        out.port = Number(value);
        break;
      case 'HELO':
        if (unavailable) { out.helo = null; break; }
        if (value.length > 255) return bad(name, value);
        out.helo = neuter(value);
        break;
      case 'PROTO': {
        const p = value.toUpperCase();
        if (p !== 'SMTP' && p !== 'ESMTP') return bad(name, value);
        out.proto = p;
        break;
      }
      case 'LOGIN':
        out.login = unavailable ? null : value;
        break;
      case 'DESTADDR': {
        if (unavailable) { out.destAddr = 'unknown'; break; }
        const addr = normalizeAddress(neuter(value));
        if (addr === null) return bad(name, neuter(value));
        out.destAddr = addr;
        break;
      }
      case 'DESTPORT':
        if (unavailable) { out.destPort = 0; break; }
        if (!validPort(value)) return bad(name, value);
        out.destPort = Number(value);
        break;
      default:
        return { code: 501, text: `5.5.4 Bad XCLIENT attribute name: ${name}` };
    }
  }
  return out;
}

type Handler = (this: Conn, command: Buffer | string, callback: () => void) => void;
type Conn = {
  _server: { options: { postactorXclient?: XclientHooks; postactorXforward?: XforwardHooks } };
  session: { envelope: { mailFrom: unknown }; user?: unknown; paEhloExtra?: string[]; remoteAddress: string; remotePort: number; localAddress: string; localPort: number } & object;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  _originalRemoteAddress: string;
  hostNameAppearsAs: string | false;
  openingCommand: string | false;
  send(code: number, data: unknown, context?: unknown): void;
  close(): void;
  _resetSession(): void;
};

let installed = false;

/** Patches smtp-server's XCLIENT handler (once per thread). */
export function installXclient(proto: Record<string, unknown>): void {
  if (installed) return;
  installed = true;
  proto.handler_XCLIENT = function (this: Conn, command: Buffer | string, callback: () => void) {
    const reply = (r: Reply) => {
      this.send(r.code, r.text);
      callback();
    };
    const args = String(command).trim().split(/\s+/).slice(1);
    if (this.session.envelope.mailFrom) return reply({ code: 503, text: '5.5.1 Error: MAIL transaction in progress' });
    if (args.length < 1) return reply({ code: 501, text: '5.5.4 Syntax: XCLIENT attribute=value...' });
    const hooks = this._server.options.postactorXclient;
    if (!hooks?.allowed(this.session)) return reply({ code: 550, text: '5.7.0 Error: insufficient authorization' });
    const attrs = parseXclient(args);
    if ('code' in attrs) return reply(attrs);
    // Back to the greeting: HELO (unless given), protocol and login reset, no transaction.
    this.hostNameAppearsAs = attrs.helo ?? false;
    this.openingCommand = attrs.proto === 'ESMTP' ? 'EHLO' : attrs.helo ? 'HELO' : false;
    if (attrs.login) this.session.user = { method: 'XCLIENT', username: attrs.login };
    else delete this.session.user;
    if (attrs.addr !== undefined) this.remoteAddress = attrs.addr;
    if (attrs.port !== undefined) this.remotePort = attrs.port;
    if (attrs.destAddr !== undefined) this.localAddress = attrs.destAddr;
    if (attrs.destPort !== undefined) this.localPort = attrs.destPort;
    this._resetSession();
    void hooks.apply(this.session, attrs).then((refusal) => {
      if (refusal) {
        this.send(refusal.code, refusal.text);
        this.close();
      } else {
        this.send(220, '', false); // dialect.ts: the smtpd_banner greeting
      }
      callback();
    });
  } satisfies Handler;

  // EHLO announces XCLIENT and XFORWARD to the clients that may use them (checked again after
  // XCLIENT named another client); sasl.ts adds AUTH, dialect.ts puts it first.
  const ehlo = proto.handler_EHLO as Handler;
  proto.handler_EHLO = function (this: Conn, command: Buffer | string, callback: () => void) {
    const o = this._server.options;
    const other = (this.session.paEhloExtra ?? []).filter((k) => !/^X(?:CLIENT|FORWARD) /.test(k));
    this.session.paEhloExtra = [
      ...other,
      ...(o.postactorXclient?.announce(this.session) ? [XCLIENT_KEYWORD] : []),
      ...(o.postactorXforward?.announce(this._originalRemoteAddress) ? [XFORWARD_KEYWORD] : []),
    ];
    ehlo.call(this, command, callback);
  } satisfies Handler;
}

/** The EHLO keyword (Postfix's order of attributes). */
export const XCLIENT_KEYWORD = 'XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT';
