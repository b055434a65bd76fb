/**
 * CPU time an MTA under test has used so far, from /proc (Linux), so a run can report CPU
 * milliseconds per delivered message for Postactor and Postfix alike.
 *   Postactor: one process; every thread's time is the process's utime + stime.
 *   Postfix: the master's own time, plus what its exited children used (cutime + cstime: the
 *   master reaps them), plus the live children's utime + stime.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { MtaHandle } from './mta.js';

const TICK = 100; // USER_HZ on Linux

function stat(pid: number): { ppid: number; self: number; children: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields after "pid (comm) ": state ppid … utime(12) stime(13) cutime(14) cstime(15), 0-based from state
    return { ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) / TICK, children: (Number(f[13]) + Number(f[14])) / TICK };
  } catch {
    return null;
  }
}

export function mtaCpuSeconds(h: MtaHandle & { pid?: number }): number | null {
  if (h.name === 'postactor' && h.pid) {
    const s = stat(h.pid);
    return s ? s.self + s.children : null;
  }
  if (h.name === 'postfix' && h.dir) {
    let master: number;
    try {
      master = Number(readFileSync(path.join(h.dir, 'spool', 'pid', 'master.pid'), 'utf8').trim());
    } catch {
      return null;
    }
    const m = stat(master);
    if (!m) return null;
    let total = m.self + m.children;
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      const s = stat(Number(e));
      if (s && s.ppid === master) total += s.self;
    }
    return total;
  }
  return null;
}
