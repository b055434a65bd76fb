/**
 * The headers cleanup and smtpd add or rewrite, side by side with Debian's Postfix
 * (bench/postfix-peer.sh): the same raw messages over SMTP to both, the header sections the
 * next hop receives compared after normalising what legitimately differs (queue IDs, dates,
 * mail_name "Postactor", README). Cases: a message without Date, Message-ID, From and To from
 * a client in local_header_rewrite_clients (the default permit_inet_interfaces: loopback), from
 * one outside it, and the same with always_add_missing_headers = yes; Resent- headers; an
 * envelope sender whose local part needs quoting; the undisclosed-recipients header; the remote
 * header rewrite context (remote_header_rewrite_domain); a session without HELO; header
 * addresses rewritten in the header rewrite context ("user" → "user@$myorigin",
 * append_dot_mydomain); Return-Path and Bcc dropped; smtpd's Received header. And local
 * submissions: Postactor's bin/sendmail and Postfix's /usr/sbin/sendmail (MAIL_CONFIG pointing
 * at the peer) with and without -F, pickup's Received header, Resent- headers with -t.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { SmtpSink } from '../src/smtp/sink.js';
import { queuedId, REPO_ROOT, sendRaw, SmtpDialogue, type Reply, type TestServer } from './helpers/server.js';
import { sideBySide, type SideBySide } from './helpers/side-by-side.js';
import { needs } from './helpers/peers.js';
import type { MtaHandle } from '../bench/relay/mta.js';

const CASES: Record<string, { from: string; to: string[]; text: string; noHelo?: boolean }> = {
  'no HELO': { from: 'sender@client.test', to: ['user@example.com'], text: 'Subject: case-nohelo\r\nFrom: f@client.test\r\n\r\nbody\r\n', noHelo: true },
  'no headers at all': { from: 'sender@client.test', to: ['user@example.com'], text: 'Subject: case-bare\r\n\r\nbody\r\n' },
  'two recipients': { from: 'sender@client.test', to: ['a@example.com', 'b@example.com'], text: 'Subject: case-two\r\n\r\nbody\r\n' },
  'null sender': { from: '', to: ['user@example.com'], text: 'Subject: case-null\r\n\r\nbody\r\n' },
  'quoted local part': { from: '"a b"@client.test', to: ['user@example.com'], text: 'Subject: case-quoted\r\n\r\nbody\r\n' },
  'resent headers': { from: 'sender@client.test', to: ['user@example.com'], text: 'Subject: case-resent\r\nResent-From: r@client.test\r\nFrom: f@client.test\r\n\r\nbody\r\n' },
  'Cc only': { from: 'sender@client.test', to: ['user@example.com'], text: 'Subject: case-cc\r\nCc: c@example.com\r\n\r\nbody\r\n' },
  'unqualified header addresses': { from: 'sender@client.test', to: ['user@example.com'], text: 'Subject: case-unqualified\r\nFrom: Some One <someone>\r\nTo: user, a@b, "Q" <c@d.test>\r\nCc: e@f (c)\r\nReply-To: g\r\nMessage-ID: <m@client.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n' },
  'Return-Path and Bcc dropped': { from: 'sender@client.test', to: ['user@example.com'], text: 'Subject: case-drop\r\nReturn-Path: <x@y.test>\r\nBcc: hidden@example.com\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <given@client.test>\r\nFrom: f@client.test\r\nTo: t@example.com\r\n\r\nbody\r\n' },
};

/** The header section of the sink's copy of the message with this Subject, normalised. */
async function headersOf(sink: SmtpSink, subject: string, queueId: string, myhostname: string): Promise<string[]> {
  await sink.waitFor(() => sink.messages.some((m) => m.data.includes(`Subject: ${subject}\r\n`)), 30_000);
  const data = sink.messages.find((m) => m.data.includes(`Subject: ${subject}\r\n`))!.data.toString('latin1');
  const head = data.slice(0, data.indexOf('\r\n\r\n'));
  return head
    .split(/\r\n(?![ \t])/)
    .map((h) => h
      .replaceAll(queueId, 'QUEUEID')
      .replaceAll(myhostname, 'MYHOSTNAME')
      .replace('(Postfix)', '(Postactor)')
      .replace('(Postfix, from userid', '(Postactor, from userid')
      .replace(/-p[fa]$/, '')
      .replace(/(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), +\d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([^)]*\)/, 'DATE'));
}

/** One message in a session without HELO or EHLO (smtpd_helo_required = no). */
async function sendWithoutHelo(port: number, from: string, to: string[], text: string): Promise<Reply> {
  const { smtp } = await SmtpDialogue.connect(port);
  try {
    for (const line of [`MAIL FROM:<${from}>`, ...to.map((t) => `RCPT TO:<${t}>`), 'DATA']) {
      const r = await smtp.cmd(line);
      if (r.code !== 250 && r.code !== 354) return r;
    }
    smtp.write(`${text}.\r\n`);
    const r = await smtp.read();
    await smtp.cmd('QUIT').catch(() => undefined);
    return r;
  } finally {
    smtp.close();
  }
}

async function collect(port: number, sink: SmtpSink, myhostname: string, tag: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [name, c] of Object.entries(CASES)) {
    const text = c.text.replace(/Subject: (case-\w+)/, `Subject: $1-${tag}`);
    const subject = /Subject: (\S+)/.exec(text)![1]!;
    const id = queuedId(c.noHelo ? await sendWithoutHelo(port, c.from, c.to, text) : await sendRaw(port, c.from, c.to, text));
    out[name] = await headersOf(sink, subject, id, myhostname);
  }
  return out;
}

const VARIANTS: Record<string, Record<string, string>> = {
  'local_header_rewrite_clients (loopback)': {},
  'a remote client': { local_header_rewrite_clients: 'permit_sasl_authenticated' },
  'a remote client, always_add_missing_headers = yes': { local_header_rewrite_clients: 'permit_sasl_authenticated', always_add_missing_headers: 'yes' },
  'undisclosed_recipients_header': { undisclosed_recipients_header: 'To: undisclosed-recipients:;' },
  'append_dot_mydomain = yes': { append_dot_mydomain: 'yes', mydomain: 'example.net' },
  'remote_header_rewrite_domain, a remote client': { local_header_rewrite_clients: 'permit_sasl_authenticated', remote_header_rewrite_domain: 'remote.example' },
  'undisclosed_recipients_header, a remote client': { local_header_rewrite_clients: 'permit_sasl_authenticated', undisclosed_recipients_header: 'To: undisclosed-recipients:;' },
};

const RECEIVED = 'Received: from client.test (localhost [127.0.0.1])\r\n\tby MYHOSTNAME (Postactor) with ESMTP id QUEUEID\r\n\tfor <user@example.com>; DATE';
const ADDED = ['Message-Id: <QUEUEID@MYHOSTNAME>', 'Date: DATE'];
const UNDISCLOSED = 'To: undisclosed-recipients:;';

/** The key header lines of each variant, asserted on both MTAs' output. */
function addsMissing(h: Record<string, string[]>, undisclosed: boolean): void {
  const to = undisclosed ? [UNDISCLOSED] : [];
  assert.deepEqual(h['no headers at all'], [RECEIVED, 'Subject: case-bare', ...ADDED, 'From: sender@client.test', ...to]);
  // Several recipients: none named, the date on the third line.
  assert.deepEqual(h['two recipients']!.slice(0, 1), ['Received: from client.test (localhost [127.0.0.1])\r\n\tby MYHOSTNAME (Postactor) with ESMTP id QUEUEID;\r\n\tDATE']);
  assert.deepEqual(h['null sender']!.slice(2), [...ADDED, 'From: MAILER-DAEMON', ...to]);
  assert.deepEqual(h['quoted local part']!.slice(2), [...ADDED, 'From: "a b"@client.test', ...to]);
  // A resent message gets the Resent- versions.
  assert.deepEqual(h['resent headers']!.slice(2), ['Resent-From: r@client.test', 'From: f@client.test', 'Resent-Message-Id: <QUEUEID@MYHOSTNAME>', 'Resent-Date: DATE', ...to]);
  assert.deepEqual(h['Cc only']!.slice(2), ['Cc: c@example.com', ...ADDED, 'From: sender@client.test']);
}

function addsNothing(h: Record<string, string[]>): void {
  assert.deepEqual(h['no headers at all'], [RECEIVED, 'Subject: case-bare']);
  assert.deepEqual(h['resent headers']!.slice(2), ['Resent-From: r@client.test', 'From: f@client.test']);
}

function common(h: Record<string, string[]>): void {
  // Without HELO the client's name stands in for it, and the protocol is SMTP.
  assert.deepEqual(h['no HELO']![0], 'Received: from localhost (localhost [127.0.0.1])\r\n\tby MYHOSTNAME (Postactor) with SMTP id QUEUEID\r\n\tfor <user@example.com>; DATE');
  // Return-Path and Bcc dropped, everything else kept as it came.
  assert.deepEqual(h['Return-Path and Bcc dropped'], [RECEIVED, 'Subject: case-drop', 'Date: Mon, 1 Jan 2024 00:00:00 +0000', 'Message-ID: <given@client.test>', 'From: f@client.test', 'To: t@example.com']);
}

/** Header addresses in the local header rewrite context ("user" → "user@$myorigin"), or untouched. */
function rewritten(h: Record<string, string[]>, local: boolean, dot = ''): void {
  assert.deepEqual(h['unqualified header addresses']!.slice(2, 6), local
    ? ['From: Some One <someone@MYHOSTNAME>', `To: user@MYHOSTNAME, a@b${dot}, "Q" <c@d.test>`, `Cc: e@f${dot} (c)`, 'Reply-To: g@MYHOSTNAME']
    : ['From: Some One <someone>', 'To: user, a@b, "Q" <c@d.test>', 'Cc: e@f (c)', 'Reply-To: g']);
}

const EXPECT: Record<string, (h: Record<string, string[]>) => void> = {
  'local_header_rewrite_clients (loopback)': (h) => { common(h); addsMissing(h, false); rewritten(h, true); },
  'a remote client': (h) => { common(h); addsNothing(h); rewritten(h, false); },
  'a remote client, always_add_missing_headers = yes': (h) => { common(h); addsMissing(h, false); rewritten(h, false); },
  'undisclosed_recipients_header': (h) => { common(h); addsMissing(h, true); },
  'append_dot_mydomain = yes': (h) => { common(h); rewritten(h, true, '.example.net'); },
  // The remote context: unqualified addresses get remote_header_rewrite_domain, and missing
  // headers are added as in the local context (Postfix's hdr_rewrite_context is set).
  'remote_header_rewrite_domain, a remote client': (h) => {
    common(h);
    addsMissing(h, false);
    assert.deepEqual(h['unqualified header addresses']!.slice(2, 6), ['From: Some One <someone@remote.example>', 'To: user@remote.example, a@b, "Q" <c@d.test>', 'Cc: e@f (c)', 'Reply-To: g@remote.example']);
  },
  'undisclosed_recipients_header, a remote client': (h) => { common(h); addsNothing(h); },
};

for (const [variant, settings] of Object.entries(VARIANTS)) {
  describe(`cleanup's headers: Postactor and Postfix side by side, ${variant}`, { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
    let pfSink: SmtpSink;
    let paSink: SmtpSink;
    let postfix: MtaHandle;
    let server: TestServer;
    let pair: SideBySide | undefined;
    const pfHost = 'postfix-peer.localdomain';
    const paHost = 'mx.postactor.test';

    before(async () => {
      // Postactor makes long queue IDs only (and Message-IDs of their form).
      pair = await sideBySide({ settings, postfixOnly: { enable_long_queue_ids: 'yes' }, sink: { keepMessages: true } });
      ({ postfix, server, pfSink, paSink } = pair);
    });

    after(async () => {
      await pair?.close();
    });

    test('the same header sections', async () => {
      const fromPostfix = await collect(postfix.port, pfSink, pfHost, 'pf');
      const fromPostactor = await collect(server.port, paSink, paHost, 'pa');
      assert.deepEqual(fromPostactor, fromPostfix);
      EXPECT[variant]!(fromPostactor);
      EXPECT[variant]!(fromPostfix);
    });
  });
}

/** sendmail(1) with its arguments and input; resolves with its exit status and stderr. */
function sendmail(bin: string, args: string[], input: string, env: Record<string, string> = {}): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (status) => resolve({ status, stderr }));
    c.stdin.on('error', () => { /* sendmail may exit before reading everything */ });
    c.stdin.end(input);
  });
}

const SUBMISSIONS: Record<string, { args: string[]; text: string }> = {
  'a full name (-F), no headers': { args: ['-F', 'Joe Q. Public', '-f', 'joe', 'user@example.com'], text: 'Subject: sm-full\n\nbody\n' },
  'a plain full name (-F)': { args: ['-F', 'Joe Public', '-f', 'joe@client.test', 'user@example.com'], text: 'Subject: sm-plain\n\nbody\n' },
  'no full name, unqualified header addresses': { args: ['-f', 'joe', 'user@example.com'], text: 'Subject: sm-bare\nTo: someone\n\nbody\n' },
  'resent, -t': { args: ['-t', '-f', 'joe'], text: 'Subject: sm-resent\nResent-To: user@example.com\nFrom: f@client.test\n\nbody\n' },
};

describe("cleanup's headers of a local submission: Postactor's and Postfix's sendmail side by side", { skip: needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, () => {
  let pfSink: SmtpSink;
  let paSink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let pair: SideBySide | undefined;
  const settings = { myorigin: 'origin.example' };

  before(async () => {
    pair = await sideBySide({ settings, postfixOnly: { enable_long_queue_ids: 'yes' }, sink: { keepMessages: true }, server: { masterCfExtra: 'pickup unix n - n 60 1 pickup' } });
    ({ postfix, server, pfSink, paSink } = pair);
  });

  after(async () => {
    await pair?.close();
  });

  async function submitAll(bin: string, configArgs: string[], env: Record<string, string>, sink: SmtpSink, myhostname: string, tag: string): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const [name, c] of Object.entries(SUBMISSIONS)) {
      const text = c.text.replace(/Subject: (sm-\w+)/, `Subject: $1-${tag}`);
      const subject = /Subject: (\S+)/.exec(text)![1]!;
      const r = await sendmail(bin, [...configArgs, ...c.args], text, env);
      assert.equal(r.status, 0, r.stderr);
      await sink.waitFor(() => sink.messages.some((m) => m.data.includes(`Subject: ${subject}\r\n`)), 30_000);
      const data = sink.messages.find((m) => m.data.includes(`Subject: ${subject}\r\n`))!.data.toString('latin1');
      const id = /\tid (\S+);/.exec(data)?.[1] ?? 'none';
      out[name] = await headersOf(sink, subject, id, myhostname);
    }
    return out;
  }

  test('the same header sections', async () => {
    const fromPostfix = await submitAll('/usr/sbin/sendmail', [], { MAIL_CONFIG: `${postfix.dir}/etc` }, pfSink, 'postfix-peer.localdomain', 'pf');
    const fromPostactor = await submitAll(join(REPO_ROOT, 'bin', 'sendmail'), ['-C', server.dir], {}, paSink, 'mx.postactor.test', 'pa');
    assert.deepEqual(fromPostactor, fromPostfix);
    for (const h of [fromPostactor, fromPostfix]) {
      const uid = process.getuid!();
      const received = `Received: by MYHOSTNAME (Postactor, from userid ${uid})\r\n\tid QUEUEID; DATE`;
      // -F: the full name as the phrase, quoted when it has specials; the sender qualified with $myorigin.
      assert.deepEqual(h['a full name (-F), no headers'], [received, 'Subject: sm-full', 'Message-Id: <QUEUEID@MYHOSTNAME>', 'Date: DATE', 'From: "Joe Q. Public" <joe@origin.example>']);
      assert.equal(h['a plain full name (-F)']![4], 'From: Joe Public <joe@client.test>');
      // Header addresses of a local submission are qualified as trivial-rewrite's local context does.
      assert.equal(h['no full name, unqualified header addresses']![2], 'To: someone@origin.example');
      assert.match(h['no full name, unqualified header addresses']![5]!, /^From: .*<joe@origin\.example>$/);
      assert.deepEqual(h['resent, -t']!.slice(2, 6), ['Resent-To: user@example.com', 'From: f@client.test', 'Resent-Message-Id: <QUEUEID@MYHOSTNAME>', 'Resent-Date: DATE']);
      assert.match(h['resent, -t']![6]!, /^Resent-From: .*<joe@origin\.example>$/);
    }
  });
});
