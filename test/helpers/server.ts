/**
 * End-to-end test harness: runs a real Postactor server as a child process
 * (`node dist/bin/postactor.js -c DIR start-fg`) on a temporary configuration directory,
 * and a small raw-socket SMTP dialogue client for protocol tests.
 *
 * The configuration directory (mkdtemp under os.tmpdir()) holds main.cf, master.cf, the
 * queue (DIR/spool) and the maillog (DIR/maillog, so the child's stdout pipe never fills).
 * kill()/restart() reuse the same directory and queue, so a test can SIGKILL the server and
 * start it again on the same queue. Every child ever spawned is also killed when the test
 * process exits, as a last line of defence (tests still call stop() in `after` hooks).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SmtpSink } from '../../src/smtp/sink.js';
import { isWorkerThreadName } from '../../src/runtime/thread-name.js';

/** The repository root (this file is dist/test/helpers/server.js once built). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The pinned Node runtime (never the system node). */
export const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
export const POSTACTOR_JS = join(REPO_ROOT, 'dist', 'bin', 'postactor.js');
export const POSTACTOR_SH = join(REPO_ROOT, 'bin', 'postactor');

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/** Ports this test process handed out: never the same one twice in one process. */
const handedOut = new Set<number>();

/**
 * Where a port is reserved across the test processes that run at once (`--test-concurrency`):
 * one file per port, created exclusively; a reservation older than PORT_HOLD_MS is stale.
 */
const PORT_DIR = join(tmpdir(), `postactor-test-ports-${process.getuid?.() ?? 'user'}`);
const PORT_HOLD_MS = 2 * 60 * 60 * 1000;

/**
 * The ports freePort picks from: below the kernel's ephemeral range (ip_local_port_range), so
 * that no outgoing connection of any test (whose local port the kernel takes from that range)
 * can hold the port between the moment it is picked and the moment the server binds it. A
 * port picked from the ephemeral range itself made a start-up fail now and then with "bind
 * 127.0.0.1 port N: Address already in use".
 */
function portRange(): [number, number] {
  let low = 32768;
  let high = 60999;
  try {
    const [l, h] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (l && h) [low, high] = [l, h];
  } catch { /* not Linux: the usual range */ }
  if (low - 1 - 10_000 >= 5_000) return [10_000, low - 1];
  if (65_535 - (high + 1) >= 2_000) return [high + 1, 65_535];
  return [1_024, 65_535];
}
const PORT_RANGE = portRange();

/** Whether host:port can be bound right now. */
function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** Reserves a port for this process across the concurrently running test processes. */
function reserve(port: number): boolean {
  mkdirSync(PORT_DIR, { recursive: true, mode: 0o700 });
  const file = join(PORT_DIR, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    try {
      if (Date.now() - statSync(file).mtimeMs < PORT_HOLD_MS) return false;
      writeFileSync(file, String(process.pid));
      return true;
    } catch { return false; }
  }
}

/**
 * A port nobody listens on right now, for a server a test starts later (a Postactor
 * master.cf, a peer's configuration): picked at random outside the ephemeral range, bound once
 * to see that it is free, and reserved so that no other test process running at the same time
 * picks it too.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [low, high] = PORT_RANGE;
  for (let tries = 0; ; tries++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (handedOut.has(port)) continue;
    if (tries < 200 && !reserve(port)) continue;
    if (!(await bindable(port, host))) continue;
    handedOut.add(port);
    return port;
  }
}

export interface ServerOptions {
  /** Extra / overriding main.cf settings, or whole text appended after the defaults. */
  mainCf?: Record<string, string> | string;
  /** Replaces the whole master.cf; `{{PORT}}` becomes the smtpd port. */
  masterCf?: string;
  /** Lines appended to the default master.cf. */
  masterCfExtra?: string;
  /** Where relayhost points ([127.0.0.1]:sinkPort); default: a closed port. */
  sinkPort?: number;
  /** Use this smtpd port instead of a fresh free one. */
  port?: number;
  /** Readiness timeout (ms), default 60000 (a full master.cf starts some twenty threads; a shared machine can take that long). */
  readyTimeoutMs?: number;
  /** Extra environment for the child (a function gets the config directory). */
  env?: Record<string, string> | ((dir: string) => Record<string, string>);
  /** A command that execs the server (e.g. ['prlimit', '--nofile=1024:1024']), so its pid stays the server's. */
  launcher?: string[];
  /** Keep the directory after stop() (for debugging). */
  keepDir?: boolean;
}

export interface TestServer {
  dir: string;
  port: number;
  queueDir: string;
  /** Where relayhost points. */
  sinkPort: number;
  logLines(): string[];
  /** Resolves with the first maillog line matching re (from the whole log). */
  waitForLog(re: RegExp, timeoutMs: number): Promise<string>;
  /** Resolves once the log has at least `count` lines matching re. */
  waitForLogCount(re: RegExp, count: number, timeoutMs: number): Promise<string[]>;
  /** What the child wrote on stderr (all runs). */
  stderr(): string;
  /** Sends a signal and waits for the child to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same directory and queue; waits until it is ready. */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s), then removes the directory. Safe to call twice. */
  stop(): Promise<void>;
  readonly child: ChildProcess | null;
}

function mainCfText(dir: string, port: number, sinkPort: number, extra: ServerOptions['mainCf']): string {
  const settings: Record<string, string> = {
    queue_directory: join(dir, 'spool'),
    data_directory: join(dir, 'lib'),
    relayhost: `[127.0.0.1]:${sinkPort}`,
    mynetworks: '127.0.0.0/8',
    myhostname: 'mx.postactor.test',
    maillog_file: join(dir, 'maillog'),
    // Small timeouts: every test's deliveries are to loopback.
    smtp_connect_timeout: '5s',
  };
  let tail = '';
  if (typeof extra === 'string') tail = extra;
  else if (extra) Object.assign(settings, extra);
  void port;
  return Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n' + (tail ? tail + '\n' : '');
}

export function defaultMasterCf(port: number): string {
  return [
    `127.0.0.1:${port} inet n - n - 2 smtpd`,
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'smtp unix - - n - 2 smtp',
    'relay unix - - n - 2 smtp',
    'bounce unix - - n - 0 bounce',
    '',
  ].join('\n');
}

/** master.cf lines for the services behind smtpd, one thread each (for tests that write their own smtpd lines). */
export const BACKEND_SERVICES: readonly string[] = [
  'cleanup unix n - n - 1 cleanup',
  'qmgr unix n - n 300 1 qmgr',
  'smtp unix - - n - 1 smtp',
  'relay unix - - n - 1 smtp',
  'bounce unix - - n - 1 bounce',
];

/** The sink's copy (latin1 text) of the message with this Subject, once it has arrived. */
export async function deliveredWithSubject(sink: SmtpSink, subject: string, timeoutMs = 30_000): Promise<string> {
  await sink.waitFor(() => sink.messages.some((m) => m.data.includes(`Subject: ${subject}`)), timeoutMs);
  return sink.messages.find((m) => m.data.includes(`Subject: ${subject}`))!.data.toString('latin1');
}

/** Connects, reads the greeting, says QUIT: true if it was a 220. */
export function probe220(port: number, timeoutMs = 1000, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    let buf = '';
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('error', () => done(false));
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\n')) {
        if (buf.startsWith('220')) s.write('QUIT\r\n');
        done(buf.startsWith('220'));
      }
    });
  });
}

export async function startServer(opts: ServerOptions = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-e2e-'));
  const port = opts.port ?? (await freePort());
  const sinkPort = opts.sinkPort ?? (await freePort());
  const queueDir = join(dir, 'spool');
  const maillog = join(dir, 'maillog');
  writeFileSync(join(dir, 'main.cf'), mainCfText(dir, port, sinkPort, opts.mainCf));
  const master = opts.masterCf !== undefined ? opts.masterCf.replaceAll('{{PORT}}', String(port)) : defaultMasterCf(port) + (opts.masterCfExtra ? opts.masterCfExtra + '\n' : '');
  writeFileSync(join(dir, 'master.cf'), master);

  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let errText = '';
  let stopped = false;

  const logLines = (): string[] => {
    if (!existsSync(maillog)) return [];
    const text = readFileSync(maillog, 'utf8');
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines;
  };

  const poll = async <T>(what: () => T | undefined, timeoutMs: number, describe: () => string): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = what();
      if (v !== undefined) return v;
      if (Date.now() >= deadline) throw new Error(`${describe()} within ${timeoutMs} ms; maillog tail:\n${logLines().slice(-15).join('\n')}\nstderr: ${errText.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const spawnChild = async (): Promise<void> => {
    const startLines = logLines().length;
    const argv = [NODE, POSTACTOR_JS, '-c', dir, 'start-fg'];
    const [cmd, ...args] = opts.launcher ? [...opts.launcher, ...argv] : argv;
    const c = spawn(cmd!, args, {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...(typeof opts.env === 'function' ? opts.env(dir) : opts.env) },
    });
    child = c;
    live.add(c);
    c.stdout!.on('data', (d: Buffer) => { errText += d.toString(); });
    c.stderr!.on('data', (d: Buffer) => { errText += d.toString(); });
    exited = new Promise((resolve) => c.once('exit', () => {
      live.delete(c);
      resolve();
    }));
    // Ready: this run logged "daemon started" and the port answers 220.
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
    let started = false;
    while (Date.now() < deadline) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`postactor exited during start-up (${c.exitCode ?? c.signalCode}): ${errText}maillog tail:\n${logLines().slice(startLines).slice(-15).join('\n')}`);
      if (!started) started = logLines().slice(startLines).some((l) => l.includes('daemon started'));
      if (started && (await probe220(port))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    c.kill('SIGKILL');
    throw new Error(`postactor not ready within ${opts.readyTimeoutMs ?? 60_000} ms: stderr ${errText}; maillog:\n${logLines().join('\n')}`);
  };

  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };

  await spawnChild();
  return {
    dir,
    port,
    queueDir,
    sinkPort,
    get child() { return child; },
    logLines,
    stderr: () => errText,
    waitForLog: (re, timeoutMs) => poll(() => logLines().find((l) => re.test(l)), timeoutMs, () => `no maillog line matching ${re}`),
    waitForLogCount: (re, count, timeoutMs) => poll(() => {
      const m = logLines().filter((l) => re.test(l));
      return m.length >= count ? m : undefined;
    }, timeoutMs, () => `fewer than ${count} maillog lines matching ${re} (have ${logLines().filter((l) => re.test(l)).length})`),
    kill,
    restart: async () => {
      await kill('SIGTERM');
      await spawnChild();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await kill('SIGTERM');
      if (opts.keepDir || process.env['E2E_KEEP']) process.stderr.write(`e2e: kept ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One SMTP reply: code, and the text lines (without the code). */
/** text: the last line's text after the code; line: the whole last line. */
export interface Reply { code: number; lines: string[]; text: string; line: string }

/**
 * A raw SMTP dialogue over one socket: `cmd('MAIL FROM:<a@b>')` sends one line and resolves
 * with the (possibly multi-line) reply. Each reply waits at most timeoutMs.
 */
export class SmtpDialogue {
  private buf = '';
  private waiting: ((r: Reply) => void) | null = null;
  private failWaiter: ((e: Error) => void) | null = null;
  private replies: Reply[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket, private readonly timeoutMs: number) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.parse();
    });
    socket.on('close', () => this.gone());
    socket.on('error', () => this.gone());
  }

  static connect(port: number, opts: { localAddress?: string; timeoutMs?: number } = {}): Promise<{ smtp: SmtpDialogue; greeting: Reply }> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        const smtp = new SmtpDialogue(s, opts.timeoutMs ?? 5000);
        smtp.read().then((greeting) => resolve({ smtp, greeting }), reject);
      });
    });
  }

  /** The connection is gone: a pending read fails now rather than at its timeout. */
  private gone(): void {
    this.closed = true;
    const f = this.failWaiter;
    this.failWaiter = null;
    f?.(new Error(`connection closed (buffer: ${JSON.stringify(this.buf)})`));
  }

  private parse(): void {
    for (;;) {
      // A complete reply ends with a line "NNN text" (space, not '-').
      const lines: string[] = [];
      let pos = 0;
      let complete = false;
      while (true) {
        const nl = this.buf.indexOf('\n', pos);
        if (nl < 0) break;
        const line = this.buf.slice(pos, nl).replace(/\r$/, '');
        pos = nl + 1;
        lines.push(line);
        if (line.length < 4 || line[3] !== '-') {
          complete = true;
          break;
        }
      }
      if (!complete) return;
      this.buf = this.buf.slice(pos);
      const code = Number(lines[0]!.slice(0, 3));
      const textLines = lines.map((l) => l.slice(4));
      const reply: Reply = { code, lines: textLines, text: textLines[textLines.length - 1]!, line: lines[lines.length - 1]! };
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(reply);
      } else this.replies.push(reply);
    }
  }

  /** The next reply. */
  read(): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.reject(new Error(`connection closed (buffer: ${JSON.stringify(this.buf)})`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting = null;
        this.failWaiter = null;
        reject(new Error(`no SMTP reply within ${this.timeoutMs} ms (buffer: ${JSON.stringify(this.buf)})`));
      }, this.timeoutMs);
      this.waiting = (reply) => {
        clearTimeout(t);
        this.failWaiter = null;
        resolve(reply);
      };
      this.failWaiter = (e) => {
        clearTimeout(t);
        this.waiting = null;
        reject(e);
      };
    });
  }

  /** Sends one command line; resolves with the reply (the whole line, e.g. "250 2.0.0 Ok", in .line). */
  async cmd(line: string): Promise<Reply> {
    this.socket.write(line + '\r\n');
    return this.read();
  }

  /** Sends raw bytes without waiting for anything. */
  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A plain RFC 5322 message with CRLF line ends. */
/** One small message from a@example.org to b@example.com with this subject, sent with nodemailer. */
export async function sendWithSubject(server: TestServer, subject: string): Promise<void> {
  const { default: nodemailer } = await import('nodemailer');
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
  try {
    await t.sendMail({ from: 'a@example.org', to: 'b@example.com', subject, text: 'x' });
  } finally {
    t.close();
  }
}

export function rfc822(headers: Record<string, string>, body: string): string {
  return Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n' + body.replace(/\r?\n/g, '\r\n');
}

/** The queue ID of a "250 2.0.0 Ok: queued as ID" reply (asserting that reply). */
export function queuedId(reply: { code: number; text: string }): string {
  assert.equal(reply.code, 250, reply.text);
  const m = /^2\.0\.0 Ok: queued as (\S+)$/.exec(reply.text);
  assert.ok(m, reply.text);
  return m[1]!;
}

/** Sends one message over a fresh session (EHLO, MAIL, RCPT…, DATA); resolves with the end-of-data reply. */
export async function sendRaw(port: number, from: string, to: string[], message: string, opts: { localAddress?: string; mailParams?: string; rcptParams?: (string | undefined)[] } = {}): Promise<Reply> {
  const { smtp, greeting } = await SmtpDialogue.connect(port, opts);
  try {
    if (greeting.code !== 220) return greeting;
    await smtp.cmd('EHLO client.test');
    let r = await smtp.cmd(`MAIL FROM:<${from}>${opts.mailParams ? ' ' + opts.mailParams : ''}`);
    if (r.code !== 250) return r;
    for (const [i, t] of to.entries()) {
      const p = opts.rcptParams?.[i];
      r = await smtp.cmd(`RCPT TO:<${t}>${p ? ' ' + p : ''}`);
      if (r.code !== 250) return r;
    }
    r = await smtp.cmd('DATA');
    if (r.code !== 354) return r;
    const stuffed = message.replace(/^\./gm, '..');
    smtp.write(stuffed + (stuffed.endsWith('\r\n') ? '' : '\r\n') + '.\r\n');
    r = await smtp.read();
    await smtp.cmd('QUIT').catch(() => undefined);
    return r;
  } finally {
    smtp.close();
  }
}

/** The worker threads of process `pid`, by their names in /proc/PID/task/TID/comm (src/runtime/thread-name.ts). */
export function workerThreads(pid: number, except: string[] = []): number {
  return readdirSync(`/proc/${pid}/task`).filter((tid) => {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      return isWorkerThreadName(name) && !except.includes(name);
    } catch {
      return false;
    }
  }).length;
}
