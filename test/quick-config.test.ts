/**
 * The quick configuration read of sendmail, mailq and postqueue -p (src/config/quick.ts): it
 * gives what the full loader gives, or null (and the command uses the full loader, with its
 * error texts). Real files in a temp dir; the commands run as processes through bin/.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, queueDirectory } from '../src/config/index.js';
import { DEFAULTS } from '../src/config/defaults.js';
import { QUICK_DEFAULTS, quickConfig } from '../src/config/quick.js';
import { isQueueId, newQueueId } from '../src/queue/qid.js';
import { REPO_ROOT } from './helpers/server.js';

const NAMES = ['queue_directory', 'message_size_limit', 'empty_address_recipient', 'enable_long_queue_ids'];
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function configDir(mainCf: string, masterCf: string | null = 'qmgr unix n - n 300 1 qmgr\n'): string {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-quick-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'main.cf'), mainCf.replaceAll('@DIR@', dir));
  if (masterCf !== null) writeFileSync(join(dir, 'master.cf'), masterCf);
  return dir;
}

interface Run { code: number; stdout: string; stderr: string }

function run(name: string, args: string[], input = ''): Promise<Run> {
  return new Promise((done) => {
    const env = { ...process.env };
    delete env['MAIL_CONFIG'];
    delete env['POSTACTOR_CONFIG'];
    const child = execFile(join(REPO_ROOT, 'bin', name), args, { env, cwd: tmpdir(), timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      done({ code, stdout, stderr });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input);
  });
}

describe('quickConfig', () => {
  test('its defaults are the registry\'s', () => {
    for (const [name, value] of Object.entries(QUICK_DEFAULTS)) assert.equal(value, DEFAULTS[name], name);
  });

  test('gives the full loader\'s values: explicit settings, $references, ${config_directory}, defaults', () => {
    for (const mainCf of [
      'queue_directory = @DIR@/spool\n',
      'base = @DIR@\nqueue_directory = $base/q1\nmessage_size_limit = 5000\n',
      'queue_directory = ${config_directory}/q2\nempty_address_recipient = postmaster\nenable_long_queue_ids = yes\n',
      'queue_directory = spool-relative\n# a comment\nmyhostname = x.example\n  continued.example\n',
      'base = @DIR@\nqueue_directory = ${base?{$base/q3}:{@DIR@/q4}}\n',
    ]) {
      const dir = configDir(mainCf);
      const q = quickConfig(dir, NAMES);
      assert.ok(q, mainCf);
      const full = loadConfig(dir);
      assert.equal(q.configDirectory, full.configDirectory);
      for (const name of NAMES) assert.equal(q.values[name], full.get(name), `${name} in ${mainCf}`);
      assert.equal(resolve(q.configDirectory!, q.values['queue_directory']!), queueDirectory(full));
    }
  });

  test('null whenever only the full loader can say', () => {
    const cases: [string, string | null][] = [
      ['queue_directory = $data_directory/q\n', 'qmgr unix n - n 300 1 qmgr\n'], // a default it does not hold
      ['queue_directory = @DIR@/q$nowhere\n', 'qmgr unix n - n 300 1 qmgr\n'], // undefined: the loader warns
      ['queue_directory = ${nowhere?{a}:{@DIR@/q}}\n', 'qmgr unix n - n 300 1 qmgr\n'], // unknown to it, maybe not to the loader
      ['a = $b\nb = $a\nqueue_directory = $a\n', 'qmgr unix n - n 300 1 qmgr\n'], // recursion
      ['queue_directory = ${oops\n', 'qmgr unix n - n 300 1 qmgr\n'], // malformed
      ['no equals sign here\n', 'qmgr unix n - n 300 1 qmgr\n'], // main.cf syntax
      ['queue_directory = @DIR@/q\n', 'qmgr unix n - n 300\n'], // master.cf syntax
      ['queue_directory = @DIR@/q\n', null], // no master.cf
    ];
    for (const [mainCf, masterCf] of cases) assert.equal(quickConfig(configDir(mainCf, masterCf), NAMES), null, `${mainCf} / ${masterCf}`);
    assert.equal(quickConfig(join(tmpdir(), 'postactor-quick-no-such-dir'), NAMES), null);
  });
});

describe('the commands with the full loader behind the quick read', () => {
  test('sendmail queues where the full loader says when the quick read cannot (an undefined $name)', async () => {
    const dir = configDir('queue_directory = @DIR@/spool$nowhere\n');
    const r = await run('sendmail', ['-C', dir, '-i', 'rcpt@example.com'], 'Subject: fallback\n\nhi\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readdirSync(join(dir, 'spool', 'maildrop')).length, 1);
  });

  test('a broken main.cf: sendmail, mailq and postqueue -p say what the full loader says', async () => {
    const dir = configDir('queue_directory = @DIR@/spool\nno equals sign here\n');
    let expected = '';
    try {
      loadConfig(dir);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      expected = err.message;
    }
    assert.ok(expected);
    const s = await run('sendmail', ['-C', dir, 'rcpt@example.com'], 'hi\n');
    assert.deepEqual([s.code, s.stderr], [75, `sendmail: fatal: ${expected.split('\n').join('; ')}\n`]);
    const m = await run('mailq', ['-c', dir]);
    assert.deepEqual([m.code, m.stderr], [1, `mailq: fatal: ${expected}\n`]);
    const p = await run('postqueue', ['-c', dir, '-p']);
    assert.deepEqual([p.code, p.stderr], [1, `postqueue: fatal: ${expected}\n`]);
  });

  test('mailq on a queue never created: "Mail queue is empty", without the store', async () => {
    const dir = configDir('queue_directory = @DIR@/spool\n');
    assert.deepEqual(await run('mailq', ['-c', dir]), { code: 0, stdout: 'Mail queue is empty\n', stderr: '' });
    assert.deepEqual(await run('postqueue', ['-c', dir, '-j']), { code: 0, stdout: '', stderr: '' });
  });
});

test('newQueueId(thread) makes queue IDs like newQueueId()', () => {
  const a = newQueueId(0);
  const b = newQueueId();
  assert.ok(isQueueId(a) && isQueueId(b), `${a} ${b}`);
  assert.ok(a < b);
});
