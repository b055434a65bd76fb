/**
 * Local submission end to end, as with Postfix: sendmail(1) → maildrop → pickup → cleanup →
 * qmgr → smtp → the next hop (the project's SmtpSink). Each test is named for the Postfix
 * behaviour it pins. The shim runs through bin/sendmail (the shell wrapper, as a symlink would).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { needs } from './helpers/peers.js';
import assert from 'node:assert/strict';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { MessageCollector, extractRecipients } from '../src/maildrop/input.js';
import { parseAddressList } from '../src/maildrop/address.js';
import { REPO_ROOT, startServer, type TestServer } from './helpers/server.js';
import { parseDsn } from './helpers/dsn.js';

const SENDMAIL = join(REPO_ROOT, 'bin', 'sendmail');
const MYHOSTNAME = 'mx.postactor.test'; // the helper's myhostname
/** $myorigin: not a local domain, so qualified local names still go to the sink (relayhost). */
const ORIGIN = 'origin.example';
const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const LOGIN = userInfo().username;

interface Run { status: number | null; stdout: string; stderr: string }

function sendmail(args: string[], input: string, opts: { cwd?: string; env?: Record<string, string>; bin?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(opts.bin ?? SENDMAIL, args, { cwd: opts.cwd ?? REPO_ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (status) => resolve({ status, stdout, stderr }));
    c.stdin.on('error', () => { /* sendmail may exit before reading everything */ });
    c.stdin.end(input);
  });
}

async function waitFor<T>(what: () => T | undefined, timeoutMs: number, describeIt: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = what();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${describeIt}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function headerSection(m: SinkMessage): string {
  const text = m.data.toString('utf8');
  return text.slice(0, text.indexOf('\r\n\r\n') + 2);
}

function body(m: SinkMessage): string {
  const text = m.data.toString('utf8');
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

describe('sendmail(1) → maildrop → pickup (Postfix local submission)', () => {
  let sink: SmtpSink;
  let server: TestServer;
  /** Messages the sink got whose X-Test header is tag. */
  const byTag = (tag: string) => sink.messages.filter((m) => m.data.toString('latin1').includes(`X-Test: ${tag}\r\n`));
  const arrived = (tag: string, count = 1, timeoutMs = 15_000) =>
    waitFor(() => (byTag(tag).length >= count ? byTag(tag) : undefined), timeoutMs, `${count} message(s) tagged ${tag} at the sink`);

  before(async () => {
    sink = new SmtpSink({ keepMessages: true, rcptReply: (r) => (r.startsWith('reject-') ? `550 5.1.1 <${r}>: Recipient address rejected: User unknown` : null) });
    const sinkPort = await sink.listen(0);
    server = await startServer({ sinkPort, masterCfExtra: 'pickup unix n - n 60 1 pickup', mainCf: { myorigin: ORIGIN } });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('sendmail -t -i: recipients from To/Cc/Bcc, Bcc header removed, sender = login name @$myorigin, Received "from userid"', async () => {
    const msg = [
      'From: Alice <alice@example.org>',
      'To: To One <to1@example.com>, to2@example.com',
      'Cc: "Cc, Person" <cc@example.net>',
      'Bcc: hidden@example.net',
      'Subject: -t test',
      'X-Test: t-flag',
      '',
      'line one',
      '.',
      'after the dot (kept with -i)',
      '',
    ].join('\n');
    const r = await sendmail(['-C', server.dir, '-t', '-i'], msg);
    assert.equal(r.status, 0, r.stderr);
    const got = await arrived('t-flag');
    const rcpts = got.flatMap((m) => m.recipients).sort();
    assert.deepEqual(rcpts, ['cc@example.net', 'hidden@example.net', 'to1@example.com', 'to2@example.com']);
    for (const m of got) {
      assert.equal(m.sender, `${LOGIN}@${ORIGIN}`);
      const h = headerSection(m);
      assert.doesNotMatch(h, /^Bcc:/im, 'Bcc removed');
      assert.match(h, /^To: To One <to1@example\.com>, to2@example\.com\r\n/m);
      assert.match(h, new RegExp(`^Received: by ${re(MYHOSTNAME)} \\(Postactor, from userid ${process.getuid!()}\\)\r\n\tid \\S+; `));
      assert.match(h, /^From: Alice <alice@example\.org>\r\n/m, 'an existing From is kept');
      assert.match(h, /^Message-Id: </m);
      assert.match(h, /^Date: /m);
      assert.equal(body(m), 'line one\r\n.\r\nafter the dot (kept with -i)\r\n');
    }
    const line = await server.waitForLog(/pickup\[\d+\]: \S+: uid=\d+ from=</, 5000);
    assert.match(line, new RegExp(`uid=${process.getuid!()} from=<${LOGIN}>`), 'pickup logs the sender as submitted');
  });

  test('sendmail -f sender rcpt: envelope as given; a lone "." ends input without -i, not with -i/-oi', async () => {
    const msg = (tag: string) => `Subject: dot\nX-Test: ${tag}\n\nbefore\n.\nafter\n`;
    const a = await sendmail(['-C', server.dir, '-f', 's@x.example', 'r@y.example'], msg('dot-ends'));
    const b = await sendmail(['-C', server.dir, '-fs@x.example', '-oi', 'r@y.example'], msg('dot-kept'));
    assert.equal(a.status, 0, a.stderr);
    assert.equal(b.status, 0, b.stderr);
    const [ma] = await arrived('dot-ends');
    const [mb] = await arrived('dot-kept');
    for (const m of [ma!, mb!]) {
      assert.equal(m.sender, 's@x.example');
      assert.deepEqual(m.recipients, ['r@y.example']);
      assert.match(headerSection(m), /^From: (.+ <s@x\.example>|s@x\.example)\r\n/m, 'missing From: = the envelope sender (with the GECOS full name, if any)');
    }
    assert.equal(body(ma!), 'before\r\n');
    assert.equal(body(mb!), 'before\r\n.\r\nafter\r\n');
  });

  test('sendmail -f with a newline cannot smuggle another sender: the first address, and Postfix\'s warning (as Debian\'s sendmail does)', async () => {
    const r = await sendmail(['-C', server.dir, '-f', 'me@x.example\nRCPT TO:<x@evil.example>', 'r@y.example'], 'Subject: smuggle\nX-Test: smuggle\n\nhi\n');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: -f option specified malformed sender: me@x\.example\?RCPT TO:<x@evil\.example>/);
    const [m] = await arrived('smuggle');
    assert.equal(m!.sender, 'me@x.example');
    assert.deepEqual(m!.recipients, ['r@y.example']);
  });

  test('sendmail -F "full name": a missing From: header gets "phrase <sender>" (hfrom_format=standard); unqualified addresses get @$myorigin', async () => {
    const r1 = await sendmail(['-C', server.dir, '-F', 'Joe Public', '-f', 'joe', 'localuser'], 'Subject: F\nX-Test: full-name\n\nhi\n');
    const r2 = await sendmail(['-C', server.dir, '-F', 'Joe Q. Public', '-f', 'joe', 'rcpt@example.com'], 'Subject: F\nX-Test: full-name-special\n\nhi\n');
    assert.equal(r1.status, 0, r1.stderr);
    assert.equal(r2.status, 0, r2.stderr);
    const [m1] = await arrived('full-name');
    const [m2] = await arrived('full-name-special');
    assert.equal(m1!.sender, `joe@${ORIGIN}`);
    assert.deepEqual(m1!.recipients, [`localuser@${ORIGIN}`]);
    assert.match(headerSection(m1!), new RegExp(`^From: Joe Public <joe@${re(ORIGIN)}>\r\n`, 'm'));
    assert.match(headerSection(m2!), new RegExp(`^From: "Joe Q\\. Public" <joe@${re(ORIGIN)}>\r\n`, 'm'), 'a phrase with specials is quoted');
    assert.doesNotMatch(headerSection(m1!), /undisclosed-recipients/, 'no To: is added (undisclosed_recipients_header is empty since Postfix 2.8)');
    // As Postfix logs a local submission: the qualified recipient, and the original as given
    // (orig_to=<localuser>); the next hop's ORCPT is the qualified address (cleanup_addr_recipient).
    await server.waitForLog(new RegExp(`: to=<localuser@${re(ORIGIN)}>, orig_to=<localuser>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:\\d+, .*status=sent `), 10_000);
    assert.deepEqual(m1!.rcptParams, [`ORCPT=rfc822;localuser@${ORIGIN}`]);
    assert.ok(!server.logLines().some((l) => l.includes('to=<rcpt@example.com>, orig_to=')), 'a qualified recipient has no orig_to');
  });

  test('submission while the server is down: sendmail only writes to maildrop; pickup drains it on start', async () => {
    await server.kill('SIGTERM');
    const r = await sendmail(['-C', server.dir, 'down@example.com'], 'Subject: while down\nX-Test: while-down\n\nqueued while stopped\n');
    assert.equal(r.status, 0, r.stderr);
    const files = readdirSync(join(server.queueDir, 'maildrop')).filter((n) => !n.startsWith('.'));
    assert.equal(files.length, 1, 'one complete file in maildrop');
    await server.restart();
    const [m] = await arrived('while-down');
    assert.deepEqual(m!.recipients, ['down@example.com']);
    await waitFor(() => (readdirSync(join(server.queueDir, 'maildrop')).length === 0 ? true : undefined), 5000, 'maildrop emptied');
  });

  test('usage errors exit EX_USAGE (64): unknown flag; no recipients (command line or -t); recipients with -bp', async () => {
    const bad = await sendmail(['-C', server.dir, '-k', 'x@y'], '');
    assert.equal(bad.status, 64);
    assert.match(bad.stderr, /sendmail: fatal: invalid option -- 'k'/);
    const none = await sendmail(['-C', server.dir], 'Subject: x\n\nbody\n');
    assert.equal(none.status, 64);
    assert.match(none.stderr, /Recipient addresses must be specified on the command line or via the -t option/);
    const noneT = await sendmail(['-C', server.dir, '-t'], 'Subject: x\n\nbody\n');
    assert.equal(noneT.status, 64);
    assert.match(noneT.stderr, /No recipient addresses found in message header/);
    const bp = await sendmail(['-C', server.dir, '-bp', 'x@y'], '');
    assert.equal(bp.status, 64);
    const t = await sendmail(['-C', server.dir, '-bp', '-t'], '');
    assert.equal(t.status, 64);
    assert.match(t.stderr, /-t can be used only in delivery mode/);
  });

  test('legacy flags are accepted and ignored', async () => {
    const trafficLog = join(server.dir, 'traffic.log');
    const legacy = await sendmail(['-C', server.dir, '-X', trafficLog, '-oem', '-o7', '-o8', '-om', '-h', '17', '-U', '-B', '8BITMIME', '-L', 'label', '-m', '-G', '-N', 'success,delay', '-R', 'hdrs', '-V', 'env-1', 'legacy@example.com'],
      'Subject: legacy\nX-Test: legacy\nFrom: me@example.org\nTo: legacy@example.com\n\nok\n');
    assert.equal(legacy.status, 0, legacy.stderr);
    assert.equal(legacy.stderr, '');
    await arrived('legacy');
    assert.equal(existsSync(trafficLog), false, '-X log_file: ignored (Postfix: use debug_peer_list instead)');
    const verp = await sendmail(['-C', server.dir, '-X', 'V', 'x@example.com'], '');
    assert.equal(verp.status, 69);
    assert.match(verp.stderr, /^sendmail: fatal: not supported: -XV \(VERP\)\n$/);
  });

  test('sendmail -bv: nothing is delivered; the sender gets a "Mail Delivery Status Report" with each recipient deliverable or not', async () => {
    const bv = await sendmail(['-C', server.dir, '-f', 'verifier@example.org', '-bv', 'ok-bv@example.com', 'reject-bv@example.com'], '');
    assert.equal(bv.status, 0, bv.stderr);
    const report = await waitFor(() => sink.messages.find((m) => m.recipients.includes('verifier@example.org') && m.data.includes('Mail Delivery Status Report')), 15_000, 'the -bv report');
    const dsn = await parseDsn(report.data);
    assert.equal(dsn.subject, 'Mail Delivery Status Report');
    assert.match(dsn.text, /Enclosed is the mail delivery report that you requested/);
    const byRcpt = new Map(dsn.recipients.map((r) => [r.get('final-recipient'), r]));
    assert.equal(byRcpt.get('rfc822; ok-bv@example.com')?.get('action'), 'deliverable');
    assert.equal(byRcpt.get('rfc822; ok-bv@example.com')?.get('status'), '2.1.5');
    assert.equal(byRcpt.get('rfc822; reject-bv@example.com')?.get('action'), 'undeliverable');
    assert.equal(byRcpt.get('rfc822; reject-bv@example.com')?.get('status'), '5.1.1');
    assert.equal(sink.messages.filter((m) => m.recipients.includes('ok-bv@example.com')).length, 0, '-bv delivers nothing');
    assert.ok(server.logLines().some((l) => /: to=<ok-bv@example\.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=deliverable \(250 2\.1\.5 Ok\)$/.test(l)), 'logged as Postfix logs a probe');
    assert.equal(sink.messages.filter((m) => m.recipients.includes('verifier@example.org') && m.data.includes('Undelivered Mail')).length, 0, 'and bounces nothing');
  });

  test('sendmail -v: the message is delivered and the sender gets a report of that first attempt', async () => {
    const v = await sendmail(['-C', server.dir, '-f', 'verbose@example.org', '-v', 'ok-v@example.com'], 'Subject: verbose\nX-Test: verbose\n\nhello\n');
    assert.equal(v.status, 0, v.stderr);
    await arrived('verbose');
    const report = await waitFor(() => sink.messages.find((m) => m.recipients.includes('verbose@example.org') && m.data.includes('Mail Delivery Status Report')), 15_000, 'the -v report');
    const r = (await parseDsn(report.data)).recipients[0]!;
    assert.equal(r.get('final-recipient'), 'rfc822; ok-v@example.com');
    assert.equal(r.get('action'), 'relayed');
    assert.equal(r.get('status'), '2.0.0');
  });

  test('sendmail -bs: a stand-alone SMTP dialogue on stdin/stdout queues through maildrop', async () => {
    const dialogue = [
      'EHLO client.local',
      'ETRN example.com',
      'MAIL FROM:<bs@example.org>',
      'RCPT TO:<bs1@example.com>',
      'RCPT TO:<bs2@example.com>',
      'DATA',
      'Subject: -bs',
      'X-Test: bs-mode',
      '',
      '..leading dot',
      '.',
      'QUIT',
      '',
    ].join('\r\n');
    const r = await sendmail(['-C', server.dir, '-bs'], dialogue);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\r\n');
    assert.match(lines[0]!, new RegExp(`^220 ${re(MYHOSTNAME)} ESMTP Postactor$`));
    assert.ok(lines.includes('458 Unable to queue messages'), 'ETRN in stand-alone mode, as Postfix\'s smtpd -S');
    assert.ok(lines.includes('250 2.1.0 Ok'));
    assert.equal(lines.filter((l) => l === '250 2.1.5 Ok').length, 2);
    assert.ok(lines.includes('354 End data with <CR><LF>.<CR><LF>'));
    assert.ok(lines.some((l) => /^250 2\.0\.0 Ok: queued as \S+$/.test(l)));
    assert.ok(lines.includes('221 2.0.0 Bye'));
    const got = await arrived('bs-mode');
    assert.deepEqual(got.flatMap((m) => m.recipients).sort(), ['bs1@example.com', 'bs2@example.com']);
    assert.equal(body(got[0]!), '.leading dot\r\n');
    assert.equal(got[0]!.sender, 'bs@example.org');
  });

  test('installed elsewhere as a symlink named sendmail, run from another working directory by another program', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postactor-sendmail-link-'));
    try {
      const link = join(dir, 'sendmail');
      symlinkSync(SENDMAIL, link);
      const r = await sendmail(['-t'], 'To: linked@example.com\nSubject: link\nX-Test: symlink\n\nvia a symlink\n', { bin: link, cwd: '/', env: { MAIL_CONFIG: server.dir } });
      assert.equal(r.status, 0, r.stderr);
      const [m] = await arrived('symlink');
      assert.deepEqual(m!.recipients, ['linked@example.com']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("pickup never deletes a file it does not recognise (here Postfix's record format): it moves it to maildrop-quarantine with a warning, and keeps picking up", async () => {
    // A Postfix maildrop file as postdrop writes it: records of type, length, data.
    const rec = (type: string, data: string) => Buffer.concat([Buffer.from([type.charCodeAt(0), data.length]), Buffer.from(data)]);
    const postfixFile = Buffer.concat([rec('T', '1764720000 0'), rec('A', 'rewrite_context=local'), rec('S', 'root'), rec('R', 'root'), rec('M', ''), rec('N', 'Subject: postfix'), rec('N', ''), rec('N', 'body'), rec('X', ''), rec('E', '')]);
    const path = join(server.queueDir, 'maildrop', 'BADFILE0000');
    writeFileSync(path, postfixFile, { mode: 0o600 });
    const moved = join(server.queueDir, 'maildrop-quarantine', 'BADFILE0000');
    await server.waitForLog(new RegExp(`pickup\\[\\d+\\]: warning: uid=\\d+: malformed maildrop file ${re(path)}: bad magic line -- moved to ${re(moved)}$`), 70_000);
    assert.equal(existsSync(path), false, 'gone from the maildrop');
    assert.deepEqual(readFileSync(moved), postfixFile, 'kept byte for byte');
    // A second foreign file of the same name does not overwrite the first.
    writeFileSync(path, 'not a maildrop file\n', { mode: 0o600 });
    await server.waitForLog(new RegExp(`malformed maildrop file ${re(path)}: bad magic line -- moved to ${re(moved)}\\.1$`), 70_000);
    assert.deepEqual(readFileSync(moved), postfixFile);
    const r = await sendmail(['-C', server.dir, 'after-foreign@example.com'], 'Subject: after\nX-Test: after-foreign\n\nstill picked up\n');
    assert.equal(r.status, 0, r.stderr);
    await arrived('after-foreign', 1, 70_000);
  });

  test('sendmail -q flushes the queue through the server (postactor flush)', async () => {
    const r = await sendmail(['-C', server.dir, '-q'], '');
    assert.equal(r.status, 0, r.stderr);
    const q30 = await sendmail(['-C', server.dir, '-q30m'], '');
    assert.equal(q30.status, 0, 'an interval is ignored');
  });

  test('bsd-mailx: `mail -s subject rcpt` with the shim as its sendmail', { skip: needs('/usr/bin/bsd-mailx', 'bsd-mailx, a real mail client') }, async () => {
    const home = mkdtempSync(join(tmpdir(), 'postactor-mailx-'));
    try {
      writeFileSync(join(home, '.mailrc'), `set sendmail=${SENDMAIL}\n`);
      const r = spawnSync('/usr/bin/bsd-mailx', ['-s', 'mailx subject', '-a', 'X-Test: mailx', 'mailx@example.com'], {
        input: 'sent by bsd-mailx\n', env: { ...process.env, HOME: home, MAIL_CONFIG: server.dir }, cwd: home, timeout: 20_000,
      });
      assert.equal(r.status, 0, r.stderr.toString());
      const [m] = await arrived('mailx', 1, 20_000);
      assert.deepEqual(m!.recipients, ['mailx@example.com']);
      assert.match(headerSection(m!), /^Subject: mailx subject\r\n/m);
      assert.equal(m!.sender, `${LOGIN}@${ORIGIN}`);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('sendmail input rules (unit)', () => {
  test('leading "From " lines are dropped, CRLF becomes LF, a last line without newline is completed', () => {
    const c = new MessageCollector({ dotEnds: true });
    c.feed(Buffer.from('From me Tue Nov 24\r\n>From x\r\nSubject: a\r\n\r\nFrom inside body\r\nlast'));
    c.finish();
    assert.equal(Buffer.concat(c.parts).toString(), 'Subject: a\n\nFrom inside body\nlast\n');
  });

  test('the "." line is found across chunk boundaries', () => {
    const c = new MessageCollector({ dotEnds: true });
    for (const ch of ['a\n', '.', '\r', '\nb\n']) c.feed(Buffer.from(ch));
    assert.equal(c.done, true);
    assert.equal(Buffer.concat(c.parts).toString(), 'a\n');
  });

  test('-t uses Resent-To/Cc/Bcc only when present; groups and comments are parsed', () => {
    assert.deepEqual(extractRecipients(Buffer.from('To: a@x\nResent-To: r@x\nResent-Bcc: list: b@x, (c) "c d"@x;\n\nbody\n')), ['r@x', 'b@x', '"c d"@x']);
    assert.deepEqual(parseAddressList('undisclosed-recipients:;'), []);
    assert.deepEqual(parseAddressList('Name <"joe"@x> (comment), y@z'), ['joe@x', 'y@z']);
    assert.deepEqual(parseAddressList('<@route,@r2:u@h>'), ['u@h']);
  });
});
