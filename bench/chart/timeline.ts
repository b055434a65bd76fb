/**
 * What a benchmark run looked like over time, for its chart: every `everyMs` the cumulative
 * counts the bench already keeps (accepted by the MTA, delivered to the sink or farm) and, for
 * a Postactor started with metrics_listen, each destination's deliveries in progress from its
 * /metrics page. Sampling reads counters and one HTTP page; it adds nothing per message.
 */
import { destinationConcurrency } from './svg.js';

export interface Sample {
  /** Seconds since the timeline started. */
  t: number;
  accepted?: number;
  delivered: number;
  /** End of DATA → 250 p99 (ms) of the replies since the previous sample (the node generator only). */
  dotP99Ms?: number | null;
  /** "transport:nexthop" → deliveries in progress (Postactor only). */
  concurrency?: Record<string, number>;
}

export class Timeline {
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly t0 = performance.now();
  private scraping = false;

  constructor(
    private readonly read: () => { accepted?: number; delivered: number; dotP99Ms?: number | null },
    private readonly metricsUrl: string | null = null,
    everyMs = 250,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  private sample(): void {
    const s: Sample = { t: (performance.now() - this.t0) / 1000, ...this.read() };
    this.samples.push(s);
    if (!this.metricsUrl || this.scraping) return;
    this.scraping = true;
    fetch(this.metricsUrl, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.text())
      .then((text) => { s.concurrency = Object.fromEntries(destinationConcurrency(text)); })
      .catch(() => undefined)
      .finally(() => { this.scraping = false; });
  }

  stop(): Sample[] {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return this.samples;
  }
}
