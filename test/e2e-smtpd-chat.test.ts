/**
 * smtpd_reject_footer, smtpd_reject_footer_maps and the postmaster's session transcripts
 * (notify_classes policy, protocol, resource, software) — Postfix's smtpd_chat.c. The replies
 * are read line by line from a raw SMTP session and from swaks; the transcripts arrive at a
 * sink (error_notice_recipient is relayed there). Also the pure parts of actors/smtpd/chat.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { freePort, sendRaw, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { runClient } from './helpers/run-client.js';
import { needs } from './helpers/peers.js';
import { errorClass, lineWrap, transcriptBody, withFooter } from '../actors/smtpd/chat.js';

describe('chat.ts: footer, error classes, transcript format', () => {
  const lookup = (n: string) => ({ client_address: '192.0.2.1', helo_name: 'h.test' } as Record<string, string>)[n];

  test('"\\n" starts a line with the reply\'s enhanced code; "\\c" continues the reply\'s last line; a reply without a DSN gets none', () => {
    assert.deepEqual(withFooter('5.7.1 denied', 'Call us.\\nClient $client_address', lookup, () => undefined), ['5.7.1 denied', '5.7.1 Call us.', '5.7.1 Client 192.0.2.1']);
    assert.deepEqual(withFooter('5.7.1 denied', '\\c (helo ${helo_name})', lookup, () => undefined), ['5.7.1 denied (helo h.test)']);
    assert.deepEqual(withFooter('Error: x', 'see $client_address', lookup, () => undefined), ['Error: x', 'see 192.0.2.1']);
  });

  test('a template that does not parse leaves the reply alone, with a warning', () => {
    const warnings: string[] = [];
    assert.deepEqual(withFooter('5.7.1 denied', 'oops ${client_address', lookup, (w) => warnings.push(w)), ['5.7.1 denied']);
    assert.equal(warnings.length, 1);
  });

  test('error classes as Postfix\'s smtpd sets them', () => {
    assert.equal(errorClass(554, '5.7.1 <x@y>: Relay access denied'), 'policy');
    assert.equal(errorClass(500, '5.5.2 Error: command not recognized'), 'protocol');
    assert.equal(errorClass(503, '5.5.1 Error: need MAIL command'), 'protocol');
    assert.equal(errorClass(452, '4.3.1 Insufficient system storage'), 'resource');
    assert.equal(errorClass(451, '4.3.0 Error: queue file write error'), 'resource');
    assert.equal(errorClass(451, '4.3.5 Server configuration error'), 'software');
    assert.equal(errorClass(552, '5.3.4 Message size exceeds fixed limit'), 'bounce');
    assert.equal(errorClass(451, '4.3.0 <a@example.com>: Temporary lookup failure'), 'data');
    assert.equal(errorClass(421, '4.3.0 mx.test Server local data error'), 'data');
    assert.equal(errorClass(421, '4.4.2 mx.test Error: timeout exceeded'), null);
    assert.equal(errorClass(250, '2.0.0 Ok'), null);
  });

  test('line_wrap: 78 columns, continuation lines indented by 4; one space before each line', () => {
    const long = `In:  RCPT TO:<${'a'.repeat(30)}@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;${'b'.repeat(20)}@example.com`;
    const w = lineWrap(long, 78, 4);
    assert.equal(w.length, 2);
    assert.ok(w[0]!.text.length <= 78);
    assert.equal(w[1]!.indent, 4);
    const body = transcriptBody(['Out: 220 mx ESMTP', long], 'lost connection');
    assert.match(body, /^Transcript of session follows\.\n\n Out: 220 mx ESMTP\n In: {2}RCPT TO:<a+@example\.com>\n {5}NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+@example\.com\n\nSession aborted, reason: lost connection\n\nFor other details, see the local mail logfile\n$/);
  });
});

function transcripts(sink: SmtpSink): SinkMessage[] {
  return sink.messages.filter((m) => m.data.toString('latin1').includes('Transcript of session follows.'));
}

async function waitTranscript(sink: SmtpSink, marker: string): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = transcripts(sink).find((x) => x.data.toString('latin1').includes(marker));
    if (m) return m.data.toString('latin1');
    if (Date.now() > deadline) throw new Error(`no transcript with ${marker} arrived`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('e2e smtpd: smtpd_reject_footer and notify_classes transcripts', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let tdir: string;
  let port2: number;
  let port3: number;

  before(async () => {
    tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtpd-chat-'));
    fs.writeFileSync(path.join(tdir, 'access'), '/^blocked@example\\.com$/ REJECT no such user here\n/^gone@example\\.com$/ 550 5.1.1 gone for good\n');
    fs.writeFileSync(path.join(tdir, 'footer_maps'), '/^550 5\\.1\\.1 / Mapped footer: unknown users are not for $$client_address\n');
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    port2 = await freePort();
    port3 = await freePort();
    const closed = await freePort(); // nobody listens: the policy service fails
    server = await startServer({
      sinkPort,
      mainCf: {
        smtpd_recipient_restrictions: `check_recipient_access regexp:${tdir}/access, permit`,
        smtpd_reject_footer: 'For assistance, call 800-555-0101.\\nClient: $client_address, HELO: $helo_name, sender ${sender?{$sender}:{none}}',
        smtpd_reject_footer_maps: `regexp:${tdir}/footer_maps`,
        notify_classes: 'resource, software, policy, protocol',
        error_notice_recipient: 'pm@notices.example',
      },
      // A second smtpd whose footer continues the last line ("\c"), whose policy service is
      // down (451 4.3.5: a software error), and which notifies the postmaster of those only.
      masterCfExtra: `127.0.0.1:${port2} inet n - n - - smtpd -o { smtpd_reject_footer = \\c (see https://help.example/ for $client_address) } -o smtpd_reject_footer_maps=`
        + ` -o notify_classes=software -o { smtpd_recipient_restrictions = check_recipient_access regexp:${tdir}/access, check_policy_service inet:127.0.0.1:${closed}, permit }`
        + ' -o smtpd_policy_service_try_limit=1\n'
        // A third whose local_recipient_maps cannot be reached (reject_unlisted_recipient:
        // 451 4.3.0 Temporary lookup failure, the data class).
        + `127.0.0.1:${port3} inet n - n - - smtpd -o smtpd_reject_footer= -o smtpd_reject_footer_maps= -o notify_classes=data`
        + ` -o local_recipient_maps=tcp:127.0.0.1:${closed}`,
    });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    if (tdir) fs.rmSync(tdir, { recursive: true, force: true });
  });

  test('a restriction\'s 5xx gets the footer as more reply lines with its code and enhanced code; 2xx replies and the log line do not', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port);
    assert.equal(greeting.code, 220);
    assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    const mail = await smtp.cmd('MAIL FROM:<a@client.test>');
    assert.equal(mail.line, '250 2.1.0 Ok');
    const r = await smtp.cmd('RCPT TO:<blocked@example.com>');
    assert.equal(r.code, 554); // access_map_reject_code
    assert.deepEqual(r.lines, [
      '5.7.1 <blocked@example.com>: Recipient address rejected: no such user here',
      '5.7.1 For assistance, call 800-555-0101.',
      '5.7.1 Client: 127.0.0.1, HELO: client.test, sender a@client.test',
    ]);
    // An unknown command's 500 gets it too (Postfix appends the footer to every 4xx/5xx reply).
    const u = await smtp.cmd('FOO');
    assert.deepEqual(u.lines, ['5.5.2 Error: command not recognized', '5.5.2 For assistance, call 800-555-0101.', '5.5.2 Client: 127.0.0.1, HELO: client.test, sender a@client.test']);
    assert.equal((await smtp.cmd('QUIT')).line, '221 2.0.0 Bye');
    smtp.close();
    const line = await server.waitForLog(/NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.1\]: 554 5\.7\.1 <blocked@example\.com>/, 5000);
    assert.match(line, /: 554 5\.7\.1 <blocked@example\.com>: Recipient address rejected: no such user here; from=<a@client\.test> to=<blocked@example\.com> proto=ESMTP helo=<client\.test>$/);
  });

  test('smtpd_reject_footer_maps: the entry for the reply text wins over smtpd_reject_footer', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    await smtp.cmd('EHLO client.test');
    await smtp.cmd('MAIL FROM:<>');
    const r = await smtp.cmd('RCPT TO:<gone@example.com>');
    assert.deepEqual(r.lines, ['5.1.1 <gone@example.com>: Recipient address rejected: gone for good', '5.1.1 Mapped footer: unknown users are not for 127.0.0.1']);
    await smtp.cmd('QUIT');
    smtp.close();
  });

  test('"\\c" continues the reply line (a -o override on another smtpd), as swaks shows it', { skip: needs('/usr/bin/swaks', 'swaks') }, async () => {
    const r = await runClient('swaks', ['--server', `127.0.0.1:${port2}`, '--from', 'a@client.test', '--to', 'blocked@example.com', '--helo', 'client.test', '--quit-after', 'RCPT', '--timeout', '15'], '');
    assert.match(r.out, /<\*\* +554 5\.7\.1 <blocked@example\.com>: Recipient address rejected: no such user here \(see https:\/\/help\.example\/ for 127\.0\.0\.1\)\r?\n/, r.out);
  });

  test('policy: the postmaster gets the session\'s transcript from double-bounce, "Postactor SMTP server: errors from …"', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    await smtp.cmd('EHLO policy-transcript.test');
    await smtp.cmd('MAIL FROM:<p@client.test>');
    assert.equal((await smtp.cmd('RCPT TO:<blocked@example.com>')).code, 554);
    await smtp.cmd('QUIT');
    smtp.close();
    const text = await waitTranscript(sink, 'EHLO policy-transcript.test');
    const m = transcripts(sink).find((x) => x.data.toString('latin1').includes('EHLO policy-transcript.test'))!;
    assert.equal(m.sender, 'double-bounce@mx.postactor.test');
    assert.deepEqual(m.recipients, ['pm@notices.example']);
    assert.match(text, /^From: Mail Delivery System <MAILER-DAEMON@mx\.postactor\.test>\r$/m);
    assert.match(text, /^To: Postmaster <pm@notices\.example>\r$/m);
    assert.match(text, /^Subject: Postactor SMTP server: errors from \S+\[127\.0\.0\.1\]\r$/m);
    assert.match(text, /\r\n\r\nTranscript of session follows\.\r\n\r\n Out: 220 /);
    assert.match(text, /^ In: {2}EHLO policy-transcript\.test\r$/m);
    assert.match(text, /^ Out: 250-mx\.postactor\.test\r$/m);
    assert.match(text, /^ In: {2}RCPT TO:<blocked@example\.com>\r$/m);
    // Lines longer than 78 columns go on in lines indented by 4 more.
    assert.ok(text.split('\r\n').every((l) => l.length <= 79), text);
    const unwrapped = text.replace(/\r\n {5}/g, ' ');
    assert.match(unwrapped, /^ Out: 554-5\.7\.1 <blocked@example\.com>: Recipient address rejected: no such user here\r$/m);
    assert.match(unwrapped, /^ Out: 554-5\.7\.1 For assistance, call 800-555-0101\.\r$/m);
    assert.match(unwrapped, /^ Out: 554 5\.7\.1 Client: 127\.0\.0\.1, HELO: policy-transcript\.test, sender p@client\.test\r$/m);
    assert.match(text, /^ In: {2}QUIT\r\n Out: 221 2\.0\.0 Bye\r\n\r\n\r\nFor other details, see the local mail logfile\r\n$/m);
  });

  test('protocol: a client that errs and hangs up; the transcript ends "Session aborted, reason: lost connection"', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    await smtp.cmd('HELO protocol-transcript.test');
    assert.equal((await smtp.cmd('RCPT TO:<x@example.com>')).code, 503);
    smtp.close();
    const text = await waitTranscript(sink, 'HELO protocol-transcript.test');
    assert.match(text, /^ Out: 503-5\.5\.1 Error: need MAIL command\r$/m);
    assert.match(text, /\r\nSession aborted, reason: lost connection\r\n\r\nFor other details/);
  });

  test('a message received without error forgives the errors before it: no transcript; a clean session sends none', async () => {
    const before = sink.messages.length;
    const { smtp } = await SmtpDialogue.connect(server.port);
    await smtp.cmd('EHLO forgiven.test');
    await smtp.cmd('FOO');
    await smtp.cmd('MAIL FROM:<f@client.test>');
    await smtp.cmd('RCPT TO:<ok@example.com>');
    assert.equal((await smtp.cmd('DATA')).code, 354);
    assert.equal((await smtp.cmd('Subject: forgiven\r\n\r\nhi\r\n.')).code, 250);
    await smtp.cmd('QUIT');
    smtp.close();
    assert.equal((await sendRaw(server.port, 'c@client.test', ['ok@example.com'], 'Subject: clean-session\r\n\r\nhi\r\n')).code, 250);
    await sink.waitFor(() => sink.messages.filter((m) => /Subject: (forgiven|clean-session)/.test(m.data.toString('latin1'))).length >= 2, 15_000);
    // Transcripts would have been queued before these deliveries; give qmgr a moment anyway.
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(!transcripts(sink).some((m) => /forgiven\.test|clean-session/.test(m.data.toString('latin1'))), `no transcript (${sink.messages.length - before} new messages)`);
  });

  test('software: a policy service that is down (451 4.3.5) sends a transcript where notify_classes has software; a policy reject there does not', async () => {
    const { smtp } = await SmtpDialogue.connect(port2);
    await smtp.cmd('EHLO software-transcript.test');
    await smtp.cmd('MAIL FROM:<s@client.test>');
    const r = await smtp.cmd('RCPT TO:<anyone@example.com>');
    assert.equal(r.code, 451, r.line);
    assert.match(r.line, /^451 4\.3\.5 .* \(see https:\/\/help\.example\/ for 127\.0\.0\.1\)$/);
    await smtp.cmd('QUIT');
    smtp.close();
    const text = await waitTranscript(sink, 'EHLO software-transcript.test');
    assert.match(text.replace(/\r\n {5}/g, ' '), /^ Out: 451 4\.3\.5 .*\(see https:\/\/help\.example\/ for 127\.0\.0\.1\)\r$/m);

    const { smtp: s2 } = await SmtpDialogue.connect(port2);
    await s2.cmd('EHLO policy-only.test');
    await s2.cmd('MAIL FROM:<s@client.test>');
    assert.equal((await s2.cmd('RCPT TO:<blocked@example.com>')).code, 554);
    await s2.cmd('QUIT');
    s2.close();
    // Bounded wait for a transcript that must not come.
    await new Promise((res) => setTimeout(res, 2000));
    assert.ok(!transcripts(sink).some((m) => m.data.toString('latin1').includes('policy-only.test')));
  });

  test('data: a table that fails (451 4.3.0 Temporary lookup failure) sends a transcript where notify_classes has data', async () => {
    const { smtp } = await SmtpDialogue.connect(port3);
    await smtp.cmd('EHLO data-transcript.test');
    await smtp.cmd('MAIL FROM:<d@client.test>');
    const r = await smtp.cmd('RCPT TO:<anyone@mx.postactor.test>');
    assert.equal(r.line, '451 4.3.0 <anyone@mx.postactor.test>: Temporary lookup failure');
    await smtp.cmd('QUIT');
    smtp.close();
    const text = await waitTranscript(sink, 'EHLO data-transcript.test');
    assert.match(text, /^ Out: 451 4\.3\.0 <anyone@mx\.postactor\.test>: Temporary lookup failure\r$/m);
  });
});
