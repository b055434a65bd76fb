/**
 * bench/memory — the memory of the whole server, idle and with a deferred backlog (issue 17:
 * ≤ 150 MB RSS idle with the embedded default master.cf, ≤ 200 MB with 20,000 messages
 * deferred), Postactor beside Debian's Postfix, alternating run by run (A B A B …).
 *
 *   node_modules/.bin/node dist/bench/memory/run.js                     # both, one run each
 *   node_modules/.bin/node dist/bench/memory/run.js --runs 3 --json bench/results/memory.json
 *   node_modules/.bin/node dist/bench/memory/run.js --mta postactor --messages 2000 --idle 10
 *
 * Postactor runs the embedded default configuration (src/config/embedded.ts, main.cf and
 * master.cf as shipped) in a temp dir: only what must change to run beside others is changed
 * (queue_directory, mail_spool_directory, maillog_file, the smtpd port) and relayhost points at
 * a loopback port nobody listens on, so every message is deferred ("connection refused"). The
 * master runs as `postactor start` runs it (src/runtime/heap-limits.ts MASTER_NODE_FLAGS and
 * masterEnvironment).
 * Postfix runs as bench/postfix-peer.sh sets it up (Debian's master.cf, relay only), relaying to
 * the same kind of dead port.
 *
 * Per MTA and run, at each point: RSS (VmRSS, split into anonymous and file-backed pages),
 * PSS (summed /proc/PID/smaps_rollup: for Postfix over the master and every child, for
 * Postactor its one process) and the thread or process count, and beside them the same RSS/PSS
 * by mapping kind from /proc/PID/smaps (mappingKind: node binary, queue store, libraries,
 * anonymous memory, malloc's main heap, stacks):
 *   start     ready (220) + 5 s
 *   idle      after --idle seconds more (default 60)
 *   deferred  after --messages (default 20,000) messages of 1 KiB were accepted
 *             (20 sessions, one message per connection) and every one of them was deferred
 *   settled   --settle seconds later (default 115: Postactor's pools end their idle threads after
 *             max_idle, 100 s, as Postfix's daemons exit after it)
 * Postactor's RSS counts the Node binary's mapped pages (about 50 MB, shared with every other
 * Node process: PSS divides them) and the LMDB store's pages it has touched (file-backed, the
 * page cache: Postfix's queue files are in the page cache too, but not mapped into a process).
 *
 * Options: --mta postactor,postfix  --runs N  --messages N  --sessions N  --idle S  --settle S
 *          --timeout S (per injection, default 900)  --keep  --json FILE
 *          --hold S (keep each instance running S s after settled, to look at it: /proc/PID/smaps)
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF } from '../../src/config/embedded.js';
import { LoadGenerator } from '../relay/generator.js';
import { freePort, postactorCommand, REPO_ROOT, Tail, waitFor220 } from '../relay/mta.js';
import { PEER_SCRIPT, postfixVersion } from '../relay/postfix.js';

const run = promisify(execFile);

interface Sample {
  point: string;
  rssMb: number;
  anonMb: number;
  fileMb: number;
  pssMb: number;
  /** Postactor: OS threads of its process; Postfix: processes. */
  tasks: number;
  deferred: number;
  /** RSS / PSS by mapping kind (MB), from /proc/PID/smaps: where the memory is. */
  kinds: Record<string, { rss: number; pss: number }>;
}

interface Instance {
  name: 'postactor' | 'postfix';
  port: number;
  dir: string;
  /** The processes to measure, now. */
  pids(): number[];
  /** Messages in the deferred queue, now. */
  deferred(): number;
  stop(): Promise<void>;
}

const kb = (text: string, field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);

/**
 * The kind of one mapping of /proc/PID/smaps, by its path: the Node binary's text and data
 * (file-backed, shared by every Node process), the queue store (LMDB maps its file: the
 * pages any thread read, plus the kernel's fault-around neighbours), other files (shared
 * libraries, Postfix's own binaries), malloc's main heap, thread stacks, and anonymous mappings
 * (V8's heaps and glibc's per-thread arenas).
 */
function mappingKind(name: string): string {
  if (name === '') return 'anon';
  if (name === '[heap]') return 'brk-heap';
  if (name.startsWith('[stack')) return 'stack';
  if (name.startsWith('[')) return 'other';
  if (/\.lmdb(-lock)?$/.test(name) || name.endsWith('/queue.lmdb')) return 'store';
  if (/\/node$/.test(name)) return 'node';
  if (/\.so(\.|$)/.test(name)) return 'libs';
  return 'files';
}

function addSmaps(pid: number, kinds: Sample['kinds']): void {
  let kind = 'other';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      kind = mappingKind(head[1]!.replace(/ \(deleted\)$/, ''));
      continue;
    }
    const m = /^(Rss|Pss):\s+(\d+) kB/.exec(line);
    if (!m) continue;
    const k = (kinds[kind] ??= { rss: 0, pss: 0 });
    if (m[1] === 'Rss') k.rss += Number(m[2]);
    else k.pss += Number(m[2]);
  }
}

function sample(inst: Instance, point: string): Sample {
  let rss = 0, anon = 0, file = 0, pss = 0, tasks = 0;
  const kinds: Sample['kinds'] = {};
  for (const pid of inst.pids()) {
    try {
      addSmaps(pid, kinds);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      rss += kb(status, 'VmRSS');
      anon += kb(status, 'RssAnon');
      file += kb(status, 'RssFile') + kb(status, 'RssShmem');
      pss += kb(rollup, 'Pss');
      tasks += inst.name === 'postactor' ? kb(status, 'Threads') : 1;
    } catch {
      /* the process ended meanwhile */
    }
  }
  const mb = (k: number) => Math.round(k / 102.4) / 10;
  for (const k of Object.values(kinds)) {
    k.rss = mb(k.rss);
    k.pss = mb(k.pss);
  }
  return { point, rssMb: mb(rss), anonMb: mb(anon), fileMb: mb(file), pssMb: mb(pss), tasks, deferred: inst.deferred(), kinds };
}

/** Files under dir (Postfix's queue directories hash into subdirectories). */
function countFiles(dir: string): number {
  let n = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) n += e.isDirectory() ? countFiles(path.join(dir, e.name)) : 1;
  return n;
}

/** The embedded default, changed only where it must be to run here (see the header). */
export function embeddedForBench(dir: string, port: number, deadPort: number): { main: string; master: string } {
  const main = EMBEDDED_MAIN_CF
    .replace(/^queue_directory = .*$/m, `queue_directory = ${dir}/spool`)
    .replace(/^mail_spool_directory = .*$/m, `mail_spool_directory = ${dir}/mail`)
    .replace(/^relayhost = .*$/m, `relayhost = [127.0.0.1]:${deadPort}`)
    + `maillog_file = ${dir}/maillog\n`;
  const master = EMBEDDED_MASTER_CF.replace(/^127\.0\.0\.1:2525 /m, `127.0.0.1:${port} `);
  if (!main.includes(`${dir}/spool`) || !master.includes(`:${port} `)) throw new Error('bench/memory: the embedded configuration changed shape; update embeddedForBench');
  return { main, master };
}

async function startPostactor(deadPort: number, keep: boolean): Promise<Instance> {
  const { QueueStore } = await import('../../src/queue/store.js');
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'postactor-memory-'));
  const { main, master } = embeddedForBench(dir, port, deadPort);
  writeFileSync(path.join(dir, 'main.cf'), main);
  writeFileSync(path.join(dir, 'master.cf'), master);
  const log = createWriteStream(path.join(dir, 'postactor.log'));
  const stderr = new Tail();
  const command = postactorCommand(path.join(REPO_ROOT, 'dist/bin/postactor.js'), dir);
  const child: ChildProcess = spawn(process.execPath, command.args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: command.env });
  let exited: string | null = null;
  const exitedP = new Promise<void>((resolve) => child.once('exit', (code, signal) => { exited = `postactor exited (${signal ?? `code ${code}`})`; resolve(); }));
  child.stdout!.on('data', (d: Buffer) => log.write(d));
  child.stderr!.on('data', (d: Buffer) => { stderr.push(d); log.write(d); });
  let store: ReturnType<typeof QueueStore.open> | null = null;
  const stop = async () => {
    await store?.close();
    if (exited === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exitedP;
      clearTimeout(killer);
    }
    await new Promise<void>((r) => log.end(r));
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor220('127.0.0.1', port, 60_000, () => exited);
  } catch (err) {
    await stop();
    throw new Error(`postactor did not start: ${(err as Error).message}\n${stderr.toString()}`);
  }
  return {
    name: 'postactor', port, dir, stop,
    pids: () => [child.pid!],
    // Read-only, opened once the server made the store (the bench's own process, not measured).
    deferred: () => (store ??= QueueStore.open(path.join(dir, 'spool'), { readOnly: true })).count('deferred'),
  };
}

async function startPostfix(deadPort: number, keep: boolean): Promise<Instance> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'postfix-memory-'));
  const stop = async () => {
    await run('sh', [PEER_SCRIPT, 'stop', dir], { timeout: 60_000 }).catch((err: Error) => console.error(`postfix-peer stop: ${err.message}`));
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await run('sh', [PEER_SCRIPT, 'start', dir, String(port), String(deadPort)], { timeout: 120_000 });
  } catch (err) {
    await stop();
    throw new Error(`postfix peer did not start: ${(err as Error).message}`);
  }
  const pids = (): number[] => {
    let master: number;
    try {
      master = Number(readFileSync(path.join(dir, 'spool', 'pid', 'master.pid'), 'utf8').trim());
    } catch {
      return [];
    }
    const out = [master];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const st = readFileSync(`/proc/${e}/stat`, 'utf8');
        if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === master) out.push(Number(e));
      } catch { /* gone */ }
    }
    return out;
  };
  return { name: 'postfix', port, dir, stop, pids, deferred: () => countFiles(path.join(dir, 'spool', 'deferred')) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function measure(inst: Instance, o: Options): Promise<Sample[]> {
  const samples: Sample[] = [];
  const show = (s: Sample) => {
    samples.push(s);
    console.log(`  ${inst.name.padEnd(9)} ${s.point.padEnd(8)} RSS ${s.rssMb.toFixed(1).padStart(6)} MB (anon ${s.anonMb.toFixed(1)}, file ${s.fileMb.toFixed(1)})  PSS ${s.pssMb.toFixed(1).padStart(6)} MB  ${inst.name === 'postactor' ? 'threads' : 'processes'} ${s.tasks}  deferred ${s.deferred}`);
    const kinds = Object.entries(s.kinds).sort((a, b) => b[1].rss - a[1].rss);
    console.log(`            by mapping, RSS/PSS MB: ${kinds.map(([k, v]) => `${k} ${v.rss.toFixed(1)}/${v.pss.toFixed(1)}`).join(', ')}`);
  };
  await sleep(5000);
  show(sample(inst, 'start'));
  await sleep(o.idle * 1000);
  show(sample(inst, 'idle'));
  const gen = new LoadGenerator({ host: '127.0.0.1', port: inst.port, sessions: o.sessions, messages: o.messages, size: 1024, from: 'bench@example.org', to: 'rcpt@example.com', timeLimitMs: o.timeout * 1000, socketTimeoutMs: 60_000 });
  const started = Date.now();
  const result = await gen.run();
  const accepted = result.accepted;
  console.log(`  ${inst.name.padEnd(9)} injected ${accepted} of ${o.messages} in ${((Date.now() - started) / 1000).toFixed(1)} s${result.failed ? ` (${result.failed} failed)` : ''}`);
  // Every accepted message deferred (bounded: the rest of --timeout).
  const deadline = started + o.timeout * 1000;
  while (inst.deferred() < accepted && Date.now() < deadline) await sleep(1000);
  show(sample(inst, 'deferred'));
  await sleep(o.settle * 1000);
  show(sample(inst, 'settled'));
  if (o.hold > 0) {
    console.log(`  ${inst.name.padEnd(9)} holding ${o.hold} s: pid(s) ${inst.pids().join(' ')}, dir ${inst.dir}`);
    await sleep(o.hold * 1000);
  }
  return samples;
}

interface Options {
  mtas: ('postactor' | 'postfix')[];
  runs: number;
  messages: number;
  sessions: number;
  idle: number;
  settle: number;
  timeout: number;
  hold: number;
  keep: boolean;
  json: string | undefined;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      mta: { type: 'string', default: 'postactor,postfix' }, runs: { type: 'string', default: '1' },
      messages: { type: 'string', default: '20000' }, sessions: { type: 'string', default: '20' },
      idle: { type: 'string', default: '60' }, settle: { type: 'string', default: '115' },
      timeout: { type: 'string', default: '900' }, hold: { type: 'string', default: '0' }, keep: { type: 'boolean', default: false }, json: { type: 'string' },
    },
  });
  const num = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: not a count: ${v}`);
    return n;
  };
  const mtas = values.mta.split(',').map((s) => s.trim());
  for (const m of mtas) if (m !== 'postactor' && m !== 'postfix') throw new Error(`--mta: postactor or postfix, not ${m}`);
  return {
    mtas: mtas as Options['mtas'], runs: Math.max(1, num('runs', values.runs)), messages: num('messages', values.messages),
    sessions: Math.max(1, num('sessions', values.sessions)), idle: num('idle', values.idle), settle: num('settle', values.settle),
    timeout: Math.max(1, num('timeout', values.timeout)), hold: num('hold', values.hold), keep: values.keep, json: values.json,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  let o: Options;
  try {
    o = options();
  } catch (err) {
    process.stderr.write(`bench/memory: ${(err as Error).message}\n`);
    process.exit(64);
  }
  if (o.mtas.includes('postfix') && (await postfixVersion()) === null) {
    console.log('postfix not installed: skipping the peer');
    o.mtas = o.mtas.filter((m) => m !== 'postfix');
  }
  console.log(`bench/memory: ${o.messages} messages of 1 KiB to a dead next hop, ${o.sessions} sessions; idle ${o.idle} s; ${o.runs} run(s) of ${o.mtas.join(', ')}`);
  const all: Record<string, Sample[][]> = {};
  for (let r = 0; r < o.runs; r++) {
    for (const name of o.mtas) {
      console.log(`[${name} ${r + 1}/${o.runs}]`);
      const deadPort = await freePort(); // nobody listens there: connection refused, deferred
      const inst = name === 'postactor' ? await startPostactor(deadPort, o.keep) : await startPostfix(deadPort, o.keep);
      try {
        (all[name] ??= []).push(await measure(inst, o));
      } finally {
        await inst.stop();
      }
    }
  }
  console.log('\nmedians (MB)        RSS     anon    file     PSS   threads/procs');
  for (const [name, runs] of Object.entries(all)) {
    for (const point of ['start', 'idle', 'deferred', 'settled']) {
      const at = runs.map((s) => s.find((x) => x.point === point)!).filter(Boolean);
      const m = (f: (s: Sample) => number) => median(at.map(f)).toFixed(1).padStart(7);
      console.log(`${name.padEnd(9)} ${point.padEnd(8)} ${m((s) => s.rssMb)} ${m((s) => s.anonMb)} ${m((s) => s.fileMb)} ${m((s) => s.pssMb)}  ${median(at.map((s) => s.tasks))}`);
    }
  }
  if (o.json) {
    mkdirSync(path.dirname(o.json), { recursive: true });
    writeFileSync(o.json, JSON.stringify({ date: new Date().toISOString(), options: o, runs: all }, null, 2) + '\n');
    console.log(`wrote ${o.json}`);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench/memory: ${err.message}\n`);
  process.exit(1);
});
