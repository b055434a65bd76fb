/**
 * End to end through a real server and sink: cleanup's address mappings (canonical, masquerading,
 * always_bcc, virtual aliases) and header/body checks, with the SMTP replies and the log lines
 * Postfix gives, Bcc removal, a broken table, and receive_override_options.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { QueueStore } from '../src/queue/store.js';
import { queuedId, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

const HEADER_CHECKS = [
  '/^Subject: reject me/ REJECT no thanks',
  '/^Subject: defer me/ DEFER busy now',
  '/^Subject: warn me/ WARN looked at',
  '/^Subject: hold me/ HOLD held for review',
  '/^Subject: discard me/ DISCARD dropped',
  '/^Subject: prepend me/ PREPEND X-Prepended: yes',
  '/^Subject: replace me/ REPLACE Subject: replaced',
  '/^X-Remove-Me:/ IGNORE',
  '/^Subject: redirect me/ REDIRECT redirected@dest.example',
  '/^Subject: bcc me/ BCC extra@dest.example',
  '/^Subject: filter me/ FILTER scan:[127.0.0.1]:{{FILTERPORT}}',
  '/^Subject: folded\\n\\tsecond line/ REJECT folded header seen whole',
  '',
].join('\n');

const BODY_CHECKS = [
  '/^BODY-REJECT/ REJECT 5.7.9 bad body',
  '/^BODY-REPLACE/ REPLACE the replaced line',
  '/^BODY-WARN/ WARN',
  '',
].join('\n');

const VIRTUAL = [
  'list@v.example a@v.example, keep@dest.example',
  'a@v.example alice@dest.example',
  'keep@dest.example keep@dest.example, bob@dest.example',
  'loop1@v.example loop2@v.example',
  'loop2@v.example loop1@v.example',
  'wide@v.example u1@dest.example, u2@dest.example, u3@dest.example, u4@dest.example',
  '',
].join('\n');

const CANONICAL = [
  'joe@client.test joe.public@example.com',
  'rcpt@old.example rcpt@new.example',
  '',
].join('\n');

function tables(dir: string, filterPort = 10025): Record<string, string> {
  fs.writeFileSync(path.join(dir, 'header_checks'), HEADER_CHECKS.replace('{{FILTERPORT}}', String(filterPort)));
  fs.writeFileSync(path.join(dir, 'body_checks'), BODY_CHECKS);
  fs.writeFileSync(path.join(dir, 'virtual'), VIRTUAL);
  fs.writeFileSync(path.join(dir, 'canonical'), CANONICAL);
  return {
    canonical_maps: `texthash:${dir}/canonical`,
    masquerade_domains: '!keep.example.com, example.com',
    always_bcc: 'audit@archive.example',
    virtual_alias_maps: `texthash:${dir}/virtual`,
    // Its default ($virtual_alias_maps) is a table, which smtpd's domain lists do not take yet.
    virtual_alias_domains: 'v.example',
    virtual_alias_recursion_limit: '20',
    virtual_alias_expansion_limit: '3',
    header_checks: `regexp:${dir}/header_checks`,
    body_checks: `regexp:${dir}/body_checks`,
  };
}

let seq = 0;
function message(subject: string, extra: Record<string, string> = {}, body = 'hello\n'): { id: string; text: string } {
  const id = `cleanup-${++seq}`;
  return { id, text: rfc822({ From: 'Joe <joe@client.test>', To: 'Someone <user@host.example.com>', Subject: subject, 'Message-ID': `<${id}@client.test>`, 'X-Test-Id': id, ...extra }, body) };
}

function arrived(sink: SmtpSink, id: string): SinkMessage | undefined {
  // Not a bounce (which quotes the original headers).
  return sink.messages.find((m) => m.sender !== '' && m.data.toString('latin1').includes(`X-Test-Id: ${id}\r\n`));
}

async function waitArrived(sink: SmtpSink, id: string): Promise<SinkMessage> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = arrived(sink, id);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`message ${id} did not arrive at the sink`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('e2e cleanup: address mappings and content checks', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let tdir: string;
  let filter: SmtpSink;
  let filterPort: number;

  before(async () => {
    tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cleanup-tables-'));
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    filter = new SmtpSink({ keepMessages: true });
    filterPort = await filter.listen(0);
    // The content filter's transport: an smtp agent of its own, as in FILTER_README.
    server = await startServer({ sinkPort, mainCf: tables(tdir, filterPort), masterCfExtra: 'scan unix - - n - 1 smtp' });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    await filter?.close();
    if (tdir) fs.rmSync(tdir, { recursive: true, force: true });
  });

  test('canonical_maps rewrites envelope and header addresses of a local client; masquerading applies to the envelope sender and headers only; always_bcc is added', async () => {
    const m = message('plain', { Cc: 'x@keep.example.com, rcpt@old.example' });
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text);
    assert.equal(r.code, 250, r.line);
    const got = await waitArrived(sink, m.id);
    const data = got.data.toString('latin1');
    assert.equal(got.sender, 'joe.public@example.com');
    // Envelope recipients are not masqueraded by default (masquerade_classes).
    assert.deepEqual([...got.recipients].sort(), ['audit@archive.example', 'user@host.example.com']);
    assert.match(data, /^From: Joe <joe\.public@example\.com>\r$/m);
    assert.match(data, /^To: Someone <user@example\.com>\r$/m);
    assert.match(data, /^Cc: x@keep\.example\.com, rcpt@new\.example\r$/m);
  });

  test('cleanup_replace_stray_cr_lf: a CR that does not end a line becomes a space (no header smuggled in)', async () => {
    const m = message('stray');
    const text = m.text.replace('Subject: stray', 'Subject: stray\rX-Injected: yes');
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], text);
    assert.equal(r.code, 250, r.line);
    const data = (await waitArrived(sink, m.id)).data.toString('latin1');
    assert.match(data, /^Subject: stray X-Injected: yes\r$/m);
    assert.doesNotMatch(data, /^X-Injected:/m);
  });

  test('headers of a remote client (not in local_header_rewrite_clients) are not rewritten; its envelope is', async () => {
    const m = message('plain remote');
    const r = await sendRaw(server.port, 'joe@client.test', ['rcpt@old.example'], m.text, { localAddress: '127.0.0.2' });
    assert.equal(r.code, 250, r.line);
    const got = await waitArrived(sink, m.id);
    const data = got.data.toString('latin1');
    assert.equal(got.sender, 'joe.public@example.com');
    assert.ok(got.recipients.includes('rcpt@new.example'), got.recipients.join(' '));
    assert.match(data, /^From: Joe <joe@client\.test>\r$/m);
    assert.match(data, /^To: Someone <user@host\.example\.com>\r$/m);
  });

  test('virtual_alias_maps: a chain expands recursively, an address mapped to itself is kept, duplicates are removed', async () => {
    const m = message('virtual');
    const r = await sendRaw(server.port, 'sender@client.test', ['list@v.example', 'a@v.example', 'list@v.example'], m.text);
    assert.equal(r.code, 250, r.line);
    const got = await waitArrived(sink, m.id);
    // The second list@v.example is a duplicate; alice@dest.example reached from list@ and from
    // a@ is kept twice, as Postfix keeps recipients with different original recipients apart
    // (enable_original_recipient = yes).
    assert.deepEqual([...got.recipients].sort(), ['alice@dest.example', 'alice@dest.example', 'audit@archive.example', 'bob@dest.example', 'keep@dest.example']);
  });

  test('original recipient: delivery log lines say orig_to=<…> after canonical mapping and virtual aliasing; a DSN next hop gets ORCPT made up from the RCPT TO address, as Postfix does', async () => {
    const m = message('original');
    const r = await sendRaw(server.port, 'sender@client.test', ['list@v.example', 'rcpt@old.example', 'user@host.example.com'], m.text);
    const id = queuedId(r);
    const got = await waitArrived(sink, m.id);
    const params = Object.fromEntries(got.recipients.map((a, i) => [a, got.rcptParams?.[i]]));
    assert.deepEqual(params, {
      'alice@dest.example': 'ORCPT=rfc822;list@v.example',
      'keep@dest.example': 'ORCPT=rfc822;list@v.example',
      'bob@dest.example': 'ORCPT=rfc822;list@v.example',
      'rcpt@new.example': 'ORCPT=rfc822;rcpt@old.example',
      'user@host.example.com': 'ORCPT=rfc822;user@host.example.com',
      // always_bcc: NOTIFY=NEVER (cleanup_addr_bcc), ORCPT from its original recipient, itself (smtp_proto.c).
      'audit@archive.example': 'NOTIFY=NEVER ORCPT=rfc822;audit@archive.example',
    });
    const lines = await server.waitForLogCount(new RegExp(`: ${id}: to=<`), 6, 10_000);
    const to = (rcpt: string) => lines.find((l) => l.includes(`: ${id}: to=<${rcpt}>`)) ?? '';
    for (const a of ['alice', 'keep', 'bob']) assert.match(to(`${a}@dest.example`), new RegExp(`: to=<${a}@dest\\.example>, orig_to=<list@v\\.example>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:\\d+, .*status=sent`));
    assert.match(to('rcpt@new.example'), /: to=<rcpt@new\.example>, orig_to=<rcpt@old\.example>, relay=/);
    assert.match(to('user@host.example.com'), /: to=<user@host\.example\.com>, relay=/, 'no orig_to when nothing was rewritten');
    assert.match(to('audit@archive.example'), /: to=<audit@archive\.example>, relay=/);
  });

  test('virtual alias loop and too-wide expansion: 451 4.6.0 Alias expansion error, logged as Postfix does', async () => {
    let r = await sendRaw(server.port, 'sender@client.test', ['loop1@v.example'], message('loop').text);
    assert.equal(r.line, '451 4.6.0 Alias expansion error');
    await server.waitForLog(/: warning: \S+: unreasonable virtual_alias_maps map nesting for loop1@v\.example -- message not accepted, try again later$/, 5000);
    r = await sendRaw(server.port, 'sender@client.test', ['wide@v.example'], message('wide').text);
    assert.equal(r.line, '451 4.6.0 Alias expansion error');
    await server.waitForLog(/unreasonable virtual_alias_maps map expansion size for wide@v\.example/, 5000);
  });

  test('header_checks REJECT: 550 5.7.1 text at end of DATA, "reject: header" log line with client, envelope, proto and helo', async () => {
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], message('reject me please').text);
    assert.equal(r.line, '550 5.7.1 no thanks');
    const line = await server.waitForLog(/: reject: header Subject: reject me please/, 5000);
    assert.match(line, /cleanup\[\d+\]: \S+: reject: header Subject: reject me please from \S+\[127\.0\.0\.1\]; from=<joe\.public@example\.com> to=<user@host\.example\.com> proto=ESMTP helo=<client\.test>: 5\.7\.1 no thanks$/);
  });

  test('header_checks DEFER: 451 4.7.1 text', async () => {
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], message('defer me').text);
    assert.equal(r.line, '451 4.7.1 busy now');
  });

  test('header_checks: a folded header is checked as one header, its lines joined by newlines', async () => {
    const text = message('x').text.replace('Subject: x\r\n', 'Subject: folded\r\n\tsecond line\r\n');
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], text);
    assert.equal(r.line, '550 5.7.1 folded header seen whole');
  });

  test('header_checks WARN: delivered, "warning: header" logged', async () => {
    const m = message('warn me');
    assert.equal((await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text)).code, 250);
    await waitArrived(sink, m.id);
    const line = await server.waitForLog(/: warning: header Subject: warn me/, 5000);
    assert.match(line, /: warning: header Subject: warn me from \S+\[127\.0\.0\.1\]; from=<joe\.public@example\.com> to=<user@host\.example\.com> proto=ESMTP helo=<client\.test>: looked at$/);
  });

  test('header_checks HOLD: accepted into the hold queue, not delivered', async () => {
    const m = message('hold me');
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text);
    assert.equal(r.code, 250, r.line);
    const qid = /queued as (\S+)/.exec(r.line)![1]!;
    await server.waitForLog(new RegExp(`${qid}: hold: header Subject: hold me from .*: held for review$`), 5000);
    const store = QueueStore.open(server.queueDir, { readOnly: true });
    try {
      assert.ok([...store.list('hold')].includes(qid), 'the message is in the hold queue');
      assert.equal(store.get(qid)?.queue, 'hold');
    } finally {
      await store.close();
    }
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(arrived(sink, m.id), undefined);
  });

  test('header_checks DISCARD: 250 to the client, "discard: header" logged, nothing delivered', async () => {
    const m = message('discard me');
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text);
    assert.match(r.line, /^250 2\.0\.0 Ok: queued as /);
    await server.waitForLog(/: discard: header Subject: discard me from .*: dropped$/, 5000);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(arrived(sink, m.id), undefined);
  });

  test('header_checks PREPEND, REPLACE and IGNORE edit the header section', async () => {
    const p = message('prepend me');
    const rp = message('replace me', { 'X-Remove-Me': 'secret' });
    for (const m of [p, rp]) assert.equal((await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text)).code, 250);
    assert.match((await waitArrived(sink, p.id)).data.toString('latin1'), /\r\nX-Prepended: yes\r\nSubject: prepend me\r\n/);
    const data = (await waitArrived(sink, rp.id)).data.toString('latin1');
    assert.match(data, /\r\nSubject: replaced\r\n/);
    assert.doesNotMatch(data, /replace me|X-Remove-Me/);
  });

  test('header_checks REDIRECT replaces all recipients by the first, keeping its DSN NOTIFY and ORCPT; BCC adds one', async () => {
    const red = message('redirect me');
    const bcc = message('bcc me');
    const rcptParams = ['NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig-user@host.example.com', 'NOTIFY=DELAY'];
    assert.equal((await sendRaw(server.port, 'joe@client.test', ['user@host.example.com', 'other@host.example.com'], red.text, { rcptParams })).code, 250);
    assert.equal((await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], bcc.text)).code, 250);
    const redirected = await waitArrived(sink, red.id);
    assert.deepEqual(redirected.recipients, ['redirected@dest.example']);
    // As Postfix's qmgr applies REDIRECT: the first recipient's address replaced, its DSN NOTIFY and ORCPT kept.
    assert.deepEqual(redirected.rcptParams, ['NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig-user@host.example.com']);
    // And its original recipient: Postfix 3.7 logs "to=<redirected@…>, orig_to=<first recipient>".
    await server.waitForLog(/: to=<redirected@dest\.example>, orig_to=<user@host\.example\.com>, relay=.*status=sent /, 10_000);
    await server.waitForLog(/: redirect: header Subject: redirect me from .*: redirected@dest\.example$/, 5000);
    assert.deepEqual([...(await waitArrived(sink, bcc.id)).recipients].sort(), ['audit@archive.example', 'extra@dest.example', 'user@host.example.com']);
  });

  test('header_checks FILTER transport:destination: qmgr sends the message to the content filter instead of its normal route', async () => {
    const m = message('filter me');
    const r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text);
    assert.equal(r.code, 250, r.line);
    await server.waitForLog(new RegExp(`: filter: header Subject: filter me from .*: scan:\\[127\\.0\\.0\\.1\\]:${filterPort}$`), 5000);
    const got = await waitArrived(filter, m.id);
    assert.deepEqual([...got.recipients].sort(), ['audit@archive.example', 'user@host.example.com'], 'every recipient (always_bcc too) goes to the filter');
    await server.waitForLog(new RegExp(`postactor/scan\\[\\d+\\]: \\S+: to=<user@host\\.example\\.com>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${filterPort}, .*status=sent`), 5000);
    assert.equal(arrived(sink, m.id), undefined, 'not delivered past the filter');
  });

  test('body_checks: REJECT with its own status, REPLACE a line, WARN logs "warning: body"', async () => {
    let r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], message('body', {}, 'line one\nBODY-REJECT here\n').text);
    assert.equal(r.line, '550 5.7.9 bad body');
    await server.waitForLog(/: reject: body BODY-REJECT here from .*: 5\.7\.9 bad body$/, 5000);
    const m = message('body2', {}, 'line one\nBODY-REPLACE this\nBODY-WARN too\nlast\n');
    r = await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text);
    assert.equal(r.code, 250, r.line);
    const data = (await waitArrived(sink, m.id)).data.toString('latin1');
    assert.match(data, /\r\n\r\nline one\r\nthe replaced line\r\nBODY-WARN too\r\nlast\r\n$/);
    await server.waitForLog(/: warning: body BODY-WARN too from \S+\[127\.0\.0\.1\]; from=<joe\.public@example\.com> to=<user@host\.example\.com> proto=ESMTP helo=<client\.test>$/, 5000);
  });

  test('Bcc: and Resent-Bcc: headers are removed from every message, remote clients included', async () => {
    const m = message('bcc header', { Bcc: 'hidden@dest.example', 'Resent-Bcc': 'hidden2@dest.example' });
    assert.equal((await sendRaw(server.port, 'joe@client.test', ['user@host.example.com'], m.text, { localAddress: '127.0.0.2' })).code, 250);
    const data = (await waitArrived(sink, m.id)).data.toString('latin1');
    assert.doesNotMatch(data, /^(Resent-)?Bcc:/im);
  });
});

describe('e2e cleanup: broken tables and receive_override_options', () => {
  let tdir: string;
  before(() => {
    tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'cleanup-tables-'));
  });
  after(() => fs.rmSync(tdir, { recursive: true, force: true }));

  test('a broken header_checks table: the message is not accepted (451 4.3.0 Error: queue file write error), the log names file:line', async () => {
    fs.writeFileSync(path.join(tdir, 'broken'), '/ok/ WARN\n/unclosed( REJECT\n');
    const server = await startServer({ mainCf: { header_checks: `regexp:${tdir}/broken` } });
    try {
      const r = await sendRaw(server.port, 'a@client.test', ['b@dest.example'], message('any').text);
      assert.equal(r.line, '451 4.3.0 Error: queue file write error');
      await server.waitForLog(new RegExp(`warning: \\S+: table lookup problem -- message not accepted, try again later: ${tdir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/broken:2: `), 5000);
    } finally {
      await server.stop();
    }
  });

  test('receive_override_options = no_address_mappings, no_header_body_checks (main.cf): no mapping, no checks', async () => {
    const sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    const server = await startServer({ sinkPort, mainCf: { ...tables(tdir), receive_override_options: 'no_address_mappings, no_header_body_checks' } }).catch(async (e: unknown) => {
      await sink.close();
      throw e;
    });
    try {
      const m = message('reject me');
      const r = await sendRaw(server.port, 'joe@client.test', ['rcpt@old.example'], m.text);
      assert.equal(r.code, 250, r.line);
      const got = await waitArrived(sink, m.id);
      assert.equal(got.sender, 'joe@client.test');
      assert.deepEqual(got.recipients, ['rcpt@old.example']); // no canonical mapping, no always_bcc
      assert.match(got.data.toString('latin1'), /^From: Joe <joe@client\.test>\r$/m);
    } finally {
      await server.stop();
      await sink.close();
    }
  });
});
