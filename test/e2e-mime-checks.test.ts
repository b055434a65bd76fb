/**
 * mime_header_checks and nested_header_checks (Postfix's cleanup with its MIME parser): MIME
 * headers of the primary header section and every header of a multipart part go to
 * mime_header_checks, the headers of an attached message/rfc822 to nested_header_checks,
 * header_checks sees only the primary non-MIME headers, and disable_mime_input_processing turns
 * the part headers into body lines. Messages are sent with swaks (and the helpers' SMTP client);
 * the replies, Postfix's log lines and what reaches the sink are checked. Also the MIME walker
 * on its own (src/content/mime.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { sendRaw, startServer, type TestServer } from './helpers/server.js';
import { runClient } from './helpers/run-client.js';
import { needs } from './helpers/peers.js';
import { walkMime } from '../src/content/mime.js';

const HEADER_CHECKS = [
  '/^Subject: header-reject/ REJECT 5.7.1 header_checks saw it',
  // Were header_checks applied to MIME or part headers, this would fire.
  '/^Content-Type: .*hc-trap/ REJECT header_checks must not see this',
  '/^X-Part-Trap:/ REJECT header_checks must not see part headers',
  '',
].join('\n');

const MIME_CHECKS = [
  '/^Content-Type: application\\/x-evil/ REJECT 5.7.1 evil attachment',
  '/^Content-Disposition: attachment;\\s+filename="?[^"]*\\.exe/ REJECT',
  '/^Content-Description: warn-me/ WARN mime warned',
  '/^Content-Description: replace-me/ REPLACE Content-Description: replaced',
  '/^X-Part-Header: drop-me/ IGNORE',
  '/^MIME-Version: 1\\.0 \\(hold-me\\)/ HOLD held by mime',
  '/^X-Nested-Only:/ REJECT mime_header_checks must not see nested non-MIME headers',
  '',
].join('\n');

const NESTED_CHECKS = [
  '/^Subject: nested-reject/ REJECT 5.7.1 nested message rejected',
  '/^X-Nested-Only: discard/ DISCARD nested discard',
  '',
].join('\n');

const BODY_CHECKS = [
  '/^BODY-REJECT/ REJECT 5.7.9 body saw it',
  // Part headers are headers, not body lines, while MIME processing is on.
  '/^X-Part-Trap: body/ REJECT 5.7.8 part header seen as body',
  '',
].join('\n');

let seq = 0;
function multipart(subject: string, partHeaders: string[], opts: { primary?: string[]; nested?: string[] } = {}): { id: string; text: string } {
  const id = `mime-${++seq}`;
  const b = `b-${id}`;
  const lines = [
    'From: <a@client.test>', 'To: <user@host.example.com>', `Subject: ${subject}`, `Message-ID: <${id}@client.test>`, `X-Test-Id: ${id}`,
    ...(opts.primary ?? ['MIME-Version: 1.0']),
    `Content-Type: multipart/mixed; boundary="${b}"`,
    '',
    'This is a multi-part message in MIME format.',
    `--${b}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'the text part',
    `--${b}`,
    ...partHeaders,
    '',
    'payload',
  ];
  if (opts.nested) {
    lines.push(`--${b}`, 'Content-Type: message/rfc822', '', ...opts.nested, '', 'the attached message\'s body');
  }
  lines.push(`--${b}--`, 'epilogue', '');
  return { id, text: lines.join('\r\n') };
}

async function swaks(port: number, text: string): Promise<{ code: number | null; out: string }> {
  return runClient('swaks', ['--server', `127.0.0.1:${port}`, '--from', 'a@client.test', '--to', 'user@host.example.com',
    '--helo', 'client.test', '--data', '-', '--timeout', '15'], text, 30_000);
}

async function waitArrived(sink: SmtpSink, id: string): Promise<SinkMessage> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = sink.messages.find((x) => x.sender !== '' && x.data.toString('latin1').includes(`X-Test-Id: ${id}\r\n`));
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`message ${id} did not arrive at the sink`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the MIME walker (Postfix mime_state classes)', () => {
  const kinds = (text: string, disabled = false) => [...walkMime(Buffer.from(text, 'latin1'), { nesting: 100, boundaryLength: 2048 }, disabled)]
    .map((e) => (e.kind === 'header' ? `${e.cls}:${e.name}` : `line@${e.offset}:${text.slice(e.start, e.end).replace(/\r?\n$/, '')}`));

  test('primary, multipart and nested headers; boundaries, blank lines and the epilogue are body lines', () => {
    const text = [
      'Subject: s', 'Content-Type: multipart/mixed;', '\tboundary="XX"', '', 'pre', '--XX', 'Content-Type: message/rfc822', '',
      'Subject: inner', 'X-A: 1', '', 'inner body', '--XX--', 'post', '',
    ].join('\n');
    assert.deepEqual(kinds(text), [
      'primary:subject', 'primary:content-type', 'line@0:', 'line@1:pre', 'line@5:--XX', 'multipart:content-type', 'line@0:',
      'nested:subject', 'nested:x-a', 'line@0:', 'line@1:inner body', 'line@12:--XX--', 'line@19:post',
    ]);
  });

  test('a line that is not a header ends a part\'s headers and is a body line; multipart/digest parts default to message/rfc822', () => {
    const text = ['Content-Type: multipart/digest; boundary=D', '', '--D', '', 'Subject: digested', '', 'x', '--D', 'not a header', '--D--', ''].join('\n');
    assert.deepEqual(kinds(text), [
      'primary:content-type', 'line@0:', 'line@1:--D', 'line@0:', 'nested:subject', 'line@0:', 'line@1:x', 'line@3:--D',
      'line@7:not a header', 'line@20:--D--',
    ]);
  });

  test('disable_mime_input_processing: only the primary headers are headers', () => {
    const text = ['Content-Type: multipart/mixed; boundary=B', '', '--B', 'Content-Type: text/plain', '', 'x', '--B--', ''].join('\n');
    assert.deepEqual(kinds(text, true), ['primary:content-type', 'line@0:', 'line@1:--B', 'line@5:Content-Type: text/plain', 'line@30:', 'line@31:x', 'line@33:--B--']);
  });
});

describe('e2e cleanup: mime_header_checks, nested_header_checks', { skip: needs('/usr/bin/swaks', 'swaks') }, () => {
  let sink: SmtpSink;
  let server: TestServer;
  let tdir: string;

  before(async () => {
    tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'mime-checks-'));
    fs.writeFileSync(path.join(tdir, 'header_checks'), HEADER_CHECKS);
    fs.writeFileSync(path.join(tdir, 'mime_header_checks'), MIME_CHECKS);
    fs.writeFileSync(path.join(tdir, 'nested_header_checks'), NESTED_CHECKS);
    fs.writeFileSync(path.join(tdir, 'body_checks'), BODY_CHECKS);
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: {
        header_checks: `regexp:${tdir}/header_checks`,
        mime_header_checks: `regexp:${tdir}/mime_header_checks`,
        nested_header_checks: `regexp:${tdir}/nested_header_checks`,
        body_checks: `regexp:${tdir}/body_checks`,
      },
    });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    if (tdir) fs.rmSync(tdir, { recursive: true, force: true });
  });

  test('mime_header_checks REJECT of an attachment\'s Content-Type: 550 at end of DATA, Postfix\'s "reject: header" line', async () => {
    const m = multipart('evil', ['Content-Type: application/x-evil; name="x.bin"', 'Content-Transfer-Encoding: base64']);
    const r = await swaks(server.port, m.text);
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /<\*\* +550 5\.7\.1 evil attachment/);
    const line = await server.waitForLog(/: reject: header Content-Type: application\/x-evil/, 5000);
    assert.match(line, /cleanup\[\d+\]: \S+: reject: header Content-Type: application\/x-evil; name="x\.bin" from \S+\[127\.0\.0\.1\]; from=<a@client\.test> to=<user@host\.example\.com> proto=ESMTP helo=<client\.test>: 5\.7\.1 evil attachment$/);
  });

  test('a REJECT without text: 550 5.7.1 and the default text; a part header is checked with its folded lines', async () => {
    const m = multipart('exe', ['Content-Type: application/octet-stream', 'Content-Disposition: attachment;', '\tfilename="run.exe"']);
    const r = await sendRaw(server.port, 'a@client.test', ['user@host.example.com'], m.text);
    assert.equal(r.code, 550, r.line);
    assert.match(r.line, /^550 5\.7\.1 /);
    // The logger shows the fold's tab as '?', as Postfix's log lines show control characters.
    await server.waitForLog(/: reject: header Content-Disposition: attachment;\?filename="run\.exe" from \S+; from=<a@client\.test> .*: 5\.7\.1 message content rejected$/, 5000);
  });

  test('nested_header_checks REJECT: a header of an attached message/rfc822', async () => {
    const m = multipart('has nested', ['Content-Type: text/plain'], { nested: ['From: <x@inner.test>', 'Subject: nested-reject please'] });
    const r = await swaks(server.port, m.text);
    assert.match(r.out, /<\*\* +550 5\.7\.1 nested message rejected/);
    await server.waitForLog(/: reject: header Subject: nested-reject please from \S+\[127\.0\.0\.1\]; from=<a@client\.test> to=<user@host\.example\.com> proto=ESMTP helo=<client\.test>: 5\.7\.1 nested message rejected$/, 5000);
  });

  test('nested_header_checks DISCARD: 250 to the client, "discard: header" logged, nothing delivered; no check runs after it', async () => {
    // The Subject after it would be rejected, were the checks still running (Postfix stops them).
    const m = multipart('nested discard', ['Content-Type: text/plain'], { nested: ['X-Nested-Only: discard', 'Subject: nested-reject after discard'] });
    const r = await swaks(server.port, m.text);
    assert.equal(r.code, 0, r.out);
    await server.waitForLog(/: discard: header X-Nested-Only: discard from .*: nested discard$/, 5000);
    await new Promise((res) => setTimeout(res, 500));
    assert.ok(!sink.messages.some((x) => x.data.toString('latin1').includes(`X-Test-Id: ${m.id}\r\n`)));
  });

  test('header_checks sees only the primary non-MIME headers: its Content-Type and part-header rules do not fire; Subject does', async () => {
    const ok = multipart('innocent', ['Content-Type: text/plain; name="hc-trap"', 'X-Part-Trap: body'], { primary: ['MIME-Version: 1.0'] });
    const r1 = await swaks(server.port, ok.text);
    assert.equal(r1.code, 0, r1.out);
    await waitArrived(sink, ok.id);
    const bad = multipart('header-reject me', ['Content-Type: text/plain']);
    const r2 = await sendRaw(server.port, 'a@client.test', ['user@host.example.com'], bad.text);
    assert.equal(r2.line, '550 5.7.1 header_checks saw it');
  });

  test('WARN, REPLACE and IGNORE on part headers; HOLD on a primary MIME header; body_checks still sees body lines of parts', async () => {
    const m = multipart('edits', ['Content-Type: text/plain', 'Content-Description: warn-me', 'X-Part-Header: drop-me', 'Content-Description: replace-me']);
    const r = await swaks(server.port, m.text);
    assert.equal(r.code, 0, r.out);
    const got = (await waitArrived(sink, m.id)).data.toString('latin1');
    assert.match(got, /^Content-Description: warn-me\r$/m);
    assert.match(got, /^Content-Description: replaced\r$/m);
    assert.doesNotMatch(got, /X-Part-Header: drop-me/);
    await server.waitForLog(/: warning: header Content-Description: warn-me from \S+; from=<a@client\.test> to=<user@host\.example\.com> proto=ESMTP helo=<client\.test>: mime warned$/, 5000);

    const held = multipart('hold', ['Content-Type: text/plain'], { primary: ['MIME-Version: 1.0 (hold-me)'] });
    assert.equal((await swaks(server.port, held.text)).code, 0);
    await server.waitForLog(/: hold: header MIME-Version: 1\.0 \(hold-me\) from .*: held by mime$/, 5000);

    const body = multipart('body', ['Content-Type: text/plain']);
    const text = body.text.replace('payload', 'BODY-REJECT here');
    const r3 = await sendRaw(server.port, 'a@client.test', ['user@host.example.com'], text);
    assert.equal(r3.line, '550 5.7.9 body saw it');
  });
});

describe('e2e cleanup: disable_mime_input_processing = yes', { skip: needs('/usr/bin/swaks', 'swaks') }, () => {
  let sink: SmtpSink;
  let server: TestServer;
  let tdir: string;

  before(async () => {
    tdir = fs.mkdtempSync(path.join(os.tmpdir(), 'mime-off-'));
    fs.writeFileSync(path.join(tdir, 'mime_header_checks'), MIME_CHECKS);
    fs.writeFileSync(path.join(tdir, 'body_checks'), BODY_CHECKS);
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: { disable_mime_input_processing: 'yes', mime_header_checks: `regexp:${tdir}/mime_header_checks`, body_checks: `regexp:${tdir}/body_checks` },
    });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    if (tdir) fs.rmSync(tdir, { recursive: true, force: true });
  });

  test('part headers are body lines (body_checks sees them, mime_header_checks does not); primary MIME headers still go to mime_header_checks', async () => {
    const passes = multipart('off', ['Content-Type: application/x-evil']);
    const r1 = await swaks(server.port, passes.text);
    assert.equal(r1.code, 0, r1.out);
    await waitArrived(sink, passes.id);
    const asBody = multipart('off 2', ['Content-Type: text/plain', 'X-Part-Trap: body']);
    const r2 = await sendRaw(server.port, 'a@client.test', ['user@host.example.com'], asBody.text);
    assert.equal(r2.line, '550 5.7.8 part header seen as body');
    const primary = multipart('off 3', ['Content-Type: text/plain'], { primary: ['MIME-Version: 1.0 (hold-me)'] });
    assert.equal((await swaks(server.port, primary.text)).code, 0);
    await server.waitForLog(/: hold: header MIME-Version: 1\.0 \(hold-me\) from /, 5000);
  });
});
