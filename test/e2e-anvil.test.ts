/**
 * anvil end to end: real clients from 127.0.0.2… (outside mynetworks = 127.0.0.1/32) against a
 * running server; per-client connection count and rate limits with Postfix's replies and log
 * lines, the mynetworks exception, counters shared by two smtpd threads, the message rate limit
 * and anvil's statistics lines.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, SmtpDialogue, startServer, type Reply, type TestServer } from './helpers/server.js';
import { makeTestCertificates } from './helpers/test-ca.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-anvil-');

const HOST = 'mx.postactor.test';

/** Sessions still open, closed before the server stops (it would wait for them to finish). */
const live = new Set<SmtpDialogue>();

async function open(server: TestServer, from: string): Promise<{ smtp: SmtpDialogue; greeting: Reply }> {
  const c = await SmtpDialogue.connect(server.port, { localAddress: from });
  live.add(c.smtp);
  return c;
}

/** Closes this test's sessions, then stops its server. */
function stopAfter(server: TestServer): () => Promise<void> {
  return async () => {
    for (const s of live) s.close();
    live.clear();
    await server.stop();
  };
}

/** Opens `n` connections one after another, keeping them open; their greetings in order. */
async function openMany(server: TestServer, from: string, n: number): Promise<{ smtp: SmtpDialogue; greeting: Reply }[]> {
  const out: { smtp: SmtpDialogue; greeting: Reply }[] = [];
  for (let i = 0; i < n; i++) out.push(await open(server, from));
  return out;
}

describe('anvil: per-client connection limits', () => {
  test('count limit: 5 of 8 concurrent connections greeted, 3 refused and logged; closing one lets one in; mynetworks exempt', async (t) => {
    const server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', smtpd_client_connection_count_limit: '5' } });
    t.after(stopAfter(server));
    const conns = await openMany(server, '127.0.0.2', 8);
    assert.deepEqual(conns.map((c) => c.greeting.code), [220, 220, 220, 220, 220, 421, 421, 421]);
    for (const c of conns.slice(5)) assert.equal(c.greeting.line, `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.2`);
    const warnings = await server.waitForLogCount(/warning: Connection concurrency limit exceeded: [678] from \S+\[127\.0\.0\.2\] for service 127\.0\.0\.1:\d+$/, 3, 5000);
    assert.equal(warnings.length, 3);
    // The refused ones were closed by the server; the 5 greeted are still counted.
    await server.waitForLogCount(/disconnect from \S+\[127\.0\.0\.2\]/, 3, 5000);
    const again = await open(server, '127.0.0.2');
    assert.equal(again.greeting.code, 421);
    again.smtp.close();
    await server.waitForLogCount(/disconnect from \S+\[127\.0\.0\.2\]/, 4, 5000);
    // One leaves: one more may come in.
    assert.equal((await conns[0]!.smtp.cmd('QUIT')).code, 221);
    await server.waitForLogCount(/disconnect from \S+\[127\.0\.0\.2\]/, 5, 5000);
    const next = await open(server, '127.0.0.2');
    assert.equal(next.greeting.code, 220, next.greeting.line);
    // A client in mynetworks is not counted at all.
    const local = await openMany(server, '127.0.0.1', 8);
    assert.deepEqual(local.map((c) => c.greeting.code), Array(8).fill(220));
    assert.ok(!server.logLines().some((l) => /limit exceeded: .*\[127\.0\.0\.1\]/.test(l)));
  });

  test('the default limit (smtpd_client_connection_count_limit = 50): of 60 connections from one client, 50 are greeted', async (t) => {
    const server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32' } });
    t.after(stopAfter(server));
    const conns = await Promise.all(Array.from({ length: 60 }, () => open(server, '127.0.0.8')));
    assert.equal(conns.filter((c) => c.greeting.code === 220).length, 50);
    assert.equal(conns.filter((c) => c.greeting.line === `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.8`).length, 10);
  });

  test('rate limit: the 4th connection in a time unit is refused; the next unit lets the client in; statistics are logged', async (t) => {
    const server = await startServer({
      mainCf: {
        mynetworks: '127.0.0.1/32', smtpd_client_connection_rate_limit: '3',
        anvil_rate_time_unit: '2s', anvil_status_update_time: '1s',
      },
    });
    t.after(stopAfter(server));
    const codes: number[] = [];
    let refused: Reply | null = null;
    for (let i = 0; i < 4; i++) {
      const c = await open(server, '127.0.0.3');
      codes.push(c.greeting.code);
      if (c.greeting.code === 421) refused = c.greeting;
      c.smtp.close();
    }
    assert.deepEqual(codes, [220, 220, 220, 421]);
    assert.equal(refused!.line, `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.3`);
    await server.waitForLog(/warning: Connection rate limit exceeded: 4 from \S+\[127\.0\.0\.3\] for service 127\.0\.0\.1:\d+$/, 5000);
    // Fixed window: once more than the unit has passed since its start, all is forgiven.
    await new Promise((r) => setTimeout(r, 2500));
    const later = await open(server, '127.0.0.3');
    later.smtp.close();
    assert.equal(later.greeting.code, 220, later.greeting.line);
    // anvil's statistics: the peak rate and count since the last report, for service:client.
    const port = server.port;
    await server.waitForLog(new RegExp(`anvil\\[\\d+\\]: statistics: max connection rate 4/2s for \\(127\\.0\\.0\\.1:${port}:127\\.0\\.0\\.3\\) at \\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d$`), 5000);
    await server.waitForLog(/anvil\[\d+\]: statistics: max connection count \d+ for \(127\.0\.0\.1:\d+:127\.0\.0\.3\) at /, 5000);
    await server.waitForLog(/anvil\[\d+\]: statistics: max cache size 1 at /, 5000);
  });

  test('two smtpd threads (maxproc 2) share the counters: 16 connections spread by SO_REUSEPORT, exactly 5 greeted', async (t) => {
    // defaultMasterCf runs smtpd with maxproc 2. With a counter per thread, 5 greetings out of
    // 16 would need every connection to land on one thread (odds 2 in 65,536).
    const server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', smtpd_client_connection_count_limit: '5' } });
    t.after(stopAfter(server));
    const conns = await Promise.all(Array.from({ length: 16 }, () => open(server, '127.0.0.4')));
    const greeted = conns.filter((c) => c.greeting.code === 220).length;
    assert.equal(greeted, 5);
    assert.equal(conns.filter((c) => c.greeting.code === 421).length, 11);
  });

  test('message, recipient (RCPT and VRFY) and AUTH rate limits: 450 4.7.1 past the limit, with Postfix\'s warnings', async (t) => {
    const server = await startServer({
      mainCf: {
        mynetworks: '127.0.0.1/32', smtpd_client_message_rate_limit: '2',
        smtpd_client_recipient_rate_limit: '2', smtpd_client_auth_rate_limit: '2',
      },
    });
    t.after(stopAfter(server));
    const { smtp, greeting } = await open(server, '127.0.0.5');
    assert.equal(greeting.code, 220);
    await smtp.cmd('EHLO client.test');
    // Recipients count whether accepted or not (relay is denied to this client).
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.notEqual((await smtp.cmd('RCPT TO:<b@example.com>')).code, 450);
    assert.notEqual((await smtp.cmd('RCPT TO:<c@example.com>')).code, 450);
    assert.equal((await smtp.cmd('RCPT TO:<d@example.com>')).line, '450 4.7.1 Error: too many recipients from 127.0.0.5');
    // VRFY counts as a recipient too.
    assert.equal((await smtp.cmd('VRFY e@example.com')).line, '450 4.7.1 Error: too many recipients from 127.0.0.5');
    await server.waitForLog(/warning: Recipient address rate limit exceeded: 4 from \S+\[127\.0\.0\.5\] for service 127\.0\.0\.1:\d+$/, 5000);
    await server.waitForLog(/warning: Recipient address rate limit exceeded: 3 from \S+\[127\.0\.0\.5\] for service 127\.0\.0\.1:\d+$/, 5000);
    await smtp.cmd('RSET');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    await smtp.cmd('RSET');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).line, '450 4.7.1 Error: too much mail from 127.0.0.5');
    await server.waitForLog(/warning: Message delivery request rate limit exceeded: 3 from \S+\[127\.0\.0\.5\] for service 127\.0\.0\.1:\d+$/, 5000);
    // AUTH is counted before any other check (here: SASL is not enabled).
    assert.equal((await smtp.cmd('AUTH PLAIN')).line, '503 5.5.1 Error: authentication not enabled');
    assert.equal((await smtp.cmd('AUTH PLAIN')).line, '503 5.5.1 Error: authentication not enabled');
    assert.equal((await smtp.cmd('AUTH PLAIN')).line, '450 4.7.1 Error: too many AUTH commands from 127.0.0.5');
    await server.waitForLog(/warning: AUTH command rate limit exceeded: 3 from \S+\[127\.0\.0\.5\] for service 127\.0\.0\.1:\d+$/, 5000);
  });

  test('new TLS session rate limit: the 3rd handshake ends with 421, the 4th STARTTLS gets 454 (wrapper mode: is dropped) and no handshake', async (t) => {
    const dir = tempDir();
    makeTestCertificates(dir, [HOST]);
    const wrapperPort = await freePort();
    const server = await startServer({
      masterCfExtra: `127.0.0.1:${wrapperPort} inet n - n - 1 smtpd -o smtpd_tls_wrappermode=yes\n`,
      mainCf: {
        mynetworks: '127.0.0.1/32', smtpd_client_new_tls_session_rate_limit: '2',
        smtpd_tls_security_level: 'may', smtpd_tls_cert_file: join(dir, 'server.pem'), smtpd_tls_key_file: join(dir, 'server.key'),
      },
    });
    t.after(stopAfter(server));
    const results: string[] = [];
    for (let i = 0; i < 4; i++) results.push(await starttlsSession(server.port, '127.0.0.6'));
    assert.equal(results[0], '250 2.0.0 Ok');
    assert.equal(results[1], '250 2.0.0 Ok');
    assert.match(results[2]!, new RegExp(`^421 4\\.7\\.0 ${HOST.replace(/\./g, '\\.')} Error: too many new TLS sessions from \\S+\\[127\\.0\\.0\\.6\\]$`));
    assert.match(results[3]!, /^454 4\.7\.0 Error: too many new TLS sessions from \S+\[127\.0\.0\.6\]$/);
    await server.waitForLog(/warning: New TLS session rate limit exceeded: 3 from \S+\[127\.0\.0\.6\] for service 127\.0\.0\.1:\d+$/, 5000);
    await server.waitForLog(/warning: Refusing STARTTLS request from \S+\[127\.0\.0\.6\] for service 127\.0\.0\.1:\d+$/, 5000);
    // Wrapper mode (its own service, its own counters): the 3rd new session gets 421 after its
    // handshake, the 4th is dropped before one, without a reply.
    const wrapped: string[] = [];
    for (let i = 0; i < 4; i++) wrapped.push(await wrapperSession(wrapperPort, '127.0.0.7'));
    assert.deepEqual(wrapped.slice(0, 2).map((r) => r.slice(0, 4)), ['220 ', '220 ']);
    assert.match(wrapped[2]!, /^421 4\.7\.0 \S+ Error: too many new TLS sessions from \S+\[127\.0\.0\.7\]$/);
    assert.equal(wrapped[3], 'no handshake');
    await server.waitForLog(new RegExp(`warning: Refusing TLS service request from \\S+\\[127\\.0\\.0\\.7\\] for service 127\\.0\\.0\\.1:${wrapperPort}$`), 5000);
  });
});

/**
 * One session from `from`: greeting, STARTTLS, and when that is 220 a new TLS session (no
 * resumption) and NOOP. The last reply line the client saw.
 */
async function starttlsSession(port: number, from: string): Promise<string> {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress: from });
  try {
    const plain = lineReader(sock);
    assert.match(await plain.next(), /^220 /);
    sock.write('STARTTLS\r\n');
    const answer = await plain.next();
    if (!answer.startsWith('220 ')) return answer;
    plain.stop();
    const secure = tls.connect({ socket: sock, rejectUnauthorized: false, servername: HOST });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const enc = lineReader(secure);
    secure.write('NOOP\r\n');
    const r = await enc.next();
    secure.destroy();
    return r;
  } finally {
    sock.destroy();
  }
}

/** One wrapper-mode session from `from`: the first reply after the handshake, or "no handshake". */
async function wrapperSession(port: number, from: string): Promise<string> {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress: from });
  const secure = tls.connect({ socket: sock, rejectUnauthorized: false, servername: HOST });
  try {
    const up = await new Promise<boolean>((resolve) => {
      secure.once('secureConnect', () => resolve(true)).once('error', () => resolve(false)).once('close', () => resolve(false));
    });
    if (!up) return 'no handshake';
    return await lineReader(secure).next();
  } finally {
    secure.destroy();
    sock.destroy();
  }
}

/** Reads CRLF-terminated lines from a stream, one at a time (5 s each at most). */
function lineReader(stream: net.Socket | tls.TLSSocket): { next(): Promise<string>; stop(): void } {
  let buf = '';
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  let closed = false;
  const onData = (d: Buffer) => {
    buf += d.toString('latin1');
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 2);
    }
    wake?.();
  };
  const onClose = () => { closed = true; wake?.(); };
  stream.on('data', onData);
  stream.on('close', onClose);
  return {
    async next() {
      const deadline = Date.now() + 5000;
      while (lines.length === 0) {
        if (closed) throw new Error(`connection closed (buffer: ${JSON.stringify(buf)})`);
        if (Date.now() > deadline) throw new Error(`no reply within 5 s (buffer: ${JSON.stringify(buf)})`);
        await new Promise<void>((r) => { wake = r; setTimeout(r, 100); });
        wake = null;
      }
      return lines.shift()!;
    },
    stop() {
      stream.off('data', onData);
      stream.off('close', onClose);
    },
  };
}

