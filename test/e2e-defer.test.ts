/**
 * End to end, the unhappy paths of delivery: a 4xx from the next hop defers and the retry after
 * minimal_backoff_time delivers; a 5xx bounces to the sender with an RFC 3464 report; a bounce
 * of a bounce (sender <>) is dropped; a next hop that refuses connections leaves the message
 * queued, and a restarted server delivers it once the next hop is up.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { queuedId, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

const FAST_RETRY = { minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s' };

describe('e2e defer and bounce', () => {
  let sink: SmtpSink;
  let server: TestServer;
  const attempts = new Map<string, number>();

  before(async () => {
    sink = new SmtpSink({
      keepMessages: true,
      rcptReply: (rcpt) => {
        const n = (attempts.get(rcpt) ?? 0) + 1;
        attempts.set(rcpt, n);
        if (rcpt.startsWith('defer2-') && n <= 2) return '450 4.2.0 <' + rcpt + '>: Mailbox busy, try again';
        if (rcpt.startsWith('reject-')) return '550 5.1.1 <' + rcpt + '>: Recipient address rejected: User unknown';
        return null;
      },
    });
    server = await startServer({ sinkPort: await sink.listen(0), mainCf: FAST_RETRY });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('a 450 from the next hop logs status=deferred, and the retry after minimal_backoff_time delivers', async () => {
    const rcpt = 'defer2-a@example.com';
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', [rcpt], rfc822({ Subject: 'defer me', 'Message-ID': '<defer@t>' }, 'retry please\n')));
    const deferred = await server.waitForLog(new RegExp(`${id}: to=<${rcpt}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${server.sinkPort}, .*status=deferred`), 10_000);
    assert.match(deferred, /, dsn=4\.2\.0, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 450 4\.2\.0 <defer2-a@example\.com>: Mailbox busy, try again \(in reply to RCPT TO command\)\)$/);
    const sent = await server.waitForLog(new RegExp(`${id}: to=<${rcpt}>, .*status=sent`), 15_000);
    assert.match(sent, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as \d+\)$/);
    await server.waitForLog(new RegExp(`${id}: removed$`), 5000);
    assert.equal(attempts.get(rcpt), 3, 'two deferrals, then the third attempt was accepted');
    const got = sink.messages.filter((m) => m.recipients.includes(rcpt));
    assert.equal(got.length, 1);
    const deferrals = server.logLines().filter((l) => l.includes(`${id}: to=<${rcpt}>`) && l.includes('status=deferred'));
    assert.equal(deferrals.length, 2);
  });

  test('a 550 from the next hop bounces: a multipart/report "Undelivered Mail Returned to Sender" to the original sender, with the original attached', async () => {
    const rcpt = 'reject-b@example.com';
    const original = rfc822({ From: 'bouncer@example.org', To: rcpt, Subject: 'will bounce', 'Message-ID': '<bounce-me@t>' }, 'original body line\nsecond line\n');
    const id = queuedId(await sendRaw(server.port, 'bouncer@example.org', [rcpt], original));
    const bounced = await server.waitForLog(new RegExp(`${id}: to=<${rcpt}>, .*status=bounced`), 10_000);
    assert.match(bounced, /dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <reject-b@example\.com>: Recipient address rejected: User unknown \(in reply to RCPT TO command\)\)$/);
    const notice = await server.waitForLog(new RegExp(`${id}: sender non-delivery notification: (\\S+)$`), 10_000);
    const bounceId = /notification: (\S+)$/.exec(notice)![1]!;
    await sink.waitFor(() => sink.messages.some((m) => m.recipients.includes('bouncer@example.org')), 10_000);
    const dsn = sink.messages.find((m) => m.recipients.includes('bouncer@example.org'))!;
    assert.equal(dsn.sender, '', 'a bounce is sent from the null sender');
    const text = dsn.data.toString('utf8');
    assert.match(text, /^Subject: Undelivered Mail Returned to Sender\r$/m);
    assert.match(text, /^From: Mail Delivery System <MAILER-DAEMON@mx\.postactor\.test>\r$/m);
    assert.match(text, /^To: bouncer@example\.org\r$/m);
    assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
    assert.match(text, /^Content-Type: message\/delivery-status/m);
    assert.match(text, /^Final-Recipient: rfc822; reject-b@example\.com\r$/m);
    assert.match(text, /^Action: failed\r$/m);
    assert.match(text, /^Status: 5\.1\.1\r$/m);
    assert.match(text, /^Content-Type: message\/rfc822/m);
    assert.ok(text.includes('Subject: will bounce\r\n'), 'the original headers are attached');
    assert.ok(text.includes('original body line\r\nsecond line\r\n'), 'the original body is attached');
    await server.waitForLog(new RegExp(`${bounceId}: removed$`), 10_000);
    await server.waitForLog(new RegExp(`${id}: removed$`), 10_000);
  });

  test('a message from <> that bounces produces no bounce', async () => {
    const rcpt = 'reject-c@example.com';
    const before = sink.stats.messages;
    const id = queuedId(await sendRaw(server.port, '', [rcpt], rfc822({ From: 'MAILER-DAEMON@elsewhere.example', Subject: 'a bounce itself' }, 'bounce body\n')));
    await server.waitForLog(new RegExp(`${id}: to=<${rcpt}>, .*status=bounced`), 10_000);
    await server.waitForLog(new RegExp(`${id}: removed$`), 10_000);
    // Give a (wrong) notification time to show up, then check none did.
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(!server.logLines().some((l) => l.includes(`${id}: sender non-delivery notification`)), 'no non-delivery notification logged');
    assert.equal(sink.stats.messages, before, 'nothing was delivered to the sink');
  });
});

describe('e2e next hop refusing connections', () => {
  let server: TestServer;
  let sink: SmtpSink | null = null;
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('connection refused: maillog shows status=deferred (connect to …: Connection refused), the message stays queued, and a restart with the next hop up delivers it', async () => {
    server = await startServer({ mainCf: FAST_RETRY }); // relayhost: a closed port
    const id = queuedId(await sendRaw(server.port, 'patient@example.org', ['later@example.com'], rfc822({ Subject: 'wait for it', 'X-Test-Id': 'refused-1' }, 'body\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<later@example\\.com>, .*status=deferred`), 10_000);
    const port = server.sinkPort;
    assert.ok(line.endsWith(`, dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:${port}: Connection refused)`), line);
    assert.match(line, new RegExp(`: ${id}: to=<later@example\\.com>, relay=none, delay=[\\d.]+, delays=[\\d.]+/[\\d.]+/[\\d.]+/[\\d.]+, dsn=4\\.4\\.1, status=deferred \\(`));
    // It is retried (still refused) and never removed while the next hop is down.
    await server.waitForLogCount(new RegExp(`${id}: to=<later@example\\.com>, .*status=deferred`), 2, 10_000);
    assert.ok(!server.logLines().some((l) => l.includes(`${id}: removed`)));

    await server.kill('SIGTERM');
    sink = new SmtpSink({ keepMessages: true });
    await sink.listen(port);
    await server.restart();
    await sink.waitFor((st) => st.messages >= 1, 15_000);
    assert.match(sink.messages[0]!.data.toString('latin1'), /^X-Test-Id: refused-1\r$/m);
    await server.waitForLog(new RegExp(`${id}: to=<later@example\\.com>, .*status=sent`), 5000);
    await server.waitForLog(new RegExp(`${id}: removed$`), 5000);
  });
});
