// postconf's editing of master.cf (-M name/type='entry', -MX, -M#, -F …/field=value,
// -P …/parameter=value, -PX) and main.cf (-X, -#, -e, a bare name=value): each case runs
// Postactor's postconf and Debian's /usr/sbin/postconf on copies of the same files in two
// temporary directories, and the edited files, the messages and success or failure must be
// the same (Postfix's own name prefix "/usr/sbin/postconf:" read as "postconf:").
//
// Postfix's msg_fatal() sleeps one second before it exits (src/util/msg.c), and every refusal is
// a fatal error: one case after another, the refusals alone slept 22 s. Each case has its own
// directories, so the two postconfs of a case run at once and a few cases side by side; the
// comparisons are made afterwards, in the cases' order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { needs } from './helpers/peers.js';
import { tempDirs } from './helpers/temp.js';
import { inPool } from './helpers/pool.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const SCRIPT = path.join(ROOT, 'dist/bin/postconf.js');
const POSTFIX = '/usr/sbin/postconf';
const NO_POSTFIX = needs(POSTFIX, "Debian's postconf, the comparison peer");

const MASTER = `# a small master.cf
smtp      inet  n       -       y       -       -       smtpd
  -o smtpd_tls_security_level=may
  # inner comment

  -o { smtpd_client_restrictions = permit_mynetworks, reject }
submission inet n - y - - smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt
qmgr      unix  n       -       n       300?    1       qmgr
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
bounce    unix  -       -       n       -       0       bounce
relay     unix  -       -       n       -       -       smtp
  -o smtp_helo_timeout=5 -o smtp_connect_timeout=$smtp_helo_timeout
smtp      unix  -       -       n       -       -       smtp
`;
const MAIN = '# c\nmyhostname = mail.example.com\nmydestination = a,\n  # keep\n  b\nrelayhost = x\n# end\n';

const tempDir = tempDirs('postactor-postconf-edit-');

interface Outcome { ok: boolean; stdout: string; stderr: string; main: string; master: string }

function run(cmd: string[], args: string[]): Promise<Outcome> {
  const dir = tempDir({ 'main.cf': MAIN, 'master.cf': MASTER });
  const env = { ...process.env };
  delete env['POSTACTOR_CONFIG'];
  delete env['MAIL_CONFIG'];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, [...cmd.slice(1), '-c', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env, timeout: 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => resolve({
      ok: code === 0,
      stdout,
      stderr: stderr.replace(/^\/usr\/sbin\/postconf:/gm, 'postconf:'),
      main: fs.readFileSync(path.join(dir, 'main.cf'), 'utf8'),
      master: fs.readFileSync(path.join(dir, 'master.cf'), 'utf8'),
    }));
  });
}

/** Each case (the arguments of one postconf run) with both postconfs; our outcomes, in order. */
async function same(...cases: string[][]): Promise<Outcome[]> {
  const ran = await inPool(cases, 4, (args) => Promise.all([run([NODE, SCRIPT], args), run([POSTFIX], args)]));
  return cases.map((args, i) => {
    const [ours, theirs] = ran[i]!;
    const what = args.join(' ');
    assert.equal(ours.stderr, theirs.stderr, `${what}: messages`);
    assert.equal(ours.ok, theirs.ok, `${what}: success`);
    assert.equal(ours.master, theirs.master, `${what}: master.cf`);
    assert.equal(ours.main, theirs.main, `${what}: main.cf`);
    assert.equal(ours.stdout, theirs.stdout, `${what}: output`);
    return ours;
  });
}

test('same result as Postfix: -M name/type=\'entry\' replaces a service or adds it', { skip: NO_POSTFIX }, async () => {
  const [r] = await same(
    ['-M', 'smtp/inet=smtp inet n - n - - smtpd -o smtpd_sasl_auth_enable=yes'],
    ['-M', 'qmqpd/inet=628 inet n - n - - qmqpd'],
    ['-M', 'foo/unix=foo unix - n n - - pipe flags=R user=x argv=/bin/cat {a b}'],
    // A new definition whose own name/type exists elsewhere replaces that one.
    ['-M', 'nosuch/unix=relay unix - - n - 5 smtp'],
    ['-Me', 'pickup/unix=pickup unix n - n 30 1 pickup', 'bounce/unix=bounce unix - - n - 1 bounce'],
  );
  assert.match(r!.master, /^smtp {7}inet {2}n {7}- {7}n {7}- {7}- {7}smtpd\n {4}-o smtpd_sasl_auth_enable=yes\n/m);
  assert.doesNotMatch(r!.master, /smtpd_tls_security_level=may/);
});

test('same result as Postfix: -MX removes and -M# comments out a service with its continuation lines', { skip: NO_POSTFIX }, async () => {
  await same(
    ['-MX', 'smtp/inet'],
    ['-M#', 'smtp/inet'],
    ['-MX', 'relay/unix', 'nosuch/unix'],
    ['-M#', 'smtp/*'],
    ['-M#', '*/unix'],
  );
});

test('same result as Postfix: -F replaces a field, -P sets and -PX removes an -o parameter', { skip: NO_POSTFIX }, async () => {
  await same(
    ['-F', 'smtp/inet/chroot=n'],
    ['-F', 'relay/unix/command=smtp -o smtp_bind_address=127.0.0.1'],
    ['-F', 'pickup/unix/wakeup=30'],
    ['-P', 'relay/unix/smtp_helo_timeout=10'],
    ['-P', 'smtp/inet/smtpd_sasl_auth_enable=yes'],
    ['-P', '*/unix/syslog_name=x'],
    ['-PX', 'relay/unix/smtp_helo_timeout'],
    ['-PX', 'smtp/inet/smtpd_client_restrictions'],
    ['-P', 'nosuch/unix/x=1'],
  );
});

test('same result as Postfix: main.cf -X removes settings, -# comments them out, name=value without -e edits', { skip: NO_POSTFIX }, async () => {
  await same(
    ['-X', 'relayhost', 'mydestination'],
    ['-#', 'mydestination'],
    ['zz = 1'],
    ['-e', 'aa=1', 'aa=2'],
  );
});

test('new main.cf settings are appended in name order (Postfix 3.8; Debian\'s 3.7 appends in hash order)', async () => {
  const r = await run([NODE, SCRIPT], ['zz=1', 'aa = 2', 'mm=3']);
  assert.equal(r.ok, true, r.stderr);
  assert.ok(r.main.endsWith('# end\naa = 2\nmm = 3\nzz = 1\n'), r.main);
});

test('same refusals as Postfix for malformed edits', { skip: NO_POSTFIX }, async () => {
  const cases = [
    ['-MX', 'smtp'], ['-M#', 'a/b/c'], ['-PX', 'a/b'], ['-Pe', 'a/b/*=x'], ['-Pe', 'relay/unix/x=a b'],
    ['-Fe', 'smtp/inet/private=a b'], ['-Fe', 'smtp/inet/bogus=1'], ['-Fe', 'smtp/inet/*=1'],
    ['-F', 'smtp/inet/type=bogus'], ['-F', 'smtp/inet/private=x'], ['-F', 'smtp/inet/process_limit=x'],
    ['-M', 'smtp/inet=smtp inet n -'], ['-M', 'smtp/inet=smtp nosuch n - n - - smtpd'],
    ['-e', '-X', 'foo'], ['-F', '-X', 'a/b/c'], ['-P', '-#', 'a/b/c'], ['-M', '-f', '-X', 'a/b'],
    ['-X', 'foo=bar'], ['-X'], ['-M#'], ['-X', '# x'], ['-MX', 'a/b=c'],
  ];
  const ran = await same(...cases);
  cases.forEach((args, i) => assert.equal(ran[i]!.ok, false, args.join(' ')));
});

test('an edit whose master.cf would not load is refused and the file left as it was', () => {
  const dir = tempDir({ 'main.cf': MAIN, 'master.cf': MASTER });
  const r = spawnSync(NODE, [SCRIPT, '-c', dir, '-P', 'smtp/inet/smtpd_recipient_limit=-3'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /^postconf: fatal: .*smtpd_recipient_limit/m);
  assert.equal(fs.readFileSync(path.join(dir, 'master.cf'), 'utf8'), MASTER);
});
