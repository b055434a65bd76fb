/**
 * ESMTP client for the smtp delivery agent (Postfix's smtp(8) protocol engine).
 *
 * deliver() tries the given hosts in order (the MX list from NextHopResolver), reusing an
 * idle cached connection to (addr, port) when there is one, and reports one reply per
 * recipient. With PIPELINING, MAIL, all RCPTs and DATA go out in one write (RFC 2920) and
 * the replies are read back in order.
 *
 * Outcomes (DeliveryResult.kind):
 *   sent             the session worked; per-recipient results say who was accepted
 *                    (also when every RCPT was rejected: those replies are the outcome).
 *   site-failure     the host is to blame (connect, greeting, EHLO/HELO, lost connection or
 *                    timeout during the transaction): every recipient gets a synthesized 4xx
 *                    reply (4.4.1 connect, 4.4.2 lost/timed out) and the next host is tried.
 *                    A 5xx greeting counts as 4xx (Postfix smtp_skip_5xx_greeting=yes).
 *                    Once the final "." was written the next host is NOT tried (the message
 *                    may already have been delivered).
 *   message-failure  MAIL FROM or DATA (or the end-of-data reply) was rejected. A MAIL
 *                    rejection goes to every recipient; a DATA rejection goes to the
 *                    recipients the server had accepted, the rejected ones keep their
 *                    RCPT reply.
 *
 * Connection cache: after a completed transaction the connection is parked idle for
 * idleTimeout ms (smtp_connection_cache_time_limit, default 2 s); it is not parked again once
 * it has carried reuseLimit transactions (smtp_connection_reuse_count_limit, default 0: no
 * limit) or is reuseTimeLimit ms old (smtp_connection_reuse_time_limit, default 300 s), as in
 * Postfix: closing a busy connection every N transactions only to open a new one races with
 * servers that count connections (a 421 to the new one while the old one is still closing).
 * Several connections per (addr, port) may be parked. A connection that errors, times out or talks while idle is destroyed, never
 * parked. A parked connection that turns out dead on reuse is retried once on a fresh one.
 *
 * LMTP mode (options.lmtp, RFC 2033, for the lmtp delivery agent): LHLO instead of EHLO (no
 * HELO fallback), and after the end of DATA one reply per accepted recipient, in RCPT order,
 * each recipient's own outcome. A host with `path` is a UNIX-domain socket (its addr is the path,
 * for "host[path]" in log texts).
 *
 * TLS (deliver()'s `tls` argument, the destination's policy from tls-policy.ts; the handshake
 * in tls.ts): STARTTLS when the server offers it and the level is may or above, then EHLO
 * again; at levels above may a server without STARTTLS gets 4.7.4 "TLS is required, but was
 * not offered by host …", a refused STARTTLS "TLS is required, but host … refused to start
 * TLS: …", a certificate that does not match 4.7.5 "Server certificate not verified" (after a
 * polite QUIT). A failed handshake is 4.7.5 "Cannot start TLS: handshake failure", and at
 * level may the same address is retried at once in plaintext — but only when the message
 * has waited at least $minimal_backoff_time (`plaintextFallback`), so a first attempt moves
 * on to the next MX instead (Postfix's PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE). Wrapper
 * mode (smtp_tls_wrappermode) starts TLS before the greeting. With smtp_tls_connection_reuse
 * (default no, as Postfix; or a policy's connection_reuse=yes) TLS connections are parked and
 * reused like plaintext ones, but only for deliveries with the same policy: the key of the
 * cache names the policy (the worker owns the TLS state, as Postfix's tlsproxy does).
 */

import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type * as tls from 'node:tls';

import { parseReplyLine, enhancedStatusLength, splitEnhanced, replyToString, type SmtpReply } from './reply.js';
import type { SourceAddresses } from './bind-address.js';
import { offeredMechanisms, type SaslCredentials } from '../sasl/client.js';
import { SaslFailure, saslAuthenticate, type SaslClientSettings } from './sasl-auth.js';
import type { TlsEngine } from './tls.js';
import { xforwardCommands, xforwardKeywords, type XforwardAttrs } from './xforward.js';
import { mustMatch, tlsRequired, type TlsPolicy } from './tls-policy.js';
import { quote822Local } from '../address/quote.js';

/** The source address could not be bound (not a local address, wrong family). */
class BindError extends Error {
  constructor(readonly errno: NodeJS.ErrnoException) {
    super(errno.message);
  }
}

export type { SmtpReply } from './reply.js';

export interface RecipientResult {
  index: number;
  ok: boolean;
  reply: SmtpReply;
  /** LMTP: this reply came after the end of DATA (not at RCPT). */
  afterData?: boolean;
  /**
   * The attempt at a later host this reply came from (its host, kind, reason), when the first
   * host's 5xx kept the recipient for the next one under soft_bounce; absent: the result's own.
   */
  via?: Omit<DeliveryResult, 'recipients'>;
}

export interface DeliveryResult {
  kind: 'sent' | 'site-failure' | 'message-failure';
  recipients: RecipientResult[];
  remoteHost: string;
  remoteAddr: string;
  remotePort: number;
  queuedAs?: string;
  reason?: string;
  timings: { connect: number; transmit: number };
  /** The server announced DSN (and got our DSN parameters): it sends any success notice. */
  dsn?: boolean;
  /** The failure was decided here, not said by the server (Postfix's DSN_BY_LOCAL_MTA): `reason` alone explains it. */
  local?: boolean;
  /** A failure that must not count against the destination (a failed handshake at level may). */
  noThrottle?: boolean;
}

/** The TLS side of one delivery: the destination's policy and what the TLS checks need. */
export interface TlsRequest {
  policy: TlsPolicy;
  /** The next-hop domain, for "nexthop" / "dot-nexthop" in match lists. */
  nexthop: string;
  /** After a failed handshake at level may, retry the same address in plaintext. */
  plaintextFallback: boolean;
}

export interface SmtpClientOptions {
  heloName: string;
  connectTimeout: number;
  heloTimeout: number;
  mailTimeout: number;
  rcptTimeout: number;
  dataInitTimeout: number;
  dataXferTimeout: number;
  dataDoneTimeout: number;
  quitTimeout: number;
  /**
   * smtp_skip_quit_response / lmtp_skip_quit_response: send QUIT and close without waiting for
   * its reply (Postfix's default for smtp; lmtp waits). Absent: wait.
   */
  skipQuitResponse?: boolean;
  /** ms a connection stays parked (smtp_connection_cache_time_limit). */
  idleTimeout?: number;
  /** Transactions per connection, 0 = no limit (smtp_connection_reuse_count_limit). */
  reuseLimit?: number;
  /** ms after opening a connection is no longer parked (smtp_connection_reuse_time_limit). */
  reuseTimeLimit?: number;
  /** Speak LMTP (LHLO, a reply per recipient after DATA). */
  lmtp?: boolean;
  /** Source addresses of TCP connections (smtp_bind_address, …: bind-address.ts). */
  bind?: SourceAddresses;
  /** Warnings to log (a failed bind to the source address). */
  onWarning?: (text: string) => void;
  /** SMTP AUTH to next hops (smtp_sasl_*: sasl-auth.ts); absent = never authenticate. */
  sasl?: SaslClientSettings;
  /** Informational lines to log (TLS summaries, "Host offered STARTTLS"). */
  onInfo?: (text: string) => void;
  /** The TLS engine; without one no STARTTLS is sent and required TLS fails (4.7.5). */
  tls?: TlsEngine | null;
  /** ms for the STARTTLS reply and the handshake (smtp_starttls_timeout). */
  starttlsTimeout?: number;
  /** smtp_tls_note_starttls_offer: log "Host offered STARTTLS: [host]" at level none. */
  noteStarttlsOffer?: boolean;
  /** smtp_tls_wrappermode: TLS from the first byte (port 465). */
  wrappermode?: boolean;
  /** smtp_line_length_limit (998): longer content lines are broken with CRLF SPACE; 0: never. */
  lineLengthLimit?: number;
  /** "smtp" or "lmtp": parameter names in warnings. */
  prefix?: 'smtp' | 'lmtp';
  /** smtp_send_xforward_command: XFORWARD the message's origin to a server that offers it (xforward.ts). */
  sendXforward?: boolean;
  /**
   * soft_bounce: a 5xx from a host that is not the last one to try keeps its recipients for the
   * next host (Postfix's smtp_trouble.c), with an informational line saying why.
   */
  softBounce?: boolean;
}

export interface SmtpHost {
  host: string;
  addr: string;
  port: number;
  /** A UNIX-domain socket to connect to instead of addr:port. */
  path?: string;
}

export interface SmtpEnvelope {
  sender: string;
  recipients: string[];
  size?: number;
  eightBit?: boolean;
  /** SMTPUTF8 was requested: MAIL FROM gets SMTPUTF8 at a server that offers it. */
  smtputf8?: boolean;
  /** The delivery needs SMTPUTF8: a server that does not offer it gets nothing (5.6.7). */
  smtputf8Required?: boolean;
  /** DSN (RFC 3461) parameters, sent only to a server that announces DSN. */
  dsn?: { ret?: string; envId?: string; recipients?: ({ notify?: string[]; orcpt?: string } | undefined)[] };
  /** sendmail -bv: MAIL and RCPT only, then RSET: each recipient's RCPT reply is the answer. */
  verify?: boolean;
  /** The queue ID, for log lines about this delivery. */
  queueId?: string;
  /** The SASL credentials for a host of this delivery (smtp_sasl_password_maps), null = none. */
  credentials?: (h: SmtpHost) => Promise<SaslCredentials | null>;
  /** The message's origin, for XFORWARD (sent only with sendXforward, to a server that offers it). */
  xforward?: XforwardAttrs;
}

/** Longest reply line we buffer before calling the peer broken (RFC 5321 allows 512). */
const MAX_LINE = 65536;

// ---------------------------------------------------------------------------
// Content: dot-stuffing and LF -> CRLF in one pass.

/**
 * Returns `content` ready to send after a 354: bare LF turned into CRLF, lines that start
 * with '.' get another '.', a final CRLF added if missing, then the ".\r\n" terminator.
 * Lines are found with Buffer.indexOf (native memchr); runs of lines that need no change
 * (CRLF, no leading dot, not too long) are copied in one go, so CRLF content costs one scan
 * plus one copy.
 *
 * `lineLimit` (smtp_line_length_limit, 998; 0: none): a longer line is broken as Postfix's
 * smtp_text_out breaks it: after each `lineLimit` bytes a CRLF and a SPACE (so a header line
 * stays one folded header); `info.folded` says whether that happened (for the log line).
 */
export function dotStuff(content: Uint8Array, lineLimit = 0, info?: { folded: boolean }): Buffer {
  const parts = dotStuffParts(content, lineLimit, info);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

const DOT_CRLF = Buffer.from('.\r\n');
const QUIT_CRLF = Buffer.from('QUIT\r\n');

/**
 * As dotStuff(), in pieces to write in one go: content that needs no change (the usual case:
 * CRLF lines, none starting with '.', none too long) comes back as itself beside ".\r\n", so a
 * large message is not copied once more to be sent.
 */
export function dotStuffParts(content: Uint8Array, lineLimit = 0, info?: { folded: boolean }): Buffer[] {
  const src = Buffer.isBuffer(content) ? content : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const n = src.length;
  // Skip the leading lines that need no change; if that is all of them, nothing is copied.
  let pos = 0;
  for (;;) {
    const nl = src.indexOf(10, pos);
    if (nl < 0 || nl === pos || src[pos] === 46 || src[nl - 1] !== 13 || (lineLimit > 1 && nl - 1 - pos > lineLimit)) break;
    pos = nl + 1;
  }
  if (pos === n) return [src, DOT_CRLF];
  let out = Buffer.allocUnsafe(n + (n >>> 5) + 16);
  let o = 0;
  let run = 0; // start of the pending run of lines that need no change (copied in one go)
  const ensure = (extra: number) => {
    if (o + extra <= out.length) return;
    const grown = Buffer.allocUnsafe(Math.max(o + extra + (n - pos), out.length * 2));
    out.copy(grown, 0, 0, o);
    out = grown;
  };
  while (pos < n) {
    let nl = src.indexOf(10, pos);
    const hasNl = nl >= 0;
    if (!hasNl) nl = n;
    const dot = src[pos] === 46;
    const crlf = hasNl && nl > pos && src[nl - 1] === 13;
    const end = crlf ? nl - 1 : nl;
    const long = lineLimit > 1 && end - pos > lineLimit;
    if (!dot && crlf && !long) { pos = nl + 1; continue; } // unchanged line: stays in the run
    // Flush the run, then write this line with its fix-ups.
    const pieces = long ? Math.ceil((end - pos) / (lineLimit - 1)) : 1;
    ensure(pos - run + (nl - pos) + 8 + pieces * 3);
    o += src.copy(out, o, run, pos);
    if (dot) out[o++] = 46;
    if (!long) {
      o += src.copy(out, o, pos, end);
    } else {
      // The first piece holds lineLimit bytes, each further one a SPACE and lineLimit - 1.
      let at = pos;
      let room = lineLimit;
      for (;;) {
        const take = Math.min(room, end - at);
        o += src.copy(out, o, at, at + take);
        at += take;
        if (at >= end) break;
        out[o++] = 13;
        out[o++] = 10;
        out[o++] = 32;
        room = lineLimit - 1;
      }
      if (info) info.folded = true;
    }
    out[o++] = 13;
    out[o++] = 10;
    pos = hasNl ? nl + 1 : n;
    run = pos;
  }
  ensure(pos - run + 3);
  o += src.copy(out, o, run, pos);
  out[o++] = 46;
  out[o++] = 13;
  out[o++] = 10;
  return [out.subarray(0, o)];
}

// ---------------------------------------------------------------------------
// One connection: reply reader, per-read timeouts.

type Failure = 'timeout' | 'lost';

class SessionError extends Error {
  constructor(readonly failure: Failure, message: string) { super(message); }
}

/** The end of every connection that said QUIT (one object: nothing reads its stack). */
const QUIT_SENT = new SessionError('lost', 'closed after QUIT');

interface Reply extends SmtpReply { lines?: string[] }

class Connection {
  socket: net.Socket;
  readonly key: string;
  private partial = '';
  private multi: string[] | null = null;
  private readonly replies: Reply[] = [];
  private waiter: { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
  dead: SessionError | null = null;
  idle = false;
  idleTimer: NodeJS.Timeout | null = null;
  uses = 0;
  readonly openedAt = Date.now();
  pipelining = false;
  sizeLimit = -1; // -1: SIZE not advertised, 0: advertised without a limit
  eightBitMime = false;
  smtputf8 = false;
  dsn = false;
  /** Mechanisms of the server's AUTH (and AUTH=) EHLO lines. */
  authMechanisms: string[] = [];
  starttls = false;
  /** The attributes of the server's XFORWARD keyword, null when it has none. */
  xforward: Set<string> | null = null;
  /** The TLS session (after STARTTLS or in wrapper mode). */
  secure = false;
  /** QUIT went out pipelined (with the end of data, or with an aborted transaction's RSET): the connection is finished. */
  quitSent = false;
  onIdleTrouble: ((c: Connection) => void) | null = null;
  private readonly onChunk = (chunk: string) => this.onData(chunk);
  private readonly onError = (err: Error) => this.fail(new SessionError('lost', err.message));
  // Every connection closes: an Error (and its stack) only when the close is news.
  private readonly onClose = () => { if (!this.dead) this.fail(new SessionError('lost', 'connection closed')); };

  constructor(socket: net.Socket, key: string) {
    this.socket = socket;
    this.key = key;
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', this.onChunk);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  /**
   * Hands the plaintext socket over for the TLS handshake. Anything the server sent after its
   * STARTTLS reply is thrown away with it (never read as if it came over TLS).
   */
  detach(): net.Socket {
    const s = this.socket;
    s.off('data', this.onChunk);
    s.off('error', this.onError);
    s.off('close', this.onClose);
    this.partial = '';
    this.replies.length = 0;
    this.multi = null;
    return s;
  }

  /** Continues over the TLS socket; the features are read again from the next EHLO. */
  secured(socket: tls.TLSSocket): void {
    this.attach(socket);
    this.secure = true;
    this.pipelining = false;
    this.sizeLimit = -1;
    this.eightBitMime = false;
    this.smtputf8 = false;
    this.dsn = false;
    this.starttls = false;
    this.xforward = null;
  }

  private onData(chunk: string): void {
    const s = this.partial.length > 0 ? this.partial + chunk : chunk;
    let pos = 0;
    for (;;) {
      const nl = s.indexOf('\n', pos);
      if (nl < 0) break;
      const end = nl > pos && s.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      this.onLine(s.slice(pos, end));
      if (this.dead) return;
      pos = nl + 1;
    }
    this.partial = pos === 0 ? s : pos < s.length ? s.slice(pos) : '';
    if (this.partial.length > MAX_LINE) this.fail(new SessionError('lost', 'reply line too long'), true);
  }

  private onLine(line: string): void {
    const p = parseReplyLine(line);
    if (!p) { this.fail(new SessionError('lost', `malformed reply: ${line.slice(0, 100)}`), true); return; }
    if (!p.last) { (this.multi ??= []).push(p.text); return; }
    let reply: Reply;
    const lines = this.multi;
    this.multi = null;
    if (lines === null) {
      const { enhanced, text } = splitEnhanced(p.text);
      reply = { code: p.code, enhanced, text };
    } else {
      lines.push(p.text);
      const { enhanced } = splitEnhanced(lines[0]!);
      let text = '';
      for (let i = 0; i < lines.length; i++) {
        let t = lines[i]!;
        if (enhanced !== null && t.startsWith(enhanced)) { const k = enhancedStatusLength(t); if (k > 0) t = t.slice(k + 1); }
        text = i === 0 ? t : `${text} ${t}`;
      }
      reply = { code: p.code, enhanced, text, lines };
    }
    if (this.idle) { this.fail(new SessionError('lost', `unexpected reply while idle: ${replyToString(reply)}`), true); return; }
    const w = this.waiter;
    if (w) { this.waiter = null; clearTimeout(w.timer); w.resolve(reply); }
    else this.replies.push(reply);
  }

  /** Destroys the connection; pending and future reads reject with `err`. */
  fail(err: SessionError, destroy = true): void {
    if (this.dead) return;
    this.dead = err;
    if (destroy) this.socket.destroy();
    const w = this.waiter;
    if (w) { this.waiter = null; clearTimeout(w.timer); w.reject(err); }
    if (this.idle) this.onIdleTrouble?.(this);
  }

  read(timeoutMs: number): Promise<Reply> {
    if (this.replies.length > 0) return Promise.resolve(this.replies.shift()!);
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new SessionError('timeout', 'timed out')), timeoutMs);
      this.waiter = { resolve, reject, timer };
    });
  }

  write(data: string | Buffer): void {
    if (!this.dead) this.socket.write(data);
  }

  /**
   * Writes `data` and waits until it is handed to the kernel, at most timeoutMs. Pieces go out
   * corked, in one write (writev).
   */
  writeAndFlush(data: Buffer | Buffer[], timeoutMs: number): Promise<void> {
    if (this.dead) return Promise.reject(this.dead);
    const pieces = Array.isArray(data) ? data : [data];
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new SessionError('timeout', 'timed out')), timeoutMs);
      if (pieces.length > 1) this.socket.cork();
      for (let i = 0; i < pieces.length - 1; i++) this.socket.write(pieces[i]!);
      this.socket.write(pieces[pieces.length - 1]!, (err) => {
        clearTimeout(timer);
        if (err || this.dead) reject(this.dead ?? new SessionError('lost', err!.message));
        else resolve();
      });
      if (pieces.length > 1) this.socket.uncork();
    });
  }

  /** Usable for a new transaction: alive and no unread replies. */
  get usable(): boolean { return this.dead === null && this.replies.length === 0 && this.partial.length === 0; }

  parseEhlo(reply: Reply): void {
    const lines = reply.lines;
    if (!lines) return;
    for (let i = 1; i < lines.length; i++) {
      const kw = lines[i]!.toUpperCase();
      if (kw === 'PIPELINING') this.pipelining = true;
      else if (kw === '8BITMIME') this.eightBitMime = true;
      else if (kw === 'SMTPUTF8') this.smtputf8 = true;
      else if (kw === 'DSN') this.dsn = true;
      else if (kw.startsWith('AUTH ') || kw.startsWith('AUTH=')) this.authMechanisms = offeredMechanisms([...this.authMechanisms.map((m) => `AUTH ${m}`), kw]);
      else if (kw === 'STARTTLS') this.starttls = true;
      else if (kw.startsWith('XFORWARD')) this.xforward = xforwardKeywords(kw) ?? this.xforward;
      else if (kw === 'SIZE' || kw.startsWith('SIZE ')) {
        const n = Number.parseInt(kw.slice(5), 10);
        this.sizeLimit = Number.isFinite(n) && n > 0 ? n : 0;
      }
      // ENHANCEDSTATUSCODES: replies are parsed for x.y.z either way.
    }
  }
}

function connectErrorText(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED': return 'Connection refused';
    case 'ETIMEDOUT': return 'Connection timed out';
    case 'EHOSTUNREACH': return 'No route to host';
    case 'ENETUNREACH': return 'Network is unreachable';
    case 'ECONNRESET': return 'Connection reset by peer';
    case 'ENOENT': return 'No such file or directory';
    case 'EACCES': return 'Permission denied';
    case 'EADDRNOTAVAIL': return 'Cannot assign requested address';
    case 'EINVAL': return 'Invalid argument';
    default: return err.message;
  }
}

// ---------------------------------------------------------------------------
// The client.

const enum Stage { Greeting, Ehlo, Helo, Mail, Rcpt, Data, Body, Dot, Starttls, Auth }

const STAGE_TEXT = [
  'receiving the initial server greeting',
  'performing the EHLO handshake',
  'performing the HELO handshake',
  'sending MAIL FROM',
  'sending RCPT TO',
  'sending DATA command',
  'sending message body',
  'sending end of data -- message may be sent more than once',
  'receiving the STARTTLS response',
  'performing the SASL authentication',
] as const;

/**
 * Content made when the server waits for it (after 354), at most once per delivery: the
 * agents' outgoing content checks and header rewriting (src/content/header-body-checks.ts,
 * src/smtp/generic.ts), which Postfix applies while it sends.
 */
export type OutgoingContent = () => Promise<Uint8Array>;

/**
 * Thrown by OutgoingContent when it cannot be made (a check table failed): the delivery is
 * deferred with 4.3.0 "local data error while talking to HOST[ADDR]" (Postfix's SMTP_ERR_DATA).
 */
export class LocalDataError extends Error {}

/** Thrown inside a session to end it as a site failure with this reply and reason. */
class SiteFailure {
  constructor(
    readonly reply: SmtpReply,
    readonly reason: string,
    readonly retryable = false,
    /** local: decided here (DSN_BY_LOCAL_MTA); noThrottle: not the destination's fault; plaintext: retry this address without TLS. */
    readonly extra: { local?: boolean; noThrottle?: boolean; plaintext?: boolean } = {},
  ) {}
}

/** A failure we decide ourselves (Postfix's SMTP_RESP_FAKE): the reason is the whole story. */
function localSiteFailure(enhanced: string, text: string, extra: { noThrottle?: boolean; plaintext?: boolean } = {}): SiteFailure {
  return new SiteFailure({ code: enhanced.startsWith('5') ? 550 : 451, enhanced, text }, text, false, { local: true, ...extra });
}

/** TLS of one connection attempt: the request, or null for plaintext (level none, or the retry after a failed handshake). */
type TlsAttempt = TlsRequest | null;

export class SmtpClient {
  private readonly opts: Required<Omit<SmtpClientOptions, 'sasl'>> & Pick<SmtpClientOptions, 'sasl'>;
  private readonly idle = new Map<string, Connection[]>();
  private readonly ehloCmd: string;
  private closed = false;

  constructor(opts: SmtpClientOptions) {
    this.opts = {
      idleTimeout: 2000, reuseLimit: 0, reuseTimeLimit: 300_000, lmtp: false, bind: { enforce: false }, onWarning: () => undefined,
      onInfo: () => undefined, tls: null, starttlsTimeout: 300_000, noteStarttlsOffer: false, wrappermode: false, prefix: opts.lmtp ? 'lmtp' : 'smtp',
      sendXforward: false,
      softBounce: false,
      lineLengthLimit: 998,
      skipQuitResponse: false,
      ...opts,
    };
    this.ehloCmd = `${opts.lmtp ? 'LHLO' : 'EHLO'} ${opts.heloName}\r\n`;
  }

  async deliver(hosts: SmtpHost[], envelope: SmtpEnvelope, content: Uint8Array | OutgoingContent, tls: TlsRequest | null = null): Promise<DeliveryResult> {
    let last: DeliveryResult | null = null;
    if (!this.opts.wrappermode && hosts.some((h) => h.port === 465 && h.path === undefined)) {
      const p = this.opts.prefix;
      this.opts.onInfo(`SMTPS wrappermode (TCP port 465) requires setting "${p}_tls_wrappermode = yes", and "${p}_tls_security_level = encrypt" (or stronger)`);
    }
    for (const [i, h] of hosts.entries()) {
      last = await this.attempt(h, envelope, content, tls);
      if (last.kind !== 'site-failure' || last.reason?.endsWith(STAGE_TEXT[Stage.Dot])) {
        return this.opts.softBounce && i < hosts.length - 1 ? this.nextHostFor5xx(h, hosts.slice(i + 1), envelope, content, tls, last) : last;
      }
    }
    if (last) return last;
    const reply: SmtpReply = { code: 451, enhanced: '4.4.4', text: 'no hosts to deliver to' };
    return {
      kind: 'site-failure', recipients: fill(envelope.recipients.length, reply, false), remoteHost: 'none',
      remoteAddr: '', remotePort: 0, reason: reply.text, timings: { connect: 0, transmit: 0 },
    };
  }

  /**
   * soft_bounce (Postfix's smtp_trouble.c): the recipients a host that is not the last one
   * refused with 5xx are kept for the next hosts, as a 4xx would keep them in Postfix, instead of
   * being bounced; "ID: host … said: … (in reply to … command)" says why each was skipped. Their
   * replies then come from the later attempt (RecipientResult.via).
   */
  private async nextHostFor5xx(h: SmtpHost, rest: SmtpHost[], env: SmtpEnvelope, content: Uint8Array | OutgoingContent, tls: TlsRequest | null, result: DeliveryResult): Promise<DeliveryResult> {
    const kept = result.recipients.filter((r) => !r.ok && r.reply.code >= 500 && r.reply.code <= 599);
    if (kept.length === 0) return result;
    const id = env.queueId ?? 'NOQUEUE';
    // A transaction refused as a whole (MAIL FROM, DATA) is one line (smtp_bulk_fail), each
    // refused recipient one (smtp_rcpt_fail).
    let bulk = false;
    for (const r of kept) {
      const whole = result.kind === 'message-failure' && result.reason !== undefined && (result.local === true || result.reason.includes(replyToString(r.reply)));
      if (!whole) this.opts.onInfo(`${id}: ${saidText(h, r.reply, r.afterData ? 'end of DATA' : 'RCPT TO')}`);
      else if (!bulk) this.opts.onInfo(`${id}: ${result.reason}`);
      bulk ||= whole;
    }
    const pick = <T>(list: T[] | undefined) => list && kept.map((r) => list[r.index]!);
    const sub: SmtpEnvelope = {
      ...env,
      recipients: pick(env.recipients)!,
      ...(env.dsn ? { dsn: { ...env.dsn, ...(env.dsn.recipients ? { recipients: pick(env.dsn.recipients)! } : {}) } } : {}),
    };
    const later = await this.deliver(rest, sub, content, tls);
    const { recipients: laterRecipients, ...laterAttempt } = later;
    const recipients = [...result.recipients];
    kept.forEach((r, j) => {
      const lr = laterRecipients[j]!;
      recipients[r.index] = { ...lr, index: r.index, via: lr.via ?? laterAttempt };
    });
    const timings = { connect: result.timings.connect + later.timings.connect, transmit: result.timings.transmit + later.timings.transmit };
    return { ...result, recipients, timings };
  }

  /** Sends QUIT on every parked connection and waits for them to close. */
  async close(): Promise<void> {
    this.closed = true;
    const all: Connection[] = [];
    for (const list of this.idle.values()) all.push(...list);
    this.idle.clear();
    await Promise.all(all.map((c) => this.quit(c)));
  }

  private async attempt(h: SmtpHost, env: SmtpEnvelope, content: Uint8Array | OutgoingContent, tlsRequest: TlsRequest | null): Promise<DeliveryResult> {
    const t0 = performance.now();
    const result: DeliveryResult = {
      kind: 'sent', recipients: [], remoteHost: h.host, remoteAddr: h.addr, remotePort: h.port,
      timings: { connect: 0, transmit: 0 },
    };
    let tls: TlsAttempt = tlsRequest && tlsRequest.policy.level !== 'none' ? tlsRequest : null;
    let stale = false;
    let plain = false;
    for (;;) {
      let conn: Connection | null = null;
      try {
        const key = cacheKey(h, tls);
        conn = this.takeIdle(key);
        const reused = conn !== null;
        if (conn === null) {
          conn = await this.open(h, key, tls);
          if (env.credentials && this.opts.sasl) {
            const c = conn;
            await saslAuthenticate(c.authMechanisms, h, env.credentials, this.opts.sasl, async (line) => {
              c.write(`${line}\r\n`);
              const r = await this.read(c, h, Stage.Auth, this.opts.heloTimeout);
              return { code: r.code, enhanced: r.enhanced ?? undefined, text: r.text, line: replyToString(r) };
            }, (text) => this.opts.onWarning(text), c.secure).catch((e: unknown) => {
              throw e instanceof SaslFailure ? new SiteFailure(e.reply, e.reason) : e;
            });
          }
        }
        const t1 = performance.now();
        result.timings.connect = t1 - t0;
        // Sender-dependent credentials: a connection is not reused for another sender (Postfix).
        // A TLS connection is reused only with smtp_tls_connection_reuse (or connection_reuse=yes).
        const noReuse = (this.opts.sasl?.senderDependent && env.credentials) || (conn.secure && tls !== null && tls.policy.level !== 'invalid' && !tls.policy.reuse);
        // A connection that will not be parked says QUIT with the end of data or its RSET
        // (Postfix's smtp_proto.c pipelines QUIT after "." whenever the session is not cached).
        await this.transaction(conn, h, env, content, result, reused, Boolean(noReuse) || !this.parkable(conn, 1));
        result.timings.transmit = performance.now() - t1;
        if (noReuse || conn.quitSent) void this.quit(conn);
        else this.release(conn);
        return result;
      } catch (e) {
        if (conn) conn.fail(new SessionError('lost', 'aborted'));
        if (!(e instanceof SiteFailure)) throw e;
        if (e.retryable && !stale) { stale = true; continue; }
        // Postfix's RETRY_AS_PLAINTEXT: the same address again, TLS off.
        if (e.extra.plaintext && !plain) { plain = true; tls = null; continue; }
        result.kind = 'site-failure';
        result.reason = e.reason;
        result.recipients = fill(env.recipients.length, e.reply, false);
        result.timings.transmit = performance.now() - t0 - result.timings.connect;
        if (e.extra.local) result.local = true;
        if (e.extra.noThrottle) result.noThrottle = true;
        return result;
      }
    }
  }

  private takeIdle(key: string): Connection | null {
    const list = this.idle.get(key);
    if (!list) return null;
    while (list.length > 0) {
      const c = list.pop()!;
      c.idle = false;
      if (c.idleTimer) { clearTimeout(c.idleTimer); c.idleTimer = null; }
      c.socket.ref();
      if (c.usable) return c;
      c.fail(new SessionError('lost', 'stale'));
    }
    return null;
  }

  /** Whether `c` may be parked after `more` further transactions (closing, worn out, or not). */
  private parkable(c: Connection, more: number): boolean {
    const worn = (this.opts.reuseLimit > 0 && c.uses + more >= this.opts.reuseLimit) || Date.now() - c.openedAt >= this.opts.reuseTimeLimit;
    return !this.closed && !worn;
  }

  private release(c: Connection): void {
    c.uses++;
    if (!c.usable || !this.parkable(c, 0)) { void this.quit(c); return; }
    let list = this.idle.get(c.key);
    if (!list) { list = []; this.idle.set(c.key, list); }
    list.push(c);
    c.idle = true;
    c.socket.unref(); // a parked connection does not keep the process alive
    c.onIdleTrouble = (dead) => this.unpark(dead);
    c.idleTimer = setTimeout(() => { this.unpark(c); void this.quit(c); }, this.opts.idleTimeout);
    c.idleTimer.unref();
  }

  private unpark(c: Connection): void {
    c.idle = false;
    if (c.idleTimer) { clearTimeout(c.idleTimer); c.idleTimer = null; }
    const list = this.idle.get(c.key);
    if (!list) return;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.idle.delete(c.key);
  }

  private async quit(c: Connection): Promise<void> {
    if (c.dead) return;
    if (!c.quitSent) c.write('QUIT\r\n');
    if (this.opts.skipQuitResponse) {
      // As Postfix's close after QUIT: what was written is sent first (a TLS session ends with
      // its close_notify), the 221 is not waited for.
      c.fail(QUIT_SENT, false);
      c.socket.destroySoon();
      return;
    }
    try { await c.read(this.opts.quitTimeout); } catch { /* closing anyway */ }
    c.fail(QUIT_SENT);
  }

  /** Connects by IP, reads the greeting, says EHLO (HELO on 5xx), starts TLS as the policy says. */
  private async open(h: SmtpHost, key: string, tls: TlsAttempt): Promise<Connection> {
    const where = h.path !== undefined ? `${h.host}[${h.path}]` : `${h.host}[${h.addr}]:${h.port}`;
    const connectFail = (text: string) =>
      new SiteFailure({ code: 421, enhanced: '4.4.1', text: `connect to ${where}: ${text}` }, `connect to ${where}: ${text}`);
    if (h.path === undefined && net.isIP(h.addr) === 0) throw connectFail('not an IP address');
    // The source address for this family (smtp_bind_address, smtp_bind_address6, inet_interfaces).
    const six = h.path === undefined && net.isIP(h.addr) === 6;
    const localAddress = h.path === undefined ? (six ? this.opts.bind.v6 : this.opts.bind.v4) : undefined;
    const connect = (from: string | undefined) => new Promise<net.Socket>((resolve, reject) => {
      // host is an IP literal (or a socket path), so no name lookup takes place.
      const s = h.path !== undefined ? net.connect({ path: h.path }) : net.connect({ host: h.addr, port: h.port, noDelay: true, ...(from ? { localAddress: from } : {}) });
      const timer = setTimeout(() => { s.destroy(); reject(connectFail('Connection timed out')); }, this.opts.connectTimeout);
      s.once('connect', () => { clearTimeout(timer); s.removeAllListeners('error'); resolve(s); });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        s.destroy();
        reject(err.syscall === 'bind' ? new BindError(err) : connectFail(connectErrorText(err)));
      });
    });
    let socket: net.Socket;
    try {
      socket = await connect(localAddress);
    } catch (e) {
      if (!(e instanceof BindError)) throw e;
      // Postfix: warn; with *_bind_address_enforce, this address is a configuration error.
      this.opts.onWarning(`smtp_connect_addr: bind ${localAddress}: ${connectErrorText(e.errno)}`);
      if (this.opts.bind.enforce) throw new SiteFailure({ code: 421, enhanced: '4.4.0', text: 'server configuration error' }, 'server configuration error');
      socket = await connect(undefined);
    }
    const c = new Connection(socket, key);
    try {
      if (this.opts.wrappermode) {
        // Postfix skips a host at a level below encrypt in wrapper mode (smtp_connect.c).
        if (tls === null || tls.policy.level === 'invalid' || !tlsRequired(tls.policy.level)) {
          const p = this.opts.prefix;
          this.opts.onWarning(`${p}_tls_wrappermode requires "${p}_tls_security_level = encrypt" (or stronger)`);
          throw localSiteFailure('4.7.0', 'client TLS configuration problem');
        }
        await this.startTls(c, h, tls);
      }
      return await this.handshake(c, h, tls);
    } catch (e) {
      c.fail(new SessionError('lost', 'handshake failed'));
      throw e;
    }
  }

  private async handshake(c: Connection, h: SmtpHost, tls: TlsAttempt): Promise<Connection> {
    const greeting = await this.read(c, h, Stage.Greeting, this.opts.heloTimeout);
    if (greeting.code !== 220) {
      const code = greeting.code >= 500 ? greeting.code - 100 : greeting.code; // smtp_skip_5xx_greeting
      const reply: SmtpReply = { code: code >= 400 && code < 500 ? code : 421, enhanced: soften(greeting.enhanced), text: greeting.text };
      throw new SiteFailure(reply, `host ${h.host}[${h.addr}] refused to talk to me: ${replyToString(greeting)}`);
    }
    // A bad policy entry (already warned about) fails after the greeting, as in Postfix.
    if (tls?.policy.level === 'invalid') throw localSiteFailure('4.7.0', 'client TLS configuration problem');
    await this.ehlo(c, h);
    if (!c.secure) await this.negotiateTls(c, h, tls);
    return c;
  }

  /** EHLO (LHLO), or HELO after a 5xx to EHLO; the reply's features are kept. */
  private async ehlo(c: Connection, h: SmtpHost): Promise<void> {
    c.write(this.ehloCmd);
    const ehlo = await this.read(c, h, Stage.Ehlo, this.opts.heloTimeout);
    if (ehlo.code >= 200 && ehlo.code < 300) { c.parseEhlo(ehlo); return; }
    if (this.opts.lmtp) throw saidFailure(h, ehlo, 'LHLO');
    if (ehlo.code >= 500) {
      c.write(`HELO ${this.opts.heloName}\r\n`);
      const helo = await this.read(c, h, Stage.Helo, this.opts.heloTimeout);
      if (helo.code >= 200 && helo.code < 300) return;
      throw saidFailure(h, helo, 'HELO');
    }
    throw saidFailure(h, ehlo, 'EHLO');
  }

  /** STARTTLS when offered and wanted; the failures of a level that requires TLS (smtp_proto.c). */
  private async negotiateTls(c: Connection, h: SmtpHost, tls: TlsAttempt): Promise<void> {
    const level = tls === null || tls.policy.level === 'invalid' ? 'none' : tls.policy.level;
    if (c.starttls && this.opts.noteStarttlsOffer && level === 'none') this.opts.onInfo(`Host offered STARTTLS: [${h.host}]`);
    const engine = this.opts.tls && this.opts.tls.unavailable === null ? this.opts.tls : null;
    if (c.starttls && engine !== null && tls !== null && level !== 'none') {
      c.write('STARTTLS\r\n');
      const r = await this.read(c, h, Stage.Starttls, this.opts.starttlsTimeout);
      if (r.code >= 200 && r.code < 300) {
        await this.startTls(c, h, tls);
        await this.ehlo(c, h);
        return;
      }
      c.starttls = false;
      if (tlsRequired(level)) throw new SiteFailure(stripLines(r), `TLS is required, but host ${h.host}[${h.addr}] refused to start TLS: ${replyToString(r)}`);
      return; // level may: on in plaintext
    }
    if (!tlsRequired(level)) return;
    if (!c.starttls) throw localSiteFailure('4.7.4', `TLS is required, but was not offered by host ${h.host}[${h.addr}]`);
    if (engine === null) throw localSiteFailure('4.7.5', 'TLS is required, but our TLS engine is unavailable');
    this.opts.onWarning('smtp_start_tls: TLS is required but unavailable, don\'t know why');
    throw localSiteFailure('4.7.0', 'TLS is required, but unavailable');
  }

  /** The TLS handshake on c's socket; the connection continues over TLS or fails. */
  private async startTls(c: Connection, h: SmtpHost, tls: TlsRequest): Promise<void> {
    const policy = tls.policy;
    const engine = this.opts.tls;
    if (policy.level === 'invalid' || !engine || engine.unavailable !== null) throw localSiteFailure('4.7.5', 'TLS is required, but our TLS engine is unavailable');
    const namaddr = h.path !== undefined ? `${h.host}[${h.path}]` : `${h.host}[${h.addr}]:${h.port}`;
    const started = await engine.start(c.detach(), { host: h.host, addr: h.addr, port: h.port, nexthop: tls.nexthop, namaddr }, policy);
    if (!started.ok) {
      c.fail(new SessionError('lost', 'TLS handshake failed'));
      const may = policy.level === 'may';
      throw localSiteFailure('4.7.5', 'Cannot start TLS: handshake failure', { noThrottle: may, plaintext: may && tls.plaintextFallback && !this.opts.wrappermode });
    }
    c.secured(started.socket);
    if (mustMatch(policy.level) && !started.matched) {
      // A usable session: say QUIT politely before giving up on this server.
      c.write('QUIT\r\n');
      try { await c.read(this.opts.quitTimeout); } catch { /* closing anyway */ }
      throw localSiteFailure('4.7.5', 'Server certificate not verified');
    }
  }

  /** Reads one reply; a timeout or lost connection becomes a SiteFailure for `stage`. */
  private async read(c: Connection, h: SmtpHost, stage: Stage, timeoutMs: number, reused = false): Promise<Reply> {
    try {
      return await c.read(timeoutMs);
    } catch (e) {
      if (!(e instanceof SessionError)) throw e;
      throw this.sessionFailure(e, h, stage, reused);
    }
  }

  private sessionFailure(e: SessionError, h: SmtpHost, stage: Stage, reused = false): SiteFailure {
    const text = this.opts.lmtp && stage === Stage.Ehlo ? 'performing the LHLO handshake' : STAGE_TEXT[stage];
    const reason = e.failure === 'timeout'
      ? `conversation with ${h.host}[${h.addr}] timed out while ${text}`
      : `lost connection with ${h.host}[${h.addr}] while ${text}`;
    // A parked connection the server dropped fails at MAIL: retry once on a fresh one.
    const retryable = reused && e.failure === 'lost' && stage === Stage.Mail;
    return new SiteFailure({ code: 421, enhanced: '4.4.2', text: reason }, reason, retryable);
  }

  /** Reads the XFORWARD replies (writing each command first unless pipelined); a refusal is only logged. */
  private async xforwardReplies(c: Connection, h: SmtpHost, commands: { line: string; what: string }[], writeEach: boolean): Promise<void> {
    for (const x of commands) {
      if (writeEach) c.write(`${x.line}\r\n`);
      const r = await this.read(c, h, Stage.Mail, this.opts.mailTimeout);
      if (r.code < 200 || r.code > 299) this.opts.onWarning(`host ${h.host}[${h.addr}]:${h.port} said: ${replyToString(stripLines(r)).replace(/\n/g, ' ')} (in reply to ${x.what})`);
    }
  }

  private async transaction(c: Connection, h: SmtpHost, env: SmtpEnvelope, content: Uint8Array | OutgoingContent, result: DeliveryResult, reused: boolean, last: boolean): Promise<void> {
    const rcpts = env.recipients;
    const n = rcpts.length;
    if (env.smtputf8Required && !c.smtputf8) {
      return localFailure(result, n, { code: 550, enhanced: '5.6.7', text: `SMTPUTF8 is required, but was not offered by host ${h.host}[${h.addr}]` });
    }
    if (env.size !== undefined && c.sizeLimit > 0 && env.size > c.sizeLimit) {
      return localFailure(result, n, { code: 552, enhanced: '5.3.4', text: `message size ${env.size} exceeds size limit ${c.sizeLimit} of server ${h.host}[${h.addr}]` });
    }
    // Local parts that are not dot-atoms go out quoted, as Postfix's quote_822_local.
    let mail = `MAIL FROM:<${quote822Local(env.sender)}>`;
    if (c.sizeLimit >= 0 && env.size !== undefined) mail += ` SIZE=${env.size}`;
    if (env.eightBit && c.eightBitMime) mail += ' BODY=8BITMIME';
    if (env.smtputf8 && c.smtputf8) mail += ' SMTPUTF8';
    const dsn = c.dsn && env.dsn ? env.dsn : null;
    if (dsn?.ret) mail += ` RET=${dsn.ret}`;
    if (dsn?.envId) mail += ` ENVID=${xtext(dsn.envId)}`;
    mail += '\r\n';
    result.dsn = c.dsn;
    const rcptCmd = (i: number) => {
      let cmd = `RCPT TO:<${quote822Local(rcpts[i]!)}>`;
      const d = dsn?.recipients?.[i];
      if (d?.notify?.length) cmd += ` NOTIFY=${d.notify.join(',')}`;
      if (d?.orcpt) cmd += ` ORCPT=${orcptParam(d.orcpt)}`;
      return cmd + '\r\n';
    };

    // XFORWARD before MAIL FROM (smtp_send_xforward_command): pipelined with it when we may.
    const xforward = this.opts.sendXforward && c.xforward && env.xforward ? xforwardCommands(c.xforward, env.xforward) : [];
    const pipelined = c.pipelining;
    if (xforward.length && !pipelined) await this.xforwardReplies(c, h, xforward, true);
    if (pipelined) {
      let batch = xforward.map((x) => `${x.line}\r\n`).join('') + mail;
      for (let i = 0; i < n; i++) batch += rcptCmd(i);
      if (!env.verify) batch += 'DATA\r\n';
      c.write(batch);
    } else {
      c.write(mail);
    }
    if (xforward.length && pipelined) await this.xforwardReplies(c, h, xforward, false);

    const mailReply = await this.read(c, h, Stage.Mail, this.opts.mailTimeout, reused);
    const mailOk = mailReply.code >= 200 && mailReply.code < 300;
    // 421: the server is closing the connection, whatever else it says (RFC 5321 3.8).
    if (mailReply.code === 421) c.fail(new SessionError('lost', 'the server said 421'));
    if (!mailOk && pipelined) return this.afterRejectedMail(c, h, env, result, mailReply);
    if (!mailOk) return messageFailure(result, n, mailReply, saidText(h, mailReply, 'MAIL FROM'));
    const results: RecipientResult[] = new Array(n);
    let accepted = 0;
    for (let i = 0; i < n; i++) {
      if (!pipelined) c.write(rcptCmd(i));
      const r = await this.read(c, h, Stage.Rcpt, this.opts.rcptTimeout);
      const ok = mailOk && r.code >= 200 && r.code < 300;
      if (ok) accepted++;
      results[i] = { index: i, ok, reply: stripLines(r) };
    }
    result.recipients = results;

    if (env.verify) {
      // Address verification: the RCPT replies are the answer; no message is sent.
      await this.rset(c, last);
      return;
    }
    let dataReply: Reply | null = null;
    if (pipelined) dataReply = await this.read(c, h, Stage.Data, this.opts.dataInitTimeout);
    else if (accepted > 0) { c.write('DATA\r\n'); dataReply = await this.read(c, h, Stage.Data, this.opts.dataInitTimeout); }

    if (accepted === 0) {
      // RFC 2920: the server must reject a pipelined DATA with no valid recipient. If it
      // says 354 anyway, end the empty message with "." alone; else reset the transaction.
      if (dataReply && dataReply.code === 354) {
        c.write('.\r\n');
        await this.read(c, h, Stage.Dot, this.opts.dataDoneTimeout);
      } else {
        await this.rset(c, last);
      }
      return; // kind 'sent': every recipient carries its RCPT rejection
    }
    if (dataReply!.code !== 354) {
      await this.rset(c, last);
      return dataFailure(result, dataReply!, saidText(h, dataReply!, 'DATA'));
    }
    let body: Uint8Array;
    try {
      body = typeof content === 'function' ? await content() : content;
    } catch (e) {
      // The session cannot end the DATA cleanly: the connection is dropped (attempt()'s catch).
      if (e instanceof LocalDataError) throw localSiteFailure('4.3.0', `local data error while talking to ${h.host}[${h.addr}]`);
      throw e;
    }
    try {
      const info = { folded: false };
      const lineLimit = this.opts.lineLengthLimit ?? 998;
      const parts = dotStuffParts(body, lineLimit, info);
      // The last transaction on a pipelining connection: QUIT goes with the end of data.
      if (last && pipelined) { parts.push(QUIT_CRLF); c.quitSent = true; }
      await c.writeAndFlush(parts, this.opts.dataXferTimeout);
      if (info.folded) this.opts.onInfo?.(`${env.queueId ?? 'NOQUEUE'}: breaking line > ${lineLimit} bytes with <CR><LF>SPACE`);
    } catch (e) {
      if (e instanceof SessionError) throw this.sessionFailure(e, h, Stage.Body);
      throw e;
    }
    if (this.opts.lmtp) return this.lmtpReplies(c, h, results);
    const done = await this.read(c, h, Stage.Dot, this.opts.dataDoneTimeout);
    if (done.code >= 200 && done.code < 300) {
      const final = stripLines(done);
      result.queuedAs = final.enhanced ? `${final.enhanced} ${final.text}` : final.text;
      for (const r of results) if (r.ok) r.reply = final;
      return;
    }
    return dataFailure(result, done, saidText(h, done, 'end of DATA'));
  }

  /**
   * MAIL FROM was refused in a pipelined batch: every recipient fails with that reply, "host …
   * said: … (in reply to MAIL FROM command)", as Postfix's smtp_mesg_fail marks them all. The
   * RCPT and DATA replies are still read to keep the connection in step, but a server that
   * hangs up after its refusal (a 421) or goes quiet only costs the connection: the lost
   * connection has no recipient left to report (Postfix's smtp_stream_except finds every
   * recipient already marked), so it is never logged as "lost connection … while sending RCPT TO".
   */
  private async afterRejectedMail(c: Connection, h: SmtpHost, env: SmtpEnvelope, result: DeliveryResult, mailReply: Reply): Promise<void> {
    const n = env.recipients.length;
    try {
      for (let i = 0; i < n; i++) await this.read(c, h, Stage.Rcpt, this.opts.rcptTimeout);
      if (!env.verify) {
        // RFC 2920: DATA after a refused MAIL must be refused; a 354 anyway gets an empty message.
        const dataReply = await this.read(c, h, Stage.Data, this.opts.dataInitTimeout);
        if (dataReply.code === 354) {
          c.write('.\r\n');
          await this.read(c, h, Stage.Dot, this.opts.dataDoneTimeout);
        }
      }
    } catch (e) {
      if (!(e instanceof SiteFailure)) throw e;
      c.fail(new SessionError('lost', e.reason));
    }
    return messageFailure(result, n, mailReply, saidText(h, mailReply, 'MAIL FROM'));
  }

  /**
   * LMTP: after the final ".", one reply per accepted recipient, in RCPT order (RFC 2033 4.2).
   * Each becomes that recipient's outcome; the session stays 'sent'. A connection lost half way
   * is a site failure for all (the ones already answered may be delivered: Postfix, too,
   * cannot tell which).
   */
  private async lmtpReplies(c: Connection, h: SmtpHost, results: RecipientResult[]): Promise<void> {
    for (const r of results) {
      if (!r.ok) continue;
      const reply = stripLines(await this.read(c, h, Stage.Dot, this.opts.dataDoneTimeout));
      r.ok = reply.code >= 200 && reply.code < 300;
      r.reply = reply;
      r.afterData = true;
    }
  }

  /**
   * RSET after an aborted transaction; a failing RSET only costs the connection. On the last
   * transaction of a pipelining connection QUIT goes with it (Postfix's SMTP_STATE_ABORT).
   */
  private async rset(c: Connection, last: boolean): Promise<void> {
    if (last && c.pipelining) { c.write('RSET\r\nQUIT\r\n'); c.quitSent = true; }
    else c.write('RSET\r\n');
    try {
      const r = await c.read(this.opts.mailTimeout);
      if (r.code !== 250) c.fail(new SessionError('lost', 'RSET rejected'));
    } catch { /* connection already failed and will not be parked */ }
  }
}

/**
 * The connection cache key: the address, and for TLS the policy the connection was opened
 * under, so that a session checked for one destination never carries another's mail.
 */
function cacheKey(h: SmtpHost, tls: TlsAttempt): string {
  const where = h.path ?? `${h.addr}:${h.port}`;
  if (tls === null) return where;
  const p = tls.policy;
  if (p.level === 'invalid') return `${where}|invalid`;
  return `${where}|${p.level}|${mustMatch(p.level) ? tls.nexthop : ''}|${p.match.join(':')}|${p.protocols}|${p.grade}|${p.exclude.join(':')}|${p.servername}`;
}

function fill(n: number, reply: SmtpReply, ok: boolean): RecipientResult[] {
  const out: RecipientResult[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = { index: i, ok, reply };
  return out;
}

function stripLines(r: Reply): SmtpReply {
  return r.lines ? { code: r.code, enhanced: r.enhanced, text: r.text } : r;
}

function soften(enhanced: string | null): string | null {
  return enhanced && enhanced.charCodeAt(0) === 53 ? `4${enhanced.slice(1)}` : enhanced;
}

function saidText(h: SmtpHost, r: SmtpReply, command: string): string {
  return `host ${h.host}[${h.addr}] said: ${replyToString(r)} (in reply to ${command} command)`;
}

function saidFailure(h: SmtpHost, r: Reply, command: string): SiteFailure {
  return new SiteFailure(stripLines(r), saidText(h, r, command));
}

function messageFailure(result: DeliveryResult, n: number, reply: SmtpReply, reason?: string): void {
  result.kind = 'message-failure';
  result.recipients = fill(n, stripLines(reply), false);
  result.reason = reason ?? replyToString(reply);
}

/** A failure we decide before MAIL FROM (Postfix's smtp_mesg_fail with DSN_BY_LOCAL_MTA). */
function localFailure(result: DeliveryResult, n: number, reply: SmtpReply): void {
  messageFailure(result, n, reply, reply.text);
  result.local = true;
}

/** DATA or end-of-data rejected: accepted recipients get the reply, rejected ones keep theirs. */
function dataFailure(result: DeliveryResult, reply: Reply, reason: string): void {
  result.kind = 'message-failure';
  result.reason = reason;
  const r = stripLines(reply);
  for (const rr of result.recipients) if (rr.ok) { rr.ok = false; rr.reply = r; }
}

/** RFC 3461 xtext: "+" and "=" and characters outside 33..126 as +HH. */
export function xtext(value: string): string {
  let out = '';
  for (const ch of Buffer.from(value, 'utf8')) {
    out += ch < 33 || ch > 126 || ch === 0x2b || ch === 0x3d ? `+${ch.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(ch);
  }
  return out;
}

/** ORCPT as stored ("rfc822;addr", decoded) → the RCPT parameter value (type;xtext). */
function orcptParam(orcpt: string): string {
  const semi = orcpt.indexOf(';');
  return semi < 0 ? `rfc822;${xtext(orcpt)}` : `${orcpt.slice(0, semi)};${xtext(orcpt.slice(semi + 1))}`;
}
