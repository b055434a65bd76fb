// Tests of the postconf command (bin/postconf.ts): each runs the real command
// as a child process on a temporary configuration directory and pins one
// Postfix postconf(1) behaviour. Where Debian's /usr/sbin/postconf is
// installed, outputs that Postfix gives for the same files are compared literally.
import { test } from 'node:test';
import { needs } from './helpers/peers.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEFAULTS } from '../src/config/index.js';
import { declaration } from '../src/config/params/registry.js';
import { tempDirs } from './helpers/temp.js';

// Tests run from dist/test/.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const SCRIPT = path.join(ROOT, 'dist/bin/postconf.js');
const WRAPPER = path.join(ROOT, 'bin/postconf');
const POSTFIX = '/usr/sbin/postconf';
const NO_POSTFIX = needs(POSTFIX, "Debian's postconf, the comparison peer");


const SMALL_MASTER = `# a small master.cf
smtp      inet  n       -       y       -       -       smtpd
  -o smtpd_tls_security_level=may
  -o { smtpd_client_restrictions = permit_mynetworks, reject }
127.0.0.1:2525 inet n - n - 2 smtpd
qmgr      unix  n       -       n       300?    1       qmgr
pickup    unix  n       -       n       60      1       pickup
relay     unix  -       -       n       -       -       smtp
  -o smtp_helo_timeout=5 -o smtp_connect_timeout=$smtp_helo_timeout
`;

const tempDir = tempDirs('postactor-postconf-');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (!('POSTACTOR_CONFIG' in extra)) delete e.POSTACTOR_CONFIG;
  return e;
}

function postconf(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Run {
  const r = spawnSync(NODE, [SCRIPT, ...args], { encoding: 'utf8', env: env(opts.env), cwd: opts.cwd ?? ROOT });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function realPostconf(args: string[]): Run {
  const r = spawnSync(POSTFIX, args, { encoding: 'utf8', env: env() });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** "name = value" lines -> Map. */
function parseListing(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const at = line.indexOf(' =');
    m.set(line.slice(0, at), line.slice(at + 2).replace(/^ /, ''));
  }
  return m;
}

test('postconf -d lists every built-in parameter with its Postfix default value', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\nrelayhost = [10.0.0.1]\n', 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir, '-d']);
  assert.equal(r.status, 0, r.stderr);
  const listed = parseListing(r.stdout);
  for (const [name, value] of Object.entries(DEFAULTS)) {
    if (name === 'process_id') continue; // each process's own pid
    if (declaration(name)?.legacy) assert.equal(listed.has(name), false, `${name}: legacy names are not listed`);
    else assert.equal(listed.get(name), value, name);
  }
  // main.cf settings do not show through -d.
  assert.equal(listed.get('relayhost'), '');
  assert.match(r.stdout, /^relayhost =$/m, 'an empty value prints as "name =" (no trailing blank)');
  // Per-transport names of master.cf delivery agents, as Postfix lists them.
  assert.equal(listed.get('relay_destination_concurrency_limit'), '$default_destination_concurrency_limit');
  const names = [...listed.keys()];
  assert.deepEqual(names, [...names].sort(), 'sorted by name');
});

test('postconf -n lists only what main.cf sets, sorted, continuation lines joined, plus config_directory for -c DIR', () => {
  const dir = tempDir({
    'main.cf': '# c\nrelayhost = [10.0.0.1]\nmydestination = $myhostname,\n    # inside\n    localhost\nmyhostname = mail.example.com\n',
    'master.cf': SMALL_MASTER,
  });
  const r = postconf(['-c', dir, '-n']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, [
    `config_directory = ${dir}`,
    'mydestination = $myhostname, localhost',
    'myhostname = mail.example.com',
    'relayhost = [10.0.0.1]',
    '',
  ].join('\n'));
});

test('postconf without flags prints every parameter with its effective value (main.cf wins over the default)', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\nrelayhost = [10.0.0.1]\n', 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir]);
  assert.equal(r.status, 0, r.stderr);
  const listed = parseListing(r.stdout);
  assert.equal(listed.get('relayhost'), '[10.0.0.1]');
  assert.equal(listed.get('myorigin'), '$myhostname', 'values are not expanded without -x');
  assert.equal(listed.get('mydomain'), 'example.com', 'mydomain follows myhostname, as in Postfix');
  assert.equal(listed.get('config_directory'), dir);
  for (const name of Object.keys(DEFAULTS)) if (!declaration(name)?.legacy) assert.ok(listed.has(name), name);
});

test('postconf NAME prints only the named parameters; -h prints values only; -x expands $name', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\n', 'master.cf': SMALL_MASTER });
  assert.equal(postconf(['-c', dir, 'myorigin', 'myhostname']).stdout, 'myorigin = $myhostname\nmyhostname = mail.example.com\n');
  assert.equal(postconf(['-c', dir, '-h', 'myorigin']).stdout, '$myhostname\n');
  assert.equal(postconf(['-c', dir, '-x', 'mydestination']).stdout,
    'mydestination = mail.example.com, localhost.example.com, localhost\n');
  // getopt-style bundling and -cDIR.
  assert.equal(postconf([`-hxc${dir}`, 'myorigin']).stdout, 'mail.example.com\n');
  // -n with a name that main.cf does not set prints nothing, silently.
  const n = postconf(['-c', dir, '-n', 'myorigin']);
  assert.equal(n.stdout, '');
  assert.equal(n.stderr, '');
});

test('postconf warns "NAME: unknown parameter" for an unknown name and still exits 0', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\n', 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir, 'no_such_thing', 'myhostname']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout, 'myhostname = mail.example.com\n');
  assert.equal(r.stderr, 'postconf: warning: no_such_thing: unknown parameter\n');
});

test('postconf warns about unused main.cf parameters ("FILE: unused parameter: name=value") and leaves them out of -n', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\nfoo_bar = 1\n', 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir, '-n']);
  assert.equal(r.status, 0);
  assert.ok(!r.stdout.includes('foo_bar'), r.stdout);
  assert.ok(r.stderr.includes(`postconf: warning: ${path.join(dir, 'main.cf')}: unused parameter: foo_bar=1\n`), r.stderr);
});

test('postconf -e replaces a setting and its continuation lines in place, keeps comments, appends new settings', () => {
  const main = [
    '# head comment',
    'myhostname = mail.example.com',
    'mydestination = one,',
    '    two',
    '    # inner comment',
    '    three',
    'relayhost = [10.0.0.1]',
    '# tail comment',
    '',
  ].join('\n');
  const dir = tempDir({ 'main.cf': main, 'master.cf': SMALL_MASTER });
  fs.chmodSync(path.join(dir, 'main.cf'), 0o640);
  const r = postconf(['-c', dir, '-e', 'mydestination = localhost', 'relayhost=', 'inet_interfaces=loopback-only']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(path.join(dir, 'main.cf'), 'utf8'), [
    '# head comment',
    'myhostname = mail.example.com',
    'mydestination = localhost',
    '    # inner comment',
    'relayhost = ',
    '# tail comment',
    'inet_interfaces = loopback-only',
    '',
  ].join('\n'));
  assert.equal(fs.statSync(path.join(dir, 'main.cf')).mode & 0o777, 0o640, 'file mode kept');
  assert.deepEqual(fs.readdirSync(dir).sort(), ['main.cf', 'master.cf'], 'no temporary file left');
  assert.equal(postconf(['-c', dir, '-h', 'mydestination']).stdout, 'localhost\n');
});

test('postconf -e refuses an edit whose result does not load, and leaves main.cf untouched', () => {
  const main = 'myhostname = mail.example.com\n';
  const dir = tempDir({ 'main.cf': main, 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir, '-e', 'smtpd_timeout=soon']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^postconf: fatal: .*main\.cf:2: bad time parameter value: smtpd_timeout = soon\n$/);
  assert.equal(fs.readFileSync(path.join(dir, 'main.cf'), 'utf8'), main);
  const bad = postconf(['-c', dir, '-e', 'no_equals_sign']);
  assert.equal(bad.status, 64);
  assert.equal(bad.stderr, `postconf: fatal: missing '=' after attribute name: "no_equals_sign"\n`);
});

test('postconf -e refuses to edit the embedded default configuration', () => {
  const r = postconf(['-e', 'relayhost=']);
  assert.equal(r.status, 64);
  assert.equal(r.stderr, 'postconf: fatal: cannot edit the embedded default configuration; use -c DIR\n');
});

test('postconf -# comments out every line of the named settings, and ignores names that are not set', () => {
  const dir = tempDir({
    'main.cf': 'myhostname = mail.example.com\nmydestination = one,\n    # inner\n    two\nrelayhost = x\nrelayhost = y\n',
    'master.cf': SMALL_MASTER,
  });
  const r = postconf(['-c', dir, '-#', 'mydestination', 'relayhost', 'not_set']);
  assert.equal(r.status, 0);
  assert.equal(r.stderr, `postconf: warning: ${path.join(dir, 'main.cf')}: multiple entries for "relayhost"\n`);
  assert.equal(fs.readFileSync(path.join(dir, 'main.cf'), 'utf8'),
    'myhostname = mail.example.com\n#mydestination = one,\n    # inner\n#    two\n#relayhost = x\n#relayhost = y\n');
});

test('postconf -M prints master.cf services in Postfix columns; service/type selects; unmatched requests warn', () => {
  const dir = tempDir({ 'main.cf': '', 'master.cf': SMALL_MASTER });
  const all = postconf(['-c', dir, '-M']);
  assert.equal(all.status, 0, all.stderr);
  assert.equal(all.stdout, [
    'smtp       inet  n       -       y       -       -       smtpd -o smtpd_tls_security_level=may -o {smtpd_client_restrictions=permit_mynetworks, reject}',
    '127.0.0.1:2525 inet n    -       n       -       2       smtpd',
    'qmgr       unix  n       -       n       300?    1       qmgr',
    'pickup     unix  n       -       n       60      1       pickup',
    'relay      unix  -       -       n       -       -       smtp -o smtp_helo_timeout=5 -o smtp_connect_timeout=$smtp_helo_timeout',
    '',
  ].join('\n'));
  const some = postconf(['-c', dir, '-M', 'qmgr/unix', 'pickup', 'nosuch']);
  assert.equal(some.stdout, 'qmgr       unix  n       -       n       300?    1       qmgr\npickup     unix  n       -       n       60      1       pickup\n');
  assert.equal(some.stderr, 'postconf: warning: unmatched request: "nosuch"\n');
  // -f folds: each -o option with its value on a line of its own.
  assert.equal(postconf(['-c', dir, '-Mf', 'smtp/inet']).stdout, [
    'smtp       inet  n       -       y       -       -       smtpd',
    '    -o smtpd_tls_security_level=may',
    '    -o {smtpd_client_restrictions=permit_mynetworks, reject}',
    '',
  ].join('\n'));
  // -x expands -o values in the service's own context.
  assert.match(postconf(['-c', dir, '-Mx', 'relay']).stdout, /-o smtp_connect_timeout=5\n$/);
});

test('postconf -F prints service/type/field = value for the fields service..command', () => {
  const dir = tempDir({ 'main.cf': '', 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir, '-F', 'qmgr/unix']);
  assert.equal(r.stdout, [
    'qmgr/unix/service = qmgr',
    'qmgr/unix/type = unix',
    'qmgr/unix/private = n',
    'qmgr/unix/unprivileged = -',
    'qmgr/unix/chroot = n',
    'qmgr/unix/wakeup = 300?',
    'qmgr/unix/process_limit = 1',
    'qmgr/unix/command = qmgr',
    '',
  ].join('\n'));
  assert.equal(postconf(['-c', dir, '-Fh', 'smtp/inet/command']).stdout,
    'smtpd -o smtpd_tls_security_level=may -o {smtpd_client_restrictions=permit_mynetworks, reject}\n');
  const bad = postconf(['-c', dir, '-F', 'smtp/inet/colour']);
  assert.equal(bad.status, 64);
  assert.equal(bad.stderr, 'postconf: fatal: invalid service attribute name: "colour"\n');
});

test('postconf -P prints the -o overrides as service/type/parameter = value, sorted per service', () => {
  const dir = tempDir({ 'main.cf': '', 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir, '-P']);
  assert.equal(r.stdout, [
    'smtp/inet/smtpd_client_restrictions = permit_mynetworks, reject',
    'smtp/inet/smtpd_tls_security_level = may',
    'relay/unix/smtp_connect_timeout = $smtp_helo_timeout',
    'relay/unix/smtp_helo_timeout = 5',
    '',
  ].join('\n'));
  assert.equal(postconf(['-c', dir, '-Px', 'relay/unix/smtp_connect_timeout']).stdout, 'relay/unix/smtp_connect_timeout = 5\n');
  assert.equal(postconf(['-c', dir, '-P', 'qmgr/unix/x']).stderr, 'postconf: warning: unmatched request: "qmgr/unix/x"\n');
});

test('postconf --json prints a JSON object of name -> value', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\n', 'master.cf': SMALL_MASTER });
  assert.deepEqual(JSON.parse(postconf(['-c', dir, '--json', '-x', 'myorigin', 'relayhost']).stdout),
    { myorigin: 'mail.example.com', relayhost: '' });
  assert.deepEqual(JSON.parse(postconf(['-c', dir, '--json', '-P', 'relay']).stdout),
    { 'relay/unix/smtp_connect_timeout': '$smtp_helo_timeout', 'relay/unix/smtp_helo_timeout': '5' });
  const m = JSON.parse(postconf(['-c', dir, '--json', '-M', 'qmgr']).stdout);
  assert.equal(m['qmgr/unix'].wakeup, '300?');
});

test('postconf with a bad flag prints usage on stderr and exits 64 (EX_USAGE); --help prints it on stdout', () => {
  const r = postconf(['-z']);
  assert.equal(r.status, 64);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^postconf: invalid option -- 'z'\nusage: postconf /);
  const c = postconf(['-c']);
  assert.equal(c.status, 64);
  assert.match(c.stderr, /option requires an argument -- 'c'/);
  const both = postconf(['-dn']);
  assert.equal(both.status, 64);
  assert.equal(both.stderr, 'postconf: fatal: specify one of -d -n\n');
  const h = postconf(['--help']);
  assert.equal(h.status, 0);
  assert.match(h.stdout, /^usage: postconf /);
  assert.equal(h.stderr, '');
});

test('postconf reports a configuration error as "postconf: fatal: file:line: ..." with exit 1 and no stack trace', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\nthis line is wrong\n', 'master.cf': SMALL_MASTER });
  const r = postconf(['-c', dir, '-n']);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `postconf: fatal: ${path.join(dir, 'main.cf')}:2: missing '=' after attribute name: "this"\n`);
});

test('postconf uses POSTACTOR_CONFIG, else the embedded default', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = env.example.com\n', 'master.cf': SMALL_MASTER });
  assert.equal(postconf(['-h', 'myhostname'], { env: { POSTACTOR_CONFIG: dir } }).stdout, 'env.example.com\n');
  const embedded = postconf(['-n']);
  assert.equal(embedded.status, 0, embedded.stderr);
  assert.match(embedded.stdout, /^relayhost = \[127\.0\.0\.1\]:2626$/m);
  assert.ok(!embedded.stdout.includes('config_directory'), 'no config_directory without -c / POSTACTOR_CONFIG');
});

test('bin/postconf (a symlink to the bin/postactor wrapper) runs from any working directory', () => {
  const dir = tempDir({ 'main.cf': 'myhostname = mail.example.com\n', 'master.cf': SMALL_MASTER });
  const r = spawnSync(WRAPPER, ['-c', dir, '-h', 'myhostname'], { encoding: 'utf8', cwd: '/tmp', env: env() });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'mail.example.com\n');
});

// ---- Literal comparisons with Debian's Postfix postconf on the same files.

const COMPARE_MAIN = `# compared with Postfix
myhostname = mail.example.com
mydestination = $myhostname,
    localhost.$mydomain
relayhost = [10.0.0.1]:25
`;

test('same output as Postfix: postconf -n -c DIR', { skip: NO_POSTFIX }, () => {
  const dir = tempDir({ 'main.cf': COMPARE_MAIN, 'master.cf': SMALL_MASTER });
  const ours = postconf(['-n', '-c', dir]);
  const theirs = realPostconf(['-n', '-c', dir]);
  assert.equal(theirs.status, 0, theirs.stderr);
  assert.equal(ours.stdout, theirs.stdout);
});

test('same output as Postfix: postconf -h -c DIR myorigin (myhostname set), and -x mydestination', { skip: NO_POSTFIX }, () => {
  const dir = tempDir({ 'main.cf': COMPARE_MAIN, 'master.cf': SMALL_MASTER });
  for (const args of [['-h', 'myorigin'], ['-hx', 'myorigin'], ['-x', 'mydestination'], ['mydomain', 'relayhost']]) {
    const ours = postconf(['-c', dir, ...args]);
    const theirs = realPostconf(['-c', dir, ...args]);
    assert.equal(theirs.status, 0, theirs.stderr);
    assert.equal(ours.stdout, theirs.stdout, args.join(' '));
  }
});

test('same output as Postfix: postconf -M, -Mf, -F and -P for a small master.cf', { skip: NO_POSTFIX }, () => {
  const dir = tempDir({ 'main.cf': COMPARE_MAIN, 'master.cf': SMALL_MASTER });
  for (const args of [['-M'], ['-Mf'], ['-M', 'qmgr/unix', 'smtp'], ['-F'], ['-Fh', 'smtp/inet/command'], ['-P'], ['-Px']]) {
    const ours = postconf(['-c', dir, ...args]);
    const theirs = realPostconf(['-c', dir, ...args]);
    assert.equal(theirs.status, 0, theirs.stderr);
    assert.equal(ours.stdout, theirs.stdout, args.join(' '));
  }
});

test('same result as Postfix: postconf -e and -# edit main.cf identically', { skip: NO_POSTFIX }, () => {
  const main = '# c\nmyhostname = mail.example.com\nmydestination = a,\n  # keep\n  b\nrelayhost = x\n# end\n';
  for (const args of [['-e', 'mydestination = localhost', 'relayhost='], ['-e', 'inet_interfaces = loopback-only'], ['-#', 'mydestination', 'relayhost']]) {
    const ours = tempDir({ 'main.cf': main, 'master.cf': SMALL_MASTER });
    const theirs = tempDir({ 'main.cf': main, 'master.cf': SMALL_MASTER });
    assert.equal(postconf(['-c', ours, ...args]).status, 0);
    assert.equal(realPostconf(['-c', theirs, ...args]).status, 0);
    assert.equal(fs.readFileSync(path.join(ours, 'main.cf'), 'utf8'), fs.readFileSync(path.join(theirs, 'main.cf'), 'utf8'), args.join(' '));
  }
});
