/**
 * End to end, the postactor command and configuration errors: a broken main.cf or master.cf
 * stops start-up at once with "postactor: fatal: FILE:LINE: …" and no stack trace; `check`
 * and usage errors exit as postfix(1) does; bin/postactor finds its pinned Node runtime from
 * any working directory.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NODE, POSTACTOR_JS, POSTACTOR_SH, defaultMasterCf, freePort, probe220 } from './helpers/server.js';

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

/** Runs a command, killing it after timeoutMs (start-fg on a good config would never end). */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: opts.cwd ?? tmpdir(), env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function configDir(main: string, master?: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-e2e-config-'));
  dirs.push(dir);
  const port = await freePort();
  writeFileSync(join(dir, 'main.cf'), `queue_directory = ${dir}/spool\nmaillog_file = ${dir}/maillog\nrelayhost = [127.0.0.1]:${await freePort()}\n${main}`);
  writeFileSync(join(dir, 'master.cf'), master ?? defaultMasterCf(port));
  return dir;
}

function assertFatal(r: Run, prefix: string, what: RegExp): void {
  assert.notEqual(r.code, 0, `exit status is not 0 (${r.code}, ${r.signal}); stderr: ${r.stderr}`);
  assert.equal(r.signal, null, 'exited by itself, not killed by the test timeout');
  const lines = r.stderr.trimEnd().split('\n');
  assert.ok(lines[0]!.startsWith(prefix), `stderr starts with ${prefix}: ${r.stderr}`);
  assert.match(lines[0]!, what);
  for (const l of lines) assert.match(l, /^postactor: fatal: /, `every stderr line is a fatal line, no stack trace: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
}

describe('settings Postactor has not built are refused at start-up, by name (never silently ignored)', () => {
  const refused = [
    'smtp_tls_per_site = texthash:/etc/postfix/tls_per_site',
    'smtp_tls_security_level = dane',
    'smtpd_proxy_filter = 127.0.0.1:10025',
  ];
  for (const setting of refused) {
    test(`${setting}: start-fg exits non-zero naming it, and nothing listens`, async () => {
      const port = await freePort();
      const dir = await configDir(`${setting}\n`, defaultMasterCf(port));
      const r = await run(NODE, [POSTACTOR_JS, '-c', dir, 'start-fg']);
      assertFatal(r, `postactor: fatal: ${dir}/main.cf:4: ${setting}: not supported by Postactor (`, /remove it or (set it to its default|choose another value)/);
      assert.equal(await probe220(port, 300), false, 'no listener was started');
    });
  }
  test('the same through master.cf -o: the error names the master.cf line', async () => {
    const port = await freePort();
    const dir = await configDir('', defaultMasterCf(port).replace(' smtpd\n', ' smtpd\n  -o smtpd_proxy_filter=127.0.0.1:10025\n'));
    const r = await run(NODE, [POSTACTOR_JS, '-c', dir, 'check']);
    assertFatal(r, `postactor: fatal: ${dir}/master.cf:1: smtpd_proxy_filter = 127.0.0.1:10025: not supported by Postactor (`, /before-queue content filter/);
  });
});

describe('postactor check looks at what start-up and the first mail would meet', () => {
  test('a missing lookup table is a warning naming its main.cf line; an unusable queue_directory is fatal', async () => {
    const dir = await configDir('header_checks = regexp:/nonexistent/postactor-checks\ntransport_maps = hash:/nonexistent/transport\nalias_maps = hash:/nonexistent/aliases\n');
    const r = await run(NODE, [POSTACTOR_JS, '-c', dir, 'check']);
    assert.equal(r.code, 0, r.stderr);
    // The alias table smtpd's recipient check would open is told once, at its line, in the
    // command's own format (not as a maillog line of smtpd's).
    assert.match(r.stderr, new RegExp(`^postactor: warning: ${dir}/main.cf:6: alias_maps: open database /nonexistent/aliases.lmdb: No such file or directory`, 'm'));
    assert.equal(r.stderr.split('/nonexistent/aliases.lmdb').length - 1, 1, r.stderr);
    // Without maillog_file (the maillog then goes to the terminal): the same, once, and no
    // maillog line of smtpd's on either stream.
    writeFileSync(join(dir, 'main.cf'), readFileSync(join(dir, 'main.cf'), 'utf8').replace(/^maillog_file = .*\n/m, ''));
    const bare = await run(NODE, [POSTACTOR_JS, '-c', dir, 'check']);
    const both = bare.stdout + bare.stderr;
    assert.equal(bare.code, 0, both);
    assert.equal(both.split('/nonexistent/aliases.lmdb').length - 1, 1, both);
    assert.match(bare.stderr, new RegExp(`^postactor: warning: ${dir}/main.cf:5: alias_maps: open database /nonexistent/aliases.lmdb`, 'm'));
    assert.doesNotMatch(both, /postactor\/smtpd\[/, both);
    assert.match(r.stderr, new RegExp(`^postactor: warning: ${dir}/main.cf:4: header_checks: /nonexistent/postactor-checks: cannot open table`, 'm'));
    assert.match(r.stderr, new RegExp(`^postactor: warning: ${dir}/main.cf:5: transport_maps: open database /nonexistent/transport.lmdb: No such file or directory`, 'm'));
    const proc = await configDir('queue_directory = /proc/postactor-queue\n');
    const p = await run(NODE, [POSTACTOR_JS, '-c', proc, 'check']);
    assert.notEqual(p.code, 0);
    assert.match(p.stderr, /queue_directory = \/proc\/postactor-queue: \/proc is on a pseudo file system/);
    const start = await run(NODE, [POSTACTOR_JS, '-c', proc, 'start-fg']);
    assert.notEqual(start.code, 0, 'start-fg stops too, instead of spinning');
    assert.equal(start.signal, null);
  });
});

describe('e2e postactor command and configuration errors', () => {
  test('a main.cf line without "=" makes start-fg exit non-zero at once with "postactor: fatal: DIR/main.cf:LINE: …"', async () => {
    const dir = await configDir('myhostname = a.example\nthis line is wrong\n');
    const r = await run(NODE, [POSTACTOR_JS, '-c', dir, 'start-fg']);
    // Line 5: three settings from configDir, myhostname, then the bad line.
    assertFatal(r, `postactor: fatal: ${dir}/main.cf:5: `, /missing '=' after attribute name: "this"/);
    assert.ok(r.ms < 10_000, `exited at once (${r.ms} ms)`);
  });

  test('a bad master.cf column makes start-fg exit non-zero with "postactor: fatal: DIR/master.cf:LINE: …"', async () => {
    const port = await freePort();
    const master = defaultMasterCf(port).replace('cleanup unix n - n - 0 cleanup', 'cleanup unix n - n - many cleanup');
    const dir = await configDir('', master);
    const r = await run(NODE, [POSTACTOR_JS, '-c', dir, 'start-fg']);
    assertFatal(r, `postactor: fatal: ${dir}/master.cf:2: `, /bad process count: many/);
  });

  test('an unsupported restriction makes the server refuse to start with "not supported"', async () => {
    const dir = await configDir('smtpd_recipient_restrictions = permit_mynetworks, reject_unknown_forward_client_hostname, reject_unauth_destination\n');
    const r = await run(NODE, [POSTACTOR_JS, '-c', dir, 'start-fg']);
    assertFatal(r, 'postactor: fatal: ', /not supported: restriction "reject_unknown_forward_client_hostname/);
    const check = await run(NODE, [POSTACTOR_JS, '-c', dir, 'check']);
    assertFatal(check, 'postactor: fatal: ', /not supported/);
  });

  test('postactor -c DIR check exits 0 on a good configuration', async () => {
    const dir = await configDir('myhostname = good.example\n');
    const r = await run(NODE, [POSTACTOR_JS, '-c', dir, 'check']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /fatal/);
  });

  test('postactor bogus prints the usage and exits 64 (EX_USAGE)', async () => {
    const r = await run(NODE, [POSTACTOR_JS, 'bogus']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /^postactor: unknown command: 'bogus'\nusage: postactor \[-c config_dir\]/);
  });

  test('bin/postactor works from another working directory and runs the pinned Node, not the node on PATH', async () => {
    const dir = await configDir('myhostname = wrapper.example\n');
    // A "node" first on PATH that fails loudly: the wrapper must not pick it.
    const fakeBin = join(dir, 'fakebin');
    mkdirSync(fakeBin);
    writeFileSync(join(fakeBin, 'node'), '#!/bin/sh\necho "wrong node" >&2\nexit 97\n');
    chmodSync(join(fakeBin, 'node'), 0o755);
    const env = { ...process.env, PATH: `${fakeBin}:${process.env['PATH'] ?? '/usr/bin:/bin'}` };
    // cwd is the config dir's parent, and -c is relative to it.
    const r = await run(POSTACTOR_SH, ['-c', `./${basename(dir)}`, 'check'], { cwd: dirname(dir), env });
    assert.equal(r.code, 0, r.stderr);
    const bogus = await run(POSTACTOR_SH, ['bogus'], { cwd: '/tmp', env });
    assert.equal(bogus.code, 64, bogus.stderr);
    assert.match(bogus.stderr, /^postactor: unknown command/);
  });
});
