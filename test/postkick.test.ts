/**
 * postkick(1) against a running server: `postkick public qmgr A` makes qmgr retry deferred mail
 * at once (long before minimal_backoff_time), `postkick public pickup W` wakes pickup; an unknown
 * service or a stopped server gets Postfix's "Cannot contact class … service … - perhaps the
 * mail system is down" and exit 1; a wrong argument count gets the usage and exit 64.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { NODE, REPO_ROOT, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const POSTKICK = join(REPO_ROOT, 'dist', 'bin', 'postkick.js');
const tempDir = tempDirs('pa-postkick-');

function postkick(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(NODE, [POSTKICK, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr };
}

describe('postkick', () => {
  let sink: SmtpSink;
  let server: TestServer;
  let deferring = true;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true, rcptReply: () => (deferring ? '450 4.2.0 try again later' : null) });
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: { minimal_backoff_time: '3600s', maximal_backoff_time: '4000s', queue_run_delay: '3600s' },
      masterCfExtra: 'pickup unix n - n 3600 1 pickup',
    });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('postkick public qmgr A: deferred mail is retried now', async () => {
    const r = await sendRaw(server.port, 'a@example.org', ['kicked@example.com'], 'Subject: kick\r\n\r\nbody\r\n');
    assert.equal(r.code, 250);
    await server.waitForLog(/to=<kicked@example\.com>.*status=deferred/, 20_000);
    deferring = false;
    const k = postkick(['-c', server.dir, 'public', 'qmgr', 'A']);
    assert.equal(k.status, 0, k.stderr);
    await server.waitForLog(/to=<kicked@example\.com>.*status=sent/, 20_000);
  });

  test('postkick public pickup W and public qmgr I are taken', () => {
    for (const [svc, req] of [['pickup', 'W'], ['qmgr', 'I'], ['qmgr', 'DF']] as const) {
      const k = postkick(['-c', server.dir, 'public', svc, req]);
      assert.equal(k.status, 0, `${svc} ${req}: ${k.stderr}`);
      assert.equal(k.stderr, '');
    }
  });

  test('a service that is not there (or in the other class): Postfix\'s warning, exit 1', () => {
    for (const [cls, svc] of [['public', 'nosuch'], ['private', 'pickup']]) {
      const k = postkick(['-c', server.dir, cls!, svc!, 'W']);
      assert.equal(k.status, 1);
      assert.equal(k.stderr, `postkick: warning: Cannot contact class ${cls} service ${svc} - perhaps the mail system is down\n`);
    }
    const smtp = postkick(['-c', server.dir, 'private', 'smtp', 'W']);
    assert.equal(smtp.status, 1);
    assert.match(smtp.stderr, /^postkick: fatal: class private service smtp: command smtp takes no requests in Postactor/);
  });

  test('misuse: usage and exit 64; a stopped mail system: the warning and exit 1', () => {
    const u = postkick(['public', 'qmgr']);
    assert.equal(u.status, 64);
    assert.match(u.stderr, /usage: postkick \[-c config_dir\] \[-v\] class service request/);
    const dir = tempDir({ 'main.cf': `queue_directory = ${join(tempDir(), 'spool')}\n`, 'master.cf': 'qmgr unix n - n 300 1 qmgr\n' });
    const k = postkick(['-c', dir, 'public', 'qmgr', 'I']);
    assert.equal(k.status, 1);
    assert.equal(k.stderr, 'postkick: warning: Cannot contact class public service qmgr - perhaps the mail system is down\n');
  });
});
