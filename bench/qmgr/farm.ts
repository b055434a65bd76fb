/**
 * The qmgr benchmark's destination farm: many SMTP sinks on 127.0.0.1, one per destination,
 * each with a behaviour profile, all hosted by ONE worker thread (one event loop, idle when
 * no mail flows), so 200 destinations cost one thread rather than 200 processes.
 *
 * Profiles (src/smtp/sink.ts's SinkProfile knobs):
 *   fast       accepts everything at once
 *   slow       holds every end-of-data reply for `delayMs` (seconds per DATA)
 *   4xx        answers RCPT with 450 4.2.0 (every delivery deferred)
 *   5xx        answers RCPT with 550 5.1.1 (every recipient bounced)
 *   throttle   421 to any connection above `maxConnections` open at once (with `delayMs`, also
 *              slow: the server latency of Postfix's own concurrency measurements)
 *   refused    a port nobody listens on (connection refused)
 *   blackhole  accepts the TCP connection and never greets
 *
 * Counters per destination live in a SharedArrayBuffer (the bench thread reads them without
 * message passing); with `track`, a destination also records the arrival time of each
 * recipient (for per-message latency), fetched with arrivals().
 */
import { Worker } from 'node:worker_threads';
import { freePort } from '../relay/mta.js';

export type ProfileKind = 'fast' | 'slow' | '4xx' | '5xx' | 'throttle' | 'refused' | 'blackhole';
export const PROFILE_KINDS: readonly ProfileKind[] = ['fast', 'slow', '4xx', '5xx', 'throttle', 'refused', 'blackhole'];

export interface DestinationSpec {
  /** Domain routed to it, e.g. d007.test. */
  domain: string;
  kind: ProfileKind;
  /** slow (and optionally throttle): ms before each end-of-data reply. */
  delayMs?: number;
  /** throttle: connections served at once; the next one gets 421. */
  maxConnections?: number;
  /** Record each accepted recipient's arrival time. */
  track?: boolean;
}

/** Per-destination slots, BigInt64 each. */
export const FSLOT = { connections: 0, messages: 1, recipients: 2, rejected: 3, firstAt: 4, lastAt: 5 } as const;
export const FSLOTS = 6;

export interface FarmThreadData {
  dests: (DestinationSpec & { port: number })[];
  shared: SharedArrayBuffer;
}

export interface DestSnapshot {
  domain: string;
  kind: ProfileKind;
  port: number;
  connections: number;
  /** Messages (deliveries) accepted. */
  messages: number;
  recipients: number;
  /** Recipients refused (4xx/5xx RCPT replies). */
  rejected: number;
  /** Epoch ms (sub-ms precision) of the first / latest accepted message; 0 = none yet. */
  firstAt: number;
  lastAt: number;
}

export class DestinationFarm {
  private closed = false;
  private constructor(
    private readonly worker: Worker,
    private readonly cells: BigInt64Array,
    readonly dests: readonly (DestinationSpec & { port: number })[],
  ) {}

  static async start(specs: DestinationSpec[], timeoutMs = 20_000): Promise<DestinationFarm> {
    const dests: (DestinationSpec & { port: number })[] = [];
    for (const s of specs) {
      if (!PROFILE_KINDS.includes(s.kind)) throw new Error(`farm: unknown profile ${String(s.kind)}`);
      // refused: a port that was free a moment ago and that nobody will listen on.
      dests.push({ ...s, port: s.kind === 'refused' ? await freePort() : 0 });
    }
    const shared = new SharedArrayBuffer(Math.max(1, dests.length) * FSLOTS * 8);
    const data: FarmThreadData = { dests, shared };
    const worker = new Worker(new URL('./farm-thread.js', import.meta.url), { workerData: data });
    const ports = await new Promise<number[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`farm: not listening within ${timeoutMs} ms`)), timeoutMs);
      worker.once('error', (err) => { clearTimeout(timer); reject(new Error(`farm thread failed: ${err.message}`)); });
      worker.once('message', (m: { type: string; ports: number[] }) => { clearTimeout(timer); resolve(m.ports); });
    });
    worker.on('error', (err) => console.error(`farm thread error: ${err.message}`));
    for (let i = 0; i < dests.length; i++) dests[i]!.port = ports[i]!;
    return new DestinationFarm(worker, new BigInt64Array(shared), dests);
  }

  snapshot(i: number): DestSnapshot {
    const base = i * FSLOTS;
    const n = (s: number): number => Number(Atomics.load(this.cells, base + s));
    const d = this.dests[i]!;
    return {
      domain: d.domain, kind: d.kind, port: d.port,
      connections: n(FSLOT.connections), messages: n(FSLOT.messages), recipients: n(FSLOT.recipients),
      rejected: n(FSLOT.rejected), firstAt: n(FSLOT.firstAt) / 1000, lastAt: n(FSLOT.lastAt) / 1000,
    };
  }

  snapshots(): DestSnapshot[] {
    return this.dests.map((_, i) => this.snapshot(i));
  }

  /** Recipients accepted by every destination, summed. */
  totalRecipients(filter: (d: DestinationSpec) => boolean = () => true): number {
    let t = 0;
    for (let i = 0; i < this.dests.length; i++) if (filter(this.dests[i]!)) t += this.snapshot(i).recipients;
    return t;
  }

  /** The `transport_maps` texthash table: `dNNN.test smtp:[127.0.0.1]:PORT`, one line each. */
  transportTable(transport = 'smtp'): string {
    return this.dests.map((d) => `${d.domain}\t${transport}:[127.0.0.1]:${d.port}\n`).join('');
  }

  /** Arrival times (epoch ms) of every recipient accepted by a tracked destination. */
  arrivals(timeoutMs = 10_000): Promise<Map<string, number>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('farm: no answer to arrivals')), timeoutMs);
      const on = (m: { type: string; arrivals?: [string, number][] }): void => {
        if (m.type !== 'arrivals') return;
        this.worker.off('message', on);
        clearTimeout(timer);
        resolve(new Map(m.arrivals));
      };
      this.worker.on('message', on);
      this.worker.postMessage({ type: 'arrivals' });
    });
  }

  /** Close every listener and connection, then end the thread. Bounded to 5 s. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ type: 'close' });
    const timer = setTimeout(() => void this.worker.terminate(), 5000);
    await done;
    clearTimeout(timer);
  }
}

/** Polls `cond` every `everyMs` until it holds or `timeoutMs` passes; true if it held. */
export async function until(cond: () => boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
