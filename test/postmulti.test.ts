/**
 * postmulti(1) with real instances: `-e init` on a primary, `-e create` of two instances in a
 * group (each with its own configuration, queue store and data directory, derived from the
 * primary's paths), `-l` in Postfix's layout, `-e enable`, `-i NAME -p start` of each
 * (Postactor servers on free loopback ports), mail to each staying in its own queue and its own
 * log (tagged with the instance's name), `-x` running a command in an instance's context,
 * `postactor status` on the primary going through multi_instance_wrapper to every instance,
 * `-g GROUP -p stop`, and `-e destroy` of an emptied, disabled instance. The usage errors are
 * Postfix's texts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { defaultMasterCf, freePort, probe220, REPO_ROOT, rfc822, sendRaw, queuedId } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const BIN = join(REPO_ROOT, 'bin');
const tempDir = tempDirs('postactor-postmulti-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Ran { stdout: string; stderr: string; code: number }

describe('postmulti', () => {
  let root = '';
  let primary = '';
  const ports: Record<'a' | 'b', number> = { a: 0, b: 0 };
  let closed = 0;

  /** A command with the primary as its configuration (MAIL_CONFIG), as an admin runs it. */
  const run = (cmd: string, args: string[], env: Record<string, string> = {}): Ran => {
    const r = spawnSync(join(BIN, cmd), args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, MAIL_CONFIG: primary, ...env } });
    return { stdout: r.stdout, stderr: r.stderr, code: r.status ?? -1 };
  };
  const postmulti = (...args: string[]) => run('postmulti', args);
  const ok = (r: Ran) => {
    assert.equal(r.code, 0, r.stderr + r.stdout);
    return r;
  };
  const log = (name: string) => {
    const f = join(root, name, 'maillog');
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  };
  async function waitForLog(name: string, re: RegExp, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = log(name).split('\n').find((l) => re.test(l));
      if (line) return line;
      if (Date.now() > deadline) throw new Error(`no ${name} log line matching ${re}:\n${log(name).split('\n').slice(-15).join('\n')}`);
      await sleep(100);
    }
  }

  before(async () => {
    root = tempDir();
    primary = join(root, 'primary');
    mkdirSync(primary);
    writeFileSync(join(primary, 'main.cf'), [
      `queue_directory = ${join(root, 'spool', 'primary')}`,
      `data_directory = ${join(root, 'lib', 'primary')}`,
      `maillog_file = ${join(primary, 'maillog')}`,
      '',
    ].join('\n'));
    writeFileSync(join(primary, 'master.cf'), defaultMasterCf(await freePort()));
    ports.a = await freePort();
    ports.b = await freePort();
    closed = await freePort();
  });
  after(() => {
    // Whatever the tests left running.
    for (const name of ['postfix-a', 'postfix-b']) {
      if (existsSync(join(root, name, 'main.cf'))) spawnSync(join(BIN, 'postactor'), ['-c', join(root, name), 'stop'], { timeout: 60_000 });
    }
  });

  test('before -e init: one instance (the primary, enabled); life-cycle actions refused', () => {
    assert.equal(ok(postmulti('-l')).stdout, `-               -               y         ${primary}\n`);
    const r = postmulti('-e', 'create', '-I', 'postfix-a');
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "postactor/postmulti-script: fatal: multi_instance_wrapper is empty, run 'postmulti -e init' first.\n");
  });

  test('-e init, -e create of two instances with their own directories, -l', () => {
    ok(postmulti('-e', 'init'));
    const main = readFileSync(join(primary, 'main.cf'), 'utf8');
    assert.match(main, /^multi_instance_enable = yes$/m);
    assert.match(main, new RegExp(`^multi_instance_wrapper = ${join(BIN, 'postmulti')} -p --$`, 'm'));
    ok(postmulti('-e', 'create', '-I', 'postfix-a', '-G', 'mta'));
    ok(postmulti('-e', 'create', '-I', 'postfix-b', '-G', 'mta'));
    assert.equal(ok(postmulti('-l')).stdout, [
      `-               -               y         ${primary}`,
      `postfix-a       mta             n         ${join(root, 'postfix-a')}`,
      `postfix-b       mta             n         ${join(root, 'postfix-b')}`,
      '',
    ].join('\n'));
    assert.match(readFileSync(join(primary, 'main.cf'), 'utf8'), new RegExp(`^multi_instance_directories = ${join(root, 'postfix-a')} ${join(root, 'postfix-b')}$`, 'm'));
    // The primary's paths with the last component replaced by the name.
    for (const name of ['postfix-a', 'postfix-b']) {
      const x = ok(run('postconf', ['-c', join(root, name), '-x', 'queue_directory', 'data_directory', 'multi_instance_name', 'multi_instance_group', 'syslog_name'])).stdout;
      assert.equal(x, [
        `queue_directory = ${join(root, 'spool', name)}`,
        `data_directory = ${join(root, 'lib', name)}`,
        `multi_instance_name = ${name}`,
        'multi_instance_group = mta',
        `syslog_name = ${name}`,
        '',
      ].join('\n'));
    }
    assert.equal(ok(postmulti('-l', '-i', 'b')).stdout, `postfix-b       mta             n         ${join(root, 'postfix-b')}\n`);
    assert.equal(ok(postmulti('-l', '-R', '-g', 'mta')).stdout.split('\n')[0]!.slice(0, 9), 'postfix-b');
  });

  test('Postfix\'s errors: bad names, conflicts, selections', () => {
    const err = (r: Ran) => [r.code, r.stderr];
    assert.deepEqual(err(postmulti('-e', 'create', '-I', 'mumble')), [1, "postmulti: fatal: New instance name must start with 'postfix-'\n"]);
    assert.deepEqual(err(postmulti('-e', 'create', '-I', 'postfix-a')), [1, `postmulti: fatal: new config_directory=${join(root, 'postfix-a')} is already in use by instance ${join(root, 'postfix-a')}, config_directory=${join(root, 'postfix-a')}\n`]);
    assert.deepEqual(err(postmulti('-e', 'create', '-I', 'postfix-c', `queue_directory=${join(root, 'spool', 'postfix-a')}`)), [1, `postmulti: fatal: instance ${join(root, 'postfix-c')}, queue_directory=${join(root, 'spool', 'postfix-a')} conflicts with instance ${join(root, 'postfix-a')}, queue_directory=${join(root, 'spool', 'postfix-a')}\n`]);
    assert.deepEqual(err(postmulti('-e', 'destroy', '-i', '-')), [1, 'postmulti: fatal: Cannot remove the primary instance\n']);
    assert.deepEqual(err(postmulti('-e', 'enable')), [1, "postmulti: fatal: Select an instance via '-i name'\n"]);
    assert.deepEqual(err(postmulti('-l', '-i', 'nosuch')), [0, '']);
    assert.deepEqual(err(postmulti('-x', '-i', 'nosuch', 'true')), [1, 'postmulti: fatal: No matching instances\n']);
    assert.deepEqual(err(postmulti('-l', '-p')), [1, "postmulti: fatal: Specify exactly one of '-e', '-l', '-p', '-x'\n"]);
    assert.deepEqual(err(postmulti('-p', '-R', 'status')), [1, "postmulti: fatal: The '-p' and '-e' options preclude the use of '-R'\n"]);
    assert.deepEqual(err(postmulti('-l', '-I', 'postfix-x')), [1, "postmulti: fatal: Cannot assign instance name or group without '-e assign'\n"]);
    assert.equal(postmulti('-Z').code, 64);
    assert.equal(existsSync(join(root, 'postfix-c')), false, 'nothing made for a refused instance');
  });

  test('-p start: a disabled instance is only checked; enabled, each starts on its own port', async () => {
    for (const [name, port] of [['postfix-a', ports.a], ['postfix-b', ports.b]] as const) {
      const dir = join(root, name);
      ok(run('postconf', ['-c', dir, '-e', `maillog_file = ${join(dir, 'maillog')}`, `relayhost = [127.0.0.1]:${closed}`,
        'mynetworks = 127.0.0.0/8', `myhostname = ${name}.test`, 'smtp_connect_timeout = 5s']));
      writeFileSync(join(dir, 'master.cf'), defaultMasterCf(port));
    }
    // Disabled: "postactor check" instead of start.
    ok(postmulti('-i', 'a', '-p', 'start'));
    assert.equal(await probe220(ports.a), false);
    ok(postmulti('-i', 'postfix-a', '-e', 'enable'));
    ok(postmulti('-i', 'b', '-e', 'enable'));
    assert.match(ok(postmulti('-l', '-g', 'mta')).stdout, /^postfix-a +mta +y +/m);
    ok(postmulti('-i', 'a', '-p', 'start'));
    ok(postmulti('-i', 'b', '-p', 'start'));
    for (const port of [ports.a, ports.b]) {
      let up = false;
      for (let i = 0; i < 300 && !up; i++) up = await probe220(port) || (await sleep(100), false);
      assert.ok(up, `port ${port} answers`);
    }
    assert.equal(ok(postmulti('-g', 'mta', '-p', 'status')).code, 0);
  });

  test('mail to each instance stays in its own queue and its own log', async () => {
    const ids: Record<string, string> = {};
    for (const [name, port] of [['postfix-a', ports.a], ['postfix-b', ports.b]] as const) {
      ids[name] = queuedId(await sendRaw(port, 'sender@example.org', [`rcpt-${name}@example.com`], rfc822({ Subject: `to ${name}` }, 'hello\n')));
    }
    for (const name of ['postfix-a', 'postfix-b']) {
      const other = name === 'postfix-a' ? 'postfix-b' : 'postfix-a';
      await waitForLog(name, new RegExp(`${name}/smtp\\[\\d+\\]: ${ids[name]}: to=<rcpt-${name}@example\\.com>.*status=deferred`));
      assert.match(log(name), new RegExp(`${name}/smtpd\\[\\d+\\]: ${ids[name]}: client=`));
      assert.doesNotMatch(log(name), new RegExp(ids[other]!));
      assert.doesNotMatch(log(name), /postactor\//, 'every line carries the instance name');
      // -x: the command runs in the instance's context (MAIL_CONFIG and its directories).
      const q = ok(postmulti('-i', name, '-x', 'postqueue', '-j')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { queue_id: string });
      assert.deepEqual(q.map((m) => m.queue_id), [ids[name]]);
      const env = ok(postmulti('-i', name, '-x', 'sh', '-c', 'echo "$MAIL_CONFIG $queue_directory $multi_instance_name $multi_instance_group $multi_instance_enable"')).stdout;
      assert.equal(env, `${join(root, name)} ${join(root, 'spool', name)} ${name} mta yes\n`);
    }
    assert.equal(existsSync(join(root, 'spool', 'primary', 'queue.lmdb')), false, 'the primary queue saw nothing');
  });

  test('postactor without -c or MAIL_CONFIG hands the command to multi_instance_wrapper (every instance)', () => {
    const r = run('postactor', ['status'], { MAIL_CONFIG: '', POSTACTOR_CONFIG: primary });
    // The primary was never started: its status fails, the two instances run.
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.match(/the Postactor mail system is running: PID: \d+/g)?.length, 2, r.stderr);
    assert.equal(r.stderr.match(/the Postactor mail system is not running/g)?.length, 1, r.stderr);
  });

  test('-g mta -p stop stops both; a stopped, disabled, emptied instance can be destroyed', async () => {
    ok(postmulti('-g', 'mta', '-p', 'stop'));
    for (const port of [ports.a, ports.b]) assert.equal(await probe220(port), false);
    assert.equal(postmulti('-i', 'a', '-p', 'status').code, 1);
    // Enabled instances are not destroyed.
    assert.deepEqual([postmulti('-e', 'destroy', '-i', 'b').stderr], ['postmulti: fatal: Cannot remove enabled instances\n']);
    ok(postmulti('-i', 'b', '-x', 'postsuper', '-d', 'ALL'));
    ok(postmulti('-i', 'b', '-e', 'disable'));
    ok(postmulti('-e', 'destroy', '-i', 'b'));
    assert.equal(existsSync(join(root, 'spool', 'postfix-b')), false);
    assert.equal(existsSync(join(root, 'lib', 'postfix-b')), false);
    assert.deepEqual(ok(postmulti('-l')).stdout.split('\n').map((l) => l.split(/ +/)[0]), ['-', 'postfix-a', '']);
    assert.match(readFileSync(join(primary, 'main.cf'), 'utf8'), new RegExp(`^multi_instance_directories = ${join(root, 'postfix-a')}$`, 'm'));
    // assign: a new group; "-" clears it.
    ok(postmulti('-e', 'assign', '-i', 'a', '-G', '-'));
    assert.match(ok(postmulti('-l', '-i', 'a')).stdout, /^postfix-a +- +y +/);
  });
});
