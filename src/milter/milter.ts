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
 */
import * as net from 'node:net';
import { CHUNK, CMD, MAX_PACKET, MY_ACTIONS, packet, PacketReader, protocolOf, REPLY, SMFIF, SMFIP } from './protocol.js';

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

/** The read buffer of this thread's milter sockets (see open()). */
const readBuffer = Buffer.alloc(65536);

type State = 'closed' | 'ready' | 'accept-con' | 'accept-msg' | 'reject-con' | 'error';

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
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private ended = false;
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
    this.out = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
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

  // ---- socket I/O ----

  private async read(timeout: number): Promise<{ cmd: string; data: Buffer }> {
    this.flush();
    let deadline = 0;
    for (;;) {
      const buf = this.buf;
      if (buf.length >= 4) {
        const len = buf.readUInt32BE(0);
        if (len < 1) throw new Error(`bad packet length: ${len}`);
        if (len > MAX_PACKET) throw new Error(`unreasonable packet length: ${len} > ${MAX_PACKET}`);
        if (buf.length >= 4 + len) {
          const cmd = String.fromCharCode(buf[4]!);
          // A view, not a copy: each 'data' chunk is a buffer of its own, never reused.
          const data = buf.subarray(5, 4 + len);
          this.buf = buf.subarray(4 + len);
          return { cmd, data };
        }
      }
      if (this.ended || !this.sock) throw new Error('EOF while reading reply');
      const now = Date.now();
      deadline ||= now + timeout * 1000;
      const left = deadline - now;
      if (left <= 0) throw new Error('timeout while reading reply');
      await this.wait(left);
    }
  }

  /**
   * One timer for the whole conversation, re-armed per wait (refresh) instead of a new
   * setTimeout/clearTimeout pair per reply: a milter reply is a dozen waits per message.
   */
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private timedOut: (() => void) | null = null;

  private wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiter = () => { this.waiter = null; this.timedOut = null; resolve(); };
      this.timedOut = this.waiter;
      if (this.timer && this.timerMs === ms) this.timer.refresh();
      else {
        if (this.timer) clearTimeout(this.timer);
        this.timerMs = ms;
        this.timer = setTimeout(() => this.timedOut?.(), ms);
        this.timer.unref();
      }
    });
  }

  /**
   * Packets wait here until a reply is needed (read) or the conversation ends: a macro packet
   * and its event, or headers the milter does not answer, go out in one socket write instead of
   * one system call each (the per-packet writes were most of the milter's cost on the smtpd
   * thread).
   */
  private out: Buffer[] = [];

  private write(buf: Buffer): void {
    if (!this.sock) throw new Error('not connected');
    this.out.push(buf);
  }

  private flush(): void {
    if (this.out.length === 0 || !this.sock) return;
    this.sock.write(this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out));
    this.out = [];
  }

  /** Bytes from the socket (a view of the shared read buffer: copied before it is reused). */
  private received(b: Uint8Array, n: number): void {
    const d = Buffer.from(b.buffer, b.byteOffset, n);
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : Buffer.from(d);
    // Wake the reader once a whole packet (or a bad length) is here.
    if (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (this.buf.length >= 4 + len || len < 1 || len > MAX_PACKET) this.waiter?.();
    }
  }

  // ---- negotiation ----

  /** Connects and negotiates; a failure leaves the milter answering with its default action. */
  async open(): Promise<void> {
    const proto = protocolOf(this.settings.protocol);
    if (!proto) {
      this.confError(`bad protocol information: ${this.settings.protocol}`);
      return;
    }
    this.myEvents = proto.events;
    const colon = this.name.indexOf(':');
    const transport = colon > 0 ? this.name.slice(0, colon) : '';
    const endpoint = colon > 0 ? this.name.slice(colon + 1) : '';
    let opts: net.NetConnectOpts;
    if (transport === 'inet') {
      const c = endpoint.lastIndexOf(':');
      const host = endpoint.slice(0, c).replace(/^\[(.*)\]$/, '$1');
      const port = Number(endpoint.slice(c + 1));
      if (c <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
        this.confError(`bad inet endpoint: ${endpoint}`);
        return;
      }
      opts = { host, port };
    } else if (transport === 'unix' || transport === 'local') {
      opts = { path: endpoint.startsWith('/') ? endpoint : `${this.settings.queueDirectory}/${endpoint}` };
    } else if (!endpoint || !transport) {
      this.confError(`Milter service needs transport:endpoint instead of "${this.name}"`);
      return;
    } else {
      this.settings.warn(`invalid transport name: ${transport} in Milter service: ${this.name}`);
      this.confError('configuration error');
      return;
    }
    // Replies are read into one buffer shared by the thread's milter sockets and copied out
    // at once, instead of a new 64 KiB read buffer per read (a dozen reads per message).
    opts.onread = { buffer: readBuffer, callback: (n: number, b: Uint8Array) => { this.received(b, n); return true; } };
    try {
      this.sock = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(opts);
        const t = setTimeout(() => { s.destroy(); reject(new Error('Connection timed out')); }, this.settings.connectTimeout * 1000);
        s.once('connect', () => { clearTimeout(t); resolve(s); });
        s.once('error', (e) => { clearTimeout(t); reject(e); });
      });
    } catch (err) {
      this.settings.warn(`connect to Milter service ${this.name}: ${(err as Error).message}`);
      this.commError('connection failed');
      return;
    }
    const sock = this.sock;
    sock.setNoDelay(true);
    const gone = () => { this.ended = true; this.waiter?.(); };
    sock.on('end', gone);
    sock.on('close', gone);
    sock.on('error', gone);
    try {
      this.write(packet(CMD.OPTNEG, proto.version, MY_ACTIONS, proto.events));
      const r = await this.read(this.settings.commandTimeout);
      if (r.cmd !== REPLY.OPTNEG) {
        this.commError(`unexpected reply "${r.cmd}" in initial handshake`);
        return;
      }
      const p = new PacketReader(r.data);
      this.version = p.u32();
      this.actions = p.u32();
      this.steps = p.u32();
      if (this.version > proto.version) {
        this.commError(`protocol version ${this.version} conflict with MTA protocol version ${proto.version}`);
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
    } catch (err) {
      this.commError(`read error in initial handshake: ${(err as Error).message}`);
    }
  }

  // ---- events ----

  /** Sends macros then one event; waits for its verdict unless the step has no reply. */
  private async event(cmd: string, stage: Stage | null, macros: MacroSource, skip: number, noReply: number,
    timeout: number, data: (string | number | Buffer)[]): Promise<Verdict> {
    if (this.state === 'error' || this.state === 'reject-con') return this.defReply;
    if (this.state !== 'ready') return null;
    try {
      if (stage) this.write(macroFrame(cmd, this.macroLists[stage], macros));
      if (skip && (this.steps & skip)) return null;
      this.write(packet(cmd, ...data));
      if (noReply && (this.steps & noReply)) return null;
      return await this.verdict(cmd, timeout);
    } catch (err) {
      return this.commError((err as Error).message);
    }
  }

  private async verdict(cmd: string, timeout: number): Promise<Verdict> {
    const atConnect = cmd === CMD.CONNECT || cmd === CMD.HELO;
    for (;;) {
      const r = await this.read(timeout);
      switch (r.cmd) {
        case REPLY.PROGRESS: continue;
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
          const text = new PacketReader(r.data).str();
          if (!/^[45]\d\d[ -]/.test(text) || (/^\d/.test(text[4] ?? '') && text[4] !== text[0])) {
            return this.confError(`malformed reply: ${text}`);
          }
          // Sendmail uses the reply as a format string: "%%" is "%", a lone "%" goes.
          const reply = text.replace(/%(%?)/g, '$1').replace(/\r?\n/g, '\r\n');
          if (atConnect || reply.startsWith('421')) {
            this.state = 'reject-con';
            this.close();
            return (this.defReply = reply);
          }
          return reply;
        }
        default:
          return this.commError(`unexpected filter response ${r.cmd} after event ${cmd}`);
      }
    }
  }

  private rejected(atConnect: boolean, reply: string): Verdict {
    if (!atConnect) return reply;
    this.state = 'reject-con';
    this.close();
    return (this.defReply = reply);
  }

  connect(peer: ConnectInfo, macros: MacroSource): Promise<Verdict> {
    const v6 = net.isIPv6(peer.addr);
    const family = net.isIP(peer.addr) ? (v6 ? '6' : '4') : 'U';
    const name = peer.name === 'unknown' ? `[${peer.addr}]` : peer.name;
    const data: (string | number | Buffer)[] = family === 'U'
      ? [name, Buffer.from('U')]
      : [name, Buffer.from(family), Buffer.from([(peer.port >> 8) & 0xff, peer.port & 0xff]), peer.addr];
    return this.event(CMD.CONNECT, 'connect', macros, SMFIP.NOCONNECT, SMFIP.NR_CONN, this.settings.connectTimeout, data);
  }

  helo(name: string, macros: MacroSource): Promise<Verdict> {
    return this.event(CMD.HELO, 'helo', macros, SMFIP.NOHELO, SMFIP.NR_HELO, this.settings.commandTimeout, [name]);
  }

  async mail(sender: string, args: string[], macros: MacroSource): Promise<Verdict> {
    if (this.state === 'accept-msg') this.state = 'ready';
    return this.event(CMD.MAIL, 'mail', macros, SMFIP.NOMAIL, SMFIP.NR_MAIL, this.settings.commandTimeout, [`<${sender}>`, ...args]);
  }

  rcpt(recipient: string, args: string[], macros: MacroSource): Promise<Verdict> {
    return this.event(CMD.RCPT, 'rcpt', macros, SMFIP.NORCPT, SMFIP.NR_RCPT, this.settings.commandTimeout, [`<${recipient}>`, ...args]);
  }

  data(macros: MacroSource): Promise<Verdict> {
    return this.event(CMD.DATA, 'data', macros, SMFIP.NODATA, SMFIP.NR_DATA, this.settings.commandTimeout, []);
  }

  unknown(command: string, macros: MacroSource): Promise<Verdict> {
    return this.event(CMD.UNKNOWN, 'unknown', macros, SMFIP.NOUNKNOWN, SMFIP.NR_UNKN, this.settings.commandTimeout, [command]);
  }

  /**
   * The message: headers (each [name, value] with the value as after the colon, folded lines
   * joined by "\n"), end of headers, the body in chunks, end of message. Returns the verdict
   * and, when the milter let the message through, its edits.
   */
  async content(headers: [string, string][], body: Buffer, macros: MacroSource): Promise<{ verdict: Verdict; edits: Edit[] }> {
    const none = { edits: [] as Edit[] };
    if (this.state === 'error' || this.state === 'reject-con') return { verdict: this.defReply, ...none };
    if (this.state !== 'ready') return { verdict: null, ...none };
    const t = this.settings.contentTimeout;
    // The macros cannot change during the message: each stage's MACRO packet is built once.
    const hdrMacros = macroFrame(CMD.HEADER, this.macroLists.eoh, macros);
    const bodyMacros = macroFrame(CMD.BODY, this.macroLists.eom, macros);
    /*
     * Each step that the milter answers waits for its reply before the next goes out, as
     * Postfix's milter8 does: a milter may reject or accept at any header, and a milter that
     * is not libmilter may answer steps sent after that, which would put its replies out of
     * step with ours. Steps it does not answer (SMFIP_NR_*) wait in the output buffer and go
     * out in one write with the next step that is answered.
     */
    const step = async (frame: Buffer, cmd: string, skip: number, noReply: number, data: (string | Buffer)[]): Promise<Verdict> => {
      this.write(frame);
      if (this.steps & skip) return null;
      this.write(packet(cmd, ...data));
      if (this.steps & noReply) return null;
      return this.verdict(cmd, t);
    };
    const stop = (v: Verdict) => ({ verdict: v === 'skip' ? null : v, ...none });
    try {
      for (const [name, raw] of headers) {
        const v = await step(hdrMacros, CMD.HEADER, SMFIP.NOHDRS, SMFIP.NR_HDR, [name, this.steps & SMFIP.HDR_LEADSPC ? raw : raw.replace(/^ /, '')]);
        if (v !== null || this.state !== 'ready') return stop(v);
      }
      let v = await step(macroFrame(CMD.EOH, this.macroLists.eoh, macros), CMD.EOH, SMFIP.NOEOH, SMFIP.NR_EOH, []);
      if (v !== null || this.state !== 'ready') return stop(v);
      for (let off = 0; off < body.length; off += CHUNK) {
        v = await step(bodyMacros, CMD.BODY, SMFIP.NOBODY, SMFIP.NR_BODY, [body.subarray(off, off + CHUNK)]);
        if (v === 'skip') break;
        if (v !== null || this.state !== 'ready') return stop(v);
      }
      if ((this.state as State) === 'error' || (this.state as State) === 'reject-con') return { verdict: this.defReply, ...none };
      if ((this.state as State) !== 'ready') return stop(null);
      this.write(macroFrame(CMD.EOM, this.macroLists.eom, macros));
      this.write(packet(CMD.EOM));
      return await this.endOfMessage(t);
    } catch (err) {
      return { verdict: this.commError((err as Error).message), ...none };
    }
  }

  private async endOfMessage(timeout: number): Promise<{ verdict: Verdict; edits: Edit[] }> {
    const edits: Edit[] = [];
    let body: Buffer[] | null = null;
    const need = (flag: number, what: string) => {
      if (!(this.actions & flag)) throw new ProtocolError(`unexpected filter response ${what} after event E`);
    };
    try {
      for (;;) {
        const r = await this.read(timeout);
        const p = new PacketReader(r.data);
        switch (r.cmd) {
          case REPLY.ADDHEADER: need(SMFIF.ADDHDRS, r.cmd); edits.push({ op: 'addheader', name: p.str(), value: p.str() }); continue;
          case REPLY.INSHEADER: need(SMFIF.ADDHDRS, r.cmd); edits.push({ op: 'insheader', index: p.u32(), name: p.str(), value: p.str() }); continue;
          case REPLY.CHGHEADER: {
            need(SMFIF.CHGHDRS, r.cmd);
            const index = p.u32();
            const name = p.str();
            if (!name) return { verdict: this.confError('null change header name'), edits: [] };
            edits.push({ op: 'chgheader', index: Math.max(index, 1), name, value: p.str() });
            continue;
          }
          case REPLY.CHGFROM: { need(SMFIF.CHGFROM, r.cmd); const sender = p.str(); edits.push({ op: 'chgfrom', sender, args: p.left ? p.str() : '' }); continue; }
          case REPLY.ADDRCPT: need(SMFIF.ADDRCPT, r.cmd); edits.push({ op: 'addrcpt', recipient: p.str(), args: '' }); continue;
          case REPLY.ADDRCPT_PAR: { need(SMFIF.ADDRCPT_PAR, r.cmd); const recipient = p.str(); edits.push({ op: 'addrcpt', recipient, args: p.left ? p.str() : '' }); continue; }
          case REPLY.DELRCPT: need(SMFIF.DELRCPT, r.cmd); edits.push({ op: 'delrcpt', recipient: p.str() }); continue;
          case REPLY.REPLBODY: need(SMFIF.CHGBODY, r.cmd); (body ??= []).push(p.rest()); continue;
          case REPLY.QUARANTINE: need(SMFIF.QUARANTINE, r.cmd); edits.push({ op: 'quarantine', reason: p.str() }); continue;
          case REPLY.PROGRESS: continue;
          default: {
            // The final reply: put the stream back and let verdict() read it.
            this.buf = Buffer.concat([packet(r.cmd, r.data), this.buf]);
            const verdict = await this.verdict(CMD.EOM, timeout);
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
      }
    } catch (err) {
      if (err instanceof ProtocolError) return { verdict: this.commError(err.message), edits: [] };
      return { verdict: this.commError((err as Error).message), edits: [] };
    }
  }

  /** The transaction ends without a message (RSET, or a rejected DATA). */
  abort(): void {
    if (this.state === 'ready' || this.state === 'accept-msg') {
      try { this.write(packet(CMD.ABORT)); this.flush(); } catch { /* closed */ }
      this.state = 'ready';
    }
  }

  /** The SMTP session ends. */
  quit(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.sock) {
      try { this.write(packet(CMD.QUIT)); this.flush(); } catch { /* closed */ }
      // QUIT went to the kernel whole: close as Postfix does, without a half-close first
      // (one system call instead of shutdown, then waiting for the milter's FIN to close).
      if (this.sock.writableLength === 0) this.sock.destroy();
      else this.sock.end();
    }
    this.sock = null;
    if (this.state !== 'error') this.state = 'closed';
  }
}

class ProtocolError extends Error {}

/** A MACRO packet: the code of the event that follows (one byte, no NUL), then name/value pairs. */
function macroFrame(code: string, names: string[], macros: MacroSource): Buffer {
  const items: string[] = [];
  for (const name of names) {
    const v = macros(name);
    if (v !== undefined && v !== '') items.push(name, v);
  }
  return packet(CMD.MACRO, Buffer.from(code, 'latin1'), ...items);
}
