/**
 * End to end, metrics_listen: after mixed real traffic through a real server (sent to a sink,
 * deferred by a 450, bounced by a 550 with its notice delivered, rejected at RCPT by an access
 * table), a Prometheus scrape of /metrics shows exactly those counts, summed over the smtpd,
 * cleanup and qmgr threads; /health answers 200 with every service up and the store writable.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, NODE, POSTACTOR_JS, queuedId, REPO_ROOT, rfc822, sendRaw, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { parseListen } from '../src/metrics/collect.js';
import { tempDirs } from './helpers/temp.js';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import nodemailer from 'nodemailer';
import { makeTestCertificates } from './helpers/test-ca.js';

const tempDir = tempDirs('postactor-metrics-');

/** One sample of the Prometheus text format: name, labels, value. */
interface Sample { name: string; labels: Record<string, string>; value: number }

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of a metric's samples whose labels include `match`. */
function total(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

describe('e2e metrics_listen', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let metricsPort: number;

  before(async () => {
    sink = new SmtpSink({
      rcptReply: (rcpt) => {
        if (rcpt.startsWith('defer-')) return `450 4.2.0 <${rcpt}>: Mailbox busy, try again`;
        if (rcpt.startsWith('reject-')) return `550 5.1.1 <${rcpt}>: Recipient address rejected: User unknown`;
        return null;
      },
    });
    metricsPort = await freePort();
    const tables = tempDir({ 'access': 'blocked@example.com REJECT\n' });
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: {
        // A bare port: loopback only.
        metrics_listen: String(metricsPort),
        // One attempt for the deferred message within the test.
        minimal_backoff_time: '1h',
        maximal_backoff_time: '2h',
        smtpd_recipient_restrictions: `check_recipient_access texthash:${join(tables, 'access')}, permit_mynetworks, reject_unauth_destination`,
      },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  const scrape = async (): Promise<Sample[]> => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parseExposition(await res.text());
  };

  test('a bare port listens on loopback; host:port and [v6]:port as given', () => {
    assert.deepEqual(parseListen('9154'), { host: '127.0.0.1', port: 9154 });
    assert.deepEqual(parseListen(':9154'), { host: '127.0.0.1', port: 9154 });
    assert.deepEqual(parseListen('0.0.0.0:9154'), { host: '0.0.0.0', port: 9154 });
    assert.deepEqual(parseListen('[::1]:9154'), { host: '::1', port: 9154 });
    assert.throws(() => parseListen('localhost'), /metrics_listen = localhost: expected \[host:\]port/);
    assert.throws(() => parseListen('70000'), /bad port number/);
  });

  test('a bad metrics_listen stops postactor check with file: what is wrong', () => {
    const dir = tempDir({ 'main.cf': `queue_directory = ${join(tmpdir(), 'unused-spool')}\nmetrics_listen = localhost\n`, 'master.cf': 'cleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n' });
    const r = spawnSync(NODE, [POSTACTOR_JS, '-c', dir, 'check'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /main\.cf: metrics_listen = localhost: expected \[host:\]port/);
  });

  test('after sent, deferred, bounced and rejected mail, the scrape shows each count', async () => {
    const msg = (n: string) => rfc822({ Subject: `metrics ${n}`, 'Message-ID': `<metrics-${n}@t>` }, 'body\n');
    for (const n of ['1', '2', '3']) queuedId(await sendRaw(server.port, 'sender@example.org', [`ok-${n}@example.com`], msg(n)));
    const deferredId = queuedId(await sendRaw(server.port, 'sender@example.org', ['defer-1@example.com'], msg('d')));
    const bouncedId = queuedId(await sendRaw(server.port, 'sender@example.org', ['reject-1@example.com'], msg('b')));
    // Rejected at RCPT by the access table: a session, no message.
    const { smtp } = await SmtpDialogue.connect(server.port);
    await smtp.cmd('EHLO client.test');
    await smtp.cmd('MAIL FROM:<sender@example.org>');
    const refused = await smtp.cmd('RCPT TO:<blocked@example.com>');
    assert.equal(refused.code, 554, refused.line);
    await smtp.cmd('QUIT');
    smtp.close();

    await server.waitForLog(new RegExp(`${deferredId}: to=<defer-1@example.com>, .*status=deferred`), 20_000);
    await server.waitForLog(new RegExp(`${bouncedId}: sender non-delivery notification: `), 20_000);
    // Three sent, and the bounce notice to sender@example.org.
    await server.waitForLogCount(/status=sent/, 4, 20_000);
    await server.waitForLogCount(/: removed$/, 5, 20_000);
    await server.waitForLogCount(/disconnect from /, 6, 20_000);
    // Our six sessions, and start-up's readiness probe: as many as the log's connect lines.
    const connects = server.logLines().filter((l) => / connect from /.test(l)).length;
    assert.ok(connects >= 6);

    const s = await scrape();
    assert.equal(total(s, 'postfix_up'), 1);
    assert.equal(total(s, 'postfix_smtpd_connects_total'), connects);
    assert.equal(total(s, 'postfix_smtpd_disconnects_total'), connects);
    assert.equal(total(s, 'postactor_smtpd_sessions'), 0);
    assert.equal(total(s, 'postfix_smtpd_messages_processed_total'), 5);
    assert.equal(total(s, 'postfix_smtpd_messages_rejected_total'), 1);
    assert.equal(total(s, 'postfix_smtpd_messages_rejected_total', { code: '554', stage: 'RCPT', reason: 'smtpd_recipient_restrictions' }), 1);
    // Five from smtpd and the notice qmgr had cleanup queue.
    assert.equal(total(s, 'postfix_cleanup_messages_processed_total'), 6);
    assert.equal(total(s, 'postactor_qmgr_messages_inserted_total'), 6);
    assert.equal(total(s, 'postactor_deliveries_total', { status: 'sent' }), 4);
    assert.equal(total(s, 'postactor_deliveries_total', { status: 'deferred' }), 1);
    assert.equal(total(s, 'postactor_deliveries_total', { status: 'bounced' }), 1);
    assert.equal(total(s, 'postfix_qmgr_messages_removed_total'), 5);
    assert.equal(total(s, 'postactor_queue_messages', { queue: 'deferred' }), 1);
    assert.equal(total(s, 'postactor_queue_messages', { queue: 'incoming' }), 0);
    // Every delivery attempt is in both latency histograms, each observation in the +Inf bucket.
    assert.equal(total(s, 'postactor_delivery_delay_seconds_count', { stage: 'queue' }), 6);
    assert.equal(total(s, 'postactor_delivery_delay_seconds_count', { stage: 'transfer' }), 6);
    assert.equal(total(s, 'postactor_delivery_delay_seconds_bucket', { stage: 'transfer', le: '+Inf' }), 6);
    // The sink's destination is known to qmgr, idle now, with its concurrency window.
    assert.ok(s.some((x) => x.name === 'postactor_destination_concurrency_limit'), 'per-destination window exported');
    assert.equal(total(s, 'postactor_destination_concurrency'), 0);
    assert.equal(total(s, 'postactor_thread_restarts_total'), 0);

    // A second scrape with no traffic between: the same counts (snapshots are not added twice).
    const again = await scrape();
    assert.equal(total(again, 'postfix_smtpd_connects_total'), connects);
    assert.equal(total(again, 'postactor_deliveries_total'), 6);
  });

  test('/health: every service up and the store writable; unknown paths 404', async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/health`);
    assert.equal(res.status, 200);
    const h = (await res.json()) as { ok: boolean; checks: Record<string, { ok: boolean }> };
    assert.equal(h.ok, true);
    for (const name of ['qmgr', 'store', 'cleanup', 'smtp', 'bounce']) assert.equal(h.checks[name]?.ok, true, name);
    assert.ok(Object.keys(h.checks).some((k) => k.startsWith('127.0.0.1:')), 'the smtpd listener threads are checked');
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/nothing`)).status, 404);
  });
});

describe('e2e metrics_listen: thread restarts', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let metricsPort: number;

  before(async () => {
    sink = new SmtpSink();
    metricsPort = await freePort();
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: { metrics_listen: `127.0.0.1:${metricsPort}`, default_transport: 'crashy', minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s', transport_retry_time: '1s' },
      // The crash test's agent: its thread dies on a message's first delivery (test/e2e-agent-crash.test.ts).
      masterCfExtra: `crashy unix - - n - 1 ${join(REPO_ROOT, 'test', 'fixtures', 'e2e', 'crash-agent.mjs')}`,
      env: (dir) => ({ E2E_CRASH_DIR: dir }),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('a crashed delivery thread counts as a restart of its service; its deferral and the retry count too', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['victim@example.com'], rfc822({ Subject: 'crash me' }, 'body\n')));
    await server.waitForLog(/warning: process crashy \(thread\) exit status 1/, 10_000);
    await server.waitForLog(new RegExp(`${id}: to=<victim@example\\.com>, .*status=sent`), 20_000);
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    const s = parseExposition(await res.text());
    assert.equal(total(s, 'postactor_thread_restarts_total', { service: 'crashy' }), 1);
    assert.equal(total(s, 'postactor_deliveries_total', { transport: 'crashy', status: 'deferred' }), 1);
    assert.equal(total(s, 'postactor_deliveries_total', { transport: 'crashy', status: 'sent' }), 1);
  });
});

describe('e2e metrics_listen: TLS outcomes', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let metricsPort: number;
  let caFile: string;

  before(async () => {
    sink = new SmtpSink();
    metricsPort = await freePort();
    const dir = tempDir();
    makeTestCertificates(dir, ['mx.postactor.test']);
    caFile = join(dir, 'ca.pem');
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: {
        metrics_listen: `127.0.0.1:${metricsPort}`,
        smtpd_tls_security_level: 'may',
        smtpd_tls_cert_file: join(dir, 'server.pem'),
        smtpd_tls_key_file: join(dir, 'server.key'),
        smtpd_tls_loglevel: '1',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('a STARTTLS session counts by protocol and cipher; a failed handshake counts as a TLS failure', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, requireTLS: true, tls: { ca: readFileSync(caFile), servername: 'mx.postactor.test' } });
    await transport.sendMail({ from: 'tls@example.org', to: 'tls-rcpt@example.com', subject: 'metrics tls', text: 'hello' });
    transport.close();
    await server.waitForLog(/Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher/, 10_000);
    // STARTTLS, then bytes that are no TLS ClientHello.
    const { smtp } = await SmtpDialogue.connect(server.port);
    await smtp.cmd('EHLO client.test');
    const ready = await smtp.cmd('STARTTLS');
    assert.equal(ready.code, 220);
    smtp.write('this is not a TLS handshake\r\n'.repeat(4));
    await server.waitForLogCount(/disconnect from /, 2, 10_000).catch(() => undefined);
    smtp.close();
    const deadline = Date.now() + 10_000;
    let s: Sample[] = [];
    for (;;) {
      s = parseExposition(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
      if (total(s, 'postactor_smtpd_tls_failures_total') >= 1 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(total(s, 'postfix_smtpd_tls_connections_total', { protocol: 'TLSv1.3' }), 1);
    assert.ok(s.some((x) => x.name === 'postfix_smtpd_tls_connections_total' && /^TLS_/.test(x.labels['cipher'] ?? '')), 'the cipher is a label');
    assert.equal(total(s, 'postactor_smtpd_tls_failures_total'), 1);
  });
});

describe('e2e metrics_listen: a dead destination', () => {
  let server: TestServer;
  let metricsPort: number;

  before(async () => {
    metricsPort = await freePort();
    // relayhost is a port nobody listens on: the connection fails, the destination is dead for a while.
    server = await startServer({ sinkPort: await freePort(), mainCf: { metrics_listen: `127.0.0.1:${metricsPort}`, minimal_backoff_time: '1h', maximal_backoff_time: '2h' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('after a failed cohort its backoff shows as seconds until the next try, its window as 0', async () => {
    // A failed cohort (initial_destination_concurrency = 5 failed connections) makes it dead.
    for (let i = 0; i < 6; i++) queuedId(await sendRaw(server.port, 'sender@example.org', [`someone-${i}@example.com`], rfc822({ Subject: 'dead' }, 'body\n')));
    await server.waitForLogCount(/status=deferred/, 6, 20_000);
    // master sums the threads' metrics once a second: the scrape right after the log lines may
    // still show the second before them.
    const deadline = Date.now() + 10_000;
    let s: Sample[] = [];
    for (;;) {
      s = parseExposition(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
      const seen = s.some((x) => x.name === 'postactor_destination_backoff_seconds') && total(s, 'postactor_deliveries_total', { status: 'deferred' }) >= 6;
      if (seen || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const backoff = s.filter((x) => x.name === 'postactor_destination_backoff_seconds');
    assert.equal(backoff.length, 1, JSON.stringify(backoff));
    assert.equal(backoff[0]!.labels['nexthop'], `[127.0.0.1]:${server.sinkPort}`);
    assert.ok(backoff[0]!.value > 0, String(backoff[0]!.value));
    assert.equal(total(s, 'postactor_destination_concurrency_limit', { nexthop: `[127.0.0.1]:${server.sinkPort}` }), 0);
    assert.equal(total(s, 'postactor_deliveries_total', { status: 'deferred' }), 6);
  });
});
