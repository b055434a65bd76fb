/**
 * smtpd_milters with rspamd (Debian's rspamd 3.4): its proxy worker in milter mode, scanning in
 * the same process (self_scan), started as a throwaway instance in a temp dir, run as "nobody"
 * and resolving nothing (its DNS server is a closed loopback port). The GTUBE test message is
 * refused at end of data with rspamd's own reply; an ordinary message is relayed with the
 * headers rspamd adds, one of them carrying the queue ID it got from Postactor's {i} macro.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { waitListening } from './helpers/milter.js';
import { needs } from './helpers/peers.js';
import { freePort, queuedId, rfc822, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const RSPAMD = '/usr/bin/rspamd';
const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
const NOBODY = 65534;
const skip = needs(RSPAMD, 'rspamd') || (process.getuid?.() !== 0 && 'rspamd runs as "nobody" here, which needs root');

async function deliverOne(port: number, subject: string, body: string): Promise<string> {
  const { smtp } = await SmtpDialogue.connect(port, { timeoutMs: 60_000 });
  try {
    await smtp.cmd('EHLO client.test');
    await smtp.cmd('MAIL FROM:<s@example.org>');
    await smtp.cmd('RCPT TO:<r@example.com>');
    await smtp.cmd('DATA');
    const msg = rfc822({ From: '<s@example.org>', To: '<r@example.com>', Subject: subject, Date: 'Thu, 03 Dec 2026 09:00:00 +0000', 'Message-ID': `<${subject.replace(/\W/g, '')}@client.test>` }, body);
    return (await smtp.cmd(`${msg.replace(/\r\n$/, '')}\r\n.`)).line;
  } finally {
    smtp.close();
  }
}

describe('smtpd_milters with rspamd\'s proxy worker in milter mode', { skip }, () => {
  let dir: string;
  let rspamd: ChildProcess;
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-rspamd-'));
    chmodSync(dir, 0o755);
    const port = await freePort();
    mkdirSync(join(dir, 'local.d'));
    // milter_headers: the result and the MTA's queue ID ({i}) as headers of the scanned message.
    // (skip_local: the test client is 127.0.0.1, which rspamd otherwise leaves without headers.)
    writeFileSync(join(dir, 'local.d', 'milter_headers.conf'), 'use = ["x-spamd-result", "x-rspamd-queue-id"];\nskip_local = false;\nskip_authenticated = false;\n');
    writeFileSync(join(dir, 'rspamd.conf'), [
      '.include "$CONFDIR/common.conf"',
      'options {',
      `  pidfile = "${dir}/rspamd.pid";`,
      '  .include "$CONFDIR/options.inc"',
      '  dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }',
      // PCRE instead of compiling Hyperscan databases: a start in seconds, not a minute.
      '  disable_hyperscan = true;',
      '}',
      `logging { type = "file"; filename = "${dir}/rspamd.log"; level = "warning"; }`,
      'worker "rspamd_proxy" {',
      `  bind_socket = "127.0.0.1:${port}";`,
      '  milter = yes; count = 1; timeout = 120s;',
      '  upstream "local" { default = yes; self_scan = yes; }',
      '}',
      '',
    ].join('\n'));
    chownSync(dir, NOBODY, NOBODY);
    chownSync(join(dir, 'local.d'), NOBODY, NOBODY);
    rspamd = spawn(RSPAMD, ['-f', '-c', join(dir, 'rspamd.conf'), '-u', 'nobody', '-g', 'nogroup',
      `--var=DBDIR=${dir}`, `--var=RUNDIR=${dir}`, `--var=LOGDIR=${dir}`, `--var=LOCAL_CONFDIR=${dir}`], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let err = '';
    rspamd.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    await waitListening(port, 90_000).catch((e: Error) => {
      let log = '';
      try { log = readFileSync(join(dir, 'rspamd.log'), 'utf8').slice(-2000); } catch { /* none */ }
      throw new Error(`${e.message}: ${err} ${log}`);
    });
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({ sinkPort, mainCf: { smtpd_milters: `inet:127.0.0.1:${port}`, milter_default_action: 'tempfail' } });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    // rspamd forks workers: end the whole process group, so no worker keeps the test alive.
    if (rspamd?.pid) try { process.kill(-rspamd.pid, 'SIGKILL'); } catch { /* gone */ }
    rspamd?.stderr?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the GTUBE message is refused at end of data with rspamd\'s reply, logged as milter-reject; nothing is relayed', async () => {
    const reply = await deliverOne(server.port, 'gtube', `${GTUBE}\n`);
    assert.equal(reply, '554 5.7.1 Gtube pattern');
    await server.waitForLog(/milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 5\.7\.1 Gtube pattern; from=<s@example\.org> to=<r@example\.com> proto=ESMTP helo=<client\.test>/, 5000);
    assert.equal(sink.stats.messages, 0);
  });

  test('an ordinary message is relayed with rspamd\'s headers; X-Rspamd-Queue-Id is Postactor\'s queue ID', async () => {
    const reply = await deliverOne(server.port, 'ordinary', 'an ordinary message\n');
    const qid = queuedId({ code: Number(reply.slice(0, 3)), text: reply.slice(4) });
    await sink.waitFor((s) => s.messages >= 1, 20_000);
    const text = sink.messages[0]!.data.toString('latin1');
    assert.match(text, new RegExp(`\\r\\nX-Rspamd-Queue-Id: ${qid}\\r\\n`));
    assert.match(text, /\r\nX-Spamd-Result: default: False \[/);
  });
});
