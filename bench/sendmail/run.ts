/**
 * bench/sendmail: local submission and queue listing, Postactor beside Debian's Postfix.
 *
 *   node dist/bench/sendmail/run.js [--runs 3] [--count 200] [--parallel 20] [--mailq 20]
 *                                   [--max-seconds 60] [--mta postactor,postfix,node] [--json FILE]
 *                                   [--baseline ROOT]
 *
 * Both MTAs run for the whole bench (a throwaway Postfix through bench/postfix-peer.sh, needing
 * root; Postactor with a pickup service, through bench/relay/postactor.ts). Then, alternating
 * A B A B run by run so that the ratio holds while the shared machine drifts:
 *
 *   mailq        `mailq` on the empty queue (Postfix: /usr/bin/mailq -C DIR, which asks showq;
 *                Postactor: bin/mailq -c DIR, the Perl front end, which asks the running master's
 *                showq over the control socket), wall time of each
 *                call, --mailq calls per run, before any submission;
 *   sequential   --count submissions one after the other through the sendmail command
 *                (Postfix: /usr/sbin/sendmail -C DIR -i rcpt, which runs the set-gid postdrop;
 *                Postactor: bin/sendmail -C DIR -i rcpt, the Perl front end, which writes the
 *                maildrop file itself);
 *   parallel     the same with --parallel submissions at a time.
 *
 * --baseline ROOT adds "baseline": another checkout's bin/sendmail and bin/mailq (built) into the
 * same running Postactor, e.g. the main branch's, to compare versions in the same run.
 *
 * The third "MTA", node, is the floor of any Node command: the pinned runtime starting an empty
 * ES module, in place of sendmail and mailq.
 *
 * Each submission is a process started from here with the message (about 1 KiB) on its
 * standard input; it counts when the command exits 0. Deliveries go to a closed port and are
 * deferred: the bench measures submission, not delivery. Bounded: at most --count submissions
 * and --max-seconds per phase and run. Medians over runs, and the Postactor/Postfix ratio.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { benchArgs } from '../args.js';
import { REPO_ROOT, type MtaHandle } from '../relay/mta.js';
import { startPostactor } from '../relay/postactor.js';
import { PostfixNotInstalled, startPostfix } from '../relay/postfix.js';

const values = benchArgs('bench/sendmail',
  'usage: node dist/bench/sendmail/run.js [--runs 3] [--count 200] [--parallel 20] [--mailq 20] [--max-seconds 60] [--mta postactor,postfix,node] [--json FILE] [--baseline FILE]\nSee the header of bench/sendmail/run.ts.', {
    runs: { type: 'string', default: '3' },
    count: { type: 'string', default: '200' },
    parallel: { type: 'string', default: '20' },
    mailq: { type: 'string', default: '20' },
    'max-seconds': { type: 'string', default: '60' },
    mta: { type: 'string', default: 'postactor,postfix,node' },
    json: { type: 'string' },
    baseline: { type: 'string' },
  });
const RUNS = Math.max(1, Number(values.runs));
const COUNT = Math.max(1, Number(values.count));
const PARALLEL = Math.max(1, Number(values.parallel));
const MAILQ = Math.max(1, Number(values.mailq));
const MAX_MS = Math.max(1, Number(values['max-seconds'])) * 1000;
const MTAS = values.mta.split(',').map((s) => s.trim()).filter(Boolean);

/** A closed port: deliveries are deferred. */
const NOWHERE = 9;
const MESSAGE = 'From: bench@example.org\nTo: sink@example.com\nSubject: bench\n\n' + 'body line of the sendmail benchmark, 64 bytes long............\n'.repeat(15);

interface Instance {
  name: string;
  handle: MtaHandle;
  sendmail: [string, string[]];
  mailq: [string, string[]];
}

/** Runs one command with input on stdin; resolves with its wall time in ms, rejects unless it exits 0. */
function runOnce([cmd, args]: [string, string[]], input: string | null): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(cmd, args, { stdio: [input === null ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    c.on('error', reject);
    c.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} exited ${code}: ${err.trim()}`));
    });
    if (input !== null) {
      c.stdin!.on('error', () => { /* it may exit before reading everything */ });
      c.stdin!.end(input);
    }
  });
}

/** Submissions per second with `parallel` at a time. */
async function submissions(inst: Instance, parallel: number): Promise<number> {
  const start = Date.now();
  let started = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (started < COUNT && Date.now() - start < MAX_MS) {
      started++;
      await runOnce(inst.sendmail, MESSAGE);
      done++;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return done / ((Date.now() - start) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function start(name: string): Promise<Instance | null> {
  if (name === 'node') {
    // The floor of any Node command: the pinned runtime starting an empty ES module, exiting 0.
    const dir = mkdtempSync(path.join(tmpdir(), 'sendmail-bench-node-'));
    const empty = path.join(dir, 'empty.mjs');
    writeFileSync(empty, '');
    const node: [string, string[]] = [path.join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node'), [empty]];
    const stop = async (): Promise<void> => rmSync(dir, { recursive: true, force: true });
    return { name, handle: { name, host: '', port: 0, dir, version: `(empty module) ${process.version}`, stop }, sendmail: node, mailq: node };
  }
  if (name === 'postfix') {
    try {
      const h = await startPostfix({ sinkPort: NOWHERE });
      const conf = path.join(h.dir, 'etc');
      return { name, handle: h, sendmail: ['/usr/sbin/sendmail', ['-C', conf, '-i', 'sink@example.com']], mailq: ['/usr/bin/mailq', ['-C', conf]] };
    } catch (err) {
      if (err instanceof PostfixNotInstalled) {
        process.stdout.write('postfix not installed: skipping the peer\n');
        return null;
      }
      throw err;
    }
  }
  const h = await startPostactor({
    // A prefix of its own: other benches' clean-ups remove their postactor-bench-* directories.
    dir: mkdtempSync(path.join(tmpdir(), 'sendmail-bench-postactor-')),
    sinkPort: NOWHERE,
    smtpdThreads: 1,
    cleanupThreads: 1,
    smtpThreads: 1,
    prepare: (dir) => appendFileSync(path.join(dir, 'master.cf'), 'pickup unix n - n 60 1 pickup\n'),
  });
  const bin = (cmd: string) => path.join(REPO_ROOT, 'bin', cmd);
  return { name, handle: h, sendmail: [bin('sendmail'), ['-C', h.dir, '-i', 'sink@example.com']], mailq: [bin('mailq'), ['-c', h.dir]] };
}

interface Figures { mailqMs: number[]; sequential: number[]; parallel: number[] }

async function main(): Promise<void> {
  const [l1, l5] = loadavg();
  process.stdout.write(`bench/sendmail: ${RUNS} run(s); per run ${MAILQ} mailq calls, ${COUNT} submissions sequential and ${COUNT} with ${PARALLEL} in parallel (at most ${MAX_MS / 1000} s each); message ${Buffer.byteLength(MESSAGE)} bytes; load average ${l1!.toFixed(2)} ${l5!.toFixed(2)}; node ${process.version}\n`);
  const instances: Instance[] = [];
  try {
    for (const name of MTAS) {
      const inst = await start(name);
      if (inst) instances.push(inst);
      if (inst && name === 'postactor' && values.baseline) {
        const bin = (cmd: string) => path.join(path.resolve(values.baseline!), 'bin', cmd);
        const dir = inst.handle.dir;
        const handle = { ...inst.handle, name: 'baseline', version: `${path.resolve(values.baseline)}`, stop: async () => undefined };
        instances.push({ name: 'baseline', handle, sendmail: [bin('sendmail'), ['-C', dir, '-i', 'sink@example.com']], mailq: [bin('mailq'), ['-c', dir]] });
      }
    }
    const figures = new Map<string, Figures>(instances.map((i) => [i.name, { mailqMs: [], sequential: [], parallel: [] }]));
    process.stdout.write(instances.map((i) => `${i.name}: ${i.handle.version}`).join('; ') + '\n');
    // mailq first, while every queue is empty: calls alternate between the MTAs.
    for (let r = 0; r < RUNS; r++) {
      const times = new Map<string, number[]>(instances.map((i) => [i.name, []]));
      for (let k = 0; k < MAILQ; k++) {
        for (const inst of instances) times.get(inst.name)!.push(await runOnce(inst.mailq, null));
      }
      for (const inst of instances) {
        const m = median(times.get(inst.name)!);
        figures.get(inst.name)!.mailqMs.push(m);
        process.stdout.write(`run ${r + 1} ${inst.name.padEnd(9)} mailq (empty queue)  median ${m.toFixed(1)} ms over ${MAILQ} calls\n`);
      }
    }
    for (let r = 0; r < RUNS; r++) {
      // A B C in odd runs, C B A in even ones.
      const order = r % 2 === 0 ? instances : [...instances].reverse();
      for (const [phase, parallel] of [['sequential', 1], ['parallel', PARALLEL]] as const) {
        for (const inst of order) {
          const rate = await submissions(inst, parallel);
          figures.get(inst.name)![phase].push(rate);
          process.stdout.write(`run ${r + 1} ${inst.name.padEnd(9)} ${phase === 'sequential' ? 'sequential          ' : `parallel (${PARALLEL})`.padEnd(20)} ${rate.toFixed(1)} submissions/s\n`);
        }
      }
    }
    process.stdout.write('\nmedians                 mailq empty (ms)  sequential (/s)  parallel (/s)\n');
    for (const inst of instances) {
      const f = figures.get(inst.name)!;
      process.stdout.write(`${(inst.name + ' ' + inst.handle.version).padEnd(24)}${median(f.mailqMs).toFixed(1).padStart(16)}  ${median(f.sequential).toFixed(1).padStart(15)}  ${median(f.parallel).toFixed(1).padStart(13)}\n`);
    }
    const a = figures.get('postactor');
    const b = figures.get('postfix');
    if (a && b) {
      process.stdout.write(`Postactor/Postfix: sequential ×${(median(a.sequential) / median(b.sequential)).toFixed(2)}, parallel ×${(median(a.parallel) / median(b.parallel)).toFixed(2)}; mailq time ×${(median(a.mailqMs) / median(b.mailqMs)).toFixed(2)}\n`);
    }
    const n = figures.get('node');
    if (n && b) process.stdout.write(`Node's start-up alone/Postfix: sequential ×${(median(n.sequential) / median(b.sequential)).toFixed(2)}, parallel ×${(median(n.parallel) / median(b.parallel)).toFixed(2)}\n`);
    if (values.json) writeFileSync(values.json, JSON.stringify({ runs: RUNS, count: COUNT, parallel: PARALLEL, loadavg: [l1, l5], figures: Object.fromEntries(figures) }, null, 2) + '\n');
  } finally {
    for (const inst of instances) await inst.handle.stop();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench/sendmail: ${err.message}\n`);
  process.exit(1);
});
