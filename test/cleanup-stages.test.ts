/**
 * cleanup's stages driven one by one in-process, as the worker's processMessage drives them
 * (actors/cleanup/{envelope,message,body,milter,out}.ts, Postfix's cleanup_*.c): settings from
 * main.cf text through src/config, real lookup tables (inline:, texthash:, regexp:, tcp:) in a temp
 * dir, and a real LMDB QueueStore in a temp dir for the output stage. Log lines are read from a
 * maillog_file of this process.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { buildConfig } from '../src/config/load.js';
import { configureMaillog, flushMaillog } from '../src/log/maillog.js';
import { QueueStore } from '../src/queue/store.js';
import { receive } from '../src/runtime/mailbox.js';
import type { CleanupRequest } from '../actors/protocol.js';
import { cleanupSettings, type CleanupSettings, type Tables } from '../actors/cleanup/settings.js';
import { newVerdict, WRITE_ERROR } from '../actors/cleanup/state.js';
import { bccAddress, dsnOriginals, keepOriginals, localSubmission, outRecipients, rewriteEnvelope } from '../actors/cleanup/envelope.js';
import { addedHeaders, headerSection, isLocalClient, readMessage } from '../actors/cleanup/message.js';
import { bodyChecks } from '../actors/cleanup/body.js';
import { milterHeaderChecks, milterInspect } from '../actors/cleanup/milter.js';
import { bounceLocal, writeMessage } from '../actors/cleanup/out.js';
import { MappingFailure } from '../actors/cleanup/mappings.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-cleanup-stages-');
const logDir = tempDir();
const logFile = path.join(logDir, 'maillog');
configureMaillog({ file: logFile });

/** The log lines written since the last call. */
let logOffset = 0;
function newLogLines(): string[] {
  flushMaillog();
  const text = fs.readFileSync(logFile, 'utf8');
  const fresh = text.slice(logOffset);
  logOffset = text.length;
  return fresh.split('\n').filter((l) => l !== '').map((l) => l.replace(/^.*?postactor\/cleanup\[\d+\]: /, ''));
}

function settings(main: string): CleanupSettings {
  return cleanupSettings(buildConfig(null, `myhostname = mx.example.com\nmydomain = example.com\n${main}\n`, ''));
}

function tablesOf(s: CleanupSettings): Tables {
  assert.ok(!('broken' in s.tables), 'tables load');
  return s.tables as Tables;
}

const CRLF = '\r\n';
const msg = (...lines: string[]) => Buffer.from(lines.join(CRLF) + CRLF);
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
const nowarn = (w: string) => assert.fail(`unexpected warning: ${w}`);

function smtpRequest(over: Partial<CleanupRequest> = {}): CleanupRequest {
  return {
    queueId: '4Xq1Kz0AbC', sender: 'joe@client.example', recipients: [{ address: 'ann@dest.example' }],
    content: msg('Subject: hello', 'From: Joe <joe@client.example>', '', 'body line'),
    client: { name: 'client.example', addr: '192.0.2.10', port: 2525, helo: 'client.example', protocol: 'ESMTP' },
    arrival: Date.UTC(2026, 0, 15, 12, 0, 0), origin: 'smtpd', ...over,
  };
}

test('readMessage: a stray CR becomes a space, a long header is cut at header_size_limit, hopcount_limit Received headers (smtpd\'s own counted) is 554 5.4.0', () => {
  const s = settings('header_size_limit = 20\nhopcount_limit = 2');
  const r = readMessage(s, smtpRequest({ content: msg('Subject: s\rX-Injected: yes and more', '', 'b') }));
  assert.ok(!('ok' in r));
  assert.equal(text(r.content), 'Subject: s X-Injecte\r\n\r\nb\r\n');
  assert.equal(r.scan.present.has('x-injected'), false);

  // As Postfix's cleanup_message.c: the count includes the Received header smtpd's mail gets
  // (so one arriving Received + smtpd's = 2 = hopcount_limit), and the refusal is a warning.
  const hops = readMessage(s, smtpRequest({ content: msg('Received: a', '', 'b') }));
  assert.deepEqual(hops, { ok: false, code: 554, dsn: '5.4.0', text: 'Error: too many hops' });
  assert.deepEqual(newLogLines(), ['warning: 4Xq1Kz0AbC: message rejected: hopcount exceeded']);
  assert.ok(!('ok' in readMessage(s, smtpRequest({ content: msg('Subject: none', '', 'b') }))));
  // pickup's and qmqpd's mail carries its own Received header already: counted as it is.
  assert.ok(!('ok' in readMessage(s, smtpRequest({ origin: 'pickup', client: undefined, content: msg('Received: a', '', 'b') }))));
  assert.ok('ok' in readMessage(s, smtpRequest({ origin: 'pickup', client: undefined, content: msg('Received: a', 'Received: b', '', 'b') })));
  newLogLines();
  // No Received header at all (cleanup_header_done_callback's consistency check): refused as
  // CLEANUP_STAT_BAD. Mail the system makes (origin bounce) gets post_mail's, which counts.
  assert.deepEqual(readMessage(s, smtpRequest({ origin: 'pickup', client: undefined, content: msg('Subject: s', '', 'b') })), { ok: false, code: 451, dsn: '4.3.0', text: 'Error: internal error 1' });
  assert.deepEqual(newLogLines(), ['warning: 4Xq1Kz0AbC: message rejected: no Received: header']);
  assert.ok(!('ok' in readMessage(s, smtpRequest({ origin: 'bounce', client: undefined, content: msg('Subject: s', '', 'b') }))));
  assert.ok('ok' in readMessage(s, smtpRequest({ origin: 'bounce', client: undefined, content: msg('Received: a', '', 'b') })), 'post_mail\'s Received is counted');
});

test('headers: mail the system makes (origin bounce) starts with post_mail\'s Received header: "by $myhostname ($mail_name)", "id QID; date"', async () => {
  const s = settings('mail_name = Postfix');
  const request = smtpRequest({ origin: 'bounce', client: undefined, content: msg('From: MAILER-DAEMON@mx.example.com', 'Subject: s', '', 'b') });
  const read = readMessage(s, request);
  assert.ok(!('ok' in read));
  const add = addedHeaders(s, request, read.content, read.scan, false);
  const r = await headerSection(s, tablesOf(s), request, newVerdict(request), read.content, read.scan, add, { mapOK: true, checksOK: false, localClient: false }, nowarn);
  assert.ok(!('ok' in r));
  assert.match(text(r.content), /^Received: by mx\.example\.com \(Postfix\)\r\n\tid 4Xq1Kz0AbC; \w{3}, [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([^)]*\)\r\nFrom: MAILER-DAEMON@mx\.example\.com\r\n/);
});

test('envelope: a local submission is qualified with $myorigin, the empty recipient becomes $empty_address_recipient, Bcc is dropped', () => {
  const s = settings('myorigin = example.com\nempty_address_recipient = MAILER-DAEMON');
  const r = localSubmission(s, {
    ...smtpRequest(), origin: 'pickup', client: undefined, sender: 'joe', recipients: [{ address: 'ann' }, { address: '' }, { address: 'bob@elsewhere.example' }],
    content: msg('Bcc: secret@example.com', 'Subject: s', 'Return-Path: <x@y>', '', 'b'),
  });
  assert.equal(r.sender, 'joe@example.com');
  assert.deepEqual(r.recipients.map((x) => x.address), ['ann@example.com', 'MAILER-DAEMON@example.com', 'bob@elsewhere.example']);
  assert.equal(text(r.content), 'Subject: s\r\n\r\nb\r\n');
});

test('envelope: canonical mapping and masquerading of sender and recipients (cleanup_addr.c)', async () => {
  const dir = tempDir({ canonical: 'joe@client.example joe.public@host.example.com\n' });
  const s = settings(`sender_canonical_maps = texthash:${dir}/canonical\nrecipient_canonical_maps = inline:{ ann@dest.example=anne@dest.example }\nmasquerade_domains = example.com`);
  const r = await rewriteEnvelope(tablesOf(s).mappings, smtpRequest({ recipients: [{ address: 'ann@dest.example', orcpt: 'rfc822;ann@dest.example' }, { address: 'x@h.example.com' }] }), nowarn);
  assert.equal(r.sender, 'joe.public@example.com');
  // masquerade_classes leaves envelope recipients alone by default; ORCPT stays the original.
  assert.deepEqual(r.recipients, [{ address: 'anne@dest.example', orcpt: 'rfc822;ann@dest.example' }, { address: 'x@h.example.com' }]);
});

test('envelope: the original recipient is kept as submitted; the DSN original recipient is made up as Postfix\'s smtpd (RCPT TO as given) and cleanup (after canonical mapping) make it', async () => {
  const s = settings('myorigin = example.com\nrecipient_canonical_maps = inline:{ ann@dest.example=anne@dest.example, ann@example.com=anne@example.com }');
  const m = tablesOf(s).mappings;
  // smtpd: ORCPT from the address as received; a given ORCPT stays.
  const smtp = keepOriginals(smtpRequest({ recipients: [{ address: 'ann@dest.example' }, { address: 'bob@dest.example', orcpt: 'rfc822;given@dest.example' }] }));
  const fromSmtpd = dsnOriginals(await rewriteEnvelope(m, smtp, nowarn), false);
  assert.deepEqual(fromSmtpd.recipients, [
    { address: 'anne@dest.example', original: 'ann@dest.example', orcpt: 'rfc822;ann@dest.example' },
    { address: 'bob@dest.example', original: 'bob@dest.example', orcpt: 'rfc822;given@dest.example' },
  ]);
  // pickup: the original is the unqualified address; ORCPT the address after qualification and canonical mapping.
  const local = localSubmission(s, keepOriginals({ ...smtpRequest(), origin: 'pickup', client: undefined, recipients: [{ address: 'ann' }, { address: 'ü@example.com' }] }));
  assert.deepEqual(dsnOriginals(await rewriteEnvelope(m, local, nowarn), true).recipients, [
    { address: 'anne@example.com', original: 'ann', orcpt: 'rfc822;anne@example.com' },
    { address: 'ü@example.com', original: 'ü@example.com', orcpt: 'utf-8;ü@example.com' },
  ]);
  // A recipient that a forwarding local(8) sent with its original keeps that one.
  assert.deepEqual(keepOriginals(smtpRequest({ recipients: [{ address: 'x@dest.example', original: 'alias@dest.example' }] })).recipients, [{ address: 'x@dest.example', original: 'alias@dest.example' }]);
});

test('envelope: duplicates by original recipient with enable_original_recipient = yes (default), by address only with no (cleanup_out_recipient.c)', async () => {
  const virtual = 'virtual_alias_maps = inline:{ a@v.example=x@dest.example, b@v.example=x@dest.example }';
  const request = dsnOriginals(keepOriginals(smtpRequest({ recipients: [{ address: 'a@v.example' }, { address: 'b@v.example' }, { address: 'a@v.example' }] })), false);
  const yes = await outRecipients(tablesOf(settings(virtual)).mappings, request, newVerdict(request), true);
  assert.deepEqual(yes, [
    { address: 'x@dest.example', original: 'a@v.example', orcpt: 'rfc822;a@v.example' },
    { address: 'x@dest.example', original: 'b@v.example', orcpt: 'rfc822;b@v.example' },
  ]);
  const no = await outRecipients(tablesOf(settings(`${virtual}\nenable_original_recipient = no`)).mappings, request, newVerdict(request), true);
  assert.deepEqual(no, [{ address: 'x@dest.example', original: 'a@v.example', orcpt: 'rfc822;a@v.example' }], 'the first one\'s fields stay');
});

test('envelope: BCC maps and actions, virtual aliases, duplicates removed; REDIRECT replaces them all by the first, address only (cleanup_out_recipient.c, qmgr_message.c)', async () => {
  const dir = tempDir({ virtual: 'list@v.example ann@dest.example, bob@dest.example\nbcc@v.example archive@dest.example\n' });
  const s = settings([
    'always_bcc = bcc@v.example',
    'sender_bcc_maps = inline:{ joe@client.example=copy@dest.example }',
    'recipient_bcc_maps = inline:{ list@v.example=rcptcopy@dest.example }',
    `virtual_alias_maps = texthash:${dir}/virtual`,
  ].join('\n'));
  const m = tablesOf(s).mappings;
  // The same recipient twice: its expansion is queued once.
  const list = { address: 'list@v.example', notify: ['FAILURE'] };
  const request = smtpRequest({ recipients: [list, list] });
  const verdict = newVerdict(request);
  verdict.bcc.push('action@dest.example');
  // BCC recipients get NOTIFY=NEVER (cleanup_addr_bcc: NO_DSN_NOTIFY): the sender never hears of them.
  const never = ['NEVER'];
  assert.deepEqual(await outRecipients(m, request, verdict, true), [
    { address: 'ann@dest.example', notify: ['FAILURE'] }, { address: 'bob@dest.example', notify: ['FAILURE'] },
    { address: 'action@dest.example', notify: never }, { address: 'archive@dest.example', notify: never }, { address: 'copy@dest.example', notify: never },
    { address: 'rcptcopy@dest.example', notify: never },
  ]);
  // No address mappings (receive_override_options): only the BCC action is added, nothing expanded.
  assert.deepEqual(await outRecipients(m, request, verdict, false), [list, { address: 'action@dest.example', notify: never }]);
  // A bounce gets no automatic BCC.
  assert.deepEqual(await outRecipients(m, { ...request, origin: 'bounce' }, newVerdict(request), true), [{ address: 'ann@dest.example', notify: ['FAILURE'] }, { address: 'bob@dest.example', notify: ['FAILURE'] }]);
  // The REDIRECT target replaces every recipient and is not expanded again (Postfix's qmgr
  // applies its REC_TYPE_RDR record after cleanup's virtual aliasing): the first recipient keeps
  // its DSN NOTIFY and ORCPT, only its address changes.
  verdict.redirect = 'list@v.example';
  assert.deepEqual(await outRecipients(m, request, verdict, true), [{ address: 'list@v.example', notify: ['FAILURE'] }]);
  const dsn = smtpRequest({ recipients: [{ address: 'x@dest.example', orcpt: 'rfc822;orig@dest.example', notify: ['SUCCESS', 'FAILURE'] }, { address: 'y@dest.example', notify: ['NEVER'] }] });
  const redirected = newVerdict(dsn);
  redirected.redirect = 'abuse@dest.example';
  assert.deepEqual(await outRecipients(m, dsn, redirected, true), [{ address: 'abuse@dest.example', orcpt: 'rfc822;orig@dest.example', notify: ['SUCCESS', 'FAILURE'] }]);
});

test('envelope: a BCC address is qualified, canonical-mapped and masqueraded as an envelope recipient (cleanup_addr_bcc_dsn), as Postfix 3.7 does it', async () => {
  const s = settings('myorigin = host.example.com\nalways_bcc = archive\nrecipient_canonical_maps = inline:{ archive@host.example.com=archive2@sub.example.com }\nmasquerade_domains = example.com\nmasquerade_classes = envelope_recipient');
  const m = tablesOf(s).mappings;
  const request = smtpRequest();
  const clean = (a: string) => bccAddress(s, m, a, true, nowarn);
  assert.deepEqual(await outRecipients(m, request, newVerdict(request), true, clean), [{ address: 'ann@dest.example' }, { address: 'archive2@example.com', notify: ['NEVER'] }]);
  // Without address mappings: qualified only.
  assert.equal(await bccAddress(s, m, 'archive', false, nowarn), 'archive@host.example.com');
});

test('envelope: a BCC map that cannot be read is a MappingFailure, 451 4.3.0, not a miss', async () => {
  const port = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
  const s = settings(`recipient_bcc_maps = tcp:127.0.0.1:${port}`);
  const request = smtpRequest();
  await assert.rejects(outRecipients(tablesOf(s).mappings, request, newVerdict(request), true), (e: unknown) => {
    assert.ok(e instanceof MappingFailure);
    assert.match(e.log, /^recipient_bcc_maps map lookup problem for ann@dest\.example -- message not accepted, try again later: /);
    assert.deepEqual([e.code, e.dsn, e.text], [451, '4.3.0', 'Error: queue file write error']);
    return true;
  });
});

test('message: Received is added for smtpd mail; missing headers only for local clients (local_header_rewrite_clients) or always_add_missing_headers', () => {
  const s = settings('local_header_rewrite_clients = permit_mynetworks\nmynetworks = 192.0.2.0/24');
  const local = smtpRequest({ content: msg('Subject: hello', '', 'b') });
  assert.equal(isLocalClient(s, local), true);
  const read = readMessage(s, local);
  assert.ok(!('ok' in read));
  const add = addedHeaders(s, local, read.content, read.scan, true);
  assert.match(add.received, /^Received: from client\.example \(client\.example \[192\.0\.2\.10\]\)\r\n\tby mx\.example\.com \(Postactor\) with ESMTP id 4Xq1Kz0AbC\r\n\tfor <ann@dest\.example>; /);
  assert.equal(add.messageId, '<4Xq1Kz0AbC@mx.example.com>');
  assert.match(add.added, /^Message-Id: <4Xq1Kz0AbC@mx\.example\.com>\r\nDate: [^\r]+\r\nFrom: joe@client\.example\r\n$/);

  const remote = smtpRequest({ client: { ...local.client!, addr: '198.51.100.7' } });
  assert.equal(isLocalClient(s, remote), false);
  const r2 = readMessage(s, remote);
  assert.ok(!('ok' in r2));
  const add2 = addedHeaders(s, remote, r2.content, r2.scan, false);
  assert.equal(add2.added, '');
  assert.equal(add2.messageId, null);
  const always = settings('always_add_missing_headers = yes');
  assert.match(addedHeaders(always, remote, r2.content, r2.scan, false).added, /^Message-Id: /);
});

test('message: undisclosed_recipients_header is added to smtpd mail of a local client; text that is not "name: value" is warned about and left out', () => {
  const s = settings('undisclosed_recipients_header = To: undisclosed-recipients:;');
  const request = smtpRequest({ content: msg('Subject: hello', '', 'b') });
  const read = readMessage(s, request);
  assert.ok(!('ok' in read));
  assert.match(addedHeaders(s, request, read.content, read.scan, true).added, /\r\nTo: undisclosed-recipients:;\r\n$/);
  const bad = settings('undisclosed_recipients_header = undisclosed-recipients');
  newLogLines();
  assert.doesNotMatch(addedHeaders(bad, request, read.content, read.scan, true).added, /undisclosed/);
  assert.ok(newLogLines().some((l) => l.includes('warning: bad undisclosed_recipients_header header text "undisclosed-recipients" -- need "headername: headervalue"')));
});

test('message: a local submission that is resent gets Resent- headers and the full name in From (pickup)', () => {
  const s = settings('');
  const request: CleanupRequest = {
    ...smtpRequest(), origin: 'pickup', client: undefined, sender: 'joe@example.com',
    // pickup's own Received header comes first, as pickup writes it.
    local: { fullName: 'Joe Q. Public', rewriteContext: 'local' }, content: msg('Received: by mx.example.com (Postfix, from userid 0)', 'Resent-To: x@example.com', '', 'b'),
  };
  const read = readMessage(s, request);
  assert.ok(!('ok' in read));
  const add = addedHeaders(s, request, read.content, read.scan, isLocalClient(s, request));
  assert.equal(add.received, '');
  assert.match(add.added, /^Resent-Message-Id: <4Xq1Kz0AbC@mx\.example\.com>\r\nResent-Date: [^\r]+\r\nResent-From: "Joe Q\. Public" <joe@example\.com>\r\n$/);
});

test('message: header_checks REJECT is the reply and logged as Postfix logs it; PREPEND, REPLACE, IGNORE edit the header section; Bcc goes', async () => {
  const dir = tempDir({
    header_checks: [
      '/^Subject: reject me/ REJECT no thanks',
      '/^Subject: prepend me/ PREPEND X-Prepended: yes',
      '/^Subject: replace me/ REPLACE Subject: replaced',
      '/^X-Remove-Me:/ IGNORE',
      '/^X-Warn:/ WARN looked at',
      '',
    ].join('\n'),
  });
  const s = settings(`header_checks = regexp:${dir}/header_checks`);
  const t = tablesOf(s);
  const run = async (content: Buffer, recipients = [{ address: 'ann@dest.example' }]) => {
    const request = smtpRequest({ content, recipients });
    const read = readMessage(s, request);
    assert.ok(!('ok' in read));
    const verdict = newVerdict(request);
    const add = addedHeaders(s, request, read.content, read.scan, false);
    return headerSection(s, t, request, verdict, read.content, read.scan, add, { mapOK: true, checksOK: true, localClient: false }, nowarn);
  };
  newLogLines();
  assert.deepEqual(await run(msg('Subject: reject me', '', 'b')), { ok: false, code: 550, dsn: '5.7.1', text: 'no thanks' });
  assert.deepEqual(newLogLines(), ['4Xq1Kz0AbC: reject: header Subject: reject me from client.example[192.0.2.10]; from=<joe@client.example> to=<ann@dest.example> proto=ESMTP helo=<client.example>: 5.7.1 no thanks']);

  const r = await run(msg('Subject: prepend me', 'X-Remove-Me: 1', 'Bcc: hidden@example.com', 'X-Warn: 2', 'Subject: replace me', '', 'b'));
  assert.ok(!('ok' in r));
  const out = text(r.content);
  assert.match(out, /^Received: from client\.example /);
  assert.equal(out.slice(out.indexOf('X-Prepended')), 'X-Prepended: yes\r\nSubject: prepend me\r\nX-Warn: 2\r\nSubject: replaced\r\n\r\nb\r\n');
  assert.deepEqual(newLogLines(), ['4Xq1Kz0AbC: warning: header X-Warn: 2 from client.example[192.0.2.10]; from=<joe@client.example> to=<ann@dest.example> proto=ESMTP helo=<client.example>: looked at']);
  // With several recipients the line names the last one, as Postfix's cleanup_act_log() logs state->recip.
  await run(msg('X-Warn: 3', '', 'b'), [{ address: 'ann@dest.example' }, { address: 'bob@dest.example' }]);
  assert.deepEqual(newLogLines(), ['4Xq1Kz0AbC: warning: header X-Warn: 3 from client.example[192.0.2.10]; from=<joe@client.example> to=<bob@dest.example> proto=ESMTP helo=<client.example>: looked at']);
});

test('message: header addresses are rewritten in the local rewrite context only (canonical_maps, masquerading of header classes)', async () => {
  const s = settings('canonical_maps = inline:{ joe@client.example=joe.public@example.com }');
  const t = tablesOf(s);
  const run = async (localClient: boolean) => {
    const request = smtpRequest({ content: msg('From: Joe <joe@client.example>', 'To: ann@dest.example', '', 'b') });
    const read = readMessage(s, request);
    assert.ok(!('ok' in read));
    const add = addedHeaders(s, request, read.content, read.scan, localClient);
    const r = await headerSection(s, t, request, newVerdict(request), read.content, read.scan, add, { mapOK: true, checksOK: true, localClient }, nowarn);
    assert.ok(!('ok' in r));
    return text(r.content);
  };
  assert.match(await run(true), /\r\nFrom: Joe <joe\.public@example\.com>\r\n/);
  assert.match(await run(false), /\r\nFrom: Joe <joe@client\.example>\r\n/);
});

test('body: body_checks REPLACE edits a line, REJECT refuses, DISCARD ends the checks; no checks, the same bytes', async () => {
  const dir = tempDir({ body_checks: '/^BODY-REPLACE/ REPLACE the replaced line\n/^BODY-REJECT/ REJECT 5.7.9 bad body\n/^BODY-DISCARD/ DISCARD\n' });
  const s = settings(`body_checks = regexp:${dir}/body_checks`);
  const t = tablesOf(s);
  const request = smtpRequest();
  const content = msg('Subject: s', '', 'one', 'BODY-REPLACE here', 'two');
  const r = await bodyChecks(s, t, request, newVerdict(request), content, CRLF, true);
  assert.ok(!('ok' in r));
  assert.equal(text(r.content), 'Subject: s\r\n\r\none\r\nthe replaced line\r\ntwo\r\n');

  newLogLines();
  const rejected = await bodyChecks(s, t, request, newVerdict(request), msg('Subject: s', '', 'BODY-REJECT'), CRLF, true);
  assert.deepEqual(rejected, { ok: false, code: 550, dsn: '5.7.9', text: 'bad body' });
  assert.deepEqual(newLogLines(), ['4Xq1Kz0AbC: reject: body BODY-REJECT from client.example[192.0.2.10]; from=<joe@client.example> to=<ann@dest.example> proto=ESMTP helo=<client.example>: 5.7.9 bad body']);

  const verdict = newVerdict(request);
  const discarded = await bodyChecks(s, t, request, verdict, msg('Subject: s', '', 'BODY-DISCARD', 'BODY-REJECT'), CRLF, true);
  assert.ok(!('ok' in discarded));
  assert.equal(verdict.discard, true);
  newLogLines();

  const same = await bodyChecks(s, t, request, newVerdict(request), content, CRLF, false);
  assert.ok(!('ok' in same));
  assert.equal(same.content, content);
});

test('milter: milter_header_checks REJECT on a header a milter added; REPLACE is not supported there; no milters, nothing changes', async () => {
  const dir = tempDir({ milter_header_checks: '/^X-Spam: yes/ REJECT spam\n/^X-Edit: 1/ REPLACE X-Edit: 2\n' });
  const s = settings(`milter_header_checks = regexp:${dir}/milter_header_checks`);
  const t = tablesOf(s);
  const request = smtpRequest({ milterHeaders: ['X-Edit: 1', 'X-Spam: yes'] });
  const warnings: string[] = [];
  newLogLines();
  const r = await milterHeaderChecks(s, t, request, newVerdict(request), (w) => warnings.push(w));
  assert.deepEqual(r, { ok: false, code: 550, dsn: '5.7.1', text: 'spam' });
  assert.deepEqual(warnings, ['milter_header_checks: action REPLACE is not supported for milter headers: X-Edit: 1']);
  // cleanup_milter.c's form: "ID: milter-header-reject: header LINE from CLIENT; …".
  assert.deepEqual(newLogLines(), ['4Xq1Kz0AbC: milter-header-reject: header X-Spam: yes from client.example[192.0.2.10]; from=<joe@client.example> to=<' + request.recipients[0]!.address + '> proto=ESMTP helo=<client.example>: 5.7.1 spam']);
  assert.equal(await milterHeaderChecks(s, t, smtpRequest(), newVerdict(request), nowarn), null);

  const content = msg('Subject: s', '', 'b');
  const pickup: CleanupRequest = { ...request, origin: 'pickup' };
  assert.deepEqual(await milterInspect(s.milters, pickup, newVerdict(pickup), content), { request: pickup, content });
});

test('out: the message is written to incoming in one commit, qmgr is told, and the message-id is logged', async () => {
  const store = QueueStore.open(tempDir());
  after(() => store.close());
  const instance = `stages-${process.pid}`;
  const told: unknown[] = [];
  const stop = receive(instance, 'qmgr', (m) => told.push(m));
  after(stop);
  const s = settings('');
  const request = smtpRequest({ contentFilter: 'scan:[127.0.0.1]:10025', envId: 'env-1', ret: 'HDRS' });
  const content = msg('Subject: s', '', 'b');
  newLogLines();
  const reply = await writeMessage({ store, instance, flow: null, inFlowDelay: 0, smtputf8: s.smtputf8 }, {
    request, recipients: [{ address: 'ann@dest.example', original: 'ann@dest.example' }, { address: 'bob@dest.example', original: 'list@dest.example' }], verdict: newVerdict(request), content, messageId: '<id@mx.example.com>', localClient: true,
  });
  assert.deepEqual(reply, { ok: true, queueId: '4Xq1Kz0AbC', size: content.length });
  const meta = store.get('4Xq1Kz0AbC');
  assert.ok(meta);
  assert.equal(meta.queue, 'incoming');
  // The original recipient is stored only where it is not the address itself.
  assert.deepEqual(meta.recipients, [{ address: 'ann@dest.example', done: false }, { address: 'bob@dest.example', original: 'list@dest.example', done: false }]);
  assert.equal(meta.filter, 'scan:[127.0.0.1]:10025');
  assert.equal(meta.messageId, '<id@mx.example.com>');
  assert.equal(meta.client?.rewriteLocal, true);
  assert.deepEqual([meta.envId, meta.ret], ['env-1', 'HDRS']);
  assert.deepEqual(store.content('4Xq1Kz0AbC'), content);
  assert.deepEqual(newLogLines(), ['4Xq1Kz0AbC: message-id=<id@mx.example.com>']);
  for (let i = 0; i < 50 && told.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(told, [{ type: 'queued', queueId: '4Xq1Kz0AbC' }]);

  // The same queue ID again: the commit fails as a whole, 451 4.3.0, and the first copy stays.
  const again = await writeMessage({ store, instance, flow: null, inFlowDelay: 0, smtputf8: s.smtputf8 }, {
    request, recipients: [{ address: 'other@dest.example' }], verdict: newVerdict(request), content, messageId: null, localClient: false,
  });
  assert.deepEqual(again, WRITE_ERROR);
  assert.deepEqual(newLogLines(), ['warning: 4Xq1Kz0AbC: write queue file: duplicate queue ID 4Xq1Kz0AbC']);
  assert.deepEqual(store.get('4Xq1Kz0AbC')?.recipients, [{ address: 'ann@dest.example', done: false }, { address: 'bob@dest.example', original: 'list@dest.example', done: false }]);
});

test('out: HOLD goes to the hold queue without telling qmgr; DISCARD writes nothing; a refused local submission is queued to bounce', async () => {
  const store = QueueStore.open(tempDir());
  after(() => store.close());
  const s = settings('');
  const out = { store, instance: `stages-hold-${process.pid}`, flow: null, inFlowDelay: 0, smtputf8: s.smtputf8 };
  const told: unknown[] = [];
  const stop = receive(out.instance, 'qmgr', (m) => told.push(m));
  after(stop);
  const content = msg('Subject: s', '', 'b');

  const held = smtpRequest({ queueId: '4Xq1Kz0Hld' });
  const v = newVerdict(held);
  v.hold = true;
  assert.equal((await writeMessage(out, { request: held, recipients: held.recipients, verdict: v, content, messageId: null, localClient: false })).ok, true);
  assert.equal(store.get('4Xq1Kz0Hld')?.queue, 'hold');

  const dropped = smtpRequest({ queueId: '4Xq1Kz0Dsc' });
  const d = newVerdict(dropped);
  d.discard = true;
  assert.deepEqual(await writeMessage(out, { request: dropped, recipients: dropped.recipients, verdict: d, content, messageId: null, localClient: false }), { ok: true, queueId: '4Xq1Kz0Dsc', size: content.length });
  assert.equal(store.get('4Xq1Kz0Dsc'), undefined);

  const local: CleanupRequest = { ...smtpRequest({ queueId: '4Xq1Kz0Bnc' }), origin: 'pickup', client: undefined };
  const reply = await bounceLocal(out, local, content, { ok: false, code: 550, dsn: '5.7.1', text: 'message content rejected' });
  assert.equal(reply.ok, true);
  const meta = store.get('4Xq1Kz0Bnc');
  assert.equal(meta?.queue, 'incoming');
  assert.equal(meta?.filter, 'error:5.7.1 message content rejected');
  // Only the bounce is announced to qmgr; the held and the discarded message are not.
  for (let i = 0; i < 50 && told.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(told, [{ type: 'queued', queueId: '4Xq1Kz0Bnc' }]);
});
