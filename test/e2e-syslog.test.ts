/**
 * End to end, syslog: `postactor start` (the background master) with maillog_file empty logs to
 * syslog, as Postfix does — here a real rsyslogd listening on a socket in a temp dir
 * (POSTACTOR_SYSLOG_SOCKET; Postfix's own path, /dev/log, cannot be changed) — with
 * syslog_facility and each record's severity. pflogsumm reads rsyslog's file and counts what
 * was sent, deferred, bounced and rejected; and its report equals the one it makes from Debian's
 * Postfix log for the same traffic (Postfix as a throwaway peer logging to its maillog_file,
 * the same line format: its syslog(3) writes to /dev/log only). `start-fg` still logs to
 * standard output.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, NODE, POSTACTOR_JS, probe220, queuedId, rfc822, sendRaw, SmtpDialogue } from './helpers/server.js';
import { startRsyslog, RSYSLOGD, type Rsyslog } from './helpers/rsyslog.js';
import { needs } from './helpers/peers.js';
import { tempDirs } from './helpers/temp.js';
import { postfixVersion, startPostfix } from '../bench/relay/postfix.js';
import type { MtaHandle } from '../bench/relay/mta.js';

const PFLOGSUMM = '/usr/sbin/pflogsumm';
const skip = needs(RSYSLOGD, 'rsyslog') || needs(PFLOGSUMM, 'pflogsumm');
const tempDir = tempDirs('postactor-syslog-');

/** The same mixed traffic for either MTA: 3 sent, 1 deferred, 1 bounced (its notice sent), 1 rejected at RCPT. */
async function traffic(port: number): Promise<{ deferred: string; bounced: string }> {
  const msg = (n: string) => rfc822({ Subject: `syslog ${n}`, 'Message-ID': `<syslog-${n}@t>` }, 'body\n');
  for (const n of ['1', '2', '3']) queuedId(await sendRaw(port, 'sender@example.org', [`ok-${n}@example.com`], msg(n)));
  const deferred = queuedId(await sendRaw(port, 'sender@example.org', ['defer-1@example.com'], msg('d')));
  const bounced = queuedId(await sendRaw(port, 'sender@example.org', ['reject-1@example.com'], msg('b')));
  const { smtp } = await SmtpDialogue.connect(port);
  await smtp.cmd('EHLO client.test');
  await smtp.cmd('MAIL FROM:<sender@example.org>');
  const refused = await smtp.cmd('RCPT TO:<blocked@example.com>');
  assert.equal(refused.code, 554, refused.line);
  await smtp.cmd('QUIT');
  smtp.close();
  return { deferred, bounced };
}

/** pflogsumm's "Grand Totals" message counts, by label ("received", "delivered", …). */
function grandTotals(report: string): Record<string, number> {
  const out: Record<string, number> = {};
  const section = /Grand Totals\n-+\nmessages\n\n([\s\S]*?)\n\n/.exec(report);
  assert.ok(section, report);
  for (const line of section[1]!.split('\n')) {
    // "1   deferred  (1  deferrals)", "1   rejected (20%)": the label without its parenthesis.
    const m = /^\s*(\d+)\s+([a-z][a-z /]*?)\s*(\(.*\))?$/.exec(line);
    if (m) out[m[2]!] = Number(m[1]);
  }
  return out;
}

/** A pflogsumm report without what differs between two servers by nature: sizes, host and queue names, times. */
function comparable(report: string): string {
  const keep = ['Grand Totals', 'message deferral detail', 'message bounce detail (by relay)', 'message reject detail', 'Senders by message count', 'Recipients by message count'];
  const sections = report.split(/\n(?=\S[^\n]*\n-{3,}\n)/);
  return sections
    .filter((s) => keep.some((k) => s.startsWith(k)))
    .map((s) => s
      .replace(/^\s*\d+[km]?\s+bytes (received|delivered)\n/gm, '')
      .replace(/^\s*\d+\s+(senders|sending hosts\/domains|recipients|recipient hosts\/domains)\n/gm, '')
      // Warnings differ by nature (Postactor warns about the main.cf settings it does not support).
      .replace(/\n\nWarnings[\s\S]*$/, '')
      .trimEnd())
    .join('\n\n');
}

function pflogsumm(file: string, syslogName: string): string {
  return execFileSync('perl', [PFLOGSUMM, `--syslog-name=${syslogName}`, file], { encoding: 'utf8' });
}

describe('e2e syslog', { skip }, () => {
  let rsyslog: Rsyslog;
  let sink: SmtpSink;
  let sinkPort: number;

  // Debian's Postfix for the side-by-side test takes seconds to start: it starts here, beside
  // the first test (which mostly waits for log lines), and that test takes it when it comes.
  const postfixWanted = !skip && (!!process.env['CI'] || existsSync('/usr/sbin/postfix'));
  let peerStart: Promise<MtaHandle | null> = Promise.resolve(null);

  before(async () => {
    rsyslog = await startRsyslog();
    sink = new SmtpSink({
      rcptReply: (rcpt) => {
        if (rcpt.startsWith('defer-')) return `450 4.2.0 <${rcpt}>: Mailbox busy, try again`;
        if (rcpt.startsWith('reject-')) return `550 5.1.1 <${rcpt}>: Recipient address rejected: User unknown`;
        return null;
      },
    });
    sinkPort = await sink.listen(0);
    if (postfixWanted && (await postfixVersion()) !== null) {
      peerStart = startPostfix({
        sinkPort,
        port: await freePort(),
        keep: true,
        extraMainCf: [
          'minimal_backoff_time = 1h',
          'maximal_backoff_time = 2h',
          'smtpd_recipient_restrictions = check_recipient_access inline:{ blocked@example.com=REJECT }, permit_mynetworks, reject_unauth_destination',
        ].join('\n'),
      });
      peerStart.catch(() => undefined); // awaited (and its error reported) by the test
    }
  });
  after(async () => {
    // Stopped here too, when the test that uses it did not run to its end.
    const peer = await peerStart.catch(() => null);
    if (peer) {
      await peer.stop();
      spawnSync('rm', ['-rf', peer.dir]);
    }
    await rsyslog?.stop();
    await sink?.close();
  });

  let postactorReport = '';

  test('postactor start with maillog_file empty logs to syslog; pflogsumm counts sent, deferred, bounced, rejected', async () => {
    const dir = tempDir({ access: 'blocked@example.com REJECT\n' });
    const port = await freePort();
    writeFileSync(join(dir, 'main.cf'), [
      `queue_directory = ${join(dir, 'spool')}`,
      `relayhost = [127.0.0.1]:${sinkPort}`,
      'mynetworks = 127.0.0.0/8',
      'myhostname = mx.postactor.test',
      'alias_maps =',
      'maillog_file =',
      'syslog_facility = mail',
      // Not supported, so warned about: a record at priority warning.
      'biff = no',
      'minimal_backoff_time = 1h',
      'maximal_backoff_time = 2h',
      `smtpd_recipient_restrictions = check_recipient_access texthash:${join(dir, 'access')}, permit_mynetworks, reject_unauth_destination`,
      '',
    ].join('\n'));
    writeFileSync(join(dir, 'master.cf'), [
      `127.0.0.1:${port} inet n - n - 2 smtpd`,
      'cleanup unix n - n - 1 cleanup',
      'qmgr unix n - n 300 1 qmgr',
      'smtp unix - - n - 2 smtp',
      'relay unix - - n - 1 smtp',
      'bounce unix - - n - 1 bounce',
      '',
    ].join('\n'));
    const env = { ...process.env, POSTACTOR_SYSLOG_SOCKET: rsyslog.socket };
    const postactor = (command: string) => spawnSync(NODE, [POSTACTOR_JS, '-c', dir, command], { env, encoding: 'utf8', timeout: 60_000 });
    const started = postactor('start');
    assert.equal(started.status, 0, started.stderr);
    try {
      for (let i = 0; i < 100 && !(await probe220(port)); i++) await new Promise((r) => setTimeout(r, 100));
      const { deferred, bounced } = await traffic(port);
      await rsyslog.waitFor(new RegExp(`postactor/smtp\\[\\d+\\]: ${deferred}: to=<defer-1@example.com>, .*status=deferred`), 1, 20_000);
      await rsyslog.waitFor(new RegExp(`postactor/qmgr\\[\\d+\\]: ${bounced}: removed`), 1, 20_000);
      await rsyslog.waitFor(/status=sent/, 4, 20_000);
      await rsyslog.waitFor(/: removed$/, 5, 20_000);
      // The relay to the syslog socket, killed, is started again: a reload's line still arrives.
      const fifo = join(dir, 'spool', 'private', 'syslog');
      const relayPids = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(fifo); } catch { return false; }
      });
      const relays = relayPids();
      assert.equal(relays.length, 1, 'one relay process');
      process.kill(Number(relays[0]), 'SIGKILL');
      // master starts a new relay (at most one a second): wait for it rather than a fixed pause.
      const restartBy = Date.now() + 10_000;
      let restarted = relayPids();
      while (!(restarted.length === 1 && restarted[0] !== relays[0])) {
        assert.ok(Date.now() < restartBy, `no new relay process: ${restarted.join(', ')}`);
        await new Promise((r) => setTimeout(r, 50));
        restarted = relayPids();
      }
      const reloaded = postactor('reload');
      assert.equal(reloaded.status, 0, reloaded.stderr);
      await rsyslog.waitFor(/postactor\/master\[\d+\]: reload -- version /, 1, 10_000);
    } finally {
      const stopped = postactor('stop');
      assert.equal(stopped.status, 0, stopped.stderr);
    }
    await rsyslog.waitFor(/postactor\/master\[\d+\]: terminating on signal 15$/, 1, 10_000);
    const lines = rsyslog.lines();
    // rsyslog's traditional format: "Mmm dd hh:mm:ss HOST postactor/PROGRAM[PID]: text", the host
    // being the syslog daemon's (as for Postfix), not myhostname.
    assert.ok(lines.every((l) => /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ postactor\/[a-z-]+\[\d+\]: /.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /postactor\/master\[\d+\]: daemon started -- version /.test(l)));
    assert.ok(lines.some((l) => /postactor\/smtpd\[\d+\]: NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 <blocked@example\.com>: Recipient address rejected: Access denied;/.test(l)));
    // Severity: warnings (and only they) reach the mail.warning rule.
    const warned = readFileSync(rsyslog.warnFile, 'utf8').split('\n').filter(Boolean);
    assert.ok(warned.some((l) => /postactor\/master\[\d+\]: warning: .*biff = no: not supported by Postactor, ignored$/.test(l)), warned.join('\n'));
    assert.ok(warned.every((l) => /\]: (warning|error|fatal|panic): /.test(l)), warned.join('\n'));
    // Nothing went to a maillog file or to the queue directory's log.
    assert.equal(existsSync(join(dir, 'maillog')), false);

    postactorReport = pflogsumm(rsyslog.file, 'postactor');
    const totals = grandTotals(postactorReport);
    // pflogsumm counts what came in from outside (smtpd, pickup): five; not the bounce notice.
    assert.equal(totals['received'], 5, postactorReport);
    assert.equal(totals['delivered'], 4, postactorReport);
    assert.equal(totals['deferred'], 1, postactorReport);
    assert.equal(totals['bounced'], 1, postactorReport);
    assert.equal(totals['rejected'], 1, postactorReport);
  });

  test('pflogsumm\'s report from Postactor\'s syslog equals its report from Debian\'s Postfix for the same traffic', { skip: skip || needs('/usr/sbin/postfix', "Debian's Postfix, the peer") }, async (t) => {
    assert.ok(postactorReport, 'the previous test ran');
    if ((await postfixVersion()) === null) {
      if (process.env['CI']) assert.fail('Postfix is not installed');
      return t.skip('Postfix is not installed');
    }
    let peer: MtaHandle | null = null;
    try {
      peer = await peerStart;
      assert.ok(peer, 'the Postfix peer was started');
      const { deferred } = await traffic(peer.port);
      const log = join(peer.dir, 'maillog');
      const count = (re: RegExp) => readFileSync(log, 'utf8').split('\n').filter((l) => re.test(l)).length;
      const deadline = Date.now() + 30_000;
      while (!(count(/status=sent/) >= 4 && count(/: removed$/) >= 5 && count(new RegExp(`${deferred}: to=<defer-1@example.com>.*status=deferred`)) >= 1)) {
        assert.ok(Date.now() < deadline, readFileSync(log, 'utf8'));
        await new Promise((r) => setTimeout(r, 200));
      }
      const postfixReport = pflogsumm(log, 'postfix');
      // The comparison covers the totals and every detail section, not an empty remainder.
      for (const section of ['Grand Totals', 'message deferral detail', 'message bounce detail', 'message reject detail', 'Recipients by message count']) {
        assert.ok(comparable(postfixReport).includes(section), section);
      }
      assert.match(comparable(postfixReport), /Recipient address rejected: Access denied \(total: 1\)/);
      assert.equal(comparable(postactorReport), comparable(postfixReport), `Postactor:\n${postactorReport}\nPostfix:\n${postfixReport}`);
    } finally {
      peerStart = Promise.resolve(null);
      await peer?.stop();
      if (peer) spawnSync('rm', ['-rf', peer.dir]);
    }
  });

  test('postactor start-fg with maillog_file empty still logs to standard output', async () => {
    const dir = tempDir();
    const port = await freePort();
    writeFileSync(join(dir, 'main.cf'), `queue_directory = ${join(dir, 'spool')}\nmaillog_file =\nalias_maps =\n`);
    writeFileSync(join(dir, 'master.cf'), `127.0.0.1:${port} inet n - n - 1 smtpd\ncleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n`);
    const before = rsyslog.lines().length;
    const child = (await import('node:child_process')).spawn(NODE, [POSTACTOR_JS, '-c', dir, 'start-fg'], { env: { ...process.env, POSTACTOR_SYSLOG_SOCKET: rsyslog.socket }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    try {
      const deadline = Date.now() + 20_000;
      while (!/daemon started/.test(out)) {
        assert.ok(Date.now() < deadline, out);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    assert.match(out, /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ postactor\/master\[\d+\]: daemon started/m);
    assert.equal(rsyslog.lines().length, before, 'nothing went to syslog');
  });

  test('a syslog_facility Postfix does not know stops postactor check', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'main.cf'), `queue_directory = ${join(dir, 'spool')}\nsyslog_facility = mial\n`);
    writeFileSync(join(dir, 'master.cf'), 'cleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n');
    const r = spawnSync(NODE, [POSTACTOR_JS, '-c', dir, 'check'], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /main\.cf: syslog_facility = mial: unrecognized value/);
  });
});
