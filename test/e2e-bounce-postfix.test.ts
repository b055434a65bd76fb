/**
 * Non-delivery notices side by side with Debian's Postfix (bench/postfix-peer.sh): the same
 * message, refused by the next hop with 550 5.1.1 at RCPT, gives the sender the same
 * "Undelivered Mail Returned to Sender" (headers, multipart/report, the human-readable part,
 * message/delivery-status, the returned message) and the postmaster (notify_classes = bounce)
 * the same headers-only copy; a 450 gives the same "Delayed Mail (still being retried)" after
 * delay_warning_time (and the postmaster's warning); a bounce that fails gives the postmaster the
 * same double bounce. Compared once what legitimately differs is normalised (host names, queue
 * IDs, dates, boundaries, Received lines, Message-ID, mail_name in X-<mail_name>-* fields);
 * the key lines are asserted directly too.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { SinkMessage, SmtpSink } from '../src/smtp/sink.js';
import { queuedId, rfc822, sendRaw, type TestServer } from './helpers/server.js';
import { sideBySide, type SideBySide } from './helpers/side-by-side.js';
import { needs } from './helpers/peers.js';
import type { MtaHandle } from '../bench/relay/mta.js';

const PF_HOST = 'postfix-peer.localdomain';
const PA_HOST = 'mx.postactor.test';

/** The notice about message `id` with this Subject sent to `to`, once it has arrived (bounded). */
async function notice(sink: SmtpSink, id: string, to: string, subject: string): Promise<SinkMessage> {
  const match = (m: SinkMessage) => {
    const text = m.data.toString('latin1');
    return m.recipients.includes(to) && text.includes(`\nSubject: ${subject}`) && text.includes(`-Queue-ID: ${id}\r\n`);
  };
  await sink.waitFor(() => sink.messages.some(match), 60_000);
  return sink.messages.find(match)!;
}

/** What legitimately differs between the two MTAs' notices, made equal. */
function normalise(text: string, host: string, queueId: string, mailName: string): string {
  const boundary = /boundary="([^"]+)"/.exec(text)?.[1];
  let t = text.replace(/\r\n/g, '\n');
  if (boundary) t = t.split(boundary).join('BOUNDARY');
  t = t.split(queueId).join('QUEUEID');
  t = t.split(host).join('HOST');
  t = t.replace(/127\.0\.0\.1\[127\.0\.0\.1\]:\d+/g, '127.0.0.1[127.0.0.1]:PORT');
  t = t.replace(/^Received: .*\n(?:[ \t].*\n)*/gm, '');
  t = t.replace(/^(Message-I[Dd]): .*$/gm, '$1: MSGID');
  t = t.replace(/^(Date|Arrival-Date|Will-Retry-Until): .*$/gm, '$1: DATE');
  t = t.replace(new RegExp(`X-${mailName}`, 'g'), 'X-MAILNAME');
  t = t.replace(new RegExp(`The ${mailName} program`, 'g'), 'The MAILNAME program');
  return t;
}

describe('non-delivery notices: Postactor and Postfix side by side', { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
  let pfSink: SmtpSink;
  let paSink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let pair: SideBySide | undefined;

  before(async () => {
    const hard = {
      keepMessages: true,
      // A next hop without DSN: a NOTIFY=SUCCESS recipient gets a success notice from the MTA that relayed it.
      dsn: false,
      rcptReply: (r: string) =>
        r.startsWith('hard') ? `550 5.1.1 <${r}>: Recipient address rejected: User unknown`
        : r.startsWith('slow') ? `450 4.2.0 <${r}>: Recipient address rejected: Try again later`
        : null,
    };
    // Everything, notices to the sender and to the postmaster included, goes to the sink.
    const common = {
      notify_classes: 'bounce, 2bounce, delay', mydestination: '',
      delay_warning_time: '1s', queue_run_delay: '1s', minimal_backoff_time: '1s', maximal_backoff_time: '2s',
    };
    pair = await sideBySide({ settings: common, postactorOnly: { myorigin: PA_HOST }, sink: hard });
    ({ postfix, server, pfSink, paSink } = pair);
  });

  after(async () => {
    await pair?.close();
  });

  test('a 550 at RCPT: the same bounce to the sender and the same postmaster copy', async () => {
    const message = rfc822({ 'Subject': 'bounce side by side', 'Message-ID': '<orig.1@client.test>' }, 'line one\nline two\n');
    const pfId = queuedId(await sendRaw(postfix.port, 'bounce@example.org', ['hard@example.com'], message));
    const paId = queuedId(await sendRaw(server.port, 'bounce@example.org', ['hard@example.com'], message));
    const pf = await notice(pfSink, pfId, 'bounce@example.org', 'Undelivered Mail Returned to Sender');
    const pa = await notice(paSink, paId, 'bounce@example.org', 'Undelivered Mail Returned to Sender');
    const pfText = normalise(pf.data.toString('latin1'), PF_HOST, pfId, 'Postfix');
    const paText = normalise(pa.data.toString('latin1'), PA_HOST, paId, 'Postactor');


    const pfPm = await notice(pfSink, pfId, `postmaster@${PF_HOST}`, 'Postmaster Copy: Undelivered Mail');
    const paPm = await notice(paSink, paId, `postmaster@${PA_HOST}`, 'Postmaster Copy: Undelivered Mail');
    const pfPmText = normalise(pfPm.data.toString('latin1'), PF_HOST, pfId, 'Postfix');
    const paPmText = normalise(paPm.data.toString('latin1'), PA_HOST, paId, 'Postactor');
    assert.equal(pa.sender, pf.sender);
    assert.equal(paText, pfText);
    // The key lines, asserted directly (so the test says what "the same" is).
    assert.equal(pa.sender, '', 'a bounce is sent from the null sender');
    for (const line of [
      /^Date: DATE\nFrom: Mail Delivery System <MAILER-DAEMON@HOST>\nSubject: Undelivered Mail Returned to Sender\nTo: bounce@example\.org\nAuto-Submitted: auto-replied\n/,
      /^Content-Type: multipart\/report; report-type=delivery-status;\n\tboundary="BOUNDARY"\nContent-Transfer-Encoding: 8bit\n/m,
      /^Content-Type: text\/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nThis is the mail system at host HOST\.\n/m,
      /^ {19}The mail system\n\n<hard@example\.com>: host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1\n    <hard@example\.com>: Recipient address rejected: User unknown \(in reply to\n    RCPT TO command\)\n\n--BOUNDARY\n/m,
      /^Reporting-MTA: dns; HOST\nX-MAILNAME-Queue-ID: QUEUEID\nX-MAILNAME-Sender: rfc822; bounce@example\.org\nArrival-Date: DATE\n\nFinal-Recipient: rfc822; hard@example\.com\nOriginal-Recipient: rfc822;hard@example\.com\nAction: failed\nStatus: 5\.1\.1\nRemote-MTA: dns; 127\.0\.0\.1\nDiagnostic-Code: smtp; 550 5\.1\.1 <hard@example\.com>: Recipient address\n    rejected: User unknown\n\n/m,
      /^Content-Description: Undelivered Message\nContent-Type: message\/rfc822\nContent-Transfer-Encoding: 8bit\n\nReturn-Path: <bounce@example\.org>\nSubject: bounce side by side\n(?:.*\n)*\nline one\nline two\n\n--BOUNDARY--\n$/m,
    ]) assert.match(paText, line);
    assert.match(pa.data.toString('latin1'), /^Received: by mx\.postactor\.test \(Postactor\)\r\n\tid \S+; [^\r]+\r\nDate: /);
    assert.equal(paPm.sender.replace(PA_HOST, 'HOST'), pfPm.sender.replace(PF_HOST, 'HOST'));
    assert.equal(paPmText, pfPmText);
    // The postmaster's copy: from double_bounce_sender, auto-generated, no boiler-plate, headers only.
    assert.equal(paPm.sender, `double-bounce@${PA_HOST}`);
    assert.match(paPmText, /^Auto-Submitted: auto-generated$/m);
    assert.match(paPmText, /^Content-Transfer-Encoding: 8bit\n\n\n<hard@example\.com>: host 127\.0\.0\.1/m);
    assert.doesNotMatch(paPmText, /This is the mail system/);
    assert.match(paPmText, /^Content-Description: Undelivered Message Headers\nContent-Type: text\/rfc822-headers\nContent-Transfer-Encoding: 8bit\n\nReturn-Path: <bounce@example\.org>\n(?:\S.*\n)+\n--BOUNDARY--\n$/m);
    assert.doesNotMatch(paPmText, /line one/);
  });

  test('a 450 at RCPT: the same delay notice', async () => {
    const message = rfc822({ 'Subject': 'delay side by side', 'Message-ID': '<orig.2@client.test>' }, 'still here\n');
    const pfId = queuedId(await sendRaw(postfix.port, 'bounce@example.org', ['slow@example.com'], message));
    const paId = queuedId(await sendRaw(server.port, 'bounce@example.org', ['slow@example.com'], message));
    const pf = await notice(pfSink, pfId, 'bounce@example.org', 'Delayed Mail (still being retried)');
    const pa = await notice(paSink, paId, 'bounce@example.org', 'Delayed Mail (still being retried)');
    const pfText = normalise(pf.data.toString('latin1'), PF_HOST, pfId, 'Postfix');
    const paText = normalise(pa.data.toString('latin1'), PA_HOST, paId, 'Postactor');
    const pfPm = await notice(pfSink, pfId, `postmaster@${PF_HOST}`, 'Postmaster Warning: Delayed Mail');
    const paPm = await notice(paSink, paId, `postmaster@${PA_HOST}`, 'Postmaster Warning: Delayed Mail');
    const pfPmText = normalise(pfPm.data.toString('latin1'), PF_HOST, pfId, 'Postfix');
    const paPmText = normalise(paPm.data.toString('latin1'), PA_HOST, paId, 'Postactor');
    assert.equal(paText, pfText);
    assert.equal(paPmText, pfPmText);
    // delay_warning_time = 1s: Postfix's template divides it down to "0 hour(s)".
    assert.match(paText, /^Your message could not be delivered for more than 0 hour\(s\)\.\nIt will be retried until it is 5 day\(s\) old\.$/m);
    assert.match(paText, /^Action: delayed\nStatus: 4\.2\.0\n(?:.*\n)*Will-Retry-Until: DATE\n\n--BOUNDARY\nContent-Description: Undelivered Message Headers\n/m);
    assert.match(paPmText, /^Subject: Postmaster Warning: Delayed Mail$/m);
  });

  test('a bounce that bounces (sender <>): the same double bounce to the postmaster, with the whole message', async () => {
    const message = rfc822({ 'Subject': 'double side by side', 'From': 'MAILER-DAEMON@client.test' }, 'a notice body\n');
    const pfId = queuedId(await sendRaw(postfix.port, '', ['hard-2@example.com'], message));
    const paId = queuedId(await sendRaw(server.port, '', ['hard-2@example.com'], message));
    const pf = await notice(pfSink, pfId, `postmaster@${PF_HOST}`, 'Postmaster Copy: Undelivered Mail');
    const pa = await notice(paSink, paId, `postmaster@${PA_HOST}`, 'Postmaster Copy: Undelivered Mail');
    const pfText = normalise(pf.data.toString('latin1'), PF_HOST, pfId, 'Postfix');
    const paText = normalise(pa.data.toString('latin1'), PA_HOST, paId, 'Postactor');
    assert.equal(paText, pfText);
    assert.equal(pa.sender, `double-bounce@${PA_HOST}`);
    assert.match(paText, /^X-MAILNAME-Sender: rfc822; MAILER-DAEMON@HOST$/m);
    assert.match(paText, /^Content-Description: Undelivered Message\nContent-Type: message\/rfc822\n(?:.*\n)*Return-Path: <MAILER-DAEMON@HOST>\n(?:.*\n)*\na notice body\n\n--BOUNDARY--\n$/m);
  });

  test('NOTIFY=SUCCESS, relayed to a next hop without DSN: the same success notice, "delivery via …", headers only', async () => {
    const message = rfc822({ 'Subject': 'success side by side', 'Message-ID': '<orig.3@client.test>' }, 'arrived\n');
    const opts = { mailParams: 'RET=FULL', rcptParams: ['NOTIFY=SUCCESS'] };
    const pfId = queuedId(await sendRaw(postfix.port, 'bounce@example.org', ['fine@example.com'], message, opts));
    const paId = queuedId(await sendRaw(server.port, 'bounce@example.org', ['fine@example.com'], message, opts));
    const pf = await notice(pfSink, pfId, 'bounce@example.org', 'Successful Mail Delivery Report');
    const pa = await notice(paSink, paId, 'bounce@example.org', 'Successful Mail Delivery Report');
    // The sinks' ports and message counters differ, and with them where the long lines wrap.
    const flat = (t: string) => t.replace(/\n    /g, ' ').replace(/queued as \d+/g, 'queued as N');
    const pfText = flat(normalise(pf.data.toString('latin1'), PF_HOST, pfId, 'Postfix'));
    const paText = flat(normalise(pa.data.toString('latin1'), PA_HOST, paId, 'Postactor'));
    assert.equal(paText, pfText);
    assert.match(paText, /^<fine@example\.com>: delivery via 127\.0\.0\.1\[127\.0\.0\.1\]:PORT: 250 2\.0\.0 Ok: queued as N\n/m);
    assert.match(paText, /^Action: relayed\nStatus: 2\.0\.0\n/m);
    // The trace service returns the headers only, whatever RET= says.
    assert.match(paText, /^Content-Description: Message Headers\nContent-Type: text\/rfc822-headers\n/m);
    assert.doesNotMatch(paText, /^arrived$/m);
  });
});
