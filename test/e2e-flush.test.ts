/**
 * The flush service and ETRN against a running server whose next hop is first down, then up:
 * a deferred message for a fast_flush_domains destination is in that destination's fast flush
 * log (the queue store's flush database); postqueue -s asks for it again; once the next hop is
 * up, an ETRN from a real client (Python's smtplib) has it delivered at once, while mail for
 * another destination stays deferred. Postfix's ETRN replies and warnings,
 * smtpd_etrn_restrictions (reject, check_etrn_access), smtpd_discard_ehlo_keywords = etrn, and
 * the commands' refusals (postqueue -s, sendmail -qR) for a destination flush does not take.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { QueueStore } from '../src/queue/store.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { needs } from './helpers/peers.js';
import { freePort, REPO_ROOT, rfc822, sendRaw, startServer, queuedId, type TestServer } from './helpers/server.js';

const NO_PYTHON = needs('/usr/bin/python3', 'python3 (smtplib, the ETRN client)');

interface Run { code: number; stdout: string; stderr: string }

/** Runs bin/NAME (the wrapper on the pinned runtime). */
function run(name: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(join(REPO_ROOT, 'bin', name), args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin!.end();
  });
}

/**
 * One smtplib session: EHLO, then each command through docmd(); prints the EHLO features and
 * each reply as JSON. A real client, not the test's own dialogue code.
 */
const SMTPLIB = `
import json, smtplib, sys
port = int(sys.argv[1]); cmds = json.loads(sys.argv[2])
s = smtplib.SMTP('127.0.0.1', port, timeout=20)
s.ehlo('client.test')
features = sorted(s.esmtp_features.keys())
out = []
for c in cmds:
    verb, _, arg = c.partition(' ')
    code, text = s.docmd(verb, arg)
    out.append('%d %s' % (code, text.decode('latin1')))
s.quit()
print(json.dumps({'features': features, 'replies': out}))
`;

function smtplib(port: number, commands: string[]): Promise<{ features: string[]; replies: string[] }> {
  return new Promise((resolve, reject) => {
    const p = spawn('python3', ['-c', SMTPLIB, String(port), JSON.stringify(commands)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('close', (code) => {
      clearTimeout(t);
      if (code !== 0) reject(new Error(`python3 exit ${code}: ${err}`));
      else resolve(JSON.parse(out) as { features: string[]; replies: string[] });
    });
  });
}

/** The fast flush log of a site as the running server's store holds it (read-only, another process). */
function flushLog(queueDir: string, site: string): number | undefined {
  const store = QueueStore.open(queueDir, { readOnly: true });
  try {
    return [...store.flushLogs()].find((l) => l.site === site)?.size;
  } finally {
    void store.close();
  }
}

async function until(what: () => boolean, timeoutMs: number, describe: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!what()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${describe}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('flush and ETRN: a destination whose next hop was down', { skip: NO_PYTHON }, () => {
  let server: TestServer;
  let sink: SmtpSink;
  let rejectPort = 0;
  let quietPort = 0;
  let flushed = '';
  let other = '';

  before(async () => {
    const sinkPort = await freePort(); // nothing listens there yet: the next hop is down
    rejectPort = await freePort();
    quietPort = await freePort();
    sink = new SmtpSink({ keepMessages: true });
    server = await startServer({
      sinkPort,
      mainCf: {
        relay_domains: 'example.com',
        // No retry of its own during the test: only a flush delivers.
        queue_run_delay: '1h', minimal_backoff_time: '1h', maximal_backoff_time: '2h',
        smtpd_error_sleep_time: '0',
      },
      masterCfExtra: [
        'flush unix n - n 1000? 0 flush',
        `127.0.0.1:${rejectPort} inet n - n - 1 smtpd -o smtpd_etrn_restrictions=reject`,
        `127.0.0.1:${quietPort} inet n - n - 1 smtpd -o smtpd_discard_ehlo_keywords=etrn`,
      ].join('\n'),
    });
    flushed = queuedId(await sendRaw(server.port, 'a@example.org', ['rcpt@example.com'], rfc822({ Subject: 'for example.com' }, 'hi\n')));
    other = queuedId(await sendRaw(server.port, 'a@example.org', ['rcpt@other.test'], rfc822({ Subject: 'for other.test' }, 'hi\n')));
    await server.waitForLog(new RegExp(`: ${flushed}: to=<rcpt@example\\.com>, .*status=deferred`), 30_000);
    await server.waitForLog(new RegExp(`: ${other}: to=<rcpt@other\\.test>, .*status=deferred`), 30_000);
    // The port is taken now, by the sink, which is up from here on.
    await sink.listen(sinkPort);
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('a deferred message for a fast_flush_domains destination is in its log; another destination has none', async () => {
    await until(() => flushLog(server.queueDir, 'example.com') === 1, 10_000, 'example.com log with one queue ID');
    assert.equal(flushLog(server.queueDir, 'other.test'), undefined);
  });

  test('postqueue -s and sendmail -qR: a destination flush does not take is refused as Postfix refuses it', async () => {
    let r = await run('postqueue', ['-c', server.dir, '-s', 'other.test']);
    assert.equal(r.code, 69);
    assert.equal(r.stderr, 'postqueue: fatal: Flush service is not configured for destination "other.test"\n');
    r = await run('sendmail', ['-C', server.dir, '-qRother.test']);
    assert.equal(r.code, 69);
    assert.match(r.stderr, /fatal: Flush service is not configured for destination "other\.test"\n$/);
    r = await run('postqueue', ['-c', server.dir, '-s', 'bad..name']);
    assert.equal(r.code, 64);
    assert.equal(r.stderr, 'postqueue: fatal: Cannot flush mail queue - invalid destination: "bad..name"\n');
  });

  test('ETRN: Postfix\'s replies; the deferred mail of the destination is delivered now, the other stays', async () => {
    const { features, replies } = await smtplib(server.port, [
      'ETRN', 'ETRN a b', 'ETRN bad!name', 'ETRN other.test', 'ETRN #example.com',
      'MAIL FROM:<x@example.org>', 'ETRN example.com', 'RSET',
    ]);
    assert.ok(features.includes('etrn'), features.join(' '));
    assert.deepEqual(replies, [
      '500 Syntax: ETRN domain',
      '500 Syntax: ETRN domain',
      '501 Error: invalid parameter syntax',
      '459 <other.test>: service unavailable',
      '250 Queuing started',
      '250 2.1.0 Ok',
      '503 Error: MAIL transaction in progress',
      '250 2.0.0 Ok',
    ]);
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: for example.com')), 30_000);
    await server.waitForLog(new RegExp(`: ${flushed}: removed$`), 10_000);
    await server.waitForLog(/warning: reject: ETRN other\.test\.\.\. from localhost\[127\.0\.0\.1\]$/, 5000);
    await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rset=1 etrn=1\/6 quit=1 commands=5\/10$/, 5000);
    // The flushed log is empty again; the other destination's message was not touched.
    assert.equal(flushLog(server.queueDir, 'example.com'), 0);
    assert.ok(!sink.messages.some((m) => m.data.includes('Subject: for other.test')));
    const q = await run('postqueue', ['-c', server.dir, '-p']);
    assert.match(q.stdout, new RegExp(`^${other}\\s`, 'm'));
    assert.doesNotMatch(q.stdout, new RegExp(`^${flushed}\\s`, 'm'));
  });

  test('postqueue -s and sendmail -qR flush an eligible destination', async () => {
    const r = await run('postqueue', ['-c', server.dir, '-s', 'example.com']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const q = await run('sendmail', ['-C', server.dir, '-qRexample.com']);
    assert.equal(q.code, 0, q.stderr);
  });

  test('postkick public flush W: the flush service takes its wakeup (a refresh)', async () => {
    const r = await run('postkick', ['-c', server.dir, 'public', 'flush', 'W']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  test('smtpd_etrn_restrictions = reject: Postfix\'s reject reply and log line', async () => {
    const { replies } = await smtplib(rejectPort, ['ETRN example.com']);
    assert.deepEqual(replies, ['554 5.7.1 <example.com>: Etrn command rejected: Access denied']);
    await server.waitForLog(/NOQUEUE: reject: ETRN from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 <example\.com>: Etrn command rejected: Access denied; proto=ESMTP helo=<client\.test>$/, 5000);
  });

  test('smtpd_discard_ehlo_keywords = etrn: not announced, still answered', async () => {
    const { features, replies } = await smtplib(quietPort, ['ETRN example.com']);
    assert.ok(!features.includes('etrn'), features.join(' '));
    assert.deepEqual(replies, ['250 Queuing started']);
  });
});
