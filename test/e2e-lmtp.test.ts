/**
 * End to end, LMTP (Postfix's lmtp(8)) into a REAL Dovecot: a server child delivers through its
 * lmtp transport to `dovecot -F` running on a throwaway configuration (passwd-file users, Maildir
 * under a temp directory, LMTP on a loopback port and on a UNIX-domain socket). The messages are
 * read back from the users' Maildir/new. Needs the Debian packages dovecot-core and
 * dovecot-lmtpd (/usr/sbin/dovecot).
 */
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DOVECOT, startDovecot as startSharedDovecot, type Dovecot } from '../bench/delivery/dovecot.js';
import { freePort, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { NEEDS_DOVECOT_LMTP } from './helpers/peers.js';

/** Dovecot on a throwaway config (bench/delivery/dovecot.ts); carol's quota (10 bytes) is smaller
 *  than any message, so Dovecot refuses her copy after DATA. */
async function startDovecot(): Promise<Dovecot> {
  assert.ok(existsSync(DOVECOT), `${DOVECOT} is missing: apt-get install dovecot-core dovecot-lmtpd`);
  return startSharedDovecot({
    port: await freePort(),
    users: ['alice@example.com', 'bob@example.com', 'alice@example.net', 'carol@example.com'],
    extra: { 'carol@example.com': 'userdb_quota_rule=*:storage=10B' },
  });
}

const maildirNew = (dc: Dovecot, user: string): string[] => dc.newMessages(user);

async function send(server: TestServer, from: string, to: string[], subject: string): Promise<string> {
  const r = await sendRaw(server.port, from, to, rfc822({ From: `<${from}>`, To: to.map((t) => `<${t}>`).join(', '), Subject: subject, 'Message-ID': `<${subject.replace(/\W/g, '-')}@client.test>` }, `Body of ${subject}.\n.dot line\n`));
  assert.equal(r.code, 250, r.line);
  return /queued as (\S+)/.exec(r.text)![1]!;
}

describe('lmtp(8) into Dovecot', { skip: NEEDS_DOVECOT_LMTP }, () => {
  let dc: Dovecot;
  let server: TestServer;
  before(async () => {
    dc = await startDovecot();
    server = await startServer({
      masterCfExtra: 'lmtp unix - - n - 1 lmtp',
      mainCf: {
        relayhost: '',
        default_transport: `lmtp:inet:127.0.0.1:${dc.port}`,
        relay_domains: 'example.net',
        relay_transport: `lmtp:unix:${dc.socket}`,
      },
    });
  });
  after(async () => {
    await server?.stop();
    await dc?.stop();
  });

  test('over TCP: the message lands in the Maildir/new of the user; status=sent with Dovecot\'s reply', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.com'], 'lmtp tcp one');
    const line = await server.waitForLog(new RegExp(`${id}: to=<alice@example\\.com>`), 10_000);
    assert.match(line, /postactor\/lmtp\[\d+\]: /);
    assert.match(line, new RegExp(`, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${dc.port}, delay=[\\d.]+, delays=[\\d./]+, dsn=2\\.0\\.0, status=sent \\(250 2\\.0\\.0 <alice@example\\.com> \\S+ Saved\\)$`));
    const got = maildirNew(dc, 'alice@example.com').filter((m) => m.includes('Subject: lmtp tcp one'));
    assert.equal(got.length, 1);
    assert.match(got[0]!, /^Return-Path: <sender@example\.org>\r?\n/, 'Dovecot adds Return-Path from MAIL FROM');
    assert.ok(got[0]!.includes('\n.dot line'), 'dot-stuffing undone by the store');
  });

  test('a known and an unknown user in one message: sent vs bounced 5.1.1 (per-recipient results)', async () => {
    const id = await send(server, 'bob@example.com', ['alice@example.com', 'nosuch@example.com'], 'lmtp mixed');
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    const alice = lines.find((l) => l.includes('to=<alice@example.com>'))!;
    const nosuch = lines.find((l) => l.includes('to=<nosuch@example.com>'))!;
    assert.match(alice, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 <alice@example\.com> \S+ Saved\)$/);
    assert.match(nosuch, new RegExp(`dsn=5\\.1\\.1, status=bounced \\(host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\] said: 550 5\\.1\\.1 <nosuch@example\\.com> User doesn't exist: nosuch@example\\.com \\(in reply to RCPT TO command\\)\\)$`));
    assert.equal(maildirNew(dc, 'alice@example.com').filter((m) => m.includes('Subject: lmtp mixed')).length, 1);
    // The non-delivery notice goes back to bob, through the same LMTP transport.
    await server.waitForLog(new RegExp(`${id}: sender non-delivery notification: `), 10_000);
    const deadline = Date.now() + 10_000;
    while (!maildirNew(dc, 'bob@example.com').some((m) => m.includes('nosuch@example.com')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(maildirNew(dc, 'bob@example.com').some((m) => /Undelivered Mail Returned to Sender/.test(m) && m.includes('nosuch@example.com')), 'bounce delivered to bob');
  });

  test('two known users: one reply each after DATA, both delivered, one copy each', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.com', 'bob@example.com'], 'lmtp two users');
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    for (const u of ['alice@example.com', 'bob@example.com']) {
      const l = lines.find((x) => x.includes(`to=<${u}>`))!;
      assert.match(l, new RegExp(`status=sent \\(250 2\\.0\\.0 <${u.replace('.', '\\.')}> \\S+ Saved\\)$`));
      assert.equal(maildirNew(dc, u).filter((m) => m.includes('Subject: lmtp two users')).length, 1, u);
    }
  });

  test('a reply per recipient after DATA: one user accepted, one refused there (quota) → sent vs bounced "in reply to end of DATA"', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.com', 'carol@example.com'], 'lmtp after data');
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    const alice = lines.find((l) => l.includes('to=<alice@example.com>'))!;
    const carol = lines.find((l) => l.includes('to=<carol@example.com>'))!;
    assert.match(alice, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 <alice@example\.com> \S+ Saved\)$/);
    assert.match(carol, /dsn=5\.2\.2, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 552 5\.2\.2 <carol@example\.com> Quota exceeded.* \(in reply to end of DATA command\)\)$/);
    assert.equal(maildirNew(dc, 'alice@example.com').filter((m) => m.includes('Subject: lmtp after data')).length, 1);
    assert.equal(maildirNew(dc, 'carol@example.com').length, 0);
  });

  test('over a UNIX-domain socket (lmtp:unix:/path): relay=$myhostname[path]', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.net'], 'lmtp unix socket');
    const line = await server.waitForLog(new RegExp(`${id}: to=<alice@example\\.net>`), 10_000);
    assert.ok(line.includes(`, relay=mx.postactor.test[${dc.socket}], `), line);
    assert.match(line, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 <alice@example\.net> \S+ Saved\)$/);
    assert.equal(maildirNew(dc, 'alice@example.net').filter((m) => m.includes('Subject: lmtp unix socket')).length, 1);
  });

  test('connection reuse: back-to-back deliveries share one LMTP connection', async () => {
    const before = (dc.log().match(/Connect from 127\.0\.0\.1/g) ?? []).length;
    for (let i = 0; i < 3; i++) {
      const id = await send(server, 'sender@example.org', ['bob@example.com'], `lmtp reuse ${i}`);
      await server.waitForLog(new RegExp(`${id}: to=<bob@example\\.com>, .*status=sent`), 10_000);
    }
    const after = (dc.log().match(/Connect from 127\.0\.0\.1/g) ?? []).length;
    assert.ok(after - before <= 1, `${after - before} new connections for 3 deliveries`);
  });
});
