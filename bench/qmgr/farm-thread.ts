/**
 * Worker-thread body of the destination farm (see farm.ts): one SmtpSink per destination,
 * counters mirrored into shared memory on every change.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { SmtpSink, type SinkProfile, type SinkStats } from '../../src/smtp/sink.js';
import { FSLOT, FSLOTS, type FarmThreadData } from './farm.js';

const data = workerData as FarmThreadData;
const cells = new BigInt64Array(data.shared);
const sinks: SmtpSink[] = [];
const arrivals: [string, number][] = [];

function micros(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}

const ports: number[] = [];
for (let i = 0; i < data.dests.length; i++) {
  const d = data.dests[i]!;
  if (d.kind === 'refused') { ports.push(d.port); continue; }
  const profile: SinkProfile = { hostname: `${d.domain.replace(/\.test$/, '')}.sink.test` };
  if (d.kind === 'slow') profile.dataDelayMs = d.delayMs ?? 1000;
  if (d.kind === 'throttle' && d.delayMs) profile.dataDelayMs = d.delayMs;
  const base = i * FSLOTS;
  // The sink signals changes on connections and messages only: refusals are counted here.
  const refuse = (reply: string) => (): string => { Atomics.add(cells, base + FSLOT.rejected, 1n); return reply; };
  if (d.kind === '4xx') profile.rcptReply = refuse('450 4.2.0 Mailbox temporarily unavailable');
  if (d.kind === '5xx') profile.rcptReply = refuse('550 5.1.1 No such user');
  if (d.kind === 'throttle') profile.maxConnections = d.maxConnections ?? 5;
  if (d.kind === 'blackhole') profile.blackHole = true;
  if (d.track) {
    profile.dataReply = (m) => {
      for (const r of m.recipients) arrivals.push([r, m.receivedAt]);
      return null;
    };
  }
  const sink = new SmtpSink(profile);
  let last = -1;
  const mirror = (s: SinkStats): boolean => {
    if (s.messages !== last && s.messages > 0) {
      last = s.messages;
      const t = micros();
      if (Atomics.load(cells, base + FSLOT.firstAt) === 0n) Atomics.store(cells, base + FSLOT.firstAt, t);
      Atomics.store(cells, base + FSLOT.lastAt, t);
    }
    Atomics.store(cells, base + FSLOT.connections, BigInt(s.connections));
    Atomics.store(cells, base + FSLOT.recipients, BigInt(s.recipients));
    Atomics.store(cells, base + FSLOT.messages, BigInt(s.messages));
    return false;
  };
  // waitFor's predicate runs on every change: a never-true predicate is an "on change" hook.
  const watch = (): void => { sink.waitFor(mirror, 2_147_483_647).catch(watch); };
  ports.push(await sink.listen(0, '127.0.0.1'));
  watch();
  sinks.push(sink);
}

parentPort!.postMessage({ type: 'listening', ports });
parentPort!.on('message', (m: { type: string }) => {
  if (m.type === 'arrivals') parentPort!.postMessage({ type: 'arrivals', arrivals });
  if (m.type === 'close') {
    void Promise.all(sinks.map((s) => s.close())).then(() => process.exit(0));
  }
});
