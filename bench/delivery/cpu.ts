/**
 * CPU time used so far by a process and all its live descendants, from /proc (Linux): each
 * process's utime + stime plus what its exited, reaped children used (cutime + cstime). For
 * Postactor that is the server and its delivery helpers (and their lock companions); for
 * Postfix the master, its daemons (local, smtpd, cleanup …) and the ones that already exited.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

function stat(pid: number): { ppid: number; cpu: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICK };
  } catch {
    return null;
  }
}

/** CPU seconds of root and its live descendants (null when root is gone). */
export function treeCpuSeconds(root: number): number | null {
  const r = stat(root);
  if (!r) return null;
  const children = new Map<number, number[]>();
  const cpu = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const s = stat(Number(e));
    if (!s) continue;
    cpu.set(Number(e), s.cpu);
    children.set(s.ppid, [...(children.get(s.ppid) ?? []), Number(e)]);
  }
  let total = 0;
  const todo = [root];
  while (todo.length > 0) {
    const p = todo.pop()!;
    total += p === root ? r.cpu : cpu.get(p) ?? 0;
    todo.push(...(children.get(p) ?? []));
  }
  return total;
}
