/**
 * master's side of the metrics: the latest snapshot of every thread (src/metrics/thread.ts),
 * summed at scrape time into one Prometheus text page, and the HTTP listener on
 * `metrics_listen` with /metrics and /health beside it.
 *
 * A scrape first asks every thread for a fresh snapshot and waits (at most a second) until each
 * live thread that reports has answered, so a scrape right after traffic counts it. A thread that
 * ended (crash, reload) keeps counting: its last snapshot is folded into a "retired" sum, without
 * its gauges, which described a thread that is gone.
 */
import { createServer, type Server } from 'node:http';
import { BroadcastChannel } from 'node:worker_threads';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { channelName, threadRegistry, type Snapshot } from './thread.js';
import { parseListen } from './listen.js';

export { parseListen };

type Json = MetricObjectWithValues<MetricValue<string>>[];

export interface CollectorOptions {
  instance: string;
  /** Thread ids of the workers alive now. */
  liveThreads: () => Set<number>;
}

export class MetricsCollector {
  private readonly channel: BroadcastChannel;
  private readonly latest = new Map<number, { seq: number; metrics: Json }>();
  private retired: Json = [];
  private seq = 0;
  private waiting: (() => void) | null = null;

  constructor(private readonly options: CollectorOptions) {
    this.channel = new BroadcastChannel(channelName(options.instance));
    this.channel.onmessage = (e) => {
      const m = (e as MessageEvent).data as Snapshot;
      if (m?.kind !== 'snapshot') return;
      this.latest.set(m.thread, { seq: m.seq, metrics: m.metrics });
      this.waiting?.();
    };
  }

  /** Fresh snapshots from every live reporting thread (or what is there after timeoutMs). */
  private async refresh(timeoutMs = 1000): Promise<void> {
    const seq = ++this.seq;
    this.channel.postMessage({ kind: 'collect', seq });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.options.liveThreads();
      const missing = [...this.latest.entries()].filter(([t, s]) => live.has(t) && s.seq !== seq);
      if (missing.length === 0 || Date.now() >= deadline) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiting = () => { clearTimeout(timer); resolve(); };
      });
      this.waiting = null;
    }
    // Threads that ended: their counters stay in the sums, their gauges go.
    const live = this.options.liveThreads();
    const gone = [...this.latest.entries()].filter(([t]) => !live.has(t));
    if (gone.length > 0) {
      const sums = AggregatorRegistry.aggregate([this.retired, ...gone.map(([, s]) => s.metrics.filter((m) => (m.type as unknown as string) !== 'gauge'))]);
      this.retired = (await sums.getMetricsAsJSON()) as Json;
      for (const [t] of gone) this.latest.delete(t);
    }
  }

  /** The Prometheus text exposition of every thread's metrics and master's own. */
  async scrape(): Promise<{ contentType: string; text: string }> {
    await this.refresh();
    const own = (await threadRegistry().getMetricsAsJSON()) as Json;
    const all = AggregatorRegistry.aggregate([own, this.retired, ...[...this.latest.values()].map((s) => s.metrics)]);
    return { contentType: all.contentType, text: await all.metrics() };
  }

  close(): void {
    this.channel.close();
  }
}

/** What /health reports: each check by name, and whether all passed. */
export interface Health {
  ok: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

export async function startMetricsServer(listen: string, collector: MetricsCollector, health: () => Promise<Health>): Promise<Server> {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      collector.scrape().then(
        ({ contentType, text }) => res.writeHead(200, { 'content-type': contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else if (path === '/health') {
      health().then(
        (h) => res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h) + '\n'),
        (err: Error) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /health\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  return server;
}
