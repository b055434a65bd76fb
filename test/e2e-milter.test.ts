/**
 * End to end, smtpd_milters against a real libmilter filter: a tiny milter written with Debian's
 * python3-milter (pymilter, on libmilter) runs as a child process on a loopback port; a real
 * server (child process) consults it and relays to the project's SmtpSink. The milter rejects a
 * recipient (its own reply text), adds a header carrying the queue ID ({i} at end of message),
 * changes the Subject, swaps a recipient, and rejects or quarantines a message by its Subject.
 * milter_default_action is checked with the milter down.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, queuedId, rfc822, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const PYTHON = '/usr/bin/python3';
const HAVE_PYMILTER = existsSync(PYTHON) && existsSync('/usr/lib/python3/dist-packages/Milter/__init__.py');

const MILTER_PY = `
import sys, Milter

class TestMilter(Milter.Base):
    def __init__(self):
        self.subject = ''
        self.rcpts = []

    def envrcpt(self, to, *params):
        if to.strip('<>').startswith('milter-reject'):
            self.setreply('550', '5.7.1', 'Recipient refused by test milter')
            return Milter.REJECT
        if to.strip('<>').startswith('milter-discard'):
            return Milter.DISCARD
        if to.strip('<>').startswith('milter-multi'):
            self.setreply('450', '4.7.1', 'first line', 'second line')
            return Milter.TEMPFAIL
        self.rcpts.append(to)
        return Milter.CONTINUE

    def header(self, name, value):
        if name.lower() == 'subject':
            self.subject = value
        return Milter.CONTINUE

    def eom(self):
        if 'reject-me' in self.subject:
            self.setreply('550', '5.7.1', 'Message refused by test milter')
            return Milter.REJECT
        if 'hold-me' in self.subject:
            self.quarantine('held by test milter')
        if 'redirect-me' in self.subject:
            for r in self.rcpts:
                self.delrcpt(r)
            self.addrcpt('<redirected@example.net>')
            self.chgfrom('<changed-sender@example.org>')
        self.addheader('X-Test-Milter', 'queue-id=' + (self.getsymval('i') or 'none'))
        self.chgheader('Subject', 1, 'changed by milter: ' + self.subject)
        return Milter.ACCEPT

Milter.factory = TestMilter
Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM | Milter.QUARANTINE)
Milter.runmilter('postactor-test', sys.argv[1], 30)
`;

async function waitListening(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`milter did not listen on ${port} within ${timeoutMs} ms`);
}

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

describe('smtpd_milters with a real libmilter filter (python3-milter)', { skip: !HAVE_PYMILTER && 'python3-milter is not installed' }, () => {
  let dir: string;
  let milter: ChildProcess;
  let milterPort: number;
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-milter-'));
    writeFileSync(join(dir, 'test_filter.py'), MILTER_PY);
    milterPort = await freePort();
    milter = spawn(PYTHON, [join(dir, 'test_filter.py'), `inet:${milterPort}@127.0.0.1`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let milterErr = '';
    milter.stderr!.on('data', (d: Buffer) => { milterErr += d.toString(); });
    await waitListening(milterPort, 10000).catch((e: Error) => { throw new Error(`${e.message}: ${milterErr}`); });
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({ sinkPort, mainCf: { smtpd_milters: `inet:127.0.0.1:${milterPort}`, smtpd_milter_maps: 'inline:{127.0.0.2=DISABLE}' } });
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

  test('the milter changes the envelope: sender and recipients', async () => {
    const out = await session(server.port, ['r@example.com'], message('redirect-me now'));
    assert.match(out.at(-1)!, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(() => sink.messages.some((x) => x.recipients.includes('redirected@example.net')), 15000);
    const m = sink.messages.find((x) => x.recipients.includes('redirected@example.net'))!;
    assert.deepEqual(m.recipients, ['redirected@example.net']);
    assert.equal(m.sender, 'changed-sender@example.org');
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

const OPENDKIM = '/usr/sbin/opendkim';
const GENKEY = '/usr/sbin/opendkim-genkey';
const HAVE_OPENDKIM = existsSync(OPENDKIM) && existsSync(GENKEY) && existsSync('/usr/lib/python3/dist-packages/dkim/__init__.py');

describe('smtpd_milters with OpenDKIM: mail from a trusted client leaves signed, and the signature verifies', { skip: !HAVE_OPENDKIM && 'opendkim, opendkim-tools or python3-dkim is not installed' }, () => {
  let dir: string;
  let dkim: ChildProcess;
  let sink: SmtpSink;
  let server: TestServer;
  let dkimErr = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-dkim-'));
    const gen = spawnSync(GENKEY, ['-D', dir, '-d', 'example.org', '-s', 'test'], { encoding: 'utf8' });
    assert.equal(gen.status, 0, gen.stderr);
    const port = await freePort();
    writeFileSync(join(dir, 'opendkim.conf'), [
      'Mode sv', 'Domain example.org', 'Selector test', `KeyFile ${dir}/test.private`,
      `Socket inet:${port}@127.0.0.1`, 'InternalHosts 127.0.0.1', 'Syslog no', 'RequireSafeKeys false',
      `PidFile ${dir}/opendkim.pid`, 'Canonicalization relaxed/simple', '',
    ].join('\n'));
    dkim = spawn(OPENDKIM, ['-f', '-x', join(dir, 'opendkim.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    dkim.stderr!.on('data', (d: Buffer) => { dkimErr += d.toString(); });
    await waitListening(port, 10000).catch((e: Error) => { throw new Error(`${e.message}: ${dkimErr}`); });
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
    // The public key from opendkim-genkey's TXT record, served to dkim.verify by a DNS function.
    const txt = [...readFileSync(join(dir, 'test.txt'), 'utf8').matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
    writeFileSync(join(dir, 'message.eml'), data);
    const verify = spawnSync(PYTHON, ['-c', [
      'import sys, dkim',
      `txt = ${JSON.stringify(txt)}.encode()`,
      'msg = open(sys.argv[1], "rb").read()',
      'print(dkim.verify(msg, dnsfunc=lambda name, timeout=5: txt))',
      // The check is not vacuous: a changed body fails it.
      'print(dkim.verify(msg.replace(b"a body to sign", b"a body changed"), dnsfunc=lambda name, timeout=5: txt))',
    ].join('\n'), join(dir, 'message.eml')], { encoding: 'utf8' });
    assert.equal(verify.stdout.trim(), 'True\nFalse', verify.stderr);
  });
});
