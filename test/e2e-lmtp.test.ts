/**
 * End to end, LMTP (Postfix's lmtp(8)) into a REAL Dovecot: a server child delivers through its
 * lmtp transport to `dovecot -F` running on a throwaway configuration (passwd-file users, Maildir
 * under a temp directory, LMTP on a loopback port and on a UNIX-domain socket). The messages are
 * read back from the users' Maildir/new. Needs the Debian packages dovecot-core and
 * dovecot-lmtpd (/usr/sbin/dovecot).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, probe220, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

const DOVECOT = '/usr/sbin/dovecot';

interface Dovecot { dir: string; port: number; socket: string; child: ChildProcess; log(): string; stop(): Promise<void> }

/** The name of a group ID (Dovecot's settings want names). */
function groupName(gid: number): string {
  const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[2] === String(gid));
  assert.ok(line, `no group ${gid} in /etc/group`);
  return line.split(':')[0]!;
}

/** Starts Dovecot in the foreground on a throwaway config; users alice and bob in two domains. */
async function startDovecot(): Promise<Dovecot> {
  assert.ok(existsSync(DOVECOT), `${DOVECOT} is missing: apt-get install dovecot-core dovecot-lmtpd`);
  const dir = mkdtempSync(join(tmpdir(), 'dovecot-'));
  chmodSync(dir, 0o755);
  for (const d of ['run', 'state', 'mail']) mkdirSync(join(dir, d));
  const root = process.getuid?.() === 0;
  // As root, Dovecot's own processes run as its system users and mail is stored as "nobody";
  // as anyone else, everything runs as that user.
  const me = userInfo();
  const [uid, gid] = root ? [65534, 65534] : [me.uid, me.gid];
  if (root) chmodSync(join(dir, 'mail'), 0o777);
  // carol's quota (10 bytes) is smaller than any message: Dovecot refuses her copy after DATA.
  const users = ['alice@example.com', 'bob@example.com', 'alice@example.net', 'carol@example.com']
    .map((u) => `${u}:{PLAIN}x:${uid}:${gid}::${join(dir, 'mail', u)}::${u.startsWith('carol') ? 'userdb_quota_rule=*:storage=10B' : ''}`).join('\n') + '\n';
  writeFileSync(join(dir, 'users'), users);
  const port = await freePort();
  const internal = root ? 'dovecot' : me.username;
  writeFileSync(join(dir, 'dovecot.conf'), `
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = ${internal}
default_internal_group = ${root ? 'dovecot' : groupName(me.gid)}
default_login_user = ${root ? 'dovenull' : me.username}
first_valid_uid = 1
mail_location = maildir:${dir}/mail/%u/Maildir
mail_plugins = quota
plugin {
  quota = count:User quota
  quota_vsizes = yes
}
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${port}
  }
  unix_listener lmtp {
    mode = 0666
  }
}
`);
  const child = spawn(DOVECOT, ['-F', '-c', join(dir, 'dovecot.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => { err += d; });
  const log = () => (existsSync(join(dir, 'dovecot.log')) ? readFileSync(join(dir, 'dovecot.log'), 'utf8') : '');
  const deadline = Date.now() + 10_000;
  while (!(await probe220(port, 500))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      const text = `dovecot did not start: ${err}\n${log()}`;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(text);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    if (child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, port, socket: join(dir, 'run', 'lmtp'), child, log, stop };
}

/** The messages in a user's Maildir/new (read from disk). */
function maildirNew(dc: Dovecot, user: string): string[] {
  const d = join(dc.dir, 'mail', user, 'Maildir', 'new');
  if (!existsSync(d)) return [];
  return readdirSync(d).sort().map((f) => readFileSync(join(d, f), 'latin1'));
}

async function send(server: TestServer, from: string, to: string[], subject: string): Promise<string> {
  const r = await sendRaw(server.port, from, to, rfc822({ From: `<${from}>`, To: to.map((t) => `<${t}>`).join(', '), Subject: subject, 'Message-ID': `<${subject.replace(/\W/g, '-')}@client.test>` }, `Body of ${subject}.\n.dot line\n`));
  assert.equal(r.code, 250, r.line);
  return /queued as (\S+)/.exec(r.text)![1]!;
}

describe('lmtp(8) into Dovecot', () => {
  let dc: Dovecot;
  let server: TestServer;
  before(async () => {
    dc = await startDovecot();
    server = await startServer({
      masterCfExtra: 'lmtp unix - - n - 1 lmtp',
      mainCf: {
        relayhost: '',
        default_transport: `lmtp:inet:127.0.0.1:${dc.port}`,
        relay_domains: 'example.net',
        relay_transport: `lmtp:unix:${dc.socket}`,
      },
    });
  });
  after(async () => {
    await server?.stop();
    await dc?.stop();
  });

  test('over TCP: the message lands in the Maildir/new of the user; status=sent with Dovecot\'s reply', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.com'], 'lmtp tcp one');
    const line = await server.waitForLog(new RegExp(`${id}: to=<alice@example\\.com>`), 10_000);
    assert.match(line, /postactor\/lmtp\[\d+\]: /);
    assert.match(line, new RegExp(`, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${dc.port}, delay=[\\d.]+, delays=[\\d./]+, dsn=2\\.0\\.0, status=sent \\(250 2\\.0\\.0 <alice@example\\.com> \\S+ Saved\\)$`));
    const got = maildirNew(dc, 'alice@example.com').filter((m) => m.includes('Subject: lmtp tcp one'));
    assert.equal(got.length, 1);
    assert.match(got[0]!, /^Return-Path: <sender@example\.org>\r?\n/, 'Dovecot adds Return-Path from MAIL FROM');
    assert.ok(got[0]!.includes('\n.dot line'), 'dot-stuffing undone by the store');
  });

  test('a known and an unknown user in one message: sent vs bounced 5.1.1 (per-recipient results)', async () => {
    const id = await send(server, 'bob@example.com', ['alice@example.com', 'nosuch@example.com'], 'lmtp mixed');
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    const alice = lines.find((l) => l.includes('to=<alice@example.com>'))!;
    const nosuch = lines.find((l) => l.includes('to=<nosuch@example.com>'))!;
    assert.match(alice, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 <alice@example\.com> \S+ Saved\)$/);
    assert.match(nosuch, new RegExp(`dsn=5\\.1\\.1, status=bounced \\(host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\] said: 550 5\\.1\\.1 <nosuch@example\\.com> User doesn't exist: nosuch@example\\.com \\(in reply to RCPT TO command\\)\\)$`));
    assert.equal(maildirNew(dc, 'alice@example.com').filter((m) => m.includes('Subject: lmtp mixed')).length, 1);
    // The non-delivery notice goes back to bob, through the same LMTP transport.
    await server.waitForLog(new RegExp(`${id}: sender non-delivery notification: `), 10_000);
    const deadline = Date.now() + 10_000;
    while (!maildirNew(dc, 'bob@example.com').some((m) => m.includes('nosuch@example.com')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(maildirNew(dc, 'bob@example.com').some((m) => /Undelivered Mail Returned to Sender/.test(m) && m.includes('nosuch@example.com')), 'bounce delivered to bob');
  });

  test('two known users: one reply each after DATA, both delivered, one copy each', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.com', 'bob@example.com'], 'lmtp two users');
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    for (const u of ['alice@example.com', 'bob@example.com']) {
      const l = lines.find((x) => x.includes(`to=<${u}>`))!;
      assert.match(l, new RegExp(`status=sent \\(250 2\\.0\\.0 <${u.replace('.', '\\.')}> \\S+ Saved\\)$`));
      assert.equal(maildirNew(dc, u).filter((m) => m.includes('Subject: lmtp two users')).length, 1, u);
    }
  });

  test('a reply per recipient after DATA: one user accepted, one refused there (quota) → sent vs bounced "in reply to end of DATA"', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.com', 'carol@example.com'], 'lmtp after data');
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    const alice = lines.find((l) => l.includes('to=<alice@example.com>'))!;
    const carol = lines.find((l) => l.includes('to=<carol@example.com>'))!;
    assert.match(alice, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 <alice@example\.com> \S+ Saved\)$/);
    assert.match(carol, /dsn=5\.2\.2, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 552 5\.2\.2 <carol@example\.com> Quota exceeded.* \(in reply to end of DATA command\)\)$/);
    assert.equal(maildirNew(dc, 'alice@example.com').filter((m) => m.includes('Subject: lmtp after data')).length, 1);
    assert.equal(maildirNew(dc, 'carol@example.com').length, 0);
  });

  test('over a UNIX-domain socket (lmtp:unix:/path): relay=$myhostname[path]', async () => {
    const id = await send(server, 'sender@example.org', ['alice@example.net'], 'lmtp unix socket');
    const line = await server.waitForLog(new RegExp(`${id}: to=<alice@example\\.net>`), 10_000);
    assert.ok(line.includes(`, relay=mx.postactor.test[${dc.socket}], `), line);
    assert.match(line, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 <alice@example\.net> \S+ Saved\)$/);
    assert.equal(maildirNew(dc, 'alice@example.net').filter((m) => m.includes('Subject: lmtp unix socket')).length, 1);
  });

  test('connection reuse: back-to-back deliveries share one LMTP connection', async () => {
    const before = (dc.log().match(/Connect from 127\.0\.0\.1/g) ?? []).length;
    for (let i = 0; i < 3; i++) {
      const id = await send(server, 'sender@example.org', ['bob@example.com'], `lmtp reuse ${i}`);
      await server.waitForLog(new RegExp(`${id}: to=<bob@example\\.com>, .*status=sent`), 10_000);
    }
    const after = (dc.log().match(/Connect from 127\.0\.0\.1/g) ?? []).length;
    assert.ok(after - before <= 1, `${after - before} new connections for 3 deliveries`);
  });
});
