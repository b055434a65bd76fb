/**
 * `postactor status | stop | abort | reload` act only on a process proven to be Postactor's
 * master for this queue (its lock and its command line, actors/master/lock.ts), never on what
 * a pid file names: a pid/master.pid holding another program's pid (a stale file, or Postfix's
 * own master.pid in a shared queue directory) reads as "not running" (exit 1, as `postfix
 * status`) and that program is never signalled. A second master on the same queue refuses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NODE, POSTACTOR_JS, POSTACTOR_SH, startServer, type TestServer } from './helpers/server.js';

interface Run { code: number | null; stderr: string }

function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: tmpdir(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });
}

const postactor = (dir: string, command: string) => run(POSTACTOR_SH, ['-c', dir, command]);

/** A real unrelated process, as Postfix's master would be. */
function sleeper(): ChildProcess {
  return spawn('sleep', ['1000'], { stdio: 'ignore' });
}

function alive(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

const NOT_RUNNING = 'postactor/postactor-script: the Postactor mail system is not running\n';
const FATAL_NOT_RUNNING = 'postactor/postactor-script: fatal: the Postactor mail system is not running\n';

describe('a foreign pid/master.pid (no Postactor master on this queue)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-foreign-pid-'));
  const sleep = sleeper();
  before(() => {
    writeFileSync(join(dir, 'main.cf'), `queue_directory = ${dir}/spool\nmaillog_file = ${dir}/maillog\n`);
    writeFileSync(join(dir, 'master.cf'), 'qmgr unix n - n 300 1 qmgr\ncleanup unix n - n - 0 cleanup\nsmtp unix - - n - 1 smtp\n');
    mkdirSync(join(dir, 'spool', 'pid'), { recursive: true });
    writeFileSync(join(dir, 'spool', 'pid', 'master.pid'), `${String(sleep.pid).padStart(10)}\n`); // Postfix's "%*lu" layout
  });
  after(() => {
    sleep.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('status: "the Postactor mail system is not running", exit 1 (postfix status)', async () => {
    const r = await postactor(dir, 'status');
    assert.equal(r.code, 1);
    assert.equal(r.stderr, NOT_RUNNING);
  });

  test('stop, abort and reload: fatal "not running", exit 1, and the process named by the pid file is not signalled', async () => {
    for (const command of ['stop', 'abort', 'reload']) {
      const r = await postactor(dir, command);
      assert.equal(r.code, 1, command);
      assert.equal(r.stderr, FATAL_NOT_RUNNING, command);
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(alive(sleep), 'the sleep still runs');
  });
});

describe('a running master', () => {
  let server: TestServer;
  const sleep = sleeper();
  before(async () => {
    server = await startServer({});
  });
  after(async () => {
    sleep.kill('SIGKILL');
    await server?.stop();
  });

  test('status names the master by its lock, also when the pid file names another process', async () => {
    let r = await postactor(server.dir, 'status');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `postactor/postactor-script: the Postactor mail system is running: PID: ${server.child!.pid}\n`);
    writeFileSync(join(server.queueDir, 'pid', 'master.pid'), `${sleep.pid}\n`);
    r = await postactor(server.dir, 'status');
    assert.equal(r.stderr, `postactor/postactor-script: the Postactor mail system is running: PID: ${server.child!.pid}\n`);
  });

  test('a second master on the same queue refuses to start: "already running"', async () => {
    const r = await run(NODE, [POSTACTOR_JS, '-c', server.dir, 'start-fg'], 20_000);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^postactor: fatal: the Postactor mail system is already running \\(pid ${server.child!.pid}\\)\\n$`));
    assert.ok(alive(server.child!), 'the first master still runs');
  });

  test('stop stops the master, not the process the pid file names', async () => {
    const r = await postactor(server.dir, 'stop');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, 'postactor/postactor-script: stopping the Postactor mail system\n');
    // stop returns once the lock is released; the process exits right after.
    for (let i = 0; i < 100 && alive(server.child!); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(alive(server.child!), false, 'the master is gone');
    assert.ok(alive(sleep), 'the sleep still runs');
    assert.equal((await postactor(server.dir, 'status')).stderr, NOT_RUNNING);
  });
});
