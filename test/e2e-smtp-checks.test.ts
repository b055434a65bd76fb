/**
 * smtp_header_checks, smtp_mime_header_checks, smtp_nested_header_checks and smtp_body_checks
 * (header_checks(5), as Postfix's smtp(8) applies them) end to end: a message relayed through a
 * real server to a real sink leaves with the actions applied — per header class of the MIME
 * structure, per body line — and the actions a delivery agent cannot take (REJECT…) logged as
 * unsupported, the line unchanged. The queue keeps the message as it was received (postcat of a
 * copy the sink deferred). A check table that fails defers the delivery with 4.3.0. Side by
 * side with Debian's Postfix (bench/postfix-peer.sh): the same message leaves the same, and the
 * same check lines are logged.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, queuedId, REPO_ROOT, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { sideBySide, type SideBySide } from './helpers/side-by-side.js';
import { needs } from './helpers/peers.js';
import type { MtaHandle } from '../bench/relay/mta.js';

const HEADER_CHECKS = [
  '/^X-Internal:/ IGNORE',
  '/^X-Strip:/ STRIP internal only',
  '/^Subject: please replace/ REPLACE Subject: replaced',
  '/^Organization:/ PREPEND X-Prepended: yes',
  '/^X-Watch:/ WARN seen going out',
  '/^X-Info:/ INFO',
  '/^X-Reject:/ REJECT go away',
  '/^X-Bad-Replace:/ REPLACE no colon here',
  // Header checks see headers only: the same text in the body is a body line.
  '/^X-Body-Lookalike:/ IGNORE',
  '',
].join('\n');

const MIME_HEADER_CHECKS = [
  '/^Content-Description: secret/ IGNORE',
  '/^X-Part-Tag:/ REPLACE X-Part-Tag: replaced',
  '',
].join('\n');

const NESTED_HEADER_CHECKS = [
  '/^Subject: inner/ REPLACE Subject: inner replaced',
  '',
].join('\n');

const BODY_CHECKS = [
  '/^secret body line$/ REPLACE [redacted]',
  '/^drop this line$/ IGNORE',
  '/^defer this line$/ DEFER not here',
  '',
].join('\n');

const MESSAGE = [
  'From: <sender@example.org>',
  'To: <friend@remote.example>',
  'Subject: please replace this',
  'X-Internal: secret',
  'X-Strip: also secret',
  'Organization: Example',
  'X-Watch: hello',
  'X-Info: noted',
  'X-Reject: stays',
  'X-Bad-Replace: stays too',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="b1"',
  '',
  'preamble',
  '--b1',
  'Content-Type: text/plain',
  'Content-Description: secret part',
  'X-Part-Tag: original',
  '',
  'secret body line',
  'drop this line',
  'defer this line',
  'X-Body-Lookalike: kept',
  '--b1',
  'Content-Type: message/rfc822',
  '',
  'Subject: inner one',
  'X-Part-Tag: nested, not a part header',
  '',
  'inner body',
  '--b1--',
  '',
].join('\r\n');

function postcat(dir: string, id: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(join(REPO_ROOT, 'bin', 'postcat'), ['-c', dir, '-q', id], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`postcat: ${stderr}`));
      else resolve(stdout);
    });
  });
}

describe('smtp_*_checks', () => {
  let server: TestServer;
  // later@… is deferred by the sink, so a copy of the message stays in the queue.
  const sink = new SmtpSink({ keepMessages: true, rcptReply: (rcpt) => rcpt.startsWith('later@') ? '450 4.2.0 try again later' : null });

  before(async () => {
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      env: (dir) => {
        writeFileSync(join(dir, 'header_checks'), HEADER_CHECKS);
        writeFileSync(join(dir, 'mime_header_checks'), MIME_HEADER_CHECKS);
        writeFileSync(join(dir, 'nested_header_checks'), NESTED_HEADER_CHECKS);
        writeFileSync(join(dir, 'body_checks'), BODY_CHECKS);
        return {};
      },
      mainCf: {
        smtp_header_checks: 'regexp:${config_directory}/header_checks',
        smtp_mime_header_checks: 'regexp:${config_directory}/mime_header_checks',
        smtp_nested_header_checks: 'regexp:${config_directory}/nested_header_checks',
        smtp_body_checks: 'regexp:${config_directory}/body_checks',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await sink.close();
  });

  test('each header class and body line leaves as its checks say; the queue keeps the original', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['friend@remote.example', 'later@remote.example'], MESSAGE));
    await sink.waitFor(() => sink.messages.length >= 1, 20_000);
    const text = sink.messages[0]!.data.toString('utf8');
    const lines = text.split('\r\n');
    // Primary headers (smtp_header_checks).
    assert.ok(!text.includes('X-Internal'), 'IGNORE deletes the header');
    assert.ok(!text.includes('X-Strip'), 'STRIP deletes the header');
    assert.ok(lines.includes('Subject: replaced'), 'REPLACE');
    assert.ok(!text.includes('please replace'));
    const org = lines.indexOf('Organization: Example');
    assert.ok(org > 0 && lines[org - 1] === 'X-Prepended: yes', 'PREPEND puts its header before the one that matched');
    for (const kept of ['X-Watch: hello', 'X-Info: noted', 'X-Reject: stays', 'X-Bad-Replace: stays too']) assert.ok(lines.includes(kept), kept);
    // The multipart part's headers (smtp_mime_header_checks), the attached message's (nested).
    assert.ok(!text.includes('Content-Description'), 'a MIME header of a part: IGNORE');
    assert.ok(lines.includes('X-Part-Tag: replaced'), 'any header of a multipart part goes through mime_header_checks');
    assert.ok(lines.includes('Subject: inner replaced'), 'smtp_nested_header_checks');
    assert.ok(lines.includes('X-Part-Tag: nested, not a part header'), 'a non-MIME header of an attached message is not a part header');
    // Body lines (smtp_body_checks); a body line that looks like a header is no header.
    assert.ok(lines.includes('[redacted]') && !text.includes('secret body line'));
    assert.ok(!text.includes('drop this line'));
    assert.ok(lines.includes('defer this line') && lines.includes('X-Body-Lookalike: kept'));
    assert.ok(lines.includes('--b1') && lines.includes('--b1--') && lines.includes('inner body'));

    // The log: Postfix's smtp_hbc_logger and hbc_action texts.
    const smtp = `postactor/smtp\\[\\d+\\]: `;
    await server.waitForLog(new RegExp(`${smtp}${id}: warning: header X-Watch: hello: seen going out$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}${id}: info: header X-Info: noted$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}${id}: strip: header X-Strip: also secret: internal only$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}${id}: replace: header Subject: please replace this: Subject: replaced$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}${id}: prepend: header Organization: Example: X-Prepended: yes$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}${id}: replace: header Subject: inner one: Subject: inner replaced$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}${id}: replace: body secret body line: \\[redacted\\]$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}warning: unsupported command in smtp_header_checks map: REJECT go away$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}warning: unsupported command in smtp_body_checks map: DEFER not here$`), 10_000);
    await server.waitForLog(new RegExp(`${smtp}warning: bad REPLACE header text "no colon here" in smtp_header_checks map -- need "headername: headervalue"$`), 10_000);
    assert.ok(!server.logLines().some((l) => l.includes(': ignore: ')), 'IGNORE is not logged');
    await server.waitForLog(new RegExp(`${id}: to=<friend@remote\\.example>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:\\d+, .*status=sent`), 10_000);

    // The deferred copy in the queue is the message as received.
    await server.waitForLog(new RegExp(`${id}: to=<later@remote\\.example>, .*status=deferred`), 10_000);
    const queued = await postcat(server.dir, id);
    for (const original of ['Subject: please replace this', 'X-Internal: secret', 'X-Strip: also secret', 'Content-Description: secret part', 'secret body line', 'drop this line', 'Subject: inner one']) {
      assert.ok(queued.includes(original), `the queue still has "${original}"`);
    }
    assert.ok(!queued.includes('X-Prepended'));
  });
});

describe('smtp_header_checks whose table fails', () => {
  let server: TestServer;
  const sink = new SmtpSink({ keepMessages: true });
  before(async () => {
    const sinkPort = await sink.listen(0);
    // A tcp: table on a port nobody listens on: every lookup fails.
    server = await startServer({ sinkPort, mainCf: { smtp_header_checks: `tcp:127.0.0.1:${await freePort()}` } });
  });
  after(async () => {
    await server?.stop();
    await sink.close();
  });
  test('the delivery is deferred (4.3.0 local data error), with Postfix\'s warning; nothing is delivered unchecked', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['friend@remote.example'], MESSAGE));
    await server.waitForLog(new RegExp(`postactor/smtp\\[\\d+\\]: warning: ${id}: smtp header checks lookup error$`), 20_000);
    const line = await server.waitForLog(new RegExp(`${id}: to=<friend@remote\\.example>, .*status=deferred`), 20_000);
    assert.match(line, new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${server.sinkPort}, .*dsn=4\\.3\\.0, status=deferred \\(local data error while talking to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]\\)$`));
    assert.equal(sink.messages.length, 0);
  });
});

/** The check lines of a maillog (what follows "program[pid]: "), the queue ID made "ID". */
function checkLines(log: string, id: string): string[] {
  const re = /\]: (.*(?:: (?:warning|info|replace|prepend|strip): (?:header|body) |unsupported command in |bad REPLACE header text ).*)$/;
  return log.split('\n').map((l) => re.exec(l)?.[1]).filter((l): l is string => l !== undefined).map((l) => l.split(id).join('ID')).sort();
}

/** The content without the headers that differ between two MTAs by nature (trace, date, ID). */
function comparable(data: Buffer): string {
  const out: string[] = [];
  let skipping = false;
  let inHeaders = true;
  for (const line of data.toString('utf8').split('\r\n')) {
    if (inHeaders && line === '') inHeaders = false;
    if (inHeaders && /^[ \t]/.test(line)) { if (!skipping) out.push(line); continue; }
    skipping = inHeaders && /^(Received|Date|Message-ID):/i.test(line);
    if (!skipping) out.push(line);
  }
  return out.join('\n');
}

describe('smtp_*_checks: Postactor and Postfix side by side', { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
  let tdir: string;
  let postfixSink: SmtpSink;
  let postactorSink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let pair: SideBySide | undefined;

  before(async () => {
    tdir = mkdtempSync(join(tmpdir(), 'smtp-checks-postfix-'));
    const tables: Record<string, string> = {
      smtp_header_checks: HEADER_CHECKS, smtp_mime_header_checks: MIME_HEADER_CHECKS,
      smtp_nested_header_checks: NESTED_HEADER_CHECKS, smtp_body_checks: BODY_CHECKS,
    };
    const settings: Record<string, string> = {};
    for (const [name, text] of Object.entries(tables)) {
      writeFileSync(join(tdir, name), text);
      settings[name] = `regexp:${join(tdir, name)}`;
    }
    pair = await sideBySide({ settings, sink: { keepMessages: true } });
    ({ postfix, server, pfSink: postfixSink, paSink: postactorSink } = pair);
  });
  after(async () => {
    await pair?.close();
    if (tdir) rmSync(tdir, { recursive: true, force: true });
  });

  test('the same message leaves the same, with the same log lines', async () => {
    const pid = queuedId(await sendRaw(postfix.port, 'sender@example.org', ['friend@remote.example'], MESSAGE));
    const aid = queuedId(await sendRaw(server.port, 'sender@example.org', ['friend@remote.example'], MESSAGE));
    await postfixSink.waitFor(() => postfixSink.messages.length >= 1, 30_000);
    await postactorSink.waitFor(() => postactorSink.messages.length >= 1, 30_000);
    assert.equal(comparable(postactorSink.messages[0]!.data), comparable(postfixSink.messages[0]!.data));
    await server.waitForLog(new RegExp(`${aid}: to=<friend@remote\\.example>, .*status=sent`), 10_000);
    // Postfix logs its checks while it sends, before its to=<…> line.
    const deadline = Date.now() + 20_000;
    const postfixLog = () => readFileSync(join(postfix.dir, 'maillog'), 'utf8');
    while (!new RegExp(`${pid}: to=<friend@remote\\.example>, .*status=sent`).test(postfixLog()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const expected = checkLines(postfixLog(), pid);
    assert.ok(expected.length >= 8, expected.join('\n'));
    assert.deepEqual(checkLines(server.logLines().join('\n'), aid), expected);
  });
});

describe('smtp_header_checks whose table fails: Postactor and Postfix side by side', { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
  let postfixSink: SmtpSink;
  let postactorSink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let pair: SideBySide | undefined;

  before(async () => {
    // A tcp: table on a port nobody listens on: every lookup fails (Postfix retries a while first).
    const settings = { smtp_header_checks: `tcp:127.0.0.1:${await freePort()}` };
    pair = await sideBySide({ settings, sink: { keepMessages: true } });
    ({ postfix, server, pfSink: postfixSink, paSink: postactorSink } = pair);
  });
  after(async () => {
    await pair?.close();
  });

  test('the same warning, and the same deferral reason', async () => {
    const pid = queuedId(await sendRaw(postfix.port, 'sender@example.org', ['friend@remote.example'], MESSAGE));
    const aid = queuedId(await sendRaw(server.port, 'sender@example.org', ['friend@remote.example'], MESSAGE));
    const postfixLog = () => readFileSync(join(postfix.dir, 'maillog'), 'utf8');
    const deferred = (id: string) => new RegExp(`\\]: ${id}: to=<friend@remote\\.example>, relay=([^,]*), .*(dsn=.*)$`, 'm');
    const deadline = Date.now() + 60_000;
    while (!deferred(pid).test(postfixLog()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const theirs = deferred(pid).exec(postfixLog());
    assert.ok(theirs, postfixLog());
    const ours = deferred(aid).exec(await server.waitForLog(deferred(aid), 20_000))!;
    const port = (s: string) => s.replace(/:\d+$/, ':PORT');
    assert.equal(port(ours[1]!), port(theirs[1]!));
    assert.equal(ours[2], theirs[2]);
    assert.match(postfixLog(), new RegExp(`\\]: warning: ${pid}: smtp header checks lookup error$`, 'm'));
    assert.ok(server.logLines().some((l) => l.endsWith(`]: warning: ${aid}: smtp header checks lookup error`)));
    assert.equal(postfixSink.messages.length, 0);
    assert.equal(postactorSink.messages.length, 0);
  });
});
