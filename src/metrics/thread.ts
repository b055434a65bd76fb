/**
 * The metrics of one thread: prom-client counters, gauges and histograms that the actors of
 * this thread update in place (a Map lookup and an add, no message to another thread), and a
 * reporter that sends this thread's snapshot to master (src/metrics/collect.ts) on the
 * instance's metrics channel: once a second when something changed, and at once when master
 * asks before a scrape. master sums the snapshots of all threads; so the hot path never pays a
 * hop, and a scrape costs one message per thread.
 *
 * With metrics_listen empty (the default) nothing of this is loaded: metrics() answers an object
 * whose every method does nothing, and prom-client (some 3 MB of heap and tens of milliseconds per
 * thread) is required only in the threads of a server that exports metrics.
 *
 * Names follow postfix_exporter (kumina) where the same thing is counted there
 * (postfix_smtpd_connects_total, postfix_smtpd_messages_rejected_total, …); what only
 * Postactor knows (queues from the store, per-destination windows, thread restarts) is named
 * postactor_*.
 */
import { createRequire } from 'node:module';
import { BroadcastChannel, isMainThread, threadId, workerData } from 'node:worker_threads';
import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';

type PromClient = typeof import('prom-client');
const require = createRequire(import.meta.url);
/** prom-client, loaded on first use (a CommonJS module: require is synchronous). */
function prom(): PromClient {
  return require('prom-client') as PromClient;
}

/** Seconds: from a few milliseconds (loopback) to the default maximal_backoff_time and beyond. */
const DELAY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400];

function define(registry: Registry) {
  const r = [registry];
  const { Counter, Gauge, Histogram } = prom();
  return {
    smtpdConnects: new Counter({ name: 'postfix_smtpd_connects_total', help: 'Total number of incoming connections.', registers: r }),
    smtpdDisconnects: new Counter({ name: 'postfix_smtpd_disconnects_total', help: 'Total number of incoming disconnections.', registers: r }),
    smtpdSessions: new Gauge({ name: 'postactor_smtpd_sessions', help: 'SMTP sessions in progress.', registers: r }),
    smtpdMessages: new Counter({ name: 'postfix_smtpd_messages_processed_total', help: 'Total number of messages accepted (queued) by smtpd.', labelNames: ['sasl_method'], registers: r }),
    smtpdRejects: new Counter({ name: 'postfix_smtpd_messages_rejected_total', help: 'Total number of NOQUEUE (or queue-ID) rejects, by reply code and the stage and restriction that rejected.', labelNames: ['code', 'stage', 'reason'], registers: r }),
    smtpdSaslFailures: new Counter({ name: 'postfix_smtpd_sasl_authentication_failures_total', help: 'Total number of SASL authentication failures.', registers: r }),
    smtpdSasl: new Counter({ name: 'postactor_smtpd_sasl_authentications_total', help: 'SASL authentications by mechanism and result.', labelNames: ['method', 'result'], registers: r }),
    smtpdTls: new Counter({ name: 'postfix_smtpd_tls_connections_total', help: 'Total number of incoming TLS connections.', labelNames: ['protocol', 'cipher'], registers: r }),
    smtpdTlsFailures: new Counter({ name: 'postactor_smtpd_tls_failures_total', help: 'TLS handshakes that failed in smtpd.', registers: r }),
    smtpTls: new Counter({ name: 'postfix_smtp_tls_connections_total', help: 'Total number of outgoing TLS connections.', labelNames: ['protocol', 'cipher'], registers: r }),
    cleanupMessages: new Counter({ name: 'postfix_cleanup_messages_processed_total', help: 'Total number of messages processed (queued) by cleanup.', registers: r }),
    cleanupRejects: new Counter({ name: 'postfix_cleanup_messages_rejected_total', help: 'Total number of messages rejected by cleanup.', registers: r }),
    qmgrInserted: new Counter({ name: 'postactor_qmgr_messages_inserted_total', help: 'Messages qmgr took into the active queue for the first time (received).', registers: r }),
    qmgrRemoved: new Counter({ name: 'postfix_qmgr_messages_removed_total', help: 'Total number of messages removed from mail queues.', registers: r }),
    qmgrExpired: new Counter({ name: 'postfix_qmgr_messages_expired_total', help: 'Total number of messages expired from mail queues.', registers: r }),
    deliveries: new Counter({ name: 'postactor_deliveries_total', help: 'Recipient delivery attempts by transport and status (sent, deferred, bounced).', labelNames: ['transport', 'status'], registers: r }),
    delay: new Histogram({ name: 'postactor_delivery_delay_seconds', help: 'Per recipient: time in the queue before the delivery attempt (stage=queue) and time in the delivery agent (stage=transfer).', labelNames: ['transport', 'stage'], buckets: DELAY_BUCKETS, registers: r }),
  };
}

export type ThreadMetrics = ReturnType<typeof define>;

/** A snapshot as it travels on the channel. */
export interface Snapshot {
  kind: 'snapshot';
  thread: number;
  seq: number;
  metrics: MetricObjectWithValues<MetricValue<string>>[];
}

let state: { registry: Registry; metrics: ThreadMetrics } | null = null;
/** master sets this when metrics_listen is on (workers learn it from their workerData). */
let mainThreadEnabled = false;

function enabled(): boolean {
  if (isMainThread) return mainThreadEnabled;
  return (workerData as { metrics?: boolean } | null)?.metrics === true;
}

/** Any metric, any method: does nothing (metrics_listen is off). */
const NOOP: ThreadMetrics = new Proxy({}, { get: () => NOOP_METRIC }) as ThreadMetrics;
const NOOP_METRIC = new Proxy({}, { get: () => () => undefined });

/** master: metrics_listen is set, count in this (the main) thread too. */
export function enableMetrics(): void {
  mainThreadEnabled = true;
}

/** This thread's metrics (made, and its reporter started, on first use). */
export function metrics(): ThreadMetrics {
  if (state) return state.metrics;
  if (!enabled()) return NOOP;
  const registry = new (prom().Registry)();
  state = { registry, metrics: define(registry) };
  const data = workerData as { instance?: string } | null;
  if (!isMainThread && data?.instance) report(registry, data.instance);
  return state.metrics;
}

/** Gauges this thread computes when a snapshot is taken (qmgr: queues, destinations); nothing when off. */
export function registerGauges(make: (registry: Registry, client: PromClient) => void): void {
  if (!enabled()) return;
  metrics();
  make(state!.registry, prom());
}

export function channelName(instance: string): string {
  return `${instance}:metrics`;
}

function report(registry: Registry, instance: string): void {
  const channel = new BroadcastChannel(channelName(instance));
  channel.unref();
  let lastSent = '';
  const send = async (seq: number, always: boolean) => {
    const json = await registry.getMetricsAsJSON();
    const text = JSON.stringify(json);
    if (!always && text === lastSent) return;
    lastSent = text;
    channel.postMessage({ kind: 'snapshot', thread: threadId, seq, metrics: json } satisfies Snapshot);
  };
  channel.onmessage = (e) => {
    const m = (e as MessageEvent).data as { kind?: string; seq?: number };
    if (m?.kind === 'collect') void send(m.seq ?? 0, true);
  };
  setInterval(() => void send(0, false), 1000).unref();
  void send(0, true);
}

/** The registry (master's own metrics live in the main thread's). */
export function threadRegistry(): Registry {
  metrics();
  return state!.registry;
}

let masterState: ReturnType<typeof defineMaster> | null = null;

function defineMaster(registry: Registry) {
  const r = [registry];
  const { Counter, Gauge } = prom();
  const up = new Gauge({ name: 'postfix_up', help: 'Whether the mail system is running (master answers).', registers: r });
  up.set(1);
  return {
    restarts: new Counter({ name: 'postactor_thread_restarts_total', help: 'Worker threads that ended unexpectedly and were replaced, by service.', labelNames: ['service'], registers: r }),
  };
}

/** master's own metrics (the main thread); they do nothing while metrics_listen is off. */
export function masterMetrics(): ReturnType<typeof defineMaster> {
  if (!enabled()) return NOOP as unknown as ReturnType<typeof defineMaster>;
  return (masterState ??= defineMaster(threadRegistry()));
}
