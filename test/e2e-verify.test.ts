/**
 * End to end, address verification (verify(8)): reject_unverified_recipient and
 * reject_unverified_sender in smtpd, the verify service started by its master.cf line, probes
 * from double-bounce@$myorigin through qmgr and the smtp client to a real next hop (the project's
 * SmtpSink behind relayhost, rejecting the "unknown-" users with 550 5.1.1 at RCPT TO), the
 * cache in the queue store surviving a restart, and its expiry.
 *
 * Three smtpd ports: A polls once (the first RCPT gets "Address verification in progress"),
 * B polls three times a second apart (a probe that completes meanwhile answers the first RCPT,
 * as in Postfix), C has unverified_*_reject_code = 550 and also verifies senders.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { SmtpSink } from '../src/smtp/sink.js';
import { BACKEND_SERVICES, freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const PROBE_SENDER = 'double-bounce@mx.postactor.test';
const NEGATIVE_EXPIRE = 10; // seconds: room for the first test's retry on a loaded machine

describe('e2e address verification', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let portB = 0;
  let portC = 0;
  let portD = 0;
  let portE = 0;
  /** Every MAIL FROM and RCPT TO the next hop saw, in order. */
  const seen: string[] = [];
  const probesOf = (rcpt: string) => seen.filter((s) => s === `rcpt ${rcpt}`).length;
  /** When the first test got the cached negative verdict: the entry was written before this. */
  let negativeCachedAt = 0;

  before(async () => {
    sink = new SmtpSink({
      keepMessages: true,
      mailReply: (sender) => {
        seen.push(`mail ${sender}`);
        return null;
      },
      rcptReply: (rcpt) => {
        seen.push(`rcpt ${rcpt}`);
        return rcpt.startsWith('unknown-') ? `550 5.1.1 <${rcpt}>: Recipient address rejected: User unknown` : null;
      },
    });
    const sinkPort = await sink.listen(0);
    portB = await freePort();
    portC = await freePort();
    portD = await freePort();
    portE = await freePort();
    server = await startServer({
      sinkPort,
      mainCf: {
        smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination',
        smtpd_recipient_restrictions: 'reject_unverified_recipient',
        address_verify_poll_count: '1',
        address_verify_negative_expire_time: `${NEGATIVE_EXPIRE}s`,
        address_verify_negative_refresh_time: '1h',
      },
      masterCf: [
        '127.0.0.1:{{PORT}} inet n - n - 1 smtpd',
        `127.0.0.1:${portB} inet n - n - 1 smtpd -o address_verify_poll_count=3 -o address_verify_poll_delay=1s`,
        `127.0.0.1:${portC} inet n - n - 1 smtpd -o address_verify_poll_count=3 -o address_verify_poll_delay=1s`
          + ' -o unverified_recipient_reject_code=550 -o unverified_sender_reject_code=550'
          + ' -o smtpd_sender_restrictions=reject_unverified_sender',
        // A later reject in the same list: with defer_if_permit it wins, with defer it never runs.
        `127.0.0.1:${portD} inet n - n - 1 smtpd -o smtpd_recipient_restrictions=reject_unverified_recipient,reject`,
        `127.0.0.1:${portE} inet n - n - 1 smtpd -o smtpd_recipient_restrictions=reject_unverified_recipient,reject`
          + ' -o unverified_recipient_tempfail_action=defer',
        ...BACKEND_SERVICES,
        'verify unix - - n - 1 verify',
        '',
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  /** Whether the server process has a thread of that name (/proc/PID/task/TID/comm: ps -L). */
  const threadNamed = (name: string): boolean => {
    const pid = server.child!.pid!;
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      try {
        return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === name;
      } catch {
        return false; // the thread ended meanwhile
      }
    });
  };

  /** One transaction up to the RCPT reply (then RSET, QUIT). */
  async function rcpt(port: number, from: string, to: string): Promise<string> {
    const { smtp } = await SmtpDialogue.connect(port, { timeoutMs: 15_000 });
    try {
      await smtp.cmd('EHLO client.test');
      const m = await smtp.cmd(`MAIL FROM:<${from}>`);
      assert.equal(m.code, 250, m.line);
      const r = await smtp.cmd(`RCPT TO:<${to}>`);
      await smtp.cmd('QUIT').catch(() => undefined);
      return r.line;
    } finally {
      smtp.close();
    }
  }

  const said = (rcptAddr: string) => `host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <${rcptAddr}>: Recipient address rejected: User unknown (in reply to RCPT TO command)`;

  test('first RCPT: 450 "Address verification in progress"; the probe goes from double-bounce@$myorigin, stops at RCPT TO; the retry gets the cached verdict', async () => {
    const unknown = 'unknown-1@example.com';
    const known = 'known-1@example.com';
    // verify's thread starts at its first request, as Postfix's master spawns verify then.
    assert.equal(threadNamed('verify'), false, 'no verify thread before an address is verified');
    assert.equal(await rcpt(server.port, 'sender@example.org', unknown),
      `450 4.1.1 <${unknown}>: Recipient address rejected: unverified address: Address verification in progress`);
    await server.waitForLog(new RegExp(`NOQUEUE: reject: RCPT from localhost\\[127\\.0\\.0\\.1\\]: 450 4\\.1\\.1 <${unknown}>: Recipient address rejected: unverified address: Address verification in progress; from=<sender@example\\.org> to=<${unknown}> proto=ESMTP helo=<client\\.test>`), 5000);
    const probe = await server.waitForLog(new RegExp(`: to=<${unknown}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${server.sinkPort}, .*status=undeliverable`), 15_000);
    assert.ok(probe.endsWith(`dsn=5.1.1, status=undeliverable (${said(unknown)})`), probe);
    assert.match(probe, /\/smtp\[\d+\]: [0-9A-Za-z]+: to=</, 'logged as the smtp agent, as Postfix\'s smtp(8) logs it');
    assert.equal(threadNamed('verify'), true, 'the first request started verify');
    const probeId = /: ([0-9A-Za-z]+): to=</.exec(probe)![1]!;
    await server.waitForLog(new RegExp(`${probeId}: from=<${PROBE_SENDER}>, size=\\d+, nrcpt=1 \\(queue active\\)`), 5000);
    await server.waitForLog(new RegExp(`${probeId}: removed$`), 5000);
    assert.ok(seen.includes(`mail ${PROBE_SENDER}`), `the next hop saw MAIL FROM:<${PROBE_SENDER}>: ${seen.join(', ')}`);
    // No notice about the probe to anybody (a notice would be a new message from <>).
    assert.ok(!server.logLines().some((l) => l.includes(`${probeId}: sender non-delivery notification`) || l.includes(`${probeId}: sender delivery status notification`)));

    assert.equal(await rcpt(server.port, 'sender@example.org', unknown),
      `450 4.1.1 <${unknown}>: Recipient address rejected: unverified address: ${said(unknown)}`);
    negativeCachedAt = Date.now();
    assert.equal(probesOf(unknown), 1, 'the cached verdict: no second probe');

    assert.match(await rcpt(server.port, 'sender@example.org', known), /^450 4\.1\.1 <known-1@example\.com>: Recipient address rejected: unverified address: Address verification in progress$/);
    const ok = await server.waitForLog(new RegExp(`: to=<${known}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${server.sinkPort}, .*status=deliverable`), 15_000);
    assert.match(ok, /dsn=2\.1\.5, status=deliverable \(250 2\.1\.5 .*\)$|dsn=2\.0\.0, status=deliverable \(250 .*\)$/);
    assert.match(await rcpt(server.port, 'sender@example.org', known), /^250 /);
    assert.equal(probesOf(known), 1);
    // Probes deliver nothing: the next hop got no message from the probe sender.
    assert.equal(sink.messages.filter((m) => m.sender === PROBE_SENDER).length, 0);
  });

  test('with address_verify_poll_count = 3, a probe that finishes within the polls answers the first RCPT', async () => {
    assert.match(await rcpt(portB, 'sender@example.org', 'known-2@example.com'), /^250 /);
    assert.equal(await rcpt(portB, 'sender@example.org', 'unknown-2@example.com'),
      `450 4.1.1 <unknown-2@example.com>: Recipient address rejected: unverified address: ${said('unknown-2@example.com')}`);
  });

  test('unverified_recipient_reject_code = 550: "undeliverable address"; reject_unverified_sender: "Sender address rejected", 5.1.7', async () => {
    assert.equal(await rcpt(portC, '', 'unknown-3@example.com'),
      `550 5.1.1 <unknown-3@example.com>: Recipient address rejected: undeliverable address: ${said('unknown-3@example.com')}`);
    assert.equal(await rcpt(portC, 'unknown-s@example.com', 'known-3@example.com'),
      `550 5.1.7 <unknown-s@example.com>: Sender address rejected: undeliverable address: ${said('unknown-s@example.com')}`);
  });

  test('unverified_recipient_tempfail_action: defer_if_permit lets a later reject win; defer answers 450 at once', async () => {
    assert.equal(await rcpt(portD, 'sender@example.org', 'fresh-d@example.com'), '554 5.7.1 <fresh-d@example.com>: Recipient address rejected: Access denied');
    assert.equal(await rcpt(portE, 'sender@example.org', 'fresh-e@example.com'),
      '450 4.1.1 <fresh-e@example.com>: Recipient address rejected: unverified address: Address verification in progress');
  });

  test('the cache is in the queue store: after a restart a known address is accepted without a new probe', async () => {
    await server.restart();
    await server.waitForLog(/daemon started/, 5000);
    assert.match(await rcpt(server.port, 'sender@example.org', 'known-1@example.com'), /^250 /);
    assert.equal(probesOf('known-1@example.com'), 1);
  });

  test('a negative entry expires after address_verify_negative_expire_time: the address is probed again', async () => {
    const unknown = 'unknown-1@example.com';
    const updated = server.logLines().filter((l) => l.includes(`to=<${unknown}>`) && l.includes('status=undeliverable')).length;
    assert.equal(updated, 1);
    // The entry was written when the first probe came back, before the first test's retry got it
    // from the cache (negativeCachedAt), and has not been refreshed since (refresh time 1 h): it
    // has expired NEGATIVE_EXPIRE s after that retry at the latest. Wait out what is left of that
    // (the tests between took a few seconds of it), and half a second more.
    assert.ok(negativeCachedAt > 0, 'the first test saw the cached negative verdict');
    const left = negativeCachedAt + NEGATIVE_EXPIRE * 1000 + 500 - Date.now();
    if (left > 0) await new Promise((r) => setTimeout(r, left));
    assert.equal(await rcpt(server.port, 'sender@example.org', unknown),
      `450 4.1.1 <${unknown}>: Recipient address rejected: unverified address: Address verification in progress`);
    await server.waitForLogCount(new RegExp(`to=<${unknown}>, .*status=undeliverable`), 2, 15_000);
    assert.equal(probesOf(unknown), 2);
  });
});

describe('e2e address verification: address_verify_pending_request_limit', () => {
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    // A next hop that never greets: the first probe stays in the active queue.
    sink = new SmtpSink({ blackHole: true });
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: {
        smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination',
        smtpd_recipient_restrictions: 'reject_unverified_recipient',
        address_verify_poll_count: '1',
        address_verify_pending_request_limit: '1',
        smtp_helo_timeout: '60s',
      },
      masterCf: ['127.0.0.1:{{PORT}} inet n - n - 1 smtpd', ...BACKEND_SERVICES, 'verify unix - - n - 1 verify', ''].join('\n'),
    });
  });
  after(async () => {
    await server?.kill('SIGKILL');
    await server?.stop();
    await sink?.close();
  });

  test('a probe beyond the limit is not sent: the address gets "Too many address verification requests"', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port, { timeoutMs: 15_000 });
    try {
      await smtp.cmd('EHLO client.test');
      await smtp.cmd('MAIL FROM:<sender@example.org>');
      assert.match((await smtp.cmd('RCPT TO:<first@example.com>')).line, /Address verification in progress$/);
      await server.waitForLog(/from=<double-bounce@mx\.postactor\.test>, size=\d+, nrcpt=1 \(queue active\)/, 10_000);
      assert.match((await smtp.cmd('RCPT TO:<second@example.com>')).line, /Address verification in progress$/);
      await server.waitForLog(/to=<second@example\.com>, relay=none, .*dsn=4\.3\.2, status=undeliverable \(Too many address verification requests\)/, 10_000);
      // qmgr tells the verify service before it logs the line (Postfix's verify_append): the
      // next lookup has the answer.
      const r = await smtp.cmd('RCPT TO:<second@example.com>');
      assert.equal(r.line, '450 4.1.1 <second@example.com>: Recipient address rejected: unverified address: Too many address verification requests');
    } finally {
      smtp.close();
    }
  });
});
