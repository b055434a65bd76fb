/**
 * End to end, smtpd's error accounting and request deadlines (actors/smtpd/limits.ts), with raw
 * SMTP dialogues against a real server: small limits (soft 3, hard 6, junk 5, sleep 1 s) keep
 * the dialogues short; smtpd_timeout = 2s bounds the slow clients. Extra smtpd services
 * (master.cf -o) give the junk test no sleep, and one smtpd the per-request deadline. Failed
 * AUTH against a real Dovecot (as test/e2e-smtpd-sasl.test.ts) counts as an error too.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startDovecot, type Dovecot } from '../bench/delivery/dovecot.js';
import { needs } from './helpers/peers.js';
import { tempDirs } from './helpers/temp.js';
import { freePort, SmtpDialogue, startServer, type Reply, type TestServer } from './helpers/server.js';

const HOST = 'mx.postactor.test';
const tempDir = tempDirs('postactor-limits-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The reply is smtpd's 421 for smtpd_timeout (2 s on the deadline port), counted from t0. */
async function timedOut(reply: Promise<Reply>, t0: number): Promise<void> {
  const r = await reply;
  const ms = Date.now() - t0;
  assert.equal(r.line, `421 4.4.2 ${HOST} Error: timeout exceeded`);
  assert.ok(ms >= 1800 && ms < 3500, `timeout after ${ms} ms`);
}

describe('smtpd error limits and request deadlines', { concurrency: true }, () => {
  let server: TestServer;
  let junkPort = 0;
  let deadlinePort = 0;
  let idlePort = 0;
  let stressPort = 0;
  let tlsPort = 0;

  before(async () => {
    junkPort = await freePort();
    deadlinePort = await freePort();
    idlePort = await freePort();
    stressPort = await freePort();
    tlsPort = await freePort();
    const certDir = tempDir({});
    const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'), '-days', '2', '-subj', `/CN=${HOST}`], { encoding: 'utf8' });
    assert.equal(gen.status, 0, gen.stderr);
    server = await startServer({
      mainCf: {
        smtpd_soft_error_limit: '3',
        // As Postfix writes its defaults: smaller under stress (master.cf -o stress=yes below).
        smtpd_hard_error_limit: '${stress?{1}:{6}}',
        smtpd_junk_command_limit: '${stress?{1}:{5}}',
        smtpd_error_sleep_time: '1s',
        // Local recipients are the passwd users (no aliases database in the test).
        alias_maps: '',
      },
      masterCfExtra: [
        `127.0.0.1:${junkPort} inet n - n - 1 smtpd -o smtpd_error_sleep_time=0`,
        // Two places: two groups of tests below use it at once.
        `127.0.0.1:${deadlinePort} inet n - n - 2 smtpd -o smtpd_per_request_deadline=yes -o smtpd_timeout=2s`,
        `127.0.0.1:${idlePort} inet n - n - 1 smtpd -o smtpd_timeout=2s`,
        `127.0.0.1:${stressPort} inet n - n - 1 smtpd -o stress=yes -o smtpd_error_sleep_time=0`,
        `127.0.0.1:${tlsPort} inet n - n - 1 smtpd -o smtpd_per_request_deadline=yes -o smtpd_timeout=2s -o smtpd_tls_security_level=may`
          + ` -o smtpd_tls_cert_file=${join(certDir, 'cert.pem')} -o smtpd_tls_key_file=${join(certDir, 'key.pem')}`,
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
  });

  // The tests are independent sessions that mostly wait out a timer (the 1 s error sleep,
  // smtpd_timeout), so the groups below run side by side and the tests within a group one after
  // the other (concurrency: 1; a group would inherit the outer true). What a group keeps apart:
  // two sessions on a port with one place (master.cf process limit; one more would wait, not
  // greeted, and its timings would be off), or two tests that wait for the same maillog line
  // ("too many errors after UNKNOWN", "timeout after DATA").

  // The main port (2 places, one per group here) and the no-sleep ports.
  describe('error counts, one session at a time', { concurrency: 1 }, () => {
    test('25 bogus commands: replies from the 4th on (3 errors = soft limit) wait 1 s; after the 6th (hard limit) 421 and hang-up', async () => {
      const { smtp } = await SmtpDialogue.connect(server.port, { timeoutMs: 5000 });
      const replies: { reply: Reply; ms: number }[] = [];
      try {
        for (let i = 1; i <= 25 && !smtp.closed; i++) {
          const t0 = Date.now();
          let reply: Reply;
          try {
            reply = await smtp.cmd(`BOGUS${i}`);
          } catch {
            break; // the server hung up
          }
          replies.push({ reply, ms: Date.now() - t0 });
          if (reply.code === 421) break;
        }
      } finally {
        smtp.close();
      }
      assert.equal(replies.length, 7, replies.map((r) => r.reply.line).join('\n'));
      for (const [i, { reply, ms }] of replies.slice(0, 6).entries()) {
        assert.match(reply.line, /^500 5\.5\.2 Error: command not recognized$/);
        if (i < 3) assert.ok(ms < 600, `reply ${i + 1} came after ${ms} ms, expected at once`);
        else assert.ok(ms >= 900 && ms < 2500, `reply ${i + 1} came after ${ms} ms, expected ~1000`);
      }
      // The 421 comes before any further command is read, after one more sleep.
      assert.equal(replies[6]!.reply.line, `421 4.7.0 ${HOST} Error: too many errors`);
      assert.ok(replies[6]!.ms >= 900, `421 after ${replies[6]!.ms} ms`);
      await server.waitForLog(/smtpd\[\d+\]: too many errors after UNKNOWN from localhost\[127\.0\.0\.1\]$/, 5000);
      await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] unknown=0\/6 commands=0\/6$/, 5000);
    });

    test('address harvesting: RCPT to unknown local users, 550 each (no sleep on this service), cut off after the 6th', async () => {
      const { smtp } = await SmtpDialogue.connect(junkPort);
      const lines: string[] = [];
      try {
        assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
        assert.equal((await smtp.cmd('MAIL FROM:<harvester@example.org>')).code, 250);
        for (let i = 1; i <= 20; i++) {
          const r = await smtp.cmd(`RCPT TO:<nosuchuser${i}@${HOST}>`).catch(() => null);
          if (!r) break;
          lines.push(r.line);
          if (r.code === 421) break;
        }
      } finally {
        smtp.close();
      }
      assert.equal(lines.length, 7, lines.join('\n'));
      for (const l of lines.slice(0, 6)) assert.match(l, /^550 5\.1\.1 <nosuchuser\d+@mx\.postactor\.test>: Recipient address rejected: /);
      assert.equal(lines[6], `421 4.7.0 ${HOST} Error: too many errors`);
      await server.waitForLog(/too many errors after RCPT from localhost\[127\.0\.0\.1\]$/, 5000);
      await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=0\/6 commands=2\/8$/, 5000);
    });

    test('junk commands: beyond smtpd_junk_command_limit (5) each NOOP counts as an error; 421 at the hard limit', async () => {
      const { smtp } = await SmtpDialogue.connect(junkPort);
      const lines: string[] = [];
      try {
        for (let i = 1; i <= 20; i++) {
          const r = await smtp.cmd('NOOP').catch(() => null);
          if (!r) break;
          lines.push(r.line);
          if (r.code === 421) break;
        }
      } finally {
        smtp.close();
      }
      // NOOPs 1-6 are free, 7-12 are errors 1-6 (each still answered 250), then 421.
      assert.deepEqual(lines.slice(0, 12), Array(12).fill('250 2.0.0 Ok'));
      assert.equal(lines[12], `421 4.7.0 ${HOST} Error: too many errors`);
      assert.equal(lines.length, 13);
      await server.waitForLog(/too many errors after NOOP from localhost\[127\.0\.0\.1\]$/, 5000);
      await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] noop=12 commands=12$/, 5000);
    });

    test('refused AUTH and other 5xx replies count as errors as well', async () => {
      const { smtp } = await SmtpDialogue.connect(junkPort);
      const lines: string[] = [];
      try {
        lines.push((await smtp.cmd('EHLO client.test')).line);
        for (let i = 0; i < 3; i++) lines.push((await smtp.cmd('AUTH PLAIN AGFsaWNlAHNlY3JldA==')).line);
        lines.push((await smtp.cmd('RCPT TO:<a@example.org>')).line);
        lines.push((await smtp.cmd('VRFY')).line);
        lines.push((await smtp.cmd('BOGUS')).line);
        lines.push((await smtp.read()).line);
      } finally {
        smtp.close();
      }
      assert.match(lines[1]!, /^503 5\.5\.1 Error: authentication not enabled$/);
      assert.match(lines[4]!, /^503 5\.5\.1 Error: need MAIL command$/);
      assert.match(lines[5]!, /^501 5\.5\.4 Syntax: VRFY address \[SMTPUTF8\]$/);
      assert.match(lines[6]!, /^500 5\.5\.2 Error: command not recognized$/);
      assert.equal(lines[7], `421 4.7.0 ${HOST} Error: too many errors`);
      await server.waitForLog(/too many errors after UNKNOWN from localhost\[127\.0\.0\.1\]$/, 5000);
    });

    test('stress = yes (what Postfix\'s master sets for an overloaded service): ${stress?…} limits apply, one error ends the session', async () => {
      const { smtp } = await SmtpDialogue.connect(stressPort);
      const lines: string[] = [];
      try {
        lines.push((await smtp.cmd('BOGUS')).line);
        lines.push((await smtp.read()).line);
      } finally {
        smtp.close();
      }
      assert.match(lines[0]!, /^500 5\.5\.2 Error: command not recognized$/);
      assert.equal(lines[1], `421 4.7.0 ${HOST} Error: too many errors`);
    });
  });

  // The main port's second place.
  describe('the error sleep around a message and without HELO', { concurrency: 1 }, () => {
    test('a message received forgives the errors before it: no sleep after it, and the count starts again', async () => {
      const { smtp } = await SmtpDialogue.connect(server.port, { timeoutMs: 5000 });
      try {
        assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
        for (let i = 0; i < 3; i++) assert.equal(Math.floor((await smtp.cmd('BOGUS')).code / 100), 5);
        // 3 errors: from now on each reply waits 1 s …
        let t0 = Date.now();
        assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
        assert.ok(Date.now() - t0 >= 900, 'MAIL waited');
        assert.equal((await smtp.cmd('RCPT TO:<to@example.org>')).code, 250);
        assert.equal((await smtp.cmd('DATA')).code, 354);
        assert.match((await smtp.cmd('Subject: forgiven\r\n\r\nbody\r\n.')).line, /^250 2\.0\.0 Ok: queued as /);
        // … until a message is received.
        t0 = Date.now();
        assert.equal(Math.floor((await smtp.cmd('BOGUS')).code / 100), 5);
        assert.equal((await smtp.cmd('NOOP')).code, 250);
        assert.ok(Date.now() - t0 < 600, `${Date.now() - t0} ms`);
        assert.equal((await smtp.cmd('QUIT')).code, 221);
      } finally {
        smtp.close();
      }
    });

    test('smtpd_helo_required = no holds during the error sleep too: MAIL without HELO after 3 errors waits 1 s and is accepted', async () => {
      // (Before the command table, the sleep ran after the "no HELO needed" exception was undone,
      // so such a MAIL got "503 5.5.1 Error: send HELO/EHLO first".)
      const { smtp } = await SmtpDialogue.connect(server.port, { timeoutMs: 5000 });
      try {
        for (let i = 0; i < 3; i++) assert.equal(Math.floor((await smtp.cmd('BOGUS')).code / 100), 5);
        const t0 = Date.now();
        const mail = await smtp.cmd('MAIL FROM:<a@example.org>');
        assert.equal(mail.line, '250 2.1.0 Ok');
        assert.ok(Date.now() - t0 >= 900, 'MAIL waited');
        assert.equal((await smtp.cmd('QUIT')).code, 221);
      } finally {
        smtp.close();
      }
    });
  });

  /** EHLO, MAIL, RCPT, DATA: the dialogue up to 354. */
  async function toData(port: number): Promise<SmtpDialogue> {
    const { smtp } = await SmtpDialogue.connect(port, { timeoutMs: 8000 });
    assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    assert.equal((await smtp.cmd('MAIL FROM:<slow@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<to@example.org>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    return smtp;
  }

  // One session on the deadline port, then the TLS port: both log "timeout after DATA".
  describe('per-request deadline: a DATA trickle, in clear and in TLS', { concurrency: 1 }, () => {
    test('smtpd_per_request_deadline = yes: DATA trickled below smtpd_min_data_rate gets 421 timeout within smtpd_timeout', async () => {
      const smtp = await toData(deadlinePort);
      const t0 = Date.now();
      const reply = smtp.read();
      let sent = 0;
      try {
        // 10 bytes/s, far below 500 bytes/s: each byte buys 2 ms, each 100 ms costs 100 ms.
        while (!smtp.closed && Date.now() - t0 < 6000) {
          smtp.write('x');
          sent++;
          await sleep(100);
        }
        await timedOut(reply, t0);
      } finally {
        smtp.close();
      }
      const line = await server.waitForLog(/timeout after DATA \(\d+ bytes\) from localhost\[127\.0\.0\.1\]$/, 5000);
      const bytes = Number(/\((\d+) bytes\)/.exec(line)![1]);
      assert.ok(bytes >= 15 && bytes <= sent, `${bytes} bytes logged, ${sent} sent`);
    });

    test('smtpd_per_request_deadline = yes after STARTTLS: requests inside TLS have their deadline too', async () => {
      const raw = net.connect({ port: tlsPort, host: '127.0.0.1' });
      const lines: string[] = [];
      let buf = '';
      let wake: (() => void) | null = null;
      const collect = (sock: net.Socket) => sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        wake?.();
      });
      /** The next final reply line ("NNN text"). */
      const next = async (): Promise<string> => {
        const deadline = Date.now() + 6000;
        for (;;) {
          const m = /^\d{3} [^\r\n]*\r\n/m.exec(buf);
          if (m) {
            buf = buf.slice(m.index + m[0].length);
            return m[0].slice(0, -2);
          }
          if (Date.now() > deadline) throw new Error(`no reply (${buf})`);
          await new Promise<void>((r) => { wake = r; setTimeout(r, 100); });
        }
      };
      collect(raw);
      try {
        await next();
        raw.write('EHLO client.test\r\n');
        await next();
        raw.write('STARTTLS\r\n');
        assert.match(await next(), /^220 /);
        raw.removeAllListeners('data');
        const s = tls.connect({ socket: raw, rejectUnauthorized: false, servername: HOST });
        await new Promise((r) => s.once('secureConnect', r));
        collect(s);
        for (const c of ['EHLO client.test', 'MAIL FROM:<t@example.org>', 'RCPT TO:<to@example.org>', 'DATA']) {
          s.write(c + '\r\n');
          lines.push(await next());
        }
        const t0 = Date.now();
        while (Date.now() - t0 < 6000 && !s.destroyed) {
          s.write('x');
          await sleep(200);
          if (buf.includes('\r\n')) break;
        }
        lines.push(await next());
        assert.ok(Date.now() - t0 < 3500, `${Date.now() - t0} ms`);
        s.destroy();
      } finally {
        raw.destroy();
      }
      assert.match(lines[3]!, /^354 /);
      assert.equal(lines[4], `421 4.4.2 ${HOST} Error: timeout exceeded`);
    });
  });

  // The deadline port's second place.
  describe('per-request deadline: a fast DATA, a slow command line', { concurrency: 1 }, () => {
    test('smtpd_per_request_deadline = yes: DATA at 2,000 bytes/s (above smtpd_min_data_rate) may take longer than smtpd_timeout', async () => {
      const smtp = await toData(deadlinePort);
      try {
        const t0 = Date.now();
        while (Date.now() - t0 < 3000) {
          smtp.write('y'.repeat(198) + '\r\n');
          await sleep(100);
        }
        const r = await smtp.cmd('.');
        assert.match(r.line, /^250 2\.0\.0 Ok: queued as /);
        assert.equal((await smtp.cmd('QUIT')).code, 221);
      } finally {
        smtp.close();
      }
    });

    test('smtpd_per_request_deadline = yes: a command line typed slowly gets 421 timeout after smtpd_timeout', async () => {
      const { smtp } = await SmtpDialogue.connect(deadlinePort, { timeoutMs: 6000 });
      const t0 = Date.now();
      const reply = smtp.read();
      try {
        for (const ch of 'EHLO client.test') {
          if (smtp.closed) break;
          smtp.write(ch);
          await sleep(300);
        }
        await timedOut(reply, t0);
      } finally {
        smtp.close();
      }
      await server.waitForLog(/timeout after CONNECT from localhost\[127\.0\.0\.1\]$/, 5000);
    });
  });

  // The idle port (1 place).
  describe('smtpd_timeout without a deadline', { concurrency: 1 }, () => {
    test('smtpd_per_request_deadline = no (the default): smtpd_timeout bounds each wait, so a trickle outlasts it', async () => {
      const smtp = await toData(idlePort);
      try {
        const t0 = Date.now();
        while (Date.now() - t0 < 3000) {
          smtp.write('z');
          await sleep(500);
        }
        const r = await smtp.cmd('\r\n.');
        assert.match(r.line, /^250 2\.0\.0 Ok: queued as /);
      } finally {
        smtp.close();
      }
    });

    test('smtpd_timeout = 2s with no deadline: an idle client gets 421 and "timeout after RCPT"', async () => {
      const { smtp } = await SmtpDialogue.connect(idlePort, { timeoutMs: 6000 });
      try {
        await smtp.cmd('EHLO client.test');
        await smtp.cmd('MAIL FROM:<idle@example.org>');
        await smtp.cmd('RCPT TO:<to@example.org>');
        assert.equal((await smtp.read()).line, `421 4.4.2 ${HOST} Error: timeout exceeded`);
      } finally {
        smtp.close();
      }
      await server.waitForLog(/timeout after RCPT from localhost\[127\.0\.0\.1\]$/, 5000);
    });
  });
});

const NO_DOVECOT = needs('/usr/sbin/dovecot', 'Dovecot (dovecot-core), the authentication server');

describe('failed AUTH (Dovecot says no) counts against the error limits', { skip: NO_DOVECOT }, () => {
  let dc: Dovecot;
  let server: TestServer;

  before(async () => {
    dc = await startDovecot({ users: ['alice@example.com'], passwords: { 'alice@example.com': 'secret' }, lmtp: false, auth: true });
    const top = tempDir({});
    mkdirSync(join(top, 'queue', 'private'), { recursive: true });
    symlinkSync(dc.authSocket, join(top, 'queue', 'private', 'auth'));
    server = await startServer({
      mainCf: {
        queue_directory: join(top, 'queue'),
        smtpd_sasl_auth_enable: 'yes',
        smtpd_sasl_type: 'dovecot',
        smtpd_sasl_path: 'private/auth',
        smtpd_soft_error_limit: '1',
        smtpd_hard_error_limit: '2',
        smtpd_error_sleep_time: '0',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await dc?.stop();
  });

  // Two, not more: Dovecot's own penalty doubles its delay after each failure from an address.
  test('two wrong passwords: 535 each, then 421 too many errors', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    const bad = Buffer.from('\0alice@example.com\0wrong', 'utf8').toString('base64');
    const lines: string[] = [];
    try {
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      for (let i = 0; i < 2; i++) lines.push((await smtp.cmd(`AUTH PLAIN ${bad}`)).line);
      lines.push((await smtp.read()).line);
    } finally {
      smtp.close();
    }
    for (const l of lines.slice(0, 2)) assert.match(l, /^535 5\.7\.8 Error: authentication failed: /);
    assert.equal(lines[2], `421 4.7.0 ${HOST} Error: too many errors`);
    await server.waitForLog(/too many errors after AUTH from localhost\[127\.0\.0\.1\]$/, 5000);
    await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=1 auth=0\/2 commands=1\/3$/, 5000);
  });
});
