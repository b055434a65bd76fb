/**
 * End to end, smtpd_milters against a real libmilter filter: a tiny milter written with Debian's
 * python3-milter (pymilter, on libmilter) runs as a child process on a loopback port; a real
 * server (child process) consults it and relays to the project's SmtpSink. The milter rejects a
 * recipient (its own reply text), adds a header carrying the queue ID ({i} at end of message),
 * changes the Subject, swaps a recipient, and rejects or quarantines a message by its Subject.
 * milter_default_action is checked with the milter down.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, queuedId, rfc822, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { NEEDS_OPENDKIM, NEEDS_PYMILTER, TEST_MILTER_MACROS, startOpenDkim, startTestMilter, verifyDkim } from './helpers/milter.js';

function message(subject: string): string {
  return rfc822({ From: '<s@example.org>', To: '<r@example.com>', Subject: subject, 'Message-ID': `<${subject.replace(/\W/g, '')}@client.test>` }, `body of ${subject}\n`);
}

/** One SMTP session: EHLO, MAIL, RCPTs, DATA; every reply line. */
async function session(port: number, rcpts: string[], msg: string | null): Promise<string[]> {
  const { smtp, greeting } = await SmtpDialogue.connect(port, { timeoutMs: 15000 });
  const out = [greeting.line];
  try {
    out.push((await smtp.cmd('EHLO client.test')).line);
    out.push((await smtp.cmd('MAIL FROM:<s@example.org>')).line);
    for (const r of rcpts) out.push((await smtp.cmd(`RCPT TO:<${r}>`)).line);
    if (msg !== null) {
      const d = await smtp.cmd('DATA');
      out.push(d.line);
      if (d.code === 354) out.push((await smtp.cmd(`${msg.replace(/\r\n$/, '')}\r\n.`)).line);
    }
    await smtp.cmd('QUIT').catch(() => undefined);
  } finally {
    smtp.close();
  }
  return out;
}

describe('smtpd_milters with a real libmilter filter (python3-milter)', { skip: NEEDS_PYMILTER }, () => {
  let dir: string;
  let milter: ChildProcess;
  let milterPort: number;
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-milter-'));
    ({ port: milterPort, child: milter } = await startTestMilter(dir));
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    // milter_header_checks: applied to the headers the milter produced (its changed Subject).
    writeFileSync(join(dir, 'milter_header_checks'), '/^Subject: changed by milter: hold-by-checks/ HOLD held by milter_header_checks\n');
    server = await startServer({ sinkPort, mainCf: { smtpd_milters: `inet:127.0.0.1:${milterPort}`, smtpd_milter_maps: 'inline:{127.0.0.2=DISABLE}', milter_header_checks: `regexp:${join(dir, 'milter_header_checks')}`, ...TEST_MILTER_MACROS } });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    milter?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a recipient the milter rejects gets its reply at RCPT, logged as milter-reject', async () => {
    const out = await session(server.port, ['milter-reject@example.com'], null);
    assert.equal(out[3], '550 5.7.1 Recipient refused by test milter');
    const line = await server.waitForLog(/milter-reject: RCPT from/, 5000);
    assert.match(line, /NOQUEUE: milter-reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.7\.1 Recipient refused by test milter; from=<s@example\.org> to=<milter-reject@example\.com> proto=ESMTP helo=<client\.test>/);
  });

  test('smtpd_milter_maps: DISABLE for a client address turns the milters off for its sessions', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port, { localAddress: '127.0.0.2' });
    try {
      await smtp.cmd('EHLO client.test');
      await smtp.cmd('MAIL FROM:<s@example.org>');
      const r = await smtp.cmd('RCPT TO:<milter-reject@example.com>');
      assert.equal(r.line, '250 2.1.5 Ok');
    } finally {
      smtp.close();
    }
  });

  test('a multi-line custom reply (smfi_setmlreply) is answered as one line, with the first line\'s codes', async () => {
    const out = await session(server.port, ['milter-multi@example.com'], null);
    assert.equal(out[3], '450 4.7.1 first line second line');
  });

  test('DISCARD at RCPT: the message is accepted (250) and dropped, logged as milter-discard', async () => {
    const before = sink.stats.messages;
    const out = await session(server.port, ['milter-discard@example.com'], message('discard me'));
    assert.equal(out[3], '250 2.1.5 Ok');
    assert.match(out.at(-1)!, /^250 2\.0\.0 Ok: queued as /);
    await server.waitForLog(/milter-discard: RCPT from localhost\[127\.0\.0\.1\]: milter triggers DISCARD action; from=<s@example\.org> to=<milter-discard@example\.com> proto=ESMTP helo=<client\.test>/, 5000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sink.stats.messages, before);
  });

  test('an accepted message reaches the next hop with the milter\'s header (queue ID) and its changed Subject', async () => {
    const out = await session(server.port, ['r@example.com'], message('hello milter'));
    const qid = queuedId({ code: Number(out.at(-1)!.slice(0, 3)), text: out.at(-1)!.slice(4) });
    await sink.waitFor((s) => s.messages >= 1, 15000);
    const m = sink.messages.find((x) => x.data.toString('latin1').includes('hellomilter@client.test'))!;
    const text = m.data.toString('latin1');
    assert.match(text, new RegExp(`\\r\\nX-Test-Milter: queue-id=${qid}\\r\\n`));
    assert.match(text, /\r\nSubject: changed by milter: hello milter\r\n/);
    // Macros: {client_addr}/{client_name} from the session, {test_default} from milter_macro_defaults.
    assert.match(text, /\r\nX-Test-Client: 127\.0\.0\.1 localhost\r\n/);
    assert.match(text, /\r\nX-Test-Default: from macro defaults\r\n/);
    assert.doesNotMatch(text, /\r\nSubject: hello milter\r\n/);
    assert.deepEqual(m.recipients, ['r@example.com']);
  });

  test('a message the milter rejects at end of message gets its reply, nothing is relayed', async () => {
    const before = sink.stats.messages;
    const out = await session(server.port, ['r@example.com'], message('please reject-me'));
    assert.equal(out.at(-1), '550 5.7.1 Message refused by test milter');
    await server.waitForLog(/milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 5\.7\.1 Message refused by test milter; from=<s@example\.org> to=<r@example\.com> proto=ESMTP helo=<client\.test>/, 5000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sink.stats.messages, before);
  });

  test('a reject at a header is answered at once (no later step is sent), and the next message of the session is filtered as usual', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port, { timeoutMs: 15000 });
    const before = sink.stats.messages;
    try {
      await smtp.cmd('EHLO client.test');
      const refused = rfc822({ From: '<s@example.org>', 'X-Reject-At-Header': 'yes', To: '<r@example.com>', Subject: 'refused at a header', 'Message-ID': '<refusedatheader@client.test>' }, 'body\n');
      for (const [msg, want] of [[refused, /^550 5\.7\.1 Header refused by test milter$/], [message('accepted after a header reject'), /^250 2\.0\.0 Ok: queued as /]] as const) {
        assert.match((await smtp.cmd('MAIL FROM:<s@example.org>')).line, /^250 /);
        assert.match((await smtp.cmd('RCPT TO:<r@example.com>')).line, /^250 /);
        assert.equal((await smtp.cmd('DATA')).code, 354);
        assert.match((await smtp.cmd(`${msg.replace(/\r\n$/, '')}\r\n.`)).line, want);
      }
      await smtp.cmd('QUIT').catch(() => undefined);
    } finally {
      smtp.close();
    }
    await sink.waitFor(() => sink.messages.some((x) => x.data.toString('latin1').includes('acceptedafteraheaderreject@client.test')), 15000);
    const m = sink.messages.find((x) => x.data.toString('latin1').includes('acceptedafteraheaderreject@client.test'))!;
    assert.match(m.data.toString('latin1'), /^X-Test-Milter: queue-id=\w+/m);
    assert.match(m.data.toString('latin1'), /^Subject: changed by milter: accepted after a header reject/m);
    assert.ok(!sink.messages.some((x) => x.data.toString('latin1').includes('refusedatheader@client.test')), 'the refused message is not relayed');
    assert.equal(sink.stats.messages, before + 1);
  });

  test('the milter changes the envelope: sender and recipients', async () => {
    const out = await session(server.port, ['r@example.com'], message('redirect-me now'));
    assert.match(out.at(-1)!, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(() => sink.messages.some((x) => x.recipients.includes('redirected@example.net')), 15000);
    const m = sink.messages.find((x) => x.recipients.includes('redirected@example.net'))!;
    assert.deepEqual(m.recipients, ['redirected@example.net']);
    assert.equal(m.sender, 'changed-sender@example.org');
    // The ESMTP arguments of SMFI_CHGFROM (RET=) and SMFI_ADDRCPT_PAR (NOTIFY=) were kept.
    assert.match(m.mailParams ?? '', /\bRET=HDRS\b/);
    assert.match(m.rcptParams?.[0] ?? '', /\bNOTIFY=NEVER\b/);
  });

  test('an unknown command goes to the milter (UNKNOWN event): its reply replaces "500 5.5.2"', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd('XMILTERTEST something')).line, '550 5.5.1 unknown command refused by test milter');
      assert.equal((await smtp.cmd('XOTHER')).line, '500 5.5.2 Error: command not recognized');
      assert.equal((await smtp.cmd('NOOP')).line, '250 2.0.0 Ok');
    } finally {
      smtp.close();
    }
    await server.waitForLog(/NOQUEUE: milter-reject: UNKNOWN from localhost\[127\.0\.0\.1\]: 550 5\.5\.1 unknown command refused by test milter;/, 5000);
  });

  test('milter_header_checks: a header the milter produced matches HOLD; the message is held, logged as cleanup_milter.c logs it (milter-header-hold)', async () => {
    const out = await session(server.port, ['r@example.com'], message('hold-by-checks'));
    const qid = out.at(-1)!.replace(/^250 2\.0\.0 Ok: queued as /, '');
    await server.waitForLog(new RegExp(`${qid}: milter-header-hold: header Subject: changed by milter: hold-by-checks from localhost\\[127\\.0\\.0\\.1\\]; from=<s@example\\.org> to=<r@example\\.com> proto=ESMTP helo=<client\\.test>: held by milter_header_checks`), 5000);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(!sink.messages.some((x) => x.data.toString('latin1').includes('holdbychecks@client.test')), 'held, not relayed');
  });

  test('a quarantined message is accepted and held, logged as milter-hold', async () => {
    const out = await session(server.port, ['r@example.com'], message('hold-me please'));
    const qid = out.at(-1)!.replace(/^250 2\.0\.0 Ok: queued as /, '');
    await server.waitForLog(new RegExp(`${qid}: milter-hold: END-OF-MESSAGE from localhost\\[127\\.0\\.0\\.1\\]: milter triggers HOLD action`), 5000);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(!sink.messages.some((x) => x.data.toString('latin1').includes('holdmeplease@client.test')), 'held, not relayed');
  });
});

describe('milter_default_action when the milter is down', () => {
  // One server; a second smtpd service per action (master.cf -o), so the first answers 220 to the readiness probe.
  const actions = ['tempfail', 'reject', 'shutdown', 'accept', 'quarantine'] as const;
  let server: TestServer;
  let sink: SmtpSink;
  let closed: number;
  const ports = new Map<string, number>();
  before(async () => {
    closed = await freePort();
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    const extra: string[] = [];
    for (const a of actions) {
      const p = await freePort();
      ports.set(a, p);
      extra.push(`127.0.0.1:${p} inet n - n - 1 smtpd\n  -o smtpd_milters=inet:127.0.0.1:${closed}\n  -o milter_default_action=${a}`);
    }
    server = await startServer({ sinkPort, masterCfExtra: extra.join('\n') });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  for (const [action, expect] of [
    ['tempfail', '451 4.7.1 Service unavailable - try again later'],
    ['reject', '550 5.5.0 Service unavailable'],
  ] as const) {
    test(`${action}: Postfix's reply (${action === 'reject' ? 'a 554 greeting' : `"${expect}" at MAIL`}), with its warnings`, async () => {
      if (action === 'reject') {
        // Postfix: a 5xx at CONNECT answers the greeting "554 <myhostname> ESMTP not accepting connections".
        const { smtp, greeting } = await SmtpDialogue.connect(ports.get(action)!);
        smtp.close();
        assert.match(greeting.line, /^554 \S+ ESMTP not accepting connections$/);
      } else {
        const out = await session(ports.get(action)!, ['r@example.com'], null);
        assert.match(out[0]!, /^220 /);
        assert.equal(out[2], expect);
        await server.waitForLog(/milter-reject: MAIL from localhost\[127\.0\.0\.1\]: 451 4\.7\.1 Service unavailable - try again later; from=<s@example\.org> proto=ESMTP helo=<client\.test>/, 5000);
      }
      await server.waitForLog(new RegExp(`warning: connect to Milter service inet:127\\.0\\.0\\.1:${closed}: `), 5000);
    });
  }
  test('shutdown (the Postfix 3.8.15+ default): the greeting is 421 and the session ends', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(ports.get('shutdown')!);
    smtp.close();
    assert.match(greeting.line, /^421 \S+ Service unavailable - try again later$/);
  });
  test('accept: mail goes through unfiltered', async () => {
    const out = await session(ports.get('accept')!, ['r@example.com'], message('accepted anyway'));
    assert.match(out.at(-1)!, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor((s) => s.messages >= 1, 15000);
  });
  test('quarantine: mail is accepted and held', async () => {
    const out = await session(ports.get('quarantine')!, ['r@example.com'], message('quarantined anyway'));
    const qid = out.at(-1)!.replace(/^250 2\.0\.0 Ok: queued as /, '');
    await server.waitForLog(new RegExp(`${qid}: milter-hold: END-OF-MESSAGE`), 5000);
  });
});

describe('smtpd_milters with OpenDKIM: mail from a trusted client leaves signed, and the signature verifies', { skip: NEEDS_OPENDKIM }, () => {
  let dir: string;
  let dkim: ChildProcess;
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-dkim-'));
    let port: number;
    ({ port, child: dkim } = await startOpenDkim(dir));
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({ sinkPort, mainCf: { smtpd_milters: `inet:127.0.0.1:${port}` } });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    dkim?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the message at the next hop carries a DKIM-Signature that python3-dkim verifies against the generated key', async () => {
    const msg = rfc822({ From: 'Sender <s@example.org>', To: '<r@example.com>', Subject: 'signed by opendkim', Date: 'Thu, 03 Dec 2026 09:00:00 +0000', 'Message-ID': '<dkim-1@client.test>' }, 'a body to sign\n');
    const out = await session(server.port, ['r@example.com'], msg);
    assert.match(out.at(-1)!, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor((s) => s.messages >= 1, 15000);
    const data = sink.messages[0]!.data;
    assert.match(data.toString('latin1'), /\r\nDKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/simple; d=example\.org;/);
    // The check is not vacuous: a changed body fails it.
    assert.equal(verifyDkim(dir, data, 'a body to sign'), 'True\nFalse');
  });
});
