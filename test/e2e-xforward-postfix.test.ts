/**
 * XFORWARD both ways and CHUNKING side by side, with Debian's Postfix as the real peer
 * (bench/postfix-peer.sh):
 *
 *   swaks ─XCLIENT→ Postactor :A ─smtp+XFORWARD→ Postfix :P ─smtp+XFORWARD→ Postactor :B ─content_filter→ sink
 *
 * swaks names an original client with XCLIENT; Postactor's smtp client (smtp_send_xforward_command
 * = yes) forwards it to Postfix, whose log must show it as orig_client with Postactor's queue ID
 * as orig_queue_id (smtpd_authorized_xforward_hosts = 127.0.0.0/8); Postfix's own smtp client
 * (smtp_send_xforward_command = yes) forwards it on to Postactor's second smtpd, whose log must
 * show the same. Then the same BDAT dialogues go to Postfix's smtpd and to Postactor's, and
 * every reply must be the same (queue IDs and host names aside).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startPostfix } from '../bench/relay/postfix.js';
import type { MtaHandle } from '../bench/relay/mta.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { needs } from './helpers/peers.js';
import { runClient } from './helpers/run-client.js';
import { deliveredWithSubject, freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const NO_PEERS = needs('/usr/sbin/postfix', "Debian's Postfix, the peer") || needs('/usr/bin/swaks', 'swaks');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('XFORWARD and CHUNKING with Postfix as the peer', { skip: NO_PEERS || (process.getuid?.() !== 0 ? 'Postfix\'s master needs root' : false) }, () => {
  let sink: SmtpSink;
  let postfix: MtaHandle;
  let server: TestServer;
  let returnPort = 0;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    const postfixPort = await freePort();
    returnPort = await freePort();
    postfix = await startPostfix({
      sinkPort: returnPort,
      port: postfixPort,
      extraMainCf: [
        'smtpd_authorized_xforward_hosts = 127.0.0.0/8',
        'smtpd_authorized_xclient_hosts = 127.0.0.0/8',
        'smtp_send_xforward_command = yes',
        // The misuse dialogues make errors on purpose: no sleeping on either side.
        'smtpd_error_sleep_time = 0',
      ].join('\n'),
    });
    server = await startServer({
      sinkPort: postfixPort,
      mainCf: {
        smtp_send_xforward_command: 'yes',
        smtpd_authorized_xclient_hosts: '127.0.0.0/8',
        smtpd_authorized_xforward_hosts: '127.0.0.0/8',
        relay_domains: 'example.com',
        smtpd_error_sleep_time: '0',
      },
      // The return smtpd of the loop: what comes back goes to the sink, not to Postfix again.
      masterCfExtra: `127.0.0.1:${returnPort} inet n - n - 1 smtpd -o content_filter=smtp:[127.0.0.1]:${sinkPort}`,
    });
  });
  after(async () => {
    await server?.stop();
    await postfix?.stop();
    await sink?.close();
  });

  const postfixLog = () => readFileSync(join(postfix.dir, 'maillog'), 'latin1');
  async function waitForPostfixLog(re: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = postfixLog().split('\n').find((l) => re.test(l));
      if (line) return line;
      if (Date.now() > deadline) throw new Error(`no Postfix log line matching ${re}:\n${postfixLog().split('\n').slice(-20).join('\n')}`);
      await sleep(100);
    }
  }

  test('the original client travels Postactor → Postfix → Postactor by XFORWARD', async () => {
    const r = await runClient('swaks', [
      '--server', `127.0.0.1:${server.port}`, '--from', 'origin@example.org', '--to', 'rcpt@example.com',
      '--xclient-addr', '192.0.2.7', '--xclient-name', 'origin.example.org', '--xclient-helo', 'origin-helo.example.org',
      '--xclient-proto', 'ESMTP', '--header', 'Subject: around the loop', '--body', 'hello',
    ], '');
    assert.equal(r.code, 0, r.out);
    const first = /250 2\.0\.0 Ok: queued as (\S+)/.exec(r.out)?.[1];
    assert.ok(first, r.out);
    // Postfix heard it from Postactor's smtp client (localhost), forwarded from the original client.
    await waitForPostfixLog(new RegExp(`postfix/smtpd\\[\\d+\\]: \\w+: client=\\S+\\[127\\.0\\.0\\.1\\], orig_queue_id=${first}, orig_client=origin\\.example\\.org\\[192\\.0\\.2\\.7\\]`), 30_000);
    // …and forwarded it on: Postactor's return smtpd logs the same origin and first queue ID.
    await server.waitForLog(new RegExp(`postactor/smtpd\\[\\d+\\]: \\w+: client=\\S+\\[127\\.0\\.0\\.1\\], orig_queue_id=${first}, orig_client=origin\\.example\\.org\\[192\\.0\\.2\\.7\\]$`), 30_000);
    const msg = await deliveredWithSubject(sink, 'around the loop');
    // Each Received names the host that connected; the first the XCLIENT client.
    assert.match(msg, /Received: from \S+ \(origin\.example\.org \[192\.0\.2\.7\]\)/);
  });

  /** One dialogue step: bytes to send, and how many replies they get. */
  type Step = [send: string, replies: number];
  const bdat = (content: string, last = false) => `BDAT ${Buffer.byteLength(content)}${last ? ' LAST' : ''}\r\n${content}`;
  const BDAT_STEPS: Step[] = [
    ['MAIL FROM:<a@example.org>\r\n', 1],
    ['RCPT TO:<b@example.com>\r\n', 1],
    ['BDAT 0\r\n', 1],
    ['BDAT 5\r\nabcde', 1],
    ['MAIL FROM:<x@example.org>\r\n', 1],
    ['RCPT TO:<x@example.com>\r\n', 1],
    ['DATA\r\n', 1],
    ['BDAT 3 LAST\r\nxyz', 1],
    // (Postfix 3.7 leaves the recipient count of the failed transaction behind here, which
    // later versions reset: RSET makes both start afresh.)
    ['RSET\r\n', 1],
    ['BDAT 12\r\nHELO there\r\n', 1],
    ['MAIL FROM:<a@example.org>\r\n', 1],
    ['RCPT TO:<b@example.com>\r\n', 1],
    ['RSET\r\n', 1],
    ['BDAT 12 LAST\r\nHELO there\r\n', 1],
    ['MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n', 2],
    [bdat('Subject: bdat side by side\r\n\r\nline one'), 1],
    [bdat('\r\n.\r\nend\r\n') + bdat('', true), 2],
    ['BDAT 1 LAST x\r\n', 1],
  ];

  /** Postfix's and Postactor's replies to the steps, queue IDs and greetings made equal. */
  async function replies(port: number, steps: Step[], closes: boolean): Promise<string[]> {
    const { smtp, greeting } = await SmtpDialogue.connect(port, { timeoutMs: 10_000 });
    assert.equal(greeting.code, 220);
    const ehlo = await smtp.cmd('EHLO client.test');
    assert.ok(ehlo.lines.includes('CHUNKING'), ehlo.lines.join('|'));
    const out: string[] = [];
    for (const [send, n] of steps) {
      smtp.write(send);
      for (let i = 0; i < n; i++) {
        const r = await smtp.read().catch((e: Error) => { throw new Error(`port ${port} after ${JSON.stringify(send)} (replies so far: ${out.join(' | ')}): ${e.message}`); });
        out.push(r.line.replace(/queued as \S+/, 'queued as ID').replace(/^220 .*/, '220 (greeting)'));
      }
    }
    if (closes) await assert.rejects(smtp.read(), /connection closed/);
    smtp.close();
    return out;
  }

  test('BDAT: the same dialogue gets the same replies from Postfix\'s smtpd and from Postactor\'s', async () => {
    const fromPostfix = await replies(postfix.port, BDAT_STEPS, true);
    const fromPostactor = await replies(server.port, BDAT_STEPS, true);
    assert.deepEqual(fromPostactor, fromPostfix);
    assert.ok(fromPostactor.includes('250 2.0.0 Ok: 38 bytes'), fromPostactor.join('\n'));
  });

  const X_STEPS: Step[] = [
    ...['XCLIENT', 'XFORWARD'].flatMap((cmd): Step[] => [
      [`${cmd}\r\n`, 1],
      [`${cmd} NAME\r\n`, 1],
      [`${cmd} FOO=bar\r\n`, 1],
      [`${cmd} ADDR=300.1.2.3\r\n`, 1],
      [`${cmd} PORT=7x\r\n`, 1],
      [`${cmd} NAME=bad..name\r\n`, 1],
      [`${cmd} HELO=${'h'.repeat(256)}\r\n`, 1],
    ]),
    ['XCLIENT PROTO=LMTP\r\n', 1],
    ['XFORWARD SOURCE=ELSEWHERE\r\n', 1],
    ['XFORWARD NAME=spike.example.org ADDR=192.0.2.9 PORT=1234\r\n', 1],
    ['XFORWARD PROTO=ESMTP HELO=spike.example.org IDENT=ABC SOURCE=REMOTE\r\n', 1],
    ['MAIL FROM:<a@example.org>\r\n', 1],
    ['XFORWARD ADDR=192.0.2.1\r\n', 1],
    ['XCLIENT ADDR=192.0.2.1\r\n', 1],
    ['RSET\r\n', 1],
    // The new client is outside the authorized list: no more XCLIENT, and HELO was reset.
    ['XCLIENT ADDR=192.0.2.66 NAME=[UNAVAILABLE] HELO=[UNAVAILABLE]\r\n', 1],
    ['XCLIENT ADDR=127.0.0.1\r\n', 1],
    // XFORWARD stays with the host that connected (Postfix decides it once per connection).
    ['XFORWARD ADDR=127.0.0.1\r\n', 1],
    ['MAIL FROM:<a@example.org>\r\n', 1],
  ];

  test('XCLIENT and XFORWARD: the same replies from Postfix\'s smtpd and from Postactor\'s', async () => {
    const fromPostfix = await replies(postfix.port, X_STEPS, false);
    const fromPostactor = await replies(server.port, X_STEPS, false);
    assert.deepEqual(fromPostactor, fromPostfix);
    assert.ok(fromPostactor.includes('220 (greeting)'), fromPostactor.join('\n'));
  });
});
