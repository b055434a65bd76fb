/**
 * Worker-thread body of the benchmark's counting sink (see sink.ts for the host side).
 *
 * Runs src/smtp/sink.ts's SmtpSink on 127.0.0.1 and mirrors its counters into a
 * SharedArrayBuffer at every change, stamping the wall-clock time of the last delivered
 * message, so the bench thread can read delivered counts and the end-to-end time without
 * any message passing.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { SmtpSink, type SinkStats } from '../../src/smtp/sink.js';
import { SLOT, type SinkThreadData } from './sink.js';

const data = workerData as SinkThreadData;
const cells = new BigInt64Array(data.shared);
const DKIM = Buffer.from('\r\nDKIM-Signature:');
const sink = new SmtpSink({
  hostname: 'bench-sink.localdomain',
  ...(data.tls ? { tls: { key: data.tls.key, cert: data.tls.cert } } : {}),
  // --milter: count what arrived signed, so a run shows the filter really did its work;
  // --tls-cache: what came over a resumed TLS session, so a run shows both MTAs resumed.
  ...(data.countSigned || data.countResumed ? {
    dataReply: (m: { data: Buffer; tlsResumed?: boolean }) => {
      if (data.countResumed && m.tlsResumed) Atomics.add(cells, SLOT.resumed, 1n);
      if (data.countSigned && (m.data.subarray(0, 8192).indexOf(DKIM) >= 0 || m.data.subarray(0, 16).toString('latin1').startsWith('DKIM-Signature:'))) Atomics.add(cells, SLOT.signed, 1n);
      return null;
    },
  } : {}),
});
let lastMessages = -1;
/** The counters at the last reset (bench --warmup): what the cells show is counted from there. */
let base: SinkStats = { ...sink.stats };

function micros(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}

/** Called by SmtpSink on every change (connection or message): copy the counters. */
function mirror(s: SinkStats): boolean {
  const messages = s.messages - base.messages;
  if (messages !== lastMessages && messages > 0) {
    lastMessages = messages;
    const t = micros();
    if (Atomics.load(cells, SLOT.firstMessageAt) === 0n) Atomics.store(cells, SLOT.firstMessageAt, t);
    Atomics.store(cells, SLOT.lastMessageAt, t);
  }
  if (s.connections > base.connections && Atomics.load(cells, SLOT.firstConnectAt) === 0n) Atomics.store(cells, SLOT.firstConnectAt, micros());
  Atomics.store(cells, SLOT.connections, BigInt(s.connections - base.connections));
  Atomics.store(cells, SLOT.bytes, BigInt(s.bytes - base.bytes));
  Atomics.store(cells, SLOT.rejectedRecipients, BigInt(s.rejectedRecipients - base.rejectedRecipients));
  Atomics.store(cells, SLOT.recipients, BigInt(s.recipients - base.recipients));
  // Messages last: a reader that sees the new count also sees the rest.
  Atomics.store(cells, SLOT.messages, BigInt(messages));
  return false;
}

/**
 * waitFor() is SmtpSink's public change hook: its predicate runs synchronously on every
 * change. A predicate that never holds is a zero-cost "on change" listener; re-armed if
 * its (25-day) timer ever fires.
 */
function watch(): void {
  sink.waitFor(mirror, 2_147_483_647).catch(watch);
}

const port = await sink.listen(data.port, '127.0.0.1');
watch();
parentPort!.postMessage({ type: 'listening', port });
parentPort!.on('message', (m: { type: string }) => {
  if (m.type === 'reset') {
    // bench --warmup: count from zero again, the first-message and first-connect stamps too.
    base = { ...sink.stats };
    lastMessages = -1;
    for (let i = 0; i < cells.length; i++) Atomics.store(cells, i, 0n);
    parentPort!.postMessage({ type: 'reset' });
  } else if (m.type === 'close') {
    void sink.close().then(() => {
      mirror(sink.stats);
      parentPort!.postMessage({ type: 'closed' });
      process.exit(0);
    });
  }
});
