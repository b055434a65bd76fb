/**
 * postscreen and dnsblog end to end, with Debian's master.cf shape
 * ("smtp inet … postscreen", "smtpd pass … smtpd", "dnsblog unix … dnsblog"): a real server,
 * a real DNS server on loopback serving the DNS lists, real SMTP clients from 127.0.0.2 and
 * up, and a sink as the relayhost. A second postscreen port, with its own -o settings and its
 * own pass service (smtpd_service_name), runs the drop actions and the deep tests.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SmtpSink } from '../src/smtp/sink.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { needs } from './helpers/peers.js';
import { BACKEND_SERVICES, deliveredWithSubject, freePort, queuedId, rfc822, sendRaw, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

/** Connects from `from` and returns the raw text the server sends within `ms` after writing `send`. */
function rawExchange(port: number, from: string, send: string | null, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => { text += d; });
    s.on('error', reject);
    s.on('connect', () => {
      if (send !== null) s.write(send);
    });
    const t = setTimeout(() => { s.destroy(); resolve(text); }, ms);
    s.on('close', () => { clearTimeout(t); resolve(text); });
  });
}

describe('postscreen in front of smtpd (Debian master.cf shape)', () => {
  let server: TestServer;
  let sink: SmtpSink;
  let dns: TestDnsServer;
  let port2 = 0, port3 = 0;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    dns = await startDnsServer({
      '5.0.0.127.zen.test': { A: ['127.0.0.2'] },
      '13.0.0.127.zen.test': { A: ['127.0.0.4'] },
      '13.0.0.127.wl.test': { A: ['127.0.9.2'] },
      '18.0.0.127.zen.test': { A: ['127.0.0.4'] },
      '18.0.0.127.wl.test': { A: ['127.0.9.2'] },
    });
    port2 = await freePort();
    port3 = await freePort();
    server = await startServer({
      sinkPort: await sink.listen(0),
      env: (dir) => {
        writeFileSync(join(dir, 'access.cidr'), '127.0.0.9 reject\n127.0.0.10 permit\n');
        return { POSTACTOR_DNS_SERVERS: dns.server };
      },
      masterCf: [
        '127.0.0.1:{{PORT}} inet n - y - 1 postscreen',
        'smtpd pass - - y - 2 smtpd',
        `127.0.0.1:${port2} inet n - y - 1 postscreen`,
        '  -o smtpd_service_name=smtpd2',
        '  -o postscreen_greet_action=drop',
        '  -o postscreen_dnsbl_action=drop',
        '  -o postscreen_dnsbl_reply_map=',
        '  -o postscreen_pipelining_enable=yes',
        '  -o postscreen_non_smtp_command_enable=yes',
        '  -o postscreen_bare_newline_enable=yes',
        '  -o postscreen_client_connection_count_limit=2',
        '  -o postscreen_dnsbl_allowlist_threshold=-1',
        '  -o postscreen_pre_queue_limit=10',
        'smtpd2 pass - - y - 1 smtpd',
        // A backup MX address: clients may talk, but never pass (and it feeds the same smtpd).
        `127.0.0.1:${port3} inet n - y - 1 postscreen`,
        '  -o postscreen_allowlist_interfaces=192.0.2.1',
        'dnsblog unix - - y - 0 dnsblog',
        ...BACKEND_SERVICES,
        '',
      ].join('\n'),
      mainCf: {
        mynetworks: '127.0.0.0/8',
        // permit_mynetworks (the default) would let every loopback client through: a table instead.
        postscreen_access_list: 'cidr:access.cidr',
        postscreen_denylist_action: 'drop',
        postscreen_greet_wait: '1s',
        postscreen_greet_action: 'enforce',
        postscreen_dnsbl_sites: 'zen.test*2 wl.test=127.0.[0..255].2*-5',
        postscreen_dnsbl_action: 'enforce',
        postscreen_dnsbl_reply_map: 'inline:{zen.test=zen.example}',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    await dns?.close();
  });

  test('a polite client gets the teaser and smtpd\'s greeting, its mail is relayed (PASS NEW), and it is PASS OLD next time', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port, { localAddress: '127.0.0.3' });
    assert.equal(greeting.code, 220);
    assert.equal(greeting.lines.length, 2, 'the 220- teaser, then smtpd\'s own 220 line');
    assert.match(greeting.line, /^220 mx\.postactor\.test ESMTP/);
    await smtp.cmd('QUIT');
    smtp.close();
    const pass = await server.waitForLog(/postscreen\[\d+\]: PASS NEW \[127\.0\.0\.3\]:\d+$/, 5000);
    assert.ok(pass);
    assert.ok(server.logLines().some((l) => new RegExp(`postscreen\\[\\d+\\]: CONNECT from \\[127\\.0\\.0\\.3\\]:\\d+ to \\[127\\.0\\.0\\.1\\]:${server.port}$`).test(l)));
    // Next time: no tests, straight to smtpd (no teaser), and the mail goes through.
    const r = await sendRaw(server.port, 'a@client.test', ['b@example.com'], rfc822({ Subject: 'screened' }, 'hello\n'), { localAddress: '127.0.0.3' });
    queuedId(r);
    await server.waitForLog(/PASS OLD \[127\.0\.0\.3\]:\d+$/, 5000);
    const got = await deliveredWithSubject(sink, 'screened');
    assert.match(got, /from client\.test \(\S+ \[127\.0\.0\.3\]\)/);
  });

  test('a pregreeting client is logged PREGREET and, with greet_action enforce, refused at RCPT with 550 5.5.1 Protocol error', async () => {
    const s = net.connect({ port: server.port, host: '127.0.0.1', localAddress: '127.0.0.4' });
    await new Promise((r) => s.once('connect', r));
    s.setEncoding('latin1');
    s.write('EHLO early.test\r\n');
    // The teaser is already on the way; the engine answers the early EHLO (no second 220).
    const smtp = await new Promise<string>((resolve) => {
      let text = '';
      const on = (x: string) => {
        text += x;
        if (/^250 /m.test(text)) {
          s.off('data', on);
          resolve(text);
        }
      };
      s.on('data', on);
    });
    assert.match(smtp, /^220-mx\.postactor\.test ESMTP/);
    assert.doesNotMatch(smtp, /^220 /m);
    const line = await server.waitForLog(/PREGREET \d+ after [\d.]+ from \[127\.0\.0\.4\]:\d+: EHLO early\.test\\r\\n$/, 5000);
    assert.match(line, /PREGREET 17 after/);
    const reply = (cmd: string) => new Promise<string>((resolve) => {
      s.once('data', (x: string) => resolve(x));
      s.write(cmd + '\r\n');
    });
    assert.equal(await reply('MAIL FROM:<a@early.test>'), '250 2.1.0 Ok\r\n');
    assert.equal(await reply('RCPT TO:<b@example.com>'), '550 5.5.1 Protocol error\r\n');
    assert.equal(await reply('QUIT'), '221 2.0.0 Bye\r\n');
    s.destroy();
    await server.waitForLog(/NOQUEUE: reject: RCPT from \[127\.0\.0\.4\]:\d+: 550 5\.5\.1 Protocol error; from=<a@early\.test>, to=<b@example\.com>, proto=ESMTP, helo=<early\.test>$/, 5000);
    await server.waitForLog(/DISCONNECT \[127\.0\.0\.4\]:\d+$/, 5000);
  });

  test('with greet_action drop a pregreeting client gets 521 5.5.1 Protocol error at once', async () => {
    const text = await rawExchange(port2, '127.0.0.14', 'HELO x\r\n', 3000);
    assert.match(text, /^220-mx\.postactor\.test ESMTP.*\r\n521 5\.5\.1 Protocol error\r\n$/);
    await server.waitForLog(/PREGREET 8 after [\d.]+ from \[127\.0\.0\.14\]:\d+: HELO x\\r\\n$/, 5000);
  });

  test('a DNSBL-listed client is logged "DNSBL rank" and refused with Postfix\'s text (the reply map hides the list\'s name)', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port, { localAddress: '127.0.0.5' });
    assert.equal(greeting.code, 220);
    await smtp.cmd('EHLO listed.test');
    await smtp.cmd('MAIL FROM:<a@listed.test>');
    const r = await smtp.cmd('RCPT TO:<b@example.com>');
    assert.equal(r.line, '550 5.7.1 Service unavailable; client [127.0.0.5] blocked using zen.example');
    smtp.close();
    await server.waitForLog(/DNSBL rank 2 for \[127\.0\.0\.5\]:\d+$/, 5000);
    await server.waitForLog(/dnsblog\[\d+\]: addr 127\.0\.0\.5 listed by domain zen\.test as 127\.0\.0\.2$/, 5000);
    // dnsbl_action drop (second port): 521 with the real list name (no reply map there).
    const text = await rawExchange(port2, '127.0.0.5', null, 3000);
    assert.match(text, /\r\n521 5\.7\.1 Service unavailable; client \[127\.0\.0\.5\] blocked using zen\.test\r\n$/);
  });

  test('a DNSWL entry with a negative weight outweighs a listing (and the filter must match)', async () => {
    const r = await sendRaw(server.port, 'a@wl.test', ['b@example.com'], rfc822({ Subject: 'allowlisted by dns' }, 'hi\n'), { localAddress: '127.0.0.13' });
    queuedId(r);
    await server.waitForLog(/PASS NEW \[127\.0\.0\.13\]:\d+$/, 5000);
  });

  test('postscreen_dnsbl_allowlist_threshold < 0: a DNSWL-listed client skips the other tests, deep ones included', async () => {
    const r = await sendRaw(port2, 'a@wl.test', ['b@example.com'], rfc822({ Subject: 'dnswl skips deep tests' }, 'hi\n'), { localAddress: '127.0.0.18' });
    queuedId(r);
    await server.waitForLog(new RegExp(`CONNECT from \\[127\\.0\\.0\\.18\\]:\\d+ to \\[127\\.0\\.0\\.1\\]:${port2}$`), 5000);
    await server.waitForLog(/PASS NEW \[127\.0\.0\.18\]:\d+$/, 5000);
  });

  test('postscreen_allowlist_interfaces: a client on another address is vetoed (ALLOWLIST VETO), told to come back, and not cached', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(port3, { localAddress: '127.0.0.19' });
    assert.equal(greeting.code, 220);
    await smtp.cmd('EHLO veto.test');
    await smtp.cmd('MAIL FROM:<a@veto.test>');
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).line, '450 4.3.2 Service currently unavailable');
    await smtp.cmd('QUIT');
    smtp.close();
    await server.waitForLog(/ALLOWLIST VETO \[127\.0\.0\.19\]:\d+$/, 5000);
    await server.waitForLog(/DISCONNECT \[127\.0\.0\.19\]:\d+$/, 5000);
    assert.ok(!server.logLines().some((l) => /PASS (NEW|OLD) \[127\.0\.0\.19\]/.test(l)));
  });

  test('the permanent list: DENYLISTED (drop: 521 5.3.2) and ALLOWLISTED (straight to smtpd)', async () => {
    const text = await rawExchange(server.port, '127.0.0.9', null, 2000);
    assert.equal(text, '521 5.3.2 Service currently unavailable\r\n');
    await server.waitForLog(/DENYLISTED \[127\.0\.0\.9\]:\d+$/, 5000);
    const { smtp, greeting } = await SmtpDialogue.connect(server.port, { localAddress: '127.0.0.10' });
    assert.equal(greeting.lines.length, 1, 'no teaser for an allowlisted client');
    assert.match(greeting.line, /^220 mx\.postactor\.test ESMTP/);
    smtp.close();
    await server.waitForLog(/ALLOWLISTED \[127\.0\.0\.10\]:\d+$/, 5000);
  });

  test('deep tests: a client that passes is told to come back (450, PASS NEW, DISCONNECT) and reaches smtpd next time', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(port2, { localAddress: '127.0.0.6' });
    assert.equal(greeting.code, 220);
    assert.equal(greeting.lines.length, 2);
    const ehlo = await smtp.cmd('EHLO deep.test');
    assert.equal(ehlo.code, 250);
    assert.ok(!ehlo.lines.includes('PIPELINING'), 'postscreen does not announce PIPELINING');
    assert.equal((await smtp.cmd('MAIL FROM:<a@deep.test>')).line, '250 2.1.0 Ok');
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).line, '450 4.3.2 Service currently unavailable');
    assert.equal((await smtp.cmd('QUIT')).line, '221 2.0.0 Bye');
    smtp.close();
    await server.waitForLog(/PASS NEW \[127\.0\.0\.6\]:\d+$/, 5000);
    await server.waitForLog(/DISCONNECT \[127\.0\.0\.6\]:\d+$/, 5000);
    const r = await sendRaw(port2, 'a@deep.test', ['b@example.com'], rfc822({ Subject: 'came back' }, 'hi\n'), { localAddress: '127.0.0.6' });
    queuedId(r);
    await server.waitForLog(/PASS OLD \[127\.0\.0\.6\]:\d+$/, 5000);
    await deliveredWithSubject(sink, 'came back');
  });

  test('deep tests: command pipelining, a non-SMTP command and a bare newline are caught', async () => {
    // Pipelining (action enforce): RCPT is refused.
    const { smtp } = await SmtpDialogue.connect(port2, { localAddress: '127.0.0.11' });
    smtp.write('EHLO p.test\r\nMAIL FROM:<a@p.test>\r\n');
    await smtp.read();
    await smtp.read();
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).line, '550 5.5.1 Protocol error');
    smtp.close();
    await server.waitForLog(/COMMAND PIPELINING from \[127\.0\.0\.11\]:\d+ after EHLO: MAIL FROM:<a@p\.test>\\r\\n$/, 5000);
    // Non-SMTP command (action drop).
    const c2 = await SmtpDialogue.connect(port2, { localAddress: '127.0.0.12' });
    const r = await c2.smtp.cmd('GET / HTTP/1.0');
    assert.equal(r.line, '521 5.7.0 Error: I can break rules, too. Goodbye.');
    c2.smtp.close();
    await server.waitForLog(/NON-SMTP COMMAND from \[127\.0\.0\.12\]:\d+ after CONNECT: GET GET \/ HTTP\/1\.0$/, 5000);
    // Bare newline (action ignore): logged, the session goes on.
    const c3 = await SmtpDialogue.connect(port2, { localAddress: '127.0.0.15' });
    c3.smtp.write('EHLO bare.test\n');
    assert.equal((await c3.smtp.read()).code, 250);
    c3.smtp.close();
    await server.waitForLog(/BARE NEWLINE from \[127\.0\.0\.15\]:\d+ after EHLO bare\.test$/, 5000);
  });

  test('postscreen_client_connection_count_limit: the third concurrent connection gets 421 4.7.0', async () => {
    const held = await Promise.all([1, 2].map(() => new Promise<net.Socket>((resolve) => {
      const s = net.connect({ port: port2, host: '127.0.0.1', localAddress: '127.0.0.16' }, () => resolve(s));
      s.on('error', () => undefined);
    })));
    await new Promise((r) => setTimeout(r, 200));
    const text = await rawExchange(port2, '127.0.0.16', null, 1500);
    assert.equal(text, '421 4.7.0 Error: too many connections\r\n');
    for (const s of held) s.destroy();
    await server.waitForLog(/NOQUEUE: reject: CONNECT from \[127\.0\.0\.16\]:\d+: too many connections$/, 5000);
  });

  test('postscreen_pre_queue_limit: with 9 sessions under test, the 10th gets 421 4.3.2 All screening ports are busy', async () => {
    const held = await Promise.all([20, 21, 22, 23, 24, 25, 26, 27, 28].map((n) => new Promise<net.Socket>((resolve) => {
      const s = net.connect({ port: port2, host: '127.0.0.1', localAddress: `127.0.0.${n}` }, () => resolve(s));
      s.on('error', () => undefined);
    })));
    await server.waitForLogCount(/CONNECT from \[127\.0\.0\.2[0-8]\]/, 9, 5000);
    const text = await rawExchange(port2, '127.0.0.29', null, 1500);
    assert.equal(text, '421 4.3.2 All screening ports are busy\r\n');
    for (const s of held) s.destroy();
    await server.waitForLog(/reject: connect from \[127\.0\.0\.29\]:\d+: all screening ports busy$/, 5000);
  });

  test('a client that hangs up during the greet wait is logged HANGUP, not failed', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect({ port: server.port, host: '127.0.0.1', localAddress: '127.0.0.17' }, () => setTimeout(() => { s.destroy(); resolve(); }, 200));
    });
    await server.waitForLog(/HANGUP after [\d.]+ from \[127\.0\.0\.17\]:\d+ in tests before SMTP handshake$/, 5000);
    await server.waitForLog(/DISCONNECT \[127\.0\.0\.17\]:\d+$/, 5000);
  });
});

const HAPROXY = '/usr/sbin/haproxy';

/** A throwaway haproxy (Debian's) forwarding each frontend port to a backend with a PROXY header. */
async function startHaproxy(dir: string, routes: { listen: number; to: number; send: 'send-proxy' | 'send-proxy-v2' }[]): Promise<ChildProcess> {
  const cfg = [
    'global', '  maxconn 100',
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 30s', '  timeout server 30s',
    ...routes.flatMap((r, i) => [`frontend f${i}`, `  bind 127.0.0.1:${r.listen}`, `  default_backend b${i}`, `backend b${i}`, `  server s 127.0.0.1:${r.to} ${r.send}`]),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  const child = spawn(HAPROXY, ['-f', join(dir, 'haproxy.cfg'), '-db'], { stdio: 'ignore' });
  // Ready when every frontend accepts.
  const deadline = Date.now() + 10_000;
  for (const r of routes) {
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(r.listen, '127.0.0.1', () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > deadline) throw new Error('haproxy did not start');
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  return child;
}

describe('haproxy in front: postscreen_upstream_proxy_protocol and smtpd_upstream_proxy_protocol', { skip: needs(HAPROXY, 'haproxy') }, () => {
  let server: TestServer;
  let sink: SmtpSink;
  let haproxy: ChildProcess | null = null;
  let front1 = 0, front2 = 0, screened = 0;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const plain = await freePort();
    screened = await freePort();
    server = await startServer({
      sinkPort: await sink.listen(0),
      // {{PORT}} (the harness's readiness probe) is a plain smtpd; the proxied ports want a header.
      masterCf: [
        '127.0.0.1:{{PORT}} inet n - n - 1 smtpd',
        `127.0.0.1:${screened} inet n - y - 1 postscreen`,
        '  -o postscreen_upstream_proxy_protocol=haproxy',
        'smtpd pass - - y - 1 smtpd',
        `127.0.0.1:${plain} inet n - n - 1 smtpd`,
        '  -o smtpd_upstream_proxy_protocol=haproxy',
        ...BACKEND_SERVICES,
        '',
      ].join('\n'),
      // Only the proxied address is in mynetworks: the proxy itself (127.0.0.1) is not.
      mainCf: { mynetworks: '127.0.0.5/32', postscreen_greet_wait: '1s' },
    });
    front1 = await freePort();
    front2 = await freePort();
    haproxy = await startHaproxy(server.dir, [
      { listen: front1, to: screened, send: 'send-proxy-v2' },
      { listen: front2, to: plain, send: 'send-proxy' },
    ]);
  });
  after(async () => {
    haproxy?.kill('SIGKILL');
    await server?.stop();
    await sink?.close();
  });

  test('postscreen sees the client behind haproxy (v2), and so does smtpd after the hand-off', async () => {
    const r = await sendRaw(front1, 'a@proxied.test', ['b@example.com'], rfc822({ Subject: 'through haproxy v2' }, 'hi\n'), { localAddress: '127.0.0.5' });
    queuedId(r);
    await server.waitForLog(new RegExp(`postscreen\\[\\d+\\]: CONNECT from \\[127\\.0\\.0\\.5\\]:\\d+ to \\[127\\.0\\.0\\.1\\]:${front1}$`), 5000);
    await server.waitForLog(/ALLOWLISTED \[127\.0\.0\.5\]:\d+$/, 5000);
    await server.waitForLog(/smtpd\[\d+\]: connect from \S+\[127\.0\.0\.5\]$/, 5000);
    const got = await deliveredWithSubject(sink, 'through haproxy v2');
    assert.match(got, /\[127\.0\.0\.5\]\)/);
  });

  test('smtpd_upstream_proxy_protocol = haproxy (v1): smtpd takes the client address from the header', async () => {
    const r = await sendRaw(front2, 'a@proxied.test', ['b@example.com'], rfc822({ Subject: 'through haproxy v1' }, 'hi\n'), { localAddress: '127.0.0.5' });
    queuedId(r);
    const got = await deliveredWithSubject(sink, 'through haproxy v1');
    assert.match(got, /\[127\.0\.0\.5\]\)/);
  });

  test('a connection that does not start with a PROXY header gets 421 4.3.2 No system resources', async () => {
    const text = await rawExchange(screened, '127.0.0.5', 'EHLO x\r\n', 3000);
    assert.equal(text, '421 4.3.2 No system resources\r\n');
    await server.waitForLog(/warning: haproxy read: bad or missing protocol header: EHLO x\\r\\n$/, 5000);
  });
});
