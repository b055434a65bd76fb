/**
 * The smtp client with soft_bounce (Postfix's smtp_trouble.c): a 5xx from a host that is not
 * the last one keeps the recipients it refused for the next host, with a line saying why; the
 * last host's 5xx stays the outcome. Real sinks on loopback, one per host.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SmtpClient, type SmtpClientOptions } from '../src/smtp/client.js';
import { SmtpSink, type SinkProfile } from '../src/smtp/sink.js';

const OPTIONS: SmtpClientOptions = {
  heloName: 'client.test', connectTimeout: 5000, heloTimeout: 5000, mailTimeout: 5000, rcptTimeout: 5000,
  dataInitTimeout: 5000, dataXferTimeout: 5000, dataDoneTimeout: 5000, quitTimeout: 500,
};
const body = Buffer.from('Subject: hi\r\n\r\nhello\r\n');

async function sinks(profiles: SinkProfile[], fn: (hosts: { host: string; addr: string; port: number }[], sinks: SmtpSink[]) => Promise<void>): Promise<void> {
  const list = profiles.map((p) => new SmtpSink({ keepMessages: true, ...p }));
  try {
    const ports = await Promise.all(list.map((s) => s.listen(0)));
    await fn(ports.map((port, i) => ({ host: `mx${i + 1}.test`, addr: '127.0.0.1', port })), list);
  } finally {
    await Promise.all(list.map((s) => s.close()));
  }
}

test('soft_bounce: the recipient the first host refused with 550 goes to the second; the accepted one stays with the first', async () => {
  await sinks([{ rcptReply: (r) => (r.startsWith('hard') ? '550 5.1.1 User unknown' : null) }, {}], async (hosts, [first, second]) => {
    const info: string[] = [];
    const client = new SmtpClient({ ...OPTIONS, softBounce: true, onInfo: (t) => info.push(t) });
    const res = await client.deliver(hosts, { sender: 's@x.test', recipients: ['ok@y.test', 'hard@y.test'], queueId: 'QID1' }, body);
    await client.close();
    assert.deepEqual(res.recipients.map((r) => [r.index, r.ok, r.reply.code]), [[0, true, 250], [1, true, 250]]);
    assert.equal(res.recipients[0]!.via, undefined, 'the first host delivered the first recipient');
    assert.equal(res.recipients[1]!.via?.remoteHost, 'mx2.test');
    assert.equal(res.recipients[1]!.via?.kind, 'sent');
    assert.deepEqual(first!.messages.map((m) => m.recipients), [['ok@y.test']]);
    assert.deepEqual(second!.messages.map((m) => m.recipients), [['hard@y.test']]);
    assert.deepEqual(info, [`QID1: host mx1.test[127.0.0.1] said: 550 5.1.1 User unknown (in reply to RCPT TO command)`]);
  });
});

test('soft_bounce: MAIL FROM refused with 550 by the first host sends every recipient to the next, one line for all', async () => {
  await sinks([{ mailReply: () => '550 5.7.1 Sender refused' }, {}], async (hosts, [, second]) => {
    const info: string[] = [];
    const client = new SmtpClient({ ...OPTIONS, softBounce: true, onInfo: (t) => info.push(t) });
    const res = await client.deliver(hosts, { sender: 's@x.test', recipients: ['a@y.test', 'b@y.test'], queueId: 'QID2' }, body);
    await client.close();
    assert.ok(res.recipients.every((r) => r.ok && r.via?.remoteHost === 'mx2.test'));
    assert.deepEqual(second!.messages.map((m) => m.recipients), [['a@y.test', 'b@y.test']]);
    assert.deepEqual(info, [`QID2: host mx1.test[127.0.0.1] said: 550 5.7.1 Sender refused (in reply to MAIL FROM command)`]);
  });
});

test('soft_bounce: the last host\'s 550 is the outcome (from that host); without soft_bounce the first host\'s 550 is final', async () => {
  const refuse: SinkProfile = { rcptReply: () => '550 5.1.1 User unknown' };
  await sinks([refuse, refuse], async (hosts, [, second]) => {
    const client = new SmtpClient({ ...OPTIONS, softBounce: true });
    const res = await client.deliver(hosts, { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    await client.close();
    assert.equal(res.recipients[0]!.ok, false);
    assert.equal(res.recipients[0]!.reply.code, 550);
    assert.equal(res.recipients[0]!.via?.remoteHost, 'mx2.test');
    assert.equal(second!.stats.rejectedRecipients, 1);
  });
  await sinks([refuse, {}], async (hosts, [, second]) => {
    const client = new SmtpClient(OPTIONS);
    const res = await client.deliver(hosts, { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    await client.close();
    assert.equal(res.recipients[0]!.reply.code, 550);
    assert.equal(res.recipients[0]!.via, undefined);
    assert.equal(second!.stats.connections, 0, 'the second host is not tried');
  });
});
