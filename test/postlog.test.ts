/**
 * postlog, pinned to Postfix's postlog(1) (3.7 checked): "TAG[pid]: text" records in
 * maillog_file or on standard output, TAG syslog_name/postlog or -t's whole tag, the text from
 * the arguments (joined by blanks) or one record per standard input line, the priority
 * prefixes, fatal that only logs, and usage errors.
 */
import { needs } from './helpers/peers.js';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/server.js';

interface Run { code: number; stdout: string; stderr: string; pid: number }

function postlog(args: string[], input?: string, file = join(REPO_ROOT, 'bin', 'postlog')): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: { ...process.env, TZ: 'UTC' }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr, pid: child.pid! });
    });
    // A postlog given its text as arguments may exit before reading its input: no EPIPE then.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
  });
}

/** "Nov 25 01:23:45 mx postactor/postlog[1234]: " */
const STAMP = /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx /;

/** The records without their timestamp and host, the pid replaced by PID. */
function records(text: string, pid: number): string[] {
  return text.split('\n').filter((l) => l !== '').map((l) => {
    assert.match(l, STAMP);
    return l.replace(STAMP, '').replace(`[${pid}]`, '[PID]');
  });
}

describe('postlog', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-postlog-'));
  const logfile = join(dir, 'maillog');
  writeFileSync(join(dir, 'main.cf'), `myhostname = mx.postactor.test\nmaillog_file = ${logfile}\nqueue_directory = ${join(dir, 'spool')}\n`);
  const outDir = mkdtempSync(join(tmpdir(), 'postactor-postlog-out-'));
  writeFileSync(join(outDir, 'main.cf'), `myhostname = mx.postactor.test\nmaillog_file =\nsyslog_name = postfix\nqueue_directory = ${join(outDir, 'spool')}\n`);
  for (const d of [dir, outDir]) writeFileSync(join(d, 'master.cf'), 'qmgr unix n - n 300 1 qmgr\n');
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(outDir, { recursive: true, force: true });
  });
  const logged = () => readFileSync(logfile, 'utf8');

  test('the arguments are one record "syslog_name/postlog[pid]: text" in maillog_file', async () => {
    const r = await postlog(['-c', dir, 'hello', 'big  world']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.deepEqual(records(logged(), r.pid), ['postactor/postlog[PID]: hello big  world']);
  });

  test('-t replaces the whole tag; -i is accepted (the pid is always there, as in Postfix ≥ 3.4)', async () => {
    rmSync(logfile, { force: true });
    const r = await postlog(['-c', dir, '-i', '-t', 'backup-script', 'done']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(records(logged(), r.pid), ['backup-script[PID]: done']);
  });

  test('-p priorities prefix the text as Postfix: warning, error, fatal, panic; info has none', async () => {
    rmSync(logfile, { force: true });
    const out: string[] = [];
    for (const p of ['info', 'warn', 'WARNING', 'error', 'err', 'fatal', 'crit', 'panic']) {
      const r = await postlog(['-c', dir, '-p', p, `as ${p}`]);
      assert.equal(r.code, 0, `postlog -p ${p} exits 0 after logging, fatal and panic included: ${r.stderr}`);
      out.push(...records(readFileSync(logfile, 'utf8'), r.pid));
      rmSync(logfile, { force: true });
    }
    assert.deepEqual(out, [
      'postactor/postlog[PID]: as info',
      'postactor/postlog[PID]: warning: as warn',
      'postactor/postlog[PID]: warning: as WARNING',
      'postactor/postlog[PID]: error: as error',
      'postactor/postlog[PID]: error: as err',
      'postactor/postlog[PID]: fatal: as fatal',
      'postactor/postlog[PID]: fatal: as crit',
      'postactor/postlog[PID]: panic: as panic',
    ]);
  });

  test('without text, each standard input line is a record (empty lines too, a last line without newline too)', async () => {
    rmSync(logfile, { force: true });
    const r = await postlog(['-c', dir, '-p', 'warning'], 'first\n\nthird\nlast');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(records(logged(), r.pid), [
      'postactor/postlog[PID]: warning: first',
      'postactor/postlog[PID]: warning: ',
      'postactor/postlog[PID]: warning: third',
      'postactor/postlog[PID]: warning: last',
    ]);
  });

  test('an empty maillog_file means standard output; syslog_name names the tag', async () => {
    const r = await postlog(['-c', outDir, 'to stdout']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(records(r.stdout, r.pid), ['postfix/postlog[PID]: to stdout']);
    const many = await postlog(['-c', outDir, '-t', 'x'], Array.from({ length: 500 }, (_, i) => `line ${i}`).join('\n') + '\n');
    const lines = records(many.stdout, many.pid);
    assert.equal(lines.length, 500);
    assert.equal(lines[499], 'x[PID]: line 499');
  });

  test("the same records as Debian's postlog for the same arguments and input", async (t) => {
    const missing = needs('/usr/sbin/postlog', "Debian's postlog, the comparison peer");
    if (missing) return t.skip(missing);
    const pfx = mkdtempSync(join(tmpdir(), 'postactor-postlog-pfx-'));
    try {
      const pfxLog = join(pfx, 'maillog');
      writeFileSync(join(pfx, 'main.cf'), `syslog_name = postactor\nmaillog_file = ${pfxLog}\nmaillog_file_prefixes = ${pfx}\ncompatibility_level = 3.6\n`);
      const cases: [string[], string?][] = [
        [['hello', 'big  world']], [['-t', 'my-tag', 'tagged']], [['-i', '-p', 'warn', 'w']], [['-p', 'Err', 'e']],
        [['-p', 'crit', 'c']], [['-p', 'panic', 'p']], [['-p', 'warning'], 'one\n\nthree\nlast'],
      ];
      for (const [args, input] of cases) {
        rmSync(logfile, { force: true });
        rmSync(pfxLog, { force: true });
        const ours = await postlog(['-c', dir, ...args], input);
        const theirs = await postlog(['-c', pfx, ...args], input, '/usr/sbin/postlog');
        assert.equal(theirs.code, 0, theirs.stderr);
        assert.equal(ours.code, 0, ours.stderr);
        const strip = (text: string, pid: number) => text.split('\n').filter((l) => l).map((l) => l.replace(/^.{15} \S+ /, '').replace(`[${pid}]`, '[PID]'));
        assert.deepEqual(strip(logged(), ours.pid), strip(readFileSync(pfxLog, 'utf8'), theirs.pid), `postlog ${args.join(' ')}`);
      }
    } finally {
      rmSync(pfx, { recursive: true, force: true });
    }
  });

  test('a bad flag or severity prints the usage and exits 64; --help exits 0', async () => {
    const bad = await postlog(['-c', dir, '-Z', 'x']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /invalid option -- 'Z'/);
    assert.match(bad.stderr, /^usage: postlog \[-c config_dir\] \[-i\] \[-p priority\] \[-t tag\] \[-v\] \[text\]$/m);
    const sev = await postlog(['-c', dir, '-p', 'loud', 'x']);
    assert.equal(sev.code, 64);
    assert.match(sev.stderr, /bad severity: "loud"/);
    const missing = await postlog(['-c', dir, '-t']);
    assert.equal(missing.code, 64);
    const help = await postlog(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: postlog /);
  });
});
