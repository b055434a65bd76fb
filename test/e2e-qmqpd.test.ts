/**
 * qmqpd(8): the QMQP server, fed by Postfix's own load generator qmqp-source (Debian's postfix
 * package), relaying to the project's SmtpSink. Two qmqpd services on two ports: one whose
 * clients are authorized (main.cf qmqpd_authorized_clients = 127.0.0.0/8), one left at the
 * default (nobody: -o qmqpd_authorized_clients=), plus raw-socket clients for Postfix's replies
 * to a malformed packet and a silent client.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { loadConfig } from '../src/config/index.js';
import { checkConfig } from '../actors/master/index.js';
import { defaultMasterCf, freePort, startServer, type TestServer } from './helpers/server.js';
import { needs } from './helpers/peers.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('pa-qmqpd-check-');

const QMQP_SOURCE = '/usr/sbin/qmqp-source';

function qmqpSource(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(QMQP_SOURCE, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const t = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.on('error', reject);
    c.on('close', (code) => { clearTimeout(t); resolve({ code, stderr }); });
  });
}

/** Sends raw bytes, returns everything the server sent until it closed (bounded by 15 s). */
function rawExchange(port: number, data: string, opts: { keepOpen?: boolean } = {}): Promise<{ reply: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const s = net.connect(port, '127.0.0.1');
    let reply = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no close within 15 s; got ${JSON.stringify(reply)}`)); }, 15_000);
    s.on('connect', () => { if (opts.keepOpen) s.write(data); else s.end(data); });
    s.on('data', (d: Buffer) => { reply += d.toString('latin1'); });
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(t); resolve({ reply, ms: Date.now() - start }); });
  });
}

function ns(s: string): string {
  return `${Buffer.byteLength(s)}:${s},`;
}

describe('qmqpd: QMQP server', { skip: needs(QMQP_SOURCE, "Debian's postfix (qmqp-source)") }, () => {
  let sink: SmtpSink;
  let server: TestServer;
  let open: number;
  let closed: number;
  let slow: number;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    open = await freePort();
    closed = await freePort();
    slow = await freePort();
    server = await startServer({
      sinkPort,
      mainCf: { qmqpd_authorized_clients: '127.0.0.0/8', qmqpd_error_delay: '0s', header_checks: `regexp:${join(tempDir({ header_checks: '/^Subject: qmqp-reject/ REJECT\n' }), 'header_checks')}` },
      masterCfExtra: [
        `127.0.0.1:${open} inet n - n - 1 qmqpd`,
        `127.0.0.1:${closed} inet n - n - 1 qmqpd -o qmqpd_authorized_clients= -o qmqpd_error_delay=1s`,
        `127.0.0.1:${slow} inet n - n - 1 qmqpd -o qmqpd_timeout=1s -o qmqpd_client_port_logging=yes`,
      ].join('\n'),
    });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('qmqp-source: messages with one and with several recipients are queued and relayed, Received "with QMQP"', async () => {
    const one = await qmqpSource(['-m', '3', '-s', '2', '-f', 'list@example.org', '-t', 'one@example.com', `127.0.0.1:${open}`]);
    assert.equal(one.code, 0, one.stderr);
    const many = await qmqpSource(['-m', '1', '-r', '3', '-f', 'list@example.org', '-t', 'many@example.com', `127.0.0.1:${open}`]);
    assert.equal(many.code, 0, many.stderr);
    await sink.waitFor(() => sink.messages.length >= 4, 30_000);
    const singles = sink.messages.filter((m) => m.recipients.includes('one@example.com'));
    assert.equal(singles.length, 3);
    const m = singles[0]!;
    assert.equal(m.sender, 'list@example.org');
    const text = m.data.toString('latin1');
    // Postfix's qmqpd Received header: the recipient named when there is one.
    assert.match(text, /^Received: from localhost \(localhost \[127\.0\.0\.1\]\)\r\n\tby mx\.postactor\.test \(Postactor\) with QMQP id [0-9A-Za-z]+\r\n\tfor <one@example\.com>; /m);
    assert.match(text, /\r\nFrom: <list@example\.org>\r\n/);
    const multi = sink.messages.find((x) => x.recipients.some((r) => r.endsWith('many@example.com')))!;
    assert.deepEqual([...multi.recipients].sort(), ['0many@example.com', '1many@example.com', '2many@example.com']);
    assert.match(multi.data.toString('latin1'), /^Received: from localhost \(localhost \[127\.0\.0\.1\]\)\r\n\tby mx\.postactor\.test \(Postactor\) with QMQP\r\n\tid [0-9A-Za-z]+; /m);
    const lines = await server.waitForLogCount(/qmqpd\[\d+\]: [0-9A-Za-z]+: client=localhost\[127\.0\.0\.1\]$/, 4, 10_000);
    assert.equal(lines.length, 4);
    await server.waitForLogCount(/qmqpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\]$/, 4, 10_000);
    await server.waitForLog(/qmgr\[\d+\]: [0-9A-Za-z]+: from=<list@example\.org>, size=\d+, nrcpt=3 \(queue active\)/, 10_000);
  });

  test('an unauthorized client gets Postfix\'s refusal (D), after qmqpd_error_delay', async () => {
    const started = Date.now();
    const r = await qmqpSource(['-m', '1', '-f', 'list@example.org', '-t', 'nobody@example.com', `127.0.0.1:${closed}`]);
    assert.ok(Date.now() - started >= 900, 'the refusal waits qmqpd_error_delay = 1s');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /qmqp-source: fatal: unrecoverable error: Error: localhost\[127\.0\.0\.1\] is not authorized to use this service/);
    await server.waitForLog(/qmqpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]$/, 5000);
    assert.ok(!sink.messages.some((m) => m.recipients.includes('nobody@example.com')));
  });

  test('a malformed packet is answered D with Postfix\'s text and logged with the queue ID', async () => {
    const { reply } = await rawExchange(open, '12:x3:abc,');
    assert.equal(reply, ns('Dnetstring format error while receiving message content'));
    await server.waitForLog(/qmqpd\[\d+\]: [0-9A-Za-z]+: localhost\[127\.0\.0\.1\]: netstring format error while receiving message content$/, 5000);
    const none = await rawExchange(open, ns(ns('Subject: x\n\nbody\n') + ns('a@example.org')));
    assert.equal(none.reply, ns('DError: no recipients specified'));
    await server.waitForLog(/qmqpd\[\d+\]: warning: [0-9A-Za-z]+: localhost\[127\.0\.0\.1\]: Error: no recipients specified$/, 5000);
  });

  test('a raw QMQP packet: From_ line kept as X-Mailbox-Line, K reply with the queue ID', async () => {
    const msg = 'From someone Thu Dec  3 00:00:00 2026\nSubject: raw qmqp\n\nhello\n';
    const { reply } = await rawExchange(open, ns(ns(msg) + ns('raw@example.org') + ns('raw@example.com')));
    const m = /^\d+:KOk: queued as ([0-9A-Za-z]+),$/.exec(reply);
    assert.ok(m, JSON.stringify(reply));
    await sink.waitFor(() => sink.messages.some((x) => x.recipients.includes('raw@example.com')), 30_000);
    const text = sink.messages.find((x) => x.recipients.includes('raw@example.com'))!.data.toString('latin1');
    assert.match(text, new RegExp(`with QMQP id ${m[1]}\\r\\n`));
    assert.match(text, /\r\nX-Mailbox-Line: From someone Thu Dec  3 00:00:00 2026\r\nSubject: raw qmqp\r\n/);
    assert.match(text, /\r\n\r\nhello\r\n/);
  });

  test('a message cleanup refuses (header_checks REJECT) gets D with Postfix\'s "Error: 5.7.1 …" and a warning', async () => {
    const { reply } = await rawExchange(open, ns(ns('Subject: qmqp-reject\n\nbody\n') + ns('a@example.org') + ns('refused@example.com')));
    assert.equal(reply, ns('DError: 5.7.1 message content rejected'));
    await server.waitForLog(/qmqpd\[\d+\]: warning: [0-9A-Za-z]+: localhost\[127\.0\.0\.1\]: Error: 5\.7\.1 message content rejected$/, 5000);
    await server.waitForLog(/cleanup\[\d+\]: [0-9A-Za-z]+: reject: header Subject: qmqp-reject from localhost\[127\.0\.0\.1\]; from=<a@example\.org> to=<refused@example\.com> proto=QMQP: 5\.7\.1 message content rejected$/, 5000);
  });

  test('qmqpd_timeout: a client that stops sending is dropped; qmqpd_client_port_logging adds the port', async () => {
    const { reply } = await rawExchange(slow, '100:', { keepOpen: true });
    assert.equal(reply, '');
    await server.waitForLog(/qmqpd\[\d+\]: [0-9A-Za-z]+: localhost\[127\.0\.0\.1\]:\d+: read\/write timeout while receiving message content$/, 10_000);
  });
});

describe('qmqpd in master.cf', () => {
  test('Postfix\'s stock line "628 inet n - n - - qmqpd" passes check; a unix qmqpd is refused by line', () => {
    const ok = tempDir({ 'main.cf': `queue_directory = ${tempDir()}\n`, 'master.cf': defaultMasterCf(2525) + '628 inet n - n - - qmqpd\n' });
    assert.deepEqual(checkConfig(loadConfig(ok)), []);
    const bad = tempDir({ 'main.cf': `queue_directory = ${tempDir()}\n`, 'master.cf': defaultMasterCf(2525) + 'qmqp unix n - n - - qmqpd\n' });
    assert.match(checkConfig(loadConfig(bad)).join('\n'), /master\.cf:7: not supported by Postactor: service "qmqp" \(command qmqpd\): qmqpd of type unix \(only inet qmqpd services are built\)/);
  });
});
