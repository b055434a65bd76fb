/**
 * The smtpd threads of a service beyond the first start on demand (memory follows work, issue
 * 17): an idle thread costs some 16 MB of V8 heap (bench/memory), and one thread serves many
 * sessions at once, so a second one only helps once the first is short of CPU. Postfix's master
 * starts another smtpd process for each concurrent client, up to maxproc; here master watches
 * the event loop of each running smtpd thread (worker.performance, no message to the thread) and
 * starts the next dormant thread of the service (SO_REUSEPORT: the kernel then spreads new
 * connections over both) once every running thread was busy at least SPREAD_ELU of each of the
 * last BUSY_CHECKS intervals of CHECK_MS (several, so that a thread's own start-up, slow on a
 * loaded machine, does not count as load). A thread so started stays until the next reload or stop: an smtpd thread may hold
 * long sessions, and ending it would cut them.
 */
import type { SupervisedWorker } from '../../src/runtime/supervisor.js';

const CHECK_MS = 1000;
/** Busy share of the last interval above which every running thread counts as loaded. */
export const SPREAD_ELU = 0.5;
/** Consecutive loaded intervals before the next thread starts. */
export const BUSY_CHECKS = 3;

/** Starts the watch over `workers()` (the current smtpd slots, re-read each time: reloads replace them). */
export function watchSmtpdLoad(workers: () => SupervisedWorker[]): () => void {
  const last = new Map<SupervisedWorker, { threadId: number; idle: number; active: number; busyRun: number }>();
  const timer = setInterval(() => {
    const byService = new Map<string, SupervisedWorker[]>();
    for (const w of workers()) {
      const list = byService.get(w.options.service) ?? [];
      list.push(w);
      byService.set(w.options.service, list);
    }
    for (const slots of byService.values()) {
      const dormant = slots.find((w) => w.dormant);
      let running = 0;
      let loaded = 0;
      for (const w of slots) {
        const elu = w.eventLoopUtilization();
        const threadId = w.threadId;
        if (elu === null || threadId === undefined) continue;
        running++;
        const prev = last.get(w);
        if (!prev || prev.threadId !== threadId) {
          last.set(w, { threadId, ...elu, busyRun: 0 }); // first look at this thread
          continue;
        }
        const active = elu.active - prev.active;
        const total = active + elu.idle - prev.idle;
        const busyRun = total > 0 && active / total >= SPREAD_ELU ? prev.busyRun + 1 : 0;
        last.set(w, { threadId, ...elu, busyRun });
        if (busyRun >= BUSY_CHECKS) loaded++;
      }
      if (dormant && running > 0 && loaded === running) dormant.demand();
    }
    for (const w of last.keys()) if (!workers().includes(w)) last.delete(w);
  }, CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
