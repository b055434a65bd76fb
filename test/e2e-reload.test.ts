import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { NODE, POSTACTOR_JS, startServer, workerThreads } from './helpers/server.js';
import { SmtpSink } from '../src/smtp/sink.js';

const run = promisify(execFile);

async function waitFor(ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
}


function masterCf(smtpd: number): string {
  return [`127.0.0.1:{{PORT}} inet n - n - ${smtpd} smtpd`, 'cleanup unix n - n - 1 cleanup', 'qmgr unix n - n 300 1 qmgr', 'smtp unix - - n - 1 smtp', 'relay unix - - n - 1 smtp', 'bounce unix - - n - 1 bounce', ''].join('\n');
}

test('postactor reload applies a new master.cf without dropping mail, and refuses a broken one', async (t) => {
  const sink = new SmtpSink();
  const sinkPort = await sink.listen(0);
  const server = await startServer({ sinkPort, masterCf: masterCf(1) });
  t.after(async () => {
    await server.stop();
    await sink.close();
  });
  const pid = server.child!.pid!;
  // smtpd, qmgr and cleanup's warm thread; smtp, relay and bounce start on demand (lazy pools).
  assert.equal(workerThreads(pid), 3);

  // Mail flows while the configuration is reloaded.
  const sending = (async () => {
    const sent: string[] = [];
    for (let i = 0; i < 40; i++) {
      const tr = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
      const info = await tr.sendMail({ from: 'a@example.org', to: 'b@example.com', subject: `reload ${i}`, text: 'x' }).catch(() => null);
      tr.close();
      if (info) sent.push(info.messageId);
      await new Promise((r) => setTimeout(r, 25));
    }
    return sent;
  })();
  writeFileSync(join(server.dir, 'master.cf'), masterCf(3).replace('{{PORT}}', String(server.port)));
  await run(NODE, [POSTACTOR_JS, '-c', server.dir, 'reload']);
  await server.waitForLog(/postactor\/master\[\d+\]: reload -- version/, 10_000);
  const sent = await sending;
  assert.ok(sent.length >= 38, `${sent.length} of 40 accepted during the reload`);
  await sink.waitFor((s) => s.messages >= sent.length, 20_000);

  // A broken main.cf: reload fails with file:line, the server keeps running on the old one.
  appendFileSync(join(server.dir, 'main.cf'), 'this is not a parameter\n');
  const bad = await run(NODE, [POSTACTOR_JS, '-c', server.dir, 'reload']).then(() => null, (e: { code: number; stderr: string }) => e);
  assert.ok(bad, 'reload of a broken configuration fails');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /main\.cf:\d+: missing '='/);
  const tr = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
  await tr.sendMail({ from: 'a@example.org', to: 'b@example.com', subject: 'after', text: 'x' });
  tr.close();
  await sink.waitFor((s) => s.messages >= sent.length + 1, 20_000);
  // One smtpd thread (the new maxproc 3 is a ceiling: the others start only under load, as
  // Postfix's master forks smtpd processes on demand; test/smtpd-demand.test.ts), qmgr, the new
  // cleanup pool's and the new smtp pool's one thread each (started by the mail since); the old
  // generation's threads drained and ended with the reload.
  await waitFor(() => workerThreads(pid) === 4, 10_000);
  assert.equal(workerThreads(pid), 4, 'the old generation ended; one smtpd thread while the load is light');
});
