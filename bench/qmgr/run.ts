/**
 * bench/qmgr/run.ts — the qmgr scheduling benchmark (issue 4).
 *
 *   node_modules/.bin/node dist/bench/qmgr/run.js --scenario fair|dead|list|throttle|backlog
 *        [--scale small|full] [--json FILE] [--time-limit S] [--set 'name = value' …]
 *        [--list-small other|same] [--list-complete] [--throttle-delay MS] [--keep]
 *        [--scheduler qmgr|oqmgr|qmgr,oqmgr] [--runs N]
 *
 * Postactor runs as a child process on a throwaway config (bench/relay/postactor.ts) whose
 * main.cf routes every destination domain dNNN.test through `transport_maps = texthash:FILE`
 * to `smtp:[127.0.0.1]:PORT`, one SmtpSink per destination in a destination farm (farm.ts).
 * Mail is injected over SMTP by the relay benchmark's generator (connections reused).
 *
 * Scenarios:
 *   fair      D fast destinations × M messages → throughput, Jain fairness of completion times
 *   dead      all-fast run, then the same with 20% black-hole destinations → time until every
 *             healthy-destination message is delivered, ratio dead/fast (target ≤ 1.3)
 *   list      one R-recipient message to a slow destination, then N one-recipient messages
 *             (to another destination of the same transport, or with --list-small same to the
 *             same one) → p99 latency of the small ones (target ≤ 5 s); --list-complete also
 *             waits for the whole list (its last delivery: the list's slowdown)
 *   throttle  one destination answering 421 above 5 connections, MS (default 200) ms per
 *             delivery → share of deferred first delivery attempts in the maillog, as Postfix
 *             counted its 16.5% (SCHEDULER_README: a server with latency, first run only); the
 *             share over all attempts (retries included) is reported too. --throttle-delay 0:
 *             a sink as fast as its 421s
 *   backlog   B messages in deferred, not due → relay throughput of new mail as a ratio to an
 *             empty queue (target ≥ 0.9), RSS of the process, restart time
 *
 * Every wait is bounded by --time-limit (per phase); figures of a phase that ran out of time
 * are reported as incomplete, never as a success.
 *
 * --scheduler picks the queue manager by its master.cf command: qmgr (nqmgr, the default) or
 * oqmgr (Postfix's old scheduler: destinations round-robin, FIFO, no preemption) as the
 * baseline. With both (qmgr,oqmgr) the scenario runs --runs times for each, alternating (A B A B
 * …), and the scenario's headline figures are compared as medians and their ratio qmgr ÷ oqmgr.
 */
import { Timeline, type Sample } from '../chart/timeline.js';
import { percentileCurve, rate, renderSvg, type Series } from '../chart/svg.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LoadGenerator, nowAbs, type GeneratorOptions, type GeneratorResult } from '../relay/generator.js';
import { freePort, REPO_ROOT } from '../relay/mta.js';
import { startPostactor } from '../relay/postactor.js';
import { QueueStore, type MessageMeta } from '../../src/queue/store.js';
import { newQueueId } from '../../src/queue/qid.js';
import { DestinationFarm, until, type DestinationSpec } from './farm.js';

export type Scale = 'small' | 'full';
export const SCENARIOS = ['fair', 'dead', 'list', 'throttle', 'backlog'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export const SIZES = {
  small: { dests: 20, perDest: 10, listRcpts: 2000, listSmall: 100, listDelayMs: 1000, throttleMsgs: 200, backlog: 5000, backlogNew: 2000 },
  full: { dests: 200, perDest: 100, listRcpts: 50_000, listSmall: 1000, listDelayMs: 1000, throttleMsgs: 1000, backlog: 200_000, backlogNew: 10_000 },
} as const;

export const domain = (i: number): string => `d${String(i).padStart(3, '0')}.test`;

/** The relay generator with a recipient chosen per message and recipient, and claim times. */
export class RoutedGenerator extends LoadGenerator {
  readonly claimedAt: number[] = [];
  constructor(opts: Partial<GeneratorOptions> & Pick<GeneratorOptions, 'host' | 'port'>, private readonly rcptOf: (msg: number, i: number) => string) {
    super(opts);
  }
  override rcptCommand(msg: number, i: number): Buffer {
    return Buffer.from(`RCPT TO:<${this.rcptOf(msg, i)}>\r\n`, 'latin1');
  }
  override claim(): number {
    const m = super.claim();
    if (m >= 0) this.claimedAt[m] = nowAbs();
    return m;
  }
}

export interface Instance {
  port: number;
  pid: number;
  dir: string;
  /** Ready (220) after spawning, ms. */
  startMs: number;
  maillog(): string;
  stop(): Promise<void>;
}

interface InstanceOptions {
  farm: DestinationFarm;
  /** main.cf lines after the bench's. */
  extra?: string[];
  prepare?: (dir: string) => Promise<void> | void;
  keep?: boolean;
  dir?: string;
  tableDir: string;
}

/** The main.cf every scenario starts from (Postfix defaults otherwise). */
const BASE_MAIN_CF = ['smtp_connect_timeout = 2s'];

let userSettings: string[] = [];

/** The queue manager of the instances started now (--scheduler). */
type QueueManagerCommand = 'qmgr' | 'oqmgr';
let queueManager: QueueManagerCommand = 'qmgr';

/** Each instance's timeline and delivery delays, for the chart written next to the JSON. */
interface Charted { label: string; samples: Sample[]; delays: number[] }
const charted: Charted[] = [];

/** delay= of every status=sent line (seconds from arrival to delivery). */
function sentDelays(maillog: string): number[] {
  return [...maillog.matchAll(/, delay=([\d.]+), .*status=sent /g)].map((m) => Number(m[1])).sort((a, b) => a - b);
}

export async function startInstance(o: InstanceOptions): Promise<Instance> {
  const table = path.join(o.tableDir, 'transport');
  writeFileSync(table, o.farm.transportTable());
  // metrics_listen: the chart samples each destination's deliveries in progress.
  const metricsPort = await freePort();
  const lines = [...BASE_MAIN_CF, `transport_maps = texthash:${table}`, `metrics_listen = 127.0.0.1:${metricsPort}`, ...(o.extra ?? []), ...userSettings];
  const t0 = Date.now();
  const h = await startPostactor({
    sinkPort: await freePort(), // relayhost: nobody listens; mail for no dNNN.test domain is deferred
    smtpdThreads: 2, cleanupThreads: 2, smtpThreads: 2,
    maillog: true, keep: o.keep, dir: o.dir, prepare: o.prepare, queueManager,
    extraMainCf: `# bench/qmgr\n${lines.join('\n')}\n`,
    readyTimeoutMs: 120_000,
  });
  const startMs = Date.now() - t0;
  const maillog = () => { try { return readFileSync(path.join(h.dir, 'maillog'), 'utf8'); } catch { return ''; } };
  const delivered0 = o.farm.totalRecipients();
  const timeline = new Timeline(() => ({ delivered: o.farm.totalRecipients() - delivered0 }), `http://127.0.0.1:${metricsPort}/metrics`, 500);
  const label = `instance ${charted.length + 1}${queueManager === 'qmgr' ? '' : ` (${queueManager})`}`;
  return {
    port: h.port, pid: h.pid, dir: h.dir, startMs, maillog,
    stop: () => {
      charted.push({ label, samples: timeline.stop(), delays: sentDelays(maillog()) });
      return h.stop();
    },
  };
}

/** VmRSS of a process in MiB, or NaN. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system, all threads) a process has used so far, or NaN. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/** Jain's fairness index (Σx)² / (n·Σx²): 1 when all equal, 1/n when one takes everything. */
export function jain(xs: number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0, s2 = 0;
  for (const x of xs) { s += x; s2 += x * x; }
  return s2 === 0 ? 1 : (s * s) / (xs.length * s2);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function table(rows: [string, string | number][]): void {
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${typeof v === 'number' ? fmt(v) : v}`);
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3);
}

const sec = (ms: number): number => Math.round(ms) / 1000;

interface Ctx { scale: Scale; timeLimitMs: number; keep: boolean; listSmall: 'other' | 'same'; listComplete: boolean; work: string; throttleDelayMs: number }

/** Inject `messages` messages, message k to rcptOf(k, i); resolves when the generator is done. */
function inject(port: number, messages: number, recipients: number, rcptOf: (msg: number, i: number) => string, timeLimitMs: number, sessions = 10): { gen: RoutedGenerator; done: Promise<GeneratorResult> } {
  const gen = new RoutedGenerator({ host: '127.0.0.1', port, sessions, messages, recipients, reuse: true, size: 1024, timeLimitMs, socketTimeoutMs: Math.min(timeLimitMs, 120_000) }, rcptOf);
  return { gen, done: gen.run() };
}

function genSummary(r: GeneratorResult): string {
  return `${r.accepted} accepted, ${r.failed} failed${r.errors.length ? ` (${r.errors[0]})` : ''}${r.timedOut ? ', time limit' : ''}`;
}

/** fair / dead's common run: D destinations (those with blackHole(i) black holes) × M messages. */
async function destinationsRun(ctx: Ctx, label: string, blackHole: (i: number) => boolean): Promise<Record<string, unknown>> {
  const z = SIZES[ctx.scale];
  const specs: DestinationSpec[] = [];
  for (let i = 0; i < z.dests; i++) specs.push({ domain: domain(i), kind: blackHole(i) ? 'blackhole' : 'fast' });
  const farm = await DestinationFarm.start(specs);
  const tableDir = mkdtempSync(path.join(ctx.work, 'tables-'));
  const inst = await startInstance({ farm, tableDir, keep: ctx.keep });
  try {
    const total = z.dests * z.perDest;
    const healthy = specs.filter((s) => s.kind === 'fast').length * z.perDest;
    const t0 = nowAbs();
    const { done } = inject(inst.port, total, 1, (m) => `u${m}@${domain(m % z.dests)}`, ctx.timeLimitMs);
    const isHealthy = (d: DestinationSpec): boolean => d.kind === 'fast';
    const complete = await until(() => farm.totalRecipients(isHealthy) >= healthy, ctx.timeLimitMs, 20);
    const tDone = nowAbs();
    const g = await done;
    const cpu = cpuSeconds(inst.pid);
    const snaps = farm.snapshots().filter((s) => s.kind === 'fast');
    // A destination's completion time: its last message's arrival, from the start of injection.
    const completion = snaps.map((s) => (s.recipients >= z.perDest ? s.lastAt - t0 : tDone - t0));
    const healthyMs = Math.max(...completion);
    const r = {
      label, destinations: z.dests, blackHoles: z.dests - snaps.length, messagesPerDestination: z.perDest,
      injected: g.accepted, injectFailed: g.failed, acceptSeconds: sec(g.lastAcceptAt - g.firstConnectAt),
      healthyDelivered: farm.totalRecipients(isHealthy), healthyExpected: healthy, complete,
      healthySeconds: sec(healthyMs), afterLastAcceptSeconds: sec(t0 + healthyMs - g.lastAcceptAt), throughputPerSec: farm.totalRecipients(isHealthy) / (healthyMs / 1000),
      serverCpuSeconds: cpu, jainCompletion: jain(completion), completionP50: sec(percentile([...completion].sort((a, b) => a - b), 50)),
      loadavg: loadavg()[0],
    };
    console.log(`${label}: ${genSummary(g)}`);
    return r;
  } finally {
    await inst.stop();
    await farm.close();
    rmSync(tableDir, { recursive: true, force: true });
  }
}

async function fair(ctx: Ctx): Promise<Record<string, unknown>> {
  const r = await destinationsRun(ctx, 'all fast', () => false);
  console.log(`fair (${ctx.scale}): ${r.destinations} destinations × ${r.messagesPerDestination} messages, all fast`);
  table([
    ['delivered / expected', `${r.healthyDelivered} / ${r.healthyExpected}${r.complete ? '' : ' (INCOMPLETE: time limit)'}`],
    ['time to last delivery (s)', r.healthySeconds as number],
    ['throughput (deliveries/s)', r.throughputPerSec as number],
    ['Jain fairness, completion times', r.jainCompletion as number],
    ['median completion (s)', r.completionP50 as number],
    ['injection: accepted in (s)', r.acceptSeconds as number],
  ]);
  return { scenario: 'fair', ...r };
}

async function dead(ctx: Ctx): Promise<Record<string, unknown>> {
  const fast = await destinationsRun(ctx, 'all fast', () => false);
  const withDead = await destinationsRun(ctx, '20% black holes', (i) => i % 5 === 4);
  const ratio = (withDead.healthySeconds as number) / (fast.healthySeconds as number);
  console.log(`dead (${ctx.scale}): time until every healthy-destination message is delivered`);
  table([
    ['all fast (s)', `${fast.healthySeconds}${fast.complete ? '' : ' (INCOMPLETE)'}`],
    ['20% black holes (s)', `${withDead.healthySeconds}${withDead.complete ? '' : ` (INCOMPLETE: ${withDead.healthyDelivered}/${withDead.healthyExpected} at the time limit)`}`],
    ['ratio (target ≤ 1.3)', `${fmt(ratio)}${withDead.complete ? '' : ' (lower bound)'} ${ratio <= 1.3 && withDead.complete ? 'MEETS' : 'MISSES'}`],
    ['Jain, healthy destinations', withDead.complete ? fmt(withDead.jainCompletion as number) : 'n/a (incomplete)'],
    // Both runs are bound by SMTP injection when qmgr keeps up: this is qmgr's own share.
    ['last healthy delivery after the last acceptance (s): fast / dead', `${fast.afterLastAcceptSeconds} / ${withDead.afterLastAcceptSeconds}`],
    ['injection: accepted in (s): fast / dead', `${fast.acceptSeconds} / ${withDead.acceptSeconds}`],
    // CPU time depends less than wall time on what else the machine runs: the black holes' own cost.
    ['Postactor CPU (s): fast / dead', `${fmt(fast.serverCpuSeconds as number)} / ${fmt(withDead.serverCpuSeconds as number)}`],
  ]);
  return { scenario: 'dead', fast, withDead, ratio, target: 1.3, meets: withDead.complete === true && ratio <= 1.3 };
}

async function list(ctx: Ctx): Promise<Record<string, unknown>> {
  const z = SIZES[ctx.scale];
  const smallDomain = ctx.listSmall === 'same' ? domain(0) : domain(1);
  const specs: DestinationSpec[] = [
    { domain: domain(0), kind: 'slow', delayMs: z.listDelayMs, track: true },
    { domain: domain(1), kind: 'fast', track: true },
  ];
  const farm = await DestinationFarm.start(specs);
  const tableDir = mkdtempSync(path.join(ctx.work, 'tables-'));
  const inst = await startInstance({
    farm, tableDir, keep: ctx.keep,
    extra: [`smtpd_recipient_limit = ${z.listRcpts}`],
  });
  try {
    const tList = nowAbs();
    const big = inject(inst.port, 1, z.listRcpts, (_m, i) => `l${i}@${domain(0)}`, ctx.timeLimitMs, 1);
    const bigR = await big.done;
    const listAcceptedS = sec(nowAbs() - tList);
    if (bigR.accepted !== 1) throw new Error(`list: the ${z.listRcpts}-recipient message was not accepted: ${genSummary(bigR)}`);
    const small = inject(inst.port, z.listSmall, 1, (m) => `s${m}@${smallDomain}`, ctx.timeLimitMs, 4);
    const smallR = await small.done;
    const smallTotal = smallR.accepted;
    const wantSmall = (): number => farm.snapshot(ctx.listSmall === 'same' ? 0 : 1).recipients;
    // Arrivals are fetched at the end; the counters say when to stop.
    let arr = new Map<string, number>();
    const complete = await until(() => {
      if (ctx.listSmall === 'other') return wantSmall() >= smallTotal && (!ctx.listComplete || farm.snapshot(0).recipients >= z.listRcpts);
      return farm.snapshot(0).recipients >= z.listRcpts + smallTotal;
    }, ctx.timeLimitMs, 50);
    if (ctx.listSmall === 'same' && !complete) { /* latencies of what arrived; the rest counted as missing */ }
    const tEnd = nowAbs();
    arr = await farm.arrivals();
    const lat: number[] = [];
    let missing = 0;
    for (let m = 0; m < z.listSmall; m++) {
      const at = arr.get(`s${m}@${smallDomain}`);
      const from = small.gen.claimedAt[m];
      if (at === undefined || from === undefined) { missing++; lat.push(tEnd - (from ?? tEnd)); continue; }
      lat.push(at - from);
    }
    lat.sort((a, b) => a - b);
    const listDelivered = farm.snapshot(0).recipients - (ctx.listSmall === 'same' ? lat.length - missing : 0);
    let listLast = 0;
    for (const [k, t] of arr) if (k.startsWith('l') && t > listLast) listLast = t;
    const p99 = sec(percentile(lat, 99));
    console.log(`list (${ctx.scale}): one ${z.listRcpts}-recipient message to ${domain(0)} (${z.listDelayMs} ms per DATA), then ${z.listSmall} one-recipient messages to ${smallDomain}`);
    table([
      ['list accepted after (s)', listAcceptedS],
      ['small messages accepted', `${smallTotal} / ${z.listSmall}`],
      ['small delivered', `${z.listSmall - missing} / ${z.listSmall}${missing ? ' (rest: time limit; counted at the limit)' : ''}`],
      ['small latency p50 (s)', sec(percentile(lat, 50))],
      ['small latency p99 (s) (target ≤ 5)', `${p99}${missing ? ' (lower bound)' : ''} ${p99 <= 5 && !missing ? 'MEETS' : 'MISSES'}`],
      ['small latency max (s)', sec(lat[lat.length - 1] ?? NaN)],
      ['  of which submission (accept p50 / p99, s)', `${sec(smallR.latency.p50)} / ${sec(smallR.latency.p99)}`],
      ['list recipients delivered by then', `${listDelivered} / ${z.listRcpts}`],
      ['list last delivery after start (s)', listLast ? sec(listLast - tList) : 'none'],
    ]);
    return {
      scenario: 'list', listRecipients: z.listRcpts, slowDelayMs: z.listDelayMs, smallMessages: z.listSmall, smallTo: ctx.listSmall,
      listAcceptedSeconds: listAcceptedS, smallAccepted: smallTotal, smallMissing: missing, complete,
      latencySeconds: { p50: sec(percentile(lat, 50)), p90: sec(percentile(lat, 90)), p99, max: sec(lat[lat.length - 1] ?? NaN) },
      smallAcceptLatencySeconds: { p50: sec(smallR.latency.p50), p99: sec(smallR.latency.p99) },
      listDelivered, listLastSeconds: listLast ? sec(listLast - tList) : NaN, target: 5, meets: !missing && p99 <= 5, loadavg: loadavg()[0],
    };
  } finally {
    await inst.stop();
    await farm.close();
    rmSync(tableDir, { recursive: true, force: true });
  }
}

/** Counts the smtp agent's status= lines for recipients at `dom`. */
export function countStatuses(maillog: string, dom: string): Record<string, number> {
  const out: Record<string, number> = {};
  const needle = `@${dom}>`;
  for (const line of maillog.split('\n')) {
    if (!line.includes(needle)) continue;
    const m = /status=(\w+)/.exec(line);
    if (m) out[m[1]!] = (out[m[1]!] ?? 0) + 1;
  }
  return out;
}

/**
 * The first delivery attempt's status of each recipient at `dom` (Postfix's concurrency
 * measurements count "the first delivery runs only": a deferred recipient's retries are not
 * counted again).
 */
export function countFirstAttempts(maillog: string, dom: string): Record<string, number> {
  const first = new Map<string, string>();
  const needle = `@${dom}>`;
  for (const line of maillog.split('\n')) {
    if (!line.includes(needle)) continue;
    const m = /\bto=<([^>]*)>.*\bstatus=(\w+)/.exec(line);
    if (m && !first.has(m[1]!)) first.set(m[1]!, m[2]!);
  }
  const out: Record<string, number> = {};
  for (const st of first.values()) out[st] = (out[st] ?? 0) + 1;
  return out;
}

async function throttle(ctx: Ctx): Promise<Record<string, unknown>> {
  const z = SIZES[ctx.scale];
  const delayMs = ctx.throttleDelayMs;
  const farm = await DestinationFarm.start([{ domain: domain(0), kind: 'throttle', maxConnections: 5, ...(delayMs > 0 ? { delayMs } : {}) }]);
  const tableDir = mkdtempSync(path.join(ctx.work, 'tables-'));
  const inst = await startInstance({
    farm, tableDir, keep: ctx.keep,
    // Retries soon, so the run ends: Postfix's defaults (300 s) would make it last an hour.
    extra: ['minimal_backoff_time = 1s', 'maximal_backoff_time = 4s', 'queue_run_delay = 1s'],
  });
  try {
    const t0 = nowAbs();
    const { done } = inject(inst.port, z.throttleMsgs, 1, (m) => `t${m}@${domain(0)}`, ctx.timeLimitMs);
    const g = await done;
    const complete = await until(() => farm.snapshot(0).recipients >= g.accepted, ctx.timeLimitMs, 50);
    const seconds = sec(nowAbs() - t0);
    await new Promise((r) => setTimeout(r, 300)); // the last log lines
    const st = countStatuses(inst.maillog(), domain(0));
    const sent = st.sent ?? 0, deferred = st.deferred ?? 0;
    const allShare = deferred / Math.max(1, sent + deferred);
    const fa = countFirstAttempts(inst.maillog(), domain(0));
    const firstDeferred = fa.deferred ?? 0, firstTotal = Object.values(fa).reduce((a, b) => a + b, 0);
    const share = firstDeferred / Math.max(1, firstTotal);
    const s = farm.snapshot(0);
    console.log(`throttle (${ctx.scale}): ${z.throttleMsgs} messages to a destination answering 421 above 5 connections, ${delayMs} ms per delivery`);
    table([
      ['delivered / accepted', `${s.recipients} / ${g.accepted}${complete ? '' : ' (INCOMPLETE: time limit)'}`],
      ['time to deliver all (s)', seconds],
      ['first attempts: sent / deferred', `${fa.sent ?? 0} / ${firstDeferred}`],
      ['deferred share, first attempts (Postfix: 16.5%)', `${(share * 100).toFixed(1)}% ${share <= 0.165 ? 'MEETS' : 'MISSES'}`],
      ['all attempts: status=sent / deferred', `${sent} / ${deferred}`],
      ['deferred share, all attempts', `${(allShare * 100).toFixed(1)}%`],
      ['connections to the sink', s.connections],
    ]);
    return {
      scenario: 'throttle', messages: z.throttleMsgs, serverDelayMs: delayMs, accepted: g.accepted, delivered: s.recipients, complete, seconds,
      firstAttempts: fa, deferredShare: share, sent, deferred, statuses: st, deferredShareAllAttempts: allShare,
      postfix: 0.165, connections: s.connections, meets: share <= 0.165,
    };
  } finally {
    await inst.stop();
    await farm.close();
    rmSync(tableDir, { recursive: true, force: true });
  }
}

/** Writes `count` messages into deferred, not due for a day, in batches (one commit each). */
export async function fillDeferred(spoolDir: string, count: number, dests: number): Promise<number> {
  const t0 = Date.now();
  mkdirSync(spoolDir, { recursive: true });
  const store = QueueStore.open(spoolDir);
  const later = Date.now() + 86_400_000;
  const body = Buffer.from(`Subject: backlog\r\nFrom: <backlog@example.com>\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(1), 'latin1');
  try {
    const BATCH = 2000;
    for (let i = 0; i < count; i += BATCH) {
      const ps: Promise<void>[] = [];
      for (let k = i; k < Math.min(count, i + BATCH); k++) {
        const meta: MessageMeta = {
          queueId: newQueueId(), queue: 'deferred', arrival: Date.now(), sender: 'backlog@example.com',
          recipients: [{ address: `b${k}@${domain(k % dests)}`, done: false, reason: 'bench backlog' }],
          size: body.length, nextAttempt: later + (k % 3600) * 1000, attempts: 1,
        };
        ps.push(store.enqueue(meta, body));
      }
      await Promise.all(ps);
    }
    return Date.now() - t0;
  } finally {
    await store.close();
  }
}

async function backlog(ctx: Ctx): Promise<Record<string, unknown>> {
  const z = SIZES[ctx.scale];
  const dests = 20;
  const specs: DestinationSpec[] = [];
  for (let i = 0; i < dests; i++) specs.push({ domain: domain(i), kind: 'fast' });
  const farm = await DestinationFarm.start(specs);
  const tableDir = mkdtempSync(path.join(ctx.work, 'tables-'));
  const phase = async (inst: Instance, tag: string): Promise<{ seconds: number; perSec: number; complete: boolean; rss: number }> => {
    const before = farm.totalRecipients();
    const t0 = nowAbs();
    const { done } = inject(inst.port, z.backlogNew, 1, (m) => `${tag}${m}@${domain(m % dests)}`, ctx.timeLimitMs);
    const g = await done;
    const complete = await until(() => farm.totalRecipients() - before >= g.accepted, ctx.timeLimitMs, 20);
    const seconds = (nowAbs() - t0) / 1000;
    return { seconds, perSec: (farm.totalRecipients() - before) / seconds, complete, rss: rssMiB(inst.pid) };
  };
  try {
    // Empty queue.
    const empty = await startInstance({ farm, tableDir, keep: ctx.keep });
    const idleEmptyRss = rssMiB(empty.pid);
    let e;
    try { e = await phase(empty, 'e'); } finally { await empty.stop(); }
    // The same with the backlog in deferred.
    let fillMs = 0;
    const full = await startInstance({
      farm, tableDir, keep: true,
      prepare: async (dir) => { fillMs = await fillDeferred(path.join(dir, 'spool'), z.backlog, dests); },
    });
    const idleFullRss = rssMiB(full.pid);
    let b;
    try { b = await phase(full, 'b'); } catch (err) { await full.stop(); throw err; }
    const tStop = Date.now();
    await full.stop();
    const stopMs = Date.now() - tStop;
    // Restart on the same queue: ready (220), then the first new message delivered.
    const again = await startInstance({ farm, tableDir, keep: ctx.keep, dir: full.dir });
    let firstMs = NaN, againRss = NaN;
    try {
      const before = farm.totalRecipients();
      const t1 = nowAbs();
      const one = inject(again.port, 1, 1, () => `r0@${domain(0)}`, ctx.timeLimitMs, 1);
      await one.done;
      if (await until(() => farm.totalRecipients() > before, ctx.timeLimitMs, 10)) firstMs = nowAbs() - t1;
      againRss = rssMiB(again.pid);
    } finally {
      await again.stop();
      if (!ctx.keep) rmSync(full.dir, { recursive: true, force: true });
    }
    const ratio = b.perSec / e.perSec;
    console.log(`backlog (${ctx.scale}): ${z.backlogNew} new messages to ${dests} fast destinations, empty queue vs ${z.backlog} deferred (not due)`);
    table([
      ['backlog written in (s)', sec(fillMs)],
      ['empty: delivered/s', `${fmt(e.perSec)}${e.complete ? '' : ' (INCOMPLETE)'}`],
      ['backlog: delivered/s', `${fmt(b.perSec)}${b.complete ? '' : ' (INCOMPLETE)'}`],
      ['ratio (target ≥ 0.9)', `${fmt(ratio)} ${ratio >= 0.9 && b.complete ? 'MEETS' : 'MISSES'}`],
      ['RSS idle, empty / backlog (MiB)', `${fmt(idleEmptyRss)} / ${fmt(idleFullRss)}`],
      ['RSS after the run, empty / backlog (MiB)', `${fmt(e.rss)} / ${fmt(b.rss)}`],
      ['start to 220: empty / backlog (s)', `${sec(empty.startMs)} / ${sec(full.startMs - fillMs)}`],
      ['restart: stop (s)', sec(stopMs)],
      ['restart: start to 220 (s)', sec(again.startMs)],
      ['restart: a new message delivered after (s)', sec(firstMs)],
      ['RSS after restart (MiB)', fmt(againRss)],
    ]);
    return {
      scenario: 'backlog', backlog: z.backlog, newMessages: z.backlogNew, fillSeconds: sec(fillMs),
      empty: e, withBacklog: b, ratio, target: 0.9, meets: ratio >= 0.9 && b.complete,
      rssMiB: { idleEmpty: idleEmptyRss, idleBacklog: idleFullRss, afterEmpty: e.rss, afterBacklog: b.rss, afterRestart: againRss },
      startSeconds: { empty: sec(empty.startMs), backlog: sec(full.startMs - fillMs) },
      restart: { stopSeconds: sec(stopMs), readySeconds: sec(again.startMs), firstDeliverySeconds: sec(firstMs) },
      loadavg: loadavg()[0],
    };
  } finally {
    await farm.close();
    rmSync(tableDir, { recursive: true, force: true });
  }
}

/**
 * The chart: deliveries per second over time for each instance the scenario started, the
 * delivery delay distribution (maillog delay= of status=sent), and the deliveries in progress of
 * the busiest destinations (at most 8, by peak).
 */
function qmgrChart(title: string): string {
  const peaks = new Map<string, number>();
  for (const c of charted) for (const s of c.samples) for (const [d, n] of Object.entries(s.concurrency ?? {})) {
    const key = `${c.label}\u0000${d}`;
    peaks.set(key, Math.max(peaks.get(key) ?? 0, n));
  }
  const busiest = [...peaks.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k]) => k);
  const concurrency: Series[] = busiest.map((key) => {
    const [label, dest] = key.split('\u0000') as [string, string];
    const c = charted.find((x) => x.label === label)!;
    return { name: `${label.replace('instance ', '#')} ${dest.replace(/^[^:]*:/, '')}`.slice(0, 28), points: c.samples.filter((s) => s.concurrency).map((s) => [s.t, s.concurrency![dest] ?? 0]) };
  });
  return renderSvg(title, [
    { title: 'throughput over time', xLabel: 'seconds', yLabel: 'delivered / s', series: charted.map((c) => ({ name: c.label, points: rate(c.samples.map((s) => [s.t, s.delivered])) })) },
    { title: 'delivery delay distribution (status=sent)', xLabel: 'percentile', yLabel: 'seconds', series: charted.map((c) => ({ name: c.label, points: percentileCurve(c.delays) })) },
    { title: 'per-destination concurrency (busiest)', xLabel: 'seconds', yLabel: 'deliveries in progress', series: concurrency, steps: true },
  ]);
}

/**
 * Each scenario's headline figures (name → value; the name says which way is better), for the
 * comparison of schedulers.
 */
export function headline(r: Record<string, unknown>): Record<string, number> {
  const n = (v: unknown): number => (typeof v === 'number' ? v : NaN);
  const o = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' ? v as Record<string, unknown> : {});
  switch (r.scenario) {
    case 'fair': return { 'deliveries/s (higher is better)': n(r.throughputPerSec), 'Jain, completion times': n(r.jainCompletion) };
    case 'dead': return { 'dead/fast time ratio (lower is better)': n(r.ratio) };
    case 'list': return {
      'small p50 s (lower is better)': n(o(r.latencySeconds).p50),
      'small p99 s (lower is better)': n(o(r.latencySeconds).p99),
      'list last delivery s (lower is better)': n(r.listLastSeconds),
    };
    case 'throttle': return { 'deferred share, first attempts (lower is better)': n(r.deferredShare) };
    case 'backlog': return { 'backlog/empty throughput ratio (higher is better)': n(r.ratio) };
    default: return {};
  }
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string' },
      scale: { type: 'string', default: 'small' },
      json: { type: 'string' },
      'time-limit': { type: 'string' },
      set: { type: 'string', multiple: true, default: [] },
      'list-small': { type: 'string', default: 'other' },
      'list-complete': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      'throttle-delay': { type: 'string', default: '200' },
      scheduler: { type: 'string', default: 'qmgr' },
      runs: { type: 'string', default: '1' },
    },
  });
  const schedulers = values.scheduler.split(',').map((x) => x.trim());
  for (const x of schedulers) if (x !== 'qmgr' && x !== 'oqmgr') throw new Error(`--scheduler: not qmgr or oqmgr: ${x}`);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive whole number');
  const scenario = values.scenario as Scenario;
  if (!SCENARIOS.includes(scenario)) throw new Error(`--scenario must be one of ${SCENARIOS.join('|')}`);
  const scale = values.scale as Scale;
  if (scale !== 'small' && scale !== 'full') throw new Error('--scale must be small or full');
  const listSmall = values['list-small'] as 'other' | 'same';
  if (listSmall !== 'other' && listSmall !== 'same') throw new Error('--list-small must be other or same');
  for (const s of values.set) if (!/^\s*[a-z0-9_]+\s*=/.test(s)) throw new Error(`--set: not "name = value": ${s}`);
  userSettings = values.set;
  const timeLimitMs = Number(values['time-limit'] ?? (scale === 'small' ? 60 : 600)) * 1000;
  if (!(timeLimitMs > 0)) throw new Error('--time-limit must be a positive number of seconds');
  const work = mkdtempSync(path.join(tmpdir(), 'qmgr-bench-'));
  const throttleDelayMs = Number(values['throttle-delay']);
  if (!(throttleDelayMs >= 0)) throw new Error('--throttle-delay must be a number of milliseconds (0: a fast sink)');
  const ctx: Ctx = { scale, timeLimitMs, keep: values.keep, listSmall, listComplete: values['list-complete'], work, throttleDelayMs };
  console.log(`qmgr bench: ${scenario}, scale ${scale}, scheduler ${schedulers.join(' vs ')}${runs > 1 ? `, ${runs} runs each` : ''}, time limit ${timeLimitMs / 1000} s per phase, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}${userSettings.length ? `, main.cf + ${userSettings.join('; ')}` : ''}`);
  const t0 = Date.now();
  try {
    const fn = { fair, dead, list, throttle, backlog }[scenario];
    let result: Record<string, unknown>;
    if (schedulers.length === 1 && runs === 1) {
      queueManager = schedulers[0] as QueueManagerCommand;
      result = { ...(await fn(ctx)), scheduler: queueManager };
    } else {
      // A B A B …: each scheduler's runs spread over the same stretch of a shared machine's load.
      const by: Record<string, Record<string, unknown>[]> = Object.fromEntries(schedulers.map((x) => [x, []]));
      for (let i = 0; i < runs; i++) {
        for (const x of schedulers) {
          queueManager = x as QueueManagerCommand;
          console.log(`\n--- run ${i + 1}/${runs}: ${x}`);
          const r = await fn(ctx);
          by[x]!.push({ ...r, scheduler: x });
          console.log(`    ${Object.entries(headline(r)).map(([k, v]) => `${k}: ${fmt(v)}`).join('; ')}`);
        }
      }
      const medians: Record<string, Record<string, number>> = {};
      for (const x of schedulers) {
        const hs = by[x]!.map(headline);
        medians[x] = Object.fromEntries(Object.keys(hs[0] ?? {}).map((k) => [k, median(hs.map((h) => h[k]!))]));
      }
      console.log(`\n${scenario} (${scale}): medians over ${runs} run(s) each, load average now ${loadavg()[0]!.toFixed(1)}`);
      const rows: [string, string][] = [];
      for (const k of Object.keys(medians[schedulers[0]!] ?? {})) {
        const vals = schedulers.map((x) => medians[x]![k]!);
        const ratio = schedulers.length === 2 ? ` (ratio ${schedulers[0]} ÷ ${schedulers[1]}: ${fmt(vals[0]! / vals[1]!)})` : '';
        rows.push([k, `${schedulers.map((x, j) => `${x} ${fmt(vals[j]!)}`).join(', ')}${ratio}`]);
      }
      table(rows);
      result = { scenario, runs: by, medians, loadavg: loadavg()[0] };
    }
    const out = { ...result, scale, settings: userSettings, date: new Date().toISOString(), wallSeconds: sec(Date.now() - t0) };
    const tag = schedulers.length === 1 && schedulers[0] === 'qmgr' ? '' : `-${schedulers.join('-')}`;
    const file = values.json ?? path.join(REPO_ROOT, 'bench/results', `qmgr-${scenario}-${scale}${tag}.json`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
    const svg = file.replace(/(\.json)?$/, '.svg');
    writeFileSync(svg, qmgrChart(`qmgr ${scenario} (${scale}); load ${loadavg()[0]!.toFixed(1)}`));
    console.log(`(${sec(Date.now() - t0)} s; JSON: ${file}; chart: ${svg})`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  main().catch((err: unknown) => {
    console.error(`qmgr bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
