/**
 * Reload under injection (issue 17): long-lived sessions send message after message over one
 * connection each while the MTA is reloaded again and again with a new smtpd_banner, in turn
 * by SIGHUP to its master (what both reload commands do in the end) and by the command
 * (`postactor -c DIR reload`, `postfix reload`: their own start-up and checks included). Per
 * reload it measures `done`: from the signal or the command's start until a new connection
 * greets with the new banner (the new configuration serves new connections), polled every 10 ms;
 * and over the run, every reply other than 250 (354 to DATA, 221 to QUIT) on the sessions.
 * Postactor and Debian's Postfix alternate run by run (A B A B), each on a fresh instance.
 *
 *   node_modules/.bin/tsc -p tsconfig.json
 *   node_modules/.bin/node dist/bench/reload/run.js [--runs 3] [--reloads 20] [--sessions 10] [--mta postactor,postfix]
 *
 * Postfix needs root (bench/postfix-peer.sh); without it, or without Postfix, only Postactor runs.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { benchArgs } from '../args.js';
import { SmtpSink } from '../../src/smtp/sink.js';
import { POSTACTOR_ENTRY, startPostactor } from '../relay/postactor.js';
import { PostfixNotInstalled, startPostfix } from '../relay/postfix.js';
import type { MtaHandle } from '../relay/mta.js';

const run = promisify(execFile);

const opts = benchArgs('bench/reload',
  'usage: node dist/bench/reload/run.js [--runs 3] [--reloads 20] [--sessions 10] [--mta postactor,postfix]\nSee the header of bench/reload/run.ts.', {
    runs: { type: 'string', default: '3' },
    reloads: { type: 'string', default: '20' },
    sessions: { type: 'string', default: '10' },
    mta: { type: 'string', default: 'postactor,postfix' },
  });
const RUNS = Number(opts.runs);
const RELOADS = Number(opts.reloads);
const SESSIONS = Number(opts.sessions);

/** One SMTP connection, reply by reply (the bench's own: no library between us and the bytes). */
class Line {
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private ready: string[] = [];
  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        const l = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        if (l[3] === '-') continue;
        const w = this.waiters.shift();
        if (w) w(l);
        else this.ready.push(l);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => { for (const w of this.waiters.splice(0)) w('closed'); });
  }
  static open(port: number): Promise<Line> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Line(s)));
      s.once('error', reject);
    });
  }
  reply(): Promise<string> {
    const r = this.ready.shift();
    if (r !== undefined) return Promise.resolve(r);
    if (this.socket.destroyed) return Promise.resolve('closed');
    // Bounded: an MTA that stops answering costs this session, not the whole run.
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.socket.destroy(); resolve('no reply within 60 s'); }, 60_000);
      this.waiters.push((line) => { clearTimeout(t); resolve(line); });
    });
  }
  async cmd(text: string): Promise<string> {
    this.socket.write(text + '\r\n');
    return this.reply();
  }
}

/** A long-lived session: messages until stopped; every unexpected reply goes to `bad`. */
async function session(port: number, n: number, stop: { now: boolean }, bad: string[]): Promise<number> {
  const c = await Line.open(port);
  const expect = (what: string, code: string, r: string) => { if (!r.startsWith(code)) bad.push(`session ${n} ${what}: ${r}`); return r.startsWith(code); };
  expect('greeting', '220', await c.reply());
  expect('EHLO', '250', await c.cmd('EHLO bench.test'));
  let sent = 0;
  while (!stop.now) {
    if (!expect('MAIL', '250', await c.cmd('MAIL FROM:<a@example.org>'))) break;
    if (!expect('RCPT', '250', await c.cmd('RCPT TO:<b@example.com>'))) break;
    if (!expect('DATA', '354', await c.cmd('DATA'))) break;
    c.socket.write(`Subject: s${n} m${sent}\r\n\r\n${'x'.repeat(1000)}\r\n.\r\n`);
    if (!expect('end of data', '250', await c.reply())) break;
    sent++;
  }
  expect('QUIT', '221', await c.cmd('QUIT'));
  c.socket.destroy();
  return sent;
}

async function greeting(port: number): Promise<string> {
  try {
    const c = await Line.open(port);
    const g = await c.reply();
    c.socket.end('QUIT\r\n');
    return g;
  } catch {
    return '';
  }
}

interface RunResult { mta: string; signal: number[]; command: number[]; sent: number; bad: string[] }

async function oneRun(mta: 'postactor' | 'postfix'): Promise<RunResult> {
  const sink = new SmtpSink();
  const sinkPort = await sink.listen(0);
  let h: MtaHandle;
  let mainCf: string;
  let reload: () => Promise<unknown>;
  let masterPid: number;
  if (mta === 'postactor') {
    const pa = await startPostactor({ sinkPort, smtpdThreads: 1, cleanupThreads: 1, smtpThreads: 1 });
    h = pa;
    masterPid = pa.pid;
    mainCf = path.join(h.dir, 'main.cf');
    reload = () => run(process.execPath, [POSTACTOR_ENTRY, '-c', h.dir, 'reload']);
  } else {
    h = await startPostfix({ sinkPort });
    masterPid = Number(readFileSync(path.join(h.dir, 'spool', 'pid', 'master.pid'), 'utf8').trim());
    mainCf = path.join(h.dir, 'etc', 'main.cf');
    reload = () => run('/usr/sbin/postfix', ['reload'], { env: { ...process.env, MAIL_CONFIG: path.join(h.dir, 'etc') } });
  }
  const original = readFileSync(mainCf, 'utf8');
  const stop = { now: false };
  const bad: string[] = [];
  const sessions = Array.from({ length: SESSIONS }, (_, i) => session(h.port, i, stop, bad));
  const signal: number[] = [];
  const command: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 1000));
    for (let gen = 1; gen <= RELOADS; gen++) {
      writeFileSync(mainCf, `${original}\nsmtpd_banner = $myhostname ESMTP gen${gen}\n`);
      const t0 = performance.now();
      const bySignal = gen % 2 === 1;
      if (bySignal) process.kill(masterPid, 'SIGHUP');
      else await reload();
      const deadline = t0 + 30_000;
      while (!(await greeting(h.port)).endsWith(`ESMTP gen${gen}`) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      (bySignal ? signal : command).push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    stop.now = true;
    const counts = await Promise.all(sessions);
    await h.stop();
    await sink.close();
    return { mta, signal, command, sent: counts.reduce((a, b) => a + b, 0), bad };
  }
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)]! : NaN; };
const ms = (x: number) => `${x.toFixed(0)} ms`;

const mtas = opts.mta.split(',') as ('postactor' | 'postfix')[];
const results: RunResult[] = [];
for (let r = 0; r < RUNS; r++) {
  for (const m of mtas) {
    try {
      const res = await oneRun(m);
      results.push(res);
      console.log(`${m} run ${r + 1}: done after SIGHUP median ${ms(median(res.signal))} (max ${ms(Math.max(...res.signal))}), after the command median ${ms(median(res.command))} (max ${ms(Math.max(...res.command))}); ${res.sent} messages, ${res.bad.length} unexpected replies${res.bad.length ? ` (${res.bad.slice(0, 3).join('; ')})` : ''}`);
    } catch (err) {
      if (err instanceof PostfixNotInstalled) { console.log('postfix: not installed (or not root): skipped'); mtas.splice(mtas.indexOf(m), 1); continue; }
      throw err;
    }
  }
}
console.log('\nmedian over runs (each run: the median of its reloads); the machine is shared, figures are noisy');
for (const m of mtas) {
  const rs = results.filter((x) => x.mta === m);
  if (!rs.length) continue;
  console.log(`${m.padEnd(10)} done after SIGHUP ${ms(median(rs.map((x) => median(x.signal))))} (worst ${ms(Math.max(...rs.flatMap((x) => x.signal)))}), after the command ${ms(median(rs.map((x) => median(x.command))))} (worst ${ms(Math.max(...rs.flatMap((x) => x.command)))}), unexpected replies ${rs.reduce((a, x) => a + x.bad.length, 0)} over ${rs.reduce((a, x) => a + x.sent, 0)} messages`);
}
