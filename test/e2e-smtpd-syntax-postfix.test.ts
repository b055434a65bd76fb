/**
 * smtpd's answers to malformed and unusual commands, side by side with Debian's Postfix
 * (bench/postfix-peer.sh): each dialogue's last reply must be Postfix's, and is also checked
 * against the reply written here, so the test says what it expects without the peer too.
 * Covered: Postfix's tokenizer (white space before the verb, a NUL ends the line, a line with
 * no word), MAIL/RCPT keyword syntax before the address, nested MAIL and RCPT without MAIL
 * before syntax, RSET/DATA with an argument, DATA without a valid recipient, SIZE and ENVID
 * syntax (xtext, printable, once), duplicate or empty DSN parameters, VRFY's echo, and which
 * addresses are taken:
 * any local part (strict_rfc821_envelopes = no), never a domain that is no host name or
 * address literal.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { SmtpSink } from '../src/smtp/sink.js';
import { SmtpDialogue, type TestServer } from './helpers/server.js';
import { sideBySide, type SideBySide } from './helpers/side-by-side.js';
import { needs } from './helpers/peers.js';
import type { MtaHandle } from '../bench/relay/mta.js';

const M = 'MAIL FROM:<a@example.org>';
const R = 'RCPT TO:<b@example.net>';
/** Commands after EHLO, and the last one's reply. */
const CASES: [string[], string][] = [
  [['MAIL FROM:'], '501 5.5.4 Syntax: MAIL FROM:<address>'],
  [['MAIL'], '501 5.5.4 Syntax: MAIL FROM:<address>'],
  [['MAIL TO:<x@example.org>'], '501 5.5.4 Syntax: MAIL FROM:<address>'],
  [['MAIL FROM <a@example.org>'], '501 5.5.4 Syntax: MAIL FROM:<address>'],
  [['MAIL  FROM:<a@example.org>'], '250 2.1.0 Ok'],
  [['MAIL FROM:<a@example.org'], '501 5.1.7 Bad sender address syntax'],
  [[M, 'MAIL FROM:'], '503 5.5.1 Error: nested MAIL command'],
  [['RCPT TO:'], '503 5.5.1 Error: need MAIL command'],
  [[M, 'RCPT TO:'], '501 5.5.4 Syntax: RCPT TO:<address>'],
  [[M, 'RCPT FROM:<b@example.net>'], '501 5.5.4 Syntax: RCPT TO:<address>'],
  [['RSET x'], '501 5.5.4 Syntax: RSET'],
  [[M, R, 'DATA x'], '501 5.5.4 Syntax: DATA'],
  [[M, 'DATA'], '554 5.5.1 Error: no valid recipients'],
  [['DATA'], '503 5.5.1 Error: need RCPT command'],
  [['HELO'], '501 Syntax: HELO hostname'],
  [['EHLO'], '501 Syntax: EHLO hostname'],
  [['VRFY'], '501 5.5.4 Syntax: VRFY address [SMTPUTF8]'],
  [[''], '500 5.5.2 Error: bad syntax'],
  [['   '], '500 5.5.2 Error: bad syntax'],
  [[' NOOP'], '250 2.0.0 Ok'],
  [['\tNOOP'], '250 2.0.0 Ok'],
  [['NOOP\tx'], '250 2.0.0 Ok'],
  [['NOOP\x00junk'], '250 2.0.0 Ok'],
  [['MAIL FROM:<a@example.org> SIZE=abc'], '501 5.5.4 Bad message size syntax'],
  [['MAIL FROM:<a@example.org> ENVID=a+zz'], '501 5.5.4 Bad ENVID parameter syntax'],
  [['MAIL FROM:<a@example.org> ENVID=a+0Ab'], '501 5.5.4 Bad ENVID parameter syntax'],
  [['MAIL FROM:<a@example.org> ENVID=abc ENVID=def'], '501 5.5.4 Bad ENVID parameter syntax'],
  [['MAIL FROM:<a@example.org> ENVID=a+2Bb'], '250 2.1.0 Ok'],
  [['MAIL FROM:<a@example.org> RET=FULL RET=HDRS'], '501 5.5.4 Bad RET parameter syntax'],
  [['MAIL FROM:<a.@example.org>'], '250 2.1.0 Ok'],
  [['MAIL FROM:<a..b@example.org>'], '250 2.1.0 Ok'],
  [[`MAIL FROM:<${'a'.repeat(600)}@example.org>`], '250 2.1.0 Ok'],
  [[M, 'RCPT TO:<b.@example.net>'], '250 2.1.5 Ok'],
  [['MAIL FROM:<a@-bad-.example>'], '501 5.1.7 Bad sender address syntax'],
  [['MAIL FROM:<a@[999.1.1.1]>'], '501 5.1.7 Bad sender address syntax'],
  [['MAIL FROM:<a@1.2.3.4>'], '501 5.1.7 Bad sender address syntax'],
  [['MAIL FROM:<a@[1.2.3.4]>'], '250 2.1.0 Ok'],
  [[M, 'RCPT TO:<b@-x.example.net>'], '501 5.1.3 Bad recipient address syntax'],
  [['MAIL FROM:<a@example.org> SIZE='], '501 5.5.4 Bad message size syntax'],
  [['MAIL FROM:<a@example.org> RET='], '501 5.5.4 Bad RET parameter syntax'],
  [['MAIL FROM:<a@example.org> ENVID='], '501 5.5.4 Bad ENVID parameter syntax'],
  [['VRFY <a@example.org>'], '252 2.0.0 <a@example.org>'],
  [['MAIL FROM:<a@example.org> SIZE=10 SIZE=20'], '250 2.1.0 Ok'],
  [['MAIL FROM:<a@example.org> foo=b+41r'], '555 5.5.4 Unsupported option: foo=b+41r'],
  [[M, 'RCPT TO:<b@example.net> Bogus'], '555 5.5.4 Unsupported option: Bogus'],
  [[M, 'RCPT TO:<b@example.net> NOTIFY=NEVER NOTIFY=NEVER'], '501 5.5.4 Error: Bad NOTIFY parameter syntax'],
  [['VRFY a@example.org'], '252 2.0.0 a@example.org'],
];

async function last(port: number, cmds: string[]): Promise<string> {
  const { smtp } = await SmtpDialogue.connect(port);
  try {
    await smtp.cmd('EHLO syntax.test');
    let line = '';
    for (const c of cmds) {
      const r = await smtp.cmd(c);
      line = `${r.code} ${r.lines.join('|')}`;
    }
    return line;
  } finally {
    smtp.close();
  }
}

describe('smtpd syntax: Postactor and Postfix side by side', { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
  let sink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let pair: SideBySide | undefined;

  before(async () => {
    // No error sleep: a dialogue of errors answers at once on both.
    pair = await sideBySide({ settings: { smtpd_error_sleep_time: '0', mynetworks: '127.0.0.0/8' }, sharedSink: true });
    ({ postfix, server, paSink: sink } = pair);
  });

  after(async () => {
    await pair?.close();
  });

  test('the same last reply as Postfix, and the one expected, for each dialogue', async () => {
    const differ: string[] = [];
    for (const [cmds, expected] of CASES) {
      const fromPostfix = await last(postfix.port, cmds);
      const fromPostactor = await last(server.port, cmds);
      const shown = JSON.stringify(cmds.map((c) => c.slice(0, 60)));
      if (fromPostactor !== fromPostfix) differ.push(`${shown}: Postactor "${fromPostactor}", Postfix "${fromPostfix}"`);
      assert.equal(fromPostactor, expected, shown);
    }
    assert.deepEqual(differ, []);
  });
});
