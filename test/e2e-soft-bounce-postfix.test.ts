/**
 * soft_bounce = yes side by side with Debian's Postfix (bench/postfix-peer.sh): the same SMTP
 * dialogue gets the same reply lines (a restriction's reject with its footer, an unknown
 * command, a nested MAIL, DATA without a valid recipient, HELO and VRFY without an argument:
 * every 5 made 4), the reject log line (from the first test's
 * dialogue) shows the same softened reply, and
 * a next hop's 550 to RCPT is logged with the same "dsn=4.1.1, status=SOFTBOUNCE (…)".
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SmtpSink } from '../src/smtp/sink.js';
import { queuedId, rfc822, sendRaw, SmtpDialogue, type TestServer } from './helpers/server.js';
import { sideBySide, type SideBySide } from './helpers/side-by-side.js';
import { needs } from './helpers/peers.js';
import type { MtaHandle } from '../bench/relay/mta.js';

async function dialogue(port: number): Promise<string[]> {
  const out: string[] = [];
  const { smtp } = await SmtpDialogue.connect(port);
  try {
    await smtp.cmd('EHLO side-by-side.test');
    const say = async (line: string) => {
      const r = await smtp.cmd(line);
      out.push(`${r.code} ${r.lines.join('|')}`);
    };
    await say('MAIL FROM:<p@client.test>');
    await say('RCPT TO:<blocked@example.com>');
    await say('FOO');
    await say('MAIL FROM:<again@client.test>');
    // DATA in a transaction without a valid recipient, HELO and VRFY without their argument.
    await say('DATA');
    await say('HELO');
    await say('VRFY');
    await say('QUIT');
  } finally {
    smtp.close();
  }
  return out;
}

/** The first line of `file` matching re, polled (bounded: Postfix's postlogd writes a little later). */
async function logLine(file: string, re: RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = fs.readFileSync(file, 'latin1').split('\n').find((l) => re.test(l));
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no line matching ${re} in ${file} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('soft_bounce: Postactor and Postfix side by side', { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
  let tdir: string;
  let pfSink: SmtpSink;
  let paSink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let pair: SideBySide | undefined;

  before(async () => {
    tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'soft-bounce-postfix-'));
    fs.writeFileSync(path.join(tdir, 'access'), '/^blocked@example\\.com$/ REJECT no such user here\n');
    const hard = { keepMessages: true, rcptReply: (r: string) => (r.startsWith('hard') ? `550 5.1.1 <${r}>: Recipient address rejected: User unknown` : null) };
    const common = {
      soft_bounce: 'yes',
      smtpd_recipient_restrictions: `check_recipient_access regexp:${tdir}/access, permit`,
      smtpd_reject_footer: 'Call 800-555-0101.',
      smtpd_error_sleep_time: '0',
    };
    pair = await sideBySide({ settings: common, sink: hard });
    ({ postfix, server, pfSink, paSink } = pair);
  });

  after(async () => {
    await pair?.close();
    if (tdir) fs.rmSync(tdir, { recursive: true, force: true });
  });

  test('the same reply lines: every 5xx sent as 4xx, footer lines included', async () => {
    const fromPostfix = await dialogue(postfix.port);
    const fromPostactor = await dialogue(server.port);
    assert.deepEqual(fromPostactor, fromPostfix);
    assert.equal(fromPostfix[1], '454 4.7.1 <blocked@example.com>: Recipient address rejected: no such user here|4.7.1 Call 800-555-0101.');
  });

  test('the same reject log line, with the code that was sent', async () => {
    const re = /reject: RCPT from localhost\[127\.0\.0\.1\]: .*blocked@example\.com.*$/;
    const strip = (l: string) => re.exec(l)![0];
    const pf = strip(await logLine(path.join(postfix.dir, 'maillog'), re));
    const pa = strip(await server.waitForLog(re, 20_000));
    assert.equal(pa, pf);
    assert.match(pa, /: 454 4\.7\.1 <blocked@example\.com>: Recipient address rejected: no such user here; from=<p@client\.test> to=<blocked@example\.com> proto=ESMTP helo=<side-by-side\.test>$/);
  });

  test('a next hop\'s 550 to RCPT: the same "dsn=4.1.1, status=SOFTBOUNCE (…)" in both logs', async () => {
    const message = rfc822({ Subject: 'soft side by side' }, 'kept\n');
    const pfId = queuedId(await sendRaw(postfix.port, 's@client.test', ['hard@example.com'], message));
    const paId = queuedId(await sendRaw(server.port, 's@client.test', ['hard@example.com'], message));
    const tail = (l: string) => l.slice(l.indexOf(', dsn='));
    const pf = tail(await logLine(path.join(postfix.dir, 'maillog'), new RegExp(`${pfId}: to=<hard@example\\.com>, relay=.*status=`)));
    const pa = tail(await server.waitForLog(new RegExp(`${paId}: to=<hard@example\\.com>, relay=.*status=`), 20_000));
    assert.equal(pa, pf);
    assert.match(pa, /^, dsn=4\.1\.1, status=SOFTBOUNCE \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <hard@example\.com>: Recipient address rejected: User unknown \(in reply to RCPT TO command\)\)$/);
  });
});
