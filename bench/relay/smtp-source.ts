/**
 * Postfix's own load generator, smtp-source (C, from Debian's postfix package), as bench/relay's
 * generator (`--generator smtp-source`): much cheaper per message than the Node generator, so
 * it takes less CPU from the MTA under test on the shared two cores. The same workload as the
 * Node generator's defaults:
 *
 *   smtp-source -c -s SESSIONS -m MESSAGES -l SIZE [-r N] [-N] [-d] -f FROM -t TO -M HELO HOST:PORT
 *
 * A new connection per message unless -d; any reply other than 2xx/3xx ends it with "fatal"
 * (no -L), so exit 0 means every message was accepted. It reports no latency: only accepted/s
 * (first connect ≈ spawn → exit) and, through the sink, delivered/s. `-c` prints a counter at
 * every end of DATA sent, which the progress line shows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { GENERATOR_DEFAULTS, nowAbs, type GeneratorOptions, type GeneratorResult, type LatencySummary } from './generator.js';

export const SMTP_SOURCE = '/usr/sbin/smtp-source';

/** The generator's options that smtp-source has flags for (-s -m -l -r -N -d; the time limit is ours). */
export type SmtpSourceOptions = Pick<GeneratorOptions, 'host' | 'port' | 'sessions' | 'messages' | 'size' | 'recipients' | 'unique' | 'reuse' | 'timeLimitMs'>;

const NO_LATENCY: LatencySummary = { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0, distribution: [] };

export function smtpSourceInstalled(): boolean {
  return existsSync(SMTP_SOURCE);
}

export class SmtpSource {
  /** Ends of DATA sent so far (smtp-source's counter); every one accepted unless it failed. */
  accepted = 0;
  failed = 0;
  readonly tlsResumed = 0;
  private child: ChildProcess | null = null;
  private stopped = false;

  constructor(private readonly o: SmtpSourceOptions) {}

  args(): string[] {
    const o = this.o;
    const d = GENERATOR_DEFAULTS;
    return [
      '-c', '-s', String(o.sessions), '-m', String(o.messages), '-l', String(o.size),
      ...(o.recipients > 1 ? ['-r', String(o.recipients)] : []),
      ...(o.unique ? ['-N'] : []),
      ...(o.reuse ? ['-d'] : []),
      '-f', d.from, '-t', d.to, '-M', d.heloName,
      `${o.host}:${o.port}`,
    ];
  }

  stop(): void {
    this.stopped = true;
    this.child?.kill('SIGTERM');
  }

  run(): Promise<GeneratorResult> {
    const o = this.o;
    const t0 = nowAbs();
    let timedOut = false;
    const errors: string[] = [];
    return new Promise((resolve, reject) => {
      const child = spawn(SMTP_SOURCE, this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
      this.child = child;
      const timer = setTimeout(() => { timedOut = true; child.kill('SIGTERM'); }, o.timeLimitMs);
      let tail = '';
      child.stdout!.setEncoding('latin1').on('data', (s: string) => {
        tail = (tail + s).slice(-32);
        const m = /(\d+)\r[^\r]*$/.exec(tail);
        if (m) this.accepted = Number(m[1]);
      });
      child.stderr!.setEncoding('utf8').on('data', (s: string) => {
        for (const line of s.split('\n')) if (line.trim() && errors.length < 5) errors.push(line.trim().slice(0, 200));
      });
      child.on('error', (err) => { clearTimeout(timer); reject(err); });
      child.on('close', (code) => {
        clearTimeout(timer);
        const endedAt = nowAbs();
        // Exit 0: every message got its 250. Otherwise the counter counts ends of DATA sent,
        // some of them (one per session at most) never answered.
        const accepted = code === 0 ? o.messages : Math.max(0, this.accepted - o.sessions);
        this.accepted = accepted;
        this.failed = code === 0 || this.stopped || timedOut ? 0 : Math.min(o.sessions, o.messages - accepted);
        const elapsedMs = endedAt - t0;
        resolve({
          accepted,
          failed: this.failed,
          unfinished: code === 0 ? 0 : o.messages - accepted - this.failed,
          notStarted: 0,
          connections: o.reuse ? o.sessions : accepted,
          errors,
          timedOut,
          firstConnectAt: t0,
          lastAcceptAt: endedAt,
          endedAt,
          elapsedMs,
          acceptedPerSec: elapsedMs > 0 ? (accepted * 1000) / elapsedMs : 0,
          latency: NO_LATENCY,
          dotLatency: NO_LATENCY,
          offeredPerSec: null,
        });
      });
    });
  }
}
