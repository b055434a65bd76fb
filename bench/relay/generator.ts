/**
 * bench/relay/generator.ts — an smtp-source-like SMTP load generator on node:net.
 *
 * It shares the machine's two cores with the MTA under test, so it is kept lean:
 * - every byte it sends is built once up front (commands and the whole DATA payload,
 *   dot-terminated); only the unique-recipient mode (-N) formats RCPT lines per message;
 * - replies are parsed on the raw Buffer by byte codes; text is decoded only for errors;
 * - no pipelining (like smtp-source): one command, one reply.
 *
 * One message = [connect, 220, EHLO, 250] MAIL, 250, RCPT×n, 250, DATA, 354, payload, 250
 * [QUIT, 221]. By default every message gets its own connection (smtp-source without -d);
 * `reuse` sends many messages per connection (smtp-source -d).
 *
 * Latency of a message: from connect (or, on a reused connection, from sending MAIL) to the
 * 250 that accepts the DATA; recorded in microseconds in a node:perf_hooks histogram. A second
 * histogram holds the accept latency proper: from the end of DATA (the payload's last byte
 * handed to the socket) to that 250.
 *
 * Closed loop by default: `sessions` connections, each starting its next message when the last
 * one ended, so the offered load follows the server. Open loop (`rate` > 0, smtp-source has no
 * such mode): a new connection every 1/rate s whatever the server does, each carrying one message,
 * with at most `sessions` × 50 open at once (beyond that a message counts as not started); the
 * accept latency then shows queueing in the server instead of being hidden by the generator.
 *
 * Bounded in count and in time: at most `messages` transactions are started, and after
 * `timeLimitMs` every open connection is destroyed and run() resolves with what it got.
 *
 * Standalone use (after the build):
 *   node_modules/.bin/node dist/bench/relay/generator.js --target 127.0.0.1:2525 \
 *     --sessions 20 --messages 10000 --size 1024 [--recipients 1] [--reuse] [--unique] [--rate N]
 */
import net from 'node:net';
import tls from 'node:tls';
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../args.js';

export interface GeneratorOptions {
  host: string;
  port: number;
  /** Concurrent connections (smtp-source -s). */
  sessions: number;
  /** Total messages to send (smtp-source -m). */
  messages: number;
  /** Body bytes (smtp-source -l); headers come on top. */
  size: number;
  /** Recipients per message (smtp-source -r). */
  recipients: number;
  from: string;
  to: string;
  /** Prepend a per-message sequence number to every recipient (smtp-source -N). */
  unique: boolean;
  /** Many messages per connection (smtp-source -d). */
  reuse: boolean;
  /** Open loop: start a message (a connection) this many times per second; 0: closed loop. */
  rate: number;
  /** Stop after this long, whatever is left. */
  timeLimitMs: number;
  /** Idle timeout of one connection (no reply within it = failure). */
  socketTimeoutMs: number;
  heloName: string;
  /** STARTTLS after EHLO, then EHLO again (smtp-source -S?); certificates are not verified. */
  tls: boolean;
  /** With tls: offer the last TLS session (ticket) again, so the handshakes are resumptions. */
  tlsResume: boolean;
}

export const GENERATOR_DEFAULTS: GeneratorOptions = {
  host: '127.0.0.1',
  port: 25,
  sessions: 20,
  messages: 10_000,
  size: 1024,
  recipients: 1,
  from: 'bench-sender@example.com',
  to: 'bench-rcpt@example.net',
  unique: false,
  reuse: false,
  rate: 0,
  timeLimitMs: 300_000,
  socketTimeoutMs: 60_000,
  heloName: 'bench-generator.localdomain',
  tls: false,
  tlsResume: false,
};

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** The distribution for the chart: [percentile, ms] from 0 (min) to 100 (max). */
  distribution: [number, number][];
}

export interface GeneratorResult {
  accepted: number;
  failed: number;
  /** Transactions cut off by the time limit. */
  unfinished: number;
  /** Messages never started (time limit reached first). */
  notStarted: number;
  connections: number;
  /** The first few failure descriptions ("RCPT: 554 5.7.1 ..."). */
  errors: string[];
  timedOut: boolean;
  /** Wall-clock (epoch) milliseconds with sub-ms precision: comparable across threads. */
  firstConnectAt: number;
  lastAcceptAt: number;
  endedAt: number;
  /** From the first connect until run() finished. */
  elapsedMs: number;
  acceptedPerSec: number;
  latency: LatencySummary;
  /** End of DATA → 250. */
  dotLatency: LatencySummary;
  /** Open loop: the rate offered (messages/s), else null. */
  offeredPerSec: number | null;
}

/** Absolute hi-res wall time; performance.now() alone has a per-thread origin. */
export function nowAbs(): number {
  return performance.timeOrigin + performance.now();
}

export function summarize(h: RecordableHistogram): LatencySummary {
  const us = (v: number): number => Math.round(v) / 1000;
  if (h.count === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0, distribution: [] };
  return {
    count: h.count,
    min: us(h.min),
    mean: us(h.mean),
    p50: us(h.percentile(50)),
    p90: us(h.percentile(90)),
    p99: us(h.percentile(99)),
    max: us(h.max),
    distribution: [0, 10, 25, 50, 75, 90, 95, 99, 99.9, 100].map((p): [number, number] => [p, us(p === 0 ? h.min : p === 100 ? h.max : h.percentile(p))]),
  };
}

const enum St {
  Greeting,
  Ehlo,
  StartTls,
  Mail,
  Rcpt,
  Data,
  Dot,
  Quit,
  Closed,
}

const STAGE = ['greeting', 'EHLO', 'STARTTLS', 'MAIL', 'RCPT', 'DATA', 'end of data', 'QUIT', 'closed'];
const MAX_ERRORS = 5;
const STARTTLS = Buffer.from('STARTTLS\r\n', 'latin1');

/** Build a body of exactly `size` bytes in 78-character lines; no line starts with '.'. */
export function buildPayload(o: Pick<GeneratorOptions, 'from' | 'to' | 'size'>): Buffer {
  const head = `From: <${o.from}>\r\nTo: <${o.to}>\r\nSubject: relay benchmark\r\n\r\n`;
  const parts: string[] = [head];
  let left = o.size;
  let n = 0;
  while (left > 0) {
    if (left <= 2) {
      // Too little room for text + CRLF: pad the previous line instead.
      parts.push('x'.repeat(left));
      left = 0;
      break;
    }
    const text = Math.min(78, left - 2);
    const ch = String.fromCharCode(97 + (n++ % 26));
    parts.push(ch.repeat(text) + '\r\n');
    left -= text + 2;
  }
  let body = parts.join('');
  if (!body.endsWith('\r\n')) body += '\r\n';
  return Buffer.from(body + '.\r\n', 'latin1');
}

export class LoadGenerator {
  readonly opts: GeneratorOptions;
  /** --tls-resume: the last TLS session a server gave us. */
  tlsSession: Buffer | null = null;
  /** The generator's TLS client context, made at the first STARTTLS. */
  tlsContext: tls.SecureContext | null = null;
  /** Handshakes that resumed a session. */
  tlsResumed = 0;
  accepted = 0;
  failed = 0;
  unfinished = 0;
  connections = 0;
  readonly errors: string[] = [];
  readonly histogram: RecordableHistogram = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  readonly dotHistogram: RecordableHistogram = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  /** The same since the last takeDotWindow(): the timeline's accept latency over time. */
  private readonly dotWindow: RecordableHistogram = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  private claimed = 0;
  /** Open loop: messages not started because too many connections were open. */
  private skipped = 0;
  private stopping = false;
  private timedOut = false;
  private firstConnectAt = 0;
  private lastAcceptAt = 0;
  private readonly live = new Set<Session>();
  private activeSessions = 0;
  private done: (() => void) | null = null;
  // Prebuilt wire bytes.
  readonly payload: Buffer;
  readonly ehlo: Buffer;
  readonly mail: Buffer;
  readonly rcpts: Buffer[];
  readonly data = Buffer.from('DATA\r\n', 'latin1');
  readonly quit = Buffer.from('QUIT\r\n', 'latin1');
  private readonly toLocal: string;
  private readonly toDomain: string;

  constructor(opts: Partial<GeneratorOptions> & Pick<GeneratorOptions, 'host' | 'port'>) {
    this.opts = { ...GENERATOR_DEFAULTS, ...opts };
    const o = this.opts;
    if (!(o.sessions >= 1) || !(o.messages >= 0) || !(o.recipients >= 1) || !(o.size >= 0)) {
      throw new Error('generator: sessions and recipients must be ≥ 1, messages and size ≥ 0');
    }
    const at = o.to.lastIndexOf('@');
    this.toLocal = at < 0 ? o.to : o.to.slice(0, at);
    this.toDomain = at < 0 ? '' : o.to.slice(at);
    this.payload = buildPayload(o);
    this.ehlo = Buffer.from(`EHLO ${o.heloName}\r\n`, 'latin1');
    this.mail = Buffer.from(`MAIL FROM:<${o.from}>\r\n`, 'latin1');
    this.rcpts = [];
    for (let i = 0; i < o.recipients; i++) this.rcpts.push(Buffer.from(`RCPT TO:<${this.rcptAddr(-1, i)}>\r\n`, 'latin1'));
  }

  /** smtp-source style: with -r n > 1 the recipient number is prepended; with -N the message number. */
  private rcptAddr(msg: number, i: number): string {
    let local = this.toLocal;
    if (this.opts.recipients > 1) local = `${i + 1}${local}`;
    if (msg >= 0) local = `${msg + 1}.${local}`;
    return local + this.toDomain;
  }

  rcptCommand(msg: number, i: number): Buffer {
    if (!this.opts.unique) return this.rcpts[i]!;
    return Buffer.from(`RCPT TO:<${this.rcptAddr(msg, i)}>\r\n`, 'latin1');
  }

  /** Claim the next message number, or -1 when all are taken or the run is stopping. */
  claim(): number {
    if (this.stopping || this.claimed >= this.opts.messages) return -1;
    return this.claimed++;
  }

  get remaining(): number {
    return this.opts.messages - this.claimed;
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /** A connection attempt starts (the first one starts the end-to-end clock). */
  noteConnect(): void {
    this.connections++;
    if (this.firstConnectAt === 0) this.firstConnectAt = nowAbs();
  }

  noteAccepted(startedAt: number, dotAt: number): void {
    const t = performance.now();
    this.accepted++;
    this.lastAcceptAt = t;
    this.histogram.record(Math.max(1, Math.round((t - startedAt) * 1000)));
    const dot = Math.max(1, Math.round((t - dotAt) * 1000));
    this.dotHistogram.record(dot);
    this.dotWindow.record(dot);
  }

  /** End of DATA → 250 p99 (ms) of the replies since the last call, and starts a new window; null: none. */
  takeDotWindow(): number | null {
    const h = this.dotWindow;
    const p99 = h.count > 0 ? Math.round(h.percentile(99) / 10) / 100 : null;
    h.reset();
    return p99;
  }

  noteFailure(what: string): void {
    this.failed++;
    if (this.errors.length < MAX_ERRORS) this.errors.push(what);
  }

  register(s: Session): void {
    this.live.add(s);
  }

  unregister(s: Session): void {
    this.live.delete(s);
  }

  sessionDone(): void {
    this.activeSessions--;
    if (this.activeSessions === 0 && this.done) this.done();
  }

  /** Open loop: start connections on schedule until every message is claimed or the run stops. */
  private openLoop(): void {
    const o = this.opts;
    const t0 = performance.now();
    const cap = o.sessions * 50;
    let started = 0;
    this.activeSessions = 1; // the scheduler itself, until it has started its last message
    const tick = (): void => {
      const due = Math.min(o.messages, Math.floor(((performance.now() - t0) * o.rate) / 1000) + 1);
      while (started < due && !this.stopping) {
        started++;
        if (this.live.size >= cap) {
          // Over the cap: not started (counted by notStarted), the schedule goes on.
          this.claim();
          this.skipped++;
          continue;
        }
        this.activeSessions++;
        new Session(this, true).next();
      }
      if (started >= o.messages || this.stopping) return this.sessionDone();
      setTimeout(tick, Math.max(0, ((started * 1000) / o.rate) - (performance.now() - t0)));
    };
    tick();
  }

  /** Stop early: no new transactions; open ones are cut off. */
  stop(): void {
    this.stopping = true;
    for (const s of [...this.live]) s.abort();
  }

  async run(): Promise<GeneratorResult> {
    const o = this.opts;
    const t0Abs = nowAbs();
    const finished = new Promise<void>((resolve) => (this.done = resolve));
    const timer = setTimeout(() => {
      this.timedOut = true;
      this.stop();
    }, o.timeLimitMs);
    if (o.rate > 0 && o.messages > 0) {
      this.openLoop();
    } else {
      const n = Math.min(o.sessions, Math.max(o.messages, 0));
      this.activeSessions = n;
      if (n === 0) this.done!();
      for (let i = 0; i < n; i++) new Session(this).next();
    }
    await finished;
    clearTimeout(timer);
    const endedAt = nowAbs();
    const first = this.firstConnectAt || t0Abs;
    const elapsedMs = endedAt - first;
    const lastAcceptAbs = this.lastAcceptAt ? performance.timeOrigin + this.lastAcceptAt : 0;
    const acceptSpan = (lastAcceptAbs || endedAt) - first;
    return {
      accepted: this.accepted,
      failed: this.failed,
      unfinished: this.unfinished,
      notStarted: this.opts.messages - this.claimed + this.skipped,
      connections: this.connections,
      errors: [...this.errors],
      timedOut: this.timedOut,
      firstConnectAt: first,
      lastAcceptAt: lastAcceptAbs,
      endedAt,
      elapsedMs,
      // Accepted per second over the span from the first connect to the last acceptance.
      acceptedPerSec: acceptSpan > 0 ? (this.accepted * 1000) / acceptSpan : 0,
      latency: summarize(this.histogram),
      dotLatency: summarize(this.dotHistogram),
      offeredPerSec: o.rate > 0 ? o.rate : null,
    };
  }
}

/** One concurrent session: a sequence of connections, each carrying one or more messages. */
class Session {
  private sock: net.Socket | null = null;
  private st: St = St.Closed;
  private msg = -1;
  private rcptIdx = 0;
  private startedAt = 0;
  /** When the payload (end of DATA) was written. */
  private dotAt = 0;
  private pending: Buffer | null = null;
  private inTransaction = false;
  private connected = false;
  /** This connection's STARTTLS handshake is done. */
  private secure = false;

  /** oneShot: one connection, one message (open loop); then the session is done. */
  constructor(private readonly g: LoadGenerator, private readonly oneShot = false) {}

  /** Start the next connection, or finish the session. */
  next(): void {
    const msg = this.oneShot && this.msg >= 0 ? -1 : this.g.claim();
    if (msg < 0) {
      this.g.sessionDone();
      return;
    }
    this.msg = msg;
    this.inTransaction = true;
    this.startedAt = performance.now();
    this.st = St.Greeting;
    this.pending = null;
    this.connected = false;
    this.secure = false;
    const o = this.g.opts;
    this.g.noteConnect();
    const sock = net.connect({ host: o.host, port: o.port });
    this.g.register(this);
    sock.setNoDelay(true);
    sock.on('connect', () => (this.connected = true));
    this.attach(sock);
  }

  /** Reads replies from sock (the TCP socket, or the TLS socket over it after STARTTLS). */
  private attach(sock: net.Socket): void {
    const o = this.g.opts;
    this.sock = sock;
    sock.setTimeout(o.socketTimeoutMs);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('timeout', () => this.fail(`${STAGE[this.st]}: timeout after ${o.socketTimeoutMs} ms`));
    sock.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(`${this.connected ? STAGE[this.st] : 'connect'}: ${err.code ?? err.message}`),
    );
    sock.on('close', () => this.onClose());
  }

  /** 220 to STARTTLS: the handshake over the same socket, then EHLO again. */
  private startTls(raw: net.Socket): void {
    for (const ev of ['data', 'timeout', 'error', 'close']) raw.removeAllListeners(ev);
    this.pending = null;
    const g = this.g;
    const session = g.opts.tlsResume ? g.tlsSession : null;
    // One OpenSSL context for every connection (a new one each time costs the bench's own CPU,
    // taken from the MTA under test on a small machine); it offers no session by itself.
    g.tlsContext ??= tls.createSecureContext({});
    const ts = tls.connect({ socket: raw, secureContext: g.tlsContext, rejectUnauthorized: false, servername: 'localhost', ...(session ? { session } : {}) });
    if (g.opts.tlsResume) ts.on('session', (sess: Buffer) => { g.tlsSession = sess; });
    ts.once('secureConnect', () => { if (ts.isSessionReused()) g.tlsResumed++; });
    this.attach(ts);
    ts.once('secureConnect', () => {
      this.secure = true;
      this.st = St.Ehlo;
      ts.write(this.g.ehlo);
    });
  }

  abort(): void {
    if (this.inTransaction) {
      this.g.unfinished++;
      this.inTransaction = false;
    }
    this.sock?.destroy();
  }

  private fail(what: string): void {
    if (this.inTransaction) {
      this.inTransaction = false;
      this.g.noteFailure(what);
    }
    this.sock?.destroy();
  }

  private onClose(): void {
    if (this.inTransaction) {
      this.inTransaction = false;
      if (this.g.isStopping) this.g.unfinished++;
      else this.g.noteFailure(`${STAGE[this.st]}: connection closed by server`);
    }
    this.g.unregister(this);
    this.sock = null;
    this.st = St.Closed;
    this.next();
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let start = 0;
    const len = buf.length;
    while (start < len) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      // "CCC-text" continues a reply; "CCC text", "CCC" (or anything malformed) ends it.
      if (!(nl - start >= 4 && buf[start + 3] === 0x2d)) {
        const code = (buf[start]! - 48) * 100 + (buf[start + 1]! - 48) * 10 + (buf[start + 2]! - 48);
        this.onReply(code, buf, start, nl);
        if (this.sock === null || this.st === St.Closed) return;
      }
      start = nl + 1;
    }
    if (start < len) this.pending = buf.subarray(start);
  }

  private replyText(buf: Buffer, start: number, end: number): string {
    return buf.toString('latin1', start, end).trim().slice(0, 200);
  }

  private onReply(code: number, buf: Buffer, start: number, end: number): void {
    const sock = this.sock!;
    const g = this.g;
    switch (this.st) {
      case St.Greeting:
        if (code !== 220) return this.reject(buf, start, end);
        this.st = St.Ehlo;
        sock.write(g.ehlo);
        return;
      case St.Ehlo:
        if (code !== 250) return this.reject(buf, start, end);
        if (g.opts.tls && !this.secure) {
          this.st = St.StartTls;
          sock.write(STARTTLS);
          return;
        }
        this.st = St.Mail;
        sock.write(g.mail);
        return;
      case St.StartTls:
        if (code !== 220) return this.reject(buf, start, end);
        this.startTls(sock);
        return;
      case St.Mail:
        if (code !== 250) return this.reject(buf, start, end);
        this.st = St.Rcpt;
        this.rcptIdx = 0;
        sock.write(g.rcptCommand(this.msg, 0));
        return;
      case St.Rcpt:
        if (code !== 250 && code !== 251) return this.reject(buf, start, end);
        if (++this.rcptIdx < g.opts.recipients) {
          sock.write(g.rcptCommand(this.msg, this.rcptIdx));
        } else {
          this.st = St.Data;
          sock.write(g.data);
        }
        return;
      case St.Data:
        if (code !== 354) return this.reject(buf, start, end);
        this.st = St.Dot;
        sock.write(g.payload);
        this.dotAt = performance.now();
        return;
      case St.Dot: {
        if (code !== 250) return this.reject(buf, start, end);
        this.inTransaction = false;
        g.noteAccepted(this.startedAt, this.dotAt);
        if (g.opts.reuse && !this.oneShot) {
          const msg = g.claim();
          if (msg >= 0) {
            this.msg = msg;
            this.inTransaction = true;
            this.startedAt = performance.now();
            this.st = St.Mail;
            sock.write(g.mail);
            return;
          }
        }
        this.st = St.Quit;
        sock.write(g.quit);
        return;
      }
      case St.Quit:
        this.st = St.Closed;
        sock.end();
        return;
      default:
        return;
    }
  }

  /** A reply that is not the expected one: the message failed; say QUIT and close. */
  private reject(buf: Buffer, start: number, end: number): void {
    const what = `${STAGE[this.st]}: ${this.replyText(buf, start, end)}`;
    if (this.inTransaction) {
      this.inTransaction = false;
      this.g.noteFailure(what);
    }
    this.st = St.Quit;
    this.sock!.write(this.g.quit);
  }
}

// ---------------------------------------------------------------------------------------
// CLI

export function parseHostPort(s: string, defPort = 25): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?(?::(\d+))?$/.exec(s);
  if (!m || !m[1]) throw new Error(`bad host:port: ${s}`);
  return { host: m[1], port: m[2] ? Number(m[2]) : defPort };
}

const GENERATOR_USAGE =
  'usage: node dist/bench/relay/generator.js [--target host:port] [-s sessions] [-m messages] [-l size]\n' +
  '  [-r recipients] [-f from] [-t to] [-N (unique recipients)] [-d (reuse connections)] [--rate N]\n' +
  '  [--time-limit S] [--tls | --tls-resume]';

async function main(): Promise<void> {
  const values = benchArgs('bench/relay/generator', GENERATOR_USAGE, {
      target: { type: 'string', default: '127.0.0.1:25' },
      sessions: { type: 'string', short: 's', default: '20' },
      messages: { type: 'string', short: 'm', default: '10000' },
      size: { type: 'string', short: 'l', default: '1024' },
      recipients: { type: 'string', short: 'r', default: '1' },
      from: { type: 'string', short: 'f', default: GENERATOR_DEFAULTS.from },
      to: { type: 'string', short: 't', default: GENERATOR_DEFAULTS.to },
      unique: { type: 'boolean', short: 'N', default: false },
      reuse: { type: 'boolean', short: 'd', default: false },
      rate: { type: 'string', default: '0' },
      'time-limit': { type: 'string', default: '300' },
      tls: { type: 'boolean', default: false },
      'tls-resume': { type: 'boolean', default: false },
  });
  const count = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (Number.isInteger(n) && n >= min) return n;
    process.stderr.write(`bench/relay/generator: --${name} must be an integer from ${min} (got "${v}")\n${GENERATOR_USAGE}\n`);
    process.exit(2);
  };
  const { host, port } = parseHostPort(values.target);
  const g = new LoadGenerator({
    host,
    port,
    sessions: count('sessions', values.sessions, 1),
    messages: count('messages', values.messages, 1),
    size: count('size', values.size, 0),
    recipients: count('recipients', values.recipients, 1),
    from: values.from,
    to: values.to,
    unique: values.unique,
    reuse: values.reuse,
    rate: count('rate', values.rate, 0),
    timeLimitMs: count('time-limit', values['time-limit'], 1) * 1000,
    tls: values.tls || values['tls-resume'],
    tlsResume: values['tls-resume'],
  });
  process.once('SIGINT', () => g.stop());
  const r = await g.run();
  const l = r.latency;
  console.log(
    `accepted ${r.accepted} failed ${r.failed} unfinished ${r.unfinished} not-started ${r.notStarted} ` +
      `in ${(r.elapsedMs / 1000).toFixed(2)} s: ${r.acceptedPerSec.toFixed(1)} accepted/s; ` +
      `latency ms p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} max ${l.max}; end of DATA → 250 p50 ${r.dotLatency.p50} p99 ${r.dotLatency.p99}` +
      `${r.offeredPerSec ? ` (open loop, ${r.offeredPerSec}/s offered)` : ''}${r.timedOut ? ' (time limit reached)' : ''}`,
  );
  for (const e of r.errors) console.log(`  error: ${e}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench/relay/generator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
