/**
 * Names this worker thread after its Postfix command (smtpd, cleanup, qmgr, smtp, …), so `ps -L`,
 * `top -H` and bench/relay's per-thread CPU report see which daemon a thread runs, as Postfix's
 * process names say it. Node names a Worker thread only through `new Worker({ name })`, which
 * the pools do not pass; a thread may rename itself through /proc/thread-self/comm (Linux; 15
 * bytes). Best effort: elsewhere, or without /proc, the name stays "WorkerThread".
 */
import { writeFileSync } from 'node:fs';
import { isMainThread, workerData } from 'node:worker_threads';

let named = false;

export function nameThisThread(): void {
  if (named || isMainThread) return;
  named = true;
  const d = workerData as { thread?: unknown; service?: unknown } | null;
  const name = typeof d?.thread === 'string' ? d.thread : typeof d?.service === 'string' ? d.service : '';
  if (!name) return;
  try {
    writeFileSync('/proc/thread-self/comm', name.slice(0, 15));
  } catch {
    // not Linux, or no /proc: the name stays
  }
}

/** Threads Node and V8 start in every process (their names in /proc/PID/task/TID/comm). */
const NODE_OWN = new Set(['MainThread', 'node', 'DelayedTaskSche', 'V8Worker', 'SignalInspector', 'libuv-worker']);

/**
 * Whether a thread of a Postactor process, by its name, is a worker thread (an actor): Node's
 * name for one ("WorkerThread", before it named itself) or any name that is not one of Node's
 * own threads (nor the kernel's io_uring workers, "iou-wrk-…", which /proc lists with them).
 */
export function isWorkerThreadName(comm: string): boolean {
  return !NODE_OWN.has(comm) && !comm.startsWith('iou-');
}
