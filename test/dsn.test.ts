/**
 * Delivery status notifications as rendered by the bounce actor (actors/bounce/render.ts), read
 * back with mailparser field by field; and the status logs (Postfix's bounce/, defer/, trace/)
 * in the queue store: they change in the same transaction as their message and survive a reopen.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderNotice, wrapLine, type NoticeSettings } from '../actors/bounce/render.js';
import type { NoticeRequest } from '../actors/protocol.js';
import { QueueStore } from '../src/queue/store.js';
import type { MessageMeta, StatusRecord } from '../src/queue/types.js';
import { wants } from '../actors/qmgr/notices.js';
import { parseDsn } from './helpers/dsn.js';

// The dates below are local time as Postfix writes them: pin the zone, whatever the machine's.
// (test/mail-date.test.ts checks the formatter against the C library's strftime in other zones.)
process.env.TZ = 'UTC';

const SETTINGS: NoticeSettings = { myhostname: 'mx.postactor.test', myorigin: 'mx.postactor.test', mailName: 'Postactor', smtputf8Enable: true, delayWarningTime: 4 * 3600, maximalQueueLifetime: 5 * 86400 };
const ORIGINAL = Buffer.from('From: alice@example.org\r\nTo: bob@example.com\r\nSubject: lunch\r\nMessage-ID: <lunch@example.org>\r\n\r\nAt noon?\r\n');
const ARRIVAL = Date.UTC(2026, 10, 25, 8, 0, 0);

function rec(over: Partial<StatusRecord> = {}): StatusRecord {
  return {
    index: 0, address: 'bob@example.com', dsn: '5.1.1', action: 'failed',
    reason: 'host mx.example.com[192.0.2.1] said: 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown (in reply to RCPT TO command)',
    relay: 'mx.example.com[192.0.2.1]:25', time: ARRIVAL + 1000, ...over,
  };
}

function request(over: Partial<NoticeRequest> = {}): NoticeRequest {
  return { kind: 'failure', to: 'alice@example.org', queueId: '4jZ2Q56Qy8z000C', sender: 'alice@example.org', arrival: ARRIVAL, records: [rec()], original: ORIGINAL, headersOnly: false, ...over };
}

describe('DSN rendering (RFC 3464), parsed back with mailparser', () => {
  test('failure: "Undelivered Mail Returned to Sender", per-message and per-recipient fields, the original as message/rfc822', async () => {
    const dsn = await parseDsn(renderNotice(request({ envId: 'ENV-42', records: [rec({ orcpt: 'rfc822;Bob@Example.COM', original: 'list@example.com' })] }), SETTINGS, ARRIVAL + 2000));
    assert.equal(dsn.subject, 'Undelivered Mail Returned to Sender');
    assert.equal(dsn.mail.from?.value[0]?.address, 'MAILER-DAEMON@mx.postactor.test');
    assert.equal(dsn.mail.from?.value[0]?.name, 'Mail Delivery System');
    assert.equal(dsn.mail.headers.get('auto-submitted'), 'auto-replied');
    const ct = dsn.mail.headers.get('content-type') as { value: string; params: Record<string, string> };
    assert.equal(ct.value, 'multipart/report');
    assert.equal(ct.params['report-type'], 'delivery-status');
    assert.match(dsn.text, /could not\s+be delivered to one or more recipients/);
    // "(expanded from <…>)" names Postfix's original recipient (the address cleanup or an alias rewrote), not the DSN ORCPT.
    // Wrapped as Postfix's line_wrap(79, 4): words whole, the rest on lines indented by 4.
    assert.match(dsn.text, /\n<bob@example\.com> \(expanded from <list@example\.com>\): host\n    mx\.example\.com\[192\.0\.2\.1\] said: 550 5\.1\.1 <bob@example\.com>: Recipient\n    address rejected: User unknown \(in reply to RCPT TO command\)\n/);
    assert.equal(dsn.perMessage.get('original-envelope-id'), 'ENV-42');
    assert.equal(dsn.perMessage.get('reporting-mta'), 'dns; mx.postactor.test');
    assert.equal(dsn.perMessage.get('x-postactor-queue-id'), '4jZ2Q56Qy8z000C');
    assert.equal(dsn.perMessage.get('x-postactor-sender'), 'rfc822; alice@example.org');
    assert.equal(dsn.perMessage.get('arrival-date'), 'Wed, 25 Nov 2026 08:00:00 +0000 (UTC)');
    assert.equal(dsn.recipients.length, 1);
    const r = dsn.recipients[0]!;
    assert.equal(r.get('final-recipient'), 'rfc822; bob@example.com');
    assert.equal(r.get('original-recipient'), 'rfc822;Bob@Example.COM', 'the DSN ORCPT as stored, as Postfix prints it');
    assert.equal(r.get('action'), 'failed');
    assert.equal(r.get('status'), '5.1.1');
    assert.equal(r.get('remote-mta'), 'dns; mx.example.com');
    assert.equal(r.get('diagnostic-code'), 'smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown');
    assert.equal(r.has('will-retry-until'), false);
    assert.equal(dsn.original?.contentType, 'message/rfc822');
    // bounce puts back the Return-Path: that cleanup removed, as Postfix's does.
    assert.deepEqual(dsn.original?.content, Buffer.concat([Buffer.from('Return-Path: <alice@example.org>\r\n'), ORIGINAL]));
  });

  test('RET=HDRS (or over bounce_size_limit): only the headers, as text/rfc822-headers', async () => {
    const headers = ORIGINAL.subarray(0, ORIGINAL.indexOf('\r\n\r\n') + 4);
    const dsn = await parseDsn(renderNotice(request({ original: headers, headersOnly: true }), SETTINGS));
    assert.equal(dsn.original?.contentType, 'text/rfc822-headers');
    assert.match(dsn.original!.content.toString(), /^Return-Path: <alice@example\.org>\r\nFrom: alice@example\.org\r\n/);
    assert.doesNotMatch(dsn.original!.content.toString(), /At noon/);
  });

  test('delay: "Delayed Mail (still being retried)", Action delayed, a 4.x.y Status and Will-Retry-Until', async () => {
    const until = ARRIVAL + 5 * 86400_000;
    const dsn = await parseDsn(renderNotice(request({
      kind: 'delay', willRetryUntil: until,
      records: [rec({ dsn: '4.4.1', action: 'delayed', reason: 'connect to mx.example.com[192.0.2.1]:25: Connection refused', relay: 'none' })],
    }), SETTINGS));
    assert.equal(dsn.subject, 'Delayed Mail (still being retried)');
    assert.match(dsn.text, /THIS IS A WARNING ONLY/);
    assert.match(dsn.text, /could not be delivered for more than 4 hour\(s\)/);
    assert.match(dsn.text, /retried until it is 5 day\(s\) old/);
    const r = dsn.recipients[0]!;
    assert.equal(r.get('action'), 'delayed');
    assert.equal(r.get('status'), '4.4.1');
    assert.equal(r.get('will-retry-until'), 'Mon, 30 Nov 2026 08:00:00 +0000 (UTC)');
    assert.equal(r.get('diagnostic-code'), 'X-Postactor; connect to mx.example.com[192.0.2.1]:25: Connection refused');
  });

  test('dates as Postfix\'s mail_date() writes them: a day before the 10th padded with a blank (%e)', async () => {
    const arrival = Date.UTC(2026, 11, 3, 8, 0, 0);
    const raw = renderNotice(request({
      kind: 'delay', arrival, willRetryUntil: arrival + 5 * 86400_000,
      records: [rec({ dsn: '4.4.1', action: 'delayed', reason: 'connect to mx.example.com[192.0.2.1]:25: Connection refused', relay: 'none', time: arrival + 1000 })],
    }), SETTINGS, arrival + 2000);
    const dsn = await parseDsn(Buffer.from(raw));
    assert.match(Buffer.from(raw).toString('latin1'), /^Date: Thu,  3 Dec 2026 08:00:02 \+0000 \(UTC\)\r\n/);
    assert.equal(dsn.perMessage.get('arrival-date'), 'Thu,  3 Dec 2026 08:00:00 +0000 (UTC)');
    assert.equal(dsn.recipients[0]!.get('will-retry-until'), 'Tue,  8 Dec 2026 08:00:00 +0000 (UTC)');
  });

  test('success: "Successful Mail Delivery Report" with Action relayed or delivered and a 2.x.y Status', async () => {
    const dsn = await parseDsn(renderNotice(request({
      kind: 'success',
      records: [rec({ dsn: '2.0.0', action: 'relayed', reason: '250 2.0.0 Ok: queued as 1234', relay: 'mx.example.com[192.0.2.1]:25' }), rec({ index: 1, address: 'carol@example.org', dsn: '2.0.0', action: 'delivered', reason: 'delivered to mailbox', relay: 'local' })],
    }), SETTINGS));
    assert.equal(dsn.subject, 'Successful Mail Delivery Report');
    assert.match(dsn.text, /successfully delivered to the destination\(s\)/);
    assert.deepEqual(dsn.recipients.map((r) => [r.get('final-recipient'), r.get('action'), r.get('status'), r.get('remote-mta')]), [
      ['rfc822; bob@example.com', 'relayed', '2.0.0', 'dns; mx.example.com'],
      ['rfc822; carol@example.org', 'delivered', '2.0.0', undefined],
    ]);
  });

  test('postmaster copies carry Postfix\'s postmaster subjects', async () => {
    assert.equal((await parseDsn(renderNotice(request({ postmaster: true, to: 'postmaster@mx.postactor.test' }), SETTINGS))).subject, 'Postmaster Copy: Undelivered Mail');
    assert.equal((await parseDsn(renderNotice(request({ kind: 'delay', postmaster: true, records: [rec({ dsn: '4.0.0', action: 'delayed' })] }), SETTINGS))).subject, 'Postmaster Warning: Delayed Mail');
  });

  test('an expired message keeps its 4.x.y status in a failed block (as Postfix reports expiry)', async () => {
    const dsn = await parseDsn(renderNotice(request({ records: [rec({ dsn: '4.4.1', reason: 'connect to mx.example.com[192.0.2.1]:25: Connection refused' })] }), SETTINGS));
    assert.equal(dsn.recipients[0]!.get('action'), 'failed');
    assert.equal(dsn.recipients[0]!.get('status'), '4.4.1');
  });

  test("line_wrap(79, 4) as Postfix's: short lines whole, words never split, a word longer than the line alone on its line", () => {
    assert.deepEqual(wrapLine('<a@b>: short reason'), ['<a@b>: short reason']);
    assert.deepEqual(wrapLine('x'.repeat(79)), ['x'.repeat(79)]);
    assert.deepEqual(wrapLine(`a ${'y'.repeat(90)} b`), ['a', `    ${'y'.repeat(90)}`, '    b']);
    assert.deepEqual(wrapLine(`${'w '.repeat(39)}ww`), [`${'w '.repeat(38)}w`, '    ww']);
  });

  test('a postmaster copy: auto-generated, no boiler-plate text, the recipients\' lines right after the part headers', () => {
    const text = renderNotice(request({ postmaster: true }), SETTINGS).toString('latin1');
    assert.match(text, /\r\nAuto-Submitted: auto-generated\r\n/);
    assert.doesNotMatch(text, /This is the mail system/);
    assert.match(text, /Content-Transfer-Encoding: 8bit\r\n\r\n\r\n<bob@example\.com>: host/);
  });

  test('smtputf8_enable = no: no Content-Transfer-Encoding anywhere and us-ascii (Postfix\'s encoding for mail without BODY=)', () => {
    const text = renderNotice(request(), { ...SETTINGS, smtputf8Enable: false }).toString('latin1');
    assert.doesNotMatch(text, /Content-Transfer-Encoding/);
    assert.match(text, /\r\nContent-Type: text\/plain; charset=us-ascii\r\n\r\n/);
  });

  test('a double bounce (sender <>): the sender named MAILER-DAEMON@$myhostname, as Postfix\'s bounce names it', () => {
    const text = renderNotice(request({ sender: '', postmaster: true }), SETTINGS).toString('latin1');
    assert.match(text, /\r\nX-Postactor-Sender: rfc822; MAILER-DAEMON@mx\.postactor\.test\r\n/);
    assert.match(text, /\r\nReturn-Path: <MAILER-DAEMON@mx\.postactor\.test>\r\n/);
  });

  test('success and verify reasons name the relay ("delivery via RELAY: …", as trace_append()), except relay none', () => {
    const ok = rec({ dsn: '2.0.0', action: 'relayed', reason: '250 2.0.0 Ok: queued as X1' });
    assert.match(renderNotice(request({ kind: 'success', records: [ok] }), SETTINGS).toString('latin1'), /\r\n<bob@example\.com>: delivery via mx\.example\.com\[192\.0\.2\.1\]:25: 250 2\.0\.0 Ok:\r\n    queued as X1\r\n/);
    const none = rec({ dsn: '2.0.0', action: 'deliverable', relay: 'none', reason: 'delivers to mailbox' });
    assert.match(renderNotice(request({ kind: 'verify', records: [none] }), SETTINGS).toString('latin1'), /\r\n<bob@example\.com>: delivers to mailbox\r\n/);
  });

  test('DSN NOTIFY: absent means FAILURE and DELAY; NEVER means nothing', () => {
    assert.deepEqual(['SUCCESS', 'FAILURE', 'DELAY'].map((w) => wants(undefined, w as 'SUCCESS')), [false, true, true]);
    assert.deepEqual(['SUCCESS', 'FAILURE', 'DELAY'].map((w) => wants(['NEVER'], w as 'SUCCESS')), [false, false, false]);
    assert.deepEqual(['SUCCESS', 'FAILURE', 'DELAY'].map((w) => wants(['SUCCESS', 'FAILURE'], w as 'SUCCESS')), [true, true, false]);
  });
});

describe('status logs in the queue store', () => {
  function meta(id: string): MessageMeta {
    return { queueId: id, queue: 'active', arrival: ARRIVAL, sender: 'alice@example.org', recipients: [{ address: 'bob@example.com', done: false }], size: ORIGINAL.length, nextAttempt: 0, attempts: 0 };
  }

  test('appended, replaced and cleared in the same transaction as the move; dropped with the message; durable across a reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postactor-logs-'));
    try {
      let store = QueueStore.open(dir);
      await store.enqueue(meta('A1'), ORIGINAL);
      await store.update('A1', {}, { append: { bounce: [rec()] }, set: { defer: [rec({ dsn: '4.4.1', action: 'delayed' })] } });
      await store.move('A1', 'deferred', { nextAttempt: ARRIVAL }, 'active', { append: { bounce: [rec({ index: 1, address: 'c@x' })] }, set: { defer: [] } });
      await store.close();
      store = QueueStore.open(dir);
      assert.deepEqual(store.logs('A1', 'bounce').map((r) => r.address), ['bob@example.com', 'c@x']);
      assert.deepEqual(store.logs('A1', 'defer'), [], 'set to an empty list removes the log');
      assert.equal(store.hasLogs('A1'), true);
      // A move whose "from" does not match changes nothing, logs included.
      assert.equal(await store.move('A1', 'active', {}, 'incoming', { clear: ['bounce'] }), undefined);
      assert.equal(store.logs('A1', 'bounce').length, 2);
      await store.move('A1', 'active', {}, 'deferred', { clear: ['bounce'] });
      assert.equal(store.hasLogs('A1'), false);
      await store.update('A1', {}, { append: { trace: [rec({ action: 'delivered', dsn: '2.0.0' })] } });
      assert.equal(await store.remove('A1'), true);
      assert.equal(store.hasLogs('A1'), false, 'removing a message drops its logs');
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
