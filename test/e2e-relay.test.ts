/**
 * End to end, relaying: mail submitted to a running server (child process) over SMTP arrives at
 * the next hop (the project's SmtpSink, as relayhost) once per recipient, byte-intact apart from
 * the Received header that cleanup puts on top.
 */
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { startServer, type TestServer } from './helpers/server.js';

const SESSIONS = 10;
const PER_SESSION = 20;
const TOTAL = SESSIONS * PER_SESSION;

/** The first header field (with its folded continuation lines), and the rest. */
function splitFirstHeader(data: Buffer): { first: string; rest: Buffer } {
  let pos = 0;
  for (;;) {
    const nl = data.indexOf('\r\n', pos);
    assert.ok(nl >= 0, 'message has a header section');
    pos = nl + 2;
    if (data[pos] !== 0x20 && data[pos] !== 0x09) break;
  }
  return { first: data.subarray(0, pos).toString('latin1'), rest: data.subarray(pos) };
}

function messageFor(i: number): { id: string; to: string[]; raw: Buffer } {
  const id = `relay-${String(i).padStart(3, '0')}`;
  const to = i % 5 === 0 ? [`rcpt${i}a@example.com`, `rcpt${i}b@example.net`] : [`rcpt${i}@example.com`];
  const body = [
    `Message ${i} of ${TOTAL}.`,
    '.a line that starts with a dot (dot-stuffed on the wire)',
    '..two dots',
    'x'.repeat(50 + (i * 37) % 900),
    `Trailing spaces kept:   `,
    `unicode bytes: \u00e9\u00e8 ${i}`,
    '',
    '-- ',
    'sender',
    '',
  ].join('\r\n');
  const headers = [
    `From: Sender ${i} <sender${i}@example.org>`,
    `To: ${to.map((t) => `<${t}>`).join(', ')}`,
    `Subject: ${id} subject with  two spaces and (parens) ${'y'.repeat(i % 13)}`,
    `Message-ID: <${id}@client.example.org>`,
    `Date: Tue, 24 Nov 2026 10:00:00 +0000`,
    `X-Test-Id: ${id}`,
    `X-Folded: first part`,
    `\tsecond part ${i}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
  ].join('\r\n');
  return { id, to, raw: Buffer.from(headers + '\r\n\r\n' + body, 'utf8') };
}

function testId(m: SinkMessage): string {
  const match = /^X-Test-Id: (\S+)/m.exec(m.data.toString('latin1'));
  assert.ok(match, 'sink message has X-Test-Id');
  return match[1]!;
}

describe('e2e relay', () => {
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({ sinkPort });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('200 messages over 10 concurrent nodemailer sessions reach the next hop once per recipient, byte-intact under a new Received header', async () => {
    const messages = Array.from({ length: TOTAL }, (_, i) => messageFor(i));
    const expectedRecipients = messages.reduce((n, m) => n + m.to.length, 0);
    const queuedIds = new Set<string>();
    await Promise.all(Array.from({ length: SESSIONS }, async (_, s) => {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true, name: 'client.test', pool: true, maxConnections: 1, maxMessages: Infinity });
      try {
        for (let k = 0; k < PER_SESSION; k++) {
          const m = messages[s * PER_SESSION + k]!;
          const info = await transport.sendMail({ envelope: { from: `sender${s}@example.org`, to: m.to }, raw: m.raw });
          const q = /^250 2\.0\.0 Ok: queued as (\S+)$/.exec(info.response);
          assert.ok(q, `queued reply for ${m.id}: ${info.response}`);
          queuedIds.add(q[1]!);
        }
      } finally {
        transport.close();
      }
    }));
    assert.equal(queuedIds.size, TOTAL, 'every message got its own queue ID');

    await sink.waitFor((st) => st.recipients >= expectedRecipients, 60_000);
    // Wait a moment for any duplicate to show up, then compare.
    await server.waitForLogCount(/: removed$/, TOTAL, 10_000);
    const byRecipient = new Map<string, number>();
    const byId = new Map<string, SinkMessage>();
    for (const m of sink.messages) {
      const id = testId(m);
      for (const r of m.recipients) byRecipient.set(`${id} ${r}`, (byRecipient.get(`${id} ${r}`) ?? 0) + 1);
      byId.set(id, m);
    }
    for (const m of messages) {
      for (const r of m.to) assert.equal(byRecipient.get(`${m.id} ${r}`), 1, `${m.id} reached ${r} exactly once`);
      const got = byId.get(m.id)!;
      const { first, rest } = splitFirstHeader(got.data);
      assert.match(first, /^Received: from client\.test \(localhost \[127\.0\.0\.1\]\)\r\n\tby mx\.postactor\.test \(Postactor\) with ESMTP id [0-9A-Za-z]+/);
      // One recipient: "for <rcpt>" as in Postfix; several: no "for".
      if (m.to.length === 1) assert.match(first, new RegExp(`\\r\\n\\tfor <${m.to[0]!.replace(/\./g, '\\.')}>; `));
      else assert.doesNotMatch(first, /\tfor </);
      const qid = /with ESMTP id ([0-9A-Za-z]+)/.exec(first)![1]!;
      assert.ok(queuedIds.has(qid), `Received id ${qid} is a queue ID smtpd announced`);
      assert.ok(rest.equals(m.raw.subarray(0, m.raw.length)) || rest.equals(Buffer.concat([m.raw, Buffer.from('\r\n')])),
        `${m.id}: content after the Received header is byte-identical\n--- sent\n${m.raw.toString('latin1')}\n--- got\n${rest.toString('latin1')}`);
    }
    assert.equal(sink.stats.recipients, expectedRecipients, 'no extra deliveries');
  });

  test('large messages (through smtpd\'s spool file, several at once) reach the next hop byte-intact', async () => {
    // Sizes around and well beyond smtpd's in-memory part (spool.ts, 64 KiB), with lines that
    // start with dots and lines of every length up to 900 bytes (below smtp_line_length_limit).
    const sizes = [64 * 1024 - 10, 64 * 1024 + 1, 100 * 1024, 300 * 1024, 1200 * 1024, 100 * 1024 + 7, 200 * 1024];
    const big = sizes.map((size, i) => {
      const id = `large-${i}`;
      const head = `From: <big@example.org>\r\nTo: <big${i}@example.com>\r\nSubject: ${id}\r\nMessage-ID: <${id}@client.example.org>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nX-Test-Id: ${id}\r\n\r\n`;
      const lines: string[] = [];
      let n = head.length;
      for (let k = 0; n < size; k++) {
        const line = (k % 7 === 0 ? '.' : '') + String.fromCharCode(97 + ((k + i) % 26)).repeat((k * 131 + i) % 900) + `${k}`;
        lines.push(line);
        n += line.length + 2;
      }
      return { id, to: `big${i}@example.com`, raw: Buffer.from(head + lines.join('\r\n') + '\r\n', 'latin1') };
    });
    const before = new Set(sink.messages);
    await Promise.all(big.map(async (m) => {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true, name: 'client.test' });
      try {
        const info = await transport.sendMail({ envelope: { from: 'big@example.org', to: [m.to] }, raw: m.raw });
        assert.match(info.response, /^250 2\.0\.0 Ok: queued as \S+$/);
      } finally {
        transport.close();
      }
    }));
    await sink.waitFor(() => sink.messages.filter((m) => !before.has(m)).length >= big.length, 60_000);
    const got = new Map(sink.messages.filter((m) => !before.has(m)).map((m) => [testId(m), m]));
    for (const m of big) {
      const g = got.get(m.id);
      assert.ok(g, `${m.id} arrived`);
      assert.deepEqual(g.recipients, [m.to]);
      const { rest } = splitFirstHeader(g.data);
      assert.ok(rest.equals(m.raw), `${m.id} (${m.raw.length} bytes): content after the Received header is byte-identical (got ${rest.length} bytes)`);
    }
  });

  test('swaks sends one message: exit status 0, and the sink gets it', async () => {
    const before = sink.stats.messages;
    const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('swaks', ['--server', `127.0.0.1:${server.port}`, '--to', 'swaks-rcpt@example.com', '--from', 'swaks@example.org',
        '--helo', 'swaks.test', '--header', 'Subject: swaks-e2e', '--body', 'hello from swaks', '--timeout', '10'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stderr.on('data', (d) => { out += d; });
      const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
      p.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, out });
      });
    });
    assert.equal(result.code, 0, result.out);
    assert.match(result.out, /<- {2}250 2\.0\.0 Ok: queued as \S+/);
    await sink.waitFor((st) => st.messages > before, 15_000);
    const got = sink.messages.find((m) => m.data.toString('latin1').includes('Subject: swaks-e2e'));
    assert.ok(got, 'the sink has the swaks message');
    assert.deepEqual(got.recipients, ['swaks-rcpt@example.com']);
    assert.equal(got.sender, 'swaks@example.org');
    assert.match(got.data.toString('latin1'), /^Received: from swaks\.test \(localhost \[127\.0\.0\.1\]\)/);
  });
});
