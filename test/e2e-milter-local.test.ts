/**
 * non_smtpd_milters end to end: mail submitted with sendmail(1) (maildrop → pickup → cleanup)
 * goes through real milters, as Postfix's cleanup sends it: an emulated ESMTP session from
 * localhost [127.0.0.1], then the message with the headers cleanup added. The pymilter test
 * filter edits it and OpenDKIM then signs it (python3-dkim verifies the signature at the next
 * hop); a message the filter rejects is returned to its sender; a temporary failure leaves the
 * submission in the maildrop to be tried again.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { NEEDS_OPENDKIM, NEEDS_PYMILTER, TEST_MILTER_MACROS, startOpenDkim, startTestMilter, verifyDkim } from './helpers/milter.js';
import { REPO_ROOT, startServer, type TestServer } from './helpers/server.js';

const SENDMAIL = join(REPO_ROOT, 'bin', 'sendmail');

function sendmail(args: string[], input: string): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(SENDMAIL, args, { cwd: REPO_ROOT, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (status) => resolve({ status, stderr }));
    c.stdin.end(input);
  });
}

const skip = NEEDS_PYMILTER || NEEDS_OPENDKIM;

describe('non_smtpd_milters: sendmail submissions through the pymilter filter and OpenDKIM', { skip }, () => {
  let dir: string;
  let children: ChildProcess[] = [];
  let sink: SmtpSink;
  let server: TestServer;
  const tagged = (tag: string): SinkMessage | undefined => sink.messages.find((m) => m.data.toString('latin1').includes(`X-Tag: ${tag}\r\n`));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-milter-local-'));
    const filter = await startTestMilter(dir);
    const dkim = await startOpenDkim(dir);
    children = [filter.child, dkim.child];
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      masterCfExtra: 'pickup unix n - n 60 1 pickup',
      // The filter first, so OpenDKIM signs the message as the filter left it.
      mainCf: { non_smtpd_milters: `inet:127.0.0.1:${filter.port}, inet:127.0.0.1:${dkim.port}`, ...TEST_MILTER_MACROS },
    });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    for (const c of children) c.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a submission leaves edited by the filter (queue ID, localhost macros, defaults) and signed by OpenDKIM; the signature verifies', async () => {
    const r = await sendmail(['-C', server.dir, '-f', 's@example.org', 'r@example.com'],
      'From: Sender <s@example.org>\nTo: r@example.com\nSubject: local hello\nX-Tag: signed\n\na local body to sign\n');
    assert.equal(r.status, 0, r.stderr);
    await sink.waitFor(() => tagged('signed') !== undefined, 20000);
    const m = tagged('signed')!;
    const text = m.data.toString('latin1');
    const qid = /\r\nX-Test-Milter: queue-id=([0-9A-Za-z]+)\r\n/.exec(text)?.[1];
    assert.ok(qid && qid !== 'none', text);
    // The same queue ID pickup logged for this submission.
    await server.waitForLog(new RegExp(`${qid}: uid=\\d+ from=<s@example\\.org>`), 5000);
    // Postfix's emulated client: localhost [127.0.0.1].
    assert.match(text, /\r\nX-Test-Client: 127\.0\.0\.1 localhost\r\n/);
    assert.match(text, /\r\nX-Test-Default: from macro defaults\r\n/);
    assert.match(text, /\r\nSubject: changed by milter: local hello\r\n/);
    // cleanup's own headers were there before the milters saw the message: the Date cleanup added is signed.
    const sig = /(?:^|\r\n)DKIM-Signature: ([^]*?)\r\n(?![ \t])/.exec(text)?.[1] ?? '';
    assert.match(sig, /d=example\.org/);
    assert.match(sig.replace(/\s+/g, ''), /h=[^;]*\bDate\b/);
    assert.equal(verifyDkim(dir, m.data, 'a local body to sign'), 'True\nFalse');
  });

  test('a submission the filter rejects is returned to its sender with the filter\'s reply, logged as milter-reject', async () => {
    const r = await sendmail(['-C', server.dir, '-f', 'bounce-me@example.org', 'r@example.com'],
      'From: bounce-me@example.org\nSubject: please reject-me\nX-Tag: rejected\n\nno\n');
    assert.equal(r.status, 0, r.stderr);
    const line = await server.waitForLog(/milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 5\.7\.1 Message refused by test milter; from=<bounce-me@example\.org> to=<r@example\.com>/, 20000);
    const qid = line.match(/ ([0-9A-Za-z]+): milter-reject/)![1]!;
    await server.waitForLog(new RegExp(`${qid}: to=<r@example\\.com>, relay=none, .*dsn=5\\.7\\.1, status=bounced \\(Message refused by test milter\\)`), 20000);
    // The notice reaches the sender (at the sink, via relayhost); the message itself never does.
    await sink.waitFor(() => sink.messages.some((m) => m.recipients.includes('bounce-me@example.org')), 20000);
    const notice = sink.messages.find((m) => m.recipients.includes('bounce-me@example.org'))!;
    assert.equal(notice.sender, '');
    assert.match(notice.data.toString('latin1'), /Message refused by test milter/);
    assert.ok(!sink.messages.some((m) => m.recipients.includes('r@example.com') && m.data.toString('latin1').includes('X-Tag: rejected\r\n')));
  });

  test('a temporary failure leaves the submission in the maildrop (tried again later), nothing is queued', async () => {
    const r = await sendmail(['-C', server.dir, '-f', 's@example.org', 'r@example.com'],
      'From: s@example.org\nSubject: tempfail-me\nX-Tag: tempfail\n\nlater\n');
    assert.equal(r.status, 0, r.stderr);
    await server.waitForLog(/milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 4\.7\.1 Try again later, says the test milter/, 20000);
    await server.waitForLog(/pickup.*: error writing .*451 4\.7\.1 Try again later, says the test milter/, 5000);
    assert.equal(readdirSync(join(server.queueDir, 'maildrop')).length, 1);
    assert.equal(tagged('tempfail'), undefined);
  });
});
