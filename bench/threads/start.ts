/**
 * bench/threads — how long an actor thread takes to start, and where the time goes: Node's
 * bootstrap of the thread, loading the service's modules (compiling them, or taking V8's code
 * from Node's compile cache: src/runtime/compile-cache.ts), and Postactor's own set-up (the
 * configuration rebuilt from master's copy, the queue store opened, the service's setup with
 * its tables). A cold pool's first request waits for all of it (bench/delivery: delays= b).
 *
 * Each sample is a fresh worker thread running ./probe.ts with the workerData and V8 heap limits
 * master gives that service (the embedded default configuration, its queue in a temp dir), in
 * three cache modes, alternating sample by sample:
 *   off    no compile cache
 *   cold   an empty cache directory (the first start after an upgrade: compiles and writes)
 *   warm   a directory an earlier start filled (every later start)
 * Printed: medians of each step (ms) per service and mode, the whole start (`total`: from
 * `new Worker` to the end of set-up) and the thread's own CPU time for it (`cpu`, from
 * /proc/thread-self/schedstat: steadier than wall time on a shared machine). Run under the shared lock, with the
 * master's V8 flags for the same code paths:
 *
 *   flock /tmp/postactor-bench.lock node_modules/.bin/node --max-semi-space-size=1 --expose-gc \
 *     dist/bench/threads/start.js [--runs 5] [--services cleanup,local,qmgr]
 *     [--parallel N] [--json FILE]
 *
 * --parallel N starts N probes at once (a burst: threads starting beside each other on the same
 * cores, as under load); the figures are then per thread.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { benchArgs } from '../args.js';
import { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF } from '../../src/config/embedded.js';
import { buildConfig } from '../../src/config/load.js';
import { heapLimits } from '../../src/runtime/heap-limits.js';
import { QueueStore } from '../../src/queue/store.js';
import { planServices } from '../../actors/master/services.js';

const USAGE = 'usage: node dist/bench/threads/start.js [--runs N] [--services a,b] [--modes off,cold,warm] [--parallel N] [--json FILE]';
const args = benchArgs('bench/threads', USAGE, {
  runs: { type: 'string', default: '5' },
  services: { type: 'string', default: 'cleanup,trivial-rewrite,local,smtp,bounce,qmgr,pickup,smtpd' },
  modes: { type: 'string', default: 'off,cold,warm' },
  parallel: { type: 'string', default: '1' },
  json: { type: 'string' },
});
const runs = Number(args.runs);
const parallel = Number(args.parallel);
if (!(runs >= 1 && parallel >= 1 && parallel <= 16)) {
  process.stderr.write(`bench/threads: --runs ≥ 1, --parallel 1 to 16\n${USAGE}\n`);
  process.exit(2);
}
type Mode = 'off' | 'cold' | 'warm';
const modes = args.modes!.split(',') as Mode[];
for (const m of modes) if (!['off', 'cold', 'warm'].includes(m)) {
  process.stderr.write(`bench/threads: --modes: unknown mode "${m}"\n${USAGE}\n`);
  process.exit(2);
}

const root = mkdtempSync(path.join(tmpdir(), 'postactor-threads-'));
const queueDir = path.join(root, 'queue');
mkdirSync(queueDir, { mode: 0o700 });
const config = buildConfig(null, `${EMBEDDED_MAIN_CF}\nqueue_directory = ${queueDir}\nmail_spool_directory = ${root}/mail\nmaillog_file = ${root}/maillog\n`, EMBEDDED_MASTER_CF);
await QueueStore.open(queueDir).close();
const plan = planServices(config);
const wanted = args.services!.split(',');
const services = wanted.map((name) => {
  const s = plan.services.find((p) => p.line.command === name || p.service === name);
  if (!s) {
    process.stderr.write(`bench/threads: no service "${name}" in the embedded master.cf\n`);
    process.exit(2);
  }
  return s;
});

const PROBE = new URL('./probe.js', import.meta.url);
const STEPS = ['boot', 'import', 'config', 'store', 'setup', 'total', 'cpu'] as const;
type Sample = Record<(typeof STEPS)[number], number>;

function sample(s: (typeof services)[number], cacheDir: string | null): Promise<Sample> {
  const c = config.withOverrides({ service_name: s.service, ...s.line.overrides });
  const pool = s.kind === 'pool';
  const data = {
    service: s.service, ...(pool ? { thread: s.line.command } : {}), index: 0, config: c.toJSON(), instance: String(process.pid),
    probe: { file: s.file.href, cacheDir, pool, store: queueDir },
  };
  const spawned = performance.timeOrigin + performance.now();
  const worker = new Worker(PROBE, { workerData: data, resourceLimits: heapLimits(s.line.command) });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: { marks?: Record<string, number>; cpu?: number; error?: string }) => {
      void worker.terminate();
      if (!m.marks) return reject(new Error(`${s.service}: ${m.error}`));
      const k = m.marks;
      const end = k['setup'] ?? k['store']!;
      resolve({
        boot: k['script']! - spawned, import: k['import']! - k['cache']!, config: k['config']! - k['import']!,
        store: k['store']! - k['config']!, setup: k['setup'] !== undefined ? k['setup'] - k['store']! : 0, total: end - spawned,
        cpu: m.cpu ?? NaN,
      });
    });
    worker.once('error', reject);
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

// The warm cache: filled once by every service's start, as a server's first start does.
const warmDir = path.join(root, 'warm');
mkdirSync(warmDir, { mode: 0o700 });
for (const s of services) await sample(s, warmDir);

const results = new Map<string, Sample[]>();
const load = [loadavg()[0]!];
for (let r = 0; r < runs; r++) {
  for (const s of services) {
    for (const mode of modes) {
      const dirs = Array.from({ length: parallel }, (_, i) => {
        if (mode === 'off') return null;
        if (mode === 'warm') return warmDir;
        const d = path.join(root, `cold-${r}-${s.service}-${i}`);
        mkdirSync(d, { mode: 0o700 });
        return d;
      });
      const got = await Promise.all(dirs.map((d) => sample(s, d)));
      const key = `${s.service}\t${mode}`;
      results.set(key, [...(results.get(key) ?? []), ...got]);
    }
  }
  load.push(loadavg()[0]!);
}

const rows: Record<string, unknown>[] = [];
console.log(`thread start, ms (medians of ${runs} run(s) × ${parallel} thread(s) at once; ${availableParallelism()} CPUs; load average ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)})`);
console.log(`| service | cache | ${STEPS.join(' | ')} |`);
console.log(`|---|---|${STEPS.map(() => '---').join('|')}|`);
for (const [key, xs] of results) {
  const [service, mode] = key.split('\t');
  const m = Object.fromEntries(STEPS.map((k) => [k, median(xs.map((x) => x[k]))])) as Sample;
  rows.push({ service, mode, ...m, samples: xs.length });
  console.log(`| ${service} | ${mode} | ${STEPS.map((k) => m[k].toFixed(1)).join(' | ')} |`);
}
if (args.json) writeFileSync(args.json, `${JSON.stringify({ runs, parallel, load, rows }, null, 2)}\n`);
rmSync(root, { recursive: true, force: true });
