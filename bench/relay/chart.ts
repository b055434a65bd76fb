/**
 * The relay benchmark's chart, written next to its JSON: delivered per second over time for every
 * run, the acceptance latency distribution (DATA to 250) from the generator, and Postactor's
 * per-destination concurrency from its metrics page (Postfix has none).
 */
import os from 'node:os';
import { rate, renderSvg, type Series } from '../chart/svg.js';
import type { RunRecord } from './run.js';

/** What the chart's title says about the load. */
export interface ChartConfig { sessions: number; messages: number; size: number; recipients: number }

/** The run's chart: delivered/s over time, the acceptance latency distribution, per-destination concurrency. */
export function relayChart(records: RunRecord[], cfg: ChartConfig): string {
  const name = (r: RunRecord) => `${r.mta} ${r.run}`;
  const ok = records.filter((r) => r.timeline.length > 0);
  const concurrency: Series[] = [];
  for (const r of ok.filter((x) => x.timeline.some((s) => s.concurrency))) {
    const dests = new Set(r.timeline.flatMap((s) => Object.keys(s.concurrency ?? {})));
    // One destination (the sink) per run: the run names the line.
    for (const d of dests) concurrency.push({ name: dests.size === 1 ? name(r) : `${name(r)} ${d.replace(/^[^:]*:/, '')}`.slice(0, 28), points: r.timeline.filter((s) => s.concurrency).map((s) => [s.t, s.concurrency![d] ?? 0]) });
  }
  const loads = records.map((r) => r.loadavg[0]!).filter(Number.isFinite);
  const load = loads.length ? (loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(1) : '?';
  return renderSvg(`relay: ${cfg.sessions} sessions, ${cfg.messages} × ${cfg.size} B, ${cfg.recipients} rcpt; ${os.cpus().length} CPUs, load ${load} at the runs' start (shared machine)`, [
    { title: 'throughput over time', xLabel: 'seconds', yLabel: 'delivered / s', series: ok.map((r) => ({ name: name(r), points: rate(r.timeline.map((s) => [s.t, s.delivered])) })) },
    { title: 'acceptance latency distribution (DATA to 250)', xLabel: 'percentile', yLabel: 'ms', series: ok.filter((r) => r.generator).map((r) => ({ name: name(r), points: r.generator!.latency.distribution })) },
    { title: 'per-destination concurrency (Postactor metrics)', xLabel: 'seconds', yLabel: 'deliveries in progress', series: concurrency, steps: true },
  ]);
}
