/**
 * lmtp_header_checks, lmtp_mime_header_checks, lmtp_body_checks and lmtp_generic_maps end to
 * end: a server child delivers through its lmtp transport into a REAL Dovecot (as
 * e2e-lmtp.test.ts), and the message in the user's Maildir is the one the checks and the generic
 * maps made; the log names the lmtp_ parameters. A second lmtp transport whose
 * lmtp_body_checks table fails (master.cf -o) defers with 4.3.0. Needs the Debian packages
 * dovecot-core and dovecot-lmtpd (/usr/sbin/dovecot).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DOVECOT, startDovecot, type Dovecot } from '../bench/delivery/dovecot.js';
import { freePort, queuedId, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { NEEDS_DOVECOT_LMTP } from './helpers/peers.js';

const MESSAGE = [
  'From: Root <root@box.local>',
  'To: <alice@example.com>',
  'Subject: lmtp checks',
  'X-Internal: secret',
  'X-Reject: stays',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain',
  'Content-Description: secret part',
  '',
  'secret body line',
  'root@box.local stays in the body',
  '--b1--',
  '',
].join('\r\n');

/** Waits for a message in the user's Maildir/new that contains `text`. */
async function arrived(dc: Dovecot, user: string, text: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const m = dc.newMessages(user).find((x) => x.includes(text));
    if (m !== undefined) return m;
    if (Date.now() > deadline) throw new Error(`no message with "${text}" for ${user}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('lmtp_*_checks and lmtp_generic_maps into Dovecot', { skip: NEEDS_DOVECOT_LMTP }, () => {
  let dc: Dovecot;
  let server: TestServer;
  before(async () => {
    assert.ok(existsSync(DOVECOT), `${DOVECOT} is missing: apt-get install dovecot-core dovecot-lmtpd`);
    dc = await startDovecot({ users: ['alice@example.com', 'bob@example.net'], port: await freePort() });
    const badPort = await freePort();
    server = await startServer({
      // lmtpbad: its body checks table is a tcp: table on a port nobody listens on.
      masterCfExtra: `lmtp unix - - n - 1 lmtp\nlmtpbad unix - - n - 1 lmtp -o lmtp_body_checks=tcp:127.0.0.1:${badPort}`,
      env: (dir) => {
        writeFileSync(join(dir, 'header_checks'), ['/^X-Internal:/ IGNORE', '/^Subject: lmtp checks/ REPLACE Subject: lmtp checked', '/^X-Reject:/ REJECT no', ''].join('\n'));
        writeFileSync(join(dir, 'mime_header_checks'), ['/^Content-Description: secret/ STRIP', ''].join('\n'));
        writeFileSync(join(dir, 'body_checks'), ['/^secret body line$/ REPLACE [redacted]', ''].join('\n'));
        writeFileSync(join(dir, 'generic'), ['root@box.local alice-out@example.org', ''].join('\n'));
        return {};
      },
      mainCf: {
        relayhost: '',
        default_transport: `lmtp:inet:127.0.0.1:${dc.port}`,
        relay_domains: 'example.net',
        relay_transport: `lmtpbad:inet:127.0.0.1:${dc.port}`,
        lmtp_header_checks: 'regexp:${config_directory}/header_checks',
        lmtp_mime_header_checks: 'regexp:${config_directory}/mime_header_checks',
        lmtp_body_checks: 'regexp:${config_directory}/body_checks',
        lmtp_generic_maps: 'texthash:${config_directory}/generic',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await dc?.stop();
  });

  test('the stored message is the checked and mapped one; the log names the lmtp_ maps', async () => {
    const id = queuedId(await sendRaw(server.port, 'root@box.local', ['alice@example.com'], MESSAGE));
    const line = await server.waitForLog(new RegExp(`${id}: to=<alice@example\\.com>`), 20_000);
    assert.match(line, /postactor\/lmtp\[\d+\]: .*status=sent \(250 2\.0\.0 <alice@example\.com> /);
    const m = await arrived(dc, 'alice@example.com', 'Subject: lmtp checked');
    const lines = m.split(/\r?\n/);
    assert.ok(!m.includes('X-Internal'), 'IGNORE');
    assert.ok(!m.includes('lmtp checks'), 'REPLACE');
    assert.ok(lines.includes('X-Reject: stays'), 'REJECT is not an agent\'s action: the header stays');
    assert.ok(!m.includes('Content-Description'), 'STRIP of a part header (lmtp_mime_header_checks)');
    assert.ok(lines.includes('[redacted]') && !m.includes('secret body line'), 'lmtp_body_checks');
    // lmtp_generic_maps: MAIL FROM (Dovecot's Return-Path) and the From header, not the body.
    assert.match(m, /^Return-Path: <alice-out@example\.org>\r?$/m);
    assert.ok(lines.includes('From: Root <alice-out@example.org>'), 'the From header is mapped');
    assert.ok(lines.includes('root@box.local stays in the body'));
    const lmtp = 'postactor/lmtp\\[\\d+\\]: ';
    await server.waitForLog(new RegExp(`${lmtp}${id}: replace: header Subject: lmtp checks: Subject: lmtp checked$`), 10_000);
    await server.waitForLog(new RegExp(`${lmtp}${id}: strip: header Content-Description: secret part$`), 10_000);
    await server.waitForLog(new RegExp(`${lmtp}warning: unsupported command in lmtp_header_checks map: REJECT no$`), 10_000);
  });

  test('a body checks table that fails: deferred, 4.3.0 local data error, nothing stored', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['bob@example.net'], MESSAGE));
    await server.waitForLog(new RegExp(`postactor/lmtpbad\\[\\d+\\]: warning: ${id}: smtp body checks lookup error$`), 20_000);
    const line = await server.waitForLog(new RegExp(`${id}: to=<bob@example\\.net>, .*status=deferred`), 20_000);
    assert.match(line, new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${dc.port}, .*dsn=4\\.3\\.0, status=deferred \\(local data error while talking to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]\\)$`));
    assert.equal(dc.newMessages('bob@example.net').length, 0);
  });
});
