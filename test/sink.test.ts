import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import nodemailer from 'nodemailer';

import { SmtpSink } from '../src/smtp/sink.js';

function transport(port: number, extra: Record<string, unknown> = {}) {
  return nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, connectionTimeout: 2000, greetingTimeout: 2000, socketTimeout: 3000, ...extra });
}

/** Talks raw SMTP: sends `input` in one write, returns everything the server said until it closes. */
function raw(port: number, input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { out += d; });
    s.on('error', reject);
    s.on('close', () => resolve(out));
    s.once('data', () => s.write(input));
    setTimeout(() => s.destroy(), 3000).unref();
  });
}

test('a message sent with nodemailer arrives with its body intact', async () => {
  const sink = new SmtpSink({ keepMessages: true });
  const port = await sink.listen(0);
  const seen: string[] = [];
  sink.on('message', (m: { sender: string }) => seen.push(m.sender));
  try {
    const text = 'line one\n.leading dot\n..two dots\n.\nlast';
    const info = await transport(port).sendMail({ from: 'a@x.test', to: ['b@y.test', 'c@y.test'], subject: 'hello', text });
    assert.deepEqual(info.accepted, ['b@y.test', 'c@y.test']);
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as \d+/);
    assert.equal(sink.messages.length, 1);
    const m = sink.messages[0]!;
    assert.equal(m.sender, 'a@x.test');
    assert.deepEqual(m.recipients, ['b@y.test', 'c@y.test']);
    assert.equal(m.remoteAddress, '127.0.0.1');
    const data = m.data.toString();
    assert.match(data, /^Subject: hello\r$/m);
    assert.ok(data.includes('\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n.\r\nlast'), data);
    assert.ok(data.endsWith('\r\n'));
    assert.equal(data.replace(/\r\n/g, '').includes('\n'), false, 'CRLF only');
    assert.deepEqual(seen, ['a@x.test']);
  } finally {
    await sink.close();
  }
});

test('stats count connections, messages, recipients, bytes and rejections', async () => {
  const sink = new SmtpSink({ rcptReply: (r) => (r.startsWith('no') ? '550 5.1.1 User unknown' : null) });
  const port = await sink.listen(0);
  try {
    const t = transport(port, { pool: true, maxConnections: 1 });
    for (let i = 0; i < 3; i++) {
      const info = await t.sendMail({ from: 'a@x.test', to: ['b@y.test', 'nobody@y.test'], subject: `m${i}`, text: 'x' });
      assert.deepEqual(info.rejected, ['nobody@y.test']);
    }
    t.close();
    await sink.waitFor((s) => s.messages === 3, 2000);
    assert.equal(sink.stats.connections, 1);
    assert.equal(sink.stats.messages, 3);
    assert.equal(sink.stats.recipients, 3);
    assert.equal(sink.stats.rejectedRecipients, 3);
    assert.ok(sink.stats.bytes > 3 * 50);
    assert.equal(sink.messages.length, 0, 'messages are not kept by default');
    await assert.rejects(sink.waitFor((s) => s.messages > 3, 50), /stats \{"connections":1,"messages":3/);
  } finally {
    await sink.close();
  }
});

test('above maxConnections the sink answers 421 and closes', async () => {
  const sink = new SmtpSink({ maxConnections: 1, blackHole: false });
  const port = await sink.listen(0);
  const hold = net.connect(port, '127.0.0.1');
  try {
    await new Promise((r) => hold.once('data', r));
    await assert.rejects(transport(port).sendMail({ from: 'a@x.test', to: 'b@y.test', text: 'x' }), (e: Error & { responseCode?: number }) => {
      assert.match(e.message, /421/);
      return true;
    });
    assert.equal(sink.stats.messages, 0);
  } finally {
    hold.destroy();
    await sink.close();
  }
});

test('pipelined commands split anywhere get replies in order', async () => {
  const sink = new SmtpSink({ keepMessages: true });
  const port = await sink.listen(0);
  try {
    const out = await raw(port, 'EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n..dot\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nHELP\r\nQUIT\r\n');
    const codes = out.split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => l.slice(0, 3));
    assert.deepEqual(codes, ['220', '250', '250', '250', '354', '250', '250', '250', '502', '221']);
    assert.match(out, /250-PIPELINING\r\n250-SIZE \d+\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 DSN/);
    assert.equal(sink.messages[0]!.data.toString(), '.dot\r\nbody\r\n');

    // The same conversation one byte per write.
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { got += d; });
    await new Promise((r) => s.once('data', r));
    for (const ch of 'HELO x\r\nMAIL FROM:<c@x>\r\nRCPT TO:<d@y>\r\nDATA\r\n..\r\n.\r\n') {
      s.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    await sink.waitFor((st) => st.messages === 2, 2000);
    s.end('QUIT\r\n');
    await new Promise((r) => s.on('close', r));
    assert.equal(sink.messages[1]!.data.toString(), '.\r\n');
    assert.match(got, /221 2\.0\.0 Bye\r\n$/);
  } finally {
    await sink.close();
  }
});

test('protocol errors: commands out of order, no valid recipients', async () => {
  const sink = new SmtpSink({ rcptReply: () => '550 5.1.1 no' });
  const port = await sink.listen(0);
  try {
    const out = await raw(port, 'MAIL FROM:<a@x>\r\nEHLO x\r\nRCPT TO:<b@y>\r\nMAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nQUIT\r\n');
    const codes = out.split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => l.slice(0, 3));
    assert.deepEqual(codes, ['220', '503', '250', '503', '250', '503', '550', '554', '221']);
  } finally {
    await sink.close();
  }
});

test('dataDelayMs holds the end-of-data reply', async () => {
  const sink = new SmtpSink({ dataDelayMs: 150 });
  const port = await sink.listen(0);
  try {
    const t0 = Date.now();
    await transport(port).sendMail({ from: 'a@x.test', to: 'b@y.test', text: 'x' });
    assert.ok(Date.now() - t0 >= 140);
  } finally {
    await sink.close();
  }
});

test('bin/sink prints totals on SIGTERM and rejects bad flags', async () => {
  const bin = fileURLToPath(new URL('../bin/sink.js', import.meta.url));
  const node = process.execPath;
  const bad = spawn(node, [bin, '--bogus'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  bad.stderr.on('data', (d) => { err += d; });
  const badCode = await new Promise((r) => bad.on('exit', r));
  assert.equal(badCode, 2);
  assert.match(err, /usage: sink/);

  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise((r) => free.close(r));
  const child = spawn(node, [bin, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  try {
    for (let i = 0; i < 50 && !out.includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
    await transport(port).sendMail({ from: 'a@x.test', to: 'b@y.test', text: 'x' });
    for (let i = 0; i < 30 && !out.includes('rate='); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /messages=1 .*rate=1\/s/);
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.on('exit', r));
    assert.equal(code, 0);
    assert.match(out, /sink: total connections=1 messages=1 recipients=1/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
