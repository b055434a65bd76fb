/**
 * CPU time an MTA under test has used so far, from /proc (Linux), so a run can report CPU
 * milliseconds per delivered message for Postactor and Postfix alike, in total and per thread
 * group (smtpd, cleanup, qmgr, smtp, master, lmdb, other).
 *   Postactor: one process; its total is the process's utime + stime. Per group, each thread's
 *   /proc/PID/task/TID/stat by its name: actor threads name themselves after their command
 *   (src/runtime/thread-name.ts), "MainThread" is master, "libuv-worker" is Node's thread pool
 *   (LMDB's asynchronous commits, fs), "V8Worker" V8's platform threads (GC, compiler).
 *   Postfix: the master's own time, plus what its exited children used (cutime + cstime: the
 *   master reaps them), plus the live children's utime + stime; per group by process name.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { MtaHandle } from './mta.js';

const TICK = 100; // USER_HZ on Linux

/** The groups reported, in order; anything else counts as "other". */
export const CPU_GROUPS = ['smtpd', 'cleanup', 'qmgr', 'smtp', 'master', 'lmdb', 'v8', 'other', 'exited'] as const;
export type CpuGroups = Record<string, number>;

function stat(file: string): { comm: string; ppid: number; self: number; children: number } | null {
  try {
    const text = readFileSync(file, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const f = text.slice(close + 2).split(' ');
    // fields after "pid (comm) ": state ppid … utime(12) stime(13) cutime(14) cstime(15), 0-based from state
    return { comm, ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) / TICK, children: (Number(f[13]) + Number(f[14])) / TICK };
  } catch {
    return null;
  }
}

/** Thread or process name → group. */
function groupOf(comm: string): string {
  switch (comm) {
    case 'smtpd': case 'postscreen': return 'smtpd';
    case 'cleanup': return 'cleanup';
    case 'qmgr': return 'qmgr';
    case 'smtp': case 'lmtp': return 'smtp';
    case 'MainThread': case 'master': return 'master';
    case 'libuv-worker': return 'lmdb';
    case 'V8Worker': return 'v8';
    default: return 'other';
  }
}

function postfixMaster(h: MtaHandle): number | null {
  try {
    return Number(readFileSync(path.join(h.dir, 'spool', 'pid', 'master.pid'), 'utf8').trim());
  } catch {
    return null;
  }
}

interface Task { group: string; first: number; last: number }

/**
 * Per-group CPU over a run: reads every thread (Postactor) or child process (Postfix) each
 * `everyMs`, so a thread or process that ends during the run still counts with the time it had at
 * its last reading (Postfix's smtpd processes end after max_use sessions; Postactor's idle pool
 * threads after max_idle). What ended unseen, or between its last reading and its end, is "exited".
 */
export class CpuSampler {
  private readonly tasks = new Map<string, Task>();
  private readonly timer: NodeJS.Timeout;
  private total0: number | null;
  private first = true;

  constructor(private readonly h: MtaHandle & { pid?: number }, everyMs = 250) {
    this.total0 = this.read();
    this.first = false;
    this.timer = setInterval(() => this.read(), everyMs);
    this.timer.unref();
  }

  /** Stops and returns CPU seconds per group over the run, with "total" and "exited"; null without /proc. */
  stop(): CpuGroups | null {
    clearInterval(this.timer);
    const total1 = this.read();
    if (this.total0 === null || total1 === null) return null;
    const g: CpuGroups = { total: total1 - this.total0 };
    let seen = 0;
    for (const t of this.tasks.values()) {
      const d = t.last - t.first;
      g[t.group] = (g[t.group] ?? 0) + d;
      seen += d;
    }
    g.exited = Math.max(0, g.total - seen);
    return g;
  }

  /** One reading of every task; returns the MTA's total so far. */
  private read(): number | null {
    const h = this.h;
    const note = (key: string, comm: string, self: number): void => {
      const t = this.tasks.get(key);
      if (t) {
        t.last = self;
        // A new worker thread is "WorkerThread" until it has named itself.
        t.group = groupOf(comm);
      }
      // A task born during the run counts from 0.
      else this.tasks.set(key, { group: groupOf(comm), first: this.first ? self : 0, last: self });
    };
    if (h.name === 'postactor' && h.pid) {
      const p = stat(`/proc/${h.pid}/stat`);
      if (!p) return null;
      let tasks: string[] = [];
      try { tasks = readdirSync(`/proc/${h.pid}/task`); } catch { /* ended */ }
      for (const t of tasks) {
        const s = stat(`/proc/${h.pid}/task/${t}/stat`);
        if (s) note(t, s.comm, s.self);
      }
      return p.self + p.children;
    }
    if (h.name === 'postfix' && h.dir) {
      const master = postfixMaster(h);
      if (master === null) return null;
      const m = stat(`/proc/${master}/stat`);
      if (!m) return null;
      note(String(master), 'master', m.self);
      let total = m.self + m.children;
      for (const e of readdirSync('/proc')) {
        if (!/^\d+$/.test(e)) continue;
        const s = stat(`/proc/${e}/stat`);
        if (s && s.ppid === master) {
          note(e, s.comm, s.self);
          total += s.self;
        }
      }
      return total;
    }
    return null;
  }
}

export function mtaCpuSeconds(h: MtaHandle & { pid?: number }): number | null {
  const s = stat(`/proc/${h.pid ?? 0}/stat`);
  if (h.name === 'postactor') return s ? s.self + s.children : null;
  if (h.name === 'postfix' && h.dir) {
    const master = postfixMaster(h);
    const m = master === null ? null : stat(`/proc/${master}/stat`);
    if (!m) return null;
    let total = m.self + m.children;
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      const c = stat(`/proc/${e}/stat`);
      if (c && c.ppid === master) total += c.self;
    }
    return total;
  }
  return null;
}
