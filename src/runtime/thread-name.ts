/**
 * Names this worker thread after its Postfix command (smtpd, cleanup, qmgr, smtp, …), so `ps -L`,
 * `top -H` and bench/relay's per-thread CPU report see which daemon a thread runs, as Postfix's
 * process names say it. Node names a Worker thread only through `new Worker({ name })`, which
 * piscina does not pass; a thread may rename itself through /proc/thread-self/comm (Linux; 15
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
