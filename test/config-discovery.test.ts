/**
 * Every command finds its configuration as Postfix's commands do (src/config/locate.ts):
 * -c DIR, then MAIL_CONFIG, then POSTACTOR_CONFIG, then /etc/postactor, then the embedded
 * default. Three stopped configurations A, B and C, each with one message of its own in its
 * queue, show which one a command read. The sendmail shim says where it queued when it falls
 * back to the embedded default outside the project.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { QueueStore } from '../src/queue/store.js';
import { newQueueId } from '../src/queue/qid.js';
import { REPO_ROOT } from './helpers/server.js';

interface Run { code: number; stdout: string; stderr: string }

/** The environment without any configuration variable, plus env. */
function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, TZ: 'UTC', ...env };
  if (!('MAIL_CONFIG' in env)) delete e['MAIL_CONFIG'];
  if (!('POSTACTOR_CONFIG' in env)) delete e['POSTACTOR_CONFIG'];
  return e;
}

/** Runs bin/NAME (the wrapper, as an admin would). */
function run(name: string, args: string[], env: Record<string, string> = {}, opts: { input?: string; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(join(REPO_ROOT, 'bin', name), args, { env: cleanEnv(env), cwd: opts.cwd ?? tmpdir(), timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin!.on('error', () => undefined); // a command that exits before reading: no EPIPE
    child.stdin!.end(opts.input ?? '');
  });
}

interface Instance { dir: string; spool: string; id: string }

const instances: Record<'a' | 'b' | 'c', Instance> = {} as Record<'a' | 'b' | 'c', Instance>;

before(async () => {
  for (const name of ['a', 'b', 'c'] as const) {
    const dir = mkdtempSync(join(tmpdir(), `postactor-discovery-${name}-`));
    const spool = join(dir, 'spool');
    writeFileSync(join(dir, 'main.cf'), [
      `queue_directory = ${spool}`, `maillog_file = ${dir}/maillog`, `myhostname = ${name}.example`,
      `alias_database = lmdb:${dir}/aliases`, `alias_maps = lmdb:${dir}/aliases`, '',
    ].join('\n'));
    writeFileSync(join(dir, 'master.cf'), 'qmgr unix n - n 300 1 qmgr\ncleanup unix n - n - 0 cleanup\nsmtp unix - - n - 1 smtp\n');
    writeFileSync(join(dir, 'aliases'), `postmaster: root-${name}\n`);
    const store = QueueStore.open(spool);
    const id = newQueueId();
    await store.enqueue({
      queueId: id, queue: 'deferred', sender: `from-${name}@example.org`, recipients: [{ address: `to-${name}@example.com`, done: false }],
      arrival: Date.now(), size: 100, nextAttempt: Date.now() + 3_600_000, attempts: 0,
    }, Buffer.from('Subject: x\r\n\r\nbody\r\n'));
    await store.close();
    instances[name] = { dir, spool, id };
  }
});

after(() => {
  for (const i of Object.values(instances)) rmSync(i.dir, { recursive: true, force: true });
});

/** Which instance's message postqueue -p listed. */
function whose(r: Run): string[] {
  return (['a', 'b', 'c'] as const).filter((n) => r.stdout.includes(`from-${n}@example.org`));
}

describe('precedence: -c, then MAIL_CONFIG, then POSTACTOR_CONFIG', () => {
  test('MAIL_CONFIG=DIR postqueue -p lists DIR\'s queue', async () => {
    const r = await run('postqueue', ['-p'], { MAIL_CONFIG: instances.b.dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(whose(r), ['b']);
  });

  test('POSTACTOR_CONFIG alone is used; MAIL_CONFIG wins over it; -c wins over both', async () => {
    assert.deepEqual(whose(await run('postqueue', ['-p'], { POSTACTOR_CONFIG: instances.c.dir })), ['c']);
    assert.deepEqual(whose(await run('postqueue', ['-p'], { MAIL_CONFIG: instances.b.dir, POSTACTOR_CONFIG: instances.c.dir })), ['b']);
    assert.deepEqual(whose(await run('postqueue', ['-c', instances.a.dir, '-p'], { MAIL_CONFIG: instances.b.dir, POSTACTOR_CONFIG: instances.c.dir })), ['a']);
  });

  test('sendmail under MAIL_CONFIG queues into that directory\'s maildrop, without a notice', async () => {
    const r = await run('sendmail', ['rcpt@example.com'], { MAIL_CONFIG: instances.b.dir }, { input: 'Subject: via MAIL_CONFIG\n\nhi\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const files = (i: Instance) => (existsSync(join(i.spool, 'maildrop')) ? readdirSync(join(i.spool, 'maildrop')) : []);
    assert.equal(files(instances.b).length, 1);
    assert.equal(files(instances.a).length + files(instances.c).length, 0);
  });
});

describe('every command honours MAIL_CONFIG', () => {
  const env = () => ({ MAIL_CONFIG: instances.b.dir });

  test('mailq, postqueue -j, qshape, postcat, postsuper read its queue', async () => {
    const { id } = instances.b;
    assert.deepEqual(whose(await run('mailq', [], env())), ['b']);
    const j = await run('postqueue', ['-j'], env());
    assert.equal(JSON.parse(j.stdout.trim()).queue_id, id);
    const q = await run('qshape', ['deferred'], env());
    assert.equal(q.code, 0, q.stderr);
    assert.match(q.stdout, /^\s+TOTAL\s+1\b/m);
    assert.match(q.stdout, /^\s+example\.com\s+1\b/m);
    const cat = await run('postcat', ['-q', id], env());
    assert.equal(cat.code, 0, cat.stderr);
    assert.match(cat.stdout, /^sender: from-b@example\.org$/m);
    const hold = await run('postsuper', ['-h', id], env());
    assert.equal(hold.stderr, `postsuper: ${id}: placed on hold\npostsuper: Placed on hold: 1 message\n`);
    const release = await run('postsuper', ['-H', id], env());
    assert.equal(release.stderr, `postsuper: ${id}: released from hold\npostsuper: Released from hold: 1 message\n`);
  });

  test('postconf, postlog, newaliases read its main.cf', async () => {
    assert.equal((await run('postconf', ['-h', 'myhostname'], env())).stdout, 'b.example\n');
    const n = await run('postconf', ['-n'], env());
    assert.match(n.stdout, new RegExp(`^config_directory = ${instances.b.dir}$`, 'm'), 'a non-default directory is a config_directory setting, as in Postfix');
    const log = await run('postlog', ['discovered'], env());
    assert.equal(log.code, 0, log.stderr);
    assert.match(readFileSync(join(instances.b.dir, 'maillog'), 'utf8'), /postlog\[\d+\]: discovered$/m);
    const na = await run('newaliases', [], env());
    assert.equal(na.code, 0, na.stderr);
    assert.ok(existsSync(join(instances.b.dir, 'aliases.lmdb')), 'B\'s alias_database was built');
    assert.ok(!existsSync(join(instances.a.dir, 'aliases.lmdb')));
  });

  test('postactor, postmap and postalias read it too: a MAIL_CONFIG that does not exist is reported by name', async () => {
    const missing = join(instances.a.dir, 'no-such-dir');
    for (const [cmd, args] of [['postactor', ['check']], ['postmap', ['-q', 'x', `lmdb:${instances.a.dir}/aliases`]], ['postalias', ['-q', 'x', `lmdb:${instances.a.dir}/aliases`]], ['mailq', []], ['postconf', ['myhostname']]] as const) {
      const r = await run(cmd, [...args], { MAIL_CONFIG: missing });
      assert.notEqual(r.code, 0, cmd);
      assert.match(r.stderr, new RegExp(`^${cmd}: fatal: ${missing}: configuration directory not found$`, 'm'), `${cmd}: ${r.stderr}`);
    }
    const status = await run('postactor', ['status'], env());
    assert.equal(status.code, 1);
    assert.equal(status.stderr, 'postactor/postactor-script: the Postactor mail system is not running\n');
  });
});

describe('sendmail with the embedded default', { skip: existsSync('/etc/postactor/main.cf') ? 'this machine has an /etc/postactor/main.cf, which every command uses before the embedded default' : false }, () => {
  const maildrop = join(REPO_ROOT, 'var', 'spool', 'maildrop');
  const before = new Set(existsSync(maildrop) ? readdirSync(maildrop) : []);
  after(() => {
    // Leave the project's own spool as it was.
    if (!existsSync(maildrop)) return;
    for (const f of readdirSync(maildrop)) if (!before.has(f)) rmSync(join(maildrop, f), { force: true });
  });

  test('called from outside the project, it says on stderr where it queued; from inside, nothing', async () => {
    const outside = await run('sendmail', ['rcpt@example.com'], {}, { input: 'Subject: embedded\n\nhi\n', cwd: tmpdir() });
    assert.equal(outside.code, 0, outside.stderr);
    assert.equal(outside.stderr, `sendmail: warning: no configuration directory (-C, MAIL_CONFIG, POSTACTOR_CONFIG, /etc/postactor/main.cf): queued in ${maildrop} by the embedded default configuration\n`);
    const inside = await run('sendmail', ['rcpt@example.com'], {}, { input: 'Subject: embedded\n\nhi\n', cwd: REPO_ROOT });
    assert.equal(inside.code, 0, inside.stderr);
    assert.equal(inside.stderr, '');
  });
});
