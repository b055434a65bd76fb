// authorized_submit_users, authorized_mailq_users, authorized_flush_users (src/system/user-acl.ts):
// the list's matching with real tables and files, and the commands' refusals as root runs them
// (sendmail checks root too; mailq and postqueue let root through, as Postfix's).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { EMBEDDED_MASTER_CF } from '../src/config/index.js';
import { aclAllows } from '../src/system/user-acl.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const BIN = fileURLToPath(new URL('../../bin/', import.meta.url)); // the installed commands (bin/sendmail, bin/mailq, …)

function configDir(main: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-acl-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'main.cf'), `queue_directory = ${join(dir, 'spool')}\n${main}`);
  writeFileSync(join(dir, 'master.cf'), EMBEDDED_MASTER_CF);
  writeFileSync(join(dir, 'users'), 'root x\nalice x\n');
  writeFileSync(join(dir, 'list'), '# who may\n!mallory\nalice, bob\n');
  return dir;
}

describe('the list', () => {
  const dir = configDir('');
  const rows: [string, string, boolean][] = [
    ['static:anyone', 'anybody', true],
    ['static:whatever', 'anybody', true],
    ['alice, bob', 'bob', true],
    ['alice, bob', 'carol', false],
    ['Alice', 'alice', true],
    ['!alice, static:anyone', 'alice', false],
    ['!alice, static:anyone', 'bob', true],
    [`texthash:${join(dir, 'users')}`, 'alice', true],
    [`texthash:${join(dir, 'users')}`, 'bob', false],
    [`${join(dir, 'list')}`, 'alice', true],
    [`${join(dir, 'list')}, static:anyone`, 'mallory', false],
    [`${join(dir, 'list')}, static:anyone`, 'zed', true],
    ['!unknown, static:anyone', 'unknown', false],
  ];
  for (const [acl, name, want] of rows) {
    test(`${acl} → ${name}: ${want ? 'allowed' : 'denied'}`, async () => {
      assert.equal(await aclAllows(acl, name), want);
    });
  }
});

// Run as whoever runs the suite: root (CI) is refused submission by name and passes mailq and
// flush whatever the lists say; another user is refused all three.
const ME = userInfo().username;
const UID = process.getuid?.() ?? 0;
const ROOT = UID === 0;
/** Someone else, for the lists that must leave the caller out. */
const OTHER = ME === 'nobody' ? 'daemon' : 'nobody';
const re = (text: string) => new RegExp(`^${text.replace(/[()[\]\\.*+?^$|{}]/g, '\\$&')}$`, 'm');
describe('the commands', () => {
  const run = (cmd: string, args: string[], input = '') => spawnSync(join(BIN, cmd), args, { input, encoding: 'utf8', env: { ...process.env, MAIL_CONFIG: '' } });
  test(`sendmail: authorized_submit_users refuses ${ME} by name: "sendmail: fatal: User ${ME}(${UID}) is not allowed to submit mail", exit 77`, () => {
    for (const acl of [`!${ME}, static:anyone`, OTHER]) {
      const dir = configDir(`authorized_submit_users = ${acl}\n`);
      const r = run('sendmail', ['-C', dir, '-i', 'r@example.com'], 'Subject: x\n\nbody\n');
      assert.equal(r.status, 77, r.stderr);
      assert.match(r.stderr, re(`sendmail: fatal: User ${ME}(${UID}) is not allowed to submit mail`));
    }
    const ok = configDir(`authorized_submit_users = texthash:\${config_directory}/users, ${ME}\n`);
    const r = run('sendmail', ['-C', ok, '-i', 'r@example.com'], 'Subject: x\n\nbody\n');
    assert.equal(r.status, 0, r.stderr);
  });
  test(ROOT ? 'mailq and postqueue -p / -f: root passes whatever authorized_mailq_users and authorized_flush_users say'
    : 'mailq and postqueue -p / -f: a user outside authorized_mailq_users and authorized_flush_users is refused, exit 77', () => {
    const dir = configDir(`authorized_mailq_users = ${OTHER}\nauthorized_flush_users = ${OTHER}\n`);
    const q = run('mailq', ['-C', dir]);
    const p = run('postqueue', ['-c', dir, '-p']);
    const f = run('postqueue', ['-c', dir, '-f']);
    if (ROOT) {
      assert.equal(q.status, 0, q.stderr);
      assert.match(q.stdout, /Mail queue is empty/);
      assert.equal(p.status, 0, p.stderr);
      assert.doesNotMatch(f.stderr, /not allowed/);
    } else {
      assert.equal(q.status, 77, q.stderr);
      // Postfix's mailq runs postqueue -p, whose refusal it is.
      assert.match(q.stderr, re(`postqueue: fatal: User ${ME}(${UID}) is not allowed to view the mail queue`));
      assert.equal(p.status, 77, p.stderr);
      assert.match(p.stderr, re(`postqueue: fatal: User ${ME}(${UID}) is not allowed to view the mail queue`));
      assert.equal(f.status, 77, f.stderr);
      assert.match(f.stderr, re(`postqueue: fatal: User ${ME}(${UID}) is not allowed to flush the mail queue`));
    }
  });
});
