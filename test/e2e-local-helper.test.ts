/**
 * The delivery helper of local(8) (src/delivery/helper.ts) dies mid-delivery: SIGKILL while it
 * waits for an mbox's dot-lock (held by the test, so the kill lands inside a delivery, never
 * between two). The recipient must be deferred ("unknown mail transport error", with master's
 * "killed by signal 9" warning), a new helper must take the retry, and the mbox must hold the
 * message exactly once. As root the recipient is uid 65534 (the helper switches to it);
 * otherwise it is the test's own uid. Also: mailbox_delivery_lock = fcntl takes a real POSIX
 * lock (src/delivery/locker.ts): a delivery waits while another process holds one. And the
 * spool's mode decides whose rights make the mbox (Postfix's mailbox.c).
 */
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { queuedId, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { reachableDir } from './helpers/reachable.js';
import { header, readMailbox } from './helpers/mailbox.js';

const ROOT = process.getuid!() === 0;

/** The pids of the delivery helpers among parent's children (from /proc). */
function helpers(parent: number): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      if (Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) !== parent) continue;
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('delivery/helper.js')) out.push(Number(p));
    } catch { /* gone */ }
  }
  return out;
}

async function until<T>(what: string, fn: () => T | null | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('local(8) delivery helper killed mid-delivery', () => {
  let dir: string;
  let spool: string;
  let server: TestServer;
  const user = ROOT ? 'other' : 'me';
  before(async () => {
    dir = reachableDir('local-helper-');
    spool = join(dir, 'spool');
    mkdirSync(spool);
    chmodSync(spool, 0o1777);
    const [uid, gid] = ROOT ? [65534, 65534] : [process.getuid!(), process.getgid!()];
    const passwd = join(dir, 'passwd');
    writeFileSync(passwd, `${user}:x:${uid}:${gid}:Test:${dir}:/bin/sh\n`);
    server = await startServer({
      mainCf: {
        mydestination: 'local.test',
        mail_spool_directory: spool,
        local_recipient_maps: '',
        alias_maps: '',
        // The helper keeps trying for the lock (a second apart) long after the kill.
        deliver_lock_attempts: '120',
        minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s',
      },
      masterCfExtra: 'local     unix  -       n       n       -       -       local',
      env: { POSTACTOR_PASSWD_FILE: passwd },
    });
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('SIGKILL while it waits for the dot-lock: deferred "unknown mail transport error", then delivered exactly once by a new helper', async () => {
    const mbox = join(spool, user);
    const lock = `${mbox}.lock`;
    writeFileSync(lock, ''); // another writer holds the mailbox
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', [`${user}@local.test`], rfc822({ Subject: 'kill me once' }, 'only once\n')));
    const pid = server.child!.pid!;
    await until('a delivery helper', () => helpers(pid).length > 0, 15_000);
    // The request reaches a helper at once (each local thread starts one); it then retries the
    // lock a second apart. Two seconds later it is inside the delivery. Which thread's helper
    // has it is not known here, so every local helper is killed: the idle ones only restart.
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(!server.logLines().some((l) => l.includes(`${id}: to=<`)), 'no result yet: the delivery is waiting for the lock');
    const killed = helpers(pid);
    for (const h of killed) process.kill(h, 'SIGKILL');
    const deferred = await server.waitForLog(new RegExp(`${id}: to=<${user}@local\\.test>, .*status=deferred`), 15_000);
    assert.match(deferred, /dsn=4\.3\.0, status=deferred \(unknown mail transport error\)$/);
    for (const h of killed) await server.waitForLog(new RegExp(`postactor/local\\[\\d+\\]: warning: process \\S+/helper\\.js pid ${h} killed by signal 9$`), 15_000);
    assert.ok(!existsSync(mbox) || readFileSync(mbox, 'latin1') === '', 'nothing was written before the kill');
    unlinkSync(lock);
    await server.waitForLog(new RegExp(`${id}: to=<${user}@local\\.test>, .*status=sent \\(delivered to mailbox\\)`), 30_000);
    const now = helpers(pid);
    assert.ok(now.length > 0 && !now.some((h) => killed.includes(h)), `a new helper took the retry (killed ${killed.join(', ')}, now ${now.join(', ')})`);
    const msgs = readMailbox('mbox', mbox);
    assert.equal(msgs.filter((m) => header(m, 'Subject')[0] === 'kill me once').length, 1, 'delivered exactly once');
    assert.equal(msgs.length, 1);
    assert.ok(!existsSync(lock), 'no lock left behind');
  });

  test('a mail_spool_directory that is not world-writable: the lock and a new mbox are made with root\'s rights and the mbox given to the recipient (a world-writable one is written with the recipient\'s own, as Postfix\'s mailbox.c)', { skip: !ROOT && 'needs root: the recipient is another user' }, async () => {
    const mbox = join(spool, user);
    rmSync(mbox, { force: true });
    chmodSync(spool, 0o755); // root's alone: the recipient (uid 65534) cannot create anything here
    try {
      const id = queuedId(await sendRaw(server.port, 'sender@example.org', [`${user}@local.test`], rfc822({ Subject: 'root spool' }, 'made by root\n')));
      await server.waitForLog(new RegExp(`${id}: to=<${user}@local\\.test>, .*status=sent \\(delivered to mailbox\\)`), 30_000);
      const st = statSync(mbox);
      assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [65534, 65534, 0o600], 'created by root, given to the recipient');
      assert.ok(!existsSync(`${mbox}.lock`), 'no lock left behind');
      assert.equal(readMailbox('mbox', mbox).filter((m) => header(m, 'Subject')[0] === 'root spool').length, 1);
    } finally {
      chmodSync(spool, 0o1777);
    }
  });

  test('mailbox_delivery_lock = fcntl: while another process holds a POSIX lock (fcntl F_SETLK) on the mbox, the delivery waits; released, it lands', async () => {
    const mbox = join(spool, user);
    if (!existsSync(mbox)) writeFileSync(mbox, '', { mode: 0o600 });
    if (ROOT) chownSync(mbox, 65534, 65534);
    const before = readMailbox('mbox', mbox).length;
    // Python's fcntl.lockf is fcntl(F_SETLKW): a POSIX record lock, held until stdin closes.
    const holder = spawn('python3', ['-c', 'import fcntl, sys\nf = open(sys.argv[1], "a")\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint("locked", flush=True)\nsys.stdin.read()', mbox], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', (c) => reject(new Error(`lock holder exited ${c}`)));
      });
      const id = queuedId(await sendRaw(server.port, 'sender@example.org', [`${user}@local.test`], rfc822({ Subject: 'after the fcntl lock' }, 'waited\n')));
      await new Promise((r) => setTimeout(r, 2500));
      assert.ok(!server.logLines().some((l) => l.includes(`${id}: to=<`)), 'no result while the POSIX lock is held');
      assert.equal(readMailbox('mbox', mbox).length, before, 'nothing written while the POSIX lock is held');
      holder.stdin!.end();
      await server.waitForLog(new RegExp(`${id}: to=<${user}@local\\.test>, .*status=sent \\(delivered to mailbox\\)`), 30_000);
      assert.equal(readMailbox('mbox', mbox).filter((m) => header(m, 'Subject')[0] === 'after the fcntl lock').length, 1);
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
