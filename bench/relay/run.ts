/**
 * bench/relay/run.ts — relay throughput, end to end: load generator → MTA on loopback → counting sink.
 *
 * The same command measures Postactor and Debian's Postfix side by side, alternating them run by
 * run (A B A B …) with a fresh sink and a fresh MTA instance every time, so that their ratio holds
 * even when the shared machine's speed drifts.
 *
 * Build, then run (as root, for the Postfix peer):
 *
 *   node_modules/.bin/tsc -p tsconfig.json
 *   node_modules/.bin/node dist/bench/relay/run.js --runs 3
 *   npm run bench:relay -- --runs 3                  # the same, through package.json
 *
 * Options (defaults in brackets; the defaults are the issue's workload, smtp-source-like):
 *   --mta postactor,postfix   MTAs to measure, in this order within each run [both]; "postscreen"
 *                             is Postactor with postscreen in front of smtpd (a cached client)
 *   --sessions N              concurrent client connections [20]
 *   --messages N              messages per run [10000]
 *   --size BYTES              body size [1024]
 *   --recipients N            recipients per message [1]
 *   --unique                  a distinct recipient address per message (smtp-source -N)
 *   --reuse                   many messages per connection (smtp-source -d); default: one each
 *   --runs N                  runs per MTA [3]
 *   --timeout S               bound on one run, sending and draining [300]
 *   --stall S                 stop draining when the sink saw nothing new for S seconds [60]
 *   --pause S                 quiet time between runs [2]
 *   --target HOST:PORT        measure an already-running MTA instead (its relayhost must be the
 *                             sink: give --sink-port); without --sink-port only acceptance is measured
 *   --target sink             the generator straight into the sink: the harness's own ceiling
 *                             (also as an MTA of the alternation: --mta postactor,sink)
 *   --sink-port N             port of the sink (default: any free port)
 *   --smtpd-threads N         Postactor master.cf maxproc for smtpd [2]
 *   --cleanup-threads N       … for cleanup [0]
 *   --smtp-threads N          … for smtp and relay [2]
 *   --postactor-entry FILE    Postactor entry point to run [dist/bin/postactor.js]
 *   --baseline-entry FILE     another Postactor build, measured as MTA "baseline" (--mta
 *                             postactor,baseline,postfix): before/after a change in the same run
 *   --keep                    keep the MTAs' temp directories (logs) after each run
 *   --metrics                 Postactor runs with metrics_listen on a loopback port, and the chart
 *                             gets its per-destination concurrency (off by default, as in main.cf:
 *                             the snapshots cost CPU, so figures without it measure the default)
 *   --tls                     STARTTLS on both legs (generator → MTA → sink), both MTAs at
 *                             smtpd/smtp_tls_security_level = may with one openssl certificate
 *   --tls-resume              --tls, and the generator resumes its last TLS session each time
 *   --tls-cache               --tls, and both MTAs' smtp clients keep TLS sessions
 *                             (smtp_tls_session_cache_database), so their handshakes with the sink resume
 *   --tls-cert rsa|ecdsa      the key of the run's certificate: RSA-2048 or P-256 [rsa]
 *   --milter opendkim         both MTAs sign every message through one OpenDKIM (Debian's) started
 *                             for the whole benchmark: smtpd_milters = inet:127.0.0.1:PORT
 *   --generator node|smtp-source  the load generator: the project's (./generator.ts) or Postfix's
 *                             smtp-source (/usr/sbin/smtp-source, C: cheaper, no latency figures) [node]
 *   --rate N                  open loop (Node generator): a new connection every 1/N s whatever the
 *                             MTA does, at most --sessions × 50 open; reports end of DATA → 250 [0: closed loop]
 *   --warmup N                before each run, N messages through the freshly started MTA (same
 *                             generator, same rate), delivered and then not counted: the figures
 *                             are then a warm server's, not a start's [0: every run starts cold]
 *   --json FILE               where to write the results [bench/results/relay-<timestamp>.json]
 *
 * Figures: accepted/s = accepted messages ÷ (first connect → last 250 after DATA);
 * delivered/s = messages that reached the sink ÷ (first connect → the sink counted the last one);
 * latency = per message, connect → 250 after DATA (p50/p99, ms); cpu ms/msg = the MTA's CPU time
 * (all threads or processes, from /proc) over the run ÷ delivered messages, also per thread group
 * (smtpd, cleanup, qmgr, smtp, master, lmdb = Node's thread pool, v8 = V8's GC/compiler threads,
 * other, exited: ./cpu.ts); dot p50/p99 = end of DATA → 250 (the accept latency proper). With
 * the Node generator each timeline sample (every 0.5 s, in the JSON) also has the dot p99 of the
 * replies since the one before (dotP99Ms), and a --rate run prints them in a line: where in the
 * run the slow replies were (a cold start's are in its first seconds).
 */
import { Timeline, type Sample } from '../chart/timeline.js';
import { relayChart } from './chart.js';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LoadGenerator, nowAbs, parseHostPort, type GeneratorResult } from './generator.js';
import { freePort, REPO_ROOT, type MtaHandle } from './mta.js';
import { startPostactor } from './postactor.js';
import { PostfixNotInstalled, postfixVersion, startPostfix } from './postfix.js';
import { SinkThread, type SinkSnapshot } from './sink.js';
import { benchCertificate, tlsMainCf, type BenchTls } from './tls.js';
import { CPU_GROUPS, CpuSampler } from './cpu.js';
import { HarnessCpu, ratioBound } from './harness-cpu.js';
import { SmtpSource, smtpSourceInstalled, SMTP_SOURCE } from './smtp-source.js';
import { startOpenDkim } from './milter.js';

interface Config {
  mtas: string[];
  sessions: number;
  messages: number;
  size: number;
  recipients: number;
  unique: boolean;
  reuse: boolean;
  runs: number;
  timeoutMs: number;
  stallMs: number;
  pauseMs: number;
  target: string | null;
  sinkPort: number;
  smtpdThreads: number;
  cleanupThreads: number;
  smtpThreads: number;
  postactorEntry: string | undefined;
  baselineEntry: string | undefined;
  keep: boolean;
  /** --metrics: Postactor runs with metrics_listen (the chart's concurrency panel); off by default, as in main.cf. */
  metrics: boolean;
  json: string;
  /** --tls: STARTTLS on both legs (generator → MTA, MTA → sink); the key and certificate used. */
  tls: BenchTls | null;
  /** --tls-resume: the generator resumes TLS sessions (tickets) instead of full handshakes. */
  tlsResume: boolean;
  /** --tls-cache: both MTAs' smtp clients keep sessions (smtp_tls_session_cache_database). */
  tlsCache: boolean;
  /** --milter opendkim: main.cf lines that put the shared OpenDKIM in front (set once it runs). */
  milter: 'opendkim' | null;
  milterMainCf: string;
  /** --milter: the OpenDKIM process, whose CPU is reported beside the MTA's. */
  milterPid: number | null;
  generator: 'node' | 'smtp-source';
  /** Open loop: messages/s offered; 0: closed loop. */
  rate: number;
  /** Messages sent through each freshly started MTA before a run is measured; 0: none. */
  warmup: number;
}

export interface RunRecord {
  mta: string;
  run: number;
  version: string;
  startedAt: string;
  loadavg: number[];
  error: string | null;
  generator: GeneratorResult | null;
  sink: SinkSnapshot | null;
  /** Messages delivered to the sink (recipients counted ÷ recipients per message). */
  delivered: number | null;
  /** First connect → the sink counted the last message. */
  endToEndMs: number | null;
  deliveredPerSec: number | null;
  /** The MTA's CPU time (all its threads or processes) per delivered message, ms. */
  cpuMsPerMessage: number | null;
  /** The same per thread group (./cpu.ts). */
  cpuGroupsMsPerMessage: Record<string, number> | null;
  /** The benchmark process's own CPU (generator, sink) per delivered message, ms (./harness-cpu.ts). */
  harnessCpuMsPerMessage: number | null;
  /** --milter: the milter's CPU per delivered message, ms. */
  milterCpuMsPerMessage: number | null;
  /** --tls: the generator's handshakes that resumed a session. */
  tlsResumed: number | null;
  /** Every accepted message reached the sink. */
  complete: boolean;
  /** --warmup: what went through before the run was measured (not in any other figure). */
  warmup: WarmupRecord | null;
  /** Accepted and delivered over time (and Postactor's per-destination concurrency), for the chart (./chart.ts). */
  timeline: Sample[];
  timedOut: boolean;
  interrupted: boolean;
}

export interface WarmupRecord {
  messages: number;
  accepted: number;
  failed: number;
  /** null: no sink (--target without --sink-port). */
  delivered: number | null;
  seconds: number;
  dotP99Ms: number | null;
}

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    options: {
      mta: { type: 'string', default: 'postactor,postfix' },
      sessions: { type: 'string', default: '20' },
      messages: { type: 'string', default: '10000' },
      size: { type: 'string', default: '1024' },
      recipients: { type: 'string', default: '1' },
      unique: { type: 'boolean', default: false },
      reuse: { type: 'boolean', default: false },
      runs: { type: 'string', default: '3' },
      timeout: { type: 'string', default: '300' },
      stall: { type: 'string', default: '60' },
      pause: { type: 'string', default: '2' },
      target: { type: 'string' },
      'sink-port': { type: 'string', default: '0' },
      'smtpd-threads': { type: 'string', default: '2' },
      'cleanup-threads': { type: 'string', default: '0' },
      'smtp-threads': { type: 'string', default: '2' },
      'postactor-entry': { type: 'string' },
      'baseline-entry': { type: 'string' },
      keep: { type: 'boolean', default: false },
      metrics: { type: 'boolean', default: false },
      tls: { type: 'boolean', default: false },
      'tls-resume': { type: 'boolean', default: false },
      'tls-cache': { type: 'boolean', default: false },
      'tls-cert': { type: 'string', default: 'rsa' },
      milter: { type: 'string' },
      generator: { type: 'string', default: 'node' },
      rate: { type: 'string', default: '0' },
      warmup: { type: 'string', default: '0' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log('usage: node dist/bench/relay/run.js [--mta postactor,postfix] [--sessions 20] [--messages 10000] [--size 1024]\n' +
      '  [--recipients 1] [--unique] [--reuse] [--runs 3] [--timeout 300] [--target host:port|sink] [--sink-port N]\n' +
      '  [--smtpd-threads 2] [--cleanup-threads 0] [--smtp-threads 2] [--postactor-entry FILE] [--keep] [--metrics]\n' +
      '  [--tls | --tls-resume | --tls-cache] [--tls-cert rsa|ecdsa] [--milter opendkim] [--json out.json]\n' +
      '  [--generator node|smtp-source] [--rate N] [--warmup N] [--mta …,baseline --baseline-entry FILE]\n' +
      'See the header of bench/relay/run.ts and bench/README.md.');
    process.exit(0);
  }
  const int = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}: ${v}`);
    return n;
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const mtas = values.mta.split(',').map((s) => s.trim()).filter(Boolean);
  for (const m of mtas) if (m !== 'postactor' && m !== 'postfix' && m !== 'postscreen' && m !== 'baseline' && m !== 'sink') throw new Error(`--mta: unknown MTA ${m}`);
  if (mtas.includes('baseline') && !values['baseline-entry']) throw new Error('--mta baseline needs --baseline-entry FILE');
  if (values['tls-cert'] !== 'rsa' && values['tls-cert'] !== 'ecdsa') throw new Error(`--tls-cert must be rsa or ecdsa: ${values['tls-cert']}`);
  return {
    mtas,
    sessions: int('sessions', values.sessions, 1),
    messages: int('messages', values.messages, 1),
    size: int('size', values.size, 0),
    recipients: int('recipients', values.recipients, 1),
    unique: values.unique,
    reuse: values.reuse,
    runs: int('runs', values.runs, 1),
    timeoutMs: int('timeout', values.timeout, 1) * 1000,
    stallMs: int('stall', values.stall, 1) * 1000,
    pauseMs: Number(values.pause) * 1000,
    target: values.target ?? null,
    sinkPort: int('sink-port', values['sink-port'], 0),
    smtpdThreads: int('smtpd-threads', values['smtpd-threads'], 1),
    cleanupThreads: int('cleanup-threads', values['cleanup-threads'], 0),
    smtpThreads: int('smtp-threads', values['smtp-threads'], 1),
    postactorEntry: values['postactor-entry'] ? path.resolve(values['postactor-entry']) : undefined,
    baselineEntry: values['baseline-entry'] ? path.resolve(values['baseline-entry']) : undefined,
    keep: values.keep,
    metrics: values.metrics,
    json: values.json ?? path.join(REPO_ROOT, 'bench/results', `relay-${stamp}.json`),
    tls: values.tls || values['tls-resume'] || values['tls-cache'] ? benchCertificate(values['tls-cert'] === 'ecdsa' ? 'ecdsa' : 'rsa') : null,
    tlsResume: values['tls-resume'],
    tlsCache: values['tls-cache'],
    milter: values.milter === undefined ? null : values.milter === 'opendkim' ? 'opendkim' : (() => { throw new Error(`--milter: only "opendkim" is known: ${values.milter}`); })(),
    milterMainCf: '',
    milterPid: null,
    generator: values.generator === 'node' || values.generator === 'smtp-source' ? values.generator : (() => { throw new Error(`--generator: node or smtp-source: ${values.generator}`); })(),
    rate: int('rate', values.rate, 0),
    warmup: int('warmup', values.warmup, 0),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Ctrl-C: stop sending, stop draining, stop the MTA, write what we have. A second one exits at once.
let interrupted = false;
let currentGenerator: LoadGenerator | SmtpSource | null = null;
let currentMta: MtaHandle | null = null;
process.on('SIGINT', () => {
  if (interrupted) {
    void currentMta?.stop().finally(() => process.exit(130));
    setTimeout(() => process.exit(130), 15_000).unref();
    return;
  }
  interrupted = true;
  process.stderr.write('\ninterrupted: stopping the current run\n');
  currentGenerator?.stop();
});

const isTty = process.stderr.isTTY === true;
let lastProgressLine = 0;
function progress(text: string): void {
  if (isTty) {
    process.stderr.write(`\r${text.padEnd(110).slice(0, Math.max(110, text.length))}`);
  } else if (Date.now() - lastProgressLine >= 10_000) {
    lastProgressLine = Date.now();
    process.stderr.write(`${text}\n`);
  }
}
function progressDone(finalText?: string): void {
  if (finalText) process.stderr.write(isTty ? `\r${finalText.padEnd(110)}\n` : `${finalText}\n`);
  else if (isTty) process.stderr.write('\n');
  lastProgressLine = 0;
}

/** The Postactor under test's /metrics page (its metrics_listen), sampled for the chart. */
let metricsUrl: string | null = null;
/** The main.cf lines both MTAs get: TLS (--tls) and the milter (--milter). */
function extraMainCf(cfg: Config): string {
  return (cfg.tls ? tlsMainCf(cfg.tls, cfg.tlsCache) : '') + cfg.milterMainCf;
}

async function startMta(name: string, cfg: Config, sinkPort: number): Promise<MtaHandle> {
  metricsUrl = null;
  if (name === 'postactor' || name === 'postscreen' || name === 'baseline') {
    // metrics_listen costs every thread a registry snapshot a second and the master a scrape per
    // chart sample: measured only when asked (--metrics), as main.cf's default has it off.
    const metricsPort = cfg.metrics ? await freePort() : 0;
    if (cfg.metrics) metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    return startPostactor({
      ...(name === 'postscreen' ? { postscreen: true } : {}),
      sinkPort,
      smtpdThreads: cfg.smtpdThreads,
      cleanupThreads: cfg.cleanupThreads,
      smtpThreads: cfg.smtpThreads,
      keep: cfg.keep,
      ...(name === 'baseline' ? { entry: cfg.baselineEntry! } : cfg.postactorEntry ? { entry: cfg.postactorEntry } : {}),
      extraMainCf: extraMainCf(cfg) + (cfg.metrics ? `\nmetrics_listen = 127.0.0.1:${metricsPort}\n` : ''),
    });
  }
  if (name === 'postfix') return startPostfix({ sinkPort, keep: cfg.keep, extraMainCf: extraMainCf(cfg) });
  if (name === 'sink') {
    return { name: 'sink', host: '127.0.0.1', port: sinkPort, dir: '', version: 'SmtpSink (no MTA)', stop: async () => {} };
  }
  const { host, port } = parseHostPort(name);
  return { name: `target ${host}:${port}`, host, port, dir: '', version: 'external', stop: async () => {} };
}

/**
 * Waits until the sink has counted `wanted` recipients, the run's deadline, a stall (nothing new
 * for stallMs) or Ctrl-C; the recipients counted by then.
 */
async function drain(sink: SinkThread, wanted: number, deadline: number, stallMs: number, tick?: () => void): Promise<number> {
  let last = sink.snapshot().recipients;
  let lastChange = Date.now();
  while (!interrupted && last < wanted && Date.now() < deadline && Date.now() - lastChange < stallMs) {
    await sleep(20);
    const now = sink.snapshot().recipients;
    if (now !== last) lastChange = Date.now();
    last = now;
    tick?.();
  }
  return last;
}

/**
 * --warmup N: N messages through the same MTA just started, by the same generator at the same
 * rate, then a wait until the sink has them all; nothing of it is counted (the sink counts from
 * zero again, the CPU and latency figures start after it). What it takes away is the start of a
 * fresh server: thread starts and, for Postactor, V8 compiling the hot paths, which at 500/s
 * offered puts most of a cold run's slow replies into its first two seconds.
 */
async function warmUp(g: LoadGenerator | SmtpSource, sink: SinkThread | null, cfg: Config, deadline: number, label: string): Promise<WarmupRecord> {
  const t0 = Date.now();
  currentGenerator = g;
  let r: GeneratorResult;
  try {
    r = await g.run();
  } finally {
    currentGenerator = null;
  }
  let delivered: number | null = null;
  if (sink) {
    delivered = Math.floor((await drain(sink, r.accepted * cfg.recipients, deadline, cfg.stallMs)) / cfg.recipients);
    await sink.reset();
  }
  const w: WarmupRecord = { messages: cfg.warmup, accepted: r.accepted, failed: r.failed, delivered, seconds: (Date.now() - t0) / 1000, dotP99Ms: r.dotLatency.count ? r.dotLatency.p99 : null };
  progressDone(`${label} warm-up (not counted): ${w.accepted} accepted, ${w.failed} failed${delivered === null ? '' : `, ${delivered} delivered`} in ${w.seconds.toFixed(1)} s` +
    (w.dotP99Ms === null ? '' : `; end of DATA → 250 p99 ${fmt(w.dotP99Ms, 2)} ms`));
  return w;
}

async function measure(mtaName: string, runNo: number, cfg: Config, withSink: boolean): Promise<RunRecord> {
  const rec: RunRecord = {
    mta: mtaName, run: runNo, version: '', startedAt: new Date().toISOString(), loadavg: os.loadavg(),
    error: null, generator: null, sink: null, delivered: null, endToEndMs: null, deliveredPerSec: null, cpuMsPerMessage: null, cpuGroupsMsPerMessage: null, harnessCpuMsPerMessage: null, milterCpuMsPerMessage: null, tlsResumed: null,
    complete: false, warmup: null, timedOut: false, interrupted: false, timeline: [],
  };
  const deadline = Date.now() + cfg.timeoutMs;
  let sink: SinkThread | null = null;
  let mta: MtaHandle | null = null;
  let ticker: NodeJS.Timeout | undefined;
  let timeline: Timeline | undefined;
  const label = `[${mtaName} ${runNo}/${cfg.runs}]`;
  const wanted = (accepted: number): number => accepted * cfg.recipients;
  try {
    if (withSink) sink = await SinkThread.start(cfg.sinkPort, cfg.tls ?? undefined, cfg.milter !== null, cfg.tlsCache);
    mta = await startMta(mtaName, cfg, sink?.port ?? cfg.sinkPort);
    currentMta = mta;
    rec.version = mta.version;
    if (interrupted) throw new Error('interrupted');
    const generator = (messages: number): LoadGenerator | SmtpSource => {
      const common = {
        host: mta!.host,
        port: mta!.port,
        sessions: cfg.sessions,
        messages,
        size: cfg.size,
        recipients: cfg.recipients,
        unique: cfg.unique,
        reuse: cfg.reuse,
        timeLimitMs: Math.max(1000, deadline - Date.now()),
      };
      return cfg.generator === 'smtp-source'
        ? new SmtpSource(common)
        : new LoadGenerator({ ...common, rate: cfg.rate, tls: cfg.tls !== null, tlsResume: cfg.tlsResume });
    };
    if (cfg.warmup > 0) rec.warmup = await warmUp(generator(cfg.warmup), sink, cfg, deadline, label);
    if (interrupted) throw new Error('interrupted');
    const g = generator(cfg.messages);
    currentGenerator = g;
    const cpu = new CpuSampler(mta);
    const outside = new HarnessCpu(cfg.milterPid);
    const t0 = nowAbs();
    const line = (phase: string): string => {
      const s = sink?.snapshot();
      const secs = (nowAbs() - t0) / 1000;
      const dlv = s ? Math.floor(s.recipients / cfg.recipients) : 0;
      return `${label} ${phase} ${secs.toFixed(1)} s: accepted ${g.accepted} (${(g.accepted / secs || 0).toFixed(0)}/s) failed ${g.failed}` +
        (s ? ` delivered ${dlv} (${(dlv / secs || 0).toFixed(0)}/s)` : '');
    };
    ticker = setInterval(() => progress(line('sending')), 500);
    timeline = new Timeline(() => ({
      accepted: g.accepted,
      delivered: sink ? Math.floor(sink.snapshot().recipients / cfg.recipients) : g.accepted,
      ...(g instanceof LoadGenerator ? { dotP99Ms: g.takeDotWindow() } : {}),
    }), metricsUrl, 500);
    let r: GeneratorResult;
    try {
      r = await g.run();
    } finally {
      currentGenerator = null;
    }
    rec.generator = r;
    if (cfg.tls) rec.tlsResumed = g.tlsResumed;
    rec.timedOut = r.timedOut;
    if (sink) {
      const last = await drain(sink, wanted(r.accepted), deadline, cfg.stallMs, () => progress(line('draining')));
      if (last < wanted(r.accepted) && Date.now() >= deadline) rec.timedOut = true;
    }
    clearInterval(ticker);
    ticker = undefined;
    rec.timeline = timeline.stop();
    rec.interrupted = interrupted;
    progressDone(line(interrupted ? 'interrupted' : rec.timedOut ? 'timed out' : 'done'));
    // Open loop: where in the run the slow replies were (a cold start shows in its first seconds).
    if (cfg.rate > 0) {
      const windows = rec.timeline.slice(1).map((x) => (x.dotP99Ms === undefined || x.dotP99Ms === null ? '-' : x.dotP99Ms.toFixed(1)));
      if (windows.length > 0) progressDone(`${label} end of DATA → 250 p99 ms per 0.5 s: ${windows.join(' ')}`);
    }
    const groups = cpu.stop();
    const spent = outside.stop();
    if (sink) {
      const s = sink.snapshot();
      rec.sink = s;
      rec.delivered = Math.floor(s.recipients / cfg.recipients);
      rec.complete = s.recipients >= wanted(r.accepted);
      if (s.lastMessageAt > 0) {
        rec.endToEndMs = s.lastMessageAt - r.firstConnectAt;
        rec.deliveredPerSec = rec.endToEndMs > 0 ? (rec.delivered * 1000) / rec.endToEndMs : null;
      }
      if (groups && rec.delivered > 0) {
        const per = (sec: number): number => (sec * 1000) / rec.delivered!;
        rec.cpuMsPerMessage = per(groups.total!);
        rec.cpuGroupsMsPerMessage = Object.fromEntries(Object.entries(groups).map(([k, v]) => [k, per(v)]));
      }
      if (rec.delivered > 0) {
        if (spent.harness !== null) rec.harnessCpuMsPerMessage = (spent.harness * 1000) / rec.delivered;
        if (spent.milter !== null) rec.milterCpuMsPerMessage = (spent.milter * 1000) / rec.delivered;
      }
    }
  } catch (err) {
    progressDone();
    rec.error = err instanceof Error ? err.message : String(err);
    if (err instanceof PostfixNotInstalled) throw err;
    console.error(`${label} failed: ${rec.error}`);
  } finally {
    clearInterval(ticker);
    timeline?.stop();
    currentMta = null;
    if (mta) await mta.stop().catch((e: Error) => console.error(`${label} stopping ${mtaName}: ${e.message}`));
    if (sink) await sink.close().catch(() => null);
  }
  return rec;
}

function median(xs: number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

interface Summary {
  mta: string;
  version: string;
  runs: number;
  acceptedPerSec: number | null;
  deliveredPerSec: number | null;
  endToEndMs: number | null;
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  cpuMsPerMessage: number | null;
  /** Median per thread group (ms per message). */
  cpuGroupsMsPerMessage: Record<string, number | null>;
  /** Median CPU of the benchmark process (generator, sink) and of the milter, ms per message. */
  harnessCpuMsPerMessage: number | null;
  milterCpuMsPerMessage: number | null;
  dotP50Ms: number | null;
  dotP99Ms: number | null;
  failed: number;
  incompleteRuns: number;
}

function summarizeMta(mta: string, recs: RunRecord[]): Summary {
  const ok = recs.filter((r) => r.generator !== null);
  return {
    mta,
    version: recs.find((r) => r.version)?.version ?? '',
    runs: ok.length,
    acceptedPerSec: median(ok.map((r) => r.generator!.acceptedPerSec)),
    deliveredPerSec: median(ok.flatMap((r) => (r.deliveredPerSec === null ? [] : [r.deliveredPerSec]))),
    endToEndMs: median(ok.flatMap((r) => (r.endToEndMs === null ? [] : [r.endToEndMs]))),
    latencyP50Ms: median(ok.flatMap((r) => (r.generator!.latency.count ? [r.generator!.latency.p50] : []))),
    latencyP99Ms: median(ok.flatMap((r) => (r.generator!.latency.count ? [r.generator!.latency.p99] : []))),
    cpuMsPerMessage: median(ok.flatMap((r) => (r.cpuMsPerMessage === null ? [] : [r.cpuMsPerMessage]))),
    cpuGroupsMsPerMessage: Object.fromEntries(['total', ...CPU_GROUPS].map((k) => [k, median(ok.flatMap((r) => (r.cpuGroupsMsPerMessage?.[k] === undefined ? [] : [r.cpuGroupsMsPerMessage[k]!])))])),
    harnessCpuMsPerMessage: median(ok.flatMap((r) => (r.harnessCpuMsPerMessage === null ? [] : [r.harnessCpuMsPerMessage]))),
    milterCpuMsPerMessage: median(ok.flatMap((r) => (r.milterCpuMsPerMessage === null ? [] : [r.milterCpuMsPerMessage]))),
    dotP50Ms: median(ok.flatMap((r) => (r.generator!.dotLatency.count ? [r.generator!.dotLatency.p50] : []))),
    dotP99Ms: median(ok.flatMap((r) => (r.generator!.dotLatency.count ? [r.generator!.dotLatency.p99] : []))),
    failed: ok.reduce((a, r) => a + r.generator!.failed + r.generator!.unfinished, 0),
    incompleteRuns: recs.filter((r) => !r.complete || r.interrupted).length,
  };
}

function fmt(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined ? '-' : v.toFixed(digits);
}

function printTable(mta: string, recs: RunRecord[], sum: Summary, cfg: Config): void {
  const head = ['run', 'accepted', 'failed', 'accepted/s', 'delivered', 'delivered/s', 'e2e s', 'p50 ms', 'p99 ms', 'dot p50', 'dot p99', 'cpu ms/msg', 'note'];
  const rows: string[][] = recs.map((r) => {
    const g = r.generator;
    const note = r.error
      ? `error: ${r.error.split('\n')[0]!.slice(0, 60)}`
      : r.interrupted ? 'interrupted' : !r.complete ? (r.timedOut ? 'timed out' : 'incomplete')
      : r.tlsResumed !== null ? `TLS, ${r.tlsResumed} resumed${cfg.tlsCache && r.sink ? `, ${r.sink.resumed} resumed at the sink` : ''}` : cfg.milter && r.sink ? `${r.sink.signed} signed` : '';
    return [
      String(r.run),
      g ? String(g.accepted) : '-',
      g ? String(g.failed + g.unfinished) : '-',
      fmt(g?.acceptedPerSec),
      r.delivered === null ? '-' : String(r.delivered),
      fmt(r.deliveredPerSec),
      fmt(r.endToEndMs === null ? null : r.endToEndMs / 1000, 2),
      g?.latency.count ? fmt(g.latency.p50, 2) : '-',
      g?.latency.count ? fmt(g.latency.p99, 2) : '-',
      g?.dotLatency.count ? fmt(g.dotLatency.p50, 2) : '-',
      g?.dotLatency.count ? fmt(g.dotLatency.p99, 2) : '-',
      fmt(r.cpuMsPerMessage, 2),
      note,
    ];
  });
  rows.push([
    'median', '', String(sum.failed), fmt(sum.acceptedPerSec), '', fmt(sum.deliveredPerSec),
    fmt(sum.endToEndMs === null ? null : sum.endToEndMs / 1000, 2), fmt(sum.latencyP50Ms, 2), fmt(sum.latencyP99Ms, 2),
    fmt(sum.dotP50Ms, 2), fmt(sum.dotP99Ms, 2),
    fmt(sum.cpuMsPerMessage, 2),
    sum.incompleteRuns ? `${sum.incompleteRuns} incomplete run(s)` : '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmtRow = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padStart(widths[i]!))).join('  ');
  console.log(`\n${mta} (${sum.version}): ${cfg.sessions} sessions, ${cfg.messages} × ${cfg.size} B, ${cfg.recipients} rcpt, ` +
    `${cfg.reuse ? 'connections reused' : 'a new connection per message'}` +
    `${cfg.generator === 'smtp-source' ? ', generator smtp-source' : ''}${cfg.rate ? `, open loop at ${cfg.rate}/s offered` : ''}` +
    `${cfg.warmup ? `, measured after a warm-up of ${cfg.warmup} messages` : ', from a cold start'}`);
  console.log(fmtRow(head));
  for (const r of rows) console.log(fmtRow(r));
  // CPU per message by thread group (./cpu.ts), with each group's share of the total.
  const groups = ['total', ...CPU_GROUPS];
  const gRows = recs.filter((r) => r.cpuGroupsMsPerMessage).map((r) => [String(r.run), ...groups.map((k) => fmt(r.cpuGroupsMsPerMessage![k] ?? 0, 3))]);
  if (gRows.length) {
    const total = sum.cpuGroupsMsPerMessage.total ?? null;
    gRows.push(['median', ...groups.map((k) => fmt(sum.cpuGroupsMsPerMessage[k] ?? null, 3))]);
    gRows.push(['share', ...groups.map((k) => (total && sum.cpuGroupsMsPerMessage[k] !== null ? `${((sum.cpuGroupsMsPerMessage[k]! / total) * 100).toFixed(0)}%` : '-'))]);
    const gHead = ['cpu ms/msg', ...groups];
    const w = gHead.map((h, i) => Math.max(h.length, ...gRows.map((r) => r[i]!.length)));
    const line = (r: string[]): string => r.map((c, i) => c.padStart(w[i]!)).join('  ');
    console.log(line(gHead));
    for (const r of gRows) console.log(line(r));
  }
  if (sum.harnessCpuMsPerMessage !== null) {
    console.log(`outside the MTA (medians): benchmark process (generator, sink) ${fmt(sum.harnessCpuMsPerMessage, 2)} ms/msg` +
      (sum.milterCpuMsPerMessage !== null ? `, ${cfg.milter} ${fmt(sum.milterCpuMsPerMessage, 2)} ms/msg` : ''));
  }
  for (const r of recs) {
    for (const e of r.generator?.errors ?? []) console.log(`  run ${r.run} error: ${e}`);
  }
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  let mtas = cfg.mtas;
  let withSink = true;
  if (cfg.target === 'sink') {
    mtas = ['sink'];
  } else if (cfg.target) {
    parseHostPort(cfg.target);
    mtas = [cfg.target];
    withSink = cfg.sinkPort > 0;
    if (!withSink) console.error('--target without --sink-port: measuring acceptance only (nothing counts deliveries)');
  }
  if (mtas.includes('postfix') && (await postfixVersion()) === null) {
    console.log('postfix not installed: skipping the peer');
    mtas = mtas.filter((m) => m !== 'postfix');
  }
  if (mtas.length === 0) throw new Error('nothing to measure');
  if (cfg.generator === 'smtp-source') {
    if (!smtpSourceInstalled()) throw new Error(`--generator smtp-source: ${SMTP_SOURCE} not found (Debian's postfix package)`);
    if (cfg.tls || cfg.rate) throw new Error('--generator smtp-source: no --tls, --tls-resume or --rate (the Node generator has them)');
  }
  console.log(`relay benchmark: ${mtas.join(' vs ')}; ${cfg.runs} run(s) each, alternating; ` +
    `generator ${cfg.generator}${cfg.rate ? `, open loop ${cfg.rate}/s` : ''}${cfg.warmup ? `, warm-up ${cfg.warmup}` : ''}; ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; node ${process.version}`);

  // --milter opendkim: one OpenDKIM for every run of both MTAs (the generator's From: domain).
  const dkim = cfg.milter === 'opendkim' ? await startOpenDkim('example.com') : null;
  if (dkim) {
    cfg.milterMainCf = `smtpd_milters = inet:127.0.0.1:${dkim.port}\nmilter_default_action = tempfail\n`;
    cfg.milterPid = dkim.child.pid ?? null;
    process.on('exit', () => dkim.stop());
  }
  const records: RunRecord[] = [];
  outer: for (let run = 1; run <= cfg.runs; run++) {
    for (const mta of [...mtas]) {
      if (interrupted) break outer;
      if (records.length > 0 && cfg.pauseMs > 0) await sleep(cfg.pauseMs);
      try {
        records.push(await measure(mta, run, cfg, withSink));
      } catch (err) {
        if (!(err instanceof PostfixNotInstalled)) throw err;
        console.log('postfix not installed: skipping the peer');
        mtas = mtas.filter((m) => m !== 'postfix');
      }
    }
  }

  const summaries: Summary[] = [];
  for (const mta of new Set(records.map((r) => r.mta))) {
    const recs = records.filter((r) => r.mta === mta);
    const sum = summarizeMta(mta, recs);
    summaries.push(sum);
    printTable(mta, recs, sum, cfg);
  }
  const pa = summaries.find((s) => s.mta === 'postactor');
  const pf = summaries.find((s) => s.mta === 'postfix');
  let ratio: { acceptedPerSec: number | null; deliveredPerSec: number | null; cpuMsPerMessage: number | null } | null = null;
  if (pa && pf) {
    const div = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b > 0 ? a / b : null);
    ratio = {
      acceptedPerSec: div(pa.acceptedPerSec, pf.acceptedPerSec),
      deliveredPerSec: div(pa.deliveredPerSec, pf.deliveredPerSec),
      cpuMsPerMessage: div(pa.cpuMsPerMessage, pf.cpuMsPerMessage),
    };
    console.log(`\nPostactor/Postfix (medians): accepted/s ×${fmt(ratio.acceptedPerSec, 2)}, delivered/s ×${fmt(ratio.deliveredPerSec, 2)}, ` +
      `CPU per message ×${fmt(ratio.cpuMsPerMessage, 2)}${cfg.tls ? ' (TLS on both legs)' : ''}${cfg.milter ? ` (every message through ${cfg.milter})` : ''}`);
  }
  // What the machine leaves: the harness and the milter share its cores with the MTA.
  let bound: number | null = null;
  if (pa && pf && pf.cpuMsPerMessage !== null) {
    const all = records.filter((r) => r.mta === 'postactor' || r.mta === 'postfix');
    const h = median(all.flatMap((r) => (r.harnessCpuMsPerMessage === null ? [] : [r.harnessCpuMsPerMessage])));
    const m = cfg.milter ? median(all.flatMap((r) => (r.milterCpuMsPerMessage === null ? [] : [r.milterCpuMsPerMessage]))) : 0;
    if (h !== null && m !== null) {
      bound = ratioBound(h, m, pf.cpuMsPerMessage);
      console.log(`Bound on this machine when CPU-bound (${os.cpus().length} CPUs): the harness costs ${fmt(h, 2)} ms${cfg.milter ? ` and ${cfg.milter} ${fmt(m, 2)} ms` : ''} of CPU ` +
        `per message, so even an MTA costing nothing would reach at most ×${fmt(bound, 2)} Postfix's delivered/s (Postfix: ${fmt(pf.cpuMsPerMessage, 2)} ms/msg)`);
    }
  }
  // Issue 17: Postactor against the harness's own ceiling (generator → sink, no MTA), same run.
  const sinkOnly = summaries.find((s) => s.mta === 'sink');
  let sinkShare: number | null = null;
  if (pa && sinkOnly) {
    sinkShare = pa.deliveredPerSec !== null && sinkOnly.deliveredPerSec ? (100 * pa.deliveredPerSec) / sinkOnly.deliveredPerSec : null;
    console.log(`Postactor/sink (medians): delivered/s ${fmt(sinkShare, 1)} % of the generator straight into the sink`);
  }
  const base = summaries.find((s) => s.mta === 'baseline');
  if (pa && base) {
    const div = (a: number | null, b: number | null): string => fmt(a !== null && b !== null && b > 0 ? a / b : null, 2);
    const g = (s: Summary, k: string): number | null => s.cpuGroupsMsPerMessage[k] ?? null;
    console.log(`Postactor/baseline (medians): delivered/s ×${div(pa.deliveredPerSec, base.deliveredPerSec)}, CPU per message ×${div(pa.cpuMsPerMessage, base.cpuMsPerMessage)}, ` +
      `smtpd CPU per message ×${div(g(pa, 'smtpd'), g(base, 'smtpd'))} (${fmt(g(base, 'smtpd'), 3)} → ${fmt(g(pa, 'smtpd'), 3)} ms)`);
  }

  dkim?.stop();
  const out = {
    benchmark: 'relay',
    startedAt: records[0]?.startedAt ?? new Date().toISOString(),
    finishedAt: new Date().toISOString(),
    commit: gitCommit(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', memBytes: os.totalmem(), node: process.version, platform: `${os.platform()} ${os.release()}` },
    config: { ...cfg, json: undefined },
    interrupted,
    summaries,
    ratio,
    ratioBound: bound,
    sinkSharePercent: sinkShare,
    runs: records,
  };
  mkdirSync(path.dirname(cfg.json), { recursive: true });
  writeFileSync(cfg.json, `${JSON.stringify(out, null, 2)}\n`);
  const svg = cfg.json.replace(/(\.json)?$/, '.svg');
  writeFileSync(svg, relayChart(records, cfg));
  console.log(`\nresults: ${cfg.json}\nchart: ${svg}`);
}

main().then(
  () => process.exit(interrupted ? 130 : 0),
  (err: unknown) => {
    progressDone();
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
