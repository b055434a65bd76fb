/**
 * End to end, local(8): a real server child delivers mail for mydestination (local.test) with
 * its local transport into an mbox under mail_spool_directory and into Maildir/ homes; the
 * mailboxes are read back by an independent reader, Python's `mailbox` module. Users come
 * from a throwaway passwd file (POSTACTOR_PASSWD_FILE) whose homes are temporary directories:
 * "me" is the test's own uid/gid, "other" is uid/gid 65534 (delivered as that uid when the
 * test runs as root, deferred 4.2.0 otherwise).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, queuedId, REPO_ROOT, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { reachableDir } from './helpers/reachable.js';
import { parseDsn } from './helpers/dsn.js';
import { header, readMailbox } from './helpers/mailbox.js';

const ROOT = process.getuid!() === 0;
const OTHER = process.getuid!() === 65534 ? 65533 : 65534;
const MASTER_LOCAL = 'local     unix  -       n       n       -       -       local';
const FAST_RETRY = { minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s' };


interface Env { dir: string; spool: string; homes: Record<string, string>; passwd: string }

function makeEnv(): Env {
  const dir = reachableDir('local-'); // deliveries run as the recipients and default_privs
  const spool = join(dir, 'spool');
  mkdirSync(spool, { mode: 0o1777 });
  chmodSync(spool, 0o1777);
  const homes = { me: join(dir, 'home-me'), other: join(dir, 'home-other') };
  mkdirSync(homes.me);
  mkdirSync(homes.other, { mode: 0o777 });
  chmodSync(homes.other, 0o777);
  const uid = process.getuid!();
  const gid = process.getgid!();
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, [
    `me:x:${uid}:${gid}:Test User:${homes.me}:/bin/sh`,
    `other:x:${OTHER}:${OTHER}:Other User:${homes.other}:/bin/sh`,
    `nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin`,
  ].join('\n') + '\n');
  writeFileSync(join(dir, 'aliases'), '');
  return { dir, spool, homes, passwd };
}

/** A world-writable directory for file and command targets: they run as default_privs (nobody) when root. */
function filesDir(env: Env): string {
  const files = join(env.dir, 'files');
  mkdirSync(files, { mode: 0o777 });
  chmodSync(files, 0o777);
  return files;
}

function mainCf(env: Env, extra: Record<string, string> = {}): Record<string, string> {
  return {
    mydestination: 'localhost, local.test',
    mail_spool_directory: env.spool,
    local_recipient_maps: '',
    alias_maps: `texthash:${join(env.dir, 'aliases')}`,
    ...FAST_RETRY,
    ...extra,
  };
}

describe('e2e local delivery to an mbox in mail_spool_directory', () => {
  let env: Env;
  let server: TestServer;
  before(async () => {
    env = makeEnv();
    server = await startServer({ mainCf: mainCf(env), masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd } });
  });
  after(async () => {
    await server?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('user@mydestination lands in $mail_spool_directory/user: From_ line, Return-Path, X-Original-To, Delivered-To prepended, ">From " quoting, blank line at the end; log says "delivered to mailbox"', async () => {
    const body = 'first line\nFrom the start of a line\n>From already quoted\nnot From here\n';
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['me@local.test'], rfc822({ Subject: 'to mbox', 'Message-ID': '<mbox-1@t>' }, body)));
    const line = await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=`), 15_000);
    assert.match(line, /relay=local, .*dsn=2\.0\.0, status=sent \(delivered to mailbox\)$/);
    const path = join(env.spool, 'me');
    const raw = readFileSync(path, 'latin1');
    assert.match(raw, /^From sender@example\.org  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n/);
    assert.ok(raw.endsWith('not From here\n\n'), JSON.stringify(raw.slice(-40)));
    assert.ok(!raw.includes('\r'), 'lines end in LF in the mbox');
    assert.equal(statSync(path).uid, process.getuid!());
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.ok(!existsSync(`${path}.lock`), 'the dot-lock is removed');
    const msgs = readMailbox('mbox', path);
    assert.equal(msgs.length, 1);
    const m = msgs[0]!;
    assert.match(m.from ?? '', /^sender@example\.org /);
    assert.deepEqual(m.headers.slice(0, 3).map(([k]) => k), ['Return-Path', 'X-Original-To', 'Delivered-To']);
    assert.deepEqual(header(m, 'Return-Path'), ['<sender@example.org>']);
    assert.deepEqual(header(m, 'X-Original-To'), ['me@local.test']);
    assert.deepEqual(header(m, 'Delivered-To'), ['me@local.test']);
    assert.deepEqual(header(m, 'Subject'), ['to mbox']);
    // Postfix quotes only "From " (mboxo): ">From " stays as it is. The reader drops the separating blank line.
    assert.equal(m.body, 'first line\n>From the start of a line\n>From already quoted\nnot From here\n');
  });

  test('a second message is appended (both read back) and a recipient_delimiter-less unknown user bounces 5.1.1 unknown user: "nosuch"', async () => {
    const id = queuedId(await sendRaw(server.port, '', ['me@local.test'], rfc822({ Subject: 'second' }, 'two\n')));
    await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=sent \\(delivered to mailbox\\)`), 15_000);
    const msgs = readMailbox('mbox', join(env.spool, 'me'));
    assert.deepEqual(msgs.map((m) => header(m, 'Subject')[0]), ['to mbox', 'second']);
    assert.match(msgs[1]!.from ?? '', /^MAILER-DAEMON /);
    assert.deepEqual(header(msgs[1]!, 'Return-Path'), ['<>']);
    const bad = queuedId(await sendRaw(server.port, 'sender@example.org', ['nosuch@local.test'], rfc822({ Subject: 'unknown' }, 'x\n')));
    const line = await server.waitForLog(new RegExp(`${bad}: to=<nosuch@local\\.test>, .*status=`), 15_000);
    assert.match(line, /relay=local, .*dsn=5\.1\.1, status=bounced \(unknown user: "nosuch"\)$/);
  });

  test('Delivered-To loop detection: a message that already has Delivered-To: <this recipient> bounces 5.4.6 "mail forwarding loop for me@local.test"', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['me@local.test'], rfc822({ 'Delivered-To': 'ME@local.test', Subject: 'looped' }, 'x\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=`), 15_000);
    assert.match(line, /dsn=5\.4\.6, status=bounced \(mail forwarding loop for me@local\.test\)$/);
    assert.ok(!readMailbox('mbox', join(env.spool, 'me')).some((m) => header(m, 'Subject')[0] === 'looped'));
  });

  test('dot-lock race: while another writer holds user.lock nothing is written; two deliveries then both land intact', async () => {
    const path = join(env.spool, 'me');
    const before = readMailbox('mbox', path).length;
    const lock = `${path}.lock`;
    writeFileSync(lock, '', { flag: 'wx' });
    try {
      const ids = [
        queuedId(await sendRaw(server.port, 'a@example.org', ['me@local.test'], rfc822({ Subject: 'race A' }, 'A'.repeat(5000) + '\nFrom A\n'))),
        queuedId(await sendRaw(server.port, 'b@example.org', ['me@local.test'], rfc822({ Subject: 'race B' }, 'B'.repeat(5000) + '\nFrom B\n'))),
      ];
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(readMailbox('mbox', path).length, before, 'nothing written while the lock is held');
      assert.ok(!server.logLines().some((l) => ids.some((id) => l.includes(`${id}: to=`))), 'no delivery reported while locked');
      unlinkSync(lock);
      for (const id of ids) await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=sent`), 15_000);
    } finally {
      rmSync(lock, { force: true });
    }
    const msgs = readMailbox('mbox', path).slice(before);
    assert.deepEqual(msgs.map((m) => header(m, 'Subject')[0]).sort(), ['race A', 'race B']);
    for (const m of msgs) {
      const c = header(m, 'Subject')[0]!.slice(-1);
      assert.equal(m.body, `${c.repeat(5000)}\n>From ${c}\n`);
    }
  });

  test('flock: while another process holds flock(2) on the mbox the delivery waits, then lands (mailbox_delivery_lock = fcntl, dotlock is served by flock + dotlock)', async () => {
    const path = join(env.spool, 'me');
    const before = readMailbox('mbox', path).length;
    const holder = spawn('/usr/bin/flock', ['-x', path, 'sleep', '2.5'], { stdio: 'ignore' });
    const exited = new Promise((r) => holder.on('exit', r));
    await new Promise((r) => setTimeout(r, 300));
    const id = queuedId(await sendRaw(server.port, 'f@example.org', ['me@local.test'], rfc822({ Subject: 'after flock' }, 'x\n')));
    await new Promise((r) => setTimeout(r, 1200));
    assert.ok(!server.logLines().some((l) => l.includes(`${id}: to=`)), 'not delivered while the flock is held');
    await exited;
    await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=sent`), 15_000);
    assert.equal(readMailbox('mbox', path).length, before + 1);
  });

  test('a dot-lock older than stale_lock_time (500s) is removed and the delivery proceeds', async () => {
    const path = join(env.spool, 'me');
    const lock = `${path}.lock`;
    writeFileSync(lock, '');
    const old = new Date(Date.now() - 600_000);
    utimesSync(lock, old, old);
    const id = queuedId(await sendRaw(server.port, 's@example.org', ['me@local.test'], rfc822({ Subject: 'stale lock' }, 'x\n')));
    await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=sent`), 15_000);
    assert.ok(!existsSync(lock));
  });
});

describe('e2e local: the original recipient after virtual aliasing, with and without enable_original_recipient', () => {
  let env: Env;
  let on: TestServer;
  let off: TestServer;
  before(async () => {
    env = makeEnv();
    const aliased = { virtual_alias_maps: 'inline:{ alias-me@local.test=me@local.test }' };
    on = await startServer({ mainCf: mainCf(env, aliased), masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd } });
    off = await startServer({ mainCf: mainCf(env, { ...aliased, enable_original_recipient: 'no' }), masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd } });
  });
  after(async () => {
    await on?.stop();
    await off?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('local logs to=<me@…>, orig_to=<alias-me@…> and writes X-Original-To: alias-me@…; with enable_original_recipient = no the log line stays and X-Original-To goes (mail_copy.c)', async () => {
    for (const [server, subject] of [[on, 'orig on'], [off, 'orig off']] as const) {
      const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['alias-me@local.test'], rfc822({ Subject: subject }, 'x\n')));
      await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, orig_to=<alias-me@local\\.test>, relay=local, .*status=sent \\(delivered to mailbox\\)$`), 15_000);
    }
    const msgs = readMailbox('mbox', join(env.spool, 'me'));
    const bySubject = new Map(msgs.map((m) => [header(m, 'Subject')[0], m]));
    assert.deepEqual(header(bySubject.get('orig on')!, 'X-Original-To'), ['alias-me@local.test']);
    assert.deepEqual(header(bySubject.get('orig off')!, 'X-Original-To'), []);
    assert.deepEqual(header(bySubject.get('orig off')!, 'Delivered-To'), ['me@local.test']);
  });
});

describe('e2e local delivery to Maildir/ (home_mailbox)', () => {
  let env: Env;
  let server: TestServer;
  before(async () => {
    env = makeEnv();
    server = await startServer({ mainCf: mainCf(env, { home_mailbox: 'Maildir/' }), masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd } });
  });
  after(async () => {
    await server?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('home_mailbox = Maildir/: the message is in $home/Maildir/new under a unique name, tmp/ is empty, read back by mailbox.Maildir; log says "delivered to maildir"', async () => {
    const ids: string[] = [];
    for (const n of [1, 2]) ids.push(queuedId(await sendRaw(server.port, 'sender@example.org', ['me@local.test'], rfc822({ Subject: `maildir ${n}` }, `From body ${n}\n`))));
    for (const id of ids) {
      const line = await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=`), 15_000);
      assert.match(line, /relay=local, .*dsn=2\.0\.0, status=sent \(delivered to maildir\)$/);
    }
    const md = join(env.homes.me, 'Maildir');
    const names = readdirSync(join(md, 'new'));
    assert.equal(names.length, 2);
    assert.notEqual(names[0], names[1]);
    for (const n of names) assert.match(n, /^\d+\.P\d+T\d+Q\d+M\d+\.[^/]+$/);
    assert.deepEqual(readdirSync(join(md, 'tmp')), []);
    const msgs = readMailbox('Maildir', md);
    assert.deepEqual(msgs.map((m) => header(m, 'Subject')[0]).sort(), ['maildir 1', 'maildir 2']);
    for (const m of msgs) {
      assert.deepEqual(header(m, 'Delivered-To'), ['me@local.test']);
      assert.deepEqual(header(m, 'Return-Path'), ['<sender@example.org>']);
      assert.match(m.body, /^From body \d\n$/, 'no From_ quoting in a Maildir');
    }
  });

  test(ROOT ? `as root, delivery runs as the recipient: the Maildir of uid ${OTHER} is owned by ${OTHER}` : 'not root: mail for another user is deferred 4.2.0 with the reason logged', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['other@local.test'], rfc822({ Subject: 'other' }, 'x\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<other@local\\.test>, .*status=`), 15_000);
    if (ROOT) {
      assert.match(line, /status=sent \(delivered to maildir\)$/);
      const md = join(env.homes.other, 'Maildir');
      assert.equal(statSync(md).uid, OTHER);
      const f = join(md, 'new', readdirSync(join(md, 'new'))[0]!);
      assert.equal(statSync(f).uid, OTHER);
      assert.equal(statSync(f).gid, OTHER);
    } else {
      assert.match(line, new RegExp(`dsn=4\\.2\\.0, status=deferred \\(maildir delivery failed: cannot deliver as user other \\(uid ${OTHER}\\): Postactor is not running as root`));
    }
  });

  test('an unwritable mailbox directory defers 4.2.0 with the error logged, and the retry after it is fixed delivers', async () => {
    const user = ROOT ? 'other' : 'me';
    const home = ROOT ? join(env.dir, 'home-locked') : env.homes.me;
    if (ROOT) {
      // A home that uid 65534 cannot write to: point "other" there.
      mkdirSync(home, { mode: 0o555 });
      writeFileSync(env.passwd, readFileSync(env.passwd, 'utf8').replace(env.homes.other, home));
    } else {
      rmSync(join(home, 'Maildir'), { recursive: true, force: true });
    }
    chmodSync(home, 0o555);
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', [`${user}@local.test`], rfc822({ Subject: 'locked out' }, 'keep me\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<${user}@local\\.test>, .*status=`), 15_000);
    assert.match(line, /dsn=4\.2\.0, status=deferred \(maildir delivery failed: create maildir file .*Maildir\/tmp: mkdir .*Maildir: Permission denied\)$/);
    assert.ok(server.logLines().some((l) => l.includes(`${id}: maildir delivery failed:`)), 'the reason is logged as a warning too');
    chmodSync(home, 0o777);
    await server.waitForLog(new RegExp(`${id}: to=<${user}@local\\.test>, .*status=sent \\(delivered to maildir\\)`), 15_000);
    const msgs = readMailbox('Maildir', join(home, 'Maildir'));
    assert.ok(msgs.some((m) => header(m, 'Subject')[0] === 'locked out' && m.body === 'keep me\n'));
  });
});

/** bin/postalias lmdb:FILE; returns its exit status and output. */
function postalias(file: string): { status: number; output: string } {
  try {
    return { status: 0, output: execFileSync(join(REPO_ROOT, 'bin', 'postalias'), [`lmdb:${file}`], { encoding: 'utf8', stdio: 'pipe' }) };
  } catch (e) {
    const err = e as { status: number; stderr: string; stdout: string };
    return { status: err.status, output: `${err.stdout}${err.stderr}` };
  }
}

describe('e2e local alias_maps expansion (lmdb: built by bin/postalias)', () => {
  let env: Env;
  let server: TestServer;
  let files: string;
  before(async () => {
    env = makeEnv();
    files = filesDir(env);
    writeFileSync(join(env.dir, 'list'), `# an include file\nme\nself, qualified\n`);
    writeFileSync(join(env.dir, 'list-file'), `${files}/include.mbox\n`);
    writeFileSync(join(env.dir, 'list-cmd'), '|/bin/true\n');
    writeFileSync(join(env.dir, 'aliases'), [
      '# aliases(5)',
      'chain1: chain2',
      `chain2: me, ${files}/chain.mbox`,
      'self: me',
      `incl: :include:${join(env.dir, 'list')}`,
      `inclcmd: :include:${join(env.dir, 'list-cmd')}`,
      `inclfile: :include:${join(env.dir, 'list-file')}`,
      `cmd: "|cat > ${files}/cmd.out; echo ran"`,
      'loopa: loopb',
      'loopb: loopa',
      'remote: someone@example.com',
      'qualified: me@local.test',
    ].join('\n') + '\n');
    postalias(join(env.dir, 'aliases'));
    server = await startServer({ mainCf: mainCf(env, { alias_maps: `lmdb:${join(env.dir, 'aliases')}` }), masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd } });
  });
  after(async () => {
    await server?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  /** The first delivery line for rcpt: its own, or an expanded address's with orig_to=<rcpt>. */
  async function deliverTo(rcpt: string, subject: string): Promise<string> {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', [rcpt], rfc822({ Subject: subject }, `body of ${subject}\n`)));
    const r = rcpt.replace(/[.]/g, '\\.');
    return server.waitForLog(new RegExp(`${id}: to=<(${r}|[^>]+>, orig_to=<${r})>, .*status=`), 15_000);
  }
  const subjects = (path: string) => readMailbox('mbox', path).map((m) => header(m, 'Subject')[0]);

  const cases: [string, string, RegExp, () => void][] = [
    ['a chain (chain1 → chain2 → me, /file) delivers to the user mailbox and appends to the file', 'chain1@local.test', /status=sent \(delivered to mailbox\)$/, () => {
      assert.ok(subjects(join(env.spool, 'me')).includes('chain1@local.test'));
      assert.deepEqual(subjects(join(files, 'chain.mbox')), ['chain1@local.test']);
    }],
    ['an alias naming a local user delivers to that user', 'self@local.test', /status=sent \(delivered to mailbox\)$/, () => {
      assert.ok(subjects(join(env.spool, 'me')).includes('self@local.test'));
    }],
    ['user@mydestination in an alias is the local user', 'qualified@local.test', /status=sent \(delivered to mailbox\)$/, () => {
      assert.ok(subjects(join(env.spool, 'me')).includes('qualified@local.test'));
    }],
    [':include:/file adds its lines (comments skipped); three names for one user give one copy (duplicates suppressed)', 'incl@local.test', /status=sent \(delivered to mailbox\)$/, () => {
      assert.equal(subjects(join(env.spool, 'me')).filter((x) => x === 'incl@local.test').length, 1);
    }],
    ['a /file from an :include: file is refused by allow_mail_to_files = alias, forward: 5.7.1', 'inclfile@local.test', /dsn=5\.7\.1, status=bounced \(mail to file is restricted\)$/, () => {
      assert.ok(!existsSync(join(files, 'include.mbox')));
    }],
    ['|command gets the message on stdin (From_ line first); log says "delivered to command: …"', 'cmd@local.test', /status=sent \(delivered to command: cat > .*cmd\.out; echo ran\)$/, () => {
      const out = readFileSync(join(files, 'cmd.out'), 'latin1');
      assert.match(out, /^From sender@example\.org  .*\nReturn-Path: <sender@example\.org>\n/);
      assert.match(out, /\nSubject: cmd@local\.test\n/);
      if (ROOT) assert.equal(statSync(join(files, 'cmd.out')).uid, 65534, 'as default_privs');
    }],
    ['a |command from an :include: file is refused by allow_mail_to_commands = alias, forward: 5.7.1', 'inclcmd@local.test', /dsn=5\.7\.1, status=bounced \(mail to command is restricted\)$/, () => {}],
    ['an alias loop ends at a name already expanded: unknown user 5.1.1', 'loopa@local.test', /dsn=5\.1\.1, status=bounced \(unknown user: "loopa"\)$/, () => {}],
    ['forwarding to a remote address without a pickup service in master.cf: deferred 4.3.5 "not supported", nothing lost', 'remote@local.test', /dsn=4\.3\.5, status=deferred \(not supported: forwarding to someone@example\.com without a pickup service\)$/, () => {}],
  ];
  for (const [name, rcpt, want, check] of cases) {
    test(`aliases: ${name}`, async () => {
      const line = await deliverTo(rcpt, rcpt);
      assert.match(line, want);
      check();
    });
  }

  test('postalias then a lookup sees the change; an alias file with a syntax error is refused naming file:line and the old table stays', async () => {
    const file = join(env.dir, 'aliases');
    writeFileSync(file, readFileSync(file, 'utf8') + 'newname: me\n');
    assert.equal(postalias(file).status, 0);
    assert.match(await deliverTo('newname@local.test', 'newname@local.test'), /status=sent \(delivered to mailbox\)$/);
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, good + 'no colon here\n');
    const r = postalias(file);
    assert.notEqual(r.status, 0);
    assert.ok(r.output.includes(`${file}:${good.split('\n').length}: need name:value pair`), r.output);
    assert.match(await deliverTo('self@local.test', 'after a broken rebuild'), /status=sent \(delivered to mailbox\)$/);
  });
});

describe('e2e local forwarding to a remote alias target', () => {
  let env: Env;
  let server: TestServer;
  let sink: SmtpSink;
  before(async () => {
    env = makeEnv();
    writeFileSync(join(env.dir, 'aliases'), 'team: me, someone@example.com, other@example.net\nlist: me, third@example.org\nowner-list: me\n');
    postalias(join(env.dir, 'aliases'));
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await freePort();
    await sink.listen(sinkPort);
    server = await startServer({
      mainCf: mainCf(env, { alias_maps: `lmdb:${join(env.dir, 'aliases')}` }), sinkPort,
      masterCfExtra: `${MASTER_LOCAL}\npickup unix n - n 60 1 pickup`, env: { POSTACTOR_PASSWD_FILE: env.passwd },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('team: me, remote addresses → the mailbox copy plus one forwarded message with the original envelope sender and Delivered-To: team@local.test', async () => {
    const id = queuedId(await sendRaw(server.port, 'origin@example.org', ['team@local.test'], rfc822({ Subject: 'for the team' }, 'hello team\n')));
    // As Postfix's local: each delivery of the expansion is logged as the address it went to
    // (an alias target is user@$myorigin), the forwarding as the alias itself.
    const mailbox = await server.waitForLog(new RegExp(`${id}: to=<me@mx\\.postactor\\.test>, orig_to=<team@local\\.test>, .*status=`), 15_000);
    assert.match(mailbox, /relay=local, .*dsn=2\.0\.0, status=sent \(delivered to mailbox\)$/);
    const forwarded = await server.waitForLog(new RegExp(`${id}: to=<team@local\\.test>, .*status=`), 15_000);
    assert.match(forwarded, /relay=local, .*dsn=2\.0\.0, status=sent \(forwarded as [0-9A-Za-z]+\)$/);
    assert.equal(server.logLines().filter((l) => l.includes(`${id}: to=`) && l.includes('relay=local')).length, 2, 'one line per delivery, none for the alias as a whole');
    await sink.waitFor((st) => st.messages >= 1, 15_000);
    const m = sink.messages[0]!;
    assert.equal(m.sender, 'origin@example.org');
    assert.deepEqual([...m.recipients].sort(), ['other@example.net', 'someone@example.com']);
    const text = m.data.toString('latin1');
    assert.match(text, /^Delivered-To: team@local\.test\r$/m);
    assert.match(text, /^Subject: for the team\r$/m);
    assert.match(text, /\r\n\r\nhello team\r\n/);
    // As Postfix's forward.c: the forwarded recipients keep the original recipient and its DSN ORCPT.
    assert.deepEqual(m.rcptParams, ['ORCPT=rfc822;team@local.test', 'ORCPT=rfc822;team@local.test']);
    for (const to of ['someone@example.com', 'other@example.net']) {
      await server.waitForLog(new RegExp(`: to=<${to.replace(/[.]/g, '\\.')}>, orig_to=<team@local\\.test>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:\\d+, .*status=sent `), 10_000);
    }
    assert.ok(readMailbox('mbox', join(env.spool, 'me')).some((x) => header(x, 'Subject')[0] === 'for the team'));
  });

  test('owner-list exists: the expansion of list carries owner-list@$myorigin as envelope sender (forwarded copy and mailbox Return-Path)', async () => {
    const id = queuedId(await sendRaw(server.port, 'origin@example.org', ['list@local.test'], rfc822({ Subject: 'for the list' }, 'hello list\n')));
    await server.waitForLog(new RegExp(`${id}: to=<list@local\\.test>, .*status=sent`), 15_000);
    await sink.waitFor((st) => st.messages >= 2, 15_000);
    const m = sink.messages.find((x) => x.recipients.includes('third@example.org'))!;
    assert.match(m.sender, /^owner-list@/);
    const mine = readMailbox('mbox', join(env.spool, 'me')).find((x) => header(x, 'Subject')[0] === 'for the list')!;
    assert.match(header(mine, 'Return-Path')[0]!, /^<owner-list@[^>]+>$/);
  });

  test('a forwarded message that comes back to the same alias is a loop: bounced 5.4.6', async () => {
    const id = queuedId(await sendRaw(server.port, 'origin@example.org', ['team@local.test'], rfc822({ 'Delivered-To': 'team@local.test', Subject: 'again' }, 'x\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<team@local\\.test>, .*status=`), 15_000);
    assert.match(line, /dsn=5\.4\.6, status=bounced \(mail forwarding loop for team@local\.test\)$/);
  });

  test('sendmail -bv: local(8) reports what it would do (mailbox, aliases, unknown user) and writes nothing', async () => {
    const before = readMailbox('mbox', join(env.spool, 'me')).length;
    const r = spawnSync(join(REPO_ROOT, 'bin', 'sendmail'), ['-C', server.dir, '-f', 'checker@example.com', '-bv', 'me@local.test', 'team@local.test', 'nosuch@local.test'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const deadline = Date.now() + 15_000;
    let report;
    while (!(report = sink.messages.find((m) => m.recipients.includes('checker@example.com'))) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    assert.ok(report, 'the -bv report reached the sender');
    const dsn = await parseDsn(report.data);
    assert.equal(dsn.subject, 'Mail Delivery Status Report');
    const got = Object.fromEntries(dsn.recipients.map((x) => [x.get('final-recipient'), [x.get('action'), x.get('status')]]));
    assert.deepEqual(got, {
      'rfc822; me@local.test': ['deliverable', '2.0.0'],
      'rfc822; team@local.test': ['deliverable', '2.0.0'],
      'rfc822; nosuch@local.test': ['undeliverable', '5.1.1'],
    });
    // "delivery via local: " as Postfix's trace_append() writes it; wrapped at 79 columns, as Postfix's bounce wraps it.
    assert.match(dsn.text, /<team@local\.test>: delivery via local: delivers to mailbox, aliased to\n    someone@example\.com, aliased to other@example\.net\n/);
    assert.equal(readMailbox('mbox', join(env.spool, 'me')).length, before, 'nothing was written');
    assert.equal(sink.messages.filter((m) => m.recipients.includes('someone@example.com')).length, 1, 'nothing was forwarded (only the earlier test\'s copy)');
  });
});

describe('e2e local .forward (forward_path)', () => {
  let env: Env;
  let server: TestServer;
  let files: string;
  before(async () => {
    env = makeEnv();
    files = filesDir(env);
    postalias(join(env.dir, 'aliases'));
    server = await startServer({ mainCf: mainCf(env, { alias_maps: `lmdb:${join(env.dir, 'aliases')}`, recipient_delimiter: '+' }), masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd } });
  });
  after(async () => {
    await server?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('$home/.forward with "\\me, |command, /file": the mailbox, the command and the file each get one copy; the command runs as the user (default_privs for root)', async () => {
    writeFileSync(join(env.homes.me, '.forward'), `\\me, "|cat > ${files}/fwd.out", ${files}/fwd.mbox\n`);
    try {
      const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['me@local.test'], rfc822({ Subject: 'via forward' }, 'fwd body\n')));
      const line = await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=`), 15_000);
      assert.match(line, /status=sent \(delivered to mailbox\)$/);
      assert.deepEqual(readMailbox('mbox', join(env.spool, 'me')).map((m) => header(m, 'Subject')[0]), ['via forward']);
      assert.match(readFileSync(join(files, 'fwd.out'), 'latin1'), /\nSubject: via forward\n/);
      assert.equal(statSync(join(files, 'fwd.out')).uid, ROOT ? 65534 : process.getuid!());
      assert.deepEqual(readMailbox('mbox', join(files, 'fwd.mbox')).map((m) => header(m, 'Subject')[0]), ['via forward']);
    } finally {
      rmSync(join(env.homes.me, '.forward'));
    }
  });

  test('$home/.forward+ext is used for user+ext (forward_path ${recipient_delimiter}${extension}); plain .forward absent → the mailbox', async () => {
    writeFileSync(join(env.homes.me, '.forward+lists'), `${files}/lists.mbox\n`);
    try {
      const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['me+lists@local.test'], rfc822({ Subject: 'a list' }, 'x\n')));
      const line = await server.waitForLog(new RegExp(`${id}: to=<me\\+lists@local\\.test>, .*status=`), 15_000);
      assert.match(line, /status=sent \(delivered to file: .*lists\.mbox\)$/);
      assert.deepEqual(readMailbox('mbox', join(files, 'lists.mbox')).map((m) => header(m, 'Subject')[0]), ['a list']);
      const id2 = queuedId(await sendRaw(server.port, 'sender@example.org', ['me+other@local.test'], rfc822({ Subject: 'no forward' }, 'x\n')));
      assert.match(await server.waitForLog(new RegExp(`${id2}: to=<me\\+other@local\\.test>, .*status=`), 15_000), /status=sent \(delivered to mailbox\)$/);
    } finally {
      rmSync(join(env.homes.me, '.forward+lists'));
    }
  });
});

describe('e2e local mailbox_command and luser_relay', () => {
  let env: Env;
  let server: TestServer;
  let files: string;
  before(async () => {
    env = makeEnv();
    files = filesDir(env);
    postalias(join(env.dir, 'aliases'));
    // local_command_shell: a wrapper that notes its arguments, then runs the command as /bin/sh.
    const wrapper = join(env.dir, 'wrapper');
    writeFileSync(wrapper, `#!/bin/sh\nprintf '%s|' "$#" "$@" >> ${files}/shell.log\nexec /bin/sh "$@"\n`, { mode: 0o755 });
    chmodSync(wrapper, 0o755);
    server = await startServer({
      mainCf: mainCf(env, {
        alias_maps: `lmdb:${join(env.dir, 'aliases')}`, recipient_delimiter: '+',
        mailbox_command: `cat > ${files}/mbcmd.$USER.$EXTENSION.out`, luser_relay: 'me+$user',
        local_command_shell: `${wrapper}  -c`,
      }),
      masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd },
    });
  });
  after(async () => {
    await server?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('mailbox_command gets the message (From_ line, Delivered-To) with USER/EXTENSION in its environment, as the recipient (default_privs for root); nothing in the spool', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['me+x@local.test'], rfc822({ Subject: 'to the command' }, 'cmd body\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<me\\+x@local\\.test>, .*status=`), 15_000);
    assert.match(line, /status=sent \(delivered to command: cat > .*mbcmd\.\$USER\.\$EXTENSION\.out\)$/);
    const out = join(files, 'mbcmd.me.x.out');
    assert.match(readFileSync(out, 'latin1'), /^From sender@example\.org  [^\n]+\nReturn-Path: <sender@example\.org>\nX-Original-To: me\+x@local\.test\nDelivered-To: me\+x@local\.test\n/);
    assert.equal(statSync(out).uid, ROOT ? 65534 : process.getuid!());
    assert.ok(!existsSync(join(env.spool, 'me')));
  });

  test('local_command_shell = "WRAPPER -c": the command runs as WRAPPER -c COMMAND (split at white space, the command one argument)', async () => {
    const log = readFileSync(join(files, 'shell.log'), 'latin1');
    assert.equal(log, `2|-c|cat > ${files}/mbcmd.$USER.$EXTENSION.out|`);
  });

  test('luser_relay = me+$user: mail for an unknown user goes there instead of bouncing 5.1.1', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['nosuch@local.test'], rfc822({ Subject: 'lost user' }, 'x\n')));
    // As Postfix's local: delivered as the luser_relay address, the unknown user as orig_to.
    const line = await server.waitForLog(new RegExp(`${id}: to=<me\\+nosuch@mx\\.postactor\\.test>, orig_to=<nosuch@local\\.test>, .*status=`), 15_000);
    assert.match(line, /status=sent \(delivered to command: /);
    assert.match(readFileSync(join(files, 'mbcmd.me.nosuch.out'), 'latin1'), /\nSubject: lost user\n/);
  });
});

describe('e2e local alias_maps = hash:FILE, nis:mail.aliases (Postfix\'s form) built by bin/newaliases', () => {
  let env: Env;
  let server: TestServer;
  let aliases: string;
  before(async () => {
    env = makeEnv();
    aliases = join(env.dir, 'aliases');
    writeFileSync(aliases, 'team: me\n');
    server = await startServer({
      mainCf: mainCf(env, { alias_maps: `hash:${aliases}, nis:mail.aliases`, alias_database: `hash:${aliases}` }),
      masterCfExtra: MASTER_LOCAL, env: { POSTACTOR_PASSWD_FILE: env.passwd },
    });
  });
  after(async () => {
    await server?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('not built yet: deferred, the log names the command; after newaliases the retry delivers through the alias; one notice line', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['team@local.test'], rfc822({ Subject: 'via hash' }, 'body\n')));
    const deferred = await server.waitForLog(new RegExp(`${id}: to=<team@local\\.test>, .*status=deferred`), 15_000);
    assert.match(deferred, new RegExp(`dsn=4\\.3\\.0, status=deferred \\(alias database unavailable: open database ${aliases}\\.lmdb: No such file or directory \\(run "postalias hash:${aliases}" to build it from ${aliases}\\)\\)$`));
    const r = spawnSync(join(REPO_ROOT, 'bin', 'newaliases'), ['-c', server.dir], { encoding: 'utf8' });
    assert.deepEqual([r.status, r.stdout, r.stderr], [0, '', '']);
    assert.ok(existsSync(`${aliases}.lmdb`) && !existsSync(`${aliases}.db`), 'Postactor\'s own index file, never Postfix\'s');
    const sent = await server.waitForLog(new RegExp(`${id}: to=<me@mx\\.postactor\\.test>, orig_to=<team@local\\.test>, .*status=sent`), 15_000);
    assert.match(sent, /status=sent \(delivered to mailbox\)$/);
    assert.ok(readMailbox('mbox', join(env.spool, 'me')).some((m) => header(m, 'Subject')[0] === 'via hash'));
    const notice = server.logLines().filter((l) => l.includes(`hash:${aliases} is read as Postactor's lmdb table ${aliases}.lmdb`));
    assert.ok(notice.length >= 1 && notice.every((l) => /postactor\/local\[\d+\]: hash:/.test(l)), notice.join('\n'));
    assert.ok(server.logLines().some((l) => /postactor\/local\[\d+\]: warning: nis:mail\.aliases: NIS is not supported by Postactor - NIS lookups disabled$/.test(l)));
  });
});
