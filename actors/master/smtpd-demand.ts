/**
 * The smtpd threads of a service beyond the first start on demand (memory follows work, issue
 * 17): an idle thread costs some 16 MB of V8 heap (bench/memory), and one thread serves many
 * sessions at once, so a second one only helps once the first is short of CPU. Postfix's master
 * starts another smtpd process for each concurrent client, up to maxproc; here master watches
 * each running smtpd thread (its event loop, worker.performance, and its CPU time,
 * worker.cpuUsage(): no message to the thread) and starts the next dormant thread of the service
 * (SO_REUSEPORT: the kernel then spreads new connections over both) once every running thread
 * was busy at least SPREAD_ELU and ran on a CPU at least SPREAD_CPU of each of the last
 * BUSY_CHECKS intervals of CHECK_MS (several, so that a thread's own start-up, slow on a loaded
 * machine, does not count as load). A thread so started rests again once its event loop was busy
 * under QUIET_ELU over the last max_idle (an average: one collection of a few hundred ms does not
 * count as work), as a Postfix smtpd exits after max_idle
 * without a client: it closes its listener and serves the sessions it holds to the end, as a
 * reload retires it (actors/smtpd/shutdown.ts), so no session is cut; the first thread stays.
 */
import { maillog } from '../../src/log/maillog.js';
import type { SupervisedWorker } from '../../src/runtime/supervisor.js';

const CHECK_MS = 1000;
/**
 * Busy share of the last interval above which every running thread counts as loaded: a thread
 * nearly full, not half. A second thread splits the sessions and each thread's batches, and costs
 * its own JIT warm-up, so it costs more than it brings while the first has room: bench/relay
 * (20 sessions, 5,000 messages, same runs alternating), one smtpd thread against a second started
 * at 0.5: 747 vs 607 messages/s and 1.94 vs 2.49 ms of CPU per message; at 0.85 against 0.5
 * ×1.13 messages/s (bench/README.md, session 14).
 */
export const SPREAD_ELU = 0.85;
/**
 * Share of the last interval the thread itself ran on a CPU, at or above which a busy event loop
 * is the thread's own work. An event loop counts as busy while its thread waits for a CPU too: on
 * a machine whose CPUs are all taken its loop looks full at half a CPU, and a second thread there
 * gets no CPU of its own; it only splits the work. bench/relay, 30,000 messages, 2 CPUs: the one
 * smtpd thread ran 0.48 of a CPU with its event loop over SPREAD_ELU; the second thread started,
 * and for the same messages per second smtpd's CPU went from 145 to 225 ticks per interval
 * (bench/README.md, session 17).
 */
export const SPREAD_CPU = 0.75;
/** Consecutive loaded intervals before the next thread starts. */
export const BUSY_CHECKS = 3;
/** Busy share over max_idle under which a thread started on demand counts as quiet. */
export const QUIET_ELU = 0.01;

/** Starts the watch over `workers()` (the current smtpd slots, re-read each time: reloads replace them). */
export function watchSmtpdLoad(workers: () => SupervisedWorker[], maxIdleMs: () => number): () => void {
  /** One look at a thread: when, its event loop's idle and active ms, its CPU µs (all cumulative). */
  interface Look { t: number; idle: number; active: number; cpu: number }
  /** Per slot: its thread, the loaded intervals in a row, and the looks of the last max_idle (oldest first). */
  const last = new Map<SupervisedWorker, { threadId: number; busyRun: number; looks: Look[] }>();
  /** A look whose CPU time has not come back yet is not overtaken by the next. */
  let looking = false;
  const lookAt = async (w: SupervisedWorker): Promise<Look | null> => {
    const elu = w.eventLoopUtilization();
    const cpu = await (w.cpuUsage() ?? Promise.resolve(null)).catch(() => null);
    return elu === null || cpu === null ? null : { t: Date.now(), ...elu, cpu: cpu.user + cpu.system };
  };
  const check = async (): Promise<void> => {
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
      const looked = await Promise.all(slots.map(async (w) => ({ w, threadId: w.threadId, look: await lookAt(w) })));
      for (const { w, threadId, look } of looked) {
        if (look === null || threadId === undefined || w.threadId !== threadId) continue;
        running++;
        const prev = last.get(w);
        if (!prev || prev.threadId !== threadId) {
          last.set(w, { threadId, busyRun: 0, looks: [look] }); // first look at this thread
          continue;
        }
        const share = (from: Look) => {
          const active = look.active - from.active;
          const total = active + look.idle - from.idle;
          return total > 0 ? active / total : 0;
        };
        const { looks } = prev;
        const since = looks[looks.length - 1]!;
        const onCpu = look.t > since.t ? (look.cpu - since.cpu) / 1000 / (look.t - since.t) : 0;
        prev.busyRun = share(since) >= SPREAD_ELU && onCpu >= SPREAD_CPU ? prev.busyRun + 1 : 0;
        looks.push(look);
        const window = maxIdleMs();
        while (looks.length > 2 && look.t - looks[1]!.t >= window) looks.shift();
        if (prev.busyRun >= BUSY_CHECKS) loaded++;
        if (w.options.onDemand && look.t - looks[0]!.t >= window && share(looks[0]!) < QUIET_ELU) w.rest();
      }
      if (dormant && running > 0 && loaded === running) dormant.demand();
    }
    for (const w of last.keys()) if (!workers().includes(w)) last.delete(w);
  };
  const timer = setInterval(() => {
    if (looking) return;
    looking = true;
    void check()
      .catch((err: Error) => maillog('master').warn(`smtpd load watch: ${err.message}`))
      .finally(() => (looking = false));
  }, CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
