/**
 * The service skeleton (src/runtime/service.ts): a service written with defineService starts in
 * a real worker thread, with its master.cf -o overrides and its declared parameters read with
 * their types, logs as $syslog_name/<command>[pid], and closes its queue store when it stops.
 * A worker that ended with a store's write batch open could hang the process's exit (lmdb-js
 * issue #336), so the stop runs as a whole server's does, in a child process, with writes in
 * flight, and each child must exit within a bound. Before the skeleton closed the store, a
 * write begun as the stop came was dropped (0 of 60 here) — the batch was left open at exit;
 * now the close commits it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { test } from 'node:test';

import { buildConfig } from '../src/config/load.js';
import { configFromJSON } from '../src/config/index.js';
import { QueueStore } from '../src/queue/store.js';
import { ServicePool } from '../src/runtime/pool.js';
import { readParams } from '../src/runtime/service.js';
import { defaultMasterCf, freePort, NODE, POSTACTOR_JS, probe220, REPO_ROOT, rfc822, sendRaw, startServer } from './helpers/server.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-skeleton-');
const url = (rel: string) => pathToFileURL(join(REPO_ROOT, rel)).href;

const MASTER_CF = 'skeltest unix - - n - 4 skeltest -o syslog_name=postfix/skel -o delay_warning_time=7h\n';

/**
 * The child: argv = queue directory, maillog file, workers. It starts the fixture service in
 * real workers under the real supervisor, as master does (the configuration with the line's -o
 * overrides applied), lets the writes run a little, stops the workers and exits.
 */
const CHILD = `
import { buildConfig } from ${JSON.stringify(url('dist/src/config/load.js'))};
import { SupervisedWorker } from ${JSON.stringify(url('dist/src/runtime/supervisor.js'))};
const [queue, maillog, count] = process.argv.slice(2);
const base = buildConfig(null, 'queue_directory = ' + queue + '\\nmaillog_file = ' + maillog + '\\nmyhostname = skel.example\\ninet_protocols = ipv4\\n', ${JSON.stringify(MASTER_CF)});
const line = base.services[0];
const config = base.withOverrides({ service_name: line.name, ...line.overrides });
const workers = [];
for (let i = 0; i < Number(count); i++) {
  const w = new SupervisedWorker({
    service: 'skeltest', index: i, filename: new URL(${JSON.stringify(url('test/fixtures/runtime/skeleton-worker.mjs'))}),
    workerData: { service: 'skeltest', thread: 'skeltest', index: i, config: config.toJSON(), instance: 'skel-' + process.pid },
    throttleSeconds: 60, onPort: () => undefined,
    onExit: (_s, code, _r, _t, err) => { process.stderr.write('worker exited with status ' + code + ': ' + (err?.stack ?? '') + '\\n'); process.exit(2); },
  });
  w.start();
  workers.push(w);
}
await Promise.all(workers.map((w) => w.ready()));
await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 150)));
const written = await Promise.all(workers.map((w) => w.control.written()));
await Promise.all(workers.map((w) => w.stop()));
process.stdout.write(JSON.stringify({ written }));
process.exit(0);
`;

interface Ran { code: number | null; signal: string | null; stdout: string; stderr: string; hung: boolean }

/** The child runs from a file: workers inherit the process's execArgv, and --input-type is for -e only. */
let childFile: string | null = null;

function run(args: string[]): Promise<Ran> {
  if (!childFile) {
    childFile = join(tempDir(), 'child.mjs');
    writeFileSync(childFile, CHILD);
  }
  const file = childFile;
  return new Promise((resolve) => {
    const child = spawn(NODE, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hung = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, 15_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, hung });
    });
  });
}

test('a worker service: -o overrides, typed parameters, its log identity, and its store closed at stop', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const queue = join(dir, 'queue');
  const log = join(dir, 'maillog');
  const r = await run([queue, log, '2']);
  assert.equal(r.hung, false, 'the process hung on exit');
  assert.equal(r.code, 0, `exit ${r.code} (${r.signal}): ${r.stderr}`);
  const text = readFileSync(log, 'utf8');
  // The -o syslog_name override names the service, Postfix's way: postfix/skel/skeltest[pid].
  const lines = text.split('\n').filter((l) => / postfix\/skel\/skeltest\[\d+\]: /.test(l));
  const of = (what: RegExp) => lines.filter((l) => what.test(l));
  assert.equal(of(/service=skeltest command=skeltest delay_warning_time=25200 myhostname=skel\.example inet_protocols=ipv4$/).length, 2, text);
  assert.equal(of(/stopping after \d+ writes$/).length, 2, text);
  // The last closer ran after the store's own: lmdb-js says the store is closed.
  assert.equal(of(/store status=closed$/).length, 2, text);
});

test('workers stopped while they write: each process exits, and the writes in flight are committed by the close (20 runs, none may hang)', { timeout: 240_000 }, async () => {
  const dir = tempDir();
  const queue = join(dir, 'queue');
  let acknowledged = 0;
  for (let i = 0; i < 10; i++) {
    const pair = await Promise.all([0, 1].map((j) => run([queue, join(dir, `maillog-${i}-${j}`), '3'])));
    for (const r of pair) {
      assert.equal(r.hung, false, `run ${i}: the process hung on exit (killed after 15 s)`);
      assert.equal(r.code, 0, `run ${i}: exit ${r.code} (${r.signal}): ${r.stderr}`);
      acknowledged += (JSON.parse(r.stdout) as { written: number[] }).written.reduce((a, b) => a + b, 0);
    }
  }
  assert.ok(acknowledged > 0, 'no write was made');
  const store = QueueStore.open(queue, { readOnly: true });
  try {
    // Each child counted its writes as they resolved (on disk); more may have landed after.
    let found = 0;
    let atStop = 0;
    for (const key of (store as unknown as { stsPolicies: { getKeys(): Iterable<string> } }).stsPolicies.getKeys()) {
      if (key.startsWith('stop-')) atStop++;
      else found++;
    }
    assert.ok(found >= acknowledged, `${found} writes in the store, ${acknowledged} acknowledged`);
    // The write each worker began as it was stopped was committed by the store's close.
    assert.equal(atStop, 60, `${atStop} of the 60 writes begun at stop are in the store`);
  } finally {
    await store.close();
  }
});

test('a pool service gets its context on its first request in a real pool thread, and closes its store before the pool ends the thread', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const base = buildConfig(null, `queue_directory = ${join(dir, 'queue')}\nmaillog_file = ${join(dir, 'maillog')}\n`, 'skelpool unix - - n - 2 skelpool -o delay_warning_time=2h -o smtp_tls_security_level=may\n');
  const line = base.services[0]!;
  const config = base.withOverrides({ service_name: line.name, ...line.overrides });
  const pool = new ServicePool({
    service: 'skelpool', filename: url('test/fixtures/runtime/skeleton-pool.mjs'), threads: 1, minThreads: 0, concurrency: 4, maxQueue: 10,
    workerData: { service: 'skelpool', thread: 'skelpool', index: 0, config: config.toJSON(), instance: 'skelpool' }, throttleSeconds: 60,
  });
  try {
    const replies = await Promise.all(['a.example', 'b.example', 'c.example'].map((d) => pool.run(d) as Promise<{ req: string; setups: number; params: Record<string, unknown>; service: string; command: string }>));
    for (const r of replies) {
      assert.deepEqual(r.params, { delay_warning_time: 7200, smtp_tls_security_level: 'may' });
      assert.equal(r.service, 'skelpool');
      assert.equal(r.command, 'skelpool');
    }
    // The pool ends its thread ('end' frame): the thread runs its closers before it says
    // 'ended' and is terminated (terminate() runs no JavaScript in it).
    await pool.drain();
    assert.equal(pool.threads, 0);
  } finally {
    await pool.close();
  }
  const log = readFileSync(join(dir, 'maillog'), 'utf8');
  assert.match(log, / postactor\/skelpool\[\d+\]: pool thread ready for service skelpool\n/);
  assert.match(log, / postactor\/skelpool\[\d+\]: store status=closed\n/);
});

test('declared parameters: an unknown name or a wrong type is an error naming the service', () => {
  const config = buildConfig(null, 'delay_warning_time = 3h\n', '');
  assert.deepEqual(readParams(config, { delay_warning_time: 'time', mail_name: 'str' }, 'x'), { delay_warning_time: 10800, mail_name: 'Postactor' });
  assert.throws(() => readParams(config, { no_such_parameter: 'str' }, 'x'), /^Error: x: declares parameter no_such_parameter, which is not a known parameter$/);
  assert.throws(() => readParams(config, { delay_warning_time: 'bool' }, 'x'), /^Error: x: declares parameter delay_warning_time as bool, but it is of type time$/);
  // raw: as written, or the default, without $name expansion ($home is local(8)'s, not main.cf's).
  assert.deepEqual(readParams(config, { forward_path: 'raw', luser_relay: 'raw' }, 'x'), { forward_path: '$home/.forward${recipient_delimiter}${extension}, $home/.forward', luser_relay: '' });
  assert.deepEqual(readParams(buildConfig(null, 'luser_relay = $user@other.example\n', ''), { luser_relay: 'raw' }, 'x'), { luser_relay: '$user@other.example' });
  assert.throws(() => readParams(config, { mail_name: 'raw' }, 'x'), /^Error: x: declares parameter mail_name as raw, but it is of type str$/);
});

test('a wrong-typed value of a declared parameter stops start-up naming it (main.cf:LINE, master.cf:LINE), and a service thread given one names the service', { timeout: 120_000 }, async () => {
  // Start-up: the loader reads every setting with its registry type, so the server never starts
  // (smtp's and lmtp's timeouts, trivial-rewrite's booleans: parameters they now declare).
  const port = await freePort();
  const cases = [
    { main: 'smtp_connect_timeout = banana\n', master: '', want: (d: string) => `${d}/main.cf:2: bad time parameter value: smtp_connect_timeout = banana` },
    { main: '', master: 'lmtp unix - - n - 2 lmtp -o lmtp_lhlo_timeout=banana\n', want: (d: string) => `${d}/master.cf:7: bad time parameter value: lmtp_lhlo_timeout = banana` },
    { main: 'swap_bangpath = maybe\n', master: '', want: (d: string) => `${d}/main.cf:2: bad boolean parameter value: swap_bangpath = maybe` },
    // cleanup, qmgr (its own and a per-transport limit, read by its computed name), local, virtual, smtpd.
    { main: 'header_size_limit = 1.5\n', master: '', want: (d: string) => `${d}/main.cf:2: bad numerical parameter value: header_size_limit = 1.5` },
    { main: 'qmgr_message_active_limit = 1.5\n', master: '', want: (d: string) => `${d}/main.cf:2: bad numerical parameter value: qmgr_message_active_limit = 1.5` },
    { main: 'local_destination_recipient_limit = -x\n', master: '', want: (d: string) => `${d}/main.cf:2: bad numerical parameter value: local_destination_recipient_limit = -x` },
    { main: 'deliver_lock_delay = banana\n', master: '', want: (d: string) => `${d}/main.cf:2: bad time parameter value: deliver_lock_delay = banana` },
    { main: '', master: 'virtual unix - n n - - virtual -o virtual_minimum_uid=x\n', want: (d: string) => `${d}/master.cf:7: bad numerical parameter value: virtual_minimum_uid = x` },
    { main: 'smtpd_timeout = banana\n', master: '', want: (d: string) => `${d}/main.cf:2: bad time parameter value: smtpd_timeout = banana` },
  ];
  for (const c of cases) {
    const dir = tempDir({ 'main.cf': `queue_directory = queue\n${c.main}`, 'master.cf': defaultMasterCf(port) + c.master });
    const r = spawnSync(NODE, [POSTACTOR_JS, '-c', dir, 'start-fg'], { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(r.status, 0, `${c.main}${c.master}: start-fg exited 0`);
    assert.ok(r.stderr.includes(c.want(dir)), `${c.main}${c.master}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(await probe220(port, 300), false, 'nothing listens');
  }

  // A thread whose configuration skipped that check (as one handed over by hand would): the
  // declared reading stops the service's start, and the error names the service, the file and
  // line, and the parameter. All declared parameters are read at the start, also those a
  // service used to read only when a feature was on (SMTP AUTH, a TLS session cache).
  const dir = tempDir();
  const threads = [
    { service: 'smtp', file: 'dist/actors/smtp/index.js', name: 'smtp_connect_timeout', value: 'banana', what: 'time' },
    { service: 'smtp', file: 'dist/actors/smtp/index.js', name: 'smtp_sasl_auth_soft_bounce', value: 'maybe', what: 'boolean' },
    { service: 'lmtp', file: 'dist/actors/lmtp/index.js', name: 'lmtp_connect_timeout', value: 'banana', what: 'time' },
    { service: 'lmtp', file: 'dist/actors/lmtp/index.js', name: 'lmtp_tls_session_cache_timeout', value: 'banana', what: 'time' },
    { service: 'rewrite', file: 'dist/actors/trivial-rewrite/index.js', name: 'swap_bangpath', value: 'maybe', what: 'boolean' },
    { service: 'pipe', file: 'dist/actors/pipe/index.js', name: 'command_time_limit', value: 'banana', what: 'time' },
    { service: 'cleanup', file: 'dist/actors/cleanup/index.js', name: 'header_size_limit', value: '1.5', what: 'numerical' },
    { service: 'cleanup', file: 'dist/actors/cleanup/index.js', name: 'in_flow_delay', value: 'banana', what: 'time' },
    { service: 'local', file: 'dist/actors/local/index.js', name: 'deliver_lock_delay', value: 'banana', what: 'time' },
    { service: 'local', file: 'dist/actors/local/index.js', name: 'ipc_timeout', value: 'banana', what: 'time' },
    { service: 'virtual', file: 'dist/actors/virtual/index.js', name: 'virtual_minimum_uid', value: '-x', what: 'numerical' },
  ];
  for (const t of threads) {
    const config = configFromJSON({
      configDirectory: dir, services: [],
      params: { queue_directory: join(dir, 'queue'), maillog_file: join(dir, 'maillog'), [t.name]: t.value },
      origins: { [t.name]: { file: join(dir, 'main.cf'), line: 3 } },
    });
    const pool = new ServicePool({
      service: t.service, filename: url(t.file), threads: 1, minThreads: 0, concurrency: 1, maxQueue: 10,
      workerData: { service: t.service, thread: t.service, index: 0, config: config.toJSON(), instance: `bad-${t.service}` }, throttleSeconds: 60,
    });
    try {
      await assert.rejects(pool.run({ op: 'rewrite', context: 'local', address: 'u', queueId: 'X', recipients: [] }), (err: Error) => {
        assert.equal(err.message, `${t.service}: ${join(dir, 'main.cf')}:3: bad ${t.what} parameter value: ${t.name} = ${t.value}`);
        return true;
      });
    } finally {
      await pool.close();
    }
  }
});

test('a worker service given a wrong-typed value of a declared parameter ends its start with a fatal naming the service, file:line and parameter (qmgr, smtpd)', { timeout: 60_000 }, async () => {
  // As master starts it: the entry module in a worker thread, its data port handed over.
  const dir = tempDir();
  const threads = [
    { service: 'qmgr', file: 'dist/actors/qmgr/index.js', name: 'qmgr_message_active_limit', value: '1.5', what: 'numerical' },
    { service: 'smtpd', file: 'dist/actors/smtpd/index.js', name: 'smtpd_timeout', value: 'banana', what: 'time' },
    { service: 'smtpd', file: 'dist/actors/smtpd/index.js', name: 'smtpd_history_flush_threshold', value: '-x', what: 'numerical' },
  ];
  for (const t of threads) {
    const maillog = join(dir, `maillog-${t.service}`);
    const config = configFromJSON({
      configDirectory: dir, services: [],
      params: { queue_directory: join(dir, 'queue'), maillog_file: maillog, [t.name]: t.value },
      origins: { [t.name]: { file: join(dir, 'main.cf'), line: 3 } },
    });
    const worker = new Worker(new URL(url(t.file)), {
      workerData: { service: t.service, thread: t.service, index: 0, config: config.toJSON(), instance: `bad-${t.service}` },
      stdout: true, stderr: true,
    });
    const { port2 } = new MessageChannel();
    worker.postMessage({ type: 'postactor:port', port: port2 }, [port2]);
    const timer = setTimeout(() => void worker.terminate(), 20_000);
    const code = await new Promise<number>((resolve) => worker.once('exit', resolve));
    clearTimeout(timer);
    assert.equal(code, 1, `${t.service}: the thread did not end its start (exit ${code})`);
    const log = readFileSync(maillog, 'utf8');
    assert.ok(log.includes(`fatal: ${t.service}: ${join(dir, 'main.cf')}:3: bad ${t.what} parameter value: ${t.name} = ${t.value}`), `${t.service}: ${log}`);
    assert.doesNotMatch(log, / {4}at /, `${t.service}: no stack trace`);
  }
});

test('a server stopped (SIGTERM) while mail is being queued and relayed exits within the bound (5 rounds)', { timeout: 240_000 }, async (t) => {
  const sink = new SmtpSink({});
  const sinkPort = await sink.listen(0);
  try {
    for (let round = 0; round < 5; round++) {
      const server = await startServer({ sinkPort });
      try {
        // Six clients, one message per session, while cleanup, qmgr and smtp write the store.
        let injecting = true;
        let accepted = 0;
        const clients = Array.from({ length: 6 }, async (_, c) => {
          for (let n = 0; injecting && n < 200; n++) {
            const r = await sendRaw(server.port, 'a@client.test', ['b@remote.test'], rfc822({ Subject: `r${round} c${c} n${n}` }, 'x\r\n')).catch(() => null);
            if (r?.code === 250) accepted++;
            else if (r === null) return; // the listener is gone: the server is stopping
          }
        });
        await new Promise((r) => setTimeout(r, 400 + 150 * round));
        const child = server.child!;
        const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
        const started = Date.now();
        child.kill('SIGTERM');
        injecting = false;
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        const how = await exited;
        clearTimeout(timer);
        await Promise.all(clients);
        assert.equal(how.signal, null, `round ${round}: the server did not exit within 20 s of SIGTERM (killed) after ${accepted} messages`);
        assert.equal(how.code, 0, `round ${round}: exit status ${how.code}: ${server.stderr()}`);
        assert.ok(accepted > 0, `round ${round}: no message was accepted`);
        t.diagnostic(`round ${round}: ${accepted} accepted, stopped in ${Date.now() - started} ms`);
      } finally {
        await server.stop();
      }
    }
  } finally {
    await sink.close();
  }
});
