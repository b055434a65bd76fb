/**
 * postlock(1): the folder is locked as local(8) locks a mailbox (FILE.lock and flock) while the
 * command runs. Checked against Debian's own postlock both ways, nested so that no timing is
 * involved: while one holds the lock, the other (deliver_lock_attempts = 1) fails with 75 and
 * Postfix's text; plus the command's exit status, usage and a command that does not exist.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { needs } from './helpers/peers.js';
import { NODE, REPO_ROOT } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const POSTLOCK = join(REPO_ROOT, 'dist', 'bin', 'postlock.js');
const POSTFIX_POSTLOCK = '/usr/sbin/postlock';
const tempDir = tempDirs('pa-postlock-');

function ours(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [POSTLOCK, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function configDir(): string {
  return tempDir({ 'main.cf': 'deliver_lock_attempts = 1\ndeliver_lock_delay = 1s\n', 'master.cf': '' });
}

test('the command runs with FILE.lock held, its exit status is postlock\'s, the lock goes afterwards', () => {
  const dir = configDir();
  const box = join(dir, 'mbox');
  const r = ours(['-c', dir, box, '/bin/sh', '-c', `test -f ${box}.lock && echo locked; exit 7`]);
  assert.equal(r.status, 7, r.stderr);
  assert.equal(r.stdout, 'locked\n');
  assert.equal(existsSync(`${box}.lock`), false);
  assert.equal(statSync(box).mode & 0o777, 0o600);
});

test('while Postactor\'s postlock holds the folder, Postfix\'s postlock cannot lock it (dotlock, flock)', { skip: needs(POSTFIX_POSTLOCK, "Debian's postlock") }, () => {
  const dir = configDir();
  const box = join(dir, 'mbox');
  const inner = `${POSTFIX_POSTLOCK} -c ${dir} -l dotlock ${box} true; echo dotlock=$?; ${POSTFIX_POSTLOCK} -c ${dir} -l flock ${box} true; echo flock=$?`;
  const r = ours(['-c', dir, box, '/bin/sh', '-c', inner]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'dotlock=75\nflock=75\n');
  assert.match(r.stderr, new RegExp(`postlock: fatal: open file ${box}: unable to create lock file ${box}\\.lock: File exists`));
  assert.match(r.stderr, new RegExp(`postlock: fatal: open file ${box}: unable to lock for exclusive access: Resource temporarily unavailable`));
});

test('while Postfix\'s postlock holds the folder, Postactor\'s postlock fails with 75 and Postfix\'s texts', { skip: needs(POSTFIX_POSTLOCK, "Debian's postlock") }, () => {
  const dir = configDir();
  const box = join(dir, 'mbox');
  const self = `${NODE} ${POSTLOCK} -c ${dir}`;
  const inner = `${self} -l dotlock ${box} true 2>&1; echo dotlock=$?; ${self} -l flock ${box} true 2>&1; echo flock=$?`;
  const r = spawnSync(POSTFIX_POSTLOCK, ['-c', dir, '-l', 'flock, dotlock', box, '/bin/sh', '-c', inner], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, [
    `postlock: fatal: open file ${box}: unable to create lock file ${box}.lock: File exists`, 'dotlock=75',
    `postlock: fatal: open file ${box}: unable to lock for exclusive access: Resource temporarily unavailable`, 'flock=75', '',
  ].join('\n'));
});

test('misuse and failures: usage, an unknown lock style, a command that does not exist', () => {
  const dir = configDir();
  const u = ours([join(dir, 'mbox')]);
  assert.equal(u.status, 75);
  assert.equal(u.stderr, 'postlock: fatal: usage: postlock [-c config_dir] [-l lock_style] [-v] folder command...\n');
  const l = ours(['-c', dir, '-l', 'bogus', join(dir, 'mbox'), 'true']);
  assert.equal(l.status, 75);
  assert.equal(l.stderr, 'postlock: fatal: unknown mailbox_delivery_lock value "bogus" in "bogus"\n');
  const x = ours(['-c', dir, join(dir, 'mbox'), '/nonexistent/command']);
  assert.equal(x.status, 1);
  assert.equal(x.stderr, 'postlock: fatal: execvp /nonexistent/command: No such file or directory\n');
  assert.equal(existsSync(join(dir, 'mbox.lock')), false);
});
