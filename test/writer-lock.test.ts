/**
 * One writing process per queue store (src/queue/writer-lock.ts): a second process that opens
 * the store for writing while another live process writes it is refused by name, after a short
 * wait; readers are not; a holder that died (SIGKILL) or whose PID now belongs to another
 * process is taken over; postsuper says so in one line, with no stack trace. Real processes,
 * a real LMDB store in a temp dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { QueueStore } from '../src/queue/store.js';
import { StoreBusyError, WRITER_FILE } from '../src/queue/writer-lock.js';
import { NODE, REPO_ROOT } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('pa-writer-');
const storeUrl = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'queue', 'store.js')).href;

/** A process that opens the store for writing, says "ready", and holds it until its stdin ends. */
async function holder(dir: string): Promise<ChildProcess> {
  const code = `
    import { QueueStore } from ${JSON.stringify(storeUrl)};
    const store = QueueStore.open(${JSON.stringify(dir)});
    await store.putStsPolicy('held.example', { fetched: 1 });
    console.log('ready');
    process.stdin.resume();
    process.stdin.on('end', async () => { await store.close(); process.exit(0); });`;
  const child = spawn(NODE, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  await once(child.stdout!, 'data');
  return child;
}

test('a second writing process is refused by name while the first lives; readers are not; after it ends, the next one writes', async () => {
  const dir = tempDir();
  const first = await holder(dir);
  try {
    const started = Date.now();
    assert.throws(() => QueueStore.open(dir), (err: Error) => err instanceof StoreBusyError && err.message.includes(`is being written by process ${first.pid}: only one process may write it at a time`));
    assert.ok(Date.now() - started >= 2500, 'it waited for the holder to finish first');
    const reader = QueueStore.open(dir, { readOnly: true });
    assert.ok(reader.stsPolicy('held.example'));
    await reader.close();
  } finally {
    first.stdin!.end();
    await once(first, 'exit');
  }
  assert.equal(existsSync(join(dir, WRITER_FILE)), false, 'a command gives its claim up when it closes the store');
  const store = QueueStore.open(dir);
  await store.putPostscreenEntry('192.0.2.1', 'next');
  await store.close();
});

test('a holder killed by SIGKILL leaves its file behind, and the next writer takes it over', async () => {
  const dir = tempDir();
  const first = await holder(dir);
  first.kill('SIGKILL');
  await once(first, 'exit');
  assert.match(readFileSync(join(dir, WRITER_FILE), 'utf8'), new RegExp(`^${first.pid} `));
  const store = QueueStore.open(dir);
  assert.ok(store.stsPolicy('held.example'));
  assert.match(readFileSync(join(dir, WRITER_FILE), 'utf8'), new RegExp(`^${process.pid} `));
  await store.close();
});

test('a PID that now belongs to another process (another start time) is no holder; a live one with its own start time is', async () => {
  const dir = tempDir();
  await QueueStore.open(dir).close();
  const sleeper = spawn('sleep', ['30']);
  try {
    const stat = readFileSync(`/proc/${sleeper.pid}/stat`, 'utf8');
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    writeFileSync(join(dir, WRITER_FILE), `${sleeper.pid} ${Number(start) + 1}\n`);
    const store = QueueStore.open(dir);
    await store.close();
    writeFileSync(join(dir, WRITER_FILE), `${sleeper.pid} ${start}\n`);
    assert.throws(() => QueueStore.open(dir), (err: Error) => err instanceof StoreBusyError && err.message.includes(`process ${sleeper.pid}`));
  } finally {
    sleeper.kill('SIGKILL');
    await once(sleeper, 'exit');
  }
});

test('postsuper on a stopped server whose store another process writes: one fatal line, exit 75, nothing changed', async () => {
  const dir = tempDir();
  const spool = join(dir, 'spool');
  writeFileSync(join(dir, 'main.cf'), `queue_directory = ${spool}\nmaillog_file = ${join(dir, 'maillog')}\nmyhostname = mx.postactor.test\n`);
  writeFileSync(join(dir, 'master.cf'), 'qmgr unix n - n 300 1 qmgr\ncleanup unix n - n - 0 cleanup\nsmtp unix - - n - 1 smtp\n');
  const first = await holder(spool);
  try {
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(join(REPO_ROOT, 'bin', 'postsuper'), ['-c', dir, '-d', 'ALL'], { timeout: 60_000 }, (err, _stdout, stderr) => {
        resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stderr });
      });
    });
    assert.equal(r.stderr, `postsuper: fatal: queue store ${join(spool, 'queue.lmdb')} is being written by process ${first.pid}: only one process may write it at a time (stop it, or let it finish, and try again)\n`);
    assert.equal(r.code, 75);
  } finally {
    first.stdin!.end();
    await once(first, 'exit');
  }
});

test('eight processes at once over a dead holder\'s file: one holder at a time (the dead holder\'s claim is removed under a guard only one of them holds)', async () => {
  const dir = tempDir();
  const lockUrl = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'queue', 'writer-lock.js')).href;
  const sleepUrl = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'runtime', 'sleep-sync.js')).href;
  const trace = join(dir, 'trace');
  writeFileSync(trace, '');
  const ROUNDS = 5;
  for (let round = 0; round < ROUNDS; round++) {
    // A holder that is gone: a PID that cannot be a live process of ours.
    writeFileSync(join(dir, WRITER_FILE), '2147483646 1\n');
    const at = Date.now() + 600; // all start spinning for the claim at this moment
    const code = `
      import { appendFileSync } from 'node:fs';
      import { claimWriter, releaseWriter } from ${JSON.stringify(lockUrl)};
      import { sleepSync } from ${JSON.stringify(sleepUrl)};
      // Line up: asleep until just before the moment, then spinning to it (no CPU taken from
      // the tests beside this one for longer than that).
      sleepSync(Math.max(0, ${at} - 5 - Date.now()));
      while (Date.now() < ${at}) { /* line up */ }
      claimWriter(${JSON.stringify(dir)});
      appendFileSync(${JSON.stringify(trace)}, '+' + process.pid + '\\n');
      sleepSync(30); // hold
      appendFileSync(${JSON.stringify(trace)}, '-' + process.pid + '\\n');
      releaseWriter(${JSON.stringify(dir)});`;
    const children = Array.from({ length: 8 }, () => spawn(NODE, ['--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'pipe'] }));
    const errors: string[] = [];
    for (const c of children) c.stderr!.on('data', (d: Buffer) => errors.push(d.toString()));
    await Promise.all(children.map((c) => once(c, 'exit')));
    assert.deepEqual(errors, [], 'every process got the store in its turn');
  }
  const events = readFileSync(trace, 'utf8').trim().split('\n');
  assert.equal(events.length, ROUNDS * 8 * 2);
  for (let i = 0; i < events.length; i += 2) {
    assert.ok(events[i]!.startsWith('+') && events[i + 1] === `-${events[i]!.slice(1)}`, `two holders at once: ${events.slice(Math.max(0, i - 2), i + 4).join(' ')}`);
  }
});

test('a take-over guard left by a process killed in it is cleared once it is stale, and the dead holder taken over', async () => {
  const dir = tempDir();
  await QueueStore.open(dir).close();
  writeFileSync(join(dir, WRITER_FILE), '2147483646 1\n');
  const guard = join(dir, `${WRITER_FILE}.takeover`);
  mkdirSync(guard);
  const old = (Date.now() - 60_000) / 1000;
  utimesSync(guard, old, old);
  const store = QueueStore.open(dir);
  assert.match(readFileSync(join(dir, WRITER_FILE), 'utf8'), new RegExp(`^${process.pid} `));
  assert.equal(existsSync(guard), false);
  await store.close();
});
