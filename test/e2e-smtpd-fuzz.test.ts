/**
 * A grammar fuzz of smtpd: 5,000 sessions from a seeded generator (mulberry32; the seed is
 * printed, FUZZ_SEED=n repeats a run), each a few valid or mutated commands — random case,
 * bytes inserted (NUL, CR, LF, 0xff, quotes, brackets), truncation, long lines (up to 70 kB),
 * odd line ends (bare LF, bare CR, CRCRLF, none), unknown and malformed parameters, quoted and
 * routed addresses, DATA with bare newlines, dots and NULs — written in random pieces, 64
 * sessions at a time. Afterwards: the server is alive and takes a normal message, the maillog
 * has no uncaught exception nor a crashed thread, nothing went to stderr, and the server's RSS
 * is flat: under 40 MB more in the second half (V8's heap capped, see below). Error sleeps are off (smtpd_error_sleep_time = 0) so the run stays
 * well under a minute; mail that gets through is discarded (default_transport = discard).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { test } from 'node:test';

import { BACKEND_SERVICES, sendRaw, startServer } from './helpers/server.js';

const SESSIONS = Number(process.env['FUZZ_SESSIONS'] ?? 5000);
const PARALLEL = 64;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(private readonly rnd: () => number) {}
  int(n: number): number { return Math.floor(this.rnd() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  chance(p: number): boolean { return this.rnd() < p; }

  address(): string {
    return this.pick([
      'a@example.org', 'b@example.net', '', 'postmaster', '"a b"@example.net', '"a@b"@example.net', '"unterminated@example.net',
      '@relay.example:user@example.net', 'user@[127.0.0.1]', 'user@[IPv6:::1]', 'user@-bad-.example', 'x'.repeat(300) + '@example.net',
      'a..b@example.net', 'user@exam ple.net', 'ü@example.net', 'a\x00b@example.net', '<nested>@example.net',
    ]);
  }

  param(): string {
    return this.pick(['SIZE=100', 'SIZE=abc', 'SIZE=99999999999999999999999', 'BODY=8BITMIME', 'BODY=BINARYMIME', 'BODY=7BIT', 'SMTPUTF8', 'SMTPUTF8=yes',
      'FOO=bar', 'RET=FULL', 'RET=xyz', 'ENVID=a+2Bb', 'ENVID=a+0D+0Ab', 'AUTH=<>', 'AUTH=x@y', 'NOTIFY=SUCCESS,FAILURE', 'NOTIFY=NEVER,DELAY',
      'NOTIFY=bogus', 'ORCPT=rfc822;a@b', 'ORCPT=bad', '=', 'X=', 'REQUIRETLS']);
  }

  command(): string {
    const cmd = this.pick([
      () => `EHLO ${this.pick(['client.test', 'a;b (c) <d>', '[127.0.0.1]', '', 'x'.repeat(400), 'üñí'])}`,
      () => `HELO ${this.pick(['client.test', '', 'a b c'])}`,
      () => `MAIL FROM:<${this.address()}>${this.chance(0.5) ? ' ' + this.param() : ''}${this.chance(0.2) ? ' ' + this.param() : ''}`,
      () => `MAIL FROM:${this.address()}`,
      () => `RCPT TO:<${this.address()}>${this.chance(0.4) ? ' ' + this.param() : ''}`,
      () => 'DATA',
      () => 'RSET', () => 'NOOP', () => `VRFY ${this.address()}`, () => 'QUIT', () => 'STARTTLS', () => 'HELP',
      () => `AUTH ${this.pick(['PLAIN', 'LOGIN', 'CRAM-MD5', 'XOAUTH2', ''])} ${this.pick(['', 'AGFAYg==', '=', '*'])}`,
      () => 'BDAT 10 LAST', () => 'ETRN example.net', () => 'XCLIENT ADDR=1.2.3.4', () => 'GET / HTTP/1.0',
      () => 'MAIL', () => 'RCPT', () => ':', () => '',
    ])();
    return this.mutate(cmd);
  }

  mutate(s: string): string {
    if (this.chance(0.6)) return s;
    switch (this.int(6)) {
      case 0: return s.split('').map((c) => (this.chance(0.5) ? c.toLowerCase() : c)).join('');
      case 1: {
        const at = this.int(s.length + 1);
        return s.slice(0, at) + this.pick(['\x00', '\r', '\n', '\xff', '"', '<', '>', ':', ' ', '\t', '\x1b', '\\']) + s.slice(at);
      }
      case 2: return s.slice(0, this.int(s.length + 1));
      case 3: return s + ' ' + 'Z'.repeat(this.pick([100, 1000, 2047, 2049, 5000, 70000]));
      case 4: return s + s;
      default: return this.pick(['\x00\x00\x00', '\xff\xfe', '.', '..', '\r\n.\r\n', s.toUpperCase()]);
    }
  }

  eol(): string {
    const r = this.rnd();
    return r < 0.75 ? '\r\n' : r < 0.85 ? '\n' : r < 0.9 ? '\r' : r < 0.95 ? '\r\r\n' : '';
  }

  content(): string {
    const parts: string[] = [];
    const n = 1 + this.int(8);
    for (let i = 0; i < n; i++) {
      parts.push(this.pick(['Subject: fuzz', 'X: y', '', '.', '..', '.x', 'body \x00 nul', 'a\rb', 'From x', ' folded', 'Z'.repeat(this.pick([10, 1500, 120_000]))]) + this.eol());
    }
    return parts.join('') + this.pick(['\r\n.\r\n', '\n.\n', '\r\n.\n', '.\r\n', '']);
  }

  session(): Buffer {
    let s = '';
    // Half the sessions start as a real transaction (mutated here and there), so DATA and
    // the content reader are reached; the rest are free-form.
    if (this.chance(0.5)) {
      s += this.mutate('EHLO client.test') + this.eol();
      s += this.mutate(`MAIL FROM:<a@example.org>${this.chance(0.3) ? ' ' + this.param() : ''}`) + '\r\n';
      s += this.mutate(`RCPT TO:<${this.pick(['b@example.net', '"a b"@example.net', 'c@example.net'])}>`) + '\r\n';
      s += 'DATA\r\n' + this.content();
    }
    const n = 1 + this.int(10);
    for (let i = 0; i < n; i++) {
      const c = this.command();
      s += c + this.eol();
      if (/^data$/i.test(c.trim()) && this.chance(0.8)) s += this.content();
    }
    if (this.chance(0.7)) s += 'QUIT\r\n';
    return Buffer.from(s, 'latin1');
  }
}

/** One fuzz session: the bytes in random pieces, then wait for the server to close (≤ 800 ms). */
function runSession(port: number, from: string, bytes: Buffer, g: Gen): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    const done = () => { clearTimeout(t); s.destroy(); resolve(); };
    let t = setTimeout(done, 5000);
    s.on('error', done);
    s.on('close', done);
    s.on('data', () => undefined);
    s.once('connect', () => {
      let at = 0;
      const next = () => {
        if (at >= bytes.length || s.destroyed) {
          clearTimeout(t);
          t = setTimeout(done, 800);
          return;
        }
        const n = g.chance(0.5) ? bytes.length - at : 1 + g.int(Math.max(1, bytes.length - at));
        s.write(bytes.subarray(at, at + n));
        at += n;
        setImmediate(next);
      };
      next();
    });
  });
}

function rssOf(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

test(`grammar fuzz: ${SESSIONS} sessions leave no uncaught exception, a live server and flat RSS`, async (t) => {
  const seed = Number(process.env['FUZZ_SEED'] ?? Date.now() % 1_000_000);
  t.diagnostic(`FUZZ_SEED=${seed}`);
  const g = new Gen(mulberry32(seed));
  const server = await startServer({
    mainCf: {
      mynetworks: '127.0.0.1/32',
      relay_domains: 'example.net',
      smtpd_error_sleep_time: '0',
      default_transport: 'discard',
      relay_transport: 'discard',
      smtpd_client_connection_count_limit: '0',
    },
    // V8 grows each thread's heap lazily (up to gigabytes) before it collects in earnest, so an
    // uncapped RSS measures that laziness, not leaks. With the old generation capped, garbage is
    // collected and a leak shows as growth in the second half (or as an out-of-memory crash).
    env: { NODE_OPTIONS: `--max-old-space-size=${process.env['FUZZ_HEAP'] ?? 64}` },
    masterCf: ['127.0.0.1:{{PORT}} inet n - n - 2 smtpd', ...BACKEND_SERVICES, 'discard unix - - n - 1 discard', ''].join('\n'),
  });
  t.after(() => server.stop());
  const pid = server.child!.pid!;
  const sources = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];

  const batch = async (count: number) => {
    let started = 0;
    const worker = async () => {
      while (started < count) {
        started++;
        const bytes = g.session();
        await runSession(server.port, g.pick(sources), bytes, g);
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
  };

  await batch(200);
  await new Promise((r) => setTimeout(r, 1000));
  const before = rssOf(pid);
  const t0 = Date.now();
  await batch(Math.floor((SESSIONS - 200) / 2));
  const middle = rssOf(pid);
  await batch(Math.ceil((SESSIONS - 200) / 2));
  t.diagnostic(`${SESSIONS - 200} sessions in ${Date.now() - t0} ms`);
  await new Promise((r) => setTimeout(r, 2000));
  const after = rssOf(pid);
  t.diagnostic(`RSS ${(before / 1e6).toFixed(1)} MB → ${(middle / 1e6).toFixed(1)} MB (half way) → ${(after / 1e6).toFixed(1)} MB`);
  const delivered = server.logLines().filter((l) => /status=sent/.test(l)).length;
  t.diagnostic(`${delivered} messages got through (and were discarded)`);
  assert.ok(delivered > 100, `only ${delivered} messages reached the queue: the generator does not reach DATA`);

  // Alive: a normal client is served.
  const r = await sendRaw(server.port, 'a@example.org', ['b@example.net'], 'Subject: after the fuzz\r\n\r\nhello\r\n');
  assert.match(r.line, /^250 2\.0\.0 Ok: queued as /);
  const bad = server.logLines().filter((l) => /exit status|uncaught|TypeError|RangeError|ReferenceError|SyntaxError|Cannot read|is not a function|internal error/i.test(l));
  assert.deepEqual(bad.slice(0, 5).map((l) => l.slice(0, 500)), []);
  assert.equal(server.stderr().trim(), '');
  assert.ok(after - before < 120e6, `RSS grew by ${((after - before) / 1e6).toFixed(1)} MB`);
  assert.ok(after - middle < 40e6, `RSS grew by ${((after - middle) / 1e6).toFixed(1)} MB in the second half`);
});
