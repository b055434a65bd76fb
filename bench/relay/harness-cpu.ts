/**
 * The CPU a run costs outside the MTA under test, from /proc (Linux): the benchmark process
 * itself (the generator and the sink, all their threads, plus children it reaped meanwhile, such
 * as smtp-source) and, with --milter, the shared OpenDKIM. On a machine whose cores the MTA shares
 * with them, this bounds what any MTA can reach: with the harness at H ms and the milter at M ms
 * of CPU per message, an MTA costing nothing gets at most cpus × 1000 / (H + M) messages/s, so
 * against an MTA costing P ms the best possible ratio is (H + M + P) / (H + M) when the run is
 * CPU-bound.
 */
import { readFileSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

/** utime + stime (and cutime + cstime with `children`) of a process, seconds; null if gone. */
function cpuSeconds(pid: number | 'self', children: boolean): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // after "pid (comm) ": state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14)
    const own = Number(f[11]) + Number(f[12]);
    return (children ? own + Number(f[13]) + Number(f[14]) : own) / TICK;
  } catch {
    return null;
  }
}

export class HarnessCpu {
  private readonly harness0: number | null;
  private readonly milter0: number | null;

  constructor(private readonly milterPid: number | null) {
    this.harness0 = cpuSeconds('self', true);
    this.milter0 = milterPid === null ? null : cpuSeconds(milterPid, true);
  }

  /** Seconds used since the start: the benchmark process, and the milter (null without one). */
  stop(): { harness: number | null; milter: number | null } {
    const h = cpuSeconds('self', true);
    const m = this.milterPid === null ? null : cpuSeconds(this.milterPid, true);
    return {
      harness: h === null || this.harness0 === null ? null : h - this.harness0,
      milter: m === null || this.milter0 === null ? null : m - this.milter0,
    };
  }
}

/**
 * The best delivered/s ratio any MTA could reach against a peer costing `peerMs` per message,
 * on a CPU-bound machine where the harness and the milter cost `harnessMs` + `milterMs`.
 */
export function ratioBound(harnessMs: number, milterMs: number, peerMs: number): number {
  const outside = harnessMs + milterMs;
  return outside > 0 ? (outside + peerMs) / outside : Infinity;
}
