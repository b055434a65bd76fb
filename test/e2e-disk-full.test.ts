/**
 * A full disk under the queue, for real: the queue directory on a small tmpfs (mounted here, so
 * the test needs root; outside CI it is skipped without), filled with a file.
 *   - a commit that fails at the end of DATA is "451 4.3.0 Error: queue file write error" for
 *     that message only, logged as Postfix's cleanup logs it; no thread dies, nothing is
 *     throttled, and once space is back the next message is accepted at once;
 *   - with too little room for 1.5 × message_size_limit, MAIL FROM gets "452 4.3.1
 *     Insufficient system storage" (Postfix's smtpd_check_queue), with Postfix's warning;
 *   - every message that got 250 is delivered once the next hop is up: nothing acknowledged lost.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmtpSink } from '../src/smtp/sink.js';
import { REPO_ROOT, rfc822, SmtpDialogue, sendRaw, startServer, type TestServer } from './helpers/server.js';

const mnt = mkdtempSync(join(tmpdir(), 'pa-diskfull-'));
let mounted = false;
let why: string | false = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', mnt], { stdio: 'pipe' });
  mounted = true;
} catch (err) {
  why = `cannot mount a tmpfs (needs root): ${(err as Error).message.split('\n')[0]}`;
  // Under CI the test runs as root: a failure to mount is a failure, not a skip.
  if (process.env['CI']) why = false;
}

const queueDir = join(mnt, 'spool');
const filler = join(mnt, 'filler');

/** Fills the tmpfs so that `leave` bytes stay free (about: tmpfs counts 4 KiB pages). */
function fillLeaving(leave: number): void {
  rmSync(filler, { force: true });
  const s = statfsSync(mnt);
  const free = s.bavail * s.bsize;
  writeFileSync(filler, Buffer.alloc(Math.max(0, free - leave)));
}

const BODY = 'x'.repeat(76) + '\r\n';

function message(subject: string, kib: number): string {
  return rfc822({ From: 'a@client.test', To: 'b@example.com', Subject: subject }, BODY.repeat(Math.ceil((kib * 1024) / BODY.length)));
}

describe('a full disk under the queue', { skip: why }, () => {
  let server: TestServer;
  let sink: SmtpSink | null = null;
  const accepted: string[] = [];

  before(async () => {
    assert.ok(mounted, why || 'tmpfs not mounted');
    mkdirSync(queueDir, { mode: 0o711 });
    // message_size_limit = 0 (no limit): the MAIL check then refuses only a full disk, so the
    // commit at the end of DATA is what meets the full disk first.
    server = await startServer({ mainCf: { queue_directory: queueDir, message_size_limit: '0', queue_run_delay: '1s', minimal_backoff_time: '1s', maximal_backoff_time: '2s' } });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    if (mounted) execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });

  test('a failed commit is 451 for that message; the server lives on and takes mail at once when space is back', async () => {
    fillLeaving(600 * 1024);
    let writeErrors = 0;
    let storage = 0;
    for (let i = 0; i < 30 && writeErrors === 0; i++) {
      const subject = `fill ${i}`;
      const r = await sendRaw(server.port, 'a@client.test', ['b@example.com'], message(subject, 100));
      if (r.code === 250) accepted.push(subject);
      else if (r.code === 451) {
        assert.equal(r.line, '451 4.3.0 Error: queue file write error');
        writeErrors++;
      } else if (r.code === 452) {
        assert.equal(r.line, '452 4.3.1 Insufficient system storage');
        storage++;
      } else assert.fail(`unexpected reply ${r.line}`);
    }
    assert.ok(writeErrors + storage > 0, `the disk filled up (250: ${accepted.length}, 451: ${writeErrors}, 452: ${storage})`);
    // Still full: every session is answered (no dead cleanup thread, no hang), with a 4xx.
    for (let i = 0; i < 5; i++) {
      const r = await sendRaw(server.port, 'a@client.test', ['b@example.com'], message(`full ${i}`, 100));
      assert.ok(r.code === 451 || r.code === 452 || r.code === 250, r.line);
      if (r.code === 250) accepted.push(`full ${i}`);
    }
    if (writeErrors > 0) await server.waitForLog(/cleanup.*: warning: \S+: write queue file: /, 10_000);
    // Space is back: the very next message is accepted (no throttle, no 60 s wait).
    rmSync(filler);
    const r = await sendRaw(server.port, 'a@client.test', ['b@example.com'], message('after', 10));
    assert.equal(r.code, 250, r.line);
    accepted.push('after');
    const log = server.logLines().join('\n');
    assert.doesNotMatch(log, /exit status|throttling|Commit failed/, 'no thread died of the full disk');
  });

  test('MAIL FROM gets 452 4.3.1 when the queue has less than 1.5 x message_size_limit free', async () => {
    // 2 MB messages need 3 MB free.
    appendFileSync(join(server.dir, 'main.cf'), 'message_size_limit = 2000000\n');
    await server.restart();
    fillLeaving(1024 * 1024);
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      await smtp.cmd('EHLO client.test');
      const r = await smtp.cmd('MAIL FROM:<a@client.test>');
      assert.equal(r.line, '452 4.3.1 Insufficient system storage');
      await server.waitForLog(/smtpd.*: warning: not enough free space in mail queue: \d+ bytes < 1\.5\*message size limit/, 10_000);
      await server.waitForLog(/NOQUEUE: reject: MAIL from localhost\[127\.0\.0\.1\]: 452 4\.3\.1 Insufficient system storage; from=<a@client\.test> proto=ESMTP helo=<client\.test>/, 10_000);
      rmSync(filler);
      const again = await smtp.cmd('MAIL FROM:<a@client.test>');
      assert.equal(again.code, 250, again.line);
      await smtp.cmd('QUIT').catch(() => undefined);
    } finally {
      smtp.close();
    }
  });

  test('every message that got 250 is delivered once the next hop is up', async () => {
    sink = new SmtpSink({ keepMessages: true });
    await sink.listen(server.sinkPort);
    execFileSync(join(REPO_ROOT, 'bin', 'postqueue'), ['-c', server.dir, '-f'], { stdio: 'pipe' });
    const deadline = Date.now() + 60_000;
    const subjects = () => new Set(sink!.messages.map((m) => /^Subject: (.*)$/m.exec(m.data.toString('latin1'))?.[1]?.trim()));
    while (accepted.some((s) => !subjects().has(s)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(accepted.filter((s) => !subjects().has(s)), [], 'acknowledged messages not delivered');
  });
});
