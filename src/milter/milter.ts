/**
 * One milter conversation (Postfix's milter8): connect to the milter's socket, negotiate
 * (version, actions, protocol steps, per-stage macro lists), then send each SMTP event with
 * its macros and read the verdict. Steps the milter declined are not sent (their macros still
 * are, as Postfix does); no-reply steps are not waited for. A broken connection, a timeout or a
 * protocol violation closes the socket and from then on answers every event with the
 * configured default action (milter_default_action), as milter8_comm_error/conf_error do.
 *
 * Verdicts are Postfix's strings: null = continue, "D" = discard, "H" = quarantine (hold),
 * "S" = shutdown, otherwise an SMTP reply "xyz a.b.c text" (multi-line with CRLF).
 *
 * The conversation runs on callbacks, not promises: a message is a dozen round trips and each
 * one used to cost a chain of async functions, a promise per layer and a buffer copy per read,
 * on the smtpd thread that also runs the SMTP sessions. Now a reply packet is parsed where the
 * socket's read landed (one buffer per thread) and handed to the one step waiting for it; the
 * packets of a step are encoded into one output buffer per conversation and go out in one
 * write; one timer per conversation stands for the deadline of whichever reply is awaited.
 * Each public method still returns a promise (Milters and the tests use the callback forms).
 */
import * as net from 'node:net';
import { CHUNK, CMD, MAX_PACKET, MY_ACTIONS, PacketReader, protocolOf, REPLY, SMFIF, SMFIP } from './protocol.js';

export type Verdict = string | null;

/** Per-milter settings (main.cf, or the `{ endpoint, name = value … }` form). */
export interface MilterSettings {
  /** "inet:host:port" or "unix:/path" (a relative path is relative to queue_directory). */
  endpoint: string;
  connectTimeout: number; // seconds
  commandTimeout: number;
  contentTimeout: number;
  defaultAction: string;
  protocol: string;
  /** Where unix:relative paths are (queue_directory). */
  queueDirectory: string;
  /** The default macro lists per stage (milter_*_macros). */
  macros: Record<Stage, string[]>;
  /** soft_bounce: a 5xx reply of the milter's own is used as 4xx (milter8.c). */
  softBounce?: boolean;
  warn(text: string): void;
}

export type Stage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' | 'eoh' | 'eom' | 'unknown';
/** SETSYMLIST stage numbers. */
const STAGES: Record<number, Stage> = { 0: 'connect', 1: 'helo', 2: 'mail', 3: 'rcpt', 4: 'data', 5: 'eom', 6: 'eoh' };

/** A message modification from the milter at end of message. */
export type Edit =
  | { op: 'addheader'; name: string; value: string }
  | { op: 'insheader'; index: number; name: string; value: string }
  | { op: 'chgheader'; index: number; name: string; value: string }
  | { op: 'chgfrom'; sender: string; args: string }
  | { op: 'addrcpt'; recipient: string; args: string }
  | { op: 'delrcpt'; recipient: string }
  | { op: 'replbody'; body: Buffer }
  | { op: 'quarantine'; reason: string };

export type MacroSource = (name: string) => string | undefined;

/** The client's view of the peer, for the CONNECT event. */
export interface ConnectInfo { name: string; addr: string; port: number }

export type Done<T> = (result: T) => void;
export interface ContentVerdict { verdict: Verdict; edits: Edit[] }

/**
 * The read buffer of this thread's milter sockets (see open()): a reply is parsed in place and
 * only the bytes of a packet that is not complete yet (or that nobody waits for) are copied.
 */
const readBuffer = Buffer.alloc(65536);

/** milter_protocol values and endpoints, parsed once per distinct text (a thread sees few). */
const protocols = new Map<string, ReturnType<typeof protocolOf>>();
type Endpoint = { opts: net.NetConnectOpts } | { error: string; warning?: string };
const endpoints = new Map<string, Endpoint>();

function endpointOf(name: string, queueDirectory: string): Endpoint {
  const key = `${name}\0${queueDirectory}`;
  let e = endpoints.get(key);
  if (e) return e;
  const colon = name.indexOf(':');
  const transport = colon > 0 ? name.slice(0, colon) : '';
  const endpoint = colon > 0 ? name.slice(colon + 1) : '';
  if (transport === 'inet') {
    const c = endpoint.lastIndexOf(':');
    const host = endpoint.slice(0, c).replace(/^\[(.*)\]$/, '$1');
    const port = Number(endpoint.slice(c + 1));
    e = c <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535 ? { error: `bad inet endpoint: ${endpoint}` } : { opts: { host, port } };
  } else if (transport === 'unix' || transport === 'local') {
    e = { opts: { path: endpoint.startsWith('/') ? endpoint : `${queueDirectory}/${endpoint}` } };
  } else if (!endpoint || !transport) {
    e = { error: `Milter service needs transport:endpoint instead of "${name}"` };
  } else {
    e = { error: 'configuration error', warning: `invalid transport name: ${transport} in Milter service: ${name}` };
  }
  if (endpoints.size < 1000) endpoints.set(key, e);
  return e;
}

type State = 'closed' | 'ready' | 'accept-con' | 'accept-msg' | 'reject-con' | 'error';

/** "Wait for the next packet" (a reply handler's answer to a progress or modification packet). */
const MORE: unique symbol = Symbol('more');
/**
 * One wait for a reply: `packet` takes each reply packet (a view of the read buffer: it copies
 * what it keeps) and answers the wait's result or MORE; `error` turns a failure (timeout, EOF,
 * a packet that does not parse) into the result; `done` gets the result, once, outside both.
 */
interface Wait<T> {
  packet(cmd: string, data: Buffer): T | typeof MORE;
  error(err: Error): T;
  done(result: T): void;
}

export class Milter {
  readonly name: string;
  private sock: net.Socket | null = null;
  private state: State = 'closed';
  private defReply: Verdict = null;
  private version = 0;
  private actions = 0;
  private steps = 0;
  private myEvents = 0;
  private macroLists: Record<Stage, string[]>;
  /** Received bytes not consumed yet (a partial packet, or packets nobody waited for). */
  private pendingIn: Buffer | null = null;
  private ended = false;
  /** The step waiting for a reply. */
  private waiting: Wait<unknown> | null = null;
  /** Whether the wait is for the connection (its timeout has its own text). */
  private connecting = false;
  /** Unsent packets: encoded here, sent in one write when a reply is needed (flush). */
  private out: Buffer = Buffer.allocUnsafe(2048);
  private outLen = 0;
  /** Whether the milter asked for rejected recipients too. */
  wantsRejectedRcpt = false;

  constructor(readonly settings: MilterSettings) {
    this.name = settings.endpoint;
    this.macroLists = { ...settings.macros };
  }

  /** The reply that stands for the connection after a connect/helo-level decision or an error. */
  get connectionReply(): Verdict { return this.state === 'reject-con' || this.state === 'error' ? this.defReply : null; }

  // ---- failure handling (milter8_comm_error / milter8_conf_error) ----

  private close(): void {
    this.outLen = 0;
    this.clearTimer();
    this.waiting = null;
    if (this.sock) this.sock.destroy();
    this.sock = null;
  }

  private commError(why: string): Verdict {
    this.settings.warn(`milter ${this.name}: ${why}`);
    this.close();
    const a = this.settings.defaultAction.toLowerCase();
    const replies: Record<string, Verdict> = {
      accept: null, reject: '550 5.5.0 Service unavailable', tempfail: '451 4.7.1 Service unavailable - try again later',
      shutdown: '421 4.7.1 Service unavailable - try again later', quarantine: 'H',
    };
    if (!Object.hasOwn(replies, a)) this.settings.warn(`milter ${this.name}: unrecognized default action: ${this.settings.defaultAction}`);
    this.defReply = Object.hasOwn(replies, a) ? replies[a]! : '451 4.3.5 Server configuration problem - try again later';
    this.state = 'error';
    return this.defReply;
  }

  private confError(why: string): Verdict {
    this.settings.warn(`milter ${this.name}: ${why}`);
    this.close();
    const a = this.settings.defaultAction.toLowerCase();
    this.defReply = a === 'accept' ? null : a === 'shutdown' ? '421 4.3.5 Server configuration problem - try again later'
      : a === 'quarantine' ? 'H' : '451 4.3.5 Server configuration problem - try again later';
    this.state = 'error';
    return this.defReply;
  }

  // ---- output: packets encoded into this.out ----

  private room(n: number): void {
    if (this.outLen + n <= this.out.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.outLen + n));
    this.out.copy(bigger, 0, 0, this.outLen);
    this.out = bigger;
  }

  /** Starts a packet (its length is filled in by end()); returns where it starts. */
  private begin(cmd: string, size: number): number {
    if (!this.sock) throw new Error('not connected');
    this.room(5 + size);
    const at = this.outLen;
    this.out[at + 4] = cmd.charCodeAt(0);
    this.outLen = at + 5;
    return at;
  }

  private end(at: number): void { this.out.writeUInt32BE(this.outLen - at - 4, at); }

  /** A NUL-terminated string (latin1, as the milter protocol's bytes). */
  private str(s: string): void {
    this.room(s.length + 1);
    this.outLen += this.out.write(s, this.outLen, 'latin1');
    this.out[this.outLen++] = 0;
  }

  private bytes(b: Uint8Array): void {
    this.room(b.length);
    this.out.set(b, this.outLen);
    this.outLen += b.length;
  }

  private u32(n: number): void {
    this.room(4);
    this.outLen = this.out.writeUInt32BE(n >>> 0, this.outLen);
  }

  /** A packet whose data is NUL-terminated strings. */
  private packet(cmd: string, ...items: string[]): void {
    const at = this.begin(cmd, 0);
    for (const s of items) this.str(s);
    this.end(at);
  }

  /** A MACRO packet: the code of the event that follows (one byte, no NUL), then name/value pairs. */
  private macroPacket(code: string, names: string[], macros: MacroSource): void {
    const at = this.begin(CMD.MACRO, 1);
    this.out[this.outLen++] = code.charCodeAt(0);
    for (const name of names) {
      const v = macros(name);
      if (v !== undefined && v !== '') {
        this.str(name);
        this.str(v);
      }
    }
    this.end(at);
  }

  /** A MACRO packet as bytes, for the steps of one message that all send the same one. */
  private macroBytes(code: string, names: string[], macros: MacroSource): Buffer {
    const start = this.outLen;
    this.macroPacket(code, names, macros);
    const b = Buffer.from(this.out.subarray(start, this.outLen));
    this.outLen = start;
    return b;
  }

  /**
   * Packets wait until a reply is needed or the conversation ends: a macro packet and its
   * event, or steps the milter does not answer, go out in one socket write.
   */
  private flush(): void {
    if (this.outLen === 0 || !this.sock) return;
    const chunk = this.out.subarray(0, this.outLen);
    this.outLen = 0;
    this.sock.write(chunk);
    // Written to the kernel at once (the usual case) the buffer is free again; otherwise the
    // socket holds on to it until the write completes and the next packets get a new one.
    if (this.sock.writableLength !== 0) this.out = Buffer.allocUnsafe(this.out.length);
  }

  // ---- input: reply packets to the waiting step ----

  /** One timer per conversation: it fires at the earliest deadline of a wait and checks. */
  private timer: NodeJS.Timeout | null = null;
  private timerDue = 0;
  private deadline = 0;
  private waitMs = 0;

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.onTimer, ms);
    this.timer.unref();
    this.timerDue = Date.now() + ms;
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (!this.waiting) return;
    const left = this.deadline - Date.now();
    if (left > 0) return this.arm(left);
    this.fail(new Error(this.connecting ? 'Connection timed out' : 'timeout while reading reply'));
  };

  /** Sends what is queued and waits for the reply (each packet restarts the timeout, as a new read does). */
  private expect<T>(timeout: number, wait: Wait<T>): void {
    this.flush();
    this.waiting = wait as Wait<unknown>;
    this.waitMs = timeout * 1000;
    this.deadline = Date.now() + this.waitMs;
    if (this.timer && this.timerDue > this.deadline) this.clearTimer();
    if (!this.timer) this.arm(this.waitMs);
    this.drain();
  }

  private fail(err: Error): void {
    const w = this.waiting;
    if (!w) return;
    this.waiting = null;
    this.connecting = false;
    w.done(w.error(err));
  }

  /** Hands one packet to the waiting step. */
  private deliver(cmd: number, data: Buffer): void {
    const w = this.waiting!;
    let result: unknown;
    try {
      result = w.packet(String.fromCharCode(cmd), data);
    } catch (err) {
      result = w.error(err as Error);
    }
    if (result === MORE) {
      this.deadline = Date.now() + this.waitMs;
      return;
    }
    // Cleared first: done() may start the next wait.
    this.waiting = null;
    w.done(result);
  }

  /** The length of the packet at `at`, or an error for a length no milter sends. */
  private static lengthAt(buf: Buffer, at: number): number | Error {
    const len = buf.readUInt32BE(at);
    if (len < 1) return new Error(`bad packet length: ${len}`);
    if (len > MAX_PACKET) return new Error(`unreasonable packet length: ${len} > ${MAX_PACKET}`);
    return len;
  }

  /** Packets received earlier, to the step that now waits; EOF when nothing more will come. */
  private drain(): void {
    while (this.waiting && this.pendingIn && this.pendingIn.length >= 4) {
      const buf = this.pendingIn;
      const len = Milter.lengthAt(buf, 0);
      if (len instanceof Error) return this.fail(len);
      if (buf.length < 4 + len) break;
      this.pendingIn = buf.length === 4 + len ? null : buf.subarray(4 + len);
      this.deliver(buf[4]!, buf.subarray(5, 4 + len));
    }
    if (this.waiting && (this.ended || !this.sock)) this.fail(new Error('EOF while reading reply'));
  }

  /** Bytes from the socket, in the thread's read buffer until this returns. */
  private received(n: number): void {
    let buf = readBuffer;
    let end = n;
    if (this.pendingIn) {
      buf = Buffer.concat([this.pendingIn, readBuffer.subarray(0, n)]);
      end = buf.length;
      this.pendingIn = null;
    }
    let pos = 0;
    while (this.waiting && end - pos >= 4) {
      const len = Milter.lengthAt(buf, pos);
      if (len instanceof Error) return this.fail(len);
      if (end - pos < 4 + len) break;
      const at = pos;
      pos += 4 + len;
      this.deliver(buf[at + 4]!, buf.subarray(at + 5, at + 4 + len));
    }
    // Keep the rest (a copy: the read buffer is reused) unless the conversation was closed.
    if (pos < end && this.sock) this.pendingIn = buf === readBuffer ? Buffer.from(buf.subarray(pos, end)) : buf.subarray(pos, end);
  }

  private readonly gone = (): void => {
    this.ended = true;
    if (this.waiting && !this.connecting) this.fail(new Error('EOF while reading reply'));
  };

  // ---- negotiation ----

  /** Connects and negotiates; a failure leaves the milter answering with its default action. */
  open(): Promise<void> {
    return new Promise((resolve) => this.openCb(resolve));
  }

  openCb(done: () => void): void {
    let proto = protocols.get(this.settings.protocol);
    if (proto === undefined) {
      proto = protocolOf(this.settings.protocol);
      if (protocols.size < 100) protocols.set(this.settings.protocol, proto);
    }
    if (!proto) {
      this.confError(`bad protocol information: ${this.settings.protocol}`);
      return done();
    }
    this.myEvents = proto.events;
    const ep = endpointOf(this.name, this.settings.queueDirectory);
    if (!('opts' in ep)) {
      if (ep.warning) this.settings.warn(ep.warning);
      this.confError(ep.error);
      return done();
    }
    const version = proto.version;
    const events = proto.events;
    // Replies are read into one buffer shared by the thread's milter sockets (see received()).
    const sock = net.connect({ ...ep.opts, noDelay: true, onread: { buffer: readBuffer, callback: (n: number) => { this.received(n); return true; } } });
    this.sock = sock;
    this.connecting = true;
    this.waiting = {
      packet: () => MORE,
      error: (err) => {
        this.settings.warn(`connect to Milter service ${this.name}: ${err.message}`);
        this.commError('connection failed');
      },
      done,
    } satisfies Wait<void>;
    this.deadline = Date.now() + this.settings.connectTimeout * 1000;
    this.arm(this.settings.connectTimeout * 1000);
    sock.on('error', (err) => {
      if (this.connecting) this.fail(err);
      else this.gone();
    });
    sock.on('end', this.gone);
    sock.on('close', this.gone);
    sock.once('connect', () => {
      if (!this.connecting) return;
      this.connecting = false;
      this.waiting = null;
      const handshakeError = (err: Error) => { this.commError(`read error in initial handshake: ${err.message}`); };
      try {
        const at = this.begin(CMD.OPTNEG, 12);
        this.u32(version);
        this.u32(MY_ACTIONS);
        this.u32(events);
        this.end(at);
      } catch (err) {
        handshakeError(err as Error);
        return done();
      }
      this.expect(this.settings.commandTimeout, {
        packet: (cmd, data) => this.negotiated(cmd, data, version),
        error: handshakeError,
        done,
      } satisfies Wait<void>);
    });
  }

  /** The milter's OPTNEG reply (a PacketReader error is the handshake's read error). */
  private negotiated(cmd: string, data: Buffer, version: number): void {
    if (cmd !== REPLY.OPTNEG) {
      this.commError(`unexpected reply "${cmd}" in initial handshake`);
      return;
    }
    const p = new PacketReader(data);
    this.version = p.u32();
    this.actions = p.u32();
    this.steps = p.u32();
    if (this.version > version) {
      this.commError(`protocol version ${this.version} conflict with MTA protocol version ${version}`);
      return;
    }
    if ((this.actions & MY_ACTIONS) !== this.actions) {
      this.commError(`request mask 0x${this.actions.toString(16)} conflict with MTA request mask 0x${MY_ACTIONS.toString(16)}`);
      return;
    }
    this.wantsRejectedRcpt = (this.steps & SMFIP.RCPT_REJ) !== 0;
    // Events the milter's (older) version does not know are not sent.
    // Steps we did not offer are ignored (never "no reply" for a step we did not announce).
    this.steps &= this.myEvents;
    if (this.version < 4) this.steps |= SMFIP.NODATA;
    if (this.version < 3) this.steps |= SMFIP.NOUNKNOWN;
    // SETSYMLIST: the milter's own macro lists win.
    while (p.left > 0) {
      const stage = STAGES[p.u32()];
      const names = p.str();
      if (stage) this.macroLists[stage] = names.split(/[\s,]+/).filter(Boolean);
    }
    this.state = 'ready';
  }

  // ---- events ----

  /** Sends macros then one event; waits for its verdict unless the step has no reply. */
  private event(cmd: string, stage: Stage | null, macros: MacroSource, skip: number, noReply: number,
    timeout: number, write: () => void, done: Done<Verdict>): void {
    if (this.state === 'error' || this.state === 'reject-con') return done(this.defReply);
    if (this.state !== 'ready') return done(null);
    let sent: boolean;
    try {
      if (stage) this.macroPacket(cmd, this.macroLists[stage], macros);
      sent = !(skip && (this.steps & skip));
      if (sent) write();
    } catch (err) {
      return done(this.commError((err as Error).message));
    }
    if (!sent || (noReply && (this.steps & noReply))) return done(null);
    this.awaitVerdict(cmd, timeout, done);
  }

  private awaitVerdict(cmd: string, timeout: number, done: Done<Verdict>): void {
    const atConnect = cmd === CMD.CONNECT || cmd === CMD.HELO;
    this.expect(timeout, {
      packet: (r, data) => {
        const v = this.verdictOf(cmd, atConnect, r, data);
        return v === undefined ? MORE : v;
      },
      error: (err) => this.commError(err.message),
      done,
    } satisfies Wait<Verdict>);
  }

  /** The verdict a reply packet stands for; undefined: progress, wait on. */
  private verdictOf(cmd: string, atConnect: boolean, r: string, data: Buffer): Verdict | undefined {
    switch (r) {
      case REPLY.PROGRESS: return undefined;
      case REPLY.CONTINUE: return null;
      case REPLY.SKIP: return 'skip';
      case REPLY.ACCEPT:
        this.state = atConnect ? 'accept-con' : 'accept-msg';
        if (atConnect) this.close();
        return null;
      case REPLY.DISCARD:
        if (atConnect) {
          this.settings.warn(`milter ${this.name}: DISCARD action is not allowed for connect or helo`);
          return this.defReply;
        }
        this.state = 'accept-msg';
        return 'D';
      case REPLY.REJECT:
        return this.rejected(atConnect, '550 5.7.1 Command rejected');
      case REPLY.TEMPFAIL:
        return this.rejected(atConnect, '451 4.7.1 Service unavailable - try again later');
      case REPLY.SHUTDOWN:
        this.state = 'reject-con';
        this.close();
        return (this.defReply = 'S');
      case REPLY.REPLYCODE: {
        const text = new PacketReader(data).str();
        if (!/^[45]\d\d[ -]/.test(text) || (/^\d/.test(text[4] ?? '') && text[4] !== text[0])) {
          return this.confError(`malformed reply: ${text}`);
        }
        // Sendmail uses the reply as a format string: "%%" is "%", a lone "%" goes.
        let reply = text.replace(/%(%?)/g, '$1').replace(/\r?\n/g, '\r\n');
        // soft_bounce: each line's "5" code and "5" status class become "4" (milter8.c).
        if (this.settings.softBounce) reply = reply.split('\r\n').map((l) => (l.startsWith('5') ? `4${l.slice(1, 4)}${l[4] === '5' ? '4' : l.slice(4, 5)}${l.slice(5)}` : l)).join('\r\n');
        if (atConnect || reply.startsWith('421')) {
          this.state = 'reject-con';
          this.close();
          return (this.defReply = reply);
        }
        return reply;
      }
      default:
        return this.commError(`unexpected filter response ${r} after event ${cmd}`);
    }
  }

  private rejected(atConnect: boolean, reply: string): Verdict {
    if (!atConnect) return reply;
    this.state = 'reject-con';
    this.close();
    return (this.defReply = reply);
  }

  connectCb(peer: ConnectInfo, macros: MacroSource, done: Done<Verdict>): void {
    const ip = net.isIP(peer.addr);
    const family = ip === 6 ? '6' : ip === 4 ? '4' : 'U';
    const name = peer.name === 'unknown' ? `[${peer.addr}]` : peer.name;
    this.event(CMD.CONNECT, 'connect', macros, SMFIP.NOCONNECT, SMFIP.NR_CONN, this.settings.connectTimeout, () => {
      const at = this.begin(CMD.CONNECT, 0);
      this.str(name);
      this.out[this.outLen++] = family.charCodeAt(0);
      if (family !== 'U') {
        this.bytes(Buffer.from([(peer.port >> 8) & 0xff, peer.port & 0xff]));
        this.str(peer.addr);
      }
      this.end(at);
    }, done);
  }

  heloCb(name: string, macros: MacroSource, done: Done<Verdict>): void {
    this.event(CMD.HELO, 'helo', macros, SMFIP.NOHELO, SMFIP.NR_HELO, this.settings.commandTimeout, () => this.packet(CMD.HELO, name), done);
  }

  mailCb(sender: string, args: string[], macros: MacroSource, done: Done<Verdict>): void {
    if (this.state === 'accept-msg') this.state = 'ready';
    this.event(CMD.MAIL, 'mail', macros, SMFIP.NOMAIL, SMFIP.NR_MAIL, this.settings.commandTimeout,
      () => this.packet(CMD.MAIL, `<${sender}>`, ...args), done);
  }

  rcptCb(recipient: string, args: string[], macros: MacroSource, done: Done<Verdict>): void {
    this.event(CMD.RCPT, 'rcpt', macros, SMFIP.NORCPT, SMFIP.NR_RCPT, this.settings.commandTimeout,
      () => this.packet(CMD.RCPT, `<${recipient}>`, ...args), done);
  }

  dataCb(macros: MacroSource, done: Done<Verdict>): void {
    this.event(CMD.DATA, 'data', macros, SMFIP.NODATA, SMFIP.NR_DATA, this.settings.commandTimeout, () => this.packet(CMD.DATA), done);
  }

  unknownCb(command: string, macros: MacroSource, done: Done<Verdict>): void {
    this.event(CMD.UNKNOWN, 'unknown', macros, SMFIP.NOUNKNOWN, SMFIP.NR_UNKN, this.settings.commandTimeout, () => this.packet(CMD.UNKNOWN, command), done);
  }

  connect(peer: ConnectInfo, macros: MacroSource): Promise<Verdict> { return new Promise((r) => this.connectCb(peer, macros, r)); }
  helo(name: string, macros: MacroSource): Promise<Verdict> { return new Promise((r) => this.heloCb(name, macros, r)); }
  mail(sender: string, args: string[], macros: MacroSource): Promise<Verdict> { return new Promise((r) => this.mailCb(sender, args, macros, r)); }
  rcpt(recipient: string, args: string[], macros: MacroSource): Promise<Verdict> { return new Promise((r) => this.rcptCb(recipient, args, macros, r)); }
  data(macros: MacroSource): Promise<Verdict> { return new Promise((r) => this.dataCb(macros, r)); }
  unknown(command: string, macros: MacroSource): Promise<Verdict> { return new Promise((r) => this.unknownCb(command, macros, r)); }

  /**
   * The message: headers (each [name, value] with the value as after the colon, folded lines
   * joined by "\n"), end of headers, the body in chunks, end of message. Resolves to the verdict
   * and, when the milter let the message through, its edits.
   */
  content(headers: [string, string][], body: Buffer, macros: MacroSource): Promise<ContentVerdict> {
    return new Promise((r) => this.contentCb(headers, body, macros, r));
  }

  contentCb(headers: [string, string][], body: Buffer, macros: MacroSource, done: Done<ContentVerdict>): void {
    if (this.state === 'error' || this.state === 'reject-con') return done({ verdict: this.defReply, edits: [] });
    if (this.state !== 'ready') return done({ verdict: null, edits: [] });
    const t = this.settings.contentTimeout;
    const stop = (v: Verdict) => done({ verdict: v === 'skip' ? null : v, edits: [] });
    let hdrMacros: Buffer;
    let bodyMacros: Buffer;
    try {
      // The macros cannot change during the message: each stage's MACRO packet is built once.
      hdrMacros = this.macroBytes(CMD.HEADER, this.macroLists.eoh, macros);
      bodyMacros = this.macroBytes(CMD.BODY, this.macroLists.eom, macros);
    } catch (err) {
      return stop(this.commError((err as Error).message));
    }
    const leadSpace = (this.steps & SMFIP.HDR_LEADSPC) !== 0;
    /*
     * Each step that the milter answers waits for its reply before the next goes out, as
     * Postfix's milter8 does: a milter may reject or accept at any header, and a milter that
     * is not libmilter may answer steps sent after that, which would put its replies out of
     * step with ours. Steps it does not answer (SMFIP_NR_*) wait in the output buffer and go
     * out in one write with the next step that is answered.
     */
    let header = 0; // the next header field
    let phase = 0; // 0 headers, 1 end of headers, 2 body, 3 end of message
    let off = 0; // the next body chunk
    let cmd = '';
    const answered = (v: Verdict): void => {
      // SKIP answers a body chunk: the rest of the body is not sent.
      if (cmd === CMD.BODY && v === 'skip') phase = 3;
      else if (v !== null || this.state !== 'ready') return stop(v);
      next();
    };
    const next = (): void => {
      let skip: number;
      let noReply: number;
      try {
        for (;;) {
          if (phase === 0 && header === headers.length) phase = 1;
          if (phase === 2 && off >= body.length) phase = 3;
          if (phase === 3) break;
          if (phase === 0) {
            const [name, raw] = headers[header++]!;
            this.bytes(hdrMacros);
            cmd = CMD.HEADER; skip = SMFIP.NOHDRS; noReply = SMFIP.NR_HDR;
            if (this.steps & skip) continue;
            const at = this.begin(cmd, 0);
            this.str(name);
            this.str(!leadSpace && raw.charCodeAt(0) === 0x20 ? raw.slice(1) : raw);
            this.end(at);
          } else if (phase === 1) {
            phase = 2;
            this.macroPacket(CMD.EOH, this.macroLists.eoh, macros);
            cmd = CMD.EOH; skip = SMFIP.NOEOH; noReply = SMFIP.NR_EOH;
            if (this.steps & skip) continue;
            this.end(this.begin(cmd, 0));
          } else {
            this.bytes(bodyMacros);
            cmd = CMD.BODY; skip = SMFIP.NOBODY; noReply = SMFIP.NR_BODY;
            const chunk = body.subarray(off, off + CHUNK);
            off += CHUNK;
            if (this.steps & skip) continue;
            const at = this.begin(cmd, chunk.length);
            this.bytes(chunk);
            this.end(at);
          }
          if (this.steps & noReply) continue;
          return this.awaitVerdict(cmd, t, answered);
        }
        if ((this.state as State) === 'error' || (this.state as State) === 'reject-con') return done({ verdict: this.defReply, edits: [] });
        if ((this.state as State) !== 'ready') return stop(null);
        this.macroPacket(CMD.EOM, this.macroLists.eom, macros);
        this.end(this.begin(CMD.EOM, 0));
      } catch (err) {
        return stop(this.commError((err as Error).message));
      }
      this.endOfMessage(t, done);
    };
    next();
  }

  /** The milter's modification requests, then its final reply. */
  private endOfMessage(timeout: number, done: Done<ContentVerdict>): void {
    const edits: Edit[] = [];
    let body: Buffer[] | null = null;
    const need = (flag: number, what: string) => {
      if (!(this.actions & flag)) throw new Error(`unexpected filter response ${what} after event E`);
    };
    this.expect(timeout, {
      packet: (r, data): ContentVerdict | typeof MORE => {
        const p = new PacketReader(data);
        switch (r) {
          case REPLY.ADDHEADER: need(SMFIF.ADDHDRS, r); edits.push({ op: 'addheader', name: p.str(), value: p.str() }); return MORE;
          case REPLY.INSHEADER: need(SMFIF.ADDHDRS, r); edits.push({ op: 'insheader', index: p.u32(), name: p.str(), value: p.str() }); return MORE;
          case REPLY.CHGHEADER: {
            need(SMFIF.CHGHDRS, r);
            const index = p.u32();
            const name = p.str();
            if (!name) return { verdict: this.confError('null change header name'), edits: [] };
            edits.push({ op: 'chgheader', index: Math.max(index, 1), name, value: p.str() });
            return MORE;
          }
          case REPLY.CHGFROM: { need(SMFIF.CHGFROM, r); const sender = p.str(); edits.push({ op: 'chgfrom', sender, args: p.left ? p.str() : '' }); return MORE; }
          case REPLY.ADDRCPT: need(SMFIF.ADDRCPT, r); edits.push({ op: 'addrcpt', recipient: p.str(), args: '' }); return MORE;
          case REPLY.ADDRCPT_PAR: { need(SMFIF.ADDRCPT_PAR, r); const recipient = p.str(); edits.push({ op: 'addrcpt', recipient, args: p.left ? p.str() : '' }); return MORE; }
          case REPLY.DELRCPT: need(SMFIF.DELRCPT, r); edits.push({ op: 'delrcpt', recipient: p.str() }); return MORE;
          // A copy: the packet is a view of the read buffer.
          case REPLY.REPLBODY: need(SMFIF.CHGBODY, r); (body ??= []).push(Buffer.from(p.rest())); return MORE;
          case REPLY.PROGRESS: return MORE;
          case REPLY.QUARANTINE: need(SMFIF.QUARANTINE, r); edits.push({ op: 'quarantine', reason: p.str() }); return MORE;
          default: {
            // The final reply.
            const verdict = this.verdictOf(CMD.EOM, false, r, data)!;
            if (body) {
              if (edits.some((e) => e.op !== 'quarantine')) {
                return { verdict: this.confError('body replacement requests can\'t currently be mixed with other requests'), edits: [] };
              }
              edits.push({ op: 'replbody', body: Buffer.concat(body) });
            }
            const final = verdict === 'skip' ? null : verdict;
            // After a reject/tempfail/discard the edits do not matter.
            return { verdict: final, edits: final === null ? edits : [] };
          }
        }
      },
      error: (err) => ({ verdict: this.commError(err.message), edits: [] }),
      done,
    } satisfies Wait<ContentVerdict>);
  }

  /** The transaction ends without a message (RSET, or a rejected DATA). */
  abort(): void {
    if (this.state === 'ready' || this.state === 'accept-msg') {
      try { this.packet(CMD.ABORT); this.flush(); } catch { /* closed */ }
      this.state = 'ready';
    }
  }

  /** The SMTP session ends. */
  quit(): void {
    this.clearTimer();
    this.waiting = null;
    if (this.sock) {
      try { this.packet(CMD.QUIT); this.flush(); } catch { /* closed */ }
      // QUIT went to the kernel whole: close as Postfix does, without a half-close first
      // (one system call instead of shutdown, then waiting for the milter's FIN to close).
      if (this.sock.writableLength === 0) this.sock.destroy();
      else this.sock.end();
    }
    this.sock = null;
    this.pendingIn = null;
    if (this.state !== 'error') this.state = 'closed';
  }
}
