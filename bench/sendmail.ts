/**
 * bench/sendmail: submissions per second through the sendmail shim (bin/sendmail: the shell
 * wrapper, a Node start, one fsynced maildrop file), sequentially and 20 at a time, plus how long
 * a running server's pickup takes to drain them into the queue.
 *
 *   node dist/bench/sendmail.js [--count N] [--parallel P] [--max-seconds S] [--no-server]
 *
 * Bounded: at most N submissions per phase (default 200) and S seconds per phase (default 60).
 * It uses a temporary configuration directory and removes it afterwards.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SENDMAIL = join(ROOT, 'bin', 'sendmail');
const NODE = join(ROOT, 'node_modules', '.bin', 'node');

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '200' },
    parallel: { type: 'string', default: '20' },
    'max-seconds': { type: 'string', default: '60' },
    'no-server': { type: 'boolean', default: false },
  },
});
const COUNT = Math.max(1, Number(values.count));
const PARALLEL = Math.max(1, Number(values.parallel));
const MAX_MS = Math.max(1, Number(values['max-seconds'])) * 1000;

const dir = mkdtempSync(join(tmpdir(), 'postactor-bench-sendmail-'));
const queueDir = join(dir, 'spool');
writeFileSync(join(dir, 'main.cf'), [
  `queue_directory = ${queueDir}`,
  `data_directory = ${join(dir, 'lib')}`,
  `maillog_file = ${join(dir, 'maillog')}`,
  'myhostname = bench.postactor.test',
  // Deliveries go to a closed port and are deferred: the benchmark measures submission and pickup.
  'relayhost = [127.0.0.1]:9',
  '',
].join('\n'));
writeFileSync(join(dir, 'master.cf'), [
  'cleanup unix n - n - 0 cleanup',
  'qmgr unix n - n 300 1 qmgr',
  'relay unix - - n - 1 smtp',
  'smtp unix - - n - 1 smtp',
  'bounce unix - - n - 1 bounce',
  'pickup unix n - n 60 1 pickup',
  '',
].join('\n'));

const MESSAGE = `Subject: bench\nFrom: bench@example.org\nTo: sink@example.com\n\n${'x'.repeat(70)}\n`.repeat(1) + 'body line\n'.repeat(50);

function submitOne(): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(SENDMAIL, ['-C', dir, '-i', 'sink@example.com'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`sendmail exit ${code}: ${err}`))));
    c.stdin.end(MESSAGE);
  });
}

async function phase(name: string, parallel: number): Promise<{ name: string; done: number; seconds: number; rate: number }> {
  const start = Date.now();
  let started = 0;
  let done = 0;
  const worker = async () => {
    while (started < COUNT && Date.now() - start < MAX_MS) {
      started++;
      await submitOne();
      done++;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  const seconds = (Date.now() - start) / 1000;
  const r = { name, done, seconds, rate: done / seconds };
  process.stdout.write(`${name.padEnd(24)} ${String(done).padStart(5)} submissions in ${seconds.toFixed(2)} s = ${r.rate.toFixed(1)} submissions/s\n`);
  return r;
}

function maildropCount(): number {
  try {
    return readdirSync(join(queueDir, 'maildrop')).filter((n) => !n.startsWith('.')).length;
  } catch {
    return 0;
  }
}

async function main(): Promise<void> {
  let server: ReturnType<typeof spawn> | null = null;
  try {
    process.stdout.write(`bench/sendmail: ${COUNT} submissions per phase (at most ${MAX_MS / 1000} s), message ${Buffer.byteLength(MESSAGE)} bytes\n`);
    // Phase 1 and 2 with the server stopped: pure shim + maildrop cost.
    await phase('sequential', 1);
    await phase(`parallel (${PARALLEL})`, PARALLEL);
    if (values['no-server']) return;
    const waiting = maildropCount();
    const t0 = Date.now();
    server = spawn(NODE, [join(ROOT, 'dist', 'bin', 'postactor.js'), '-c', dir, 'start-fg'], { stdio: 'ignore' });
    const deadline = t0 + MAX_MS;
    while (maildropCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const left = maildropCount();
    const seconds = (Date.now() - t0) / 1000;
    const log = existsSync(join(dir, 'maillog')) ? readFileSync(join(dir, 'maillog'), 'utf8') : '';
    const picked = (log.match(/pickup\[\d+\]: \S+: uid=/g) ?? []).length;
    process.stdout.write(`pickup drain (server start included) ${waiting - left}/${waiting} files in ${seconds.toFixed(2)} s = ${((waiting - left) / seconds).toFixed(1)} files/s; pickup log lines: ${picked}\n`);
  } finally {
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench/sendmail: ${err.message}\n`);
  process.exit(1);
});
