/**
 * End to end, the DSN extension (RFC 3461) and the notices of Postfix's bounce, defer and trace
 * services: each notice is received by a real SMTP sink and parsed back with mailparser, field by
 * field. The server announces DSN, stores NOTIFY / ORCPT / RET / ENVID, relays them to a next hop
 * that announces DSN, and notifies the sender: failure, delay (once, after delay_warning_time),
 * success (NOTIFY=SUCCESS to a next hop without DSN); postmaster copies per notify_classes; a
 * bounce that bounces goes to the postmaster (2bounce) and nothing loops.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { queuedId, rfc822, sendRaw, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { parseDsn } from './helpers/dsn.js';

async function waitFor<T>(what: string, f: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('e2e DSN: the SMTP extension and the notices', () => {
  let sink: SmtpSink;      // the relayhost: announces DSN
  let plain: SmtpSink;     // nodsn.test: no DSN in its EHLO reply
  let server: TestServer;

  /** Notices (sender <>, or from double-bounce) the sink received for `to`, about queue ID `id`. */
  const noticesFor = (to: string, id: string): SinkMessage[] =>
    sink.messages.filter((m) => m.recipients.includes(to) && m.data.includes(`X-Postactor-Queue-ID: ${id}`));

  before(async () => {
    sink = new SmtpSink({
      keepMessages: true,
      rcptReply: (rcpt) => {
        if (rcpt.startsWith('reject-')) return `550 5.1.1 <${rcpt}>: Recipient address rejected: User unknown`;
        if (rcpt.startsWith('defer-')) return `450 4.2.0 <${rcpt}>: Mailbox busy`;
        return null;
      },
    });
    plain = new SmtpSink({ keepMessages: true, dsn: false });
    const sinkPort = await sink.listen(0);
    const plainPort = await plain.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: {
        minimal_backoff_time: '1s',
        maximal_backoff_time: '1s',
        queue_run_delay: '1s',
        delay_warning_time: '2s',
        maximal_queue_lifetime: '6s',
        notify_classes: 'resource, software, bounce, 2bounce, delay',
        bounce_notice_recipient: 'pm-bounce@example.org',
        '2bounce_notice_recipient': 'pm-2bounce@example.org',
        delay_notice_recipient: 'pm-delay@example.org',
        transport_maps: `inline:{ nodsn.test=smtp:[127.0.0.1]:${plainPort} }`,
        // cleanup's aliasing, for the original recipient; no domain is a virtual alias domain.
        virtual_alias_maps: 'inline:{ alias-9@example.com=reject-9@example.com }',
        virtual_alias_domains: '',
        alias_maps: '',
        local_recipient_maps: '', // smtpd accepts any local user: mail to double-bounce reaches qmgr
      },
      masterCfExtra: 'discard unix - - n - - discard\n',
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    await plain?.close();
  });

  test('EHLO announces DSN; a malformed NOTIFY, ORCPT or RET gets 501 5.5.4 as Postfix words it', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      const ehlo = await smtp.cmd('EHLO client.test');
      assert.ok(ehlo.lines.includes('DSN'), ehlo.lines.join('|'));
      assert.equal((await smtp.cmd('MAIL FROM:<a@example.org> RET=BODY')).line, '501 5.5.4 Bad RET parameter syntax');
      assert.equal((await smtp.cmd('MAIL FROM:<a@example.org> RET=HDRS ENVID=x1')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<b@example.com> NOTIFY=SOMETIMES')).line, '501 5.5.4 Error: Bad NOTIFY parameter syntax');
      assert.equal((await smtp.cmd('RCPT TO:<b@example.com> NOTIFY=NEVER,SUCCESS')).line, '501 5.5.4 Error: Bad NOTIFY parameter syntax');
      assert.equal((await smtp.cmd('RCPT TO:<b@example.com> ORCPT=nonsense')).line, '501 5.5.4 Error: Bad ORCPT parameter syntax');
      assert.equal((await smtp.cmd('RCPT TO:<b@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@example.com')).code, 250);
    } finally {
      smtp.close();
    }
  });

  test('failure: the sender gets "Undelivered Mail Returned to Sender" with ENVID, ORCPT and RET=HDRS honoured; the postmaster a headers-only copy', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['reject-1@example.com', 'ok-1@example.com'],
      rfc822({ Subject: 'fail one', 'Message-ID': '<fail1@t>' }, 'the body that RET=HDRS leaves out\n'),
      { mailParams: 'RET=HDRS ENVID=QQ+2Benv1', rcptParams: ['ORCPT=rfc822;Reject-1+40Example.com'] }));
    const notice = await waitFor('the failure notice', () => noticesFor('alice@example.org', id)[0], 15_000);
    assert.equal(notice.sender, '', 'notices are sent from the null sender');
    const dsn = await parseDsn(notice.data);
    assert.equal(dsn.subject, 'Undelivered Mail Returned to Sender');
    assert.equal(dsn.mail.to && !Array.isArray(dsn.mail.to) ? dsn.mail.to.value[0]?.address : undefined, 'alice@example.org');
    assert.equal(dsn.perMessage.get('original-envelope-id'), 'QQ+env1', 'ENVID is xtext-decoded');
    assert.equal(dsn.perMessage.get('reporting-mta'), 'dns; mx.postactor.test');
    assert.equal(dsn.perMessage.get('x-postactor-queue-id'), id);
    assert.equal(dsn.perMessage.get('x-postactor-sender'), 'rfc822; alice@example.org');
    assert.ok(dsn.perMessage.get('arrival-date'));
    assert.equal(dsn.recipients.length, 1, 'only the failed recipient is reported');
    const r = dsn.recipients[0]!;
    assert.equal(r.get('final-recipient'), 'rfc822; reject-1@example.com');
    assert.equal(r.get('original-recipient'), 'rfc822;Reject-1@Example.com');
    assert.equal(r.get('action'), 'failed');
    assert.equal(r.get('status'), '5.1.1');
    assert.equal(r.get('remote-mta'), 'dns; 127.0.0.1');
    assert.equal(r.get('diagnostic-code'), 'smtp; 550 5.1.1 <reject-1@example.com>: Recipient address rejected: User unknown');
    assert.equal(dsn.original?.contentType, 'text/rfc822-headers');
    assert.match(dsn.original!.content.toString(), /Subject: fail one/);
    assert.doesNotMatch(dsn.original!.content.toString(), /the body that RET=HDRS leaves out/);
    // notify_classes has "bounce": the postmaster's copy, from double_bounce_sender, headers only.
    const copy = await waitFor('the postmaster copy', () => noticesFor('pm-bounce@example.org', id)[0], 10_000);
    assert.equal(copy.sender, 'double-bounce@mx.postactor.test');
    const pm = await parseDsn(copy.data);
    assert.equal(pm.subject, 'Postmaster Copy: Undelivered Mail');
    assert.equal(pm.original?.contentType, 'text/rfc822-headers');
    await server.waitForLog(new RegExp(`${id}: removed$`), 10_000);
    assert.equal(sink.messages.filter((m) => m.recipients.includes('ok-1@example.com')).length, 1);
  });

  test('without ORCPT: the notice names the original recipient ("expanded from" after aliasing) and has Original-Recipient made up from RCPT TO, as Postfix\'s smtpd and cleanup make it up; orig_to=<…> is logged', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['alias-9@example.com', 'reject-10@example.com'], rfc822({ Subject: 'aliased' }, 'x\n')));
    const notice = await waitFor('the failure notice', () => noticesFor('alice@example.org', id)[0], 15_000);
    // As every notice Postfix's bounce posts (post_mail_init): its own Received header first.
    assert.match(notice.data.toString('latin1'), /^Received: by mx\.postactor\.test \([^)]+\)\r\n\tid \w+; [^\r]+\r\n/);
    const dsn = await parseDsn(notice.data);
    assert.match(dsn.text, /<reject-9@example\.com> \(expanded from <alias-9@example\.com>\): host\s+127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1/);
    assert.match(dsn.text, /<reject-10@example\.com>: host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1/);
    const byFinal = new Map(dsn.recipients.map((r) => [r.get('final-recipient'), r.get('original-recipient')]));
    // As Debian's Postfix 3.7 prints it: "Original-Recipient: rfc822;alias-9@example.com".
    assert.deepEqual([...byFinal], [['rfc822; reject-9@example.com', 'rfc822;alias-9@example.com'], ['rfc822; reject-10@example.com', 'rfc822;reject-10@example.com']]);
    await server.waitForLog(new RegExp(`: ${id}: to=<reject-9@example\\.com>, orig_to=<alias-9@example\\.com>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:\\d+, .*dsn=5\\.1\\.1, status=bounced `), 5000);
    await server.waitForLog(new RegExp(`: ${id}: to=<reject-10@example\\.com>, relay=`), 5000);
  });

  test('NOTIFY=NEVER: no notice to the sender for that recipient (the postmaster copy still goes)', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['reject-2@example.com'], rfc822({ Subject: 'never tell' }, 'x\n'), { rcptParams: ['NOTIFY=NEVER'] }));
    await waitFor('the postmaster copy', () => noticesFor('pm-bounce@example.org', id)[0], 15_000);
    await server.waitForLog(new RegExp(`${id}: removed$`), 10_000);
    assert.equal(noticesFor('alice@example.org', id).length, 0);
  });

  test('success: NOTIFY=SUCCESS to a next hop without DSN gets "Successful Mail Delivery Report", Action relayed', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['bob@nodsn.test'], rfc822({ Subject: 'tell me' }, 'x\n'), { rcptParams: ['NOTIFY=SUCCESS'] }));
    const notice = await waitFor('the success notice', () => noticesFor('alice@example.org', id)[0], 15_000);
    const dsn = await parseDsn(notice.data);
    assert.equal(dsn.subject, 'Successful Mail Delivery Report');
    const r = dsn.recipients[0]!;
    assert.equal(r.get('final-recipient'), 'rfc822; bob@nodsn.test');
    assert.equal(r.get('action'), 'relayed');
    assert.equal(r.get('status'), '2.0.0');
    assert.equal(r.get('remote-mta'), 'dns; 127.0.0.1');
    assert.equal(dsn.original?.contentType, 'text/rfc822-headers', 'without RET=FULL a success notice returns the headers');
    assert.equal(plain.messages.filter((m) => m.recipients.includes('bob@nodsn.test')).length, 1);
    assert.equal(plain.messages[0]!.rcptParams?.[0], '', 'no DSN parameters to a server that did not announce DSN');
  });

  test('a next hop that announces DSN gets NOTIFY, ORCPT, RET and ENVID relayed, and notifies itself (no success notice from us)', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['carol@example.com'], rfc822({ Subject: 'relay dsn' }, 'x\n'),
      { mailParams: 'RET=FULL ENVID=id=7', rcptParams: ['NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Carol+2Bx@example.com'] }));
    await server.waitForLog(new RegExp(`${id}: removed$`), 15_000);
    const got = sink.messages.find((m) => m.recipients.includes('carol@example.com'));
    assert.ok(got);
    assert.match(got.mailParams ?? '', /(^| )RET=FULL( |$)/);
    assert.match(got.mailParams ?? '', /(^| )ENVID=id\+3D7( |$)/, 'ENVID is xtext-encoded again');
    assert.equal(got.rcptParams?.[0], 'NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Carol+2Bx@example.com');
    assert.equal(noticesFor('alice@example.org', id).length, 0);
  });

  test('delay: one "Delayed Mail (still being retried)" after delay_warning_time, a postmaster warning, then expiry returns it as failed with its 4.x.y status', async () => {
    const sent = Date.now();
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['defer-1@example.com'], rfc822({ Subject: 'slow' }, 'x\n')));
    const queued = Date.now();
    const notice = await waitFor('the delay notice', () => noticesFor('alice@example.org', id)[0], 15_000);
    const dsn = await parseDsn(notice.data);
    assert.equal(dsn.subject, 'Delayed Mail (still being retried)');
    const r = dsn.recipients[0]!;
    assert.equal(r.get('action'), 'delayed');
    assert.equal(r.get('status'), '4.2.0');
    // Postfix's mail_date() form: the day padded with a blank (%e: "Thu,  3 Dec"), the UTC
    // offset, the zone's abbreviation; and the moment is arrival + maximal_queue_lifetime (6 s).
    const until = r.get('will-retry-until') ?? '';
    assert.match(until, /^\w{3}, [ \d]\d \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4} \([^()]+\)$/);
    const at = Date.parse(until);
    assert.ok(at >= Math.floor((sent + 6000) / 1000) * 1000 && at <= queued + 6000, `${until}: not arrival + 6 s`);
    assert.equal(r.get('diagnostic-code'), 'smtp; 450 4.2.0 <defer-1@example.com>: Mailbox busy');
    const pm = await waitFor('the postmaster delay warning', () => noticesFor('pm-delay@example.org', id)[0], 10_000);
    assert.equal((await parseDsn(pm.data)).subject, 'Postmaster Warning: Delayed Mail');
    // maximal_queue_lifetime (6 s) then returns it: a failure notice, and no second delay notice.
    await server.waitForLog(new RegExp(`${id}: from=<alice@example\\.org>, status=expired, returned to sender`), 20_000);
    const all = await waitFor('the failure notice', () => {
      const n = noticesFor('alice@example.org', id);
      return n.length >= 2 ? n : undefined;
    }, 10_000);
    const subjects = await Promise.all(all.map(async (m) => (await parseDsn(m.data)).subject));
    assert.deepEqual(subjects.sort(), ['Delayed Mail (still being retried)', 'Undelivered Mail Returned to Sender']);
    const failure = await parseDsn(all.find((m) => m.data.includes('Undelivered Mail'))!.data);
    assert.equal(failure.recipients[0]!.get('action'), 'failed');
    assert.equal(failure.recipients[0]!.get('status'), '4.2.0');
    assert.equal(server.logLines().filter((l) => l.includes(`${id}: sender delay notification`)).length, 1);
  });

  test('a bounce that bounces goes to the postmaster (notify_classes 2bounce) from double-bounce; its own failure is dropped, and mail to double-bounce is discarded', async () => {
    const id = queuedId(await sendRaw(server.port, '', ['reject-3@example.com'], rfc822({ Subject: 'a bounce' }, 'x\n')));
    const copy = await waitFor('the double bounce', () => noticesFor('pm-2bounce@example.org', id)[0], 15_000);
    assert.equal(copy.sender, 'double-bounce@mx.postactor.test');
    assert.equal((await parseDsn(copy.data)).subject, 'Postmaster Copy: Undelivered Mail');
    // Mail from double-bounce that fails: no notice to anyone.
    const id2 = queuedId(await sendRaw(server.port, 'double-bounce@mx.postactor.test', ['reject-4@example.com'], rfc822({ Subject: 'dbl' }, 'x\n')));
    await server.waitForLog(new RegExp(`${id2}: removed$`), 15_000);
    assert.equal(sink.messages.filter((m) => m.data.includes(`X-Postactor-Queue-ID: ${id2}`)).length, 0);
    assert.ok(server.logLines().some((l) => l.includes(`${id2}: undeliverable postmaster notice discarded`)));
    // Mail to double-bounce: dropped by the discard agent.
    const id3 = queuedId(await sendRaw(server.port, 'alice@example.org', ['double-bounce@mx.postactor.test'], rfc822({ Subject: 'to dbl' }, 'x\n')));
    await server.waitForLog(new RegExp(`${id3}: to=<double-bounce@mx\\.postactor\\.test>, relay=none, .*status=sent`), 15_000);
  });
});
