/**
 * Memory back after a burst: a long-lived thread (master, qmgr, smtpd, …) that worked and then
 * went quiet runs one memory-reducing full collection (V8's "last resort" flavour: it compacts
 * the heap and returns the free pages to the system). V8 does not do this by itself in a quiet
 * isolate: with no allocation there is no collection, and the heap keeps the size the burst gave
 * it. bench/memory, 5,000 messages deferred: V8's pages 119 → 91 MB, RSS 263 → 233 MB.
 *
 * It needs the `gc` function of `--expose-gc` (a master flag, src/runtime/heap-limits.ts); without
 * it (a server started by hand without the flags) this does nothing. Quiet means an event loop
 * busy under 1% of a CHECK_MS interval, after one busier than 5% since the last collection: a
 * thread collects once per burst (at most once a minute), never while it works, and the pause
 * (tens of ms, 100–300 on this loaded 2-core machine) falls where a client is least likely to be
 * waiting.
 */
import { performance } from 'node:perf_hooks';

const CHECK_MS = 10_000;
const BUSY = 0.05;
const QUIET = 0.01;
const MIN_INTERVAL_MS = 60_000;

type Gc = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/** Starts the check in this thread (once). */
let started = false;
export function collectWhenQuiet(): void {
  const gc = (globalThis as { gc?: Gc }).gc;
  if (started || typeof gc !== 'function') return;
  started = true;
  let last = performance.eventLoopUtilization();
  let worked = false;
  let collectedAt = 0;
  setInterval(() => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    if (busy > BUSY) worked = true;
    else if (worked && busy < QUIET && Date.now() - collectedAt >= MIN_INTERVAL_MS) {
      worked = false;
      collectedAt = Date.now();
      gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    }
  }, CHECK_MS).unref();
}
