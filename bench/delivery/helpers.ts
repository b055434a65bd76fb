/**
 * bench/delivery/helpers — the delivery helpers alone (src/delivery/helpers.ts → helper.ts),
 * without SMTP, cleanup or qmgr: what local(8) and virtual(8) pay per mailbox write, measured
 * apart from the rest of the server, whose CPU swings with the machine's load. This process
 * plays the agent thread: it keeps --inflight writes outstanding (as qmgr keeps deliveries in
 * flight), each a 1 KiB message for one of --users users (uid/gid 65534 when run as root, so
 * every write switches to the recipient, as in bench/delivery), into Maildirs, mboxes in a
 * world-writable spool, or mboxes in a spool only root may write.
 *
 *   writes/s    = N ÷ wall time of the N writes
 *   cpu ms/write = CPU of this process and its children (helpers, Perl lock companions) over
 *                  those writes ÷ N (bench/delivery/cpu.ts)
 *
 *   node_modules/.bin/node dist/bench/delivery/helpers.js [--mode maildir,mbox,rootspool]
 *     [--messages 2000] [--users 100] [--inflight 32] [--runs 3]
 *     [--impl DIR]   (another build's dist/src/delivery, to compare two versions)
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { treeCpuSeconds } from './cpu.js';
import type { WriterJob, WriteResult } from '../../src/delivery/protocol.js';

type Mode = 'maildir' | 'mbox' | 'rootspool';

interface Helpers { write(job: WriterJob, data: Uint8Array): Promise<WriteResult>; prestart(): void; readonly pids: number[] }

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'maildir,mbox,rootspool' },
    messages: { type: 'string', default: '2000' },
    users: { type: 'string', default: '100' },
    inflight: { type: 'string', default: '32' },
    runs: { type: 'string', default: '3' },
    impl: { type: 'string' },
  },
});
const modes = values.mode!.split(',') as Mode[];
for (const m of modes) if (!['maildir', 'mbox', 'rootspool'].includes(m)) throw new Error(`--mode: unknown mode "${m}" (maildir, mbox, rootspool)`);
const N = Number(values.messages);
const USERS = Number(values.users);
const INFLIGHT = Number(values.inflight);
const RUNS = Number(values.runs);
if (!(N >= 1 && USERS >= 1 && INFLIGHT >= 1 && RUNS >= 1)) throw new Error('--messages, --users, --inflight, --runs must be positive');
const root = process.getuid?.() === 0;
const [uid, gid] = root ? [65534, 65534] : [process.getuid!(), process.getgid!()];
const LOCKS = { dotlock: true, flock: true, fcntl: true, attempts: 20, delayMs: 1000, staleMs: 500_000 };

const implDir = values.impl ? path.resolve(values.impl) : path.join(import.meta.dirname, '../../src/delivery');
const { DeliveryHelpers } = (await import(pathToFileURL(path.join(implDir, 'helpers.js')).href)) as { DeliveryHelpers: new (max: number, warn: (t: string) => void) => Helpers };

const body = Buffer.from(`Return-Path: <s@example.org>\nSubject: bench\n\n${`${'x'.repeat(71)}\n`.repeat(14)}`);
const mboxBody = Buffer.concat([Buffer.from('From s@example.org  Thu Dec  3 00:00:00 2026\n'), body, Buffer.from('\n')]);

async function runOnce(mode: Mode): Promise<{ perSec: number; cpuMs: number; failed: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'delivery-helpers-bench-'));
  chmodSync(dir, 0o755);
  const spool = path.join(dir, 'spool');
  mkdirSync(spool);
  chmodSync(spool, mode === 'rootspool' ? 0o755 : 0o1777);
  const jobs: WriterJob[] = [];
  for (let i = 0; i < USERS; i++) {
    const home = path.join(dir, `u${i}`);
    mkdirSync(home);
    if (root) chownSync(home, uid, gid);
    jobs.push(mode === 'maildir'
      ? { kind: 'maildir', path: path.join(home, 'Maildir') + '/', uid, gid, inSpool: false, locks: LOCKS, sizeLimit: 0 }
      : { kind: 'mbox', path: path.join(spool, `u${i}`), uid, gid, inSpool: mode === 'rootspool', locks: LOCKS, sizeLimit: 0 });
  }
  // Two helpers, as an agent thread has (src/delivery/write.ts); started before the clock runs.
  let stopping = false;
  const helpers = new DeliveryHelpers(2, (t) => { if (!stopping) process.stderr.write(`warning: ${t}\n`); });
  helpers.prestart();
  while (helpers.pids.length === 0) await new Promise((r) => setTimeout(r, 10));
  await helpers.write(jobs[0]!, mode === 'maildir' ? body : mboxBody); // the helper is up, its Perl started
  const cpu0 = treeCpuSeconds(process.pid)!;
  const t0 = performance.now();
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < N) {
      const k = next++;
      const r = await helpers.write(jobs[k % USERS]!, mode === 'maildir' ? body : mboxBody);
      if (!r.ok) failed++;
    }
  };
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  const wall = (performance.now() - t0) / 1000;
  const cpu = treeCpuSeconds(process.pid)! - cpu0;
  stopping = true;
  const pids = helpers.pids;
  for (const pid of pids) try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
  // Reaped before the next run starts its clock (a reaped child's CPU is added to ours).
  for (let i = 0; i < 200 && pids.some((p) => existsSync(`/proc/${p}`)); i++) await new Promise((r) => setTimeout(r, 10));
  rmSync(dir, { recursive: true, force: true });
  return { perSec: N / wall, cpuMs: (cpu * 1000) / N, failed };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
process.stdout.write(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${N} writes × ${body.length} B to ${USERS} users, ${INFLIGHT} in flight, ${root ? 'as root (uid 65534)' : 'not root (own uid)'}, impl ${implDir}\n`);
for (const mode of modes) {
  const rs: { perSec: number; cpuMs: number; failed: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await runOnce(mode);
    rs.push(r);
    process.stdout.write(`${mode} run ${i + 1}: ${r.perSec.toFixed(1)} writes/s, cpu ${r.cpuMs.toFixed(3)} ms/write${r.failed ? `, ${r.failed} FAILED` : ''}\n`);
  }
  process.stdout.write(`  ${mode.padEnd(9)} median ${median(rs.map((r) => r.perSec)).toFixed(1)} writes/s, cpu ${median(rs.map((r) => r.cpuMs)).toFixed(3)} ms/write\n`);
}
process.exit(0);
