/**
 * smtpd_reject_footer and the notify_classes transcripts side by side with Debian's Postfix
 * (bench/postfix-peer.sh): the same dialogues get the same reply lines, and the postmaster's
 * transcripts have the same subject, headers and body (host names, the banner and the EHLO
 * keyword list aside).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { SmtpSink } from '../src/smtp/sink.js';
import { SmtpDialogue, type TestServer } from './helpers/server.js';
import { sideBySide, type SideBySide } from './helpers/side-by-side.js';
import { needs } from './helpers/peers.js';
import type { MtaHandle } from '../bench/relay/mta.js';

const FOOTER = 'For assistance, call 800-555-0101.\\nClient: $client_address, HELO: $helo_name, sender ${sender?{$sender}:{none}}';

/** Two sessions: a policy reject and a protocol error ending with QUIT, then one that hangs up. */
async function dialogues(port: number): Promise<string[]> {
  const out: string[] = [];
  const { smtp } = await SmtpDialogue.connect(port);
  await smtp.cmd('EHLO side-by-side.test');
  out.push((await smtp.cmd('MAIL FROM:<p@client.test>')).lines.join('|'));
  out.push((await smtp.cmd('RCPT TO:<blocked@example.com>')).lines.join('|'));
  out.push((await smtp.cmd('FOO')).lines.join('|'));
  out.push((await smtp.cmd('QUIT')).lines.join('|'));
  smtp.close();
  const { smtp: s2 } = await SmtpDialogue.connect(port);
  await s2.cmd('HELO hangs-up.test');
  out.push((await s2.cmd('RCPT TO:<x@example.com>')).lines.join('|'));
  s2.close();
  return out;
}

/** A transcript with what legitimately differs made equal. */
function normalized(data: Buffer, host: string, mailName: string): string {
  const text = data.toString('latin1').replace(/\r\n/g, '\n');
  const at = text.indexOf('\n\n');
  const headers = text.slice(0, at).split('\n').filter((l) => /^(From|To|Subject):/.test(l)).sort();
  const body = text.slice(at + 2)
    .split('\n')
    .filter((l) => !/^ Out: 250-/.test(l) && !/^ Out: 250 CHUNKING$/.test(l)) // EHLO keyword lists differ (ETRN)
    .join('\n');
  return [...headers, '', body].join('\n').replaceAll(host, 'HOST').replaceAll(mailName, 'MAILNAME').replace(/^ Out: 220 .*$/m, ' Out: 220 BANNER');
}

async function twoTranscripts(sink: SmtpSink): Promise<Buffer[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const t = sink.messages.filter((m) => m.data.toString('latin1').includes('Transcript of session follows.'));
    if (t.length >= 2) {
      // The policy session's first, the one that hung up second.
      return t.map((m) => m.data).sort((a, b) => Number(a.includes('side-by-side.test')) - Number(b.includes('side-by-side.test'))).reverse();
    }
    if (Date.now() > deadline) throw new Error(`${t.length} transcripts arrived, not 2`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('smtpd reject footer and transcripts: Postactor and Postfix side by side', { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
  let tdir: string;
  let pfSink: SmtpSink;
  let paSink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let pair: SideBySide | undefined;

  before(async () => {
    tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-postfix-'));
    fs.writeFileSync(path.join(tdir, 'access'), '/^blocked@example\\.com$/ REJECT no such user here\n');
    const common = {
      smtpd_recipient_restrictions: `check_recipient_access regexp:${tdir}/access, permit`,
      smtpd_reject_footer: FOOTER,
      notify_classes: 'policy, protocol',
      error_notice_recipient: 'pm@notices.example',
      smtpd_error_sleep_time: '0',
    };
    pair = await sideBySide({ settings: common, sink: { keepMessages: true } });
    ({ postfix, server, pfSink, paSink } = pair);
  });

  after(async () => {
    await pair?.close();
    if (tdir) fs.rmSync(tdir, { recursive: true, force: true });
  });

  test('the same reply lines, footer included', async () => {
    const fromPostfix = await dialogues(postfix.port);
    const fromPostactor = await dialogues(server.port);
    assert.deepEqual(fromPostactor, fromPostfix);
    assert.match(fromPostfix[1]!, /^5\.7\.1 <blocked@example\.com>: Recipient address rejected: no such user here\|5\.7\.1 For assistance/);
  });

  test('the same transcripts to the postmaster, from double-bounce', async () => {
    const pf = await twoTranscripts(pfSink);
    const pa = await twoTranscripts(paSink);
    assert.equal(normalized(pa[0]!, 'mx.postactor.test', 'Postactor'), normalized(pf[0]!, 'postfix-peer.localdomain', 'Postfix'));
    assert.equal(normalized(pa[1]!, 'mx.postactor.test', 'Postactor'), normalized(pf[1]!, 'postfix-peer.localdomain', 'Postfix'));
    assert.match(normalized(pa[1]!, 'mx.postactor.test', 'Postactor'), /Session aborted, reason: lost connection/);
    assert.deepEqual(paSink.messages.filter((m) => m.data.includes('Transcript of session')).map((m) => m.sender), ['double-bounce@mx.postactor.test', 'double-bounce@mx.postactor.test']);
  });
});
