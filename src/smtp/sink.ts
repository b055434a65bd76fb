/**
 * Counting SMTP sink (Postfix's smtp-sink): accepts mail over ESMTP and counts it,
 * optionally keeping the messages. Used by the tests and beside the server in benchmarks,
 * so it is hand-written on node:net and cheap per message: commands are parsed from
 * Buffers with indexOf, replies to a pipelined batch go out in one write, and message
 * bytes are only collected when somebody wants them (keepMessages, a dataReply hook or a
 * 'message' listener).
 *
 * Behaviour knobs (SinkProfile): per-command reply hooks, greeting (a 4xx/5xx greeting
 * is sent and the connection closed), black hole (never greets), connection limit
 * (421 above it), delay before the end-of-data reply, PIPELINING on/off, TLS (STARTTLS
 * offered, or TLS from the first byte in wrapper mode; each message records whether it came
 * over TLS).
 */

import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';

export interface SinkProfile {
  rcptReply?: (rcpt: string) => string | null;
  dataReply?: (msg: SinkMessage) => string | null;
  mailReply?: (sender: string) => string | null;
  greeting?: string;
  blackHole?: boolean;
  maxConnections?: number;
  dataDelayMs?: number;
  pipelining?: boolean;
  keepMessages?: boolean;
  /** Name in the greeting and EHLO reply; default "localhost". */
  hostname?: string;
  /** Announce DSN (RFC 3461) in the EHLO reply; default true. */
  dsn?: boolean;
  /** Announce SMTPUTF8 (default true); false plays a next hop without it. */
  smtputf8?: boolean;
  /**
   * TLS with this key and certificate (PEM): STARTTLS is offered (starttls: false hides it, a
   * next hop without STARTTLS; starttlsReply answers it with something else), or with
   * wrapper: true the session is TLS from the first byte (port 465).
   */
  tls?: { key: string | Buffer; cert: string | Buffer; starttls?: boolean; wrapper?: boolean; starttlsReply?: string };
}

export interface SinkMessage {
  sender: string;
  recipients: string[];
  data: Buffer;
  remoteAddress: string;
  receivedAt: number;
  /** The parameters after the address of MAIL FROM and of each accepted RCPT TO (e.g. "NOTIFY=SUCCESS"). */
  mailParams?: string;
  rcptParams?: string[];
  /** The session's TLS protocol ("TLSv1.3") when the message came over TLS. */
  tls?: string;
  /** The TLS session was a resumption (the client offered a session the sink knew). */
  tlsResumed?: boolean;
}

export interface SinkStats { connections: number; messages: number; recipients: number; bytes: number; rejectedRecipients: number }

const MAX_COMMAND_LINE = 4096;
const SIZE_LIMIT = 104857600;
const EMPTY = Buffer.alloc(0);
const LF_DOT = Buffer.from('\n.');

function line(reply: string): string {
  return reply.endsWith('\n') ? reply : `${reply}\r\n`;
}

/** Address between '<' and '>' after "FROM:" / "TO:", or the bare word when unbracketed. */
function addressArg(args: string): string {
  const lt = args.indexOf('<');
  if (lt >= 0) {
    const gt = args.indexOf('>', lt);
    return args.slice(lt + 1, gt < 0 ? args.length : gt);
  }
  const colon = args.indexOf(':');
  const rest = args.slice(colon + 1).trimStart();
  const sp = rest.indexOf(' ');
  return sp < 0 ? rest : rest.slice(0, sp);
}

/** What follows the address in "FROM:<a> X=Y …" / "TO:<a> …". */
function paramsArg(args: string): string {
  const gt = args.indexOf('>');
  return gt < 0 ? '' : args.slice(gt + 1).trim();
}

export class SmtpSink extends EventEmitter {
  readonly stats: SinkStats = { connections: 0, messages: 0, recipients: 0, bytes: 0, rejectedRecipients: 0 };
  readonly messages: SinkMessage[] = [];
  private readonly profile: SinkProfile;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly watchers = new Set<() => void>();
  private readonly ehloReply: string;
  private readonly ehloReplyTls: string;
  private readonly greeting: string;
  private readonly context: tls.SecureContext | null;
  private queueId = 0;

  constructor(profile: SinkProfile = {}) {
    super();
    this.profile = profile;
    const name = profile.hostname ?? 'localhost';
    this.greeting = line(profile.greeting ?? `220 ${name} ESMTP postactor-sink`);
    const ext = [name];
    if (profile.pipelining !== false) ext.push('PIPELINING');
    ext.push(`SIZE ${SIZE_LIMIT}`, '8BITMIME', 'ENHANCEDSTATUSCODES');
    if (profile.smtputf8 !== false) ext.push('SMTPUTF8');
    if (profile.dsn !== false) ext.push('DSN');
    const reply = (list: string[]) => list.map((e, i) => `250${i === list.length - 1 ? ' ' : '-'}${e}\r\n`).join('');
    this.ehloReply = reply(ext);
    this.context = profile.tls ? tls.createSecureContext({ key: profile.tls.key, cert: profile.tls.cert }) : null;
    const offer = profile.tls && !profile.tls.wrapper && profile.tls.starttls !== false;
    this.ehloReplyTls = offer ? reply([...ext, 'STARTTLS']) : this.ehloReply;
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(port: number, host = '127.0.0.1'): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Resolves once predicate(stats) holds; rejects after timeoutMs naming the stats. */
  waitFor(predicate: (s: SinkStats) => boolean, timeoutMs: number): Promise<void> {
    if (predicate(this.stats)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate(this.stats)) return;
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        reject(new Error(`sink: condition not met within ${timeoutMs} ms; stats ${JSON.stringify(this.stats)}`));
      }, timeoutMs);
      this.watchers.add(check);
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  /** @internal */
  changed(): void {
    if (this.watchers.size > 0) for (const w of [...this.watchers]) w();
  }

  /** @internal */
  nextQueueId(): number { return ++this.queueId; }

  /** @internal A TLS server socket over `socket`. */
  secure(socket: net.Socket): tls.TLSSocket {
    const t = new tls.TLSSocket(socket, { isServer: true, secureContext: this.context! });
    t.on('error', () => t.destroy());
    this.sockets.add(t);
    t.on('close', () => this.sockets.delete(t));
    return t;
  }

  private accept(plain: net.Socket): void {
    let socket = plain;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setNoDelay(true);
    this.stats.connections++;
    this.changed();
    const p = this.profile;
    if (p.blackHole) return;
    if (p.maxConnections !== undefined && this.sockets.size > p.maxConnections) {
      socket.end('421 4.7.0 Too many connections\r\n');
      return;
    }
    if (p.tls?.wrapper) socket = this.secure(plain);
    socket.write(this.greeting);
    const c = this.greeting.charCodeAt(0);
    if (c === 52 || c === 53) { socket.end(); return; }
    new SinkSession(this, p, socket, this.ehloReplyTls, this.ehloReply);
  }
}

/** One SMTP session: one method per verb, like smtp-server. */
class SinkSession {
  private pending: Buffer = EMPTY;
  private greeted = false;
  private sender: string | null = null;
  private recipients: string[] = [];
  private mailParams = '';
  private rcptParams: string[] = [];
  private inData = false;
  private atLineStart = true;
  private collect = false;
  private chunks: Buffer[] = [];
  private dataBytes = 0;
  private paused = false;
  private out = '';
  private readonly onChunk = (chunk: Buffer) => this.onData(chunk);

  constructor(
    private readonly sink: SmtpSink,
    private readonly p: SinkProfile,
    private socket: net.Socket,
    private ehloReply: string,
    private readonly ehloReplyAfterTls: string,
  ) {
    socket.on('data', this.onChunk);
  }

  /** STARTTLS: "220", then the handshake; what was pipelined after the command is dropped. */
  private starttls(): void {
    if (this.socket instanceof tls.TLSSocket || this.ehloReply === this.ehloReplyAfterTls) {
      this.out += '502 5.5.1 Error: command not implemented\r\n';
      return;
    }
    const custom = this.p.tls?.starttlsReply;
    if (custom) { this.out += line(custom); return; }
    this.out += '220 2.0.0 Ready to start TLS\r\n';
    this.flush();
    const plain = this.socket;
    plain.off('data', this.onChunk);
    this.pending = EMPTY;
    this.paused = true; // stop processing what is left of this chunk
    const t = this.sink.secure(plain);
    this.socket = t;
    this.ehloReply = this.ehloReplyAfterTls;
    t.once('secure', () => {
      this.greeted = false;
      this.reset();
      this.paused = false;
      t.on('data', this.onChunk);
    });
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.process();
  }

  private process(): void {
    const socket = this.socket;
    let buf = this.pending;
    let pos = 0;
    while (pos < buf.length && !this.paused && !this.socket.destroyed) {
      if (this.inData) {
        const r = this.dataBytesFrom(buf, pos);
        if (r < 0) { pos = buf.length; break; }
        if (r === pos) break; // need more bytes to decide about a leading '.'
        pos = r;
        continue;
      }
      const nl = buf.indexOf(10, pos);
      if (nl < 0) {
        if (buf.length - pos > MAX_COMMAND_LINE) {
          this.out += '500 5.5.2 Error: line too long\r\n';
          this.flush();
          this.socket.end();
          return;
        }
        break;
      }
      const end = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
      this.command(buf.toString('utf8', pos, end));
      pos = nl + 1;
    }
    // After STARTTLS nothing sent in plaintext is kept for the TLS session.
    this.pending = pos >= buf.length || this.socket !== socket ? EMPTY : buf.subarray(pos);
    buf = EMPTY;
    this.flush();
  }

  private flush(): void {
    if (this.out.length > 0 && !this.socket.destroyed) this.socket.write(this.out);
    this.out = '';
  }

  /**
   * Consumes message bytes from buf[pos..]: un-dot-stuffs and spots the "." line.
   * Returns the position after what was consumed, pos itself when more input is
   * needed, or -1 when everything was consumed.
   */
  private dataBytesFrom(buf: Buffer, pos: number): number {
    const len = buf.length;
    while (pos < len) {
      if (this.atLineStart && buf[pos] === 46) {
        if (pos + 1 >= len) return pos;
        const next = buf[pos + 1];
        if (next === 10 || (next === 13 && pos + 2 < len && buf[pos + 2] === 10)) {
          this.endOfData();
          return pos + (next === 10 ? 2 : 3);
        }
        if (next === 13 && pos + 2 >= len) return pos;
        pos++; // a stuffed dot
      }
      // Lines not starting with '.' need nothing: consume up to the next one that does.
      const nd = buf.indexOf(LF_DOT, pos);
      const end = nd < 0 ? len : nd + 1;
      this.dataBytes += end - pos;
      if (this.collect) this.chunks.push(buf.subarray(pos, end));
      this.atLineStart = buf[end - 1] === 10;
      pos = end;
    }
    return -1;
  }

  private command(cmdLine: string): void {
    const sp = cmdLine.indexOf(' ');
    const verb = (sp < 0 ? cmdLine : cmdLine.slice(0, sp)).toUpperCase();
    const args = sp < 0 ? '' : cmdLine.slice(sp + 1);
    switch (verb) {
      case 'EHLO': return this.ehlo();
      case 'HELO': return this.helo();
      case 'MAIL': return this.mail(args);
      case 'RCPT': return this.rcpt(args);
      case 'DATA': return this.data();
      case 'RSET': this.reset(); this.out += '250 2.0.0 Ok\r\n'; return;
      case 'NOOP': this.out += '250 2.0.0 Ok\r\n'; return;
      case 'QUIT': this.out += '221 2.0.0 Bye\r\n'; this.flush(); this.socket.end(); return;
      case 'STARTTLS': return this.starttls();
      default: this.out += '502 5.5.2 Error: command not recognized\r\n';
    }
  }

  private reset(): void {
    this.sender = null;
    this.recipients = [];
    this.rcptParams = [];
  }

  private ehlo(): void { this.reset(); this.greeted = true; this.out += this.ehloReply; }

  private helo(): void { this.reset(); this.greeted = true; this.out += `250 ${this.p.hostname ?? 'localhost'}\r\n`; }

  private mail(args: string): void {
    if (!this.greeted) { this.out += '503 5.5.1 Error: send HELO/EHLO first\r\n'; return; }
    if (this.sender !== null) { this.out += '503 5.5.1 Error: nested MAIL command\r\n'; return; }
    const sender = addressArg(args);
    const custom = this.p.mailReply?.(sender) ?? null;
    if (custom !== null && custom.charCodeAt(0) !== 50) { this.out += line(custom); return; }
    this.sender = sender;
    this.mailParams = paramsArg(args);
    this.out += custom !== null ? line(custom) : '250 2.1.0 Ok\r\n';
  }

  private rcpt(args: string): void {
    if (this.sender === null) { this.out += '503 5.5.1 Error: need MAIL command\r\n'; return; }
    const rcpt = addressArg(args);
    const custom = this.p.rcptReply?.(rcpt) ?? null;
    if (custom !== null && custom.charCodeAt(0) !== 50) {
      this.sink.stats.rejectedRecipients++;
      this.out += line(custom);
      return;
    }
    this.recipients.push(rcpt);
    this.rcptParams.push(paramsArg(args));
    this.out += custom !== null ? line(custom) : '250 2.1.5 Ok\r\n';
  }

  private data(): void {
    if (this.sender === null) { this.out += '503 5.5.1 Error: need RCPT command\r\n'; return; }
    if (this.recipients.length === 0) { this.out += '554 5.5.1 Error: no valid recipients\r\n'; return; }
    this.inData = true;
    this.atLineStart = true;
    this.dataBytes = 0;
    this.collect = this.p.keepMessages === true || this.p.dataReply !== undefined || this.sink.listenerCount('message') > 0;
    this.out += '354 End data with <CR><LF>.<CR><LF>\r\n';
  }

  private endOfData(): void {
    this.inData = false;
    const sink = this.sink;
    const msg: SinkMessage | null = this.collect
      ? {
          sender: this.sender!, recipients: this.recipients, data: Buffer.concat(this.chunks, this.dataBytes),
          remoteAddress: this.socket.remoteAddress ?? '', receivedAt: Date.now(),
          mailParams: this.mailParams, rcptParams: this.rcptParams,
          ...(this.socket instanceof tls.TLSSocket ? { tls: this.socket.getProtocol() ?? 'TLS', tlsResumed: this.socket.isSessionReused() } : {}),
        }
      : null;
    this.chunks = [];
    const custom = msg && this.p.dataReply ? this.p.dataReply(msg) : null;
    const accepted = custom === null || custom.charCodeAt(0) === 50;
    if (accepted) {
      sink.stats.messages++;
      sink.stats.recipients += this.recipients.length;
      sink.stats.bytes += this.dataBytes;
      if (msg) {
        if (this.p.keepMessages) sink.messages.push(msg);
        sink.emit('message', msg);
      }
    }
    const reply = custom !== null ? line(custom) : `250 2.0.0 Ok: queued as ${sink.nextQueueId()}\r\n`;
    this.reset();
    if (accepted) sink.changed();
    const delay = this.p.dataDelayMs ?? 0;
    if (delay <= 0) { this.out += reply; return; }
    // Hold the reply, and everything pipelined after it, until the delay is over.
    this.flush();
    this.paused = true;
    this.socket.pause();
    setTimeout(() => {
      if (this.socket.destroyed) return;
      this.paused = false;
      this.out += reply;
      this.socket.resume();
      this.process();
    }, delay);
  }
}
